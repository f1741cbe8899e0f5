import { writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../../src/apply/wait.js';
import { badKeys, everySlot, loadKeys } from '../support/keys.js';
import { WriterProcess, type Library, type Stretch } from '../support/clients/processes.js';
import { answers, localSpec, ports, rcluster, redisCli, withNode } from './support.js';

// Issue 14: applications must not see a scale-out or a scale-in. Three real client libraries, each
// in its own process with its library's default cluster settings (see
// test/support/clients/writer.ts), write and read throughout five scale-outs of a 3-master cluster
// onto a fresh 4th master and the scale-ins that drain it again. A node that owns no slot yet is
// not in CLUSTER SLOTS: redis-py 4.3.4 (Debian's) follows a MOVED to a node it does not know but
// not an ASK (an AttributeError at the application, redis-py #4015), and node-redis 5 rejects an
// ASK it cannot find in a fresh CLUSTER SLOTS ('Cannot find node'); both showed when many slots
// migrated towards the new node at once. On the way back, a client whose slot map still names the
// drained node reaches it after it left: reset, it answers CLUSTERDOWN; stopped, node-redis queues
// the command for a reconnect that never comes. Each cycle's new node is on a port no client has
// seen, as a new master is in production; five cycles, as the failures are a matter of chance.
// With the window and the ramp, and removals that wait for the clients, every failure fails the
// test except redis-py's crash on an -ASK to the new master, which is still possible (rare): it is
// told apart and counted (REDIS_PY_ASK_CRASH), and issue 14 stays open for it.
const PORTS = ports(7701, 8);
const BASE = PORTS.slice(0, 3);
const FRESH = PORTS.slice(3);
const P1 = BASE[0] as number;
const addr = (p: number) => `127.0.0.1:${p}`;
// A key in every slot, so that every slot moved carries keys and is migrating for a while.
const KEYS = everySlot(200_000);
const NAME = 'itest-clients';
const spec = localSpec(NAME, BASE, 'replicasPerMaster: 0');
/** The writers' own limit: past the whole file's run, so that only a hung test meets it. */
const WRITER_MAX_SECONDS = 240;
/** Acknowledged writes each writer must make during one apply: it was writing, not stalled. */
const MIN_ACKED_PER_APPLY = 20;
const LIBRARIES: { library: Library; prefix: string }[] = [
  { library: 'redis-py', prefix: 'py:' },
  { library: 'node-redis', prefix: 'nr:' },
  { library: 'ioredis', prefix: 'io:' },
];

function writeSpec(nodes: number[], masters: number): void {
  writeFileSync(spec.file, [`name: ${NAME}`, 'connection: local', 'replicasPerMaster: 0', `masters: ${masters}`, 'nodes:', ...nodes.map((p) => `  - ${addr(p)}`), ''].join('\n'));
}

async function applyOk(): Promise<string> {
  const r = await rcluster('apply', '-f', spec.file, '--auto-approve', '--wait-timeout', '25000');
  // Only the spec's own warnings (a master without a replica) may reach stderr.
  const errors = r.err.split('\n').filter((l) => l !== '' && !/: warning: /.test(l));
  expect({ code: r.code, errors }).toEqual({ code: 0, errors: [] });
  return r.out;
}

async function slotsOf(port: number): Promise<number> {
  const text = String(await withNode(P1, (r) => r.call('CLUSTER', 'NODES')));
  const line = text.split('\n').find((l) => l.split(' ')[1]?.startsWith(`${addr(port)}@`));
  if (!line) return 0;
  return line
    .split(' ')
    .slice(8)
    .filter((r) => !r.startsWith('['))
    .reduce((n, r) => {
      const [a, b] = r.split('-').map(Number) as [number, number | undefined];
      return n + (b ?? a) - a + 1;
    }, 0);
}

let writers: WriterProcess[] = [];

/** Every phase's account per writer, printed as it ends and again with the final assertion. */
const log: string[] = [];

function account(w: WriterProcess, s: Stretch): string {
  const errors = s.errors.length > 0 ? ` errors: ${s.errors.join(' | ')}` : '';
  if (s.silent) return `${w.library}: ${s.silent}`;
  const stuck = s.stuckIn ? `, stuck in ${s.stuckIn}` : '';
  return `${w.library}: ops +${s.ops}, acked +${s.acked}, failed +${s.failed}, read wrong +${s.readWrong}, longest stall ${s.longestStallMs} ms${stuck}${errors}`;
}

/**
 * The redirects each node answered so far (INFO errorstats): how many -ASK the clients met against
 * -MOVED is the exposure the window and the ramp bound. A node stopped by the apply (a scale-in's)
 * takes its counts with it: those are left out.
 */
type Redirects = Map<number, Record<'ASK' | 'MOVED' | 'TRYAGAIN', number>>;
async function redirects(): Promise<Redirects> {
  const out: Redirects = new Map();
  for (const p of PORTS) {
    if (!(await answers(p))) continue;
    const stats = await withNode(p, (r) => r.info('errorstats'));
    const count = (k: string) => Number(new RegExp(`errorstat_${k}:count=(\\d+)`).exec(stats)?.[1] ?? 0);
    out.set(p, { ASK: count('ASK'), MOVED: count('MOVED'), TRYAGAIN: count('TRYAGAIN') });
  }
  return out;
}

function redirectsMet(before: Redirects, after: Redirects): string {
  const sum = { ASK: 0, MOVED: 0, TRYAGAIN: 0 };
  for (const [p, a] of after) {
    const b = before.get(p) ?? { ASK: 0, MOVED: 0, TRYAGAIN: 0 };
    for (const k of Object.keys(sum) as (keyof typeof sum)[]) sum[k] += a[k] - b[k];
  }
  return `${sum.ASK} ASK, ${sum.MOVED} MOVED, ${sum.TRYAGAIN} TRYAGAIN`;
}

/**
 * redis-py's crash on an -ASK to a master it does not know yet (redis/redis-py #4015), which the
 * ramp makes rare but not impossible: with the ramp, 2 of about 35 scale-outs here (every run
 * before it). Issue 14 is not resolved while it happens; it is told apart from every other
 * failure, which fails the test, and counted in the report, not hidden.
 */
const REDIS_PY_ASK_CRASH = /^AttributeError: 'NoneType' object has no attribute 'server_type' \(after redis-py handled AskError: \d+ \S+\)$/;
const knownCrash = (e: string) => REDIS_PY_ASK_CRASH.test(e.replace(/^latest: /, ''));
let redisPyAskCrashes = 0;

/**
 * Apply the spec while every writer runs; the apply must succeed, every writer must have kept
 * writing through it (acknowledged writes during the apply), and none may have seen a failure.
 */
async function applyWhileWriting(phase: string, nodes: number[], masters: number, scaleOut: boolean): Promise<string> {
  writeSpec(nodes, masters);
  const ends = await Promise.all(writers.map((w) => w.stretch()));
  const before = await redirects();
  const started = Date.now();
  const r = await rcluster('apply', '-f', spec.file, '--auto-approve', '--wait-timeout', '25000');
  const seconds = ((Date.now() - started) / 1000).toFixed(1);
  const stretches = await Promise.all(ends.map((end) => end()));
  const lines = writers.map((w, i) => account(w, stretches[i] as Stretch));
  const after = await redirects();
  const entry = `${phase} (apply ${seconds} s, exit ${r.code}; the nodes that stay answered ${redirectsMet(before, after)}):\n  ${lines.join('\n  ')}`;
  log.push(entry);
  console.log(entry);

  const errors = r.err.split('\n').filter((l) => l !== '' && !/: warning: /.test(l));
  expect({ code: r.code, errors }).toEqual({ code: 0, errors: [] });
  // The apply moved slots while the writers ran: otherwise the writers' zero failures say nothing.
  expect(r.out).toMatch(/move \d+ slot\(s\)/);
  const seen = writers.map((w, i) => {
    const s = stretches[i] as Stretch;
    // The known redis-py crash only: in a scale-out, and every failure recorded of that kind.
    const known = w.library === 'redis-py' && scaleOut && s.failed > 0 && s.errors.length > 0 && s.errors.every(knownCrash);
    if (known) redisPyAskCrashes += s.failed;
    return { library: w.library, beating: s.silent === undefined, writing: s.acked >= MIN_ACKED_PER_APPLY, failed: known ? 0 : s.failed, readWrong: s.readWrong };
  });
  // Soft: a cycle whose scale-out an application saw still runs its scale-in, which puts the
  // cluster back for the next cycle and may fail on its own.
  expect.soft(seen, entry).toEqual(writers.map((w) => ({ library: w.library, beating: true, writing: true, failed: 0, readWrong: 0 })));
  return r.out;
}

describe('three client libraries write through 5 scale-outs (3 -> 4 masters) and scale-ins (issue 14)', () => {
  beforeAll(async () => {
    writeSpec(BASE, 3);
    await applyOk();
    await loadKeys(addr(P1), KEYS);
    writers = LIBRARIES.map(({ library, prefix }) => new WriterProcess(library, prefix, addr(P1), WRITER_MAX_SECONDS));
    await Promise.all(
      writers.map((w) =>
        waitFor(`the ${w.library} writer's first acknowledged write`, async () => (w.exit ? `it exited (${JSON.stringify(w.exit)}); stderr: ${w.stderr.slice(-2000)}` : (w.last?.acked ?? 0) > 0 || `${w.last ? 'no write acknowledged' : 'no heartbeat'} yet`), {
          timeoutMs: 20_000,
        }),
      ),
    );
  }, 120_000);

  afterAll(async () => {
    for (const w of writers) w.kill();
    writeSpec(PORTS, 4);
    await rcluster('destroy', '-f', spec.file, '--auto-approve');
    spec.cleanup();
  });

  FRESH.forEach((port, n) => {
    it(`cycle ${n + 1}: scale-out onto ${addr(port)} (4096 slots move to it), then scale-in draining it`, async () => {
      await applyWhileWriting(`cycle ${n + 1} scale-out onto ${addr(port)}`, [...BASE, port], 4, true);
      expect(await slotsOf(port)).toBe(4096);
      await applyWhileWriting(`cycle ${n + 1} scale-in of ${addr(port)}`, BASE, 3, false);
      expect(await slotsOf(port)).toBe(0);
      expect(await answers(port)).toBe(false);
    }, 90_000);
  });

  it('each writer, stopped: no operation failed (but redis-py\'s known ASK crash, counted), every acknowledged write reads back its value; the loaded keys are intact', async () => {
    // Reading back ~100k keys takes a writer a few seconds; one that is not done in 30 is stuck.
    const ended = await Promise.all(writers.map(async (w) => ({ w, ...(await w.stop(30_000)) })));
    const report = [
      ...log,
      ...ended.map(({ w, result, exit, hung, why }) => `${w.library}: ${hung ? `hung (killed 30 s after stop: ${why}; last heartbeat ${JSON.stringify(w.last)}), ` : ''}exit ${JSON.stringify(exit)}, result ${JSON.stringify(result)}${w.stray.length > 0 ? `, stray stdout: ${w.stray.slice(0, 5).join(' / ')}` : ''}${w.stderr ? `\n  stderr: ${w.stderr.slice(-3000)}` : ''}`),
    ].join('\n');
    console.log(report);
    console.log(`redis-py crashes on an -ASK to the new master (known, issue 14 open): ${redisPyAskCrashes}`);
    const seen = ended.map(({ w, result, exit, hung }) => ({
      library: w.library,
      hung,
      exit,
      reported: result !== undefined,
      wrote: (result?.acked ?? 0) > 0,
      // Only the crashes the scale-outs counted as the known one, and all of that class.
      failed: w.library === 'redis-py' && result && result.failed === redisPyAskCrashes && (result.kinds['AttributeError'] ?? 0) === result.failed ? 0 : result?.failed,
      readWrong: result?.readWrong,
      missing: result?.missing,
      wrong: result?.wrong,
      readErrors: result?.readErrors,
    }));
    // Soft: the loaded keys are checked even when a writer failed.
    expect.soft(seen, report).toEqual(
      writers.map((w) => ({ library: w.library, hung: false, exit: { code: 0, signal: null }, reported: true, wrote: true, failed: 0, readWrong: 0, missing: 0, wrong: 0, readErrors: 0 })),
    );
    expect(await badKeys(addr(P1), KEYS)).toEqual([]);
    const check = await redisCli(['--cluster', 'check', addr(P1)]);
    expect(check.out).toContain('[OK] All 16384 slots covered.');
    expect(check.out).not.toMatch(/\[WARNING\]|\[ERR\]/);
  }, 90_000);
});
