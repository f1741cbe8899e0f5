import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, readlinkSync } from 'node:fs';
import { connect } from 'node:net';
import type { Duplex } from 'node:stream';
import { Client, type ClientChannel } from 'ssh2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestHosts, type Harness } from '../harness/index.js';
import { isAlive } from '../harness/procs.js';
import { tcpState } from '../support/tcp.js';

// The levers of issue 8 ("from a laptop, for real"), each shown on real sshd and redis.
// Hosts 57 and 58 only: the other e2e files use 51-56 and may run at the same time.
const USER = 'rcl-levers';
const SUDOERS_FILE = `/etc/sudoers.d/rcluster-harness-${USER}`;
const SLOW_MS = 700;
const LATENCY_MS = 25;

interface SshResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** An ssh2 client logged in to host n (verifying its key), directly or over `sock`. */
function sshConnect(h: Harness, n: number, o: { username?: string; port?: number; sock?: Duplex } = {}): Promise<Client> {
  return new Promise((resolve, reject) => {
    const c = new Client();
    c.once('ready', () => resolve(c))
      .once('error', reject)
      .connect({
        host: `127.0.0.${n}`,
        port: o.port ?? 22,
        ...(o.sock ? { sock: o.sock } : {}),
        username: o.username ?? 'root',
        privateKey: readFileSync(h.identityFile),
        hostVerifier: (key: Buffer) => key.equals(h.hostKeyBlob(n)),
        readyTimeout: 10_000,
      });
  });
}

function collect(stream: ClientChannel): Promise<SshResult> {
  return new Promise((resolve) => {
    let stdout = '';
    let stderr = '';
    let code: number | null = null;
    stream.on('data', (d: Buffer) => (stdout += d.toString()));
    stream.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    stream.on('exit', (c: number | null) => (code = c));
    stream.on('close', () => resolve({ code, stdout, stderr }));
  });
}

function sshExec(c: Client, command: string): Promise<SshResult> {
  return new Promise((resolve, reject) => {
    c.exec(command, (err, stream) => (err ? reject(err) : resolve(collect(stream))));
  });
}

/** A shell session (no command, no pty) fed `input` on stdin. */
function sshShell(c: Client, input: string): Promise<SshResult> {
  return new Promise((resolve, reject) => {
    c.shell(false, (err, stream) => {
      if (err) return reject(err);
      const done = collect(stream);
      stream.end(input);
      resolve(done);
    });
  });
}

function forwardOut(c: Client, host: string, port: number): Promise<ClientChannel> {
  return new Promise((resolve, reject) => c.forwardOut('127.0.0.1', 0, host, port, (err, stream) => (err ? reject(err) : resolve(stream))));
}

function sftpRead(c: Client, path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    c.sftp((err, sftp) => {
      if (err) return reject(err);
      sftp.readFile(path, (e, data) => {
        sftp.end();
        return e ? reject(e) : resolve(data.toString());
      });
    });
  });
}

/** First line of redis's reply to PING over a stream (direct or tunnelled). */
function pingOver(stream: Duplex): Promise<string> {
  return new Promise((resolve, reject) => {
    let buf = '';
    stream.on('data', (d: Buffer) => {
      buf += d.toString();
      if (buf.includes('\r\n')) {
        stream.end();
        resolve(buf.split('\r\n')[0] ?? '');
      }
    });
    stream.on('error', reject);
    stream.on('close', () => reject(new Error(`closed before a reply (got ${JSON.stringify(buf)})`)));
    stream.write('PING\r\n');
  });
}

