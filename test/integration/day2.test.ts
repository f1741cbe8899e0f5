import { writeFileSync } from 'node:fs';
import { Cluster } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../../src/apply/wait.js';
import { everySlot, keysOn, loadKeys } from '../support/keys.js';
import { answers, expectClusterIntact, localSpec, ports, rcluster, redisCli, withNode } from './support.js';

// The runbook's day-2 steps on local processes, each one spec edit plus apply, with a key set
// checked after every step: scale out, drop a replica, scale in, re-add, change a weight.
const PORTS = ports(7401, 8);
const [P1, P2, P3, P4, P5, P6, P7, P8] = PORTS as [number, number, number, number, number, number, number, number];
const addr = (p: number) => `127.0.0.1:${p}`;
// A key in every slot: the lightest slots, which move first, would otherwise move empty.
const KEYS = everySlot(100_000);
const spec = localSpec('itest-day2', PORTS.slice(0, 6));

function writeSpec(nodes: number[], extra: string[] = []): void {
  writeFileSync(spec.file, ['name: itest-day2', 'connection: local', ...extra, 'nodes:', ...nodes.map((p) => `  - ${addr(p)}`), ''].join('\n'));
}

async function applyOk(): Promise<string> {
  // A wait that does not converge fails inside the test's time with rcluster's own account of
  // what disagrees, rather than as a bare test timeout.
  const r = await rcluster('apply', '-f', spec.file, '--auto-approve', '--wait-timeout', '25000');
  // Only the spec's own warnings (a master without a replica) may reach stderr.
  const errors = r.err.split('\n').filter((l) => l !== '' && !/: warning: /.test(l));
  expect({ code: r.code, errors }).toEqual({ code: 0, errors: [] });
  return r.out;
}

/**
 * Every replica ends with exactly its master's keys: the keys a migration took from a master were
 * deleted on its replicas too (MIGRATE run inside rcluster's script replicates its deletes as the
 * command does). Replication is asynchronous: waited for, up to 10 s.
 */
async function expectReplicasMatch(): Promise<void> {
  const replicas: { port: number; master: number }[] = [];
  for (const p of PORTS) {
    if (!(await answers(p))) continue;
    const r = await roleOf(p);
    if (r.role === 'slave' && r.masterPort !== undefined) replicas.push({ port: p, master: r.masterPort });
  }
  expect(replicas.length).toBeGreaterThan(0);
  await waitFor(
    'every replica to hold its master\'s keys',
    async () => {
      for (const { port, master } of replicas) {
        const [mine, theirs] = await Promise.all([withNode(port, (r) => r.dbsize()), withNode(master, (r) => r.dbsize())]);
        if (mine !== theirs) return `${addr(port)} holds ${mine} keys, its master ${addr(master)} ${theirs}`;
      }
      return true;
    },
    { timeoutMs: 10_000 },
  );
}

/** Every key there with its value on its master and its replicas, redis-cli's own check clean, and nothing left to do. */
async function expectIntact(): Promise<void> {
  await expectClusterIntact({ seed: addr(P1), keys: KEYS, cli: redisCli, specFile: spec.file });
  await expectReplicasMatch();
}

async function slotCounts(): Promise<Map<number, number>> {
  const text = String(await withNode(P1, (r) => r.call('CLUSTER', 'NODES')));
  const out = new Map<number, number>();
  for (const line of text.trim().split('\n')) {
    const f = line.split(' ');
    const port = Number(f[1]?.split('@')[0]?.split(':')[1]);
    const n = f.slice(8).reduce((k, r) => {
      if (r.startsWith('[')) return k;
      const [a, b] = r.split('-').map(Number);
      return k + ((b ?? a) as number) - (a as number) + 1;
    }, 0);
    if (n > 0) out.set(port, n);
  }
  return out;
}

async function roleOf(port: number): Promise<{ role: string; masterPort?: number }> {
  const info = await withNode(port, (r) => r.info('replication'));
  const role = /role:(\w+)/.exec(info)?.[1] ?? '?';
  const masterPort = /master_port:(\d+)/.exec(info)?.[1];
  return masterPort ? { role, masterPort: Number(masterPort) } : { role };
}

