import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../../src/apply/wait.js';
import { badKeys, loadKeys } from '../support/keys.js';
import { answers, ports, rcluster, redisCli, withNode } from './support.js';

// A cluster made by hand with redis-cli, adopted with connection: none: rcluster never
// re-creates it, and changes to it become the same minimal steps as for its own clusters.
const PORTS = ports(7461, 7);
const CREATED = PORTS.slice(0, 6);
const EXTRA = PORTS[6] as number;
const addr = (p: number) => `127.0.0.1:${p}`;
const KEYS = 30_000;
const run = promisify(execFile);

let dir: string;
let file: string;

function writeSpec(nodes: number[]): void {
  writeFileSync(file, ['name: adopted', 'connection: none', 'nodes:', ...nodes.map((p) => `  - ${addr(p)}`), ''].join('\n'));
}

async function startNode(port: number): Promise<void> {
  const d = join(dir, String(port));
  mkdirSync(d, { recursive: true });
  await run('redis-server', [
    '--port', String(port), '--bind', '127.0.0.1', '--cluster-enabled', 'yes', '--cluster-config-file', `nodes-${port}.conf`,
    '--dir', d, '--daemonize', 'yes', '--save', '', '--appendonly', 'no', '--cluster-announce-ip', '127.0.0.1',
    '--repl-diskless-sync-delay', '0', '--logfile', join(d, 'redis.log'), '--pidfile', join(d, 'redis.pid'),
  ]);
  await waitFor(`${port} to answer`, async () => ((await answers(port)) ? true : 'not yet'), { timeoutMs: 10_000 });
}

