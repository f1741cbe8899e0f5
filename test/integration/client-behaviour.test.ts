import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import calculateSlot from 'cluster-key-slot';
import { Cluster } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../../src/apply/wait.js';
import { Loops, OpenSlots, emptyTally, movedSlots, slotKeyReads, slotOwners, slotTag } from '../support/client-load.js';
import { badKeys, everySlot, loadKeys } from '../support/keys.js';
import { answers, localSpec, ports, rcluster, redisCli, withNode } from './support.js';

// Issue 14, scope item 3: what a real cluster client sees while rcluster moves slots under it.
// Each case runs its client during a scale-out to a 4th master and the scale-in back (drain and
// remove), both real `rcluster apply` runs of the built binary in their own process, as an
// operator's would be. The clients start when the apply starts moving slots: the plan has been
// made by then, so keys they create do not change which slots move.
//
// Which slots move: rcluster moves a donor's lightest slots first. Every slot holds the same keys
// before a move (one `s:{<tag>}` of everySlot(0), plus one key of a case's own set in each slot
// where it has one), so the slots that move are a plain quarter of them, and a case's keys are in
// moving slots as often as anywhere else. Each case removes the keys it made.
const PORTS = ports(7721, 8);
const BASE = PORTS.slice(0, 6);
const [P1] = PORTS as [number];
const addr = (p: number) => `127.0.0.1:${p}`;
const NAME = 'itest-clients';
const KEYS = everySlot(0);
const spec = localSpec(NAME, BASE);
const BIN = fileURLToPath(new URL('../../bin/rcluster.js', import.meta.url));
const SEED = [{ host: '127.0.0.1', port: P1 }];

function writeSpec(nodes: number[], masters: number): void {
  writeFileSync(spec.file, [`name: ${NAME}`, 'connection: local', `masters: ${masters}`, 'nodes:', ...nodes.map((p) => `  - ${addr(p)}`), ''].join('\n'));
}

/** A client with ioredis's own defaults for redirects and TRYAGAIN (16 redirections, 100 ms apart). */
function client(options: ConstructorParameters<typeof Cluster>[1] = {}): Cluster {
  const c = new Cluster(SEED, options);
  // Connection errors of the nodes the scale-in stops reach the app through the commands, counted there.
  c.on('error', () => {});
  return c;
}

const randomSlot = () => Math.floor(Math.random() * 16384);

/**
 * The slots open right now, watched during every move: the cases aim half their commands at
 * them, so that each meets a slot mid-move many times however briefly rcluster keeps one open.
 */
const open = new OpenSlots(PORTS);

/** A slot open right now half the time (when one is), any slot otherwise; and which it was. */
function aim(): { slot: number; whileOpen: boolean } {
  const o = Math.random() < 0.5 ? open.pick() : undefined;
  return o === undefined ? { slot: randomSlot(), whileOpen: false } : { slot: o, whileOpen: true };
}

interface Applied {
  code: number | null;
  out: string;
  err: string;
}

/**
 * `rcluster apply` of the spec as it is now, with `work` running from the moment the apply starts
 * moving slots (its "Move slots" step) to its end, stops of removed nodes included.
 */
