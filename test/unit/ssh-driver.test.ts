/**
 * The ssh2 HostDriver against a throwaway sshd on 127.0.0.1 (a free high port), started here with
 * its own host key, client key and config, and killed in afterAll.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync, chmodSync } from 'node:fs';
import { createServer, connect as tcpConnect } from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HostError } from '../../src/errors.js';
import { createSshDriver, type SshDriver } from '../../src/hosts/ssh.js';
import type { HostKeyPolicy, SshSettings } from '../../src/spec/types.js';

const SSHD = '/usr/sbin/sshd';
const HOST = '127.0.0.1';

let dir: string;
let port: number;
let sshd: ChildProcess | undefined;
let sshdLog = '';
let hostKeyLine: string; // "ssh-ed25519 AAAA..."
let hostKeyFingerprint: string;
let clientKey: string;
let wrongKey: string;
let goodKnownHosts: string;
const savedAgent = process.env.SSH_AUTH_SOCK;
const drivers: SshDriver[] = [];

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, HOST, () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === 'object' && addr ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}

function acceptsTcp(p: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = tcpConnect({ host: HOST, port: p });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

async function waitForPort(p: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (sshd?.exitCode !== null && sshd?.exitCode !== undefined) {
      throw new Error(`sshd exited with ${sshd.exitCode}: ${sshdLog}`);
    }
    if (await acceptsTcp(p)) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`sshd did not listen on ${p} within ${timeoutMs}ms: ${sshdLog}`);
}

function keygen(file: string): void {
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'rcluster-test', '-f', file]);
}

function settings(over: Partial<SshSettings> & { hostKeyPolicy?: HostKeyPolicy } = {}): SshSettings {
  return {
    port,
    identityFile: clientKey,
    knownHostsFile: goodKnownHosts,
    hostKeyPolicy: 'strict',
    ...over,
  };
}

function driver(over: Partial<SshSettings> = {}, opts: Parameters<typeof createSshDriver>[1] = {}): SshDriver {
  const d = createSshDriver([{ host: HOST, ssh: settings(over) }], opts);
  drivers.push(d);
  return d;
}

async function hostError(p: Promise<unknown>): Promise<HostError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(HostError);
    return err as HostError;
  }
  throw new Error('expected a HostError');
}

beforeAll(async () => {
  delete process.env.SSH_AUTH_SOCK;
  dir = mkdtempSync(join(tmpdir(), 'rcluster-sshd-'));
  port = await freePort();
  keygen(join(dir, 'host_ed25519'));
  keygen(join(dir, 'id_client'));
  keygen(join(dir, 'id_wrong'));
  clientKey = join(dir, 'id_client');
  wrongKey = join(dir, 'id_wrong');
  writeFileSync(join(dir, 'authorized_keys'), readFileSync(`${clientKey}.pub`));
  hostKeyLine = readFileSync(join(dir, 'host_ed25519.pub'), 'utf8').trim().split(/\s+/).slice(0, 2).join(' ');
  hostKeyFingerprint = execFileSync('ssh-keygen', ['-l', '-E', 'sha256', '-f', join(dir, 'host_ed25519.pub')], {
    encoding: 'utf8',
  }).split(/\s+/)[1]!;
  goodKnownHosts = join(dir, 'known_hosts_good');
  writeFileSync(goodKnownHosts, `[${HOST}]:${port} ${hostKeyLine}\n`);
  const cfg = join(dir, 'sshd_config');
  writeFileSync(
    cfg,
    [
      `ListenAddress ${HOST}`,
      `Port ${port}`,
      `HostKey ${join(dir, 'host_ed25519')}`,
      `AuthorizedKeysFile ${join(dir, 'authorized_keys')}`,
      'UsePAM no',
      'StrictModes no',
      `PidFile ${join(dir, 'sshd.pid')}`,
      'Subsystem sftp internal-sftp',
      'PermitRootLogin yes',
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'MaxStartups 100',
      'LogLevel ERROR',
      '',
    ].join('\n'),
  );
  if (!existsSync('/run/sshd')) mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
  sshd = spawn(SSHD, ['-D', '-e', '-f', cfg], { stdio: ['ignore', 'ignore', 'pipe'] });
  sshd.stderr?.on('data', (d: Buffer) => (sshdLog += d.toString()));
  await waitForPort(port, 10_000);
});

afterAll(async () => {
  await Promise.all(drivers.map((d) => d.close()));
  if (sshd && sshd.exitCode === null) {
    const exited = new Promise((r) => sshd!.once('exit', r));
    sshd.kill('SIGTERM');
    await exited;
  }
  if (savedAgent !== undefined) process.env.SSH_AUTH_SOCK = savedAgent;
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('ssh driver', () => {
  it('is an ssh driver', () => {
    expect(driver().kind).toBe('ssh');
  });

  it('run: stdout, stderr and a non-zero exit code are a result', async () => {
    const d = driver();
    const r = await d.run(HOST, 'echo hello; echo oops >&2; exit 3');
    expect(r).toEqual({ code: 3, stdout: 'hello\n', stderr: 'oops\n' });
    const ok = await d.run(HOST, 'whoami');
    expect(ok).toEqual({ code: 0, stdout: `${userInfo().username}\n`, stderr: '' });
  });

  it('run: a command killed by a signal reports 128+signal', async () => {
    const r = await driver().run(HOST, 'kill -9 $$');
    expect(r.code).toBe(137);
  });

  it('run: a timed-out command is a HostError and the connection stays usable', async () => {
    const d = driver();
    const err = await hostError(d.run(HOST, 'sleep 30', { timeoutMs: 300 }));
    expect(err.message).toBe(`${HOST}: run: command timed out after 0.3s: sleep 30`);
    expect((await d.run(HOST, 'echo still')).stdout).toBe('still\n');
    expect(d.stats.connections).toBe(1);
  });

  it('readFile: existing file, missing file, directory', async () => {
    const d = driver();
    const file = join(dir, 'existing.conf');
    writeFileSync(file, 'port 6379\r\nbind 127.0.0.1\n');
    expect(await d.readFile(HOST, file)).toBe('port 6379\r\nbind 127.0.0.1\n');
    expect(await d.readFile(HOST, join(dir, 'missing.conf'))).toBeNull();
    expect(await d.readFile(HOST, join(dir, 'no-such-dir', 'x.conf'))).toBeNull();
    const err = await hostError(d.readFile(HOST, dir));
    expect(err.step).toBe(`read ${dir}`);
  });

  it('writeFileAtomic with backup: content, backup, mode kept, no temp files left', async () => {
    const d = driver();
    const sub = join(dir, 'write');
    mkdirSync(sub);
    const file = join(sub, 'redis.conf');
    writeFileSync(file, 'port 6379\n');
    chmodSync(file, 0o640);
    await d.writeFileAtomic(HOST, file, 'port 6351\n', { backup: true });
    expect(readFileSync(file, 'utf8')).toBe('port 6351\n');
    expect(readFileSync(`${file}.rcluster.bak`, 'utf8')).toBe('port 6379\n');
    expect(statSync(file).mode & 0o7777).toBe(0o640);
    expect(statSync(`${file}.rcluster.bak`).mode & 0o7777).toBe(0o640);

    // A second write overwrites the backup with the then-current content.
    await d.writeFileAtomic(HOST, file, 'port 6352\n', { backup: true });
    expect(readFileSync(`${file}.rcluster.bak`, 'utf8')).toBe('port 6351\n');

    // Without backup, and to a new file.
    await d.writeFileAtomic(HOST, join(sub, 'new.conf'), 'x'.repeat(100_000));
    expect(readFileSync(join(sub, 'new.conf'), 'utf8')).toBe('x'.repeat(100_000));
    expect(await d.readFile(HOST, join(sub, 'new.conf'))).toBe('x'.repeat(100_000));

    expect(readdirSync(sub).sort()).toEqual(['new.conf', 'redis.conf', 'redis.conf.rcluster.bak']);
    expect(d.stats.connections).toBe(1);
  });

  it('writeFileAtomic failures are HostErrors and leave nothing behind', async () => {
    const d = driver();
    const missingDir = join(dir, 'nope', 'redis.conf');
    const err = await hostError(d.writeFileAtomic(HOST, missingDir, 'x'));
    expect(err.message).toBe(`${HOST}: write ${missingDir}: no such file or directory`);

    const sub = join(dir, 'isdir');
    mkdirSync(join(sub, 'target'), { recursive: true });
    const err2 = await hostError(d.writeFileAtomic(HOST, join(sub, 'target'), 'x'));
    expect(err2.message).toContain('is a directory');
    expect(readdirSync(sub)).toEqual(['target']);
  });

  it('strict: an unknown host key is refused, naming its SHA256 fingerprint', async () => {
    const kh = join(dir, 'known_hosts_empty');
    writeFileSync(kh, '');
    const err = await hostError(driver({ knownHostsFile: kh }).connect(HOST));
    expect(err.message).toBe(
      `${HOST}: ssh: host key for ${HOST} is not known (${hostKeyFingerprint}); add it to ${kh} or set hostKeyPolicy: accept-new`,
    );
    expect(readFileSync(kh, 'utf8')).toBe('');
  });

  it('accept-new: appends the key (creating the file), then strict connects', async () => {
    const kh = join(dir, 'fresh', 'ssh', 'known_hosts');
    const d = driver({ knownHostsFile: kh, hostKeyPolicy: 'accept-new' });
    expect((await d.run(HOST, 'echo in')).stdout).toBe('in\n');
    expect(readFileSync(kh, 'utf8')).toBe(`[${HOST}]:${port} ${hostKeyLine}\n`);
    const found = execFileSync('ssh-keygen', ['-F', `[${HOST}]:${port}`, '-f', kh], { encoding: 'utf8' });
    expect(found).toContain(hostKeyLine);

    const strict = driver({ knownHostsFile: kh, hostKeyPolicy: 'strict' });
    expect((await strict.run(HOST, 'echo again')).stdout).toBe('again\n');
    expect(readFileSync(kh, 'utf8').trim().split('\n')).toHaveLength(1);
  });

  it('a changed host key is refused under both policies', async () => {
    const other = join(dir, 'other_host_key');
    keygen(other);
    const otherLine = readFileSync(`${other}.pub`, 'utf8').trim().split(/\s+/).slice(0, 2).join(' ');
    const otherFp = execFileSync('ssh-keygen', ['-l', '-E', 'sha256', '-f', `${other}.pub`], { encoding: 'utf8' }).split(
      /\s+/,
    )[1]!;
    const kh = join(dir, 'known_hosts_changed');
    writeFileSync(kh, `[${HOST}]:${port} ${otherLine}\n`);
    for (const hostKeyPolicy of ['strict', 'accept-new'] as const) {
      const err = await hostError(driver({ knownHostsFile: kh, hostKeyPolicy }).run(HOST, 'true'));
      expect(err.message).toBe(
        `${HOST}: ssh: HOST KEY CHANGED for ${HOST}: known ${otherFp}, offered ${hostKeyFingerprint} — refusing to connect`,
      );
    }
    expect(readFileSync(kh, 'utf8')).toBe(`[${HOST}]:${port} ${otherLine}\n`);
  });

  it('a wrong client key is an authentication refusal', async () => {
    const err = await hostError(driver({ identityFile: wrongKey, user: 'root' }).run(HOST, 'true'));
    expect(err.message).toBe(`${HOST}: ssh: authentication refused for user root (tried: publickey)`);
  });

  it('an unreadable identity file is a clear error', async () => {
    const missing = join(dir, 'no_such_key');
    const err = await hostError(driver({ identityFile: missing }).connect(HOST));
    expect(err.message).toBe(`${HOST}: ssh: cannot read identity file ${missing}: no such file`);
  });

  it('a closed port is "connection refused"', async () => {
    const closed = await freePort();
    const err = await hostError(driver({ port: closed }).run(HOST, 'true'));
    expect(err.message).toBe(`${HOST}: ssh: connection refused`);
    expect(err.host).toBe(HOST);
    expect(err.step).toBe('ssh');
  });

  it('a server that never answers times out', async () => {
    // A TCP listener that accepts and says nothing: the SSH handshake never starts.
    const silent = createServer(() => undefined);
    await new Promise<void>((r) => silent.listen(0, HOST, r));
    const addr = silent.address();
    const silentPort = typeof addr === 'object' && addr ? addr.port : 0;
    try {
      const err = await hostError(driver({ port: silentPort }, { connectTimeoutMs: 300 }).connect(HOST));
      expect(err.message).toBe(`${HOST}: ssh: connect timed out after 0.3s`);
    } finally {
      silent.close();
    }
  });

  it('reuses one connection for commands and files, also for concurrent first callers', async () => {
    const d = driver();
    const [a, b, c] = await Promise.all([
      d.run(HOST, 'echo $SSH_CONNECTION'),
      d.run(HOST, 'echo $SSH_CONNECTION'),
      d.readFile(HOST, join(dir, 'authorized_keys')),
    ]);
    expect(a.stdout).toMatch(/^127\.0\.0\.1 \d+ 127\.0\.0\.1 \d+\n$/);
    expect(b.stdout).toBe(a.stdout); // same client port: same TCP connection
    expect(c).not.toBeNull();
    const later = await d.run(HOST, 'echo $SSH_CONNECTION');
    expect(later.stdout).toBe(a.stdout);
    expect(d.stats.connections).toBe(1);
  });

  it('streams every command and file through at most two sessions per host (no sftp)', async () => {
    const d = driver();
    const file = join(dir, 'many.conf');
    const runs = Array.from({ length: 30 }, (_, i) => d.run(HOST, `echo out-${i}; echo err-${i} >&2; exit ${i % 3}`));
    const writes = Array.from({ length: 5 }, (_, i) => d.writeFileAtomic(HOST, `${file}.${i}`, `line ${i}\n`));
    const results = await Promise.all(runs);
    await Promise.all(writes);
    const reads = await Promise.all(Array.from({ length: 5 }, (_, i) => d.readFile(HOST, `${file}.${i}`)));
    results.forEach((r, i) => expect(r).toEqual({ code: i % 3, stdout: `out-${i}\n`, stderr: `err-${i}\n` }));
    expect(reads).toEqual(Array.from({ length: 5 }, (_, i) => `line ${i}\n`));
    expect(d.stats.sessions).toBeLessThanOrEqual(2);
    expect(d.stats.connections).toBe(1);
  });

  it('output of any content, a syntax error and a dying shell are told apart', async () => {
    const d = driver();
    // Bytes that look like framing, no trailing newline, and a large output.
    const odd = await d.run(HOST, `printf '__RCLUSTER_x 0 1 2\\n%s' abc; head -c 200000 /dev/zero | tr '\\0' y >&2`);
    expect(odd.stdout).toBe('__RCLUSTER_x 0 1 2\nabc');
    expect(odd.stderr).toHaveLength(200_000);
    const syntax = await d.run(HOST, 'if then fi');
    expect(syntax.code).toBe(2);
    expect(syntax.stderr).toMatch(/syntax error/i);
    // The shell itself is killed mid-command: that command fails, naming it; the next one runs.
    const died = await hostError(d.run(HOST, 'kill -KILL $PPID; sleep 5'));
    expect(died.message).toBe(`${HOST}: run: connection lost while running: kill -KILL $PPID; sleep 5`);
    expect((await d.run(HOST, 'echo again')).stdout).toBe('again\n');
  });

  it('an OpenSSH config alias supplies HostName, Port, IdentityFile and UserKnownHostsFile; the spec wins where it is explicit', async () => {
    const config = join(dir, 'ssh_config');
    writeFileSync(config, `Host box\n  HostName ${HOST}\n  Port ${port}\n  IdentityFile ${clientKey}\n  UserKnownHostsFile ${goodKnownHosts}\n`);
    const viaAlias = driver({ alias: 'box', configFile: config, identityFile: undefined, port: 1, knownHostsFile: join(dir, 'no-such-known-hosts'), implicit: ['port', 'knownHostsFile'] });
    expect((await viaAlias.run(HOST, 'echo via-alias')).stdout).toBe('via-alias\n');
    // port: 1 written in the spec (not implicit) is the spec's word: it wins, and is refused.
    const explicit = driver({ alias: 'box', configFile: config, port: 1 });
    expect((await hostError(explicit.connect(HOST))).message).toBe(`${HOST}: ssh: connection refused`);
    const missing = driver({ configFile: join(dir, 'no-such-config') });
    expect((await hostError(missing.connect(HOST))).message).toContain(`cannot read ssh.configFile ${join(dir, 'no-such-config')}: no such file`);
  });

  it('a jump host (ProxyJump) carries the connection, with its own host key check, and names itself when it fails', async () => {
    const d = driver({ jump: `root@${HOST}:${port}` });
    const r = await d.run(HOST, 'echo through');
    expect(r.stdout).toBe('through\n');
    expect(d.stats.connections).toBe(2); // the jump host, then the host through it
    const refused = driver({ jump: `root@${HOST}:1` });
    expect((await hostError(refused.connect(HOST))).message).toBe(`${HOST}: ssh: jump host root@${HOST}:1: connection refused`);
    const unknownKey = join(dir, 'kh-empty');
    writeFileSync(unknownKey, '');
    const config = join(dir, 'ssh_config_jump');
    writeFileSync(config, `Host jumpbox\n  HostName ${HOST}\n  Port ${port}\n  UserKnownHostsFile ${unknownKey}\n`);
    const strict = driver({ jump: 'jumpbox', configFile: config });
    expect((await hostError(strict.connect(HOST))).message).toMatch(new RegExp(`^${HOST.replace(/\./g, '\\.')}: ssh: jump host jumpbox: host key for ${HOST.replace(/\./g, '\\.')} is not known`));
  });

  it('after close(), new work is refused rather than opening a connection nobody would close', async () => {
    const d = driver();
    await d.connect(HOST);
    await d.close();
    const err = await hostError(d.run(HOST, 'echo back'));
    expect(err.message).toContain(`${HOST}: ssh: the SSH driver was closed`);
    expect(d.stats.connections).toBe(1);
  });

  it('a host without settings is a HostError', async () => {
    const err = await hostError(driver().run('127.0.0.99', 'true'));
    expect(err.message).toContain('127.0.0.99: ssh: no SSH settings');
  });
});
