/**
 * The SSH HostDriver, on ssh2.
 *
 * - One ssh2 Client per host, opened on first use and reused for every command and file transfer;
 *   callers that need the same host while it is connecting share the pending connection. A
 *   connection that drops is forgotten, and the next operation on that host reconnects.
 * - Commands and files go through a long-lived `sh` on the host (remoteShell.ts): at most
 *   `shellsPerHost` (default 2) SSH sessions per host for a whole run, however many commands it
 *   sends, and no sftp subsystem needed. Operations on different hosts run in parallel, at most
 *   `concurrency` at a time (default 16).
 * - Connecting (TCP + handshake + auth) times out after `connectTimeoutMs` (default 10 s); each
 *   command and file operation after `commandTimeoutMs` (default 60 s), run() may override that.
 *   A timed-out command ends its shell (SIGKILL, channel closed); the next command gets a new one.
 * - Auth: the private key in `identityFile` and/or the agent at SSH_AUTH_SOCK; user defaults to the
 *   local user name, port to 22.
 * - Host keys are checked against `knownHostsFile` (see knownHosts.ts): `strict` refuses unknown
 *   and changed keys; `accept-new` appends unknown keys to the file and refuses changed ones.
 * - Files are read with `cat` and written through the shell: writeFileAtomic writes
 *   `<path>.rcluster-tmp-<random>` beside the target, gives it the mode and owner of the file it
 *   replaces (a new file gets `mode`, or 0666 minus the umask), optionally copies the current
 *   file to `<path>.rcluster.bak` (mode and owner kept), fsyncs it, then renames it over the
 *   target. On failure the temp file is removed. A symlinked target is replaced by a regular file.
 * - Errors are HostError(host, step, reason): step `ssh` for connecting, `read <path>`,
 *   `write <path>`, `run` for commands.
 */

import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { homedir, userInfo, constants as osConstants } from 'node:os';
import ssh2 from 'ssh2';
import type { Client as SshClient, ConnectConfig } from 'ssh2';
import pLimit from 'p-limit';
import { HostError, HostUnreachableError } from '../errors.js';
import { sh } from './shell.js';
import { RemoteShell, seconds } from './remoteShell.js';
import { resolveEndpoint, type SshEndpoint } from './sshConfig.js';
import type { Duplex } from 'node:stream';
import type { SshSettings } from '../spec/types.js';
import type { HostDriver, RunOptions, RunResult } from './driver.js';
import {
  appendKnownHost,
  checkHostKey,
  fingerprintSha256,
  keyTypeOfBlob,
  knownHostsLine,
  readKnownHosts,
} from './knownHosts.js';

const { Client } = ssh2;

export interface SshTarget {
  host: string;
  ssh: SshSettings;
}

export interface SshDriverOptions {
  concurrency?: number;
  connectTimeoutMs?: number;
  commandTimeoutMs?: number;
  /** Shells (SSH sessions) kept open per host; commands beyond that wait for one. Default 2. */
  shellsPerHost?: number;
  /** Settings for hosts not among the targets (nodes of the cluster the spec no longer lists). */
  otherHosts?: SshSettings;
}

export interface SshDriver extends HostDriver {
  readonly kind: 'ssh';
  /** Open (or reuse) the connection to a host; fails with the same HostError an operation would. */
  connect(host: string): Promise<void>;
  /**
   * A TCP stream to `toHost:toPort` opened by `host` itself (a direct-tcpip channel of its SSH
   * connection, not a session): how Redis is reached when only SSH gets through.
   */
  forward(host: string, toHost: string, toPort: number): Promise<Duplex>;
  /**
   * Take the host-side lock `name` (flock on /tmp/.rcluster-<name>-<host>.lock, held open by one
   * of this run's shells, so it ends with the session: a killed apply holds nothing). Returns
   * null when taken, else the holder's text. `forceUnlock`: first end the shell of the holder
   * whose text starts with that id.
   */
  lockHost(host: string, name: string, holder: string, forceUnlock?: string): Promise<string | null>;
  /** Hosts whose lock-holding shell ended since they were locked (the lock went with it). */
  lostHostLocks(): string[];
  /**
   * Counters, for tests and diagnostics: SSH connections that reached `ready`, and SSH sessions
   * (channels running a command) opened.
   */
  readonly stats: { readonly connections: number; readonly sessions: number };
}

