/**
 * Multi-host test harness for end-to-end tests.
 *
 * Test host N (2..254, normally 51..58) is the loopback address 127.0.0.N with
 *  - its own sshd on 127.0.0.N:22, started as `unshare -m --propagation private` +
 *    bind mounts of per-host directories over /etc/redis, /etc/init.d, /var/lib/redis,
 *    /var/run (= /run) and /var/log, so commands run over SSH see only that host's files;
 *  - /etc/init.d/redis_6379 (start|stop|restart|status) and a fresh /etc/redis/6379.conf;
 *  - a standalone redis on 127.0.0.N:6379 started through that init script.
 *
 * Levers, all off by default (a host without any is exactly the plain host above):
 *  - sessionLog / slowSessionMs: an sshd ForceCommand wrapper logs every session (exec, shell,
 *    subsystem) to <host dir>/sessions.log and can delay its start (Harness.sessions,
 *    clearSessions, setSessionDelay);
 *  - user: a non-root SSH user with sudo without password, with a password, or none;
 *  - redisOwned: the host's redis conf and data dir belong to the redis user, as with Debian's
 *    package;
 *  - noSftp: no sftp subsystem;
 *  - Harness.latencyProxy: a TCP proxy in front of a host's sshd that delays each direction;
 *  - datacenter: every host in one network namespace of its own; from the runner only the
 *    hosts' sshd can be reached (Redis ports are refused), as from a laptop outside the data
 *    centre's firewall.
 * Every host's sshd allows TCP forwarding (direct-tcpip), so one host can be the ProxyJump
 * bastion of the others and a host's redis port can be reached through its sshd.
 *
 * Only 127.0.0.0/8 addresses are ever contacted. See test/e2e/harness.test.ts and
 * test/e2e/harness-levers.test.ts for usage.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { accessSync, constants as fsc, existsSync, readdirSync, readFileSync, realpathSync, renameSync, rmdirSync, statSync, writeFileSync } from 'node:fs';
import { chmod, chown, mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { basename, dirname, join, posix, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BOOT_SCRIPT, initScript, redisConf, sessionWrapper, shQuote, sshdConfig } from './files.js';
import { startLatencyProxy, type LatencyProxy } from './latency.js';
import { RELAY, startDatacenter, type Datacenter } from './datacenter.js';
import { cmdline, hostPids, listPids, isAlive, kill, killUntilGone, killUntilGoneSync, mntNs, netNs, OWN_MNT_NS, startTime, tail } from './procs.js';

export interface TestHost {
  n: number;
  /** 127.0.0.N */
  address: string;
  /** The per-host directory on the real filesystem. */
  root: string;
  /** Maps a host path such as /etc/redis/6379.conf to the real file behind it. */
  path(p: string): string;
}

export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
}

export type SudoMode = 'nopasswd' | 'password' | 'none';

export interface HarnessUser {
  /** A system user; created (useradd, home in /home, shell /bin/bash) when missing. */
  name: string;
  /** nopasswd: `sudo -n` works; password: sudo asks for a password (the user has none that
   *  could be typed); none: the user may not use sudo. */
  sudo: SudoMode;
}

export interface SessionRecord {
  /** ms since the epoch when sshd started the session (before any delay). */
  at: number;
  /** $SSH_CONNECTION: `client-address client-port server-address server-port`. */
  connection: string;
  /** What the client asked for: the exec command, for a subsystem its program (sftp:
   *  the sftp-server path); null for a shell. */
  command: string | null;
}

export type { LatencyProxy };

export interface Harness {
  hosts: TestHost[];
  /** The harness state dir (removed by stop()). */
  root: string;
  /** Private key of the test client (ed25519, no passphrase); user is root. */
  identityFile: string;
  /** Public key line of the test client. */
  clientPublicKey: string;
  /** known_hosts with every host's key as of startHarness: `127.0.0.N ssh-ed25519 AAAA...`. */
  knownHostsFile: string;
  /** The host's current public key: `ssh-ed25519 AAAA...` (no comment). */
  hostPublicKey(n: number): string;
  /** The host's current public key blob (what ssh2's hostVerifier receives). */
  hostKeyBlob(n: number): Buffer;
  /** Power off: SIGKILL the host's sshd and every process in its mount namespace (redis
   *  included). With graceful, `/etc/init.d/redis_6379 stop` runs first. */
  stopHost(n: number, opts?: { graceful?: boolean }): Promise<void>;
  /** Boot: /var/run emptied, sshd answering, redis started via the init script with the
   *  current conf. No-op when the host is up. */
  startHost(n: number): Promise<void>;
  /** Give host n a new host key; a running sshd is reloaded (SIGHUP) and the call returns
   *  once it serves the new key. knownHostsFile is left alone (like a client's would be)
   *  unless updateKnownHosts. */
  rotateHostKey(n: number, opts?: { updateKnownHosts?: boolean }): Promise<void>;
  /** Rewrite knownHostsFile from the hosts' current keys. */
  writeKnownHosts(): Promise<void>;
  isUp(n: number): boolean;
  /**
   * The sshd of every open connection to host n dies (SIGKILL of the listener's children), as
   * when sshd crashes or is restarted mid-command; the listener stays, so new connections work.
   * Returns how many connections were cut.
   */
  dropSshConnections(n: number): number;
  /** Run `sh -c command` inside host n's mount namespace (nsenter -t <pid> -m), and with
   *  HarnessOptions.datacenter inside the datacenter's network namespace too (-n). */
  exec(n: number, command: string, opts?: { timeoutMs?: number }): Promise<ExecResult>;
  /** The non-root SSH user of HarnessOptions.user (logs in with identityFile like root). */
  user?: HarnessUser & { uid: number };
  /** Sessions started on host n so far (or since clearSessions), oldest first. Throws for a
   *  host without a session log (HarnessOptions.sessionLog / slowSessionMs). */
  sessions(n: number): SessionRecord[];
  /** Empty host n's session log. */
  clearSessions(n: number): void;
  /** From the next session on, host n waits `ms` before running a session's command (0: none).
   *  Needs the session log on that host. */
  setSessionDelay(n: number, ms: number): void;
  /**
   * A TCP proxy on 127.0.0.N (port: default any free one) to host n's sshd (127.0.0.N:22),
   * passing each chunk on delayMs after it arrived, each way, in order. Closed by stop().
   */
  latencyProxy(n: number, opts: { delayMs: number; port?: number }): Promise<LatencyProxy>;
  /** With HarnessOptions.datacenter: its network namespace (`net:[...]`) and the pid of the
   *  relay holding it. */
  datacenter?: { netns: string; relayPid: number };
  /**
   * With HarnessOptions.datacenter: the way in for the test's own checks (loading keys, reading
   * them back). Returns `127.0.0.1:P`, a port in the runner's network forwarded to `target`
   * (`host:port`) inside the datacenter; one per target, kept until stop(). Never hand it to
   * rcluster: what it may reach is what the spec's SSH connections reach.
   */
  intoDatacenter(target: string): Promise<string>;
  /** Stop everything started, and remove the state dir. Idempotent. */
  stop(): Promise<void>;
}

