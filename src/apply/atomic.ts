import type { Redis } from 'ioredis';
import { parseClusterNodes, parseInfo, parseServer, serverLabel } from '../live/parse.js';
import { formatSlotRanges, parseSlotMigrations, supportsAtomic, type SlotMigrationEntry } from '../live/slotMigrations.js';
import type { SlotRange } from '../live/types.js';
import { toRanges } from '../plan/slots.js';
import type { MigrationJob, MigrationProgress, SlotMigrator } from './migrate.js';
import type { NodePool } from './pool.js';
import { WaitAborted, waitFor } from './wait.js';

/** The MIGRATESLOTS arguments for one target: SLOTSRANGE start end [start end …] NODE id. */
export function migrateSlotsArgs(ranges: SlotRange[], targetId: string): string[] {
  return ['SLOTSRANGE', ...ranges.flatMap((r) => [String(r.start), String(r.end)]), 'NODE', targetId];
}

export interface AtomicOptions {
  /** How long one job may take, from MIGRATESLOTS to every node naming the target; from the source's data (dataTimeoutMs). */
  timeoutMs: (sourceDatasetBytes: number) => number;
  /** How often GETSLOTMIGRATIONS is read while a job runs. */
  pollMs: number;
}

/**
 * The slot-migration engine, atomic strategy: Valkey >= 9 moves slots itself. One CLUSTER
 * MIGRATESLOTS on the source (the node that owns the slots; the target answers "Slots are not
 * served by this node.") sends the slots' keys to the target as a replication stream and ends
 * with the target taking the slots over; until then the source serves every key, so clients
 * meet no -ASK at all, and no key is ever on both sides. rcluster only starts the job, follows
 * it in CLUSTER GETSLOTMIGRATIONS, and checks that every node involved then names the target as
 * the owner. Nothing is left open if it fails: the source still owns the slots.
 * Reply shapes: live/slotMigrations.ts.
 */
export class AtomicMigrator implements SlotMigrator {
  /** `pool`: connections whose command timeout is longer than any poll (the migration pool). */
  constructor(
    private readonly pool: NodePool,
    private readonly opts: AtomicOptions,
  ) {}

  async migrate(job: MigrationJob, onProgress: (p: MigrationProgress) => void): Promise<MigrationProgress> {
    const ranges = toRanges(job.slots);
    const what = `slots ${formatSlotRanges(ranges)} ${job.from.address} -> ${job.to.address}`;
    const source = await this.pool.get(job.from.address);
    // The plan took a node that was not running yet at the spec's word (plan/strategy.ts): what
    // runs now is checked before anything is sent.
    await Promise.all(
      [job.from.address, job.to.address].map(async (address) => {
        const server = parseServer(parseInfo(String(await (await this.pool.get(address)).call('INFO', 'server'))));
        if (!supportsAtomic(server)) throw new Error(`${address} is ${serverLabel(server)}: the plan chose server-side migration (CLUSTER MIGRATESLOTS, Valkey >= 9) for ${what}; nothing was moved. Run plan again`);
      }),
    );
    // Keys to move, for progress only: the server does not say how many it has sent.
    const [before, keys, dataset] = await Promise.all([
      source.call('CLUSTER', 'GETSLOTMIGRATIONS').then(parseSlotMigrations),
      countKeys(source, job.slots),
      source.info('memory').then((m) => Number(/used_memory_dataset:(\d+)/.exec(m)?.[1] ?? 0)),
    ]);
    const progress: MigrationProgress = { slotsDone: 0, slotsTotal: job.slots.length, keysMoved: 0 };
    // A job of an earlier run for the same slots and target (finished, or still going after an
    // apply that was cut off) is told apart by its name: only a job not listed before is ours.
    const known = new Set(before.map((e) => e.name));
    const sent = formatSlotRanges(ranges);
    const ours = (e: SlotMigrationEntry) => e.operation === 'EXPORT' && e.targetNode === job.to.id && formatSlotRanges(toRanges(e.ranges.flatMap(expand))) === sent && !known.has(e.name);
    try {
      await source.call('CLUSTER', 'MIGRATESLOTS', ...migrateSlotsArgs(ranges, job.to.id));
    } catch (err) {
      throw new Error(`${job.from.address}: CLUSTER MIGRATESLOTS ${what}: ${(err as Error).message}`);
    }
    const timeoutMs = this.opts.timeoutMs(dataset);
    await followJob(source, job.from.address, what, { find: ours }, { timeoutMs, intervalMs: this.opts.pollMs });
    // The job says it is done; the cluster must say so too: every node involved names the
    // target as the owner of every slot (the source and target at once, the others by gossip).
    await waitOwned(this.pool, [job.from.address, job.to.address, ...job.others.map((o) => o.address)], job.to, job.slots, { timeoutMs, intervalMs: this.opts.pollMs });
    progress.slotsDone = job.slots.length;
    progress.keysMoved = keys;
    onProgress({ ...progress });
    return progress;
  }
}

