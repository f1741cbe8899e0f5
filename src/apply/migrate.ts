import type { Redis } from 'ioredis';
import { migrateAuthArgs } from '../live/auth.js';
import { splitAddress } from '../live/connect.js';
import type { NodePool } from './pool.js';

/**
 * The slot-migration engine, classic strategy: SETSLOT IMPORTING/MIGRATING, then GETKEYSINSLOT +
 * MIGRATE … KEYS until the slot is empty, then SETSLOT NODE on the target, the source and every
 * other master. redis-cli does this one slot and 10 keys at a time, about 7 round trips a slot;
 * here a round of slots shares each round trip (pipelines), and the caller runs every pair at once.
 *
 * All state lives in the cluster: a slot cut off half-way is open on its two nodes
 * (`[slot->-id]`, `[slot-<-id]`), and running the same job again finishes it. Nothing is re-sent
 * blindly after an error: each pass reads the keys left in the slot again.
 *
 * A second strategy (server-side atomic migration: Valkey >= 9 CLUSTER MIGRATESLOTS, Redis >= 8.4
 * CLUSTER MIGRATION IMPORT) would implement `SlotMigrator` too, and be chosen where every node
 * supports it.
 */
export interface SlotMigrator {
  migrate(job: MigrationJob, onProgress: (p: MigrationProgress) => void): Promise<MigrationProgress>;
}

export interface MigrationJob {
  from: { address: string; id: string };
  to: { address: string; id: string };
  slots: number[];
  /** Other masters, told the new owner last. */
  others: { address: string; id: string }[];
}

export interface MigrationProgress {
  slotsDone: number;
  slotsTotal: number;
  keysMoved: number;
}

export interface MigrateOptions {
  /** Slots sent per round trip. */
  slotsPerRound: number;
  /** Rounds in flight per pair. */
  roundsInFlight: number;
  /** Keys per MIGRATE, at most. */
  maxKeys: number;
  /** Bytes per MIGRATE, roughly (from the source's average key size). */
  maxBytes: number;
  /** MIGRATE's own I/O timeout for a batch; a key that times out alone gets one scaled to its size. */
  migrateTimeoutMs: number;
  /** The slowest rate a batch is assumed to move at (bytes a second): its timeout grows by its size at this rate. */
  bytesPerSecond: number;
}

// Measured on 1M keys of 100 B, 3 -> 4 masters (npm run bench): 256 slots a round moved the
// 250k keys in about 1.8 s, against about 2.3 s with 64; more rounds in flight did not help.
export const DEFAULT_MIGRATE_OPTIONS: MigrateOptions = {
  slotsPerRound: 256,
  roundsInFlight: 2,
  maxKeys: 1000,
  maxBytes: 8 * 1024 * 1024,
  migrateTimeoutMs: 10_000,
  bytesPerSecond: 10_000_000,
};

/** A key that exists on both sides with different values: never overwritten, always reported. */
export class KeyConflictError extends Error {}

/**
 * One slot's batch, read and moved by the source itself: GETKEYSINSLOT and MIGRATE in one script.
 * The key names never travel to rcluster and back (on the benchmark's 1M keys that cost a third
 * of rcluster's CPU, and 0.2-0.4 s of a 4096-slot scale-out on a 2-core machine it shares with
 * the nodes), and reading the keys and moving them becomes one atomic step. MIGRATE is the same
 * command with the same guarantees: it deletes on the source only what the target acknowledged,
 * and its replicas and AOF get those deletes.
 * ARGV: host, port, timeout, count, slot, then MIGRATE's AUTH arguments, if any.
 * Returns {keys found, keys left in the slot} or {found, left, MIGRATE's error}; after an error some
 * of them may have moved.
 * Its own work is a few thousand Lua instructions at most; its time is MIGRATE's (ScriptUse).
 */