export interface HarnessOptions {
  hosts: number[];
  /** State dir; default /tmp/rcluster-harness/<hosts joined by '-'>. Removed by stop(). */
  root?: string;
  /** Hosts whose sshd has no sftp subsystem. */
  noSftp?: number[];
  /** Hosts (true: every host) whose sessions are logged; see Harness.sessions. */
  sessionLog?: boolean | number[];
  /** Per host, ms each session waits before its command runs, e.g. { 53: 1000 }; such a host
   *  gets the session log too. */
  slowSessionMs?: Record<number, number>;
  /** A non-root SSH user with or without sudo. Its sudo rule is a file in /etc/sudoers.d, which
   *  is machine-wide: harnesses running at the same time must use different user names. */
  user?: HarnessUser;
  /** Hosts (true: every host) whose /etc/redis/6379.conf is redis:redis 0640 and
   *  /var/lib/redis (and 6379/) redis:redis 0750, as Debian's package leaves them. redis
   *  still runs as root through the init script, as on a plain host. */
  redisOwned?: boolean | number[];
  /**
   * Put every host in one network namespace of its own, the datacenter, where all of
   * 127.0.0.0/8 is local: the hosts reach each other (gossip, cluster bus, MIGRATE,
   * replication) as on a LAN, and the runner reaches only each host's sshd on 127.0.0.N:22,
   * forwarded in by a relay. Redis ports, bus ports included, are refused from the runner; the
   * test's own checks go in through Harness.intoDatacenter or Harness.exec. A stopped host's
   * port 22 is refused too. Needs ip (iproute2) to bring up lo in the namespace.
   */
  datacenter?: boolean;
}

const MARKER = '.rcluster-harness';
const DEFAULT_PARENT = '/tmp/rcluster-harness';
const SSHD = '/usr/sbin/sshd';
const WATCHDOG = fileURLToPath(new URL('./watchdog.mjs', import.meta.url));
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const SUDOERS_DIR = '/etc/sudoers.d';
const SUDOERS_PREFIX = 'rcluster-harness-';
// With a ForceCommand, a subsystem request reaches the wrapper as SSH_ORIGINAL_COMMAND=<the
// Subsystem line's program>; "internal-sftp" is built into sshd and cannot be exec'd by it.
const SFTP_SERVERS = ['/usr/lib/openssh/sftp-server', '/usr/libexec/openssh/sftp-server', '/usr/libexec/sftp-server', '/usr/lib/ssh/sftp-server'];

// ---------------------------------------------------------------------------------------
// availability

function which(cmd: string): string | null {
  for (const dir of (process.env.PATH ?? '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin').split(':').concat(['/usr/sbin', '/sbin'])) {
    if (!dir) continue;
    const p = join(dir, cmd);
    try {
      accessSync(p, fsc.X_OK);
      if (statSync(p).isFile()) return p;
    } catch {
      /* next */
    }
  }
  return null;
}

interface Tools {
  redisServer: string;
  redisCli: string;
  unshare: string;
  nsenter: string;
  sshKeygen: string;
  sshKeyscan: string;
}

function findTools(): Tools | string {
  if (process.platform !== 'linux') return `needs Linux (platform is ${process.platform})`;
  if (process.getuid?.() !== 0) return `needs root (uid is ${process.getuid?.()})`;
  try {
    accessSync(SSHD, fsc.X_OK);
  } catch {
    return `${SSHD} not found`;
  }
  const t: Partial<Tools> = {};
  const names: [keyof Tools, string][] = [
    ['redisServer', 'redis-server'],
    ['redisCli', 'redis-cli'],
    ['unshare', 'unshare'],
    ['nsenter', 'nsenter'],
    ['sshKeygen', 'ssh-keygen'],
    ['sshKeyscan', 'ssh-keyscan'],
  ];
  for (const [k, name] of names) {
    const p = which(name);
    if (!p) return `${name} not found on PATH`;
    t[k] = p;
  }
  return t as Tools;
}

let unshareChecked: string | null | undefined;

export function harnessAvailable(): { ok: true } | { ok: false; why: string } {
  const tools = findTools();
  if (typeof tools === 'string') return { ok: false, why: tools };
  if (unshareChecked === undefined) {
    const r = spawnSync(tools.unshare, ['-m', '--propagation', 'private', 'true'], { encoding: 'utf8', timeout: 10_000 });
    unshareChecked = r.status === 0 ? null : `unshare -m does not work here: ${(r.stderr || r.error?.message || '').trim()}`;
  }
  if (unshareChecked) return { ok: false, why: unshareChecked };
  return { ok: true };
}

// ---------------------------------------------------------------------------------------
// small process utilities

function run(file: string, args: string[], opts: { timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<ExecResult> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(file, args, { cwd: '/', stdio: ['ignore', 'pipe', 'pipe'], env: opts.env ?? process.env });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    let timer: NodeJS.Timeout | undefined;
    if (opts.timeoutMs) {
      timer = setTimeout(() => {
        child.kill('SIGKILL');
        stderr += `\n[harness] killed after ${opts.timeoutMs} ms`;
      }, opts.timeoutMs);
    }
    child.on('error', (e) => {
      if (timer) clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code, signal) => {
      if (timer) clearTimeout(timer);
      resolvePromise({ code: code ?? 128 + (signal ? (osSignal(signal) ?? 0) : 0), stdout, stderr });
    });
  });
}

