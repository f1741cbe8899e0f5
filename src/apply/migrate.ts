import type { Redis } from 'ioredis';
import pLimit, { type LimitFunction } from 'p-limit';
import { migrateAuthArgs } from '../live/auth.js';
import { splitAddress } from '../live/connect.js';
import { parseInfo, parseServer } from '../live/parse.js';
import { MIGRATION_WINDOW, RAMP_RATIO } from '../plan/types.js';
import type { NodePool } from './pool.js';

/**
 * The slot-migration engine, classic strategy: SETSLOT IMPORTING/MIGRATING, then GETKEYSINSLOT +
 * MIGRATE … KEYS until the slot is empty, then SETSLOT NODE on the target, the source and every
 * other master. redis-cli does this one slot and 10 keys at a time, about 7 round trips a slot.
 * Here slots move in small groups, each group's keys in one script on the source and its
 * hand-over in one pipeline, within a window of slots per source (SlotWindows): only the slots
 * of the window can be in MIGRATING, so clients meet few -ASK redirects, and a new master gets
 * its slots on a ramp so that clients learn it from a -MOVED first. The caller runs every pair
 * at once; the window is shared by all of a source's pairs.
 *
 * All state lives in the cluster: a slot cut off half-way is open on its two nodes
 * (`[slot->-id]`, `[slot-<-id]`), and running the same job again finishes it. Nothing is re-sent
 * blindly after an error: each pass reads the keys left in the slot again.
 *
 * The other strategy, server-side atomic migration (Valkey >= 9 CLUSTER MIGRATESLOTS), is
 * atomic.ts; the plan chooses per move (plan/strategy.ts). Redis >= 8.4's CLUSTER MIGRATION
 * IMPORT would be a third.
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
  /**
   * The target owned no slot when the plan was made, so clients do not know it yet: it gets its
   * slots on a ramp (see SlotWindows).
   */
  newTarget?: boolean;
  /** The slots were left open by an earlier run (finish_migration): their imports stay open if this one fails. */
  finishing?: boolean;
}

export interface MigrationProgress {
  slotsDone: number;
  slotsTotal: number;
  keysMoved: number;
}

export interface MigrateOptions {
  /**
   * Slots in flight per source at once, over all its jobs: from its first batch being sent to
   * its hand-over. Only these can be in MIGRATING, so only these can answer clients -ASK.
   */
  window: number;
  /** Toward a new target: slots already handed over to it per slot migrating to it. */
  rampRatio: number;
  /**
   * Batches queued on a source at once. Redis runs every command a connection has queued in one
   * go, so a slot's hand-over (on another connection) waits behind all of them: two keep the
   * source busy and its hand-overs short.
   */
  batchesInFlight: number;
  /** Slots opened IMPORTING ahead on the target, per job (clients never see that state). */
  importAhead: number;
  /** Keys per MIGRATE, at most. */
  maxKeys: number;
  /** Bytes per MIGRATE, roughly (from the source's average key size). */
  maxBytes: number;
  /** MIGRATE's own I/O timeout for a batch; a key that times out alone gets one scaled to its size. */
  migrateTimeoutMs: number;
  /** The slowest rate a batch is assumed to move at (bytes a second): its timeout grows by its size at this rate. */
  bytesPerSecond: number;
}

// The window and the ramp are the plan's (it shows them).
export const DEFAULT_MIGRATE_OPTIONS: MigrateOptions = {
  window: MIGRATION_WINDOW,
  rampRatio: RAMP_RATIO,
  batchesInFlight: 2,
  importAhead: 32,
  maxKeys: 1000,
  maxBytes: 8 * 1024 * 1024,
  migrateTimeoutMs: 10_000,
  bytesPerSecond: 10_000_000,
};

/**
 * How many slots may be migrating to a new target at once, with `handed` slots already handed
 * over to it: the first one alone, then one per `ratio` handed over (at least one, or the ramp
 * could never start). A client learns a node it does not know from a -MOVED, which only a slot
 * handed over can send; some clients (redis-py, redis/redis-py #4015) fail on an -ASK to a node
 * they do not know. Keeping the handed-over slots far ahead of the migrating ones makes a
 * -MOVED by far the likelier first redirect a client meets towards the new node.
 */
export function rampLimit(handed: number, ratio: number): number {
  return Math.max(1, Math.floor(handed / ratio));
}

