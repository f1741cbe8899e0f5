/**
 * The test's side of the writer protocol (writer.ts): start each writer as a child process, follow
 * its heartbeats, stop it and collect its result, its exit and its stderr.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { waitFor } from '../../../src/apply/wait.js';
import type { Counts, Result } from './writer.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const HERE = fileURLToPath(new URL('./', import.meta.url));

/**
 * Debian's interpreter, which has python3-redis; `python3` on PATH may be another (pyenv's, on the
 * development machine) without it.
 */
export const SYSTEM_PYTHON = '/usr/bin/python3';

export type Library = 'redis-py' | 'node-redis' | 'ioredis';

function command(library: Library): { file: string; args: string[] } {
  switch (library) {
    case 'redis-py':
      return { file: SYSTEM_PYTHON, args: [`${HERE}redis_py_writer.py`] };
    case 'node-redis':
      return { file: process.execPath, args: ['--import', 'tsx', `${HERE}node-redis-writer.ts`] };
    case 'ioredis':
      return { file: process.execPath, args: ['--import', 'tsx', `${HERE}ioredis-writer.ts`] };
  }
}

export interface Heartbeat extends Counts {
  hb: number;
  /** The operation in flight, and for how long. */
  pending?: string;
  pendingMs?: number;
}

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** What a writer did over one stretch of time (an apply), from the heartbeats around it. */
export interface Stretch {
  ops: number;
  acked: number;
  failed: number;
  readWrong: number;
  /** Errors first recorded in the stretch. */
  errors: string[];
  /** The longest time, in ms, in which the acknowledged count did not move. */
  longestStallMs: number;
  /** At the stretch's end, the operation in flight for a second or more, if any. */
  stuckIn?: string;
  /** Set when the writer did not beat at the stretch's start or end: why. */
  silent?: string;
}

export class WriterProcess {
  readonly child: ChildProcessWithoutNullStreams;
  last: Heartbeat | undefined;
  result: Result | undefined;
  exit: Exit | undefined;
  stderr = '';
  /** Lines on stdout that are not the protocol's: a library printing warnings, or a bug here. */
  readonly stray: string[] = [];
  private readonly exited: Promise<Exit>;
  private lastAckAt = Date.now();
  private lastBeatAt = Date.now();
  private cpuAtBeat: number | undefined;
  private longestStallMs = 0;

