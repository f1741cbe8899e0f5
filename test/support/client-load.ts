/**
 * Client workloads that run while slots move, for the client-behaviour test and the redis-cli
 * comparison script (test/support/replica-reads-compare.ts): loops of real cluster-client
 * commands that start and stop around a move, and what the cluster itself says about a move
 * (who owns each slot, the error replies each node sent).
 */
import { Redis } from 'ioredis';
import { slotKeyName } from './keys.js';
import { withNode } from '../integration/support.js';

/** The hash tag of slot s's own key (`s:{<tag>}` of test/support/keys.ts): any `…{<tag>}…` lands in s. */
export function slotTag(slot: number): string {
  return slotKeyName(slot).slice(3, -1);
}

/** The value loadKeys gives slot s's own key in a set of `everySlot(0)`, 100-byte values. */
export function slotKeyValue(slot: number): string {
  const head = `s${slot}:`;
  return head + 'x'.repeat(100 - head.length);
}

/**
 * `n` loops of `body` that can be started and stopped more than once (a move out and a move
 * back): `stop` waits for the operations in flight. A body returning false ends its loop.
 */
export class Loops {
  private running: Promise<void>[] = [];
  private stopped = true;
  private since = 0;
  /** Milliseconds the loops have run, over all starts. */
  activeMs = 0;

  constructor(
    private readonly n: number,
    private readonly body: () => Promise<boolean | void>,
  ) {}

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.since = Date.now();
    this.running = Array.from({ length: this.n }, async () => {
      while (!this.stopped) if ((await this.body()) === false) return;
    });
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    await Promise.all(this.running);
    this.activeMs += Date.now() - this.since;
  }
}

/**
 * The slots open right now (MIGRATING on their source or IMPORTING on their target), read from
 * every node's CLUSTER NODES in a loop while started, so that a client can aim at them; and how
 * long each slot stayed open, as far as the polls saw (a poll round takes a few milliseconds).
 */
export class OpenSlots {
  /** Open at the last poll. */
  now: number[] = [];
  /** When each slot open at the last poll was first seen open (this time round). */
  private readonly since = new Map<number, number>();
  /** Each time a slot was open, first to last poll that saw it so. */
  private readonly episodes: number[] = [];
  private readonly conns = new Map<number, Redis>();
  private stopped = true;
  private loop: Promise<void> = Promise.resolve();

  constructor(private readonly ports: number[]) {}

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.loop = (async () => {
      let lastAt = Date.now();
      while (!this.stopped) {
        const texts = await Promise.all(this.ports.map((p) => this.conn(p).call('CLUSTER', 'NODES').catch(() => '')));
        const at = Date.now();
        const open = new Set<number>();
        for (const text of texts) {
          const mine = String(text).split('\n').find((l) => l.includes('myself'));
          for (const [, slot] of (mine ?? '').matchAll(/\[(\d+)-[<>]-/g)) open.add(Number(slot));
        }
        for (const [s, t] of this.since) {
          if (open.has(s)) continue;
          this.episodes.push(lastAt - t);
          this.since.delete(s);
        }
        for (const s of open) if (!this.since.has(s)) this.since.set(s, at);
        this.now = [...open];
        lastAt = at;
        // A pause between rounds: CLUSTER NODES of a cluster mid-move is long, and the nodes
        // serve the move and the clients too.
        await new Promise((res) => setTimeout(res, 10));
      }
      for (const t of this.since.values()) this.episodes.push(lastAt - t);
      this.since.clear();
      this.now = [];
    })();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.loop;
    for (const c of this.conns.values()) c.disconnect();
    this.conns.clear();
  }

  /** Forget the episodes seen so far. */
  clear(): void {
    this.episodes.length = 0;
  }

  /** A slot open at the last poll, at random; undefined when none is. */
  pick(): number | undefined {
    return this.now[Math.floor(Math.random() * this.now.length)];
  }

  /** How long slots stayed open each time one was (first to last poll that saw it; 0: one poll), ascending. */
  durations(): number[] {
    return [...this.episodes].sort((a, b) => a - b);
  }

  private conn(port: number): Redis {
    let c = this.conns.get(port);
    if (!c || c.status === 'end') {
      // Named as rcluster's own tools are: a node being removed does not wait for this watcher
      // to leave, as it waits for the clients under test.
      c = new Redis({ host: '127.0.0.1', port, maxRetriesPerRequest: 0, retryStrategy: () => null, connectionName: 'rcluster-observer' });
      c.on('error', () => {});
      this.conns.set(port, c);
    }
    return c;
  }
}

/** The port of the master owning each slot, as `seed` sees it. */
export async function slotOwners(seed: number): Promise<number[]> {
  const slots = (await withNode(seed, (r) => r.call('CLUSTER', 'SLOTS'))) as [number, number, [string, number]][];
  const owner = new Array<number>(16384).fill(0);
  for (const [start, end, [, port]] of slots) for (let s = start; s <= end; s++) owner[s] = port;
  return owner;
}

/** Slots whose owner differs between two readings of slotOwners. */
export function movedSlots(before: number[], after: number[]): Set<number> {
  const out = new Set<number>();
  before.forEach((p, s) => {
    if (after[s] !== p) out.add(s);
  });
  return out;
}

/**
 * Error replies of one kind (`TRYAGAIN`, `ASK`, `MOVED`, …) the nodes sent since their last
 * CONFIG RESETSTAT, summed (INFO errorstats, Redis >= 6.2).
 */
export async function errorReplies(portsToRead: number[], kind: string): Promise<number> {
  let total = 0;
  for (const p of portsToRead) {
    const info = await withNode(p, (r) => r.info('errorstats'));
    total += Number(new RegExp(`errorstat_${kind}:count=(\\d+)`).exec(info)?.[1] ?? 0);
  }
  return total;
}

export async function resetStats(portsToReset: number[]): Promise<void> {
  await Promise.all(portsToReset.map((p) => withNode(p, (r) => r.call('CONFIG', 'RESETSTAT'))));
}

/** What replica reads of keys that never change returned. */
export interface ReadTally {
  reads: number;
  ok: number;
  /** nil for a key that exists: the replica no longer had it. */
  nil: number;
  /** Another value than the key's. */
  wrong: number;
  errors: string[];
  /** Slots of the nil replies (with repeats). */
  nilSlots: number[];
}

export function emptyTally(): ReadTally {
  return { reads: 0, ok: 0, nil: 0, wrong: 0, errors: [], nilSlots: [] };
}

/**
 * `n` loops reading the slots' own keys (`s:{<tag>}`, loaded by loadKeys(everySlot(0))) at random
 * through `client`, counting into `tally`.
 */
export function slotKeyReads(client: { get(key: string): Promise<string | null> }, tally: ReadTally, n: number): Loops {
  return new Loops(n, async () => {
    const slot = Math.floor(Math.random() * 16384);
    tally.reads++;
    try {
      const v = await client.get(slotKeyName(slot));
      if (v === slotKeyValue(slot)) tally.ok++;
      else if (v === null) {
        tally.nil++;
        tally.nilSlots.push(slot);
      } else tally.wrong++;
    } catch (err) {
      tally.errors.push((err as Error).message);
    }
  });
}