/**
 * A cluster client writes and reads throughout `fn`: redirects (-MOVED, -ASK) and retries
 * (-TRYAGAIN) must hide the slot moves. No operation may fail, and every acknowledged write
 * must be there at the end.
 */
async function withClientTraffic(fn: () => Promise<unknown>): Promise<void> {
  const client = new Cluster([{ host: '127.0.0.1', port: P1 }], { maxRedirections: 64, retryDelayOnTryAgain: 20, retryDelayOnClusterDown: 50 });
  let stop = false;
  const acked: string[] = [];
  const failures: string[] = [];
  const writer = (async () => {
    for (let i = 0; !stop; i++) {
      const key = `live:${i}`;
      try {
        await client.set(key, String(i));
        acked.push(key);
        if ((await client.get(key)) !== String(i)) failures.push(`${key}: read back another value`);
      } catch (err) {
        failures.push(`${key}: ${(err as Error).message}`);
      }
    }
  })();
  try {
    await fn();
  } finally {
    stop = true;
    await writer;
  }
  try {
    expect(failures).toEqual([]);
    expect(acked.length).toBeGreaterThan(10);
    const values = await Promise.all(acked.map((k) => client.get(k)));
    expect(values.filter((v, i) => v !== acked[i]?.slice(5))).toEqual([]);
    await Promise.all(acked.map((k) => client.del(k)));
  } finally {
    client.disconnect();
  }
}

