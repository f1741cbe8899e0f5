import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { UsageError } from '../../src/errors.js';
import { maskConfigText, migrateAuthArgs, scrubSecrets, useCredentials, REDACTED } from '../../src/live/auth.js';
import type { LiveCluster } from '../../src/live/types.js';
import { computePlan } from '../../src/plan/diff.js';
import { serializePlan } from '../../src/plan/file.js';
import { renderPlan } from '../../src/render/plan.js';
import { loadCredentials } from '../../src/spec/secrets.js';
import { addresses, healthyCluster, specFrom } from './support/liveBuilder.js';

const NEW = 'new-secret-0123456789';
const OLD = 'old-secret-9876543210';

afterEach(() => useCredentials(undefined));

function sshSpec(redis: string[]) {
  return specFrom(['name: unit', 'connection: ssh', 'redis:', ...redis.map((l) => `  ${l}`), 'nodes:', ...addresses(6).map((a) => `  - ${a}`), ''].join('\n'));
}

describe('loadCredentials: the password is read before anything is contacted', () => {
  const dir = mkdtempSync(join(tmpdir(), 'rcluster-secrets-'));
  afterEach(() => rmSync(join(dir, 'pw'), { force: true }));

  it('reads a variable, and a file without its trailing newline', async () => {
    expect(await loadCredentials(sshSpec(['passwordEnv: PW']), { PW: NEW })).toEqual({ password: NEW, source: '$PW' });
    writeFileSync(join(dir, 'pw'), `${NEW}\n`);
    const c = await loadCredentials(sshSpec([`passwordFile: ${join(dir, 'pw')}`, 'previousPasswordEnv: OLD']), { OLD });
    expect(c).toEqual({ password: NEW, source: `file ${join(dir, 'pw')}`, previous: OLD, previousSource: '$OLD' });
  });

  it.each([
    ['an unset variable', ['passwordEnv: PW'], {}, 'redis.passwordEnv: $PW is not set (or empty) in rcluster\'s environment; nothing was contacted'],
    ['a missing file', ['passwordFile: /nonexistent/pw'], {}, 'redis.passwordFile: /nonexistent/pw: cannot read it (no such file); nothing was contacted'],
    ['a short password', ['passwordEnv: PW'], { PW: 'short' }, 'the password is shorter than 8 characters'],
    ['a password with a space', ['passwordEnv: PW'], { PW: 'with a space' }, 'printable ASCII without spaces, quotes or backslashes'],
    ['the same password twice', ['passwordEnv: PW', 'previousPasswordEnv: OLD'], { PW: NEW, OLD: NEW }, 'it holds the same password as redis.passwordEnv'],
  ])('refuses %s with a usage error', async (_what, redis, env, message) => {
    const err = await loadCredentials(sshSpec(redis), env).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UsageError);
    expect((err as Error).message).toContain(message);
  });
});

describe('what a password looks like in text', () => {
  it('a config file shows what each password is, never its value', () => {
    useCredentials({ password: NEW, source: '$PW', previous: OLD, previousSource: '$OLD' });
    expect(maskConfigText(`port 7001\nrequirepass ${OLD}\nmasterauth "${NEW}"\n  requirepass someone-elses\n`)).toBe(
      'port 7001\nrequirepass (the previous password, from $OLD)\nmasterauth (the password from $PW)\n  requirepass (another password)\n',
    );
    expect(scrubSecrets(`ERR Error in ACL SETUSER modifier '>${NEW}'`)).toBe(`ERR Error in ACL SETUSER modifier '>${REDACTED}'`);
  });

  it('MIGRATE logs in to its target with the password the target took', () => {
    expect(migrateAuthArgs('127.0.0.1:7001')).toEqual([]);
    useCredentials({ password: NEW, source: '$PW' });
    expect(migrateAuthArgs('127.0.0.1:7001')).toEqual(['AUTH', NEW]);
  });
});