interface Conn {
  client: SshClient;
  closed: boolean;
  /** Its shells, and callers waiting for one to come free. */
  shells: RemoteShell[];
  starting: number;
  waiters: (() => void)[];
}

function expandHome(p: string): string {
  if (p === '~') return homedir();
  if (p.startsWith('~/')) return homedir() + p.slice(1);
  return p;
}

/** A failed file command's reason, as the old SFTP errors said it. */
function fileReason(stderr: string, code: number): string {
  const text = stderr.trim();
  if (/permission denied/i.test(text)) return 'permission denied';
  if (/no such file or directory|directory nonexistent/i.test(text)) return 'no such file or directory';
  return text.split('\n').slice(-2).join(' | ') || `exited ${code}`;
}

export function createSshDriver(targets: SshTarget[], opts: SshDriverOptions = {}): SshDriver {
  const connectTimeoutMs = opts.connectTimeoutMs ?? 10_000;
  const commandTimeoutMs = opts.commandTimeoutMs ?? 60_000;
  const limit = pLimit(opts.concurrency ?? 16);
  const byHost = new Map<string, SshSettings>();
  for (const t of targets) byHost.set(t.host, t.ssh);
  const conns = new Map<string, Promise<Conn>>();
  /** The shell holding each host's lock (lockHost). */
  const lockShells = new Map<string, RemoteShell>();
  /** Connections to jump hosts, by the chain that reaches them. */
  const jumpConns = new Map<string, Promise<Conn>>();
  let closed = false;
  const stats = { connections: 0, sessions: 0 };
  const shellsPerHost = opts.shellsPerHost ?? 2;

  function settingsOf(host: string): SshSettings {
    const s = byHost.get(host) ?? opts.otherHosts;
    if (!s) throw new HostError(host, 'ssh', 'no SSH settings for this host (not in the spec)');
    return s;
  }

  /** null when the key is acceptable, else why it is refused. */
  async function verifyHostKey(host: string, ssh: SshEndpoint, key: Buffer): Promise<string | null> {
    const file = ssh.knownHostsFile;
    const keyType = keyTypeOfBlob(key);
    const offered = fingerprintSha256(key);
    if (keyType === null) return `host key for ${host} cannot be parsed (${offered})`;
    const check = checkHostKey(await readKnownHosts(file), host, ssh.port, keyType, key);
    switch (check.status) {
      case 'match':
        return null;
      case 'changed':
        if (check.revoked) {
          return `host key ${offered} for ${host} is marked @revoked in ${ssh.knownHostsFile} — refusing to connect`;
        }
        return `HOST KEY CHANGED for ${host}: known ${check.knownFingerprint}, offered ${offered} — refusing to connect`;
      case 'unknown':
        if (ssh.hostKeyPolicy !== 'accept-new') {
          return `host key for ${host} is not known (${offered}); add it to ${ssh.knownHostsFile} or set hostKeyPolicy: accept-new`;
        }
        try {
          await appendKnownHost(file, knownHostsLine(host, ssh.port, keyType, key));
        } catch (err) {
          return `cannot add the host key of ${host} (${offered}) to ${ssh.knownHostsFile}: ${(err as Error).message}`;
        }
        return null;
    }
  }

  /**
   * The connection to a spec host: its endpoint from the spec and the OpenSSH config, reached
   * directly or through its jump hosts.
   */
  async function openConn(host: string): Promise<Conn> {
    const ep = await resolveEndpoint(host, settingsOf(host));
    const sock = ep.jumps.length > 0 ? await throughJumps(host, ep) : undefined;
    return dial(host, ep, sock);
  }

  /**
   * A stream to `ep`'s sshd through its jump hosts, each one a connection of its own (shared by
   * every host behind it) whose host key is checked like any other.
   */
  async function throughJumps(host: string, ep: SshEndpoint): Promise<Duplex> {
    let sock: Duplex | undefined;
    let key = '';
    for (const [i, jump] of ep.jumps.entries()) {
      key += `>${jump.user}@${jump.hostname}:${jump.port}`;
      let pending = jumpConns.get(key);
      if (!pending || (await pending.then((c) => c.closed, () => true))) {
        const via = sock;
        pending = dial(host, jump, via, `jump host ${jump.label}`);
        jumpConns.set(key, pending);
      }
      const conn = await pending;
      const next = ep.jumps[i + 1] ?? ep;
      sock = await forwardOut(host, conn, next.hostname, next.port, `via jump host ${jump.label}`);
    }
    return sock as Duplex;
  }

  /** A TCP stream opened by the host at the other end of `conn` (a direct-tcpip channel). */
  function forwardOut(host: string, conn: Conn, toHost: string, toPort: number, what: string): Promise<Duplex> {
    return new Promise<Duplex>((resolve, reject) => {
      try {
        conn.client.forwardOut('127.0.0.1', 0, toHost, toPort, (err, stream) => {
          if (!err) return resolve(stream);
          // The far side refused or could not connect: as unreachable as a refused direct dial.
          // ssh2 says "(SSH) Channel open failure: Connection refused": the reason is the last part.
          const why = err.message.replace(/^\(SSH\) Channel open failure:\s*/i, '').replace(/^./, (c) => c.toLowerCase()) || err.message;
          const reason = `${what}: cannot reach ${toHost}:${toPort} (${why})`;
          reject(/refused|unreachable|timed out|no route/i.test(err.message) ? new HostUnreachableError(host, 'ssh', reason) : new HostError(host, 'ssh', reason));
        });
      } catch (err) {
        reject(new HostError(host, 'ssh', `${what}: ${(err as Error).message}`));
      }
    });
  }

  /** One SSH connection to `ep` (over `sock` when given); errors name `host` and, for a jump host, it. */
  async function dial(host: string, ep: SshEndpoint, sock?: Duplex, what?: string): Promise<Conn> {
    const ssh = ep;
    const username = ep.user;
    const port = ep.port;
    const prefix = what ? `${what}: ` : '';
    const fail = (reason: string) => new HostError(host, 'ssh', prefix + reason);
    const unreachable = (reason: string) => new HostUnreachableError(host, 'ssh', prefix + reason);

    let privateKey: Buffer | undefined;
    if (ssh.identityFile) {
      try {
        privateKey = await readFile(ssh.identityFile);
      } catch (err) {
        const e = err as NodeJS.ErrnoException;
        const why = e.code === 'ENOENT' ? 'no such file' : e.code === 'EACCES' ? 'permission denied' : e.message;
        throw fail(`cannot read identity file ${ssh.identityFile}: ${why}`);
      }
    }
    const agent = process.env.SSH_AUTH_SOCK || undefined;
    if (!privateKey && !agent) {
      throw fail('no credentials: set ssh.identityFile or run an ssh-agent (SSH_AUTH_SOCK)');
    }
    const tried = [...(privateKey ? ['publickey'] : []), ...(agent ? ['ssh-agent'] : [])].join(', ');

    const client = new Client();
    const conn: Conn = { client, closed: false, shells: [], starting: 0, waiters: [] };
    let hostKeyFailure: string | null = null;

    return new Promise<Conn>((resolve, reject) => {
      let settled = false;
      const settle = (err: HostError | null) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (err) {
          conn.closed = true;
          client.destroy();
          reject(err);
        } else {
          stats.connections++;
          resolve(conn);
        }
      };
      const timer = setTimeout(() => settle(unreachable(`connect timed out after ${seconds(connectTimeoutMs)}`)), connectTimeoutMs);

      client.on('ready', () => settle(null));
      client.on('error', (err: Error & { code?: string; level?: string }) => {
        if (settled) return; // after ready, 'close' follows and the connection is forgotten
        if (hostKeyFailure) return settle(fail(hostKeyFailure));
        switch (err.code) {
          case 'ECONNREFUSED':
            return settle(unreachable('connection refused'));
          case 'ETIMEDOUT':
            return settle(unreachable(`connect timed out after ${seconds(connectTimeoutMs)}`));
          case 'EHOSTUNREACH':
            return settle(unreachable('host unreachable'));
          case 'ENETUNREACH':
            return settle(unreachable('network unreachable'));
          case 'ENOTFOUND':
          case 'EAI_AGAIN':
            return settle(fail(`cannot resolve host name ${ep.hostname}`));
          case 'ECONNRESET':
            return settle(fail('connection reset during the SSH handshake'));
        }
        if (err.level === 'client-timeout') {
          return settle(unreachable(`connect timed out after ${seconds(connectTimeoutMs)}`));
        }
        if (err.level === 'client-authentication') {
          return settle(fail(`authentication refused for user ${username} (tried: ${tried})`));
        }
        settle(fail(err.message));
      });
      client.on('close', () => {
        conn.closed = true;
        // Callers waiting for one of its shells try again on a new connection.
        for (const wake of conn.waiters.splice(0)) wake();
        if (!settled) settle(hostKeyFailure ? fail(hostKeyFailure) : fail('connection closed during the SSH handshake'));
      });

      const config: ConnectConfig = {
        host: ep.hostname,
        port,
        ...(sock ? { sock } : {}),
        username,
        privateKey,
        agent,
        // Our own timer is the one that reports; ssh2's is a backstop.
        readyTimeout: connectTimeoutMs + 1000,
        keepaliveInterval: 15_000,
        keepaliveCountMax: 4,
        hostVerifier: (key: Buffer, verify: (valid: boolean) => void) => {
          verifyHostKey(ep.hostname, ep, key).then(
            (failure) => {
              hostKeyFailure = failure;
              verify(failure === null);
            },
            (err: Error) => {
              hostKeyFailure = `cannot check the host key against ${ssh.knownHostsFile}: ${err.message}`;
              verify(false);
            },
          );
        },
      };
      try {
        client.connect(config);
      } catch (err) {
        const msg = (err as Error).message;
        settle(
          fail(
            /encrypted|passphrase/i.test(msg)
              ? `cannot use identity file ${ssh.identityFile}: it is encrypted; load it into ssh-agent instead`
              : `cannot use identity file ${ssh.identityFile}: ${msg}`,
          ),
        );
      }
    });
  }

  /** The open connection to a host, opening it (once) if needed. */
  function getConn(host: string): Promise<Conn> {
    // Work still in flight when the driver was closed (another host failed first) must not open
    // connections nobody will close: they would keep the process alive for minutes.
    if (closed) return Promise.reject(new HostError(host, 'ssh', 'the SSH driver was closed (an earlier step failed)'));
    const existing = conns.get(host);
    if (existing) return existing;
    const pending = openConn(host);
    conns.set(host, pending);
    const forget = () => {
      if (conns.get(host) === pending) conns.delete(host);
    };
    pending.then((conn) => conn.client.on('close', forget), forget);
    return pending;
  }

  /** The connection to a host; one found closed (dropped since) is replaced by a new one. */
  async function liveConn(host: string): Promise<Conn> {
    const p = getConn(host);
    const conn = await p;
    if (!conn.closed) return conn;
    if (conns.get(host) === p) conns.delete(host);
    return getConn(host);
  }

  /**
   * A shell on the host that is free now: an idle one, a new one while the host has fewer than
   * `shellsPerHost`, or the next to come free. A shell that died is dropped and replaced.
   */
  async function acquireShell(host: string, step: string): Promise<{ shell: RemoteShell; release: () => void }> {
    for (;;) {
      const conn = await liveConn(host);
      conn.shells = conn.shells.filter((sh) => !sh.closed);
      const idle = conn.shells.find((sh) => !sh.busy);
      if (idle) {
        idle.busy = true;
        return { shell: idle, release: () => releaseShell(conn, idle) };
      }
      if (conn.shells.length + conn.starting < shellsPerHost) {
        // The host's first shell: start its second alongside, so that a slow session start is
        // paid once, in parallel, rather than again when two commands first overlap.
        if (conn.shells.length + conn.starting === 0 && shellsPerHost >= 2) void spareShell(host, conn, step);
        conn.starting++;
        let shell: RemoteShell;
        try {
          shell = await startShell(host, conn, step);
        } catch (err) {
          // Callers waiting for a shell try for themselves (and meet the same error).
          for (const wake of conn.waiters.splice(0)) wake();
          throw err;
        } finally {
          conn.starting--;
        }
        shell.busy = true;
        conn.shells.push(shell);
        return { shell, release: () => releaseShell(conn, shell) };
      }
      await new Promise<void>((resolve) => conn.waiters.push(resolve));
    }
  }

  /** A shell started ahead of need; it joins the pool idle (or is dropped if it fails). */
  async function spareShell(host: string, conn: Conn, step: string): Promise<void> {
    conn.starting++;
    let shell: RemoteShell;
    try {
      shell = await startShell(host, conn, step);
    } catch {
      // The first shell reports any failure; this one was only a head start. Whoever waits for
      // it tries for themselves.
      conn.starting--;
      for (const wake of conn.waiters.splice(0)) wake();
      return;
    }
    conn.starting--;
    conn.shells.push(shell);
    conn.waiters.shift()?.();
  }

  function releaseShell(conn: Conn, shell: RemoteShell): void {
    shell.busy = false;
    conn.waiters.shift()?.();
  }

  function startShell(host: string, conn: Conn, step: string): Promise<RemoteShell> {
    return new Promise<RemoteShell>((resolve, reject) => {
      try {
        const become = settingsOf(host).become === 'sudo';
        // With become, the shell itself runs as root: one sudo for the whole run, and every
        // command and file edit after it as root. -n: never a password prompt (it would hang).
        conn.client.exec(become ? 'sudo -n sh' : 'sh', (err, channel) => {
          if (err) return reject(new HostError(host, step, `cannot start a shell: ${err.message}`));
          stats.sessions++;
          RemoteShell.start(host, channel, Math.min(commandTimeoutMs, connectTimeoutMs + 5000), (why) => {
            if (!become) return `cannot start a shell: ${why}`;
            if (/password is required|terminal is required|askpass/i.test(why)) {
              return `ssh.become: sudo asks ${settingsOf(host).user ?? 'the SSH user'} for a password on this host; rcluster needs sudo without a password (NOPASSWD) for it (sudo said: ${why})`;
            }
            return `ssh.become: sudo -n sh failed: ${why}`;
          }).then(resolve, reject);
        });
      } catch (err) {
        reject(new HostError(host, step, `cannot start a shell: ${(err as Error).message}`));
      }
    });
  }

  /** Run a command on one of the host's shells. */
  async function runOn(host: string, command: string, opts: { timeoutMs: number; step?: string; stdin?: Buffer }): Promise<RunResult> {
    const { shell, release } = await acquireShell(host, opts.step ?? 'run');
    try {
      return await shell.run(command, opts);
    } finally {
      release();
    }
  }

  /** End a connection politely, or destroy it after 2 s. */
  async function endConn(p: Promise<Conn>): Promise<void> {
    const conn = await p.catch(() => null);
    if (!conn || conn.closed) return;
    await new Promise<void>((resolve) => {
      const t = setTimeout(() => {
        conn.client.destroy();
        resolve();
      }, 2000);
      conn.client.once('close', () => {
        clearTimeout(t);
        resolve();
      });
      conn.client.end();
    });
  }

  const driver: SshDriver = {
    kind: 'ssh',
    stats,

    connect(host: string): Promise<void> {
      return limit(async () => {
        await liveConn(host);
      });
    },

    async readFile(host: string, path: string): Promise<string | null> {
      const step = `read ${path}`;
      // 44: no such file (a distinct code, so that "missing" is never confused with a failed read).
      const r = await limit(() =>
        runOn(host, `if [ -d ${sh(path)} ]; then echo 'is a directory' >&2; exit 21; fi; if [ ! -e ${sh(path)} ]; then exit 44; fi; cat -- ${sh(path)}`, { timeoutMs: commandTimeoutMs, step }),
      );
      if (r.code === 44) return null;
      if (r.code !== 0) throw new HostError(host, step, fileReason(r.stderr, r.code));
      return r.stdout;
    },

    async writeFileAtomic(host: string, path: string, content: string, wopts?: { backup?: boolean; mode?: number }): Promise<void> {
      const step = `write ${path}`;
      const p = sh(path);
      const t = sh(`${path}.rcluster-tmp-${randomBytes(6).toString('hex')}`);
      // Through a temp file beside the target, renamed over it: readers see the old file or the
      // new one, never half of one. The temp file takes the target's mode and owner first (a
      // new file: `mode`, else the umask's), is flushed to disk, and the previous content is kept
      // as <path>.rcluster.bak with the same mode and owner.
      const script = [
        'set -e',
        `if [ -d ${p} ]; then echo 'is a directory' >&2; exit 21; fi`,
        `trap 'rm -f ${t}' EXIT`,
        `cat > ${t}`,
        `if [ -e ${p} ]; then`,
        `  chmod --reference=${p} ${t}`,
        `  chown --reference=${p} ${t} 2>/dev/null || { echo "cannot keep the owner $(stat -c %u:%g ${p}) of ${path.replace(/'/g, '')}" >&2; exit 1; }`,
        ...(wopts?.backup ? [`  cp -p -- ${p} ${sh(`${path}.rcluster.bak`)}`] : []),
        ...(wopts?.mode !== undefined ? ['else', `  chmod ${wopts.mode.toString(8)} ${t}`] : []),
        'fi',
        // fsync of the file (coreutils >= 8.24); the rename is atomic either way.
        `sync -- ${t} 2>/dev/null || true`,
        `mv -f -- ${t} ${p}`,
        'trap - EXIT',
      ].join('\n');
      const r = await limit(() => runOn(host, script, { timeoutMs: commandTimeoutMs, step, stdin: Buffer.from(content, 'utf8') }));
      if (r.code !== 0) throw new HostError(host, step, fileReason(r.stderr, r.code));
    },

    async lockHost(host: string, name: string, holder: string, forceUnlock?: string): Promise<string | null> {
      const file = sh(`/tmp/.rcluster-${name.replace(/[^A-Za-z0-9._-]/g, '_')}-${host.replace(/[^A-Za-z0-9._-]/g, '_')}.lock`);
      const { shell, release } = await acquireShell(host, 'lock');
      try {
        if (forceUnlock !== undefined) {
          // The holder's shell, by the pid it wrote last in the file: ending it releases its flock.
          await shell.run(`set -- $(tail -n 1 ${file} 2>/dev/null); [ "$1" = ${sh(forceUnlock)} ] && kill -9 "$2"; true`, { timeoutMs: commandTimeoutMs, step: 'lock' });
        }
        // 9 stays open in the shell itself for the rest of the run; the holder appends its id and
        // shell pid to the file it locks (no second file, so no second path to be tricked into
        // writing through). flock -w: a run that has just
        // ended (or a force-unlocked holder) lets go a moment after its session closes.
        // In the shell itself, so: no `exit` (it would end the shell), and the file is tried with
        // a regular builtin first (a failed `exec` redirection ends a non-interactive shell).
        const r = await shell.runInShell(
          `if true 9>>${file}; then exec 9>>${file}; if flock -w ${forceUnlock !== undefined ? 5 : 2} 9; then printf '%s %s\n' ${sh(holder)} "$$" >&9; (exit 0); else tail -n 1 ${file} 2>/dev/null; (exit 75); fi; else (exit 70); fi`,
          { timeoutMs: commandTimeoutMs, step: 'lock' },
        );
        if (r.code === 0) {
          lockShells.set(host, shell);
          return null;
        }
        if (r.code === 75) return r.stdout.trim() || 'another rcluster (no holder recorded)';
        throw new HostError(host, 'lock', r.stderr.trim() || `exited ${r.code}`);
      } finally {
        release();
      }
    },

    lostHostLocks(): string[] {
      return [...lockShells].filter(([, shell]) => shell.closed).map(([host]) => host);
    },

    async forward(host: string, toHost: string, toPort: number): Promise<Duplex> {
      return forwardOut(host, await liveConn(host), toHost, toPort, 'forward');
    },

    run(host: string, command: string, ropts?: RunOptions): Promise<RunResult> {
      return limit(() => runOn(host, command, { timeoutMs: ropts?.timeoutMs ?? commandTimeoutMs }));
    },

    async close(): Promise<void> {
      closed = true;
      // Hosts first, then the jump hosts they go through.
      const pending = [...conns.values()];
      conns.clear();
      const jumps = [...jumpConns.values()].reverse();
      jumpConns.clear();
      await Promise.all(pending.map(endConn));
      await Promise.all(jumps.map(endConn));
    },
  };
  return driver;
}