/**
 * Who may start the next slot, shared by every job of one apply: a window of slots in flight
 * per source (redis-cli keeps one slot open at a time; rounds of hundreds of slots in MIGRATING
 * at once made the first redirect most clients met towards a new node an -ASK), and the ramp
 * towards new targets. Waiters are served in order, each as soon as both allow it.
 */
export class SlotWindows {
  private readonly perSource = new Map<string, number>();
  private readonly perTarget = new Map<string, number>();
  private readonly handed = new Map<string, number>();
  /** Slots whose target owns them and whose release is queued on their source's own connection. */
  private readonly handing = new Map<string, number>();
  private readonly waiters: { take: () => boolean; go: () => void }[] = [];

  constructor(private readonly opts: { window: number; rampRatio: number }) {}

  /**
   * Resolves, as soon as more slots may be in flight from `from` to `to`, with how many may (at
   * most `want`). It waits for room for half of what may be in flight (the window, or the ramp's
   * limit) or `want`, whichever is less: granting each slot as it came free split the groups into
   * ones of 3 or 4 slots, each with its own script and hand-over (moves took 2.0 s instead of
   * 1.5 s on a 250k-key scale-out).
   */
  acquire(from: string, to: string, newTarget: boolean, want = 1): Promise<number> {
    let granted = 0;
    const take = () => {
      // Slots of this source whose release goes ahead of its next command count as handed
      // over for it (not for other sources, whose commands may run first).
      const credit = this.handing.get(pair(from, to)) ?? 0;
      const toTarget = (this.perTarget.get(to) ?? 0) - credit;
      const ramp = newTarget ? rampLimit((this.handed.get(to) ?? 0) + credit, this.opts.rampRatio) : this.opts.window;
      const room = Math.min(want, this.opts.window - (this.perSource.get(from) ?? 0) + this.creditOf(from), newTarget ? ramp - toTarget : want);
      if (room < Math.min(want, Math.max(1, Math.floor(Math.min(this.opts.window, ramp) / 2)))) return false;
      this.perSource.set(from, (this.perSource.get(from) ?? 0) + room);
      this.perTarget.set(to, (this.perTarget.get(to) ?? 0) + room);
      granted = room;
      return true;
    };
    if (this.waiters.length === 0 && take()) return Promise.resolve(granted);
    return new Promise((go) => {
      this.waiters.push({ take, go: () => go(granted) });
      this.serve();
    });
  }

  /**
   * `n` slots from `from` are owned by `to`, and their source is told so on the connection its
   * next batch goes through, ahead of it: that batch may count them as handed over.
   */
  queuedRelease(from: string, to: string, n: number): void {
    this.handing.set(pair(from, to), (this.handing.get(pair(from, to)) ?? 0) + n);
    this.serve();
  }

  /**
   * `n` slots are no longer in flight; `handedOver`: the target owns them now; `queued`: how many
   * of them queuedRelease counted.
   */
  release(from: string, to: string, n: number, handedOver: boolean, queued = 0): void {
    if (queued > 0) this.handing.set(pair(from, to), (this.handing.get(pair(from, to)) ?? queued) - queued);
    this.perSource.set(from, (this.perSource.get(from) ?? n) - n);
    this.perTarget.set(to, (this.perTarget.get(to) ?? n) - n);
    if (handedOver) this.handed.set(to, (this.handed.get(to) ?? 0) + n);
    this.serve();
  }

  /** Slots handed over to `to` by this apply so far. */
  handedTo(to: string): number {
    return this.handed.get(to) ?? 0;
  }

  private creditOf(from: string): number {
    let n = 0;
    for (const [k, v] of this.handing) if (k.startsWith(`${from}>`)) n += v;
    return n;
  }

  private serve(): void {
    // In order, but one that must wait does not hold up another source's or target's.
    for (let i = 0; i < this.waiters.length; ) {
      const w = this.waiters[i] as (typeof this.waiters)[number];
      if (w.take()) {
        this.waiters.splice(i, 1);
        w.go();
      } else i++;
    }
  }
}

/** A key that exists on both sides with different values: never overwritten, always reported. */
const pair = (from: string, to: string) => `${from}>${to}`;

export class KeyConflictError extends Error {}

