/**
 * The SSH HostDriver, on ssh2.
 *
 * - One ssh2 Client per host, opened on first use and reused for every command and file transfer;
 *   callers that need the same host while it is connecting share the pending connection. A
 *   connection that drops is forgotten, and the next operation on that host reconnects.
 * - Operations on different hosts run in parallel, at most `concurrency` at a time (default 8,
 *   below OpenSSH's MaxSessions of 10 channels per connection).
 * - Connecting (TCP + handshake + auth) times out after `connectTimeoutMs` (default 10 s); each
 *   command and file operation after `commandTimeoutMs` (default 60 s), run() may override that.
 *   A timed-out command gets SIGKILL and its channel is closed.
 * - Auth: the private key in `identityFile` and/or the agent at SSH_AUTH_SOCK; user defaults to the
 *   local user name, port to 22.
 * - Host keys are checked against `knownHostsFile` (see knownHosts.ts): `strict` refuses unknown
 *   and changed keys; `accept-new` appends unknown keys to the file and refuses changed ones.
 * - Files move over SFTP. writeFileAtomic writes `<path>.rcluster-tmp-<random>` beside the target,
 *   fsyncs it (when the server supports fsync@openssh.com), gives it the mode and owner of the file
 *   it replaces (a new file gets 0666 minus the server's umask), optionally copies the current file
 *   to `<path>.rcluster.bak` (the same way), then renames it over the target with
 *   posix-rename@openssh.com (or `mv -f` when that extension is missing). On failure the temp file
 *   is removed. A symlinked target is replaced by a regular file.
 * - Errors are HostError(host, step, reason): step `ssh` for connecting, `read <path>`,
 *   `write <path>`, `run` for commands.
 */

import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { homedir, userInfo, constants as osConstants } from 'node:os';
import ssh2 from 'ssh2';
import type { Client as SshClient, ClientChannel, ConnectConfig, SFTPWrapper, Stats } from 'ssh2';
import pLimit from 'p-limit';
import { HostError, HostUnreachableError } from '../errors.js';
import { sh } from './shell.js';
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
}

export interface SshDriver extends HostDriver {
  readonly kind: 'ssh';
  /** Open (or reuse) the connection to a host; fails with the same HostError an operation would. */
  connect(host: string): Promise<void>;
  /** Counters, for tests and diagnostics: how many SSH connections reached `ready`. */
  readonly stats: { readonly connections: number };
}

interface Conn {
  client: SshClient;
  closed: boolean;
  sftp?: Promise<SFTPWrapper>;
}

const SFTP_NO_SUCH_FILE = 2;
const SFTP_PERMISSION_DENIED = 3;

function seconds(ms: number): string {
  return `${Number((ms / 1000).toFixed(3))}s`;
}

function expandHome(p: string): string {
  if (p === '~') return homedir();
  if (p.startsWith('~/')) return homedir() + p.slice(1);
  return p;
}

function shortCommand(command: string): string {
  const one = command.replace(/\s+/g, ' ').trim();
  return one.length > 80 ? `${one.slice(0, 77)}...` : one;
}

function sftpReason(err: unknown): string {
  const e = err as { code?: unknown; message?: string };
  if (e.code === SFTP_NO_SUCH_FILE) return 'no such file or directory';
  if (e.code === SFTP_PERMISSION_DENIED) return 'permission denied';
  return e.message ?? String(err);
}

function isHostError(err: unknown): err is HostError {
  return err instanceof HostError;
}