async function applyDuring(work: { start(): void; stop(): Promise<void> }): Promise<void> {
  const child = spawn(process.execPath, [BIN, 'apply', '-f', spec.file, '--auto-approve', '--wait-timeout', '25000'], {
    env: { ...process.env, NO_COLOR: '1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  let moving = () => {};
  const started = new Promise<void>((res) => (moving = res));
  child.stdout.on('data', (d: Buffer) => {
    out += d.toString();
    if (out.includes('❯ Move slots')) moving();
  });
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  // A hang fails the test with the apply's own output rather than as a bare timeout.
  const timer = setTimeout(() => child.kill('SIGKILL'), 50_000);
  const done = new Promise<Applied>((res) =>
    child.on('close', (code) => {
      clearTimeout(timer);
      moving();
      res({ code, out, err });
    }),
  );
  await started;
  open.start();
  work.start();
  let r: Applied;
  try {
    r = await done;
  } finally {
    await work.stop();
    await open.stop();
  }
  // Only the spec's own warnings may reach stderr.
  const errors = r.err.split('\n').filter((l) => l !== '' && !/: warning: /.test(l));
  expect({ code: r.code, errors, moved: /✔ Move slots/.test(r.out) }, r.out).toEqual({ code: 0, errors: [], moved: true });
}

/** Error replies by kind (MOVED, ASK, TRYAGAIN, …), summed over `on`. */
async function errorStats(on: number[]): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const p of on) {
    if (!(await answers(p))) continue;
    const info = await withNode(p, (r) => r.info('errorstats'));
    for (const [, kind, n] of info.matchAll(/errorstat_(\w+):count=(\d+)/g)) out.set(kind as string, (out.get(kind as string) ?? 0) + Number(n));
  }
  return out;
}

async function resetStats(on: number[]): Promise<void> {
  for (const p of on) if (await answers(p)) await withNode(p, (r) => r.call('CONFIG', 'RESETSTAT'));
}

function add(into: Map<string, number>, from: Map<string, number>): void {
  for (const [k, n] of from) into.set(k, (into.get(k) ?? 0) + n);
}

interface Cycle {
  /** Slots that changed owner in the scale-out (the scale-in drains the same ones). */
  moved: Set<number>;
  /** Error replies the nodes sent during both applies, by kind; the removed nodes' own only as far as the scale-out. */
  replies: Map<string, number>;
  /** GET calls the replicas served during both applies (the removed replica's during the scale-out only). */
  replicaGets: number;
  /** How long slots stayed open, as the watcher saw it (ms). */
  openMs: { median: number; p90: number; max: number };
}

/**
 * Scale out to a 4th master (7727, replica 7728) and back in to 3 (7727 drained, both removed),
 * `work` running during the moves of both; then nothing left to plan and redis-cli's check clean.
 */
async function outAndBack(work: { start(): void; stop(): Promise<void> }): Promise<Cycle> {
  const replies = new Map<string, number>();
  open.clear();
  const before = await slotOwners(P1);
  await resetStats(BASE);
  writeSpec(PORTS, 4);
  await applyDuring(work);
  const out = await slotOwners(P1);
  add(replies, await errorStats(PORTS));
  let replicaGets = await getCalls(PORTS);
  await resetStats(PORTS);
  writeSpec(BASE, 3);
  await applyDuring(work);
  add(replies, await errorStats(BASE));
  replicaGets += await getCalls(BASE);
  const moved = movedSlots(before, out);
  expect(moved.size).toBe(4096);
  // The drain moved the 4th master's slots, the same ones, and nothing else.
  expect([...movedSlots(out, await slotOwners(P1))].sort((a, b) => a - b)).toEqual([...moved].sort((a, b) => a - b));
  await expectSettled();
  const d = open.durations();
  const pct = (q: number) => d[Math.min(d.length - 1, Math.floor(q * d.length))] ?? 0;
  return { moved, replies, replicaGets, openMs: { median: pct(0.5), p90: pct(0.9), max: pct(1) } };
}

async function expectSettled(): Promise<void> {
  const plan = await rcluster('plan', '-f', spec.file, '--detailed-exitcode');
  expect(plan.out).toContain('No changes.');
  expect(plan.code).toBe(0);
  const check = await redisCli(['--cluster', 'check', addr(P1)]);
  expect(check.out).toContain('[OK] All nodes agree about slots configuration.');
  expect(check.out).toContain('[OK] All 16384 slots covered.');
  expect(check.out).not.toMatch(/\[WARNING\]|\[ERR\]/);
  expect(await badKeys(addr(P1), KEYS)).toEqual([]);
}

/** The master each node serves slots for: itself, or the one it replicates. */
async function shardOf(port: number): Promise<number> {
  const info = await withNode(port, (r) => r.info('replication'));
  return Number(/master_port:(\d+)/.exec(info)?.[1] ?? port);
}

/** Keys matching `pattern` each node holds (SCAN: a key whose TTL has passed is not listed, on a replica too). */
async function scanNodes(on: number[], pattern: string): Promise<Map<number, Set<string>>> {
  const out = new Map<number, Set<string>>();
  for (const p of on) {
    const seen = new Set<string>();
    await withNode(p, async (r) => {
      let cursor = '0';
      do {
        const [next, names] = await r.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
        for (const n of names) seen.add(n);
        cursor = next;
      } while (cursor !== '0');
    });
    out.set(p, seen);
  }
  return out;
}

/** Replication is asynchronous: every replica holds as many keys as its master, waited for. */
async function replicasCaughtUp(): Promise<void> {
  await waitFor(
    "every replica to hold its master's keys",
    async () => {
      for (const p of BASE) {
        const master = await shardOf(p);
        if (master === p) continue;
        const [mine, theirs] = await Promise.all([withNode(p, (r) => r.dbsize()), withNode(master, (r) => r.dbsize())]);
        if (mine !== theirs) return `${addr(p)} holds ${mine} keys, its master ${theirs}`;
      }
      return true;
    },
    { timeoutMs: 10_000 },
  );
}

/** Delete every key matching `pattern`, on the masters. */
async function dropKeys(pattern: string): Promise<void> {
  for (const [p, names] of await scanNodes(BASE, pattern)) {
    if ((await shardOf(p)) !== p || names.size === 0) continue;
    const list = [...names];
    // One key a command: a node refuses keys of different slots in one (CROSSSLOT).
    await withNode(p, async (r) => {
      const pipe = r.pipeline();
      for (const k of list) pipe.unlink(k);
      await pipe.exec();
    });
  }
}

/**
 * Replica reads during a move may return nil, with redis-cli as with rcluster: Redis 7.0 gives a
 * replica no migration state. The replica of a slot's old owner serves the slot as its master's
 * until it learns the new owner (the new owner broadcasts a pong on its SETSLOT NODE), and
 * MIGRATE's deletes reach it through replication before that: in between, a key that exists
 * reads nil there. A master never does (it answers -ASK). The window ends when the target is
 * told it owns the slot, so its length is rcluster's to keep short. Measured on this machine as
 * the mean per slot move (`exposureMs` in the output), with test/support/compare-redis-cli.ts:
 * rcluster 7-20 ms on a scale-out, 25-100 ms on a scale-in (it hands over a round of up to 256
 * slots at the round's end; slots stay open 200-1100 ms); redis-cli --cluster rebalance 5-14 ms
 * (one slot at a time, most open under 10 ms). This test, which reads only during the moves:
 * 40-85 ms. The bound is about a slot's open time: it catches a replica left serving a slot its
 * master gave away, not that difference.
 */
const REPLICA_NIL_EXPOSURE_MS = 500;
/**
 * How much longer than its TTL a moved key may live. MIGRATE sends the TTL left (RESTORE's ttl
 * is relative), so the target's copy lives from the moment it is restored: a key moved near its
 * end outlives its TTL by the batch's time in transit, milliseconds (measured here: at most 3 ms;
 * redis-cli's MIGRATE is the same command). A key restored without its TTL, or with a TTL longer
 * than what was left, lives on far past this.
 */
const MIGRATE_TTL_ALLOWANCE_MS = 50;

/** GET calls the replicas among `on` served since their last CONFIG RESETSTAT (INFO commandstats). */
async function getCalls(on: number[]): Promise<number> {
  let n = 0;
  for (const p of on) {
    if (!(await answers(p)) || (await shardOf(p)) === p) continue;
    n += Number(/cmdstat_get:calls=(\d+)/.exec(await withNode(p, (r) => r.info('commandstats')))?.[1] ?? 0);
  }
  return n;
}

function tally(items: string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const i of items) out[i] = (out[i] ?? 0) + 1;
  return out;
}