function osSignal(s: NodeJS.Signals): number | undefined {
  const map: Partial<Record<NodeJS.Signals, number>> = { SIGHUP: 1, SIGINT: 2, SIGKILL: 9, SIGTERM: 15 };
  return map[s];
}

async function mustRun(file: string, args: string[]): Promise<ExecResult> {
  const r = await run(file, args, { timeoutMs: 30_000 });
  if (r.code !== 0) throw new Error(`${file} ${args.join(' ')} failed (${r.code}): ${r.stderr || r.stdout}`);
  return r;
}

/** Resolves when `address:port` accepts a TCP connection and (if `expect`) sends data starting with it. */
function probe(address: string, port: number, opts: { expect?: string; send?: string } = {}): Promise<boolean> {
  return new Promise((res) => {
    const s = connect({ host: address, port });
    let buf = '';
    const done = (ok: boolean) => {
      clearTimeout(t);
      s.destroy();
      res(ok);
    };
    const t = setTimeout(() => done(false), 1_000);
    s.on('connect', () => {
      if (!opts.expect) return done(true);
      if (opts.send) s.write(opts.send);
    });
    s.on('data', (d) => {
      buf += d.toString('latin1');
      if (opts.expect && buf.length >= opts.expect.length) done(buf.startsWith(opts.expect) || (opts.expect === '+PONG' && buf.startsWith('-')));
    });
    s.on('error', () => done(false));
    s.on('close', () => done(false));
  });
}

async function waitFor(what: string, cond: () => Promise<boolean>, opts: { timeoutMs?: number; abort?: () => string | null } = {}): Promise<void> {
  const deadline = Date.now() + (opts.timeoutMs ?? 10_000);
  for (;;) {
    const why = opts.abort?.();
    if (why) throw new Error(`${what}: ${why}`);
    if (await cond()) return;
    if (Date.now() > deadline) throw new Error(`${what}: timed out after ${opts.timeoutMs ?? 10_000} ms`);
    await sleep(15);
  }
}

function parentPid(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } catch {
    return null;
  }
}

function splitAddress(address: string): [string, number] {
  const i = address.lastIndexOf(':');
  return [address.slice(0, i), Number(address.slice(i + 1))];
}

function keyLine(pub: string): string {
  const [type, blob] = pub.trim().split(/\s+/);
  if (!type || !blob) throw new Error(`bad public key: ${pub}`);
  return `${type} ${blob}`;
}

// ---------------------------------------------------------------------------------------
// state dir: leftovers of crashed runs

interface StateFile {
  ownerPid: number;
  ownerStart: string | null;
  hosts: number[];
  watchdogPid?: number;
  /** /etc/sudoers.d file written for HarnessOptions.user: removed with the state dir. */
  sudoersFile?: string;
  /** The datacenter relay of HarnessOptions.datacenter. */
  relayPid?: number;
}

function readState(dir: string): StateFile | null {
  try {
    return JSON.parse(readFileSync(join(dir, 'state.json'), 'utf8')) as StateFile;
  } catch {
    return null;
  }
}

function ownerAlive(s: StateFile): boolean {
  return s.ownerPid !== process.pid && isAlive(s.ownerPid) && startTime(s.ownerPid) === s.ownerStart;
}

function hostNumbersIn(dir: string): number[] {
  try {
    return readdirSync(join(dir, 'hosts'))
      .filter((d) => /^\d+$/.test(d))
      .map(Number);
  } catch {
    return [];
  }
}

/** Kill everything a (dead) harness at `dir` left behind and remove the dir. */
async function cleanStateDir(dir: string): Promise<void> {
  const state = readState(dir);
  if (state?.watchdogPid && cmdline(state.watchdogPid).includes(WATCHDOG)) kill(state.watchdogPid, 'SIGKILL');
  if (state?.relayPid && isRelayOf(state.relayPid, dir)) kill(state.relayPid, 'SIGKILL');
  if (state?.sudoersFile && isHarnessSudoersFile(state.sudoersFile)) await rm(state.sudoersFile, { force: true });
  for (const n of hostNumbersIn(dir)) {
    const hostDir = join(dir, 'hosts', String(n));
    await killUntilGone(() => hostPids(hostDir, n), `leftovers of host ${n} in ${dir}`);
    // an sshd that somehow escaped its namespace: only if its command line names our config
    try {
      const pid = Number(readFileSync(join(hostDir, 'sshd.pid'), 'utf8').trim());
      if (pid > 1 && cmdline(pid).includes(join(hostDir, 'ssh', 'sshd_config'))) kill(pid, 'SIGKILL');
    } catch {
      /* no pidfile */
    }
  }
  await rm(dir, { recursive: true, force: true });
}

/** Its command line is relay.mjs with the state dir `dir` (not some process that got its pid). */
function isRelayOf(pid: number, dir: string): boolean {
  const c = cmdline(pid);
  return c.includes(RELAY) && c.endsWith(` ${dir}`);
}

async function prepareRoot(root: string, hosts: number[]): Promise<void> {
  if (existsSync(root)) {
    if (!existsSync(join(root, MARKER)) && readdirSync(root).length > 0) {
      throw new Error(`harness root ${root} exists, is not empty and is not a harness state dir: refusing to delete it`);
    }
  }
  // The same root, or another state dir beside it using some of our hosts.
  const parent = dirname(root);
  const candidates = new Set<string>([root]);
  try {
    for (const d of readdirSync(parent)) {
      const p = join(parent, d);
      if (existsSync(join(p, MARKER))) candidates.add(p);
    }
  } catch {
    /* parent does not exist yet */
  }
  for (const dir of candidates) {
    if (!existsSync(dir)) continue;
    const state = readState(dir);
    const used = state?.hosts ?? hostNumbersIn(dir);
    const overlap = used.filter((n) => hosts.includes(n));
    if (dir !== root && overlap.length === 0) continue;
    if (state && ownerAlive(state)) {
      throw new Error(`harness state dir ${dir} belongs to live process ${state.ownerPid} (${cmdline(state.ownerPid)}) using hosts ${used.join(',')}`);
    }
    await cleanStateDir(dir);
  }
}