export function createSshDriver(targets: SshTarget[], opts: SshDriverOptions = {}): SshDriver {
  const connectTimeoutMs = opts.connectTimeoutMs ?? 10_000;
  const commandTimeoutMs = opts.commandTimeoutMs ?? 60_000;
  const limit = pLimit(opts.concurrency ?? 8);
  const byHost = new Map<string, SshSettings>();
  for (const t of targets) byHost.set(t.host, t.ssh);
  const conns = new Map<string, Promise<Conn>>();
  let closed = false;
  const stats = { connections: 0 };

  function settingsOf(host: string): SshSettings {
    const s = byHost.get(host);
    if (!s) throw new HostError(host, 'ssh', 'no SSH settings for this host (not in the spec)');
    return s;
  }

  /** null when the key is acceptable, else why it is refused. */
  async function verifyHostKey(host: string, ssh: SshSettings, key: Buffer): Promise<string | null> {
    const file = expandHome(ssh.knownHostsFile);
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

  async function openConn(host: string): Promise<Conn> {
    const ssh = settingsOf(host);
    const username = ssh.user ?? userInfo().username;
    const port = ssh.port ?? 22;
    const fail = (reason: string) => new HostError(host, 'ssh', reason);
    const unreachable = (reason: string) => new HostUnreachableError(host, 'ssh', reason);

    let privateKey: Buffer | undefined;
    if (ssh.identityFile) {
      try {
        privateKey = await readFile(expandHome(ssh.identityFile));
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
    const conn: Conn = { client, closed: false };
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
            return settle(fail(`cannot resolve host name ${host}`));
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
        if (!settled) settle(hostKeyFailure ? fail(hostKeyFailure) : fail('connection closed during the SSH handshake'));
      });

      const config: ConnectConfig = {
        host,
        port,
        username,
        privateKey,
        agent,
        // Our own timer is the one that reports; ssh2's is a backstop.
        readyTimeout: connectTimeoutMs + 1000,
        keepaliveInterval: 15_000,
        keepaliveCountMax: 4,
        hostVerifier: (key: Buffer, verify: (valid: boolean) => void) => {
          verifyHostKey(host, ssh, key).then(
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

  function getSftp(host: string, conn: Conn, step: string): Promise<SFTPWrapper> {
    if (!conn.sftp) {
      const p = new Promise<SFTPWrapper>((resolve, reject) => {
        try {
          conn.client.sftp((err, sftp) => {
            if (err) return reject(new HostError(host, step, `cannot start SFTP: ${err.message}`));
            sftp.on('close', () => {
              if (conn.sftp === p) conn.sftp = undefined;
            });
            resolve(sftp);
          });
        } catch (err) {
          reject(new HostError(host, step, `cannot start SFTP: ${(err as Error).message}`));
        }
      });
      conn.sftp = p;
      p.catch(() => {
        if (conn.sftp === p) conn.sftp = undefined;
      });
    }
    return conn.sftp;
  }

  /** Run an SFTP-based operation with the command timeout; on timeout the SFTP channel is closed. */
  async function withSftp<T>(host: string, step: string, fn: (sftp: SFTPWrapper, conn: Conn) => Promise<T>): Promise<T> {
    const conn = await liveConn(host);
    const sftp = await getSftp(host, conn, step);
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        reject(new HostError(host, step, `timed out after ${seconds(commandTimeoutMs)}`));
        sftp.end();
      }, commandTimeoutMs);
    });
    try {
      return await Promise.race([fn(sftp, conn), timeout]);
    } catch (err) {
      if (isHostError(err)) throw err;
      throw new HostError(host, step, sftpReason(err));
    } finally {
      clearTimeout(timer);
    }
  }

  function call<T>(fn: (cb: (err: Error | undefined | null, value?: T) => void) => void): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      try {
        fn((err, value) => (err ? reject(err) : resolve(value as T)));
      } catch (err) {
        reject(err);
      }
    });
  }

  async function statOrNull(sftp: SFTPWrapper, path: string): Promise<Stats | null> {
    try {
      return await call<Stats>((cb) => sftp.stat(path, cb));
    } catch (err) {
      if ((err as { code?: unknown }).code === SFTP_NO_SUCH_FILE) return null;
      throw err;
    }
  }

  function execOn(host: string, conn: Conn, command: string, timeoutMs: number, step = 'run'): Promise<RunResult> {
    return new Promise<RunResult>((resolve, reject) => {
      const onExec = (err: Error | undefined, stream: ClientChannel) => {
        if (err) return reject(new HostError(host, step, `cannot start command: ${err.message}`));
        const out: Buffer[] = [];
        const errOut: Buffer[] = [];
        let exitCode: number | null = null;
        let exitSignal: string | null = null;
        let timedOut = false;
        const timer = setTimeout(() => {
          timedOut = true;
          try {
            stream.signal('KILL');
          } catch {
            // the channel may already be gone
          }
          stream.close();
          reject(new HostError(host, step, `command timed out after ${seconds(timeoutMs)}: ${shortCommand(command)}`));
        }, timeoutMs);
        stream.on('data', (d: Buffer) => out.push(d));
        stream.stderr.on('data', (d: Buffer) => errOut.push(d));
        stream.on('exit', (code: number | null, signal?: string) => {
          if (typeof code === 'number') exitCode = code;
          if (signal) exitSignal = signal;
        });
        stream.on('close', (code?: number | null, signal?: string) => {
          clearTimeout(timer);
          if (timedOut) return;
          if (exitCode === null && typeof code === 'number') exitCode = code;
          if (exitSignal === null && signal) exitSignal = signal;
          if (exitCode === null && exitSignal !== null) {
            const name = exitSignal.startsWith('SIG') ? exitSignal : `SIG${exitSignal}`;
            const num = (osConstants.signals as Record<string, number | undefined>)[name];
            exitCode = num === undefined ? 255 : 128 + num;
          }
          if (exitCode === null) {
            return reject(new HostError(host, step, `connection lost while running: ${shortCommand(command)}`));
          }
          resolve({
            code: exitCode,
            stdout: Buffer.concat(out).toString('utf8'),
            stderr: Buffer.concat(errOut).toString('utf8'),
          });
        });
      };
      try {
        conn.client.exec(command, onExec);
      } catch (err) {
        reject(new HostError(host, step, `cannot start command: ${(err as Error).message}`));
      }
    });
  }

  async function writeAll(sftp: SFTPWrapper, handle: Buffer, data: Buffer): Promise<void> {
    const chunk = 32 * 1024;
    for (let off = 0; off < data.length; off += chunk) {
      const len = Math.min(chunk, data.length - off);
      await call((cb) => sftp.write(handle, data, off, len, off, cb));
    }
  }

  /** Write `data` to `target` through a temp file and a rename, keeping the mode and owner of `like`. */
  async function writeReplace(host: string, step: string, sftp: SFTPWrapper, conn: Conn, target: string, data: Buffer, like: Stats | null): Promise<void> {
    const tmp = `${target}.rcluster-tmp-${randomBytes(6).toString('hex')}`;
    let handle: Buffer | null = null;
    let created = false;
    try {
      const mode = like ? like.mode & 0o7777 : 0o666;
      handle = await call<Buffer>((cb) => sftp.open(tmp, 'wx', { mode }, cb));
      created = true;
      await writeAll(sftp, handle, data);
      try {
        await call((cb) => sftp.ext_openssh_fsync(handle!, cb));
      } catch {
        // fsync@openssh.com is not supported by this server: the rename still makes it atomic
      }
      if (like) {
        await call((cb) => sftp.fchmod(handle!, mode, cb));
        const now = await call<Stats>((cb) => sftp.fstat(handle!, cb));
        if (now.uid !== like.uid || now.gid !== like.gid) {
          try {
            await call((cb) => sftp.fchown(handle!, like.uid, like.gid, cb));
          } catch (err) {
            throw new HostError(host, step, `cannot keep the owner ${like.uid}:${like.gid} of ${target}: ${sftpReason(err)}`);
          }
        }
      }
      const h = handle;
      handle = null;
      await call((cb) => sftp.close(h, cb));
      let renamed = false;
      try {
        await call((cb) => sftp.ext_openssh_rename(tmp, target, cb));
        renamed = true;
      } catch (err) {
        if (!/does not support/i.test((err as Error).message)) throw err;
      }
      if (!renamed) {
        const r = await execOn(host, conn, `mv -f -- ${sh(tmp)} ${sh(target)}`, commandTimeoutMs, step);
        if (r.code !== 0) throw new HostError(host, step, `cannot rename ${tmp}: ${r.stderr.trim() || `mv exited ${r.code}`}`);
      }
      created = false;
    } finally {
      if (handle) {
        const h = handle;
        await call((cb) => sftp.close(h, cb)).catch(() => undefined);
      }
      if (created) await call((cb) => sftp.unlink(tmp, cb)).catch(() => undefined);
    }
  }

  const driver: SshDriver = {
    kind: 'ssh',
    stats,

    connect(host: string): Promise<void> {
      return limit(async () => {
        await liveConn(host);
      });
    },

    readFile(host: string, path: string): Promise<string | null> {
      const step = `read ${path}`;
      return limit(() =>
        withSftp(host, step, async (sftp) => {
          try {
            const buf = await call<Buffer>((cb) => sftp.readFile(path, cb));
            return buf.toString('utf8');
          } catch (err) {
            if ((err as { code?: unknown }).code === SFTP_NO_SUCH_FILE) return null;
            throw err;
          }
        }),
      );
    },

    writeFileAtomic(host: string, path: string, content: string, wopts?: { backup?: boolean }): Promise<void> {
      const step = `write ${path}`;
      return limit(() =>
        withSftp(host, step, async (sftp, conn) => {
          const current = await statOrNull(sftp, path);
          if (current?.isDirectory()) throw new HostError(host, step, 'is a directory');
          if (wopts?.backup && current) {
            const old = await call<Buffer>((cb) => sftp.readFile(path, cb));
            await writeReplace(host, step, sftp, conn, `${path}.rcluster.bak`, old, current);
          }
          await writeReplace(host, step, sftp, conn, path, Buffer.from(content, 'utf8'), current);
        }),
      );
    },

    run(host: string, command: string, ropts?: RunOptions): Promise<RunResult> {
      return limit(async () => {
        const conn = await liveConn(host);
        return execOn(host, conn, command, ropts?.timeoutMs ?? commandTimeoutMs);
      });
    },

    async close(): Promise<void> {
      closed = true;
      const pending = [...conns.values()];
      conns.clear();
      await Promise.all(
        pending.map(async (p) => {
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
        }),
      );
    },
  };
  return driver;
}