  constructor(
    readonly library: Library,
    readonly prefix: string,
    seed: string,
    maxSeconds: number,
  ) {
    const { file, args } = command(library);
    this.child = spawn(file, [...args, seed, prefix, String(maxSeconds)], { cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'] });
    this.child.stderr.on('data', (d: Buffer) => {
      this.stderr += d.toString();
    });
    createInterface({ input: this.child.stdout }).on('line', (line) => this.onLine(line));
    this.exited = new Promise((res) =>
      this.child.on('exit', (code, signal) => {
        this.exit = { code, signal };
        res(this.exit);
      }),
    );
    // A writer that could not start (no interpreter) must fail the test with that, not hang it.
    this.child.on('error', (err) => {
      this.stderr += `spawn failed: ${err.message}\n`;
    });
  }

  private onLine(line: string): void {
    let msg: { hb?: number; result?: Result } & Partial<Counts>;
    try {
      msg = JSON.parse(line) as typeof msg;
    } catch {
      this.stray.push(line);
      return;
    }
    if (msg.result) this.result = msg.result;
    else if (msg.hb !== undefined) {
      const now = Date.now();
      if (this.last === undefined || (msg.acked ?? 0) > this.last.acked) this.lastAckAt = now;
      this.longestStallMs = Math.max(this.longestStallMs, now - this.lastAckAt);
      this.last = msg as Heartbeat;
      this.lastBeatAt = now;
      this.cpuAtBeat = this.cpuSeconds();
    } else this.stray.push(line);
  }

  /** A heartbeat sent after this call: counts that include everything done until now. */
  async freshBeat(timeoutMs = 10_000): Promise<Heartbeat> {
    const seen = this.last?.hb ?? 0;
    await waitFor(
      `a heartbeat from the ${this.library} writer`,
      async () => {
        if (this.exit) return `it exited (${JSON.stringify(this.exit)}); stderr: ${this.stderr.slice(-2000)}`;
        return (this.last?.hb ?? 0) > seen ? true : `last heartbeat #${seen}`;
      },
      { timeoutMs },
    );
    return this.last as Heartbeat;
  }

  /**
   * The process's CPU time (user + system) in seconds, from /proc: a writer whose heartbeats
   * stopped while this keeps growing is spinning, not waiting.
   */
  cpuSeconds(): number | undefined {
    try {
      const stat = readFileSync(`/proc/${this.child.pid}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      return (Number(f[11]) + Number(f[12])) / 100;
    } catch {
      return undefined;
    }
  }

  /** Why no heartbeat came (exited, or alive and silent: spinning or blocked). */
  whySilent(): string {
    if (this.exit) return `exited ${JSON.stringify(this.exit)}; stderr: ${this.stderr.slice(-2000)}`;
    const since = ((Date.now() - this.lastBeatAt) / 1000).toFixed(1);
    const cpu = this.cpuSeconds();
    const used = cpu !== undefined && this.cpuAtBeat !== undefined ? `, ${(cpu - this.cpuAtBeat).toFixed(1)} s of CPU used since` : '';
    return `last heartbeat ${since} s ago (#${this.last?.hb ?? 0}${this.last?.pending ? `, in ${this.last.pending}` : ''})${used}`;
  }

  /**
   * Start measuring a stretch; the returned function ends it. A writer that does not beat within
   * `timeoutMs` at either end (exited, or its event loop held) gives a stretch marked `silent`,
   * so that the other writers' stretches still count.
   */
  async stretch(timeoutMs = 3000): Promise<() => Promise<Stretch>> {
    const beat = async () => this.freshBeat(timeoutMs).catch(() => undefined);
    const start = await beat();
    this.longestStallMs = 0;
    this.lastAckAt = Date.now();
    return async () => {
      const end = await beat();
      if (!start || !end) return { ops: 0, acked: 0, failed: 0, readWrong: 0, errors: [], longestStallMs: this.longestStallMs, silent: this.whySilent() };
      return {
        ops: end.ops - start.ops,
        acked: end.acked - start.acked,
        failed: end.failed - start.failed,
        readWrong: end.readWrong - start.readWrong,
        // Only the first few errors are kept: a stretch that failed after those shows the latest.
        errors: ((fresh) => (end.failed - start.failed > fresh.length && end.lastError ? [...fresh, `latest: ${end.lastError}`] : fresh))(end.errors.slice(start.errors.length)),
        longestStallMs: this.longestStallMs,
        ...(end.pending && (end.pendingMs ?? 0) >= 1000 ? { stuckIn: `${end.pending} for ${end.pendingMs} ms` } : {}),
      };
    };
  }

  /**
   * Ask the writer to stop (its stdin ends), then wait for its result line and its exit. A writer
   * still running after `timeoutMs` (stuck in an operation that never settles) is killed, and
   * `hung` says so.
   */
  async stop(timeoutMs: number): Promise<{ result: Result | undefined; exit: Exit; hung: boolean; why?: string }> {
    this.child.stdin.end();
    let hung = false;
    let why: string | undefined;
    try {
      await waitFor(`the ${this.library} writer to read back its keys and exit`, async () => (this.exit ? true : `last heartbeat ${JSON.stringify(this.last)}`), {
        timeoutMs,
        intervalMs: 100,
      });
    } catch {
      hung = true;
      why = this.whySilent();
      this.child.kill('SIGKILL');
    }
    const exit = await this.exited;
    return { result: this.result, exit, hung, ...(why !== undefined ? { why } : {}) };
  }

  /** For cleanup after a failure: a writer still running is killed. */
  kill(): void {
    if (!this.exit) this.child.kill('SIGKILL');
  }
}