describe('adopting a cluster made with redis-cli --cluster create (connection: none)', () => {
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'rcluster-adopt-'));
    file = join(dir, 'cluster.yaml');
    await Promise.all(PORTS.map(startNode));
    const created = await redisCli(['--cluster', 'create', ...CREATED.map(addr), '--cluster-replicas', '1', '--cluster-yes']);
    expect(created.out).toContain('[OK] All 16384 slots covered.');
    // redis-cli create returns before every replica is known as one everywhere.
    await waitFor(
      'the redis-cli cluster to settle',
      async () => {
        for (const p of CREATED) {
          const info = String(await withNode(p, (r) => r.call('CLUSTER', 'INFO')));
          if (!info.includes('cluster_state:ok')) return `${p} not ok`;
          const nodes = String(await withNode(p, (r) => r.call('CLUSTER', 'NODES')));
          if ((nodes.match(/[ ,]slave /g) ?? []).length !== 3) return `${p} does not see 3 replicas yet`;
        }
        return true;
      },
      { timeoutMs: 30_000 },
    );
    await loadKeys(addr(CREATED[0] as number), KEYS);
  });

  afterAll(async () => {
    for (const p of PORTS) await withNode(p, (r) => r.call('SHUTDOWN', 'NOSAVE')).catch(() => {});
    rmSync(dir, { recursive: true, force: true });
  });

  it('matching the spec, the plan is empty: it is never re-created', async () => {
    writeSpec(CREATED);
    const plan = await rcluster('plan', '-f', file, '--detailed-exitcode');
    expect(plan.err).toBe('');
    expect(plan.out).toContain('No changes.');
    expect(plan.code).toBe(0);
  });

  it('a node added to the spec joins as a replica of a master (add-node --slave), with no slot moves', async () => {
    writeSpec(PORTS);
    const applied = await rcluster('apply', '-f', file, '--auto-approve');
    expect({ code: applied.code, err: applied.err }).toEqual({ code: 0, err: '' });
    expect(applied.out).toContain(`meet ${addr(EXTRA)}`);
    expect(applied.out).toMatch(new RegExp(`make ${addr(EXTRA)} a replica of 127\\.0\\.0\\.1:746[1-6]`));
    expect(applied.out).not.toMatch(/move \d+ slot/);
    const info = await withNode(EXTRA, (r) => r.info('replication'));
    expect(info).toContain('role:slave');
    expect(info).toContain('master_link_status:up');
    // It joined with a short node timeout (Redis's rejoin delay); it has its own back, Redis's
    // default, which the redis-cli cluster runs with too.
    expect(await withNode(EXTRA, (r) => r.config('GET', 'cluster-node-timeout'))).toEqual(['cluster-node-timeout', '15000']);
    expect(await badKeys(addr(CREATED[0] as number), KEYS)).toEqual([]);
  });

  it('a node left with the short node timeout of a join (an apply cut off) gets the one the others run, live', async () => {
    await withNode(EXTRA, (r) => r.config('SET', 'cluster-node-timeout', '500'));
    const plan = await rcluster('plan', '-f', file, '--detailed-exitcode');
    expect(plan.code).toBe(2);
    expect(plan.out).toContain(`set cluster-node-timeout 15000 on ${addr(EXTRA)} live (no restart)`);
    const applied = await rcluster('apply', '-f', file, '--auto-approve');
    expect({ code: applied.code, err: applied.err }).toEqual({ code: 0, err: '' });
    expect(await withNode(EXTRA, (r) => r.config('GET', 'cluster-node-timeout'))).toEqual(['cluster-node-timeout', '15000']);
    expect((await rcluster('plan', '-f', file, '--detailed-exitcode')).code).toBe(0);
  });

  it('removed from the spec again, it is forgotten and reset (not stopped: connection none), and can join anew', async () => {
    writeSpec(CREATED);
    const applied = await rcluster('apply', '-f', file, '--auto-approve');
    expect({ code: applied.code, err: applied.err }).toEqual({ code: 0, err: '' });
    expect(applied.out).toContain(`forget ${addr(EXTRA)}`);
    // Still running, but alone: it knows only itself and holds no keys.
    const nodes = String(await withNode(EXTRA, (r) => r.call('CLUSTER', 'NODES')));
    expect(nodes.trim().split('\n')).toHaveLength(1);
    expect(await withNode(EXTRA, (r) => r.dbsize())).toBe(0);
    for (const p of CREATED) expect(String(await withNode(p, (r) => r.call('CLUSTER', 'NODES')))).not.toContain(`:${EXTRA}@`);
    const check = await redisCli(['--cluster', 'check', addr(CREATED[0] as number)]);
    expect(check.out).not.toMatch(/\[WARNING\]|\[ERR\]/);
    const again = await rcluster('plan', '-f', file, '--detailed-exitcode');
    expect(again.out).toContain('No changes.');
    expect(again.code).toBe(0);
  });

  it('a node with keys and slots of its own is refused; with --allow-reset the plan says what is wiped, and it joins empty', async () => {
    // Give the lone node a slot and a key of it: stale data from another life.
    const slot = Number(await withNode(EXTRA, (r) => r.call('CLUSTER', 'KEYSLOT', 'stale')));
    await withNode(EXTRA, async (r) => {
      // Alone with one slot it is "down" unless partial coverage is allowed.
      await r.call('CONFIG', 'SET', 'cluster-require-full-coverage', 'no');
      await r.call('CLUSTER', 'ADDSLOTS', String(slot));
      await waitFor('the lone node to serve its slot', async () => (String(await r.call('CLUSTER', 'INFO')).includes('cluster_state:ok') ? true : 'not yet'), { timeoutMs: 10_000 });
      await r.set('stale', 'x');
    });
    writeSpec(PORTS);
    const refused = await rcluster('plan', '-f', file);
    expect(refused.code).toBe(1);
    expect(refused.err).toContain(`${addr(EXTRA)} is not part of this cluster yet but owns slots ${slot}`);
    expect(refused.err).toContain('--allow-reset');

    const plan = await rcluster('plan', '-f', file, '--allow-reset');
    expect(plan.code).toBe(0);
    expect(plan.out).toContain(`- wipe ${addr(EXTRA)}: FLUSHALL (1 key(s)) and CLUSTER RESET HARD (it forgets no other node and slots ${slot}), so that it joins as a new, empty node`);
    const applied = await rcluster('apply', '-f', file, '--auto-approve', '--allow-reset');
    expect({ code: applied.code, err: applied.err }).toEqual({ code: 0, err: '' });
    expect(await withNode(EXTRA, (r) => r.info('replication'))).toContain('role:slave');
    expect(await badKeys(addr(CREATED[0] as number), KEYS)).toEqual([]);
    const again = await rcluster('plan', '-f', file, '--detailed-exitcode');
    expect(again.code).toBe(0);
  });
});