// ---------------------------------------------------------------------------------------
// levers: the non-root user and its sudo, the redis user, sftp-server

function isHarnessSudoersFile(file: string): boolean {
  return dirname(file) === SUDOERS_DIR && basename(file).startsWith(SUDOERS_PREFIX) && !basename(file).includes('.');
}

interface PasswdEntry {
  uid: number;
  gid: number;
  home: string;
  shell: string;
}

/** getent, not /etc/passwd: the user may come from NSS. null when there is no such user. */
function passwdEntry(name: string): PasswdEntry | null {
  const r = spawnSync(which('getent') ?? 'getent', ['passwd', name], { encoding: 'utf8', timeout: 10_000 });
  if (r.status === 2) return null; // "key not found"
  if (r.status !== 0) throw new Error(`getent passwd ${name} failed (${r.status}): ${r.stderr || r.error?.message}`);
  const f = r.stdout.trim().split('\n')[0]?.split(':') ?? [];
  if (f.length < 7) throw new Error(`getent passwd ${name}: unexpected output ${r.stdout}`);
  return { uid: Number(f[2]), gid: Number(f[3]), home: f[5] ?? '', shell: f[6] ?? '' };
}

function redisIds(): PasswdEntry {
  const e = passwdEntry('redis');
  if (!e) throw new Error(`HarnessOptions.redisOwned: there is no redis user on this machine (id redis finds none; Debian's redis-server package creates it)`);
  return e;
}

function sudoRule(name: string, mode: SudoMode): string | null {
  if (mode === 'none') return null;
  return `# rcluster test harness: SSH user ${name}, sudo ${mode}\n${name} ALL=(ALL:ALL) ${mode === 'nopasswd' ? 'NOPASSWD: ' : ''}ALL\n`;
}

/**
 * Create the user if missing (idempotent: an existing one is checked, not changed), and give it
 * the sudo rule of `mode`. Returns the user's uid and the sudoers file written (if any).
 */
async function ensureUser(u: HarnessUser, scratchDir: string): Promise<{ uid: number; sudoersFile?: string }> {
  if (!/^[a-z_][a-z0-9_-]{0,30}$/.test(u.name)) throw new Error(`HarnessOptions.user.name must be a lowercase user name (a-z, 0-9, _ and -; at most 31), got ${JSON.stringify(u.name)}`);
  if (!['nopasswd', 'password', 'none'].includes(u.sudo)) throw new Error(`HarnessOptions.user.sudo must be nopasswd, password or none, got ${JSON.stringify(u.sudo)}`);
  const sudo = which('sudo');
  const visudo = which('visudo');
  if (u.sudo !== 'none' && (!sudo || !visudo)) {
    // Never skip: a test that asked for sudo would otherwise pass without ever using it.
    throw new Error(`HarnessOptions.user.sudo '${u.sudo}' needs sudo, and ${!sudo ? 'sudo' : 'visudo'} is not installed on this machine (command -v ${!sudo ? 'sudo' : 'visudo'} finds nothing): install the sudo package`);
  }

  let entry = passwdEntry(u.name);
  if (!entry) {
    const useradd = which('useradd');
    if (!useradd) throw new Error(`HarnessOptions.user: user ${u.name} does not exist and useradd is not installed`);
    // Password '*': no password can match, but the account is not locked ('!'), which sshd
    // (UsePAM no) would refuse even for a key.
    const r = await run(useradd, ['--create-home', '--shell', '/bin/bash', '--password', '*', '--comment', 'rcluster test harness', u.name], { timeoutMs: 30_000 });
    entry = passwdEntry(u.name); // another harness may have created it meanwhile
    if (!entry) throw new Error(`useradd ${u.name} failed (${r.code}): ${r.stderr || r.stdout}`);
  }
  if (entry.uid === 0) throw new Error(`HarnessOptions.user: ${u.name} has uid 0; the lever is for a non-root user`);
  if (/(nologin|false)$/.test(entry.shell) || !existsSync(entry.shell)) {
    throw new Error(`HarnessOptions.user: ${u.name} exists with shell ${entry.shell || '(none)'}, which cannot run SSH commands`);
  }
  const shadow = readFileSync('/etc/shadow', 'utf8')
    .split('\n')
    .find((l) => l.startsWith(`${u.name}:`));
  if (shadow?.split(':')[1]?.startsWith('!')) {
    throw new Error(`HarnessOptions.user: ${u.name}'s account is locked ('!' in /etc/shadow), so sshd (UsePAM no) refuses its key; unlock it, e.g. usermod -p '*' ${u.name}`);
  }

  const file = join(SUDOERS_DIR, SUDOERS_PREFIX + u.name);
  const rule = sudoRule(u.name, u.sudo);
  if (rule === null) {
    await rm(file, { force: true });
  } else {
    const draft = join(scratchDir, `sudoers-${u.name}`);
    await writeFile(draft, rule, { mode: 0o440 });
    await mustRun(visudo!, ['-c', '-q', '-f', draft]);
    await mkdir(SUDOERS_DIR, { recursive: true, mode: 0o755 });
    // sudo ignores names with a '.' in an includedir: the file appears whole, by rename.
    const tmp = join(SUDOERS_DIR, `.${SUDOERS_PREFIX}${u.name}.tmp`);
    await writeFile(tmp, rule, { mode: 0o440 });
    await chmod(tmp, 0o440);
    await rename(tmp, file);
  }
  if (sudo) {
    // What sudo itself says this user may do: catches a sudoers without @includedir, or a user
    // whose group (sudo, wheel...) grants more than the mode asked for.
    const l = await run(sudo, ['-n', '-l', '-U', u.name], { timeoutMs: 10_000 });
    const ok =
      u.sudo === 'nopasswd'
        ? /\(ALL : ALL\) NOPASSWD: ALL/.test(l.stdout)
        : u.sudo === 'password'
          ? /\(ALL : ALL\) ALL/.test(l.stdout) && !/NOPASSWD/.test(l.stdout)
          : /is not allowed to run sudo/.test(l.stdout + l.stderr);
    if (!ok) throw new Error(`HarnessOptions.user: after setting sudo '${u.sudo}' for ${u.name}, sudo -l -U ${u.name} says:\n${l.stdout}${l.stderr}`);
  }
  return rule === null ? { uid: entry.uid } : { uid: entry.uid, sudoersFile: file };
}