const MIGRATE_SLOT_LUA = `
local keys = redis.call('CLUSTER', 'GETKEYSINSLOT', ARGV[5], ARGV[4])
if #keys == 0 then return {0, 0} end
local args = {'MIGRATE', ARGV[1], ARGV[2], '', 0, ARGV[3]}
for i = 6, #ARGV do args[#args + 1] = ARGV[i] end
args[#args + 1] = 'KEYS'
for i = 1, #keys do args[#args + 1] = keys[i] end
local r = redis.pcall(unpack(args))
local left = redis.call('CLUSTER', 'COUNTKEYSINSLOT', ARGV[5])
if type(r) == 'table' and r.err then return {#keys, left, r.err} end
return {#keys, left}
`;

/**
 * Whether the source runs MIGRATE_SLOT_LUA, and how long a scripted MIGRATE may wait.
 * A script that runs past busy-reply-threshold (lua-time-limit) may make Redis answer other
 * clients -BUSY, where a plain MIGRATE only makes them wait. A scripted MIGRATE's I/O timeout is
 * kept under half of it, and its batch to what moves within that time at `bytesPerSecond`.
 * MIGRATE applies the timeout to each write and each reply, not to the whole batch, so a link
 * that crawls without stalling can still stretch one; on a healthy one a batch takes
 * milliseconds. A batch that fails is moved again key by key with plain MIGRATE and a timeout
 * sized to each key. A source that refuses scripts (EVAL renamed, an ACL, a threshold too small
 * to leave room) is driven with plain MIGRATE throughout, and so is a cluster with a password:
 * a script's arguments are not redacted from SLOWLOG and MONITOR as MIGRATE's AUTH is.
 */
interface ScriptUse {
  sha: string;
  timeoutCapMs: number;
}

/** Below this busy-reply-threshold no room is left for a batch: plain MIGRATE only. */
const MIN_BUSY_THRESHOLD_MS = 1000;
const SCRIPT_TIMEOUT_CAP_MS = 2000;

type Reply = [Error | null, unknown][];

/** What one pass did for one slot: keys found (and sent), keys left, and MIGRATE's error. */
interface Batch {
  slot: number;
  found: number;
  /** Keys in the slot after the batch (COUNTKEYSINSLOT); -1 when the pass did not run. */
  left: number;
  timeoutMs: number;
  err?: Error;
  /** Not run at all (NOSCRIPT): load the script again, then go again without counting a failure. */
  retry?: boolean;
  /** The script itself was refused (not its MIGRATE): go on with plain MIGRATE, nothing counted. */
  refused?: boolean;
}

export class ClassicMigrator implements SlotMigrator {
  constructor(
    private readonly pool: NodePool,
    private readonly opts: MigrateOptions = DEFAULT_MIGRATE_OPTIONS,
  ) {}