/** Until every node of `involved` names `to` the owner of every slot of `slots` (CLUSTER NODES). */
export async function waitOwned(pool: NodePool, involved: string[], to: { address: string; id: string }, slots: number[], opts: { timeoutMs: number; intervalMs: number }): Promise<void> {
  const sent = formatSlotRanges(toRanges(slots));
  await waitFor(
    `every node to name ${to.address} the owner of ${sent}`,
    async () => {
      const views = await Promise.all(involved.map(async (address) => parseClusterNodes(String(await (await pool.get(address)).call('CLUSTER', 'NODES')))));
      for (const [i, view] of views.entries()) {
        const owned = new Set((view.find((e) => e.id === to.id)?.slots ?? []).flatMap(expand));
        const missing = slots.filter((s) => !owned.has(s));
        if (missing.length > 0) return `${involved[i]} does not name ${to.address} the owner of ${missing.length} slot(s) yet (${formatSlotRanges(toRanges(missing).slice(0, 3))})`;
      }
      return true;
    },
    opts,
  );
}

/**
 * Until the source's job (the first entry `match` finds, then the same name) is `success`;
 * `failed` or `cancelled` throws at once with the server's message. A job no longer listed (the
 * source restarted: the list is not saved) is judged by who owns its slots, by the caller.
 */
export async function followJob(source: Redis, address: string, what: string, match: { find: (e: SlotMigrationEntry) => boolean } | { name: string }, opts: { timeoutMs: number; intervalMs: number }): Promise<'success' | 'gone'> {
  let name = 'name' in match ? match.name : undefined;
  const find = 'find' in match ? match.find : () => false;
  let outcome: 'success' | 'gone' = 'success';
  await waitFor(
    `${address}: the server-side migration of ${what}`,
    async () => {
      const jobs = parseSlotMigrations(await source.call('CLUSTER', 'GETSLOTMIGRATIONS'));
      const e = name ? jobs.find((j) => j.name === name) : jobs.find(find);
      if (!e) {
        if (!name) return 'the job is not listed yet';
        outcome = 'gone';
        return true;
      }
      name = e.name;
      if (e.state === 'success') return true;
      if (e.state === 'failed' || e.state === 'cancelled') {
        throw new WaitAborted(`${address}: the server-side migration of ${what} (job ${e.name.slice(0, 8)}) ended ${e.state}${e.message ? `: ${e.message}` : ''}; the slots stay with ${address}`);
      }
      return `job ${e.name.slice(0, 8)}: ${e.state}`;
    },
    opts,
  );
  return outcome;
}

function expand(r: SlotRange): number[] {
  const out: number[] = [];
  for (let s = r.start; s <= r.end; s++) out.push(s);
  return out;
}

/** COUNTKEYSINSLOT of every slot, in one pipeline. */
async function countKeys(client: Redis, slots: number[]): Promise<number> {
  if (slots.length === 0) return 0;
  const p = client.pipeline();
  for (const s of slots) p.call('CLUSTER', 'COUNTKEYSINSLOT', String(s));
  const replies = (await p.exec()) ?? [];
  return replies.reduce((n, [err, v]) => n + (err ? 0 : Number(v)), 0);
}