describe('plans that set or rotate a password', () => {
  /** A healthy SSH cluster whose config files hold `requirepass`/`masterauth` = `filePassword`. */
  function liveWith(filePassword: string | undefined, auth: NonNullable<LiveCluster['nodes'][number]['auth']>): LiveCluster {
    const live = healthyCluster();
    for (const n of live.nodes) {
      const pw = filePassword ? `requirepass ${filePassword}\nmasterauth ${filePassword}\n` : '';
      n.facts = {
        configFile: '/etc/redis/6379.conf',
        configText: `port ${n.port}\nbind ${n.host}\ncluster-enabled yes\ncluster-config-file nodes-{port}.conf\ncluster-node-timeout 5000\ndir /var/lib/redis/{port}\nrepl-diskless-sync-max-replicas 1\n${pw}`
          .replaceAll('{port}', String(n.port)),
        serviceExists: true,
        configWritable: true,
        redisVersion: '7.0.15',
      };
      n.auth = auth;
    }
    return live;
  }

  it('a rotation is a live change on every node; the plan, its JSON and its file name the source only', () => {
    const desired = sshSpec(['passwordEnv: PW', 'previousPasswordEnv: OLD']);
    useCredentials({ password: NEW, source: '$PW', previous: OLD, previousSource: '$OLD' });
    const live = liveWith(OLD, { acceptedBy: 'previous', accepts: { password: false, previous: true, others: 0, nopass: false }, passwordsOk: false, masterauthOk: false });
    const plan = computePlan(desired, live, new Date(0));
    expect(plan.steps.map((s) => s.kind)).toEqual(Array(6).fill('set_config'));
    const step = plan.steps[0] as Extract<(typeof plan.steps)[number], { kind: 'set_config' }>;
    expect(step.config.changed).toEqual([
      { directive: 'requirepass', from: '(the previous password, from $OLD)', to: '(the password from $PW; the previous one, from $OLD, is accepted too)', secret: true },
      { directive: 'masterauth', from: '(the previous password, from $OLD)', to: '(the password from $PW)', secret: true },
    ]);
    // Without the CLI's last guard: the plan itself holds no password.
    for (const text of [JSON.stringify(plan), renderPlan(plan), serializePlan(plan)]) {
      expect(text).not.toContain(NEW);
      expect(text).not.toContain(OLD);
      expect(text).not.toContain(REDACTED);
    }
    expect(renderPlan(plan)).toContain('+requirepass (the password from $PW)');
  });

  it('the end of a rotation changes only what the nodes accept; the files already say it', () => {
    const desired = sshSpec(['passwordEnv: PW']);
    useCredentials({ password: NEW, source: '$PW' });
    const live = liveWith(NEW, { acceptedBy: 'password', accepts: { password: true, previous: false, others: 1, nopass: false }, passwordsOk: false, masterauthOk: true });
    const plan = computePlan(desired, live, new Date(0));
    const step = plan.steps[0] as Extract<(typeof plan.steps)[number], { kind: 'set_config' }>;
    expect(step.config).toMatchObject({ diff: '', changed: [{ directive: 'requirepass', from: '(accepts the password from $PW and 1 other password(s))', to: '(the password from $PW)', secret: true }] });
    expect(renderPlan(plan)).toContain('~ set requirepass (accepts the password from $PW and 1 other password(s)) → (the password from $PW) on 127.0.0.1:7001 live (no restart)');
  });

  it('adding a password to a running cluster warns that clients must then send it, and drops the protected-mode warning', () => {
    const desired = sshSpec(['passwordEnv: PW']);
    useCredentials({ password: NEW, source: '$PW' });
    const live = liveWith(undefined, { acceptedBy: 'none', accepts: { password: false, previous: false, others: 0, nopass: true }, passwordsOk: false, masterauthOk: false });
    const plan = computePlan(desired, live, new Date(0));
    expect(plan.steps.map((s) => s.kind)).toEqual(Array(6).fill('set_config'));
    expect(plan.warnings).toEqual(['6 running node(s) have no password yet (127.0.0.1:7001, 127.0.0.1:7002, 127.0.0.1:7003, …): once this applies, clients must send the password']);
    expect(renderPlan(plan)).not.toContain('protected-mode');
  });
});