/** What sudo itself says `USER` may run (root asks: needs no password). */
function sudoList(): string {
  try {
    return execFileSync('sudo', ['-n', '-l', '-U', USER], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    const x = e as { stdout?: string; stderr?: string };
    return `${x.stdout ?? ''}${x.stderr ?? ''}`;
  }
}

const sshdConfigOf = (h: Harness, n: number) => readFileSync(`${h.hosts.find((x) => x.n === n)!.root}/ssh/sshd_config`, 'utf8');

/**
 * Hosts 57 and 58 with `opts` for the enclosing describe. harness() is the running harness,
 * login() an ssh2 client ended with it, stopNow() ends the logins and stops the harness within
 * a test (returning it), after which there is nothing left to stop.
 */
function hostsWith(opts: Parameters<typeof startTestHosts>[1]) {
  let h: Harness | undefined;
  const clients: Client[] = [];
  const harness = (): Harness => {
    if (!h) throw new Error('harness did not start');
    return h;
  };
  beforeAll(async () => {
    h = await startTestHosts([57, 58], opts);
  });
  afterAll(async () => {
    for (const c of clients) c.end();
    await h?.stop();
  });
  return {
    harness,
    /** A client made another way (through a proxy or a bastion), ended like the logins. */
    keep: (c: Client) => {
      clients.push(c);
      return c;
    },
    login: async (n: number, o: Parameters<typeof sshConnect>[2] = {}) => {
      const c = await sshConnect(harness(), n, o);
      clients.push(c);
      return c;
    },
    stopNow: async (): Promise<Harness> => {
      const hs = harness();
      for (const c of clients.splice(0)) c.end();
      await hs.stop();
      h = undefined;
      return hs;
    },
  };
}

describe('harness levers: session log, slow sessions, sudo user, redis-owned files, latency, bastion', () => {
  const { harness, login, keep, stopNow } = hostsWith({
    sessionLog: true,
    slowSessionMs: { 57: SLOW_MS },
    noSftp: [58],
    user: { name: USER, sudo: 'nopasswd' },
    redisOwned: [58],
  });

  it('logs every session (exec and shell) with its command and connection, and runs it as sshd would', async () => {
    const hs = harness();
    hs.clearSessions(58);
    const t0 = Date.now();
    const c = await login(58);
    const tricky = "printf 'a\\tb\\n'; echo \"two words\" >&2; exit 7";
    const r1 = await sshExec(c, tricky);
    expect(r1).toEqual({ code: 7, stdout: 'a\tb\n', stderr: 'two words\n' });
    // The wrapper's variable is not passed on to the command.
    expect((await sshExec(c, 'echo "${SSH_ORIGINAL_COMMAND-unset}"')).stdout).toBe('unset\n');
    const sh = await sshShell(c, 'echo "from-shell $0"\nexit 0\n');
    expect(sh.code).toBe(0);
    expect(sh.stdout).toMatch(/^from-shell .*bash$/m);

    const log = hs.sessions(58);
    expect(log.map((s) => s.command)).toEqual([tricky, 'echo "${SSH_ORIGINAL_COMMAND-unset}"', null]);
    for (const s of log) {
      expect(s.connection).toMatch(/^127\.0\.0\.\d+ \d+ 127\.0\.0\.58 22$/);
      expect(s.at).toBeGreaterThanOrEqual(t0);
      expect(s.at).toBeLessThanOrEqual(Date.now());
    }
    // One connection: every session shows the same client port.
    expect(new Set(log.map((s) => s.connection)).size).toBe(1);
    hs.clearSessions(58);
    expect(hs.sessions(58)).toEqual([]);
  });

  it('a slow host: every session starts at least the delay later, and the delay can be changed', async () => {
    const hs = harness();
    const c57 = await login(57);
    hs.clearSessions(57);
    const t0 = Date.now();
    const r = await sshExec(c57, 'date +%s%3N');
    expect(Date.now() - t0).toBeGreaterThanOrEqual(SLOW_MS);
    // Measured on the host itself: the command ran at least SLOW_MS after sshd started the session.
    const [s] = hs.sessions(57);
    expect(s?.command).toBe('date +%s%3N');
    expect(Number(r.stdout.trim()) - s!.at).toBeGreaterThanOrEqual(SLOW_MS);

    // Host 58 had no delay; from now on it has one.
    const c58 = await login(58);
    hs.setSessionDelay(58, 400);
    const t1 = Date.now();
    expect((await sshExec(c58, 'echo ok')).stdout).toBe('ok\n');
    expect(Date.now() - t1).toBeGreaterThanOrEqual(400);
    hs.setSessionDelay(58, 0);
  });

  it('sftp works through the wrapper (external sftp-server), and a host without sftp still has none', async () => {
    const hs = harness();
    expect(sshdConfigOf(hs, 57)).toMatch(/^ForceCommand '.*\/ssh\/session'$/m);
    expect(sshdConfigOf(hs, 57)).toMatch(/^Subsystem sftp \/\S+\/sftp-server$/m);
    expect(sshdConfigOf(hs, 58)).not.toMatch(/^Subsystem/m);

    hs.clearSessions(57);
    const c57 = await login(57);
    expect(await sftpRead(c57, '/etc/redis/6379.conf')).toMatch(/^bind 127\.0\.0\.57$/m);
    expect(hs.sessions(57).map((s) => s.command)).toEqual([expect.stringMatching(/\/sftp-server$/)]);

    hs.clearSessions(58);
    const c58 = await login(58);
    await expect(sftpRead(c58, '/etc/redis/6379.conf')).rejects.toThrow();
    expect((await sshExec(c58, 'echo still-works')).stdout).toBe('still-works\n');
    // The refused subsystem never reached the wrapper.
    expect(hs.sessions(58).map((s) => s.command)).toEqual(['echo still-works']);
  });

  it('a non-root user logs in with the client key and has sudo without a password', async () => {
    const hs = harness();
    expect(hs.user).toEqual({ name: USER, sudo: 'nopasswd', uid: expect.any(Number) });
    expect(hs.user!.uid).not.toBe(0);
    hs.clearSessions(58);
    const c = await login(58, { username: USER });
    expect(await sshExec(c, 'id -un; id -u')).toEqual({ code: 0, stdout: `${USER}\n${hs.user!.uid}\n`, stderr: '' });
    expect(await sshExec(c, 'sudo -n true')).toMatchObject({ code: 0 });
    expect(await sshExec(c, 'sudo -n id -u')).toMatchObject({ code: 0, stdout: '0\n' });
    // The user's sessions are logged too (the wrapper runs as the user).
    expect(hs.sessions(58).map((s) => s.command)).toEqual(['id -un; id -u', 'sudo -n true', 'sudo -n id -u']);
    expect(sudoList()).toMatch(/\(ALL : ALL\) NOPASSWD: ALL/);
  });

  it("redisOwned: the conf is redis:redis 0640 and the data dir redis's; the user needs sudo for them; redis runs", async () => {
    const hs = harness();
    const c = await login(58, { username: USER });
    const st = await sshExec(c, "sudo -n stat -c '%n %U:%G %a' /etc/redis/6379.conf /var/lib/redis /var/lib/redis/6379");
    expect(st.stdout).toBe('/etc/redis/6379.conf redis:redis 640\n/var/lib/redis redis:redis 750\n/var/lib/redis/6379 redis:redis 750\n');

    const write = await sshExec(c, 'echo "# x" >> /etc/redis/6379.conf');
    expect(write.code).not.toBe(0);
    expect(write.stderr).toMatch(/Permission denied/);
    const read = await sshExec(c, 'cat /etc/redis/6379.conf');
    expect(read.code).not.toBe(0);
    expect(read.stderr).toMatch(/Permission denied/);
    expect((await sshExec(c, 'ls /var/lib/redis/6379')).stderr).toMatch(/Permission denied/);
    const sudoRead = await sshExec(c, 'sudo -n cat /etc/redis/6379.conf');
    expect(sudoRead.code).toBe(0);
    expect(sudoRead.stdout).toMatch(/^bind 127\.0\.0\.58$/m);

    // Host 57 has no such lever: plain root-owned files.
    const plain = await hs.exec(57, "stat -c '%U:%G %a' /etc/redis/6379.conf /var/lib/redis");
    expect(plain.stdout).toBe('root:root 644\nroot:root 755\n');

    // The init script started redis with the redis-owned conf and data dir.
    const status = await sshExec(c, 'sudo -n /etc/init.d/redis_6379 status');
    expect(status).toMatchObject({ code: 0, stdout: expect.stringMatching(/^Redis is running/) });
    const tunnel = await forwardOut(c, '127.0.0.58', 6379);
    expect(await pingOver(tunnel)).toBe('+PONG');
  });

  it('the latency proxy delays each direction, keeps the bytes in order, and works for ssh2', async () => {
    const hs = harness();
    const proxy = await hs.latencyProxy(58, { delayMs: LATENCY_MS });
    expect(proxy.host).toBe('127.0.0.58');
    expect(proxy.port).toBeGreaterThan(0);
    expect(proxy.port).not.toBe(22);

    // sshd speaks first: its banner crosses the proxy once.
    const banner = await new Promise<{ ms: number; text: string }>((resolve, reject) => {
      const t0 = Date.now();
      const s = connect({ host: proxy.host, port: proxy.port });
      s.once('data', (d: Buffer) => {
        s.destroy();
        resolve({ ms: Date.now() - t0, text: d.toString('latin1') });
      });
      s.once('error', reject);
    });
    expect(banner.text).toMatch(/^SSH-2\.0-/);
    expect(banner.ms).toBeGreaterThanOrEqual(LATENCY_MS);

    const c = keep(await sshConnect(hs, 58, { port: proxy.port }));
    // An exec is at least one request and its answer: both directions, each delayed.
    const t0 = Date.now();
    expect((await sshExec(c, 'true')).code).toBe(0);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(2 * LATENCY_MS);

    // A megabyte or so in many chunks: any reordering or loss would break the SSH MAC or the text.
    const seq = await sshExec(c, 'seq 1 150000');
    expect(seq.code).toBe(0);
    expect(seq.stdout).toBe(Array.from({ length: 150000 }, (_, i) => `${i + 1}\n`).join(''));

    const closed = new Promise<void>((resolve) => c.once('close', () => resolve()));
    await proxy.close();
    await closed;
    expect(await tcpState(proxy.host, proxy.port)).toBe('ECONNREFUSED');
  });

  it("a bastion: host 58's sshd reached through host 57's (direct-tcpip is no session on 57)", async () => {
    const hs = harness();
    hs.clearSessions(57);
    hs.clearSessions(58);
    const bastion = await login(57);
    const stream = await forwardOut(bastion, '127.0.0.58', 22);
    const behind = keep(await sshConnect(hs, 58, { sock: stream }));
    const r = await sshExec(behind, 'echo via-bastion; echo "$SSH_CONNECTION"');
    expect(r.code).toBe(0);
    const [first, conn] = r.stdout.split('\n');
    expect(first).toBe('via-bastion');
    expect(conn).toMatch(/ 127\.0\.0\.58 22$/);

    // ssh -L from the bastion itself: its redis port through its sshd.
    expect(await pingOver(await forwardOut(bastion, '127.0.0.57', 6379))).toBe('+PONG');

    expect(hs.sessions(58).map((s) => s.command)).toEqual(['echo via-bastion; echo "$SSH_CONNECTION"']);
    expect(hs.sessions(58)[0]!.connection).toBe(conn);
    expect(hs.sessions(57)).toEqual([]);
  });

  it('stop() removes the sudo rule with the state dir', async () => {
    expect(existsSync(SUDOERS_FILE)).toBe(true);
    const hs = await stopNow();
    expect(existsSync(SUDOERS_FILE)).toBe(false);
    expect(existsSync(hs.root)).toBe(false);
    expect(sudoList()).toMatch(/is not allowed to run sudo/);
  });
});

describe.each([
  { sudo: 'password' as const, list: /\(ALL : ALL\) ALL/ },
  { sudo: 'none' as const, list: /is not allowed to run sudo/ },
])('a user with sudo $sudo, on plain hosts', ({ sudo, list }) => {
  let h: Harness | undefined;
  let c: Client | undefined;

  beforeAll(async () => {
    h = await startTestHosts([57, 58], { user: { name: USER, sudo } });
    c = await sshConnect(h, 57, { username: USER });
  });

  afterAll(async () => {
    c?.end();
    await h?.stop();
  });

  it('logs in; sudo -n fails with "a password is required"', async () => {
    expect((await sshExec(c!, 'id -un')).stdout).toBe(`${USER}\n`);
    const r = await sshExec(c!, 'sudo -n true');
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/sudo: a password is required/);
    const l = sudoList();
    expect(l).toMatch(list);
    expect(l).not.toMatch(/NOPASSWD/);
  });

  it('the hosts are plain: no ForceCommand, internal-sftp, no session log, root-owned files', async () => {
    const hs = h!;
    for (const n of [57, 58]) {
      const conf = sshdConfigOf(hs, n);
      expect(conf).not.toMatch(/ForceCommand/);
      expect(conf).toMatch(/^Subsystem sftp internal-sftp$/m);
      expect(() => hs.sessions(n)).toThrow(/no session log/);
    }
    expect(await sftpRead(c!, '/etc/redis/6379.conf')).toMatch(/^bind 127\.0\.0\.57$/m);
    expect((await hs.exec(58, "stat -c '%U:%G %a' /etc/redis/6379.conf")).stdout).toBe('root:root 644\n');
  });
});