describe('day-2 changes on a running cluster, each one spec edit and apply', () => {
  beforeAll(async () => {
    writeSpec(PORTS.slice(0, 6));
    await applyOk();
    await loadKeys(addr(P1), KEYS);
  });

  afterAll(async () => {
    writeSpec(PORTS);
    await rcluster('destroy', '-f', spec.file, '--auto-approve');
    spec.cleanup();
  });

  it('add two nodes with masters: 4 -> exactly 4096 slots move, all to the new master, while a client keeps writing', async () => {
    writeSpec(PORTS, ['masters: 4']);
    const plan = await rcluster('plan', '-f', spec.file);
    expect(plan.code).toBe(0);
    const moves = [...plan.out.matchAll(/move (\d+) slot\(s\) \(~([\d,]+) keys\) (\S+) → (\S+)/g)];
    expect(moves.map((m) => m[4])).toEqual([addr(P7), addr(P7), addr(P7)]);
    expect(moves.reduce((n, m) => n + Number(m[1]), 0)).toBe(4096);
    expect(moves.every((m) => Number((m[2] as string).replaceAll(',', '')) > 0)).toBe(true);
    expect(plan.out).toContain(`make ${addr(P8)} a replica of ${addr(P7)}`);

    await withClientTraffic(applyOk);
    expect([...(await slotCounts()).values()].sort()).toEqual([4096, 4096, 4096, 4096]);
    // The slots came with their keys: each holds at least one.
    expect(await keysOn(addr(P7))).toBeGreaterThanOrEqual(4096);
    expect(await roleOf(P8)).toEqual({ role: 'slave', masterPort: P7 });
    await expectIntact();
  });

  it('drop replica 7406 -> forgotten by every node and stopped; no slot moves', async () => {
    writeSpec([P1, P2, P3, P4, P5, P7, P8], ['masters: 4']);
    const out = await applyOk();
    expect(out).not.toContain('move ');
    expect(out).toContain(`forget ${addr(P6)}`);
    expect(await answers(P6)).toBe(false);
    for (const p of [P1, P2, P3, P4, P5, P7, P8]) {
      const nodes = String(await withNode(p, (r) => r.call('CLUSTER', 'NODES')));
      expect(nodes).not.toContain(`:${P6}@`);
    }
    await expectIntact();
  });

  it('drop 7407 and 7408 with masters: 3 -> the 4096 slots spread back, 5461 ± 1 each, while a client keeps writing', async () => {
    writeSpec([P1, P2, P3, P4, P5], ['masters: 3']);
    const plan = await rcluster('plan', '-f', spec.file);
    const moves = [...plan.out.matchAll(/move (\d+) slot\(s\) \(~[\d,]+ keys\) (\S+) → (\S+)/g)];
    expect(new Set(moves.map((m) => m[2]))).toEqual(new Set([addr(P7)]));
    expect(new Set(moves.map((m) => m[3]))).toEqual(new Set([addr(P1), addr(P2), addr(P3)]));
    const held = await keysOn(addr(P7));
    const before = await Promise.all([P1, P2, P3].map((p) => keysOn(addr(p))));
    await withClientTraffic(applyOk);
    // Every key 7407 held (one at least in each of its 4096 slots) went to the three masters.
    expect(held).toBeGreaterThanOrEqual(4096);
    const after = await Promise.all([P1, P2, P3].map((p) => keysOn(addr(p))));
    expect(after.reduce((k, a, i) => k + a - (before[i] as number), 0)).toBe(held);
    const counts = [...(await slotCounts()).values()];
    expect(counts).toHaveLength(3);
    for (const n of counts) expect(Math.abs(n - 5461)).toBeLessThanOrEqual(1);
    expect(await answers(P7)).toBe(false);
    expect(await answers(P8)).toBe(false);
    await expectIntact();
  });

  it('re-add 7406 -> it becomes the replica of the master that lacks one', async () => {
    writeSpec([P1, P2, P3, P4, P5, P6]);
    const out = await applyOk();
    expect(out).toContain(`make ${addr(P6)} a replica of ${addr(P3)}`);
    expect(await roleOf(P6)).toEqual({ role: 'slave', masterPort: P3 });
    await expectIntact();
  });

  it("a master's node leaves while masters stays -> its in-sync replica takes over (CLUSTER FAILOVER); no slot moves; re-added, it follows its heir", async () => {
    const gone = (await roleOf(P5)).masterPort as number;
    const stay = [P1, P2, P3, P4, P5, P6].filter((p) => p !== gone);
    writeSpec(stay);
    const out = await applyOk();
    expect(out).toContain(`${addr(P5)} takes over the slots of ${addr(gone)} (CLUSTER FAILOVER)`);
    expect(out).not.toMatch(/move \d+ slot/);
    expect(await roleOf(P5)).toEqual({ role: 'master' });
    expect(await answers(gone)).toBe(false);
    await expectIntact();

    writeSpec([P1, P2, P3, P4, P5, P6]);
    const back = await applyOk();
    expect(back).toContain(`make ${addr(gone)} a replica of ${addr(P5)}`);
    await expectIntact();
  });

  it('a weight change reshards: weight 2 on 7401 gives its shard half the slots', async () => {
    writeFileSync(
      spec.file,
      ['name: itest-day2', 'connection: local', 'nodes:', `  - { host: 127.0.0.1, port: ${P1}, weight: 2 }`, ...[P2, P3, P4, P5, P6].map((p) => `  - ${addr(p)}`), ''].join('\n'),
    );
    // The weight is the shard's: 7401 may be its replica after the failover above.
    const weighted = (await roleOf(P1)).masterPort ?? P1;
    const before = await keysOn(addr(weighted));
    await applyOk();
    expect((await slotCounts()).get(weighted)).toBe(8192);
    // Its 4096 new slots came with their keys: each holds at least one.
    expect((await keysOn(addr(weighted))) - before).toBeGreaterThanOrEqual(4096);
    await expectIntact();
  });

  it('a node whose running cluster-node-timeout is not the spec\'s (as an apply cut off while it joined leaves it) is set back live', async () => {
    await withNode(P2, (r) => r.config('SET', 'cluster-node-timeout', '500'));
    const plan = await rcluster('plan', '-f', spec.file, '--detailed-exitcode');
    expect(plan.code).toBe(2);
    expect(plan.out).toContain(`set cluster-node-timeout 5000 on ${addr(P2)} live (no restart)`);
    await applyOk();
    expect(await withNode(P2, (r) => r.config('GET', 'cluster-node-timeout'))).toEqual(['cluster-node-timeout', '5000']);
    await expectIntact();
  });
});
