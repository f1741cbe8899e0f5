/**
 * The writer protocol of test/integration/clients.test.ts, and its loop for the Node clients
 * (redis_py_writer.py mirrors it in Python). A writer is its own process, as an application is:
 * a client library's crash, hang or busy loop then shows as that application's, not the test's.
 *
 * Arguments: HOST:PORT PREFIX MAX_SECONDS. The writer SETs `<prefix><i>` = i for i = 0, 1, ...
 * and after each SET GETs one of its earlier acknowledged keys at random, checking its value.
 * Every operation that rejects at the application counts as failed: the client runs with its
 * library's defaults, so that whatever those let through is what an application would see.
 *
 * stdout: a heartbeat line every 100 ms, `{"hb": n, ...Counts, pending?, pendingMs?}` (the
 * operation in flight, if any), so that the test sees the writer make progress while a migration
 * runs, or what it is stuck in; then, once stopped, one `{"result": Result}` line after
 * every acknowledged key was read back. It stops when stdin ends (the test closing it, or the test
 * process dying), on SIGTERM/SIGINT, or after MAX_SECONDS on its own, so that it never outlives a
 * test run by long. It never swallows a crash: an uncaught error ends it with a non-zero exit and
 * the stack on stderr, which the test reports. One stuck in an operation that never settles ends
 * itself 20 s after it was told to stop, with exit code 3 and what it was stuck in on stderr.
 */

export interface Counts {
  /** Operations attempted (SETs and GETs). */
  ops: number;
  /** SETs the cluster acknowledged. */
  acked: number;
  /** Operations that rejected at the application. */
  failed: number;
  /** GETs of an acknowledged key that returned another value or nothing. */
  readWrong: number;
  /** The first few failures, `Class: message`. */
  errors: string[];
  /** Failures per error class. */
  kinds: Record<string, number>;
  /** The latest failure, once the first few are kept. */
  lastError?: string;
}

export interface Result extends Counts {
  /** Acknowledged keys missing at the end. */
  missing: number;
  /** Acknowledged keys holding another value at the end. */
  wrong: number;
  /** Acknowledged keys whose read-back failed. */
  readErrors: number;
}

export interface ClientOps {
  set(key: string, value: string): Promise<unknown>;
  get(key: string): Promise<string | null>;
  close(): Promise<void>;
}

const HEARTBEAT_MS = 100;
const KEEP_ERRORS = 5;
const READ_BATCH = 500;

export function describeError(err: unknown): string {
  return err instanceof Error ? `${err.constructor.name}: ${err.message}` : `thrown ${typeof err}: ${String(err)}`;
}

export function parseArgs(argv: string[]): { host: string; port: number; prefix: string; maxMs: number } {
  const [seed, prefix, max] = argv.slice(2);
  if (!seed || prefix === undefined || !max) throw new Error('usage: HOST:PORT PREFIX MAX_SECONDS');
  const i = seed.lastIndexOf(':');
  return { host: seed.slice(0, i), port: Number(seed.slice(i + 1)), prefix, maxMs: Number(max) * 1000 };
}

/** How long a stopped writer may take to read its keys back before it ends itself, stuck. */
const GRACE_MS = 20_000;

/**
 * stderr for a library's events (connection errors, reconnects): the first few of each text, as
 * a client retrying a gone node for ever would otherwise fill it.
 */
const logged = new Map<string, number>();
export function logEvent(text: string): void {
  const n = (logged.get(text) ?? 0) + 1;
  logged.set(text, n);
  if (n <= 3) process.stderr.write(`${new Date().toISOString()} ${text}${n === 3 ? ' (further ones not shown)' : ''}\n`);
}

export async function runWriter(client: ClientOps, prefix: string, maxMs: number): Promise<void> {
  let stopped = false;
  let pending = { op: '', since: 0 };
  const stop = () => {
    if (stopped) return;
    stopped = true;
    // An operation that never settles would keep the loop, and this process, alive for ever.
    setTimeout(() => {
      process.stderr.write(`writer stopped ${GRACE_MS} ms ago and still not done${pending.op ? `: stuck in ${pending.op} for ${Date.now() - pending.since} ms` : ''}; exiting\n`);
      process.exit(3);
    }, GRACE_MS).unref();
  };
  process.stdin.on('end', stop);
  process.stdin.on('error', stop);
  process.stdin.resume();
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  const limit = setTimeout(stop, maxMs);

  const counts: Counts = { ops: 0, acked: 0, failed: 0, readWrong: 0, errors: [], kinds: {} };
  const acked: number[] = [];
  const failed = (err: unknown) => {
    counts.failed++;
    const kind = err instanceof Error ? err.constructor.name : typeof err;
    counts.kinds[kind] = (counts.kinds[kind] ?? 0) + 1;
    counts.lastError = describeError(err);
    if (counts.errors.length < KEEP_ERRORS) counts.errors.push(counts.lastError);
  };
  // A timer, not a count of operations: a writer stuck inside one operation keeps beating with
  // the same count, which the test tells apart from a dead process.
  // `pending`: the operation in flight and since when: a writer stuck in one says which.
  let seq = 0;
  const beat = setInterval(() => {
    const inFlight = pending.op ? { pending: pending.op, pendingMs: Date.now() - pending.since } : {};
    process.stdout.write(JSON.stringify({ hb: ++seq, ...counts, ...inFlight }) + '\n');
  }, HEARTBEAT_MS);

  for (let i = 0; !stopped; i++) {
    counts.ops++;
    pending = { op: `SET ${prefix}${i}`, since: Date.now() };
    try {
      await client.set(`${prefix}${i}`, String(i));
      acked.push(i);
      counts.acked++;
    } catch (err) {
      failed(err);
    }
    if (acked.length > 0) {
      const j = acked[Math.floor(Math.random() * acked.length)] as number;
      counts.ops++;
      pending = { op: `GET ${prefix}${j}`, since: Date.now() };
      try {
        if ((await client.get(`${prefix}${j}`)) !== String(j)) counts.readWrong++;
      } catch (err) {
        failed(err);
      }
    }
    pending = { op: '', since: 0 };
  }
  clearInterval(beat);
  clearTimeout(limit);

  let missing = 0;
  let wrong = 0;
  let readErrors = 0;
  for (let k = 0; k < acked.length; k += READ_BATCH) {
    const chunk = acked.slice(k, k + READ_BATCH);
    const values = await Promise.allSettled(chunk.map((j) => client.get(`${prefix}${j}`)));
    values.forEach((v, n) => {
      if (v.status === 'rejected') {
        readErrors++;
        if (counts.errors.length < KEEP_ERRORS) counts.errors.push(`read-back: ${describeError(v.reason)}`);
      } else if (v.value === null) missing++;
      else if (v.value !== String(chunk[n])) wrong++;
    });
  }
  await client.close();
  const result: Result = { ...counts, missing, wrong, readErrors };
  process.stdout.write(JSON.stringify({ result }) + '\n');
  process.stdin.pause();
}