  async migrate(job: MigrationJob, onProgress: (p: MigrationProgress) => void): Promise<MigrationProgress> {
    const progress: MigrationProgress = { slotsDone: 0, slotsTotal: job.slots.length, keysMoved: 0 };
    const source = await this.pool.get(job.from.address);
    const target = await this.pool.get(job.to.address);
    const others = await Promise.all(job.others.map(async (o) => ({ ...o, client: await this.pool.get(o.address) })));
    const { batchKeys, avgBytes } = await this.batchSize(source);
    const script = await this.loadScript(source);
    const rounds: number[][] = [];
    for (let i = 0; i < job.slots.length; i += this.opts.slotsPerRound) rounds.push(job.slots.slice(i, i + this.opts.slotsPerRound));
    let next = 0;
    const worker = async () => {
      while (next < rounds.length) {
        const slots = rounds[next++] as number[];
        const keys = await this.round(job, slots, { source, target, others, batchKeys, avgBytes, script });
        progress.slotsDone += slots.length;
        progress.keysMoved += keys;
        onProgress({ ...progress });
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.opts.roundsInFlight, rounds.length) }, worker));
    return progress;
  }

  /** Keys per MIGRATE: as many as fit in maxBytes at the source's average key size. */
  private async batchSize(source: Redis): Promise<{ batchKeys: number; avgBytes: number }> {
    const [memory, dbsize] = await Promise.all([source.info('memory'), source.dbsize()]);
    const dataset = Number(/used_memory_dataset:(\d+)/.exec(memory)?.[1] ?? 0);
    const avgBytes = dbsize > 0 && dataset > 0 ? dataset / dbsize : 0;
    const batchKeys = avgBytes > 0 ? Math.max(1, Math.min(this.opts.maxKeys, Math.floor(this.opts.maxBytes / avgBytes))) : this.opts.maxKeys;
    return { batchKeys, avgBytes };
  }

  /** The source's copy of MIGRATE_SLOT_LUA, or undefined where plain MIGRATE must do. */
  private async loadScript(source: Redis): Promise<ScriptUse | undefined> {
    try {
      const [, threshold] = (await source.call('CONFIG', 'GET', 'busy-reply-threshold')) as [string, string];
      const thresholdMs = Number(threshold);
      if (!(thresholdMs >= MIN_BUSY_THRESHOLD_MS)) return undefined;
      const sha = String(await source.call('SCRIPT', 'LOAD', MIGRATE_SLOT_LUA));
      return { sha, timeoutCapMs: Math.min(SCRIPT_TIMEOUT_CAP_MS, Math.floor(thresholdMs / 2)) };
    } catch {
      return undefined;
    }
  }

  /**
   * MIGRATE's timeout bounds writing the whole batch, and each reply: the base, plus 1 s per
   * batch's expected bytes (at the source's average key size) at `bytesPerSecond`.
   */
  private batchTimeout(keys: number, avgBytes: number): number {
    return this.opts.migrateTimeoutMs + Math.ceil(((keys * avgBytes) / this.opts.bytesPerSecond) * 1000);
  }

  private async round(
    job: MigrationJob,
    slots: number[],
    c: { source: Redis; target: Redis; others: { id: string; address: string; client: Redis }[]; batchKeys: number; avgBytes: number; script: ScriptUse | undefined },
  ): Promise<number> {
    // Importing on the target first, then migrating on the source: the other order would let the
    // source send clients -ASK to a target that still answers -MOVED (a redirect loop).
    const imp = await exec(c.target, slots.map((s) => ['CLUSTER', 'SETSLOT', s, 'IMPORTING', job.from.id]));
    // The target already owns it: an earlier run got as far as the final SETSLOT NODE.
    const open = slots.filter((_, i) => !isAlreadyOwner(imp[i]?.[0]));
    throwFirst(imp, job.to.address, 'CLUSTER SETSLOT IMPORTING', (e) => isAlreadyOwner(e));
    const mig = await exec(c.source, open.map((s) => ['CLUSTER', 'SETSLOT', s, 'MIGRATING', job.to.id]));
    throwFirst(mig, job.from.address, 'CLUSTER SETSLOT MIGRATING', (e) => /not the owner/i.test(e.message));
    // Owned by neither side: someone else moved it since the plan. Giving it to the target now
    // would take it from its real owner, keys and all; the import just opened is closed again.
    // (A slot the target owns already was left out of `open` above.)
    const elsewhere = open.filter((_, i) => mig[i]?.[0]);
    if (elsewhere.length > 0) {
      await exec(c.target, elsewhere.map((s) => ['CLUSTER', 'SETSLOT', s, 'STABLE']));
      throw new Error(
        `slot(s) ${elsewhere.slice(0, 5).join(', ')}${elsewhere.length > 5 ? ', …' : ''} belong to neither ${job.from.address} nor ${job.to.address} any more (moved since the plan); nothing was moved for them. Run plan again`,
      );
    }
    const moving = open.filter((_, i) => !mig[i]?.[0]);

    // Drained means COUNTKEYSINSLOT said 0 after the slot's last batch: a slot is never given
    // away with keys (they would be lost with it).
    const moved = await this.drain(job, moving, c);

    // The new owner is told first, then the source, then the others (redis/redis #9223): the
    // other way round a slot could be left with no owner that everyone agrees on.
    const node = (s: number) => ['CLUSTER', 'SETSLOT', s, 'NODE', job.to.id];
    throwFirst(await exec(c.target, slots.map(node)), job.to.address, 'CLUSTER SETSLOT NODE');
    throwFirst(await exec(c.source, slots.map(node)), job.from.address, 'CLUSTER SETSLOT NODE');
    await Promise.all(
      c.others.map(async (o) => {
        // Telling the others only spares them waiting for gossip. A node that has not met the
        // target yet ("Unknown node"), or turned out to be a replica, learns it from gossip.
        throwFirst(await exec(o.client, slots.map(node)), o.address, 'CLUSTER SETSLOT NODE', (e) => /unknown node|only with masters/i.test(e.message));
      }),
    );
    return moved;
  }

  /** MIGRATE the keys of `slots` until GETKEYSINSLOT finds none left in any of them. */
  private async drain(job: MigrationJob, slots: number[], c: { source: Redis; target: Redis; batchKeys: number; avgBytes: number; script: ScriptUse | undefined }): Promise<number> {
    let moved = 0;
    let active = slots;
    const alone = new Set<number>();
    const failures = new Map<number, number>();
    const lastLeft = new Map<number, number>();
    let script = migrateAuthArgs(job.to.address).length > 0 ? undefined : c.script;
    let reloaded = false;
    while (active.length > 0) {
      // A slot that failed goes on key by key with plain MIGRATE, each key with its own timeout.
      const [scripted, plain] = script ? [active.filter((s) => !alone.has(s)), active.filter((s) => alone.has(s))] : [[], active];
      const batches = [
        ...(await this.scriptedPass(job, scripted, c.source, c.batchKeys, c.avgBytes, script)),
        ...(await this.plainPass(job, plain, c.source, (s) => (alone.has(s) ? 1 : c.batchKeys), c.avgBytes)),
      ];
      // A slot stays in the next pass while its MIGRATE fails or keys are left in it (counted
      // after each batch). A migrating slot gets no new keys on the source: clients are sent to
      // the target (-ASK) for keys the source does not hold.
      const next: number[] = [];
      if (batches.some((b) => b.refused)) script = undefined;
      else if (batches.some((b) => b.retry)) {
        // The script cache was flushed: loaded once more; flushed again, plain MIGRATE.
        script = reloaded ? undefined : await this.loadScript(c.source);
        reloaded = true;
      }
      for (const b of batches) {
        if (b.retry || b.refused) {
          next.push(b.slot);
          continue;
        }
        // Progress: the slot emptied, or holds fewer keys than after its last pass (a migrating
        // slot never gains keys on the source).
        const before = lastLeft.get(b.slot);
        lastLeft.set(b.slot, b.left);
        if (!b.err && (b.left === 0 || (b.found > 0 && (before === undefined || b.left < before)))) {
          moved += b.found;
          if (b.left > 0) next.push(b.slot);
          continue;
        }
        // Keys left that a pass did not move (none found, or MIGRATE answered NOKEY): a failed
        // pass, so that it cannot go on forever.
        b.err ??= new Error(`${b.left} key(s) left in the slot that GETKEYSINSLOT and MIGRATE did not move`);
        // Redis wraps it: "ERR Target instance replied with error: BUSYKEY …".
        if (/BUSYKEY/.test(b.err.message)) {
          const resolved = await this.resolveBusy(job, b.slot, b.found, c.source, c.target);
          moved += resolved;
          next.push(b.slot);
          // Nothing resolved is a failed pass too: the same BUSYKEY must not come back forever.
          if (resolved > 0) continue;
        }
        // A timeout or a dropped link: some keys may have arrived, some not. Read the slot again
        // (never re-send blindly), one key at a time with a timeout sized to it.
        const n = (failures.get(b.slot) ?? 0) + 1;
        failures.set(b.slot, n);
        if (n > 3) throw new Error(`MIGRATE of slot ${b.slot} ${job.from.address} -> ${job.to.address} failed ${n} times: ${b.err.message}`);
        alone.add(b.slot);
        if (!next.includes(b.slot)) next.push(b.slot);
      }
      active = next;
    }
    return moved;
  }

  /** One batch of each slot, read and moved by the source in one script (MIGRATE_SLOT_LUA). */
  private async scriptedPass(job: MigrationJob, slots: number[], source: Redis, batchKeys: number, avgBytes: number, script: ScriptUse | undefined): Promise<Batch[]> {
    if (slots.length === 0 || !script) return [];
    const { host, port } = splitAddress(job.to.address);
    const fits = avgBytes > 0 ? Math.max(1, Math.floor(((script.timeoutCapMs / 1000) * this.opts.bytesPerSecond) / avgBytes)) : batchKeys;
    const limit = Math.min(batchKeys, fits);
    const timeoutMs = Math.min(this.batchTimeout(limit, avgBytes), script.timeoutCapMs);
    const auth = migrateAuthArgs(job.to.address);
    const replies = await exec(source, slots.map((s) => ['EVALSHA', script.sha, 0, host, port, timeoutMs, limit, s, ...auth]));
    return slots.map((slot, i) => {
      const [err, reply] = replies[i] ?? [new Error('no reply'), null];
      if (err) {
        // Not run at all (the script cache was flushed): nothing moved, load it and go again.
        if (/NOSCRIPT/.test(err.message)) return { slot, found: 0, left: -1, timeoutMs, err, retry: true };
        // The script failed, not its MIGRATE (whose errors it returns): an ACL on EVALSHA, a
        // command refused inside it. Nothing was moved by it; plain MIGRATE goes on.
        return { slot, found: 0, left: -1, timeoutMs, err, refused: true };
      }
      const [found, left, failed] = reply as [number, number, string | undefined];
      return { slot, found: Number(found), left: Number(left), timeoutMs, ...(failed !== undefined ? { err: new Error(failed) } : {}) };
    });
  }

  /** One batch of each slot: its keys read by GETKEYSINSLOT, then sent by MIGRATE. */
  private async plainPass(job: MigrationJob, slots: number[], source: Redis, limitOf: (slot: number) => number, avgBytes: number): Promise<Batch[]> {
    if (slots.length === 0) return [];
    const { host, port } = splitAddress(job.to.address);
    // Key names as bytes: a name that is not UTF-8 would come back changed as a string, and
    // MIGRATE of a name that does not exist answers NOKEY, not an error.
    const found = await exec(source, slots.map((s) => ['CLUSTER', 'GETKEYSINSLOT', s, limitOf(s)]), { buffers: true });
    throwFirst(found, job.from.address, 'CLUSTER GETKEYSINSLOT');
    const withKeys = slots.map((s, i) => ({ slot: s, keys: (found[i]?.[1] as Buffer[]) ?? [] })).filter((b) => b.keys.length > 0);
    const timeouts = await Promise.all(withKeys.map((b) => (limitOf(b.slot) === 1 ? this.aloneTimeout(source, b.keys[0] as Buffer) : this.batchTimeout(b.keys.length, avgBytes))));
    // Each MIGRATE, then the keys left in its slot, in the same round trip.
    const replies = await exec(
      source,
      withKeys.flatMap((b, i) => [['MIGRATE', host, port, '', 0, timeouts[i] as number, ...migrateAuthArgs(job.to.address), 'KEYS', ...b.keys], ['CLUSTER', 'COUNTKEYSINSLOT', b.slot]]),
    );
    return withKeys.map((b, i) => {
      const err = replies[2 * i]?.[0];
      const [countErr, left] = replies[2 * i + 1] ?? [new Error('no reply'), null];
      if (countErr) throw new Error(`${job.from.address}: CLUSTER COUNTKEYSINSLOT ${b.slot}: ${countErr.message}`);
      return { slot: b.slot, found: b.keys.length, left: Number(left), timeoutMs: timeouts[i] as number, ...(err ? { err } : {}) };
    });
  }

  /** A key alone: its own MIGRATE timeout, from its size (the base, plus its bytes at `bytesPerSecond`). */
  private async aloneTimeout(source: Redis, key: Buffer): Promise<number> {
    const bytes = Number((await source.call('MEMORY', 'USAGE', key).catch(() => 0)) ?? 0);
    return this.opts.migrateTimeoutMs + Math.ceil((bytes / this.opts.bytesPerSecond) * 1000);
  }

  /**
   * BUSYKEY: a key of the batch already exists on the target, e.g. a MIGRATE cut off after the
   * target stored it but before the source deleted it. The same value on both sides is safe to
   * overwrite; a different one is a conflict rcluster will not decide.
   */
  private async resolveBusy(job: MigrationJob, slot: number, count: number, source: Redis, target: Redis): Promise<number> {
    const left = (await source.callBuffer('CLUSTER', 'GETKEYSINSLOT', slot, Math.max(1, count))) as Buffer[];
    const { host, port } = splitAddress(job.to.address);
    let moved = 0;
    for (const key of left) {
      // Compared as bytes: DUMP is binary. ASKING: the target does not own the slot yet and
      // would answer -MOVED.
      const [onTarget, ours] = await Promise.all([target.pipeline().asking().dumpBuffer(key).exec(), source.dumpBuffer(key)]);
      const theirs = (onTarget?.[1]?.[1] as Buffer | null | undefined) ?? null;
      if (ours === null) continue; // it expired or was moved meanwhile
      if (theirs !== null && !theirs.equals(ours)) {
        throw new KeyConflictError(
          `key "${key.toString()}" (slot ${slot}) exists on both ${job.from.address} and ${job.to.address} with different values; rcluster will not overwrite either. Keep one of them by hand, then run apply again`,
        );
      }
      // Identical on both sides (or gone from the target meanwhile): overwriting changes nothing.
      const timeoutMs = await this.aloneTimeout(source, key);
      const r = await exec(source, [['MIGRATE', host, port, '', 0, timeoutMs, ...(theirs !== null ? ['REPLACE'] : []), ...migrateAuthArgs(job.to.address), 'KEYS', key]]);
      throwFirst(r, job.from.address, `MIGRATE ${key.toString()}`);
      moved++;
    }
    return moved;
  }
}

/** A pipeline of commands; `buffers`: replies as bytes (key names). Buffer arguments go as they are. */
async function exec(client: Redis, commands: (string | number | Buffer)[][], opts: { buffers?: boolean } = {}): Promise<Reply> {
  if (commands.length === 0) return [];
  const pipeline = client.pipeline();
  for (const [cmd, ...args] of commands) {
    const argv = args.map((a) => (Buffer.isBuffer(a) ? a : String(a)));
    if (opts.buffers) pipeline.callBuffer(String(cmd), ...argv);
    else pipeline.call(String(cmd), ...argv);
  }
  return ((await pipeline.exec()) ?? []) as Reply;
}

function isAlreadyOwner(err: Error | null | undefined): boolean {
  return !!err && /already the owner/i.test(err.message);
}

function throwFirst(replies: Reply, address: string, what: string, tolerated: (e: Error) => boolean = () => false): void {
  const failed = replies.find(([e]) => e && !tolerated(e));
  if (failed?.[0]) throw new Error(`${address}: ${what}: ${failed[0].message}`);
}
