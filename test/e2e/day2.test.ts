import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestHosts, type Harness } from '../harness/index.js';
import { harnessSpec, RUNBOOK_REDIS } from '../harness/spec.js';
import { answers, rcluster, redisCli, withNode } from '../integration/support.js';
import { badKeys, everySlot, keysOn, loadKeys } from '../support/keys.js';

// The runbook's day-2 sequence on the SSH test hosts, each step one spec edit and one apply:
// add 58 as a master (4096 slots to it), drop replica 54, drain and drop 58, re-add 54.
// Host 58 runs its node on port 6379, as in the runbook; the others on 635N.
const SEED = [51, 52, 53, 54, 55, 56];
const nodeOf = (n: number) => (n === 58 ? '127.0.0.58:6379' : `127.0.0.${n}:${6300 + n}`);
const SEED_NODE = nodeOf(51);
/** With a key in every slot, so that every slot moved carries keys. */
const KEYS = everySlot(50_000);

describe("the runbook's day-2 steps over SSH", () => {
  let h: Harness;
  let dir: string;
  let file: string;

  const writeSpec = (hosts: number[], masters?: number) => {
    const text = harnessSpec(h, { name: 'seed-day2', redis: RUNBOOK_REDIS, replicasPerMaster: 1, nodes: hosts.map(nodeOf) });
    writeFileSync(file, masters === undefined ? text : text.replace('replicasPerMaster: 1\n', `replicasPerMaster: 1\nmasters: ${masters}\n`));
  };

  const apply = async () => {
    const r = await rcluster('apply', '-f', file, '--auto-approve');
    const errors = r.err.split('\n').filter((l) => l !== '' && !/: warning: /.test(l));
    expect({ code: r.code, errors }).toEqual({ code: 0, errors: [] });
    return r.out;
  };

  /** Keys intact, redis-cli's check clean, and the next plan empty. */
  const expectSettled = async () => {
    expect(await badKeys(SEED_NODE, KEYS)).toEqual([]);
    const check = await redisCli(['--cluster', 'check', SEED_NODE]);
    expect(check.out).toContain('[OK] All nodes agree about slots configuration.');
    expect(check.out).toContain('[OK] All 16384 slots covered.');
    expect(check.out).not.toMatch(/\[WARNING\]|\[ERR\]/);
    const again = await rcluster('plan', '-f', file, '--detailed-exitcode');
    expect(again.out).toContain('No changes.');
    expect(again.code).toBe(0);
  };

  const slotsOf = async (address: string): Promise<number> => {
    const nodes = String(await withNode(6351, (r) => r.call('CLUSTER', 'NODES'), '127.0.0.51'));
    const line = nodes.split('\n').find((l) => l.split(' ')[1]?.startsWith(`${address}@`)) ?? '';
    return line
      .split(' ')
      .slice(8)
      .filter((r) => !r.startsWith('['))
      .reduce((k, r) => {
        const [a, b] = r.split('-').map(Number);
        return k + ((b ?? a) as number) - (a as number) + 1;
      }, 0);
  };

  beforeAll(async () => {
    h = await startTestHosts([...SEED, 58]);
    dir = mkdtempSync(join(tmpdir(), 'rcluster-e2e-day2-'));
    file = join(dir, 'cluster.yaml');
    writeSpec(SEED);
    await apply();
    await loadKeys(SEED_NODE, KEYS);
  });

  afterAll(async () => {
    await h?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('1. add 127.0.0.58:6379 with masters: 4 -> exactly 4096 slots move, all to it', async () => {
    writeSpec([...SEED, 58], 4);
    const plan = await rcluster('plan', '-f', file);
    const moves = [...plan.out.matchAll(/move (\d+) slot\(s\) \(~[\d,]+ keys\) (\S+) → (\S+)/g)];
    expect(moves.map((m) => m[3])).toEqual([nodeOf(58), nodeOf(58), nodeOf(58)]);
    expect(moves.reduce((n, m) => n + Number(m[1]), 0)).toBe(4096);
    expect(await keysOn(nodeOf(58))).toBe(0);
    await apply();
    expect(await slotsOf(nodeOf(58))).toBe(4096);
    // The slots came with their keys: each holds at least one.
    expect(await keysOn(nodeOf(58))).toBeGreaterThanOrEqual(4096);
    await expectSettled();
  });

  let masterOf54 = 0;

  it('2. drop replica 127.0.0.54:6354 -> forgotten by every node and stopped through its service; no slot moves', async () => {
    masterOf54 = Number(/master_port:(\d+)/.exec(await withNode(6354, (r) => r.info('replication'), '127.0.0.54'))?.[1]);
    expect(masterOf54).toBeGreaterThan(0);
    writeSpec([51, 52, 53, 55, 56, 58], 4);
    const out = await apply();
    expect(out).not.toMatch(/move \d+ slot/);
    expect(out).toContain(`forget ${nodeOf(54)}`);
    expect(out).toContain(`reset ${nodeOf(54)} (CLUSTER RESET SOFT) and stop it through /etc/init.d/redis_6379`);
    expect(await answers(6354)).toBe(false);
    for (const n of [51, 52, 53, 55, 56]) {
      const nodes = String(await withNode(6300 + n, (r) => r.call('CLUSTER', 'NODES'), `127.0.0.${n}`));
      expect(nodes).not.toContain(`${nodeOf(54)}@`);
    }
    // It was reset before it stopped: its saved state knows only itself, so it can come back.
    const saved = readFileSync(h.hosts.find((x) => x.n === 54)!.path('/var/lib/redis/6379/nodes-6379.conf'), 'utf8');
    expect(saved.split('\n').filter((l) => /^[0-9a-f]{40} /.test(l))).toHaveLength(1);
    await expectSettled();
  });

  it('3. drop 58 with masters: 3 -> its 4096 slots spread back, each master ends with 5461 ± 1', async () => {
    writeSpec([51, 52, 53, 55, 56], 3);
    const plan = await rcluster('plan', '-f', file);
    const moves = [...plan.out.matchAll(/move (\d+) slot\(s\) \(~[\d,]+ keys\) (\S+) → (\S+)/g)];
    expect(new Set(moves.map((m) => m[2]))).toEqual(new Set([nodeOf(58)]));
    expect(moves).toHaveLength(3);
    const held = await keysOn(nodeOf(58));
    const before = await Promise.all([51, 52, 53].map((n) => keysOn(nodeOf(n))));
    await apply();
    for (const n of [51, 52, 53]) expect(Math.abs((await slotsOf(nodeOf(n))) - 5461)).toBeLessThanOrEqual(1);
    // Every key 58 held (one at least in each of its 4096 slots) went to the three masters.
    expect(held).toBeGreaterThanOrEqual(4096);
    const after = await Promise.all([51, 52, 53].map((n) => keysOn(nodeOf(n))));
    expect(after.reduce((k, a, i) => k + a - (before[i] as number), 0)).toBe(held);
    expect(await answers(6379, '127.0.0.58')).toBe(false);
    await expectSettled();
  });

  it('4. re-add 54 -> it becomes the replica of the master that lacks one', async () => {
    writeSpec(SEED);
    const out = await apply();
    // The master 54 followed before it left is the one left without a replica.
    const attach = /make 127\.0\.0\.54:6354 a replica of (\S+)/.exec(out);
    expect(attach?.[1]).toBe(nodeOf(masterOf54 - 6300));
    const info = await withNode(6354, (r) => r.info('replication'), '127.0.0.54');
    expect(info).toContain('role:slave');
    expect(info).toContain(`master_port:${masterOf54}`);
    await expectSettled();
  });
});
