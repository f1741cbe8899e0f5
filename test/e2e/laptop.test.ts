import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestHosts, type Harness } from '../harness/index.js';
import { RUNBOOK_REDIS } from '../harness/spec.js';
import { rcluster } from '../integration/support.js';
import { badKeys, everySlot, keysOn, loadKeys } from '../support/keys.js';
import { tcpState } from '../support/tcp.js';

// From a laptop: the hosts are OpenSSH config aliases behind a bastion (host 51), and Redis is
// reached only through SSH (ssh.tunnel). The hosts are a datacenter (HarnessOptions.datacenter):
// from this process their Redis and cluster bus ports are refused, as behind a firewall that
// lets only SSH through, so an apply that dialled one would fail. Every TCP connection
// rcluster's process opens is recorded too: the only ones allowed are the bastion's sshd (the
// other hosts' sshd are reachable, but the ssh config says to go through the bastion) and
// rcluster's own local tunnel ends. The test's own checks go in through Harness.exec and
// Harness.intoDatacenter, which rcluster never sees.
const HOSTS = [51, 52, 53, 54, 55, 56];
const NEW = 58;
/** With a key in every slot, so that the slots moved to 58 cannot all be empty ones. */
const KEYS = everySlot(20_000);
const addr = (n: number) => `127.0.0.${n}`;
const portOf = (n: number) => 6300 + n;
const nodePort = (n: number) => (n === NEW ? 6379 : portOf(n));

function specText(nodes: number[], masters: number): string {
  return [
    'name: laptop-e2e',
    'connection: ssh',
    'ssh:',
    '  configFile: ./ssh_config',
    '  tunnel: true',
    'redis:',
    ...Object.entries(RUNBOOK_REDIS).map(([k, v]) => `  ${k}: ${v}`),
    'replicasPerMaster: 1',
    `masters: ${masters}`,
    'nodes:',
    ...nodes.map((n) => `  - { host: ${addr(n)}, port: ${nodePort(n)}, ssh: { host: db-${n} } }`),
    '',
  ].join('\n');
}

