import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { Cluster } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { answers, localSpec, ports, rcluster, rclusterBin, redisCli, withNode } from './support.js';

// The README's first command, on ports of its own: from nothing to a healthy 3+3 cluster.
const PORTS = ports(7101, 6);
const spec = localSpec('itest-create', PORTS);

describe('apply on a local spec from nothing', () => {
  let applied: Awaited<ReturnType<typeof rclusterBin>>;

  beforeAll(async () => {
    applied = await rclusterBin(['apply', '-f', spec.file, '--auto-approve']);
  });

  afterAll(async () => {
    await rcluster('destroy', '-f', spec.file, '--auto-approve');
    spec.cleanup();
  });

  it('exits 0 and shows the plan, then progress, then completion', () => {
    expect(applied.err).toBe('');
    expect(applied.code).toBe(0);
    expect(applied.out).toContain('+ start 127.0.0.1:7101 (not running)');
    expect(applied.out).toContain('+ assign slots 0-5460 (5461) to 127.0.0.1:7101');
    expect(applied.out).toMatch(/Plan: 6 node\(s\) to provision, 5 to meet, 16384 slot\(s\) to assign, 3 replica\(s\) to attach\./);
    expect(applied.out).toMatch(/Wait for replicas to sync/);
    expect(applied.out).toMatch(/Apply complete: 26 step\(s\) in /);
  });

  it('every node reports cluster_state:ok with 3 masters and 3 synced replicas', async () => {
    const roles = await Promise.all(
      PORTS.map((p) =>
        withNode(p, async (r) => {
          const info = String(await r.call('CLUSTER', 'INFO'));
          expect(info).toContain('cluster_state:ok');
          expect(info).toContain('cluster_known_nodes:6');
          const repl = await r.info('replication');
          return { port: p, role: /role:(\w+)/.exec(repl)?.[1], link: /master_link_status:(\w+)/.exec(repl)?.[1], masterPort: /master_port:(\d+)/.exec(repl)?.[1] };
        }),
      ),
    );
    expect(roles.filter((r) => r.role === 'master').map((r) => r.port)).toEqual([7101, 7102, 7103]);
    expect(roles.filter((r) => r.role === 'slave').map((r) => [r.port, Number(r.masterPort), r.link])).toEqual([
      [7104, 7101, 'up'],
      [7105, 7102, 'up'],
      [7106, 7103, 'up'],
    ]);
  });

  it('a key set through one node with redis-cli -c redirects is read back through another', async () => {
    const set = await redisCli(['-c', '-p', '7101', 'set', 'x', '1']);
    expect(set.out.trim()).toBe('OK');
    const get = await redisCli(['-c', '-p', '7103', 'get', 'x']);
    expect(get.out.trim()).toBe('1');
    // A real cluster client spreads 200 keys over every master.
    const cluster = new Cluster([{ host: '127.0.0.1', port: 7102 }], { lazyConnect: true });
    try {
      await cluster.connect();
      await Promise.all(Array.from({ length: 200 }, (_, i) => cluster.set(`key:${i}`, String(i))));
      const values = await Promise.all(Array.from({ length: 200 }, (_, i) => cluster.get(`key:${i}`)));
      expect(values).toEqual(Array.from({ length: 200 }, (_, i) => String(i)));
      const perMaster = await Promise.all([7101, 7102, 7103].map((p) => withNode(p, (r) => r.dbsize())));
      expect(perMaster.every((n) => n > 0)).toBe(true);
      expect(perMaster.reduce((a, b) => a + b, 0)).toBe(201);
    } finally {
      cluster.disconnect();
    }
  });

  it('a second plan is empty and --detailed-exitcode exits 0', async () => {
    const plan = await rclusterBin(['plan', '-f', spec.file, '--detailed-exitcode']);
    expect(plan.code).toBe(0);
    expect(plan.out).toContain('No changes.');
    const json = await rcluster('plan', '-f', spec.file, '--json');
    expect(JSON.parse(json.out)).toMatchObject({ changes: false, steps: [] });
  });

  it('status shows 3 masters with 5461/5462/5461 slots and one replica each, and exits 0', async () => {
    const status = await rcluster('status', '-f', spec.file, '--json');
    expect(status.code).toBe(0);
    const s = JSON.parse(status.out) as { healthy: boolean; masters: { address: string; slots: number; replicas: { address: string }[] }[] };
    expect(s.healthy).toBe(true);
    expect(s.masters.map((m) => [m.address, m.slots, m.replicas.map((r) => r.address)])).toEqual([
      ['127.0.0.1:7101', 5461, ['127.0.0.1:7104']],
      ['127.0.0.1:7102', 5462, ['127.0.0.1:7105']],
      ['127.0.0.1:7103', 5461, ['127.0.0.1:7106']],
    ]);
    const human = await rclusterBin(['status', '-f', spec.file]);
    expect(human.code).toBe(0);
    expect(human.out).toContain('[OK] 16384 of 16384 slots covered');
    expect(human.out).toContain('Healthy.');
  });

  it('destroy stops every node and removes every directory', async () => {
    const destroyed = await rclusterBin(['destroy', '-f', spec.file, '--auto-approve']);
    expect(destroyed.code).toBe(0);
    expect(destroyed.out).toContain('Destroy: 6 node(s) to stop, 6 path(s) to delete.');
    for (const p of PORTS) expect(await answers(p)).toBe(false);
    expect(existsSync(join(spec.dir, '.rcluster'))).toBe(false);
    expect(readdirSync(spec.dir)).toEqual(['cluster.yaml']);
    const again = await rcluster('destroy', '-f', spec.file, '--auto-approve');
    expect(again.code).toBe(0);
    expect(again.out).toContain('Nothing to destroy');
  });
});