/**
 * One batch of each slot of a group, read and moved by the source itself: per slot, SETSLOT
 * MIGRATING, GETKEYSINSLOT and MIGRATE, all in one script. The key names never travel to
 * rcluster and back (on the benchmark's 1M keys that cost a third of rcluster's CPU), and no
 * client of the source sees a slot in MIGRATING before its keys are gone: a slot of up to a
 * batch of keys moves whole while they wait, so a multi-key command never finds its keys split
 * (-TRYAGAIN), and the slot answers -ASK only from the script's end to its hand-over. One
 * script for the group: Redis writes nodes.conf once per event-loop pass that changed it, not
 * once per slot. MIGRATE is the same command with the same guarantees: it deletes on the source
 * only what the target acknowledged, and its replicas and AOF get those deletes. SETSLOT
 * MIGRATING again on a slot already migrating to the same node changes nothing.
 * ARGV: host, port, timeout (each MIGRATE's), count (keys per slot), target id, budget (ms), then
 * the slots. Returns per slot {keys found, keys left in the slot} or {found, left, MIGRATE's
 * error}; after an error some of them may have moved. {-1, -1, error}: the slot could not be
 * opened (not the owner). {-2, -2}: not started, the budget was spent (a slow MIGRATE, a big
 * key): the script ends after at most its budget and one more MIGRATE (ScriptUse).
 * Its own work is a few thousand Lua instructions per slot; its time is MIGRATE's.
 * A cluster with a password never runs it: ARGV would show in SLOWLOG and MONITOR.
 */
const MIGRATE_SLOTS_LUA = `
local function now()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local out = {}
local start = now()
for i = 7, #ARGV do
  local slot = ARGV[i]
  local open = i == 7 or now() - start < tonumber(ARGV[6])
  if open then open = redis.pcall('CLUSTER', 'SETSLOT', slot, 'MIGRATING', ARGV[5]) end
  if not open then
    out[#out + 1] = {-2, -2}
  elseif type(open) == 'table' and open.err then
    out[#out + 1] = {-1, -1, open.err}
  else
    local keys = redis.call('CLUSTER', 'GETKEYSINSLOT', slot, ARGV[4])
    if #keys == 0 then
      out[#out + 1] = {0, redis.call('CLUSTER', 'COUNTKEYSINSLOT', slot)}
    else
      local args = {'MIGRATE', ARGV[1], ARGV[2], '', 0, ARGV[3], 'KEYS'}
      for j = 1, #keys do args[#args + 1] = keys[j] end
      local r = redis.pcall(unpack(args))
      local left = redis.call('CLUSTER', 'COUNTKEYSINSLOT', slot)
      if type(r) == 'table' and r.err then out[#out + 1] = {#keys, left, r.err} else out[#out + 1] = {#keys, left} end
    end
  end
end
return out
`;

/**
 * Whether the source runs MIGRATE_SLOTS_LUA, and how long a scripted MIGRATE may wait.
 * A script that runs past busy-reply-threshold (lua-time-limit) may make Redis answer other
 * clients -BUSY, where a plain MIGRATE only makes them wait. A scripted MIGRATE's I/O timeout is
 * kept under half of it, and its batch to what moves within that time at `bytesPerSecond`; a
 * group's script starts no further slot once half of that is spent.
 * MIGRATE applies the timeout to each write and each reply, not to the whole batch, so a link
 * that crawls without stalling can still stretch one; on a healthy one a batch takes
 * milliseconds. A batch that fails is moved again key by key with plain MIGRATE and a timeout
 * sized to each key. A source that refuses scripts (EVAL renamed, an ACL, a threshold too small
 * to leave room) is driven with plain MIGRATE throughout, and so is a cluster with a password:
 * a script's arguments are not redacted from SLOWLOG and MONITOR as MIGRATE's AUTH is.
 * So is every Valkey source: Valkey 9.1.2 aborts (assertion '!is_running_script', module.c)
 * when a script runs CLUSTER SETSLOT on a master that has a replica (since 8.0 Valkey sends
 * SETSLOT to the replicas and waits for them, which a script cannot); a crash of every source
 * is not a fallback. Valkey 7.2 (no such wait) is untested and treated the same.
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
  /** The source does not own the slot (SETSLOT MIGRATING refused): nothing was moved. */
  elsewhere?: boolean;
  /** Not started: the script's time budget was spent on the slots before it. */
  deferred?: boolean;
}

/** Slots that belong to neither side (moved since the plan): their imports are closed again. */
class SlotElsewhere extends Error {
  constructor(readonly slots: number[]) {
    super(`slot(s) ${slots.join(', ')} moved since the plan`);
  }
}

