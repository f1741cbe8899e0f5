import { randomBytes } from 'node:crypto';
import type { ClientChannel } from 'ssh2';
import { HostError } from '../errors.js';
import type { RunResult } from './driver.js';
import { sh } from './shell.js';

/**
 * One long-lived `sh` on a host, fed commands over a single SSH session: a command costs a round
 * trip, not a session start (which on a host with PAM session modules, LDAP accounts or a heavy
 * profile can take a second). Ansible's pipelining and Mitogen do the same.
 *
 * Framing: each command runs as `sh -c '<command>'` (a syntax error stays in that child; fd 9,
 * where the shell may hold the host lock, closed, so that a daemon it starts cannot keep it) with its
 * stdout and stderr sent to files in a private temp directory; then the shell prints one header
 * line, `<marker> <exit code> <stdout bytes> <stderr bytes>`, followed by exactly those bytes.
 * Nothing else is ever written to the shell's own stdout, so output of any content (binary,
 * markers included) cannot confuse the reader. Input for a command (a file's new content) is
 * given to it through a base64 here-document.
 */
export class RemoteShell {
  private buf = Buffer.alloc(0);
  private errText = '';
  private pending: { marker: string; resolve: (r: RunResult) => void; reject: (e: Error) => void; command: string; step: string } | undefined;
  private readonly marker = `__RCLUSTER_${randomBytes(8).toString('hex')}`;
  private seq = 0;
  closed = false;
  /** Set while a command runs: the pool gives it no other. */
  busy = false;

  private constructor(
    private readonly host: string,
    private readonly channel: ClientChannel,
  ) {
    channel.on('data', (d: Buffer) => {
      this.buf = Buffer.concat([this.buf, d]);
      this.drain();
    });
    // The shell's own stderr (sudo's refusal, a missing mktemp): kept for the error that ends it.
    channel.stderr.on('data', (d: Buffer) => {
      this.errText = (this.errText + d.toString('utf8')).slice(-2000);
    });
    channel.on('close', () => {
      this.closed = true;
      const p = this.pending;
      this.pending = undefined;
      if (p) p.reject(new HostError(this.host, p.step, `connection lost while running: ${shortCommand(p.command)}${this.lastError()}`));
    });
  }

  /**
   * Start the shell on an open channel (`sh`, or `sudo -n sh` to become root) and wait until it
   * answers. `why(stderr)` turns a shell that dies at once into the reason to report.
   */
  static async start(host: string, channel: ClientChannel, timeoutMs: number, why: (stderr: string) => string): Promise<RemoteShell> {
    const shell = new RemoteShell(host, channel);
    // A private directory for each command's output, removed when the shell ends; HUP and TERM
    // (the session closed) end it through the EXIT trap too.
    const setup = `umask 077; T=$(mktemp -d "\${TMPDIR:-/tmp}/rcluster.XXXXXX") || exit 97; trap 'rm -rf "$T"' EXIT; trap 'exit 129' HUP TERM PIPE`;
    channel.write(`${setup}\n`);
    try {
      const r = await shell.run('true', { timeoutMs, step: 'start a shell' });
      if (r.code !== 0) throw new Error(`exited ${r.code}`);
    } catch (err) {
      shell.close();
      const stderr = shell.errText.trim();
      throw new HostError(host, 'ssh', why(stderr || (err as HostError).reason || (err as Error).message));
    }
    return shell;
  }

  /**
   * Run `script` in the shell itself rather than in a child: what it does to the shell (an
   * `exec 9>>file` that keeps a lock's file open) lasts as long as the shell.
   */
  runInShell(script: string, opts: { timeoutMs: number; step?: string }): Promise<RunResult> {
    return this.run(script, { ...opts, inShell: true });
  }

  /** Run one command; a non-zero exit is a result. `stdin`: the bytes the command reads. */
  run(command: string, opts: { timeoutMs: number; step?: string; stdin?: Buffer; inShell?: boolean }): Promise<RunResult> {
    const step = opts.step ?? 'run';
    if (this.closed) return Promise.reject(new HostError(this.host, step, `connection lost before running: ${shortCommand(command)}`));
    if (this.pending) return Promise.reject(new Error('RemoteShell: one command at a time'));
    const marker = `${this.marker}_${++this.seq}`;
    return new Promise<RunResult>((resolve, reject) => {
      const timer = setTimeout(() => {
        if (this.pending?.marker !== marker) return;
        this.pending = undefined;
        reject(new HostError(this.host, step, `command timed out after ${seconds(opts.timeoutMs)}: ${shortCommand(command)}`));
        // The shell is stuck in that command: end it (and the command with it, best effort).
        this.close();
      }, opts.timeoutMs);
      this.pending = {
        marker,
        command,
        step,
        resolve: (r) => {
          clearTimeout(timer);
          resolve(r);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      };
      const input = opts.stdin
        ? ` <<'${marker}_IN'\n${opts.stdin.toString('base64').replace(/.{1,76}/g, '$&\n')}${marker}_IN\n`
        : ' </dev/null\n';
      const script = opts.inShell
        ? `{ ${command}
} </dev/null >"$T/o" 2>"$T/e"; rc=$?`
        : opts.stdin
          ? `base64 -d >"$T/i"${input}sh -c ${sh(command)} <"$T/i" >"$T/o" 2>"$T/e" 9>&-; rc=$?; rm -f "$T/i"`
          : `sh -c ${sh(command)}${input.trimEnd()} >"$T/o" 2>"$T/e" 9>&-; rc=$?`;
      this.channel.write(`${script}\nprintf '%s %d %d %d\\n' ${marker} "$rc" "$(wc -c <"$T/o")" "$(wc -c <"$T/e")"; cat "$T/o" "$T/e"\n`);
    });
  }

  /** Parse every complete frame in the buffer. */
  private drain(): void {
    for (;;) {
      const p = this.pending;
      if (!p) return;
      const nl = this.buf.indexOf(0x0a);
      if (nl < 0) return;
      const header = this.buf.subarray(0, nl).toString('utf8');
      const m = /^(\S+) (\d+) (\d+) (\d+)$/.exec(header.trim());
      if (!m || m[1] !== p.marker) {
        // Not ours (cannot happen unless the shell itself printed something): drop the line.
        this.buf = this.buf.subarray(nl + 1);
        continue;
      }
      const outLen = Number(m[3]);
      const errLen = Number(m[4]);
      if (this.buf.length < nl + 1 + outLen + errLen) return;
      const body = this.buf.subarray(nl + 1, nl + 1 + outLen + errLen);
      this.buf = this.buf.subarray(nl + 1 + outLen + errLen);
      this.pending = undefined;
      p.resolve({ code: Number(m[2]), stdout: body.subarray(0, outLen).toString('utf8'), stderr: body.subarray(outLen).toString('utf8') });
    }
  }

  private lastError(): string {
    const e = this.errText.trim().split('\n').slice(-2).join(' | ');
    return e ? ` (${e})` : '';
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    try {
      this.channel.signal('KILL');
    } catch {
      // the channel may be gone already
    }
    this.channel.close();
  }
}

export function shortCommand(command: string): string {
  const one = command.replace(/\s+/g, ' ').trim();
  return one.length > 80 ? `${one.slice(0, 77)}...` : one;
}

export function seconds(ms: number): string {
  return `${Number((ms / 1000).toFixed(3))}s`;
}