function report(label: string, numbers: Record<string, unknown>): void {
  console.log(`[client-behaviour] ${label}: ${JSON.stringify(numbers)}`);
}

describe('what a cluster client sees while rcluster moves slots (scale-out to 4 masters and back)', () => {
  beforeAll(async () => {
    writeSpec(BASE, 3);
    const r = await rcluster('apply', '-f', spec.file, '--auto-approve', '--wait-timeout', '25000');
    expect({ code: r.code, err: r.err }).toEqual({ code: 0, err: '' });
    await loadKeys(addr(P1), KEYS);
  });

  afterAll(async () => {
    writeSpec(PORTS, 4);
    await rcluster('destroy', '-f', spec.file, '--auto-approve');
    spec.cleanup();
  });

  // The loop creates its pairs as it goes, so many of them are created while their slot is open:
  // the source answers -ASK (neither key there), and the target, with ASKING, -TRYAGAIN (a
  // multi-key command, keys missing) until the slot is handed over. ioredis retries TRYAGAIN
  // 100 ms later, back through the source, two redirections a try out of 16: a slot open longer
  // than about 0.8 s reaches the app as TRYAGAIN or EXECABORT (MGET, retried on its own path,
  // has not failed so far). redis-cli holds a slot open for milliseconds (the same loop: no
  // error); rcluster a round of up to 256 slots, median 200-700 ms, p90 up to 1.1 s
  // (test/support/compare-redis-cli.ts): with the current engine this case fails.
  it('MULTI/EXEC and MGET on hash-tagged pairs: MGET never fails (TRYAGAIN retried); EXEC fails only with the TRYAGAIN or EXECABORT ioredis cannot retry after an ASK or a hand-over; a == b always, every acknowledged increment kept', async () => {
    const c = client();
    const pair = (slot: number) => [`p:{${slotTag(slot)}}:a`, `p:{${slotTag(slot)}}:b`] as const;
    const acked = new Map<number, number>();
    /** Attempts that failed per slot: such an EXEC may or may not have run. */
    const failed = new Map<number, number>();
    const appErrors: string[] = [];
    const unequal: string[] = [];
    const lost: string[] = [];
    const seen = { execs: 0, mgets: 0, execsInMoved: 0, mgetsInMoved: 0, execsWhileOpen: 0, mgetsWhileOpen: 0 };
    const touched: { slot: number; exec: boolean }[] = [];
    const work = new Loops(8, async () => {
      const { slot, whileOpen } = aim();
      const [a, b] = pair(slot);
      const exec = Math.random() < 0.5;
      touched.push({ slot, exec });
      if (whileOpen) seen[exec ? 'execsWhileOpen' : 'mgetsWhileOpen']++;
      try {
        if (exec) {
          const res = await c.multi().incr(a).incr(b).exec();
          const [ra, rb] = res ?? [];
          if (!ra || !rb || ra[0] || rb[0]) throw new Error(`EXEC: ${JSON.stringify(res)}`);
          // Both increments in one transaction: the two counters move together.
          if (ra[1] !== rb[1]) unequal.push(`${a}: EXEC gave ${String(ra[1])} and ${String(rb[1])}`);
          acked.set(slot, (acked.get(slot) ?? 0) + 1);
          seen.execs++;
        } else {
          const before = acked.get(slot) ?? 0;
          const [va, vb] = await c.mget(a, b);
          seen.mgets++;
          if (va !== vb) unequal.push(`${a}: MGET gave ${String(va)} and ${String(vb)}`);
          else if (Number(va ?? 0) < before) lost.push(`${a}: MGET gave ${String(va)} after ${before} acknowledged EXECs`);
        }
      } catch (err) {
        appErrors.push(`${exec ? 'EXEC' : 'MGET'} ${a}: ${(err as Error).message}`);
        failed.set(slot, (failed.get(slot) ?? 0) + 1);
      }
    });
    try {
      const { moved, replies, openMs } = await outAndBack(work);
      for (const t of touched) if (moved.has(t.slot)) seen[t.exec ? 'execsInMoved' : 'mgetsInMoved']++;
      // Every pair ends with both counters at the number of EXECs acknowledged for it (an EXEC
      // that failed may have run or not: at most that many more).
      const miscounted: string[] = [];
      const slots = [...new Set(touched.map((t) => t.slot))];
      const finals = await Promise.all(slots.map((s) => c.mget(...pair(s))));
      slots.forEach((s, i) => {
        const [va, vb] = finals[i] as (string | null)[];
        const want = acked.get(s) ?? 0;
        const n = Number(va ?? 0);
        if (va !== vb || n < want || n > want + (failed.get(s) ?? 0)) miscounted.push(`${pair(s)[0]}: ${String(va)}/${String(vb)}, ${want} acknowledged`);
      });
      report('multi-key', { ...seen, appErrors: appErrors.length, errorKinds: tally(appErrors.map((e) => e.replace(/ p:\S+/, '').slice(0, 60))), unequal: unequal.length, lost: lost.length, miscounted: miscounted.length, replies: Object.fromEntries(replies), openMs });
      // MGET: -ASK, then -TRYAGAIN while the pair is split or missing, retried by ioredis until
      // the slot is handed over: nothing reaches the app.
      expect(appErrors.filter((e) => !e.startsWith('EXEC '))).toEqual([]);
      // EXEC: a transaction creating a pair in a slot MIGRATING on its source gets -ASK, then
      // -TRYAGAIN from the target until the hand-over (its keys exist on neither side). ioredis
      // re-sends a transaction after -ASK behind an ASKING outside it, and then counts that
      // ASKING as a write it must not repeat: the -TRYAGAIN is handed to the app instead of
      // retried (Pipeline.js, the cluster retry check). No reshard avoids it for such pairs;
      // rcluster keeps it to the moment between a slot's script and its hand-over. What the app
      // sees is only that error, and the pair stays consistent (below). A hand-over that lands
      // between a transaction's commands answers them differently (-ASK, then -MOVED): ioredis
      // retries only when all errors are the same, and hands the app the EXECABORT.
      expect(appErrors.filter((e) => e.startsWith('EXEC ') && !/: (TRYAGAIN|EXECABORT) /.test(e))).toEqual([]);
      expect(unequal).toEqual([]);
      expect(lost).toEqual([]);
      expect(miscounted).toEqual([]);
      // The moves did reach the pairs: commands on slots that moved, and TRYAGAIN replies (the
      // pairs the loop creates while their slot is half moved) that the client retried.
      expect(seen.execsInMoved).toBeGreaterThan(50);
      expect(seen.mgetsInMoved).toBeGreaterThan(50);
      expect(Math.min(seen.execsWhileOpen, seen.mgetsWhileOpen)).toBeGreaterThan(10);
      expect(replies.get('TRYAGAIN') ?? 0).toBeGreaterThan(0);
    } finally {
      c.disconnect();
      await dropKeys('p:*');
    }
  });

  it('reads from replicas (READONLY) of keys that never change: never a wrong value; nil only for a key whose slot is moving, as with redis-cli, and only while it moves', async () => {
    const fromReplicas = emptyTally();
    const fromMasters = emptyTally();
    const replicaClient = client({ scaleReads: 'slave' });
    const masterClient = client();
    const replicaReads = slotKeyReads(replicaClient, fromReplicas, 12);
    const masterReads = slotKeyReads(masterClient, fromMasters, 4);
    const both = {
      start: () => [replicaReads, masterReads].forEach((w) => w.start()),
      stop: async () => void (await Promise.all([replicaReads.stop(), masterReads.stop()])),
    };
    try {
      const { moved, replicaGets: servedByReplicas, openMs } = await outAndBack(both);
      const nilInMoved = fromReplicas.nilSlots.filter((s) => moved.has(s)).length;
      // How long, on average, a moved slot's key read nil on a replica: each of the 2 × 4096 slot
      // moves exposes its key to reads at rate (reads a ms / 16384 slots).
      const exposureMs = (fromReplicas.nil * 16384) / ((fromReplicas.reads / replicaReads.activeMs) * 2 * moved.size);
      report('replica reads', {
        replicas: { ...fromReplicas, errors: fromReplicas.errors.length, nilSlots: undefined, distinctNilSlots: new Set(fromReplicas.nilSlots).size, nilInMoved, errorKinds: tally(fromReplicas.errors.map((e) => e.replace(/\d+/g, 'N'))) },
        masters: { ...fromMasters, errors: fromMasters.errors.length, nilSlots: undefined, errorKinds: tally(fromMasters.errors.map((e) => e.slice(0, 60))) },
        servedByReplicas,
        readingMs: replicaReads.activeMs,
        exposureMs: Math.round(exposureMs),
        openMs,
      });
      // The reads did go to replicas, and many of them during the moves.
      expect(servedByReplicas).toBeGreaterThan(1000);
      // Masters answer through -ASK while a slot moves: never a nil, never an error.
      expect({ nil: fromMasters.nil, wrong: fromMasters.wrong, errors: fromMasters.errors }).toEqual({ nil: 0, wrong: 0, errors: [] });
      // A replica never serves another value than the key's.
      expect(fromReplicas.wrong).toBe(0);
      // ioredis with scaleReads sends a read that got -MOVED back to the old owner's replicas until
      // its slot map is refreshed, and gives up after 16 redirections: the client's own routing
      // (seen with redis-cli's rebalance too). Nothing else may fail.
      expect(fromReplicas.errors.filter((e) => !/^Too many Cluster redirections\. Last error: ReplyError: MOVED /.test(e))).toEqual([]);
      // A nil can only be a key whose slot moved: the replica of its old master got MIGRATE's
      // delete before it learned the new owner (see the bound below).
      expect(fromReplicas.nilSlots.filter((s) => !moved.has(s))).toEqual([]);
      expect(exposureMs).toBeLessThanOrEqual(REPLICA_NIL_EXPOSURE_MS);
    } finally {
      replicaClient.disconnect();
      masterClient.disconnect();
    }
  });

  it('keys with a TTL (PX 20..2000) written before and while their slots move: the moves complete, and no key outlives its TTL on any node, replicas included', async () => {
    const c = client();
    const written: { key: string; deadline: number; slot: number }[] = [];
    const outlived: string[] = [];
    /** Keys read back after their TTL, and how late the read was sent. */
    const lateSeen: { key: string; late: number; slot: number }[] = [];
    const appErrors: string[] = [];
    const checks: Promise<void>[] = [];
    let n = 0;
    // Each key is read once right after its TTL passed (a real condition: the clock).
    const untilPast = async (t: number) => {
      // A timer may fire a millisecond early by the wall clock: waited for until t has passed.
      while (Date.now() <= t) await new Promise((res) => setTimeout(res, t + 1 - Date.now()));
    };
    // Each key is read right after its TTL (a real condition: the clock), and if still there,
    // once more after MIGRATE_TTL_ALLOWANCE_MS.
    const checkAfter = async (key: string, deadline: number, slot: number) => {
      try {
        await untilPast(deadline);
        const sent = Date.now();
        if ((await c.get(key)) === null) return;
        lateSeen.push({ key, late: sent - deadline, slot });
        await untilPast(deadline + MIGRATE_TTL_ALLOWANCE_MS);
        if ((await c.get(key)) !== null) outlived.push(`${key}: still there ${Date.now() - deadline} ms after its TTL`);
      } catch (err) {
        appErrors.push(`GET ${key}: ${(err as Error).message}`);
      }
    };
    let whileOpen = 0;
    const work = new Loops(4, async () => {
      // Keys in slots open right now (they expire mid-move, some on the target), and anywhere
      // (in slots that move later in the apply: written just before their move).
      const aimed = aim();
      const slot = aimed.slot;
      const key = `ttl:{${slotTag(slot)}}:${n++}`;
      const px = 20 + Math.floor(Math.random() * 1981);
      try {
        await c.set(key, 'v', 'PX', px);
        // Acknowledged now: Redis set the TTL when it received the command, earlier.
        const deadline = Date.now() + px;
        if (aimed.whileOpen) whileOpen++;
        written.push({ key, deadline, slot });
        checks.push(checkAfter(key, deadline, slot));
      } catch (err) {
        appErrors.push(`SET ${key}: ${(err as Error).message}`);
      }
    });
    try {
      const { moved, openMs } = await outAndBack(work);
      const last = Math.max(...written.map((w) => w.deadline));
      await waitFor('the longest TTL to pass', async () => (Date.now() > last + MIGRATE_TTL_ALLOWANCE_MS ? true : `${last - Date.now()} ms to go`), { timeoutMs: 5000 });
      await Promise.all(checks);
      // No node lists one of them (a replica hides a key whose TTL passed, so this finds keys
      // that lost their TTL or got a longer one on the way)…
      const left = [...(await scanNodes(BASE, 'ttl:*'))].flatMap(([p, keys]) => [...keys].map((k) => `${addr(p)}: ${k}`));
      // …and none is even kept in memory: the masters expired them and their replicas got the deletes.
      await waitFor(
        'every node to hold no key with a TTL',
        async () => {
          for (const p of BASE) {
            const expires = Number(/expires=(\d+)/.exec(await withNode(p, (r) => r.info('keyspace')))?.[1] ?? 0);
            if (expires > 0) return `${addr(p)} holds ${expires} key(s) with a TTL`;
          }
          return true;
        },
        { timeoutMs: 10_000 },
      );
      const inMoved = written.filter((w) => moved.has(w.slot)).length;
      report('ttl', { written: written.length, inMoved, whileOpen, openMs, outlived: outlived.length, seenLate: lateSeen.length, seenLateInMoved: lateSeen.filter((o) => moved.has(o.slot)).length, lateMs: tally(lateSeen.map((o) => String(o.late))), appErrors: appErrors.length, errorKinds: tally(appErrors.map((e) => e.replace(/ ttl:\S+/, '').slice(0, 60))), left: left.length });
      expect(outlived).toEqual([]);
      expect(left).toEqual([]);
      expect(appErrors).toEqual([]);
      expect(inMoved).toBeGreaterThan(100);
      expect(whileOpen).toBeGreaterThan(10);
    } finally {
      c.disconnect();
    }
  });

  it('keys deleted by a client while their slots move stay deleted on every node; the others are intact', async () => {
    const c = client();
    const name = (slot: number) => `d:{${slotTag(slot)}}`;
    const value = (slot: number) => `d${slot}`;
    // One key in every slot, so that every slot keeps the same weight (see the top of the file).
    const loader = client({ enableAutoPipelining: true });
    try {
      await Promise.all(Array.from({ length: 16384 }, (_, s) => loader.set(name(s), value(s))));
    } finally {
      loader.disconnect();
    }
    const order = Array.from({ length: 16384 }, (_, s) => s).sort(() => Math.random() - 0.5);
    let next = 0;
    /** Keys not deleted (nor being deleted) yet, by slot. */
    const left = new Set(order);
    let whileOpen = 0;
    /** A key in a slot open right now half the time, when one is left there; the next of `order` otherwise. */
    const pick = (): number | undefined => {
      const o = aim();
      if (o.whileOpen && left.has(o.slot)) {
        whileOpen++;
        return o.slot;
      }
      while (next < order.length && !left.has(order[next] as number)) next++;
      return order[next++];
    };
    const deleted = new Set<number>();
    const unsure = new Set<number>();
    const notFound: string[] = [];
    const appErrors: string[] = [];
    const work = new Loops(4, async () => {
      const slot = pick();
      if (slot === undefined) return false;
      left.delete(slot);
      try {
        // Each key is deleted once: 0 would mean the client was answered by a node without it.
        if ((await c.del(name(slot))) === 1) deleted.add(slot);
        else notFound.push(name(slot));
      } catch (err) {
        unsure.add(slot);
        appErrors.push(`DEL ${name(slot)}: ${(err as Error).message}`);
      }
    });
    try {
      const { moved, openMs } = await outAndBack(work);
      await replicasCaughtUp();
      const onNodes = await scanNodes(BASE, 'd:*');
      const owners = await slotOwners(P1);
      const cameBack: string[] = [];
      const stray: string[] = [];
      for (const [p, keys] of onNodes) {
        const shard = await shardOf(p);
        for (const k of keys) {
          const slot = calculateSlot(k);
          if (deleted.has(slot)) cameBack.push(`${addr(p)}: ${k}`);
          if (owners[slot] !== shard) stray.push(`${addr(p)}: ${k} (slot ${slot} is ${addr(owners[slot] as number)}'s)`);
        }
      }
      const kept = Array.from({ length: 16384 }, (_, s) => s).filter((s) => !deleted.has(s) && !unsure.has(s));
      const values = await Promise.all(kept.map((s) => c.get(name(s))));
      const damaged = kept.flatMap((s, i) => (values[i] === value(s) ? [] : [`${name(s)}: ${String(values[i])}`]));
      const deletedInMoved = [...deleted].filter((s) => moved.has(s)).length;
      report('deletes', { deleted: deleted.size, deletedInMoved, whileOpen, openMs, notFound: notFound.length, appErrors: appErrors.length, errorKinds: tally(appErrors.map((e) => e.replace(/ d:\S+/, '').slice(0, 60))), cameBack: cameBack.length, stray: stray.length, damaged: damaged.length });
      expect(cameBack).toEqual([]);
      expect(stray).toEqual([]);
      expect(damaged).toEqual([]);
      expect(notFound).toEqual([]);
      expect(appErrors).toEqual([]);
      expect(deletedInMoved).toBeGreaterThan(100);
      expect(whileOpen).toBeGreaterThan(10);
    } finally {
      c.disconnect();
      await dropKeys('d:*');
    }
  });
});