/** What every slot of one job shares: its connections and batch sizes. */
interface JobContext {
  source: Redis;
  target: Redis;
  /** Connections for SETSLOT, apart from the source's MIGRATE batches, so that a hand-over never waits behind them. */
  sourceControl: Redis;
  targetControl: Redis;
  batchKeys: number;
  avgBytes: number;
  /** Undefined where plain MIGRATE must do; changed by the first pass that finds it refused or flushed. */
  script: ScriptUse | undefined;
  reloaded?: boolean;
  /**
   * The source is Valkey: its SETSLOT may answer NOREPLICAS and be sent again, by which time
   * its next batch may have run, so its release never goes ahead of that batch (HandOvers).
   */
  valkey: boolean;
}

export class ClassicMigrator implements SlotMigrator {
  private readonly windows: SlotWindows;
  private readonly handOvers = new HandOvers((source) => {
    const limit = this.batches.get(source);
    return !limit || limit.activeCount + limit.pendingCount === 0;
  });
  private readonly batches = new Map<string, LimitFunction>();

  /**
   * `pool`: the connections MIGRATE batches go through; `control`: those SETSLOT goes through
   * (the same pool works, hand-overs then queue behind batches). One migrator serves every job
   * of an apply: the window on each source and the ramp towards each new target are shared.
   */
  constructor(
    private readonly pool: NodePool,
    private readonly opts: MigrateOptions = DEFAULT_MIGRATE_OPTIONS,
    private readonly control: NodePool = pool,
  ) {
    this.windows = new SlotWindows(opts);
  }

