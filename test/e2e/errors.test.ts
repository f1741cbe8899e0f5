import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startTestHosts, type Harness } from '../harness/index.js';
import { harnessSpec } from '../harness/spec.js';
import { rcluster } from '../integration/support.js';

// Each failure gives a one-line reason naming the host, exits 1, and changes nothing.
const HOSTS = [57, 58, 53];
const addr = (n: number) => `127.0.0.${n}`;
const NO_STACK = /^\s+at .+:\d+:\d+\)?$/m;

describe('SSH and host failures', () => {
  let h: Harness;
  let dir: string;

  function spec(o: { identityFile?: string; knownHostsFile?: string; hostKeyPolicy?: string; service?: string; config?: string } = {}): string {
    const file = join(dir, `spec-${Math.random().toString(36).slice(2)}.yaml`);
    writeFileSync(
      file,
      harnessSpec(h, {
        ...o,
        name: 'errors-e2e',
        redis: { configFile: '/etc/redis/6379.conf', service: o.service ?? '/etc/init.d/redis_6379', dataDir: '/var/lib/redis/6379' },
        config: o.config ? [o.config] : [],
        replicasPerMaster: 0,
        nodes: HOSTS.map((n) => `${addr(n)}:${6300 + n}`),
      }),
    );
    return file;
  }

  function confOf(n: number): string {
    return readFileSync(h.hosts.find((x) => x.n === n)!.path('/etc/redis/6379.conf'), 'utf8');
  }

  async function expectRefused(file: string, pattern: RegExp) {
    const r = await rcluster('plan', '-f', file);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(pattern);
    expect(r.err.trim().split('\n')).toHaveLength(1);
    expect(r.err).not.toMatch(NO_STACK);
    for (const n of HOSTS) if (h.isUp(n) && existsSync(h.hosts.find((x) => x.n === n)!.path('/etc/redis/6379.conf'))) expect(confOf(n)).toMatch(/^port 6379$/m);
  }

  beforeAll(async () => {
    h = await startTestHosts(HOSTS);
    dir = mkdtempSync(join(tmpdir(), 'rcluster-e2e-errors-'));
  });
  afterAll(async () => {
    await h?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });
  beforeEach(async () => {
    for (const n of HOSTS) await h.startHost(n);
  });

  it('a host whose sshd is stopped', async () => {
    await h.stopHost(58);
    await expectRefused(spec(), /^Error: 127\.0\.0\.58: ssh: connection refused/);
  });

  it('a wrong client key', async () => {
    const wrong = join(dir, 'wrong_key');
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', wrong]);
    await expectRefused(spec({ identityFile: wrong }), /^Error: 127\.0\.0\.(57|58|53): ssh: authentication refused for user root/);
  });

  it('a changed host key, with its fingerprint', async () => {
    await h.rotateHostKey(53);
    const fp = execFileSync('ssh-keygen', ['-lf', '-'], { input: `${addr(53)} ${h.hostPublicKey(53)}\n` }).toString().split(' ')[1];
    await expectRefused(spec(), new RegExp(`^Error: 127\\.0\\.0\\.53: ssh: HOST KEY CHANGED for 127\\.0\\.0\\.53: known SHA256:\\S+, offered ${fp?.replace(/[+/]/g, '\\$&')}`));
    await h.writeKnownHosts();
  });

  it('an unknown host key under strict is refused; accept-new records it', async () => {
    const known = join(dir, 'known_hosts_empty');
    writeFileSync(known, '');
    await expectRefused(spec({ knownHostsFile: known }), /^Error: 127\.0\.0\.(57|58|53): ssh: host key for 127\.0\.0\.(57|58|53) is not known \(SHA256:[A-Za-z0-9+/]+\)/);
    const r = await rcluster('plan', '-f', spec({ knownHostsFile: known, hostKeyPolicy: 'accept-new' }));
    expect(r.code).toBe(0);
    const lines = readFileSync(known, 'utf8').trim().split('\n');
    expect(lines.map((l) => l.split(' ')[0]).sort()).toEqual(HOSTS.map(addr).sort());
  });

  it('a missing config file', async () => {
    await h.exec(57, 'mv /etc/redis/6379.conf /etc/redis/6379.conf.moved');
    try {
      await expectRefused(spec(), /^Error: 127\.0\.0\.57: read \/etc\/redis\/6379\.conf: no such file/);
    } finally {
      await h.exec(57, 'mv /etc/redis/6379.conf.moved /etc/redis/6379.conf');
    }
  });

  it('a config file that cannot be written', async () => {
    // Read-only only inside host 58's mount namespace.
    expect((await h.exec(58, 'mount -o remount,bind,ro /etc/redis')).code).toBe(0);
    try {
      await expectRefused(spec(), /^Error: 127\.0\.0\.58: write \/etc\/redis\/6379\.conf: not writable by the SSH user/);
    } finally {
      await h.exec(58, 'mount -o remount,bind,rw /etc/redis');
    }
  });

  it('a standalone redis that holds keys is not turned into a cluster node', async () => {
    expect((await h.exec(57, 'redis-cli -h 127.0.0.57 -p 6379 set precious 1')).stdout.trim()).toBe('OK');
    try {
      await expectRefused(spec(), /^Error: 127\.0\.0\.57:6379 is a standalone redis holding 1 key\(s\); turning it into cluster node 127\.0\.0\.57:6357 would strand them/);
    } finally {
      await h.exec(57, 'redis-cli -h 127.0.0.57 -p 6379 del precious');
    }
  });

  it('a missing service command', async () => {
    await expectRefused(spec({ service: '/etc/init.d/redis_9999' }), /^Error: 127\.0\.0\.(57|58|53): service: \/etc\/init\.d\/redis_9999 is missing or not executable/);
  });

  it('redis failing to start: the step and host are named, with the last lines of its log', async () => {
    const file = spec({ config: 'maxmemory-policy: not-a-policy' });
    const r = await rcluster('apply', '-f', file, '--auto-approve', '--json');
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/Error: step failed: configure 127\.0\.0\.(57|58|53):\d+ and restart it as a cluster node through \/etc\/init\.d\/redis_6379 .*: 127\.0\.0\.(57|58|53): /);
    expect(r.err).toMatch(/maxmemory-policy|argument/i);
    expect(r.err).toContain('Run `rcluster plan -f');
    expect(r.err).not.toMatch(NO_STACK);
    // The file was replaced whole, with a backup beside it; no temp file is left.
    const host = h.hosts.find((x) => x.n === 57)!;
    expect(confOf(57)).toMatch(/^maxmemory-policy not-a-policy$/m);
    expect(existsSync(host.path('/etc/redis/6379.conf.rcluster.bak'))).toBe(true);
    expect((await h.exec(57, 'ls /etc/redis')).stdout.split('\n').filter((f) => f.includes('rcluster-tmp'))).toEqual([]);
  });
});