describe('from a laptop: ssh config aliases, a bastion, Redis through SSH', () => {
  let h: Harness;
  let dir: string;
  let file: string;
  const dialled: string[] = [];
  const original = Socket.prototype.connect;
  const writeSpec = (nodes: number[], masters: number) => writeFileSync(file, specText(nodes, masters));
  /** Every node's Redis and cluster bus port, as this process sees them. */
  const fromRunner = (nodes: number[]) =>
    Promise.all(nodes.flatMap((n) => [nodePort(n), nodePort(n) + 10000].map(async (p) => `${addr(n)}:${p} ${await tcpState(addr(n), p)}`)));
  const refused = (nodes: number[]) => nodes.flatMap((n) => [nodePort(n), nodePort(n) + 10000].map((p) => `${addr(n)}:${p} ECONNREFUSED`));
  /** `redis-cli --cluster check`, run on host 51 inside the datacenter, finds nothing wrong. */
  const expectClusterOk = async () => {
    const check = (await h.exec(51, `redis-cli --cluster check ${addr(51)}:${portOf(51)}`)).stdout;
    expect(check).toContain('[OK] All 16384 slots covered.');
    expect(check).not.toMatch(/\[WARNING\]|\[ERR\]/);
  };

  beforeAll(async () => {
    h = await startTestHosts([...HOSTS, NEW], { datacenter: true });
    dir = mkdtempSync(join(tmpdir(), 'rcluster-e2e-laptop-'));
    file = join(dir, 'cluster.yaml');
    const common = [`  User root`, `  IdentityFile ${h.identityFile}`, `  UserKnownHostsFile ${h.knownHostsFile}`];
    writeFileSync(
      join(dir, 'ssh_config'),
      [
        'Host bastion',
        `  HostName ${addr(51)}`,
        ...common,
        ...[...HOSTS, NEW].flatMap((n) => [`Host db-${n}`, `  HostName ${addr(n)}`, '  ProxyJump bastion']),
        'Host db-*',
        ...common,
        '',
      ].join('\n'),
    );
    writeSpec(HOSTS, 3);
    // Record every TCP destination this process dials while rcluster runs.
    Socket.prototype.connect = function (this: Socket, ...args: unknown[]) {
      const o = args[0] as { host?: string; port?: number } | number;
      if (typeof o === 'object' && o && o.port !== undefined) dialled.push(`${o.host ?? 'localhost'}:${o.port}`);
      else if (typeof o === 'number') dialled.push(`${String(args[1] ?? 'localhost')}:${o}`);
      return (original as (...a: unknown[]) => Socket).apply(this, args);
    } as typeof Socket.prototype.connect;
  });

  afterAll(async () => {
    Socket.prototype.connect = original;
    await h?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('plan and apply create the cluster; the only hosts dialled are the bastion and local tunnel ends', async () => {
    const plan = await rcluster('plan', '-f', file);
    expect(plan.err).toBe('');
    expect(plan.out).toContain('(connection: ssh; Redis through SSH tunnels)');
    const applied = await rcluster('apply', '-f', file, '--auto-approve');
    expect({ code: applied.code, err: applied.err }).toEqual({ code: 0, err: '' });
    const again = await rcluster('plan', '-f', file, '--detailed-exitcode');
    expect(again.code).toBe(0);
    const status = await rcluster('status', '-f', file);
    expect(status.code).toBe(0);

    const where = [...new Set(dialled)];
    expect(where).toContain(`${addr(51)}:22`);
    // Nothing else: no other host's sshd (they are behind the bastion).
    expect(where.filter((d) => d !== `${addr(51)}:22` && !/^127\.0\.0\.1:\d+$/.test(d))).toEqual([]);

    // The cluster works inside the datacenter, and none of its ports can be reached from here.
    await expectClusterOk();
    expect(await fromRunner(HOSTS)).toEqual(refused(HOSTS));
  });

  it('the scale-out (58 added as a master, 4096 slots with their keys) goes the same way', async () => {
    const seed = `${addr(51)}:${portOf(51)}`;
    await loadKeys(seed, KEYS, 100, undefined, h.intoDatacenter);
    expect(await keysOn(`${addr(NEW)}:6379`, undefined, h.intoDatacenter)).toBe(0);
    dialled.length = 0;
    writeSpec([...HOSTS, NEW], 4);
    const applied = await rcluster('apply', '-f', file, '--auto-approve');
    expect({ code: applied.code, err: applied.err.replace(/^.*warning: 7 nodes are fewer.*$/m, '') }).toEqual({ code: 0, err: '' });
    const moved = [...applied.out.matchAll(/move (\d+) slot\(s\) .* → 127\.0\.0\.58:6379/g)].reduce((n, m) => n + Number(m[1]), 0);
    expect(moved).toBe(4096);
    // What rcluster dialled (before this test's own checks dial anything).
    const where = [...new Set(dialled)].filter((d) => d !== `${addr(51)}:22` && !/^127\.0\.0\.1:\d+$/.test(d));
    expect(where).toEqual([]);
    // The slots came with their keys: each of 58's holds at least one.
    expect(await keysOn(`${addr(NEW)}:6379`, undefined, h.intoDatacenter)).toBeGreaterThanOrEqual(4096);
    expect(await badKeys(seed, KEYS, 100, undefined, h.intoDatacenter)).toEqual([]);
    expect((await rcluster('plan', '-f', file, '--detailed-exitcode')).code).toBe(0);
    await expectClusterOk();
    expect(await fromRunner([...HOSTS, NEW])).toEqual(refused([...HOSTS, NEW]));
  });

  it("a replica's host down behind the bastion: the plan says so, naming the host and the jump host, and plans nothing for it", async () => {
    // 54 is a replica (the runbook's create: 51-53 masters, 54-56 their replicas).
    await h.stopHost(54);
    try {
      const plan = await rcluster('plan', '-f', file, '--detailed-exitcode');
      expect({ code: plan.code, err: plan.err.replace(/^.*warning: 7 nodes are fewer.*$/m, '') }).toEqual({ code: 0, err: '' });
      expect(plan.out).toContain(`Down: ${addr(54)}:${portOf(54)}: host down (ssh: via jump host bastion: cannot reach ${addr(54)}:22 (connection refused)); it is a replica of`);
      expect(plan.out).toContain('No changes.');
    } finally {
      await h.startHost(54);
    }
  });
});