  /**
   * Groups of slots within the window: a group enters MIGRATING in the script that moves its
   * keys and is handed over right after, while the next group keeps the source busy.
   */
  async migrate(job: MigrationJob, onProgress: (p: MigrationProgress) => void): Promise<MigrationProgress> {
    const progress: MigrationProgress = { slotsDone: 0, slotsTotal: job.slots.length, keysMoved: 0 };
    const [source, target, sourceControl, targetControl] = await Promise.all([
      this.pool.get(job.from.address),
      this.pool.get(job.to.address),
      this.control.get(job.from.address),
      this.control.get(job.to.address),
    ]);
    const others = await Promise.all(job.others.map(async (o) => ({ ...o, client: await this.control.get(o.address) })));
    const { batchKeys, avgBytes } = await this.batchSize(source);
    // A cluster with a password: plain MIGRATE (ScriptUse says why).
    const valkey = parseServer(parseInfo(await source.info('server'))).name === 'valkey';
    const script = migrateAuthArgs(job.to.address).length > 0 ? undefined : await this.loadScript(source, valkey);
    const c: JobContext = { source, target, sourceControl, targetControl, batchKeys, avgBytes, script, valkey };
    const imports = new ImportsAhead(job, targetControl, this.opts.importAhead);
    const told = new Announcements(job, others);
    const running = new Set<Promise<void>>();
    let failure: Error | undefined;
    const groupSize = Math.max(1, Math.floor(this.opts.window / 2));
    try {
      for (let i = 0; i < job.slots.length && !failure; ) {
        const n = await this.windows.acquire(job.from.address, job.to.address, job.newTarget === true, Math.min(groupSize, job.slots.length - i));
        if (failure) {
          this.windows.release(job.from.address, job.to.address, n, false);
          break;
        }
        const first = job.newTarget === true && this.windows.handedTo(job.to.address) === 0;
        const slots = job.slots.slice(i, i + n);
        const opened = Promise.all(slots.map((_, k) => imports.open(i + k)));
        i += n;
        const group: Group = { queued: 0 };
        const run: Promise<void> = this.moveSlots(job, slots, opened, c, told, first, group).then(
          (keys) => {
            this.windows.release(job.from.address, job.to.address, n, true, group.queued);
            progress.slotsDone += n;
            progress.keysMoved += keys;
            onProgress({ ...progress });
          },
          (err: Error) => {
            this.windows.release(job.from.address, job.to.address, n, false, group.queued);
            failure ??= err;
          },
        );
        running.add(run);
        void run.finally(() => running.delete(run));
      }
      await Promise.all(running);
      // Slots opened ahead that never started: closed, so that the next plan does not see them
      // as interrupted migrations; those handed over are announced, failure or not.
      await imports.closeUnstarted();
      const announced = told.flush();
      if (failure) {
        await announced.catch(() => {});
        throw failure;
      }
      await announced;
    } finally {
      await Promise.all(running);
    }
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

  /** The source's copy of MIGRATE_SLOTS_LUA, or undefined where plain MIGRATE must do. */
  private async loadScript(source: Redis, valkey: boolean): Promise<ScriptUse | undefined> {
    if (valkey) return undefined;
    try {
      const [, threshold] = (await source.call('CONFIG', 'GET', 'busy-reply-threshold')) as [string, string];
      const thresholdMs = Number(threshold);
      if (!(thresholdMs >= MIN_BUSY_THRESHOLD_MS)) return undefined;
      const sha = String(await source.call('SCRIPT', 'LOAD', MIGRATE_SLOTS_LUA));
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

  /**
   * A group of slots: their imports open, their keys moved (one script a pass for the whole
   * group), then handed over together. Returns the keys moved.
   */
  private async moveSlots(job: MigrationJob, slots: number[], opened: Promise<('open' | 'owned')[]>, c: JobContext, told: Announcements, first: boolean, group: Group): Promise<number> {
    // A slot the target owns already: an earlier run got as far as the final SETSLOT NODE.
    const states = await opened;
    const open = slots.filter((_, k) => states[k] === 'open');
    let moved = 0;
    try {
      moved = await this.drain(job, open, c);
    } catch (err) {
      if (!(err instanceof SlotElsewhere)) throw err;
      // Owned by neither side: someone else moved it since the plan. Giving it to the target
      // now would take it from its real owner, keys and all; its import is closed again.
      await exec(c.targetControl, err.slots.map((s) => ['CLUSTER', 'SETSLOT', s, 'STABLE']));
      throw new Error(`slot(s) ${err.slots.join(', ')} belong to neither ${job.from.address} nor ${job.to.address} any more (moved since the plan); nothing was moved for them. Run plan again`);
    }
    // The first slot waits for its announcement below; the others may go on once the source's
    // release is queued ahead of its next batch (not on Valkey: see JobContext.valkey).
    await this.handOvers.handOver(job, slots, c, first || c.valkey ? undefined : (n) => {
      group.queued += n;
      this.windows.queuedRelease(job.from.address, job.to.address, n);
    });
    // A new target's first slot is known to every master before any other moves: a client that
    // asks any of them (CLUSTER SLOTS, or a -MOVED) learns the new node from then on.
    // The others' slots are announced in batches.
    if (first) await told.now(slots);
    else told.later(slots);
    return moved;
  }

  /** The limit on batches queued on one source, shared by all its jobs. */
  private batchesOn(source: string): LimitFunction {
    let limit = this.batches.get(source);
    if (!limit) {
      limit = pLimit(this.opts.batchesInFlight);
      this.batches.set(source, limit);
    }
    return limit;
  }

  /** MIGRATE the keys of `slots` until GETKEYSINSLOT finds none left in any of them. */
  private async drain(job: MigrationJob, slots: number[], c: JobContext): Promise<number> {
    let moved = 0;
    let active = slots;
    const alone = new Set<number>();
    const failures = new Map<number, number>();
    const lastLeft = new Map<number, number>();
    while (active.length > 0) {
      // A slot that failed goes on key by key with plain MIGRATE, each key with its own timeout.
      const script = c.script;
      const [scripted, plain] = script ? [active.filter((s) => !alone.has(s)), active.filter((s) => alone.has(s))] : [[], active];
      const batches = await this.batchesOn(job.from.address)(async () => [
        ...(await this.scriptedPass(job, scripted, c.source, c.batchKeys, c.avgBytes, script)),
        ...(await this.plainPass(job, plain, c.source, (s) => (alone.has(s) ? 1 : c.batchKeys), c.avgBytes)),
      ]);
      const elsewhere = batches.filter((b) => b.elsewhere).map((b) => b.slot);
      if (elsewhere.length > 0) throw new SlotElsewhere(elsewhere);
      // A slot stays in the next pass while its MIGRATE fails or keys are left in it (counted
      // after each batch). A migrating slot gets no new keys on the source: clients are sent to
      // the target (-ASK) for keys the source does not hold.
      const next: number[] = [];
      // Only the job's first such answer changes the script: other slots' passes may have
      // been sent with the old one meanwhile.
      if (batches.some((b) => b.refused)) c.script = undefined;
      else if (batches.some((b) => b.retry) && c.script === script) {
        // The script cache was flushed: loaded once more; flushed again, plain MIGRATE.
        c.script = c.reloaded ? undefined : await this.loadScript(c.source, c.valkey);
        c.reloaded = true;
      }
      for (const b of batches) {
        if (b.retry || b.refused || b.deferred) {
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

  /** One batch of each slot, read and moved by the source in one script (MIGRATE_SLOTS_LUA). */
  private async scriptedPass(job: MigrationJob, slots: number[], source: Redis, batchKeys: number, avgBytes: number, script: ScriptUse | undefined): Promise<Batch[]> {
    if (slots.length === 0 || !script) return [];
    const { host, port } = splitAddress(job.to.address);
    // Each MIGRATE within the cap, its batch what moves within that at `bytesPerSecond`; the
    // script starts no slot once half the cap is spent, so it ends within twice the cap.
    const fits = avgBytes > 0 ? Math.max(1, Math.floor(((script.timeoutCapMs / 1000) * this.opts.bytesPerSecond) / avgBytes)) : batchKeys;
    const limit = Math.min(batchKeys, fits);
    const timeoutMs = Math.min(this.batchTimeout(limit, avgBytes), script.timeoutCapMs);
    const budgetMs = Math.floor(script.timeoutCapMs / 2);
    const [[err, reply] = [new Error('no reply'), null]] = await exec(source, [['EVALSHA', script.sha, 0, host, port, timeoutMs, limit, job.to.id, budgetMs, ...slots]]);
    return slots.map((slot, i) => {
      if (err) {
        // Not run at all (the script cache was flushed): nothing moved, load it and go again.
        if (/NOSCRIPT/.test(err.message)) return { slot, found: 0, left: -1, timeoutMs, err, retry: true };
        // The script failed, not its MIGRATE (whose errors it returns): an ACL on EVALSHA, a
        // command refused inside it. Nothing was moved by it; plain MIGRATE goes on.
        return { slot, found: 0, left: -1, timeoutMs, err, refused: true };
      }
      const [found, left, failed] = ((reply as unknown[])[i] ?? [0, -1, 'no reply for the slot']) as [number, number, string | undefined];
      if (Number(found) === -2) return { slot, found: 0, left: -1, timeoutMs, deferred: true };
      if (Number(found) < 0) return { slot, found: 0, left: -1, timeoutMs, err: new Error(String(failed)), elsewhere: true };
      return { slot, found: Number(found), left: Number(left), timeoutMs, ...(failed !== undefined ? { err: new Error(failed) } : {}) };
    });
  }

  /** One batch of each slot: its keys read by GETKEYSINSLOT, then sent by MIGRATE. */
  private async plainPass(job: MigrationJob, slots: number[], source: Redis, limitOf: (slot: number) => number, avgBytes: number): Promise<Batch[]> {
    if (slots.length === 0) return [];
    const { host, port } = splitAddress(job.to.address);
    // The slot opened first, as the script does (again: no change). Key names as bytes: a name
    // that is not UTF-8 would come back changed as a string, and MIGRATE of a name that does not
    // exist answers NOKEY, not an error.
    const found = await exec(
      source,
      slots.flatMap((s) => [
        ['CLUSTER', 'SETSLOT', s, 'MIGRATING', job.to.id],
        ['CLUSTER', 'GETKEYSINSLOT', s, limitOf(s)],
      ]),
      { buffers: true },
    );
    const elsewhere = slots.filter((_, i) => found[2 * i]?.[0] && /not the owner/i.test((found[2 * i]?.[0] as Error).message));
    if (elsewhere.length > 0) return elsewhere.map((slot) => ({ slot, found: 0, left: -1, timeoutMs: 0, elsewhere: true }));
    throwFirst(found, job.from.address, 'CLUSTER SETSLOT MIGRATING / GETKEYSINSLOT');
    const withKeys = slots.map((s, i) => ({ slot: s, keys: (found[2 * i + 1]?.[1] as Buffer[]) ?? [] })).filter((b) => b.keys.length > 0);
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

/**
 * SETSLOT NODE on the target for the slots whose keys have all moved, in groups: every slot
 * ready for the same target while the previous group was being handed over goes in the next one,
 * in one pipeline. A node writes nodes.conf once per event-loop pass that changed it, and the
 * target also fsyncs it for its new config epoch and announces the change to every node (which
 * save theirs): one slot a pass cost a scale-out several times its moving time.
 * The new owner is told first, then the source (redis/redis #9223: the other way round a slot
 * could be left with no owner that everyone agrees on), then the others (Announcements).
 */
interface HandOver {
  slot: number;
  job: MigrationJob;
  c: JobContext;
  done: (err?: Error) => void;
  queued?: (n: number) => void;
}

/** A group of slots in flight: how many of them were released ahead of its source's next batch. */
interface Group {
  queued: number;
}

class HandOvers {
  private readonly queues = new Map<string, HandOver[]>();

  /** `batchesIdle`: nothing is queued on a source's batch connection (its next batch would follow at once). */
  constructor(private readonly batchesIdle: (source: string) => boolean) {}

  /**
   * Resolves when every slot of `slots` is handed over; rejects with the first that could not be.
   * `queued`: called if the source's release is sent on the connection its batches go through,
   * with nothing ahead of it there: its next batch will run after the release.
   */
  async handOver(job: MigrationJob, slots: number[], c: JobContext, queued?: (n: number) => void): Promise<void> {
    let queue = this.queues.get(job.to.address);
    const idle = !queue;
    if (!queue) {
      queue = [];
      this.queues.set(job.to.address, queue);
    }
    const into = queue;
    const waits = slots.map((slot) => new Promise<void>((resolve, reject) => into.push({ slot, job, c, done: (err) => (err ? reject(err) : resolve()), ...(queued ? { queued } : {}) })));
    if (idle) void this.drain(job.to.address);
    const results = await Promise.allSettled(waits);
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
  }

  /** One group after another, until none is waiting. */
  private async drain(target: string): Promise<void> {
    for (;;) {
      const group = this.queues.get(target) ?? [];
      if (group.length === 0) {
        this.queues.delete(target);
        return;
      }
      this.queues.set(target, []);
      const first = group[0] as HandOver;
      const replies = await exec(
        first.c.targetControl,
        group.map((e) => ['CLUSTER', 'SETSLOT', e.slot, 'NODE', e.job.to.id]),
      ).catch((err: Error) => group.map((): [Error, null] => [err, null]));
      const failed = new Map<HandOver, Error>();
      group.forEach((e, i) => {
        const err = replies[i]?.[0];
        if (err) failed.set(e, new Error(`${target}: CLUSTER SETSLOT ${e.slot} NODE: ${err.message}`));
      });
      // Then each source, which otherwise answers -ASK for them until the target's announcement
      // reaches it, behind its queued batches: the reply is what says it has let them go. The
      // next group goes to the target meanwhile: waiting here for a source busy with its next
      // batch held every other source's hand-overs up. A source with no batch queued is told on
      // its batch connection instead, so that its next batch may start without waiting for the
      // reply (it runs after the release): a round trip less for each group, which is what a
      // ramp's groups cost from afar.
      const bySource = new Map<string, HandOver[]>();
      for (const e of group) {
        const err = failed.get(e);
        if (err) e.done(err);
        else bySource.set(e.job.from.address, [...(bySource.get(e.job.from.address) ?? []), e]);
      }
      for (const [source, entries] of bySource) {
        const first = entries[0] as HandOver;
        const own = entries.every((e) => e.queued) && this.batchesIdle(source);
        void setSlotsNodeOnSource(own ? first.c.source : first.c.sourceControl, entries.map((e) => [e.slot, e.job.to.id] as const))
          .catch((err: Error) => entries.map((): [Error, null] => [err, null]))
          .then((r) =>
            entries.forEach((e, i) => {
              const err = r[i]?.[0];
              e.done(err ? new Error(`${source}: CLUSTER SETSLOT ${e.slot} NODE: ${err.message}`) : undefined);
            }),
          );
        if (own) {
          const perGroup = new Map<(n: number) => void, number>();
          for (const e of entries) if (e.queued) perGroup.set(e.queued, (perGroup.get(e.queued) ?? 0) + 1);
          for (const [queued, n] of perGroup) queued(n);
        }
      }
    }
  }
}

/**
 * Valkey (8.0 and later) sends CLUSTER SETSLOT to a master's replicas before it applies it, and
 * answers NOREPLICAS, having changed nothing, when they do not acknowledge it within 2 s. A
 * drained master's replicas leave it as its last slot goes (replica migration: they follow the
 * slot to its new owner), so its last hand-overs can meet that; once it has seen them go, the
 * same command goes through at once. Sent again while that is the answer, a few times at most.
 * Redis never answers NOREPLICAS to SETSLOT.
 */
async function setSlotsNodeOnSource(client: Redis, slots: (readonly [number, string])[]): Promise<Reply> {
  const replies: Reply = new Array(slots.length);
  let todo = slots.map((_, i) => i);
  for (let attempt = 1; todo.length > 0; attempt++) {
    const r = await exec(client, todo.map((i) => ['CLUSTER', 'SETSLOT', (slots[i] as readonly [number, string])[0], 'NODE', (slots[i] as readonly [number, string])[1]]));
    todo.forEach((i, k) => (replies[i] = r[k] ?? [new Error('no reply'), null]));
    if (attempt === NOREPLICAS_ATTEMPTS) break;
    todo = todo.filter((i) => /NOREPLICAS/.test(replies[i]?.[0]?.message ?? ''));
  }
  return replies;
}

const NOREPLICAS_ATTEMPTS = 4;

/**
 * IMPORTING opened on the target ahead of the slots being moved, in pipelines of `ahead` slots:
 * clients never see that state (only a client sent there by -ASK says ASKING), so opening it
 * early costs them nothing and takes a round trip out of each slot's time in flight.
 */
class ImportsAhead {
  private readonly chunks = new Map<number, Promise<('open' | 'owned' | Error)[]>>();
  private started = 0;

  constructor(
    private readonly job: MigrationJob,
    private readonly target: Redis,
    private readonly ahead: number,
  ) {}

  /** The import of the job's i-th slot: 'owned' when the target owns it already (an earlier run got that far). */
  async open(i: number): Promise<'open' | 'owned'> {
    this.started = Math.max(this.started, i + 1);
    const chunk = Math.floor(i / this.ahead);
    const replies = this.request(chunk);
    this.request(chunk + 1);
    const r = (await replies)[i - chunk * this.ahead] as 'open' | 'owned' | Error;
    if (r instanceof Error) throw r;
    return r;
  }

  /**
   * After the job: imports opened for slots that never started are closed, so that the next
   * plan does not take them for interrupted migrations. Not for a job that finishes slots an
   * earlier run left open: those were open before it, and stay so.
   */
  async closeUnstarted(): Promise<void> {
    if (this.job.finishing) return;
    const unstarted: number[] = [];
    for (const [chunk, replies] of this.chunks) {
      const states = await replies.catch(() => []);
      states.forEach((r, k) => {
        const i = chunk * this.ahead + k;
        if (i >= this.started && r === 'open') unstarted.push(this.job.slots[i] as number);
      });
    }
    await exec(this.target, unstarted.map((s) => ['CLUSTER', 'SETSLOT', s, 'STABLE']));
  }

  private request(chunk: number): Promise<('open' | 'owned' | Error)[]> {
    let replies = this.chunks.get(chunk);
    if (!replies) {
      const slots = this.job.slots.slice(chunk * this.ahead, (chunk + 1) * this.ahead);
      replies = exec(this.target, slots.map((s) => ['CLUSTER', 'SETSLOT', s, 'IMPORTING', this.job.from.id])).then((r) =>
        slots.map((_, k) => {
          const err = r[k]?.[0];
          if (isAlreadyOwner(err)) return 'owned';
          return err ? new Error(`${this.job.to.address}: CLUSTER SETSLOT IMPORTING: ${err.message}`) : 'open';
        }),
      );
      // Looked at when its slots start; a chunk no slot reaches is not an unhandled rejection.
      replies.catch(() => {});
      this.chunks.set(chunk, replies);
    }
    return replies;
  }
}

/**
 * The other masters told each slot's new owner once the target and the source have it, in
 * pipelines of `BATCH` slots. It only spares them waiting for gossip (the target announces it to
 * every node); one that has not met the target yet ("Unknown node"), or turned out to be a
 * replica, learns it from gossip.
 */
class Announcements {
  private static readonly BATCH = 64;
  private pending: number[] = [];
  private readonly sent: Promise<void>[] = [];

  constructor(
    private readonly job: MigrationJob,
    private readonly others: { address: string; client: Redis }[],
  ) {}

  later(slots: number[]): void {
    this.pending.push(...slots);
    if (this.pending.length >= Announcements.BATCH) this.sendPending();
  }

  /** Told now, and waited for. */
  async now(slots: number[]): Promise<void> {
    await this.send(slots);
  }

  /** Everything told, and every reply read; the first failure is thrown. */
  async flush(): Promise<void> {
    this.sendPending();
    await Promise.all(this.sent);
  }

  private sendPending(): void {
    const slots = this.pending;
    this.pending = [];
    const p = this.send(slots);
    p.catch(() => {});
    this.sent.push(p);
  }

  private async send(slots: number[]): Promise<void> {
    if (slots.length === 0) return;
    const node = slots.map((s) => ['CLUSTER', 'SETSLOT', s, 'NODE', this.job.to.id]);
    await Promise.all(
      this.others.map(async (o) => {
        throwFirst(await exec(o.client, node), o.address, 'CLUSTER SETSLOT NODE', (e) => /unknown node|only with masters/i.test(e.message));
      }),
    );
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
