import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestHosts, type Harness } from '../harness/index.js';
import { RUNBOOK_REDIS } from '../harness/spec.js';
import { rcluster, redisCli } from '../integration/support.js';

// From a laptop: the hosts are OpenSSH config aliases behind a bastion (host 51), and Redis is
// reached only through SSH (ssh.tunnel). Every TCP connection rcluster's process opens is
// recorded: the only ones allowed are the bastion's sshd and rcluster's own local tunnel ends.
const HOSTS = [51, 52, 53, 54, 55, 56];
const addr = (n: number) => `127.0.0.${n}`;
const portOf = (n: number) => 6300 + n;

describe('from a laptop: ssh config aliases, a bastion, Redis through SSH', () => {
  let h: Harness;
  let dir: string;
  let file: string;
  const dialled: string[] = [];
  const original = Socket.prototype.connect;

  beforeAll(async () => {
    h = await startTestHosts(HOSTS);
    dir = mkdtempSync(join(tmpdir(), 'rcluster-e2e-laptop-'));
    file = join(dir, 'cluster.yaml');
    const common = [`  User root`, `  IdentityFile ${h.identityFile}`, `  UserKnownHostsFile ${h.knownHostsFile}`];
    writeFileSync(
      join(dir, 'ssh_config'),
      [
        'Host bastion',
        `  HostName ${addr(51)}`,
        ...common,
        ...HOSTS.flatMap((n) => [`Host db-${n}`, `  HostName ${addr(n)}`, '  ProxyJump bastion']),
        'Host db-*',
        ...common,
        '',
      ].join('\n'),
    );
    writeFileSync(
      file,
      [
        'name: laptop-e2e',
        'connection: ssh',
        'ssh:',
        '  configFile: ./ssh_config',
        '  tunnel: true',
        'redis:',
        ...Object.entries(RUNBOOK_REDIS).map(([k, v]) => `  ${k}: ${v}`),
        'replicasPerMaster: 1',
        'nodes:',
        ...HOSTS.map((n) => `  - { host: ${addr(n)}, port: ${portOf(n)}, ssh: { host: db-${n} } }`),
        '',
      ].join('\n'),
    );
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
    // Nothing else: no other host's sshd (they are behind the bastion), and no Redis port.
    expect(where.filter((d) => d !== `${addr(51)}:22` && !/^127\.0\.0\.1:\d+$/.test(d))).toEqual([]);
    const redisPorts = new Set([6379, ...HOSTS.map(portOf)]);
    expect(where.filter((d) => redisPorts.has(Number(d.split(':').pop())))).toEqual([]);

    const check = await redisCli(['--cluster', 'check', `${addr(51)}:${portOf(51)}`]);
    expect(check.out).toContain('[OK] All 16384 slots covered.');
    expect(check.out).not.toMatch(/\[WARNING\]|\[ERR\]/);
  });
});