function sftpServer(): string | null {
  for (const p of SFTP_SERVERS) {
    try {
      accessSync(p, fsc.X_OK);
      return p;
    } catch {
      /* next */
    }
  }
  return null;
}

/** Host numbers of a `boolean | number[]` lever. */
function hostsOf(lever: boolean | number[] | undefined, all: number[]): number[] {
  return lever === true ? all : Array.isArray(lever) ? lever : [];
}

// ---------------------------------------------------------------------------------------
// hosts

interface HostState extends TestHost {
  dir: string;
  pub: string;
  /** Sessions go through the ForceCommand wrapper (logged, maybe delayed). */
  sessionLog: boolean;
  child?: ChildProcess;
  pid?: number;
  ns?: string;
  exited?: Promise<void>;
  booting?: Promise<void>;
  /** The datacenter relay's forward of 127.0.0.N:22 while the host is up. */
  sshForward?: number;
}

const HOST_DIRS: [string, string][] = [
  ['/etc/redis', 'etc-redis'],
  ['/etc/init.d', 'etc-init.d'],
  ['/var/lib/redis', 'var-lib-redis'],
  ['/var/run', 'run'],
  ['/run', 'run'],
  ['/var/log', 'var-log'],
];

function makeHost(root: string, n: number): HostState {
  const dir = join(root, 'hosts', String(n));
  return {
    n,
    address: `127.0.0.${n}`,
    root: dir,
    dir,
    pub: '',
    sessionLog: false,
    path(p: string): string {
      if (!p.startsWith('/')) throw new Error(`host path must be absolute: ${p}`);
      const norm = posix.normalize(p);
      for (const [hostPath, sub] of HOST_DIRS) {
        if (norm === hostPath || norm.startsWith(hostPath + '/')) return join(dir, sub, norm.slice(hostPath.length));
      }
      throw new Error(`${p} is not a per-host path (per-host: ${HOST_DIRS.map(([h]) => h).join(', ')})`);
    },
  };
}

