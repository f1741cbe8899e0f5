import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestHosts, type Harness } from '../harness/index.js';
import { harnessSpec, RUNBOOK_REDIS } from '../harness/spec.js';
import { rcluster, redisCli, type CliResult } from '../integration/support.js';

// The runbook's create with a password, over SSH: node N on 127.0.0.5N:635N replaces the
// standalone redis on :6379, one of which has a password of its own in its config file.
const HOSTS = [51, 52, 53, 54, 55, 56];
const addr = (n: number) => `127.0.0.${n}`;
const portOf = (n: number) => 6300 + n;
const PASSWORD = `e2e-${randomBytes(12).toString('hex')}`;
const STANDALONE = `own-${randomBytes(12).toString('hex')}`;

describe('a password over SSH (redis.passwordFile)', () => {
  let h: Harness;
  let dir: string;
  let file: string;
  const outputs: string[] = [];
  const run = async (...args: string[]): Promise<CliResult> => {
    const r = await rcluster(...args);
    outputs.push(r.out, r.err);
    return r;
  };

  beforeAll(async () => {
    h = await startTestHosts(HOSTS);
    dir = mkdtempSync(join(tmpdir(), 'rcluster-e2e-pw-'));
    file = join(dir, 'cluster.yaml');
    writeFileSync(join(dir, 'redis.secret'), `${PASSWORD}\n`, { mode: 0o600 });
    writeFileSync(
      file,
      harnessSpec(h, { name: 'pw-e2e', redis: { ...RUNBOOK_REDIS, passwordFile: './redis.secret' }, replicasPerMaster: 1, nodes: HOSTS.map((n) => `${addr(n)}:${portOf(n)}`) }),
    );
    // Host 51's standalone redis has a password of its own (in its file and running) and a key.
    const set = await h.exec(
      51,
      [
        `redis-cli -h ${addr(51)} -p 6379 CONFIG SET requirepass ${STANDALONE}`,
        `REDISCLI_AUTH=${STANDALONE} redis-cli -h ${addr(51)} -p 6379 SET precious 1`,
        `echo 'requirepass ${STANDALONE}' >> /etc/redis/6379.conf`,
      ].join(' && '),
    );
    expect(set.code).toBe(0);
  });

  afterAll(async () => {
    await h?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("counts a standalone redis's keys with its own file's password, and refuses to replace it", async () => {
    const plan = await run('plan', '-f', file);
    expect(plan.code).toBe(1);
    expect(plan.err).toContain(`${addr(51)}:6379 is a standalone redis holding 1 key(s)`);
    const flushed = await h.exec(51, `REDISCLI_AUTH=${STANDALONE} redis-cli -h ${addr(51)} -p 6379 FLUSHALL`);
    expect(flushed.stdout.trim()).toBe('OK');
  });

  it('creates the cluster with the password: its diff names the file, replicas sync, and the next plan is empty', async () => {
    const plan = await run('plan', '-f', file);
    expect(plan.code).toBe(0);
    expect(plan.out).not.toContain('Warning: the cluster has no password');
    expect(plan.out).not.toContain('+protected-mode no');
    expect(plan.out).toContain(`-requirepass (another password)`);
    expect(plan.out).toContain(`+requirepass (the password from file ${join(dir, 'redis.secret')})`);
    expect(plan.out.match(/^ +\+masterauth \(the password from file .*\)$/gm)).toHaveLength(6);

    const applied = await run('apply', '-f', file, '--auto-approve', '--json');
    expect({ code: applied.code, err: applied.err }).toEqual({ code: 0, err: '' });
    for (const n of HOSTS) {
      const conf = readFileSync(h.hosts.find((x) => x.n === n)!.path('/etc/redis/6379.conf'), 'utf8');
      expect(conf).toMatch(new RegExp(`^requirepass ${PASSWORD}$`, 'm'));
      expect(conf).toMatch(new RegExp(`^masterauth ${PASSWORD}$`, 'm'));
    }
    const noauth = await redisCli(['-h', addr(51), '-p', String(portOf(51)), 'PING']);
    expect(noauth.out + noauth.err).toMatch(/NOAUTH/);
    const check = await redisCli(['-a', PASSWORD, '--no-auth-warning', '--cluster', 'check', `${addr(51)}:${portOf(51)}`]);
    expect(check.out).toContain('[OK] All 16384 slots covered.');
    expect(check.out).not.toMatch(/\[WARNING\]|\[ERR\]/);
    const again = await run('plan', '-f', file, '--detailed-exitcode');
    expect(again.code).toBe(0);
    expect((await run('status', '-f', file)).code).toBe(0);
  });

  it('shows neither password in any output, nor in any file but the nodes\' redis.conf', () => {
    expect(outputs.filter((o) => o.includes(PASSWORD) || o.includes(STANDALONE) || o.includes('********'))).toEqual([]);
    const files = readdirSync(dir).filter((f) => f !== 'redis.secret');
    for (const f of files) expect(readFileSync(join(dir, f), 'utf8')).not.toContain(PASSWORD);
  });
});