describe('the datacenter: Redis reachable from the hosts only, SSH from the runner', () => {
  const { harness, login, stopNow } = hostsWith({ datacenter: true });
  /** What `n` gets for PING to host `to`'s redis, asked from inside host n. */
  const pingFrom = async (n: number, to: number) => (await harness().exec(n, `redis-cli -h 127.0.0.${to} -p 6379 ping`)).stdout.trim();
  /** 'open' when a TCP connect from inside host n to host `to`'s port succeeds (bash's /dev/tcp). */
  const tcpFrom = async (n: number, to: number, port: number) => {
    const r = await harness().exec(n, `bash -c 'exec 3<>/dev/tcp/127.0.0.${to}/${port}' 2>&1 && echo open`);
    return r.stdout.trim();
  };

  it("the hosts share one network namespace, not the runner's", async () => {
    const hs = harness();
    const own = readlinkSync('/proc/self/ns/net');
    expect(hs.datacenter?.netns).toMatch(/^net:\[\d+\]$/);
    expect(hs.datacenter?.netns).not.toBe(own);
    for (const n of [57, 58]) expect((await hs.exec(n, 'readlink /proc/self/ns/net')).stdout.trim()).toBe(hs.datacenter?.netns);
    // Host to host, the way gossip, MIGRATE and replication go.
    expect(await pingFrom(57, 58)).toBe('PONG');
    expect(await pingFrom(58, 57)).toBe('PONG');
  });

  it('from the runner: SSH works, Redis and its cluster bus port are refused; through SSH Redis answers', async () => {
    const hs = harness();
    // A cluster bus port that really listens inside: host 58's redis in cluster mode.
    const r = await hs.exec(58, "echo 'cluster-enabled yes' >> /etc/redis/6379.conf && /etc/init.d/redis_6379 restart");
    expect(r.code).toBe(0);
    expect((await hs.exec(57, 'redis-cli -h 127.0.0.58 -p 6379 info cluster')).stdout).toMatch(/^cluster_enabled:1\r?$/m);
    expect(await tcpFrom(57, 58, 16379)).toBe('open');
    expect(await tcpFrom(57, 58, 6379)).toBe('open');
    for (const n of [57, 58]) {
      expect(await tcpState(`127.0.0.${n}`, 6379)).toBe('ECONNREFUSED');
      expect(await tcpState(`127.0.0.${n}`, 16379)).toBe('ECONNREFUSED');
    }

    const c = await login(57);
    expect(await sshExec(c, 'echo "$SSH_CONNECTION"')).toMatchObject({ code: 0, stdout: expect.stringMatching(/ 127\.0\.0\.57 22\n$/) });
    // What ssh.tunnel does: redis through the host's sshd, its own and its neighbour's.
    expect(await pingOver(await forwardOut(c, '127.0.0.57', 6379))).toBe('+PONG');
    expect(await pingOver(await forwardOut(c, '127.0.0.58', 6379))).toBe('+PONG');
  });

  it("intoDatacenter: the test's own way in, a port on 127.0.0.1", async () => {
    const hs = harness();
    const via = await hs.intoDatacenter('127.0.0.57:6379');
    expect(via).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(await hs.intoDatacenter('127.0.0.57:6379')).toBe(via);
    const [host, port] = via.split(':');
    expect(await pingOver(connect({ host: host!, port: Number(port) }))).toBe('+PONG');
    await expect(hs.intoDatacenter('10.0.0.1:6379')).rejects.toThrow(/127\.x\.y\.z:port/);
  });

  it('a stopped host refuses SSH from the runner; started again, it is back in the same datacenter', async () => {
    const hs = harness();
    await hs.stopHost(58);
    expect(await tcpState('127.0.0.58', 22)).toBe('ECONNREFUSED');
    expect(await pingFrom(57, 58)).not.toBe('PONG');
    await hs.startHost(58);
    expect((await hs.exec(58, 'readlink /proc/self/ns/net')).stdout.trim()).toBe(hs.datacenter?.netns);
    expect(await pingFrom(57, 58)).toBe('PONG');
    expect(await tcpState('127.0.0.58', 6379)).toBe('ECONNREFUSED');
    expect((await sshExec(await login(58), 'echo back')).stdout).toBe('back\n');
  });

  it('stop() ends the relay with the hosts: nothing answers on their addresses', async () => {
    const relay = harness().datacenter?.relayPid;
    expect(relay !== undefined && isAlive(relay)).toBe(true);
    const hs = await stopNow();
    expect(isAlive(relay!)).toBe(false);
    expect(existsSync(hs.root)).toBe(false);
    for (const n of [57, 58]) expect(await tcpState(`127.0.0.${n}`, 22)).toBe('ECONNREFUSED');
  });
});
