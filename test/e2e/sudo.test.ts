import { mkdtempSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestHosts, type Harness } from '../harness/index.js';
import { RUNBOOK_REDIS } from '../harness/spec.js';
import { rcluster, redisCli } from '../integration/support.js';
import { badKeys, everySlot, keysOn, loadKeys } from '../support/keys.js';

// The runbook's create as a non-root SSH user with sudo, on hosts whose redis.conf and data
// directory belong to the redis user, one of them without the sftp subsystem; every SSH session
// is logged by the hosts' sshd, and a run must open at most 3 per host.
const HOSTS = [51, 52, 53, 54, 55, 56];
/** Added as a fourth master; like 56, it has no sftp subsystem. */
const NEW = 58;
/** With a key in every slot, so that the slots moved to 58 cannot all be empty ones. */
const KEYS = everySlot(20_000);
const USER = 'rcl-deploy';
const SUDOERS = `/etc/sudoers.d/rcluster-harness-${USER}`;
const addr = (n: number) => `127.0.0.${n}`;
const portOf = (n: number) => 6300 + n;

describe('a non-root SSH user with sudo, redis-owned files, no sftp on one host, few sessions', () => {
  let h: Harness;
  let dir: string;
  let file: string;

  beforeAll(async () => {
    h = await startTestHosts([...HOSTS, NEW], { sessionLog: true, user: { name: USER, sudo: 'nopasswd' }, redisOwned: true, noSftp: [56, NEW] });
    dir = mkdtempSync(join(tmpdir(), 'rcluster-e2e-sudo-'));
    file = join(dir, 'cluster.yaml');
    writeSpec(HOSTS, 3);
  });

  const writeSpec = (nodes: number[], masters: number) =>
    writeFileSync(
      file,
      [
        'name: sudo-e2e',
        'connection: ssh',
        'ssh:',
        `  user: ${USER}`,
        '  become: sudo',
        `  identityFile: ${h.identityFile}`,
        `  knownHostsFile: ${h.knownHostsFile}`,
        'redis:',
        ...Object.entries(RUNBOOK_REDIS).map(([k, v]) => `  ${k}: ${v}`),
        'replicasPerMaster: 1',
        `masters: ${masters}`,
        'nodes:',
        ...nodes.map((n) => `  - ${addr(n)}:${n === NEW ? 6379 : portOf(n)}`),
        '',
      ].join('\n'),
    );

  afterAll(async () => {
    await h?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** Sessions each host's sshd saw during `fn`. */
  async function sessionsDuring(fn: () => Promise<void>): Promise<Record<number, number>> {
    for (const n of HOSTS) h.clearSessions(n);
    await fn();
    return Object.fromEntries(HOSTS.map((n) => [n, h.sessions(n).length]));
  }

  it('a sudo that asks for a password is refused at once, naming the host', async () => {
    renameSync(SUDOERS, `${SUDOERS}.off`);
    try {
      const plan = await rcluster('plan', '-f', file);
      expect(plan.code).toBe(1);
      expect(plan.err).toMatch(new RegExp(`^Error: 127\\.0\\.0\\.5\\d: ssh: ssh\\.become: sudo asks ${USER} for a password on this host; rcluster needs sudo without a password \\(NOPASSWD\\)`, 'm'));
      expect(plan.err).not.toMatch(/\n\s+at /);
    } finally {
      renameSync(`${SUDOERS}.off`, SUDOERS);
    }
  });

  it('plan and apply work through sudo, with at most 3 SSH sessions per host each; files keep their owner and mode', async () => {
    let planned = { code: -1, err: '' };
    const planSessions = await sessionsDuring(async () => {
      planned = await rcluster('plan', '-f', file);
    });
    expect(planned).toMatchObject({ code: 0, err: '' });
    let applied = { code: -1, err: '' };
    const applySessions = await sessionsDuring(async () => {
      applied = await rcluster('apply', '-f', file, '--auto-approve');
    });
    expect({ code: applied.code, err: applied.err }).toEqual({ code: 0, err: '' });
    for (const n of HOSTS) {
      expect(planSessions[n], `plan, host ${n}`).toBeGreaterThanOrEqual(1);
      expect(planSessions[n], `plan, host ${n}`).toBeLessThanOrEqual(3);
      expect(applySessions[n], `apply, host ${n}`).toBeLessThanOrEqual(3);
      // Every session ran rcluster's shell as root through sudo.
      for (const s of h.sessions(n)) expect(s.command).toBe('sudo -n sh');
    }
    for (const n of HOSTS) {
      const host = h.hosts.find((x) => x.n === n)!;
      const conf = statSync(host.path('/etc/redis/6379.conf'));
      const before = statSync(host.path('/var/lib/redis'));
      expect({ uid: conf.uid, gid: conf.gid, mode: conf.mode & 0o777 }).toEqual({ uid: before.uid, gid: before.gid, mode: 0o640 });
      expect(before.uid).not.toBe(0);
    }
    const check = await redisCli(['--cluster', 'check', `${addr(51)}:${portOf(51)}`]);
    expect(check.out).toContain('[OK] All 16384 slots covered.');
    expect((await rcluster('plan', '-f', file, '--detailed-exitcode')).code).toBe(0);
  });

  it('the scale-out through sudo, onto a host without sftp: 58 becomes a master, 4096 slots move with their keys, still at most 3 sessions per host', async () => {
    const seed = `${addr(51)}:${portOf(51)}`;
    await loadKeys(seed, KEYS);
    expect(await keysOn(`${addr(NEW)}:6379`)).toBe(0);
    writeSpec([...HOSTS, NEW], 4);
    for (const n of [...HOSTS, NEW]) h.clearSessions(n);
    const applied = await rcluster('apply', '-f', file, '--auto-approve');
    expect({ code: applied.code, err: applied.err.replace(/^.*warning: 7 nodes are fewer.*$/m, '') }).toEqual({ code: 0, err: '' });
    const moved = [...applied.out.matchAll(/move (\d+) slot\(s\) .* → 127\.0\.0\.58:6379/g)].reduce((n, m) => n + Number(m[1]), 0);
    expect(moved).toBe(4096);
    for (const n of [...HOSTS, NEW]) expect(h.sessions(n).length, `host ${n}`).toBeLessThanOrEqual(3);
    const conf = statSync(h.hosts.find((x) => x.n === NEW)!.path('/etc/redis/6379.conf'));
    expect(conf.mode & 0o777).toBe(0o640);
    expect(conf.uid).not.toBe(0);
    // The slots came with their keys: each of 58's holds at least one.
    expect(await keysOn(`${addr(NEW)}:6379`)).toBeGreaterThanOrEqual(4096);
    expect(await badKeys(seed, KEYS)).toEqual([]);
    expect((await rcluster('plan', '-f', file, '--detailed-exitcode')).code).toBe(0);
  });
});
