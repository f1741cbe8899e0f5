import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REDACTED } from '../../src/live/auth.js';
import { badKeys, everySlot, keysOn, loadKeys } from '../support/keys.js';
import { writeThroughout } from '../support/traffic.js';
import { localSpec, ports, rcluster, redisCli, type CliResult } from './support.js';

// A cluster with a password, from create to a rotation, on local processes. Every output and
// every file of the run is kept and searched for the passwords at the end.
const PORTS = ports(7651, 7);
const SIX = PORTS.slice(0, 6);
const addr = (p: number) => `127.0.0.1:${p}`;
/** With a key in every slot, so that the slots moved to the new master carry keys. */
const KEYS = everySlot(20_000);
const FIRST = `pw1-${randomBytes(12).toString('hex')}`;
const SECOND = `pw2-${randomBytes(12).toString('hex')}`;
const STRANGER = `pw3-${randomBytes(12).toString('hex')}`;
const spec = localSpec('itest-pw', SIX);
const outputs: string[] = [];

function writeSpec(nodes: number[], redis: string[], extra: string[] = []): void {
  writeFileSync(spec.file, ['name: itest-pw', 'connection: local', 'replicasPerMaster: 1', ...extra, ...(redis.length > 0 ? ['redis:', ...redis.map((l) => `  ${l}`)] : []), 'nodes:', ...nodes.map((p) => `  - ${addr(p)}`), ''].join('\n'));
}

async function run(...args: string[]): Promise<CliResult> {
  const r = await rcluster(...args);
  outputs.push(r.out, r.err);
  return r;
}

/** One command on a node, logged in with `password` (or with none). */
async function on<T>(port: number, password: string | undefined, fn: (r: Redis) => Promise<T>): Promise<T> {
  const r = new Redis({ host: '127.0.0.1', port, lazyConnect: true, enableReadyCheck: false, maxRetriesPerRequest: 0, retryStrategy: () => null });
  r.on('error', () => {});
  try {
    await r.connect();
    // By hand, so that a refused password is the server's own reply.
    if (password) await r.call('AUTH', password);
    return await fn(r);
  } finally {
    r.disconnect();
  }
}

const ping = (port: number, password: string | undefined) => on(port, password, (r) => r.ping()).catch((err: Error) => err.message);

function filesUnder(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? filesUnder(join(dir, e.name)) : [join(dir, e.name)]));
}

