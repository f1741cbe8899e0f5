import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestHosts, type Harness } from '../harness/index.js';
import { harnessSpec } from '../harness/spec.js';
import { rcluster } from '../integration/support.js';

// Two nodes per host through {port} in the path fields, as utils/install_server.sh lays out a
// second instance: /etc/redis/<port>.conf, /etc/init.d/redis_<port>, /var/lib/redis/<port>.
const HOSTS = [51, 52, 53];
const PORTS = [6361, 6362];
const addr = (n: number) => `127.0.0.${n}`;

describe('several nodes per host', () => {
  let h: Harness;
  let dir: string;
  let file: string;

  beforeAll(async () => {
    h = await startTestHosts(HOSTS);
    for (const n of HOSTS) {
      for (const p of PORTS) {
        // A second instance installed but not started yet, and without its data directory:
        // provisioning creates it.
        const r = await h.exec(
          n,
          [
            `sed -e 's/^port 6379$/port ${p}/' -e 's/6379/${p}/g' /etc/redis/6379.conf > /etc/redis/${p}.conf`,
            `sed -e 's/^REDISPORT=6379$/REDISPORT=${p}/' /etc/init.d/redis_6379 > /etc/init.d/redis_${p}`,
            `chmod +x /etc/init.d/redis_${p}`,
          ].join(' && '),
        );
        expect(r.code).toBe(0);
      }
    }
    dir = mkdtempSync(join(tmpdir(), 'rcluster-e2e-multi-'));
    file = join(dir, 'cluster.yaml');
    writeFileSync(
      file,
      harnessSpec(h, {
        name: 'multi-e2e',
        redis: { configFile: '/etc/redis/{port}.conf', service: '/etc/init.d/redis_{port}', dataDir: '/var/lib/redis/{port}' },
        nodes: HOSTS.flatMap((n) => PORTS.map((p) => `${addr(n)}:${p}`)),
      }),
    );
  });

  afterAll(async () => {
    await h?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('each node gets its own file and service; masters and their replicas land on different hosts', async () => {
    const plan = await rcluster('plan', '-f', file);
    expect(plan.code).toBe(0);
    for (const p of PORTS) expect(plan.out).toContain(`--- a/etc/redis/${p}.conf`);
    expect(plan.out).toContain(`configure ${addr(52)}:6362 and restart it as a cluster node through /etc/init.d/redis_6362 (not running)`);

    const applied = await rcluster('apply', '-f', file, '--auto-approve', '--json');
    expect(applied.err).toBe('');
    expect(applied.code).toBe(0);
    for (const n of HOSTS) {
      for (const p of PORTS) {
        const conf = readFileSync(h.hosts.find((x) => x.n === n)!.path(`/etc/redis/${p}.conf`), 'utf8');
        expect(conf).toMatch(new RegExp(`^cluster-config-file nodes-${p}\\.conf$`, 'm'));
        expect(conf).toMatch(new RegExp(`^dir /var/lib/redis/${p}$`, 'm'));
        expect(readFileSync(h.hosts.find((x) => x.n === n)!.path(`/var/lib/redis/${p}/nodes-${p}.conf`), 'utf8')).toContain('myself');
      }
    }
    const status = JSON.parse((await rcluster('status', '-f', file, '--json')).out) as { healthy: boolean; masters: { address: string; replicas: { address: string }[] }[] };
    expect(status.healthy).toBe(true);
    const hostOf = (a: string) => a.split(':')[0];
    expect(new Set(status.masters.map((m) => hostOf(m.address))).size).toBe(3);
    for (const m of status.masters) {
      expect(m.replicas).toHaveLength(1);
      expect(hostOf(m.replicas[0]!.address)).not.toBe(hostOf(m.address));
    }
    expect((await rcluster('plan', '-f', file, '--detailed-exitcode')).code).toBe(0);
  });
});