export async function startHarness(opts: HarnessOptions): Promise<Harness> {
  const avail = harnessAvailable();
  if (!avail.ok) throw new Error(`test harness unavailable: ${avail.why}`);
  const tools = findTools() as Tools;

  const nums = [...new Set(opts.hosts)].sort((a, b) => a - b);
  if (nums.length === 0) throw new Error('startHarness: no hosts');
  for (const n of nums) {
    if (!Number.isInteger(n) || n < 2 || n > 254) throw new Error(`test host number must be an integer in 2..254 (127.0.0.1 is shared), got ${n}`);
  }
  const inHarness = (what: string, ns: number[]) => {
    for (const n of ns) if (!nums.includes(n)) throw new Error(`HarnessOptions.${what}: host ${n} is not one of this harness's hosts (${nums.join(', ')})`);
  };
  const slow = opts.slowSessionMs ?? {};
  for (const [k, ms] of Object.entries(slow)) {
    if (!Number.isInteger(ms) || ms < 0) throw new Error(`HarnessOptions.slowSessionMs[${k}] must be a whole number of ms >= 0, got ${ms}`);
  }
  const logged = new Set([...hostsOf(opts.sessionLog, nums), ...Object.keys(slow).map(Number)]);
  inHarness('sessionLog/slowSessionMs', [...logged]);
  const redisOwned = hostsOf(opts.redisOwned, nums);
  inHarness('redisOwned', redisOwned);
  const redisUser = redisOwned.length > 0 ? redisIds() : undefined;
  const sftpPath = [...logged].some((n) => !opts.noSftp?.includes(n)) ? sftpServer() : null;
  if (sftpPath === null && [...logged].some((n) => !opts.noSftp?.includes(n))) {
    throw new Error(`a host with a session log and sftp needs an external sftp-server (none of ${SFTP_SERVERS.join(', ')} exists): with sshd's ForceCommand, internal-sftp cannot be used`);
  }

  const ip = opts.datacenter ? which('ip') : null;
  if (opts.datacenter && !ip) throw new Error('HarnessOptions.datacenter needs ip (package iproute2) to bring up lo in the datacenter network namespace: not found on PATH');

  const rootArg = resolve(opts.root ?? join(DEFAULT_PARENT, nums.join('-')));
  if (rootArg.split('/').filter(Boolean).length < 2) throw new Error(`harness root too close to /: ${rootArg}`);
  await mkdir(dirname(rootArg), { recursive: true });
  const root = join(realpathSync(dirname(rootArg)), basename(rootArg));

  await prepareRoot(root, nums);
  await mkdir(root, { recursive: true });
  await writeFile(join(root, MARKER), 'rcluster test harness state dir; removed by Harness.stop()\n');
  const state: StateFile = { ownerPid: process.pid, ownerStart: startTime(process.pid), hosts: nums };
  await writeFile(join(root, 'state.json'), JSON.stringify(state));

  const hosts = new Map<number, HostState>(nums.map((n) => [n, { ...makeHost(root, n), sessionLog: logged.has(n) }]));
  const clientDir = join(root, 'client');
  const identityFile = join(clientDir, 'id_ed25519');
  const authorizedKeys = join(clientDir, 'authorized_keys');
  const knownHostsFile = join(root, 'known_hosts');
  let stopped = false;
  let watchdog: ChildProcess | undefined;
  let user: (HarnessUser & { uid: number }) | undefined;
  const proxies = new Set<LatencyProxy>();
  let dc: Datacenter | undefined;
  const intoDc = new Map<string, Promise<string>>();

  const killAllSync = () => {
    for (const h of hosts.values()) killUntilGoneSync(() => hostPids(h.dir, h.n));
    // It would go by itself once our end of its IPC channel closes.
    if (dc) kill(dc.pid, 'SIGKILL');
  };
  const onExit = () => killAllSync();

  const get = (n: number): HostState => {
    const h = hosts.get(n);
    if (!h) throw new Error(`host ${n} is not part of this harness (hosts: ${nums.join(', ')})`);
    return h;
  };

  const writeKnownHosts = async () => {
    const lines = [...hosts.values()].map((h) => `${h.address} ${keyLine(h.pub)}`);
    await writeFile(knownHostsFile, lines.join('\n') + '\n');
  };

  const genKey = async (file: string, comment: string): Promise<string> => {
    await rm(file, { force: true });
    await rm(`${file}.pub`, { force: true });
    await mustRun(tools.sshKeygen, ['-q', '-t', 'ed25519', '-N', '', '-C', comment, '-f', file]);
    return (await readFile(`${file}.pub`, 'utf8')).trim();
  };

  const hostKeyFile = (h: HostState) => join(h.dir, 'ssh', 'ssh_host_ed25519_key');
  // On the real filesystem, outside the bind mounts: the wrapper (inside the host's namespace)
  // and the test runner see the same files.
  const wrapperFile = (h: HostState) => join(h.dir, 'ssh', 'session');
  const sessionsFile = (h: HostState) => join(h.dir, 'sessions.log');
  const delayFile = (h: HostState) => join(h.dir, 'session-delay-ms');

  const setupHost = async (h: HostState) => {
    for (const sub of ['etc-redis', 'etc-init.d', 'var-lib-redis/6379', 'run/sshd', 'var-log', 'ssh']) {
      await mkdir(join(h.dir, sub), { recursive: true, mode: 0o755 });
    }
    await chmod(join(h.dir, 'run', 'sshd'), 0o755);
    h.pub = await genKey(hostKeyFile(h), `rcluster-harness-host-${h.n}`);
    const sftp = !opts.noSftp?.includes(h.n);
    if (h.sessionLog) {
      await writeFile(wrapperFile(h), sessionWrapper(sessionsFile(h), delayFile(h)), { mode: 0o755 });
      await chmod(wrapperFile(h), 0o755);
      await writeFile(sessionsFile(h), '');
      // The wrapper runs as whoever logged in: the non-root user's sessions append here too.
      await chmod(sessionsFile(h), 0o666);
      await writeFile(delayFile(h), `${slow[h.n] ?? 0}\n`);
      await chmod(delayFile(h), 0o644);
    }
    await writeFile(
      join(h.dir, 'ssh', 'sshd_config'),
      sshdConfig({
        address: h.address,
        hostKeyFile: hostKeyFile(h),
        pidFile: join(h.dir, 'sshd.pid'),
        authorizedKeysFile: authorizedKeys,
        sftp,
        ...(h.sessionLog ? { forceCommand: shQuote(wrapperFile(h)), ...(sftp && sftpPath ? { sftpServer: sftpPath } : {}) } : {}),
      }),
    );
    await writeFile(h.path('/etc/redis/6379.conf'), redisConf(h.address));
    if (redisUser && redisOwned.includes(h.n)) {
      // As Debian's redis-server package leaves them: the SSH user needs sudo to read or change
      // the conf, or to look into the data dir.
      await chown(h.path('/etc/redis/6379.conf'), redisUser.uid, redisUser.gid);
      await chmod(h.path('/etc/redis/6379.conf'), 0o640);
      for (const d of ['/var/lib/redis', '/var/lib/redis/6379']) {
        await chown(h.path(d), redisUser.uid, redisUser.gid);
        await chmod(h.path(d), 0o750);
      }
    }
    await writeFile(h.path('/etc/init.d/redis_6379'), initScript(tools.redisServer, tools.redisCli), { mode: 0o755 });
    await chmod(h.path('/etc/init.d/redis_6379'), 0o755);
  };

  /** A pid inside the host's namespace to nsenter: the sshd, or any survivor. */
  const anchor = (h: HostState): number | null => {
    if (h.pid && h.ns && mntNs(h.pid) === h.ns) return h.pid;
    return hostPids(h.dir, h.n)[0] ?? null;
  };

  const exec = async (n: number, command: string, o: { timeoutMs?: number } = {}): Promise<ExecResult> => {
    const h = get(n);
    const pid = anchor(h);
    if (pid === null) throw new Error(`host ${n} is down (no process in its namespace)`);
    const ns = dc ? ['-m', '-n'] : ['-m'];
    return run(tools.nsenter, ['-t', String(pid), ...ns, '--', '/bin/sh', '-c', command], o.timeoutMs ? { timeoutMs: o.timeoutMs } : {});
  };

  const isUp = (n: number) => anchor(get(n)) !== null;

  const dropSshConnections = (n: number): number => {
    const h = get(n);
    if (!h.pid) return 0;
    const children = listPids().filter((p) => parentPid(p) === h.pid);
    for (const p of children) kill(p, 'SIGKILL');
    return children.length;
  };

  const withLog = (n: number): HostState => {
    const h = get(n);
    if (!h.sessionLog) throw new Error(`host ${n} has no session log: start the harness with sessionLog (or slowSessionMs) for it`);
    return h;
  };

  const sessions = (n: number): SessionRecord[] => {
    const h = withLog(n);
    let text: string;
    try {
      text = readFileSync(sessionsFile(h), 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw e;
    }
    const lines = text.split('\n');
    lines.pop(); // after the last newline: '' or a line still being written
    return lines.map((line) => {
      const [at, connection, command, ...rest] = line.split('\t');
      if (at === undefined || connection === undefined || command === undefined || rest.length > 0 || !/^\d+$/.test(at)) {
        throw new Error(`host ${n}: bad line in ${sessionsFile(h)}: ${JSON.stringify(line)}`);
      }
      return { at: Number(at), connection, command: command === '-' ? null : Buffer.from(command, 'base64').toString('utf8') };
    });
  };

  const clearSessions = (n: number) => {
    // Truncate in place: the file keeps its mode (0666) for the non-root user's sessions.
    writeFileSync(sessionsFile(withLog(n)), '');
  };

  const setSessionDelay = (n: number, ms: number) => {
    if (!Number.isInteger(ms) || ms < 0) throw new Error(`setSessionDelay(${n}): ms must be a whole number >= 0, got ${ms}`);
    const file = delayFile(withLog(n));
    // Whole by rename: a session starting meanwhile reads the old or the new delay.
    writeFileSync(`${file}.new`, `${ms}\n`, { mode: 0o644 });
    renameSync(`${file}.new`, file);
  };

  const latencyProxy = async (n: number, o: { delayMs: number; port?: number }): Promise<LatencyProxy> => {
    const h = get(n);
    if (stopped) throw new Error('latencyProxy: the harness is stopped');
    const p = await startLatencyProxy({ host: h.address, port: o.port ?? 0, targetHost: h.address, targetPort: 22, delayMs: o.delayMs });
    proxies.add(p);
    return {
      host: p.host,
      port: p.port,
      close: async () => {
        proxies.delete(p);
        await p.close();
      },
    };
  };

  const intoDatacenter = (target: string): Promise<string> => {
    if (!dc) return Promise.reject(new Error('intoDatacenter: this harness has no datacenter (HarnessOptions.datacenter)'));
    const m = /^(127\.\d{1,3}\.\d{1,3}\.\d{1,3}):(\d{1,5})$/.exec(target);
    if (!m) return Promise.reject(new Error(`intoDatacenter: target must be 127.x.y.z:port, got ${JSON.stringify(target)}`));
    const d = dc;
    let way = intoDc.get(target);
    if (!way) {
      way = d.forward({ host: '127.0.0.1', port: 0 }, { host: m[1]!, port: Number(m[2]) }).then(({ port }) => `127.0.0.1:${port}`);
      way.catch(() => intoDc.delete(target));
      intoDc.set(target, way);
    }
    return way;
  };

  const bootHost = async (h: HostState) => {
    if (anchor(h) !== null) return;
    if (dc) {
      // Before sshd starts: the boot waits for its banner through this way in.
      h.sshForward = (await dc.forward({ host: h.address, port: 22 }, { host: h.address, port: 22 }).catch((e: Error) => {
        throw new Error(`host ${h.n}: ${e.message}`);
      })).id;
    }
    // A reboot empties /run: stale pidfiles must not survive (keep sshd's privsep dir).
    const runDir = join(h.dir, 'run');
    for (const f of readdirSync(runDir)) if (f !== 'sshd') await rm(join(runDir, f), { recursive: true, force: true });
    const sshdLog = join(h.dir, 'sshd.log');
    const bootLog = join(h.dir, 'boot.log');
    const unshareArgs = ['-m', '--propagation', 'private', '--', '/bin/sh', '-c', BOOT_SCRIPT, 'boot', h.dir, SSHD];
    // nsenter and unshare both exec without forking: the child's pid is the sshd's.
    const child = dc
      ? spawn(tools.nsenter, [`--net=/proc/${dc.pid}/ns/net`, '--', tools.unshare, ...unshareArgs], { cwd: '/', stdio: 'ignore' })
      : spawn(tools.unshare, unshareArgs, { cwd: '/', stdio: 'ignore' });
    child.unref();
    h.child = child;
    h.pid = child.pid;
    h.ns = undefined;
    h.exited = new Promise<void>((r) => child.once('exit', () => r()));
    const spawnError = new Promise<Error>((r) => child.once('error', r));
    let err: Error | undefined;
    void spawnError.then((e) => (err = e));
    const failed = () => {
      if (err) return `spawn failed: ${err.message}`;
      if (child.exitCode !== null || child.signalCode !== null) {
        return `sshd exited (${child.exitCode ?? child.signalCode}).\nboot.log:\n${tail(bootLog)}\nsshd.log:\n${tail(sshdLog)}`;
      }
      return null;
    };
    await waitFor(`host ${h.n}: sshd on ${h.address}:22`, () => probe(h.address, 22, { expect: 'SSH-' }), { abort: failed });
    const ns = child.pid ? mntNs(child.pid) : null;
    if (!ns || ns === OWN_MNT_NS) throw new Error(`host ${h.n}: sshd (pid ${child.pid}) is not in its own mount namespace (${ns})`);
    h.ns = ns;
    if (dc) {
      const net = child.pid ? netNs(child.pid) : null;
      if (net !== dc.netns) throw new Error(`host ${h.n}: sshd (pid ${child.pid}) is in network namespace ${net}, not the datacenter's ${dc.netns}`);
    }
    const r = await exec(h.n, '/etc/init.d/redis_6379 start', { timeoutMs: 30_000 });
    if (r.code !== 0) {
      throw new Error(`host ${h.n}: /etc/init.d/redis_6379 start failed (${r.code}): ${r.stdout}${r.stderr}\n${tail(h.path('/var/log/redis_6379.log'))}`);
    }
    const port = Number(/^port\s+(\d+)/m.exec(await readFile(h.path('/etc/redis/6379.conf'), 'utf8'))?.[1] ?? 6379);
    const [host, via] = dc ? splitAddress(await intoDatacenter(`${h.address}:${port}`)) : [h.address, port];
    await waitFor(`host ${h.n}: redis on ${h.address}:${port}`, () => probe(host, via, { send: 'PING\r\n', expect: '+PONG' }));
  };

  const stopHost = async (n: number, o: { graceful?: boolean } = {}) => {
    const h = get(n);
    if (dc && h.sshForward !== undefined) {
      // First, as a powered-off host's port would be: connecting is refused from now on.
      const id = h.sshForward;
      h.sshForward = undefined;
      // A relay that is gone took the forward with it; the next boot says why it went.
      await dc.close(id).catch(() => undefined);
    }
    if (o.graceful && anchor(h) !== null) {
      await exec(n, '/etc/init.d/redis_6379 stop', { timeoutMs: 60_000 }).catch(() => undefined);
    }
    // Children of the sshd first, so that the still-running sshd reaps them (killed
    // together they would become zombies of pid 1 until it gets round to reaping them).
    const keep = h.pid && h.ns && mntNs(h.pid) === h.ns ? h.pid : undefined;
    if (keep) {
      const others = hostPids(h.dir, h.n).filter((p) => p !== keep);
      for (const p of others) kill(p, 'SIGKILL');
      const deadline = Date.now() + 500;
      while (others.some((p) => existsSync(`/proc/${p}`) && parentPid(p) === keep) && Date.now() < deadline) await sleep(5);
    }
    await killUntilGone(() => hostPids(h.dir, h.n), `stopping host ${n}`);
    if (h.exited) await Promise.race([h.exited, sleep(5_000)]);
    h.child = undefined;
    h.pid = undefined;
    h.ns = undefined;
  };

  const rotateHostKey = async (n: number, o: { updateKnownHosts?: boolean } = {}) => {
    const h = get(n);
    const file = hostKeyFile(h);
    const tmp = `${file}.new`;
    const pub = await genKey(tmp, `rcluster-harness-host-${n}`);
    await rename(`${tmp}.pub`, `${file}.pub`);
    await rename(tmp, file);
    h.pub = pub;
    if (o.updateKnownHosts) await writeKnownHosts();
    const pid = anchor(h);
    if (pid === null || pid !== h.pid) return; // down: the next boot uses the new key
    kill(pid, 'SIGHUP'); // sshd re-execs itself with the same pid and re-reads its keys
    const want = keyLine(pub);
    await waitFor(`host ${n}: sshd serving the new host key`, async () => {
      const r = await run(tools.sshKeyscan, ['-T', '2', '-t', 'ed25519', h.address], { timeoutMs: 5_000 });
      return r.stdout.split('\n').some((l) => l.trim() === `${h.address} ${want}`);
    });
  };

  const stop = async () => {
    if (stopped) return;
    stopped = true;
    if (watchdog?.pid) kill(watchdog.pid, 'SIGKILL');
    const errors: unknown[] = [];
    await Promise.all([...proxies].map((p) => p.close()));
    if (state.sudoersFile) await rm(state.sudoersFile, { force: true }).catch((e: unknown) => errors.push(e));
    await Promise.all(nums.map((n) => stopHost(n).catch((e: unknown) => errors.push(e))));
    await dc?.stop();
    process.off('exit', onExit);
    await rm(root, { recursive: true, force: true });
    if (dirname(root) === DEFAULT_PARENT) {
      try {
        rmdirSync(DEFAULT_PARENT);
      } catch {
        /* other harnesses */
      }
    }
    if (errors.length) throw errors[0];
  };

  process.on('exit', onExit);
  try {
    await mkdir(clientDir, { recursive: true });
    const clientKey = genKey(identityFile, 'rcluster-harness-client');
    await Promise.all([clientKey, ...[...hosts.values()].map(setupHost)]);
    const clientPub = await clientKey;
    await writeFile(authorizedKeys, clientPub + '\n');
    if (opts.user) {
      // Recorded before it exists: a crash right after still gets it removed (cleanStateDir,
      // watchdog).
      if (opts.user.sudo !== 'none') {
        state.sudoersFile = join(SUDOERS_DIR, SUDOERS_PREFIX + opts.user.name);
        await writeFile(join(root, 'state.json'), JSON.stringify(state));
      }
      const u = await ensureUser(opts.user, root);
      user = { ...opts.user, uid: u.uid };
      // sshd reads authorized_keys as the user, and the wrapper runs as the user: every
      // directory on the way must be searchable whatever the umask was.
      const dirs = [root, join(root, 'hosts'), clientDir, ...[...hosts.values()].flatMap((h) => [h.dir, join(h.dir, 'ssh')])];
      if (dirname(root) === DEFAULT_PARENT) dirs.unshift(DEFAULT_PARENT);
      for (const d of dirs) await chmod(d, 0o755);
      await chmod(authorizedKeys, 0o644);
    }

    watchdog = spawn(process.execPath, [WATCHDOG, root, nums.join(',')], { detached: true, stdio: ['pipe', 'ignore', 'ignore'], cwd: '/' });
    watchdog.on('error', () => undefined);
    watchdog.unref();
    (watchdog.stdin as unknown as { unref?: () => void } | null)?.unref?.();
    state.watchdogPid = watchdog.pid;
    await writeFile(join(root, 'state.json'), JSON.stringify(state));
    if (opts.datacenter && ip) {
      dc = await startDatacenter({ unshare: tools.unshare, ip, dir: root });
      state.relayPid = dc.pid;
      await writeFile(join(root, 'state.json'), JSON.stringify(state));
    }

    await Promise.all([...hosts.values()].map(bootHost));
    await writeKnownHosts();

    return {
      hosts: [...hosts.values()],
      root,
      identityFile,
      clientPublicKey: clientPub,
      knownHostsFile,
      hostPublicKey: (n) => keyLine(get(n).pub),
      hostKeyBlob: (n) => Buffer.from(keyLine(get(n).pub).split(' ')[1] ?? '', 'base64'),
      stopHost,
      startHost: (n) => {
        const h = get(n);
        h.booting ??= bootHost(h).finally(() => (h.booting = undefined));
        return h.booting;
      },
      rotateHostKey,
      writeKnownHosts,
      isUp,
      dropSshConnections,
      exec,
      ...(user ? { user } : {}),
      sessions,
      clearSessions,
      setSessionDelay,
      latencyProxy,
      ...(dc ? { datacenter: { netns: dc.netns, relayPid: dc.pid } } : {}),
      intoDatacenter,
      stop,
    };
  } catch (e) {
    await stop().catch(() => undefined);
    throw e;
  }
}

/** For tests: start the hosts, or fail with the reason they cannot run here (never skip). */
export async function startTestHosts(hosts: number[], opts: Omit<HarnessOptions, 'hosts'> = {}): Promise<Harness> {
  const available = harnessAvailable();
  if (!available.ok) throw new Error(`the SSH test hosts cannot run here: ${available.why}`);
  return startHarness({ ...opts, hosts });
}