describe('a cluster with a password (redis.passwordEnv)', () => {
  beforeAll(() => {
    process.env['RCLUSTER_TEST_PW'] = FIRST;
    writeSpec(SIX, ['passwordEnv: RCLUSTER_TEST_PW']);
  });

  afterAll(async () => {
    // Whichever password the nodes have now (a failed test may stop anywhere), destroy logs in.
    process.env['RCLUSTER_TEST_PW'] = SECOND;
    process.env['RCLUSTER_TEST_PW_OLD'] = FIRST;
    writeSpec(PORTS, ['passwordEnv: RCLUSTER_TEST_PW', 'previousPasswordEnv: RCLUSTER_TEST_PW_OLD'], ['masters: 4']);
    await rcluster('destroy', '-f', spec.file, '--auto-approve');
    delete process.env['RCLUSTER_TEST_PW'];
    delete process.env['RCLUSTER_TEST_PW_OLD'];
    spec.cleanup();
  });

  it('creates the cluster with requirepass and masterauth: replicas sync, nothing answers without the password, and the next plan is empty', async () => {
    const saved = join(spec.dir, 'create.plan.json');
    const plan = await run('plan', '-f', spec.file, '--out', saved);
    expect(plan.code).toBe(0);
    // With a password there is nothing to warn about.
    expect(plan.err).not.toMatch(/no password/);
    outputs.push(readFileSync(saved, 'utf8'));
    expect(readFileSync(saved, 'utf8')).toContain('"env": "RCLUSTER_TEST_PW"');
    const applied = await run('apply', saved, '--json');
    expect({ code: applied.code, err: applied.err }).toEqual({ code: 0, err: '' });

    expect(await ping(PORTS[0] as number, undefined)).toMatch(/NOAUTH/);
    expect(await ping(PORTS[0] as number, FIRST)).toBe('PONG');
    // Every replica's link is up: masterauth works.
    for (const p of SIX) {
      const info = await on(p, FIRST, (r) => r.info('replication'));
      if (/role:slave/.test(info)) expect(info).toMatch(/master_link_status:up/);
    }
    const check = await redisCli(['-a', FIRST, '--no-auth-warning', '--cluster', 'check', addr(PORTS[0] as number)]);
    expect(check.out).toContain('[OK] All 16384 slots covered.');
    // Files rcluster wrote with the password in them are readable by their owner only.
    for (const p of SIX) expect(statSync(join(spec.dir, '.rcluster', 'itest-pw', String(p), 'redis.conf')).mode & 0o777).toBe(0o600);

    const again = await run('plan', '-f', spec.file, '--detailed-exitcode');
    expect(again.code).toBe(0);
    const status = await run('status', '-f', spec.file, '--json');
    expect(status.code).toBe(0);
  });

  it('refuses clearly: no password given, a wrong one, an unset variable; nothing is changed', async () => {
    writeSpec(SIX, []);
    const none = await run('plan', '-f', spec.file);
    expect(none.code).toBe(1);
    expect(none.err).toContain(`${addr(SIX[0] as number)} requires a password (NOAUTH); give it to rcluster with redis.passwordEnv or redis.passwordFile`);

    writeSpec(SIX, ['passwordEnv: RCLUSTER_TEST_PW']);
    process.env['RCLUSTER_TEST_PW'] = STRANGER;
    const wrong = await run('apply', '-f', spec.file, '--auto-approve');
    expect(wrong.code).toBe(1);
    expect(wrong.err).toMatch(/refuses the password from \$RCLUSTER_TEST_PW; if the cluster still uses another password, give it as redis\.previousPasswordEnv/);
    expect(wrong.err).not.toMatch(/\n\s+at /);

    delete process.env['RCLUSTER_TEST_PW'];
    const unset = await run('plan', '-f', spec.file);
    expect(unset.code).toBe(1);
    expect(unset.err).toContain('redis.passwordEnv: $RCLUSTER_TEST_PW is not set (or empty) in rcluster\'s environment; nothing was contacted');
    process.env['RCLUSTER_TEST_PW'] = FIRST;
    expect(await ping(PORTS[0] as number, FIRST)).toBe('PONG');
  });

  it('moves slots to a new master with MIGRATE … AUTH', async () => {
    await loadKeys(addr(PORTS[0] as number), KEYS, 100, FIRST);
    writeSpec(PORTS, ['passwordEnv: RCLUSTER_TEST_PW'], ['masters: 4']);
    const applied = await run('apply', '-f', spec.file, '--auto-approve');
    // (The spec's warning: 7 nodes leave the fourth master without a replica.)
    expect({ code: applied.code, err: applied.err.replace(/^.*warning: 7 nodes are fewer.*$/m, '') }).toEqual({ code: 0, err: '' });
    const fourth = addr(PORTS[6] as number);
    const received = [...applied.out.matchAll(/move (\d+) slot\(s\) .* → (\S+)/g)].filter((m) => m[2] === fourth).reduce((n, m) => n + Number(m[1]), 0);
    expect(received).toBe(4096);
    // MIGRATE … AUTH carried keys: each slot moved holds at least one.
    expect(await keysOn(fourth, FIRST)).toBeGreaterThanOrEqual(received);
    expect(await badKeys(addr(PORTS[0] as number), KEYS, 100, FIRST)).toEqual([]);
    expect((await run('plan', '-f', spec.file, '--detailed-exitcode')).code).toBe(0);
  });

  it('rotates the password with no downtime: both are accepted while the previous one is in the spec, then only the new one', async () => {
    // A client on the old password writes throughout the first step.
    const writer = writeThroughout({ host: '127.0.0.1', port: PORTS[0] as number }, 'rot:', FIRST);
    process.env['RCLUSTER_TEST_PW'] = SECOND;
    process.env['RCLUSTER_TEST_PW_OLD'] = FIRST;
    writeSpec(PORTS, ['passwordEnv: RCLUSTER_TEST_PW', 'previousPasswordEnv: RCLUSTER_TEST_PW_OLD'], ['masters: 4']);
    const plan = await run('plan', '-f', spec.file);
    expect(plan.code).toBe(0);
    expect(plan.out).toContain('(the password from $RCLUSTER_TEST_PW; the previous one, from $RCLUSTER_TEST_PW_OLD, is accepted too)');
    expect(plan.out).toMatch(/-requirepass \(the previous password, from \$RCLUSTER_TEST_PW_OLD\)/);
    expect(plan.out).toContain('Plan: 7 node(s) to change live.');
    const applied = await run('apply', '-f', spec.file, '--auto-approve', '--json');
    expect({ code: applied.code, err: applied.err.replace(/^.*warning: 7 nodes are fewer.*$/m, '') }).toEqual({ code: 0, err: '' });
    for (const p of PORTS) {
      expect(await ping(p, SECOND)).toBe('PONG');
      expect(await ping(p, FIRST)).toBe('PONG');
      expect(await on(p, SECOND, (r) => r.config('GET', 'masterauth'))).toEqual(['masterauth', SECOND]);
    }
    const written = await writer.finish();
    expect(written.acked).toBeGreaterThan(0);
    expect(written.wrong).toEqual([]);
    expect((await run('plan', '-f', spec.file, '--detailed-exitcode')).code).toBe(0);

    // The rotation ends when the previous password leaves the spec: a live change, no restart.
    writeSpec(PORTS, ['passwordEnv: RCLUSTER_TEST_PW'], ['masters: 4']);
    const end = await run('plan', '-f', spec.file);
    expect(end.out).toContain('requirepass');
    expect(end.out).toContain('(accepts the password from $RCLUSTER_TEST_PW and 1 other password(s))');
    const ended = await run('apply', '-f', spec.file, '--auto-approve');
    expect({ code: ended.code, err: ended.err.replace(/^.*warning: 7 nodes are fewer.*$/m, '') }).toEqual({ code: 0, err: '' });
    for (const p of PORTS) {
      expect(await ping(p, SECOND)).toBe('PONG');
      expect(await ping(p, FIRST)).toMatch(/WRONGPASS/);
    }
    // Replication never broke: every replica is linked, and the data is whole.
    for (const p of PORTS) {
      const info = await on(p, SECOND, (r) => r.info('replication'));
      if (/role:slave/.test(info)) expect(info).toMatch(/master_link_status:up/);
    }
    expect(await badKeys(addr(PORTS[0] as number), KEYS, 100, SECOND)).toEqual([]);
    expect((await run('plan', '-f', spec.file, '--detailed-exitcode')).code).toBe(0);
  });

  it('never shows a password: not in any output, plan file, log or state file of the run', () => {
    const leaks: string[] = [];
    outputs.forEach((text, i) => {
      for (const pw of [FIRST, SECOND, STRANGER]) if (text.includes(pw)) leaks.push(`output #${i}`);
      // The CLI's last guard replaces a password with ********: finding that would mean some code
      // path put one in its text, and only the guard kept it out.
      if (text.includes(REDACTED)) leaks.push(`output #${i} (redacted by the last guard)`);
    });
    // redis.conf holds requirepass and masterauth by design (0600, checked above), and so does
    // its backup; every other file (plans, logs, node state) must not.
    for (const file of filesUnder(spec.dir)) {
      if (/redis\.conf(\.rcluster\.bak)?$/.test(file)) continue;
      const text = readFileSync(file, 'latin1');
      for (const pw of [FIRST, SECOND, STRANGER, REDACTED]) if (text.includes(pw)) leaks.push(file);
    }
    expect(outputs.length).toBeGreaterThan(15);
    expect(leaks).toEqual([]);
  });
});
