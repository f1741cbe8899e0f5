import type { LiveCluster } from '../live/types.js';
import { DEFAULT_TIMEOUTS, type DesiredCluster } from '../spec/types.js';
import { slotList } from './slots.js';
import { JOIN_NODE_TIMEOUT_MS, type Plan } from './types.js';

/**
 * Keys too big to move safely. MIGRATE moves a key in one piece and blocks its source (and the
 * target's RESTORE) while it does: blocked longer than half of cluster-node-timeout, the source
 * stops answering pings in time and its replica may take over (redis/redis #13122); a payload
 * over the target's proto-max-bulk-len is refused outright (redis/redis #5260). The slots that
 * move are known only once the plan is made, so the plan names the sources and slots to read
 * (bigKeyScans), live/bigKeys.ts reads them, and bigKeysOf judges what it found.
 */
export interface BigKey {
  /** The key's name, printable: redis-cli's escaping (\xNN, \", \\, \n …), without the quotes. */
  key: string;
  slot: number;
  /** MEMORY USAGE on the source (an estimate for aggregates: Redis samples a few elements). */
  bytes: number;
  from: string;
  to: string;
  /** How long MIGRATE is expected to block with it: its bytes at timeouts.transferRate. */
  blockMs: number;
  /** Half the cluster's smallest cluster-node-timeout. */
  maxBlockMs: number;
  /** The target's proto-max-bulk-len. */
  maxBulkBytes: number;
  breaks: BigKeyLimit[];
}

export type BigKeyLimit = 'node-timeout' | 'proto-max-bulk-len';

/** One source to read: the slots it gives away, and the smallest size that can break a limit there. */
export interface BigKeyScan {
  node: string;
  slots: number[];
  minBytes: number;
}

/** What the live read reports of one key at least `minBytes` big. */
export interface FoundKey {
  node: string;
  slot: number;
  key: string;
  bytes: number;
}

/** Redis's own defaults, for a node that is not running yet and whose spec does not set them. */
export const REDIS_DEFAULT_NODE_TIMEOUT_MS = 15_000;
export const REDIS_DEFAULT_PROTO_MAX_BULK_LEN = 512 * 1024 * 1024;

/**
 * A key's value is in used_memory_dataset (Redis counts only the keyspace's dict entries and
 * object headers as overhead), and its serialized form is no larger than the memory it takes,
 * give or take a few bytes of headers: a source whose dataset is below the smallest size that
 * breaks a limit cannot hold such a key, and is not read key by key at all. The margin covers
 * those headers and the writes between the two reads.
 */
const DATASET_MARGIN_BYTES = 1024 * 1024;

interface Move {
  from: string;
  to: string;
  slots: number[];
}

function movesOf(plan: Plan): Move[] {
  const out: Move[] = [];
  for (const s of plan.steps) {
    if (s.kind === 'migrate_slots') out.push({ from: s.from, to: s.to, slots: slotList(s.slots) });
    else if (s.kind === 'finish_migration') out.push({ from: s.from, to: s.to, slots: [...s.slots] });
  }
  return out;
}

/** The limits a key moved to `to` must stay within. */
export function moveLimits(desired: DesiredCluster, live: LiveCluster, to: string): { maxBlockMs: number; maxBulkBytes: number; nodeTimeoutMs: number } {
  const nodeTimeoutMs = clusterNodeTimeoutMs(desired, live);
  return { nodeTimeoutMs, maxBlockMs: nodeTimeoutMs / 2, maxBulkBytes: maxBulkLen(desired, live, to) };
}

/**
 * The smallest cluster-node-timeout the cluster runs with while slots move: any node that stops
 * hearing the blocked source for that long flags it. A spec node runs the spec's value by then
 * (set live before the moves, unless connection is none); others run what they run now. The
 * 500 ms a joining node gets for a moment is given back before anything moves.
 */
export function clusterNodeTimeoutMs(desired: DesiredCluster, live: LiveCluster): number {
  const values: number[] = [];
  const specOwns = new Set(desired.connection === 'none' ? [] : desired.nodes.map((n) => n.address));
  if (desired.connection !== 'none') values.push(...desired.nodes.map((n) => n.redis.nodeTimeout));
  for (const n of live.nodes) {
    if (!n.reachable || !n.clusterEnabled || specOwns.has(n.address)) continue;
    const v = Number(n.runningConfig?.['cluster-node-timeout']);
    if (Number.isFinite(v) && v > 0 && v !== JOIN_NODE_TIMEOUT_MS) values.push(v);
  }
  return values.length > 0 ? Math.min(...values) : REDIS_DEFAULT_NODE_TIMEOUT_MS;
}

/** The target's proto-max-bulk-len: the spec's (set before the moves), else what it runs, else Redis's default. */
function maxBulkLen(desired: DesiredCluster, live: LiveCluster, to: string): number {
  const spec = desired.connection === 'none' ? undefined : desired.nodes.find((n) => n.address === to);
  const fromSpec = parseMemory(Object.entries(spec?.redis.config ?? {}).find(([k]) => k.toLowerCase() === 'proto-max-bulk-len')?.[1]);
  if (fromSpec !== undefined) return fromSpec;
  const running = parseMemory(live.nodes.find((n) => n.address === to && n.reachable)?.runningConfig?.['proto-max-bulk-len']);
  return running ?? REDIS_DEFAULT_PROTO_MAX_BULK_LEN;
}

/** A redis.conf memory value: "512mb" (1024s), "512m" (1000s), "536870912". */
export function parseMemory(value: string | undefined): number | undefined {
  const m = /^\s*(\d+)\s*(k|kb|m|mb|g|gb)?\s*$/i.exec(value ?? '');
  if (!m) return undefined;
  const unit = (m[2] ?? '').toLowerCase();
  const scale: Record<string, number> = { '': 1, k: 1e3, kb: 1024, m: 1e6, mb: 1024 ** 2, g: 1e9, gb: 1024 ** 3 };
  return Number(m[1]) * (scale[unit] as number);
}

function transferRate(desired: DesiredCluster): number {
  return { ...DEFAULT_TIMEOUTS, ...desired.timeouts }.transferRate;
}

/** MB/s is 10^6 bytes a second, as timeouts.transferRate says. */
function blockMsOf(bytes: number, rateMBps: number): number {
  return bytes / (rateMBps * 1000);
}

/**
 * The sources whose moved slots must be read, one entry per source, and the size from which a
 * key there breaks a limit of one of its moves. Sources that cannot hold such a key (their
 * dataset is smaller) are left out.
 */
export function bigKeyScans(plan: Plan, live: LiveCluster): BigKeyScan[] {
  const rate = transferRate(plan.desired);
  const bySource = new Map<string, BigKeyScan>();
  for (const m of movesOf(plan)) {
    const limits = moveLimits(plan.desired, live, m.to);
    const minBytes = Math.floor(Math.min(limits.maxBlockMs * rate * 1000, limits.maxBulkBytes));
    const scan = bySource.get(m.from);
    if (scan) {
      scan.slots.push(...m.slots);
      scan.minBytes = Math.min(scan.minBytes, minBytes);
    } else bySource.set(m.from, { node: m.from, slots: [...m.slots], minBytes });
  }
  const out: BigKeyScan[] = [];
  for (const scan of bySource.values()) {
    const dataset = live.nodes.find((n) => n.address === scan.node)?.datasetBytes;
    if (dataset !== undefined && dataset + DATASET_MARGIN_BYTES < scan.minBytes) continue;
    out.push({ ...scan, slots: [...new Set(scan.slots)].sort((a, b) => a - b) });
  }
  return out;
}

/** The found keys that break a limit of their move, biggest first. */
export function bigKeysOf(plan: Plan, live: LiveCluster, found: FoundKey[]): BigKey[] {
  const rate = transferRate(plan.desired);
  const moves = movesOf(plan);
  const out: BigKey[] = [];
  for (const f of found) {
    const move = moves.find((m) => m.from === f.node && m.slots.includes(f.slot));
    if (!move) continue;
    const { maxBlockMs, maxBulkBytes } = moveLimits(plan.desired, live, move.to);
    const blockMs = Math.round(blockMsOf(f.bytes, rate));
    const breaks: BigKeyLimit[] = [];
    if (blockMs > maxBlockMs) breaks.push('node-timeout');
    if (f.bytes > maxBulkBytes) breaks.push('proto-max-bulk-len');
    if (breaks.length > 0) out.push({ key: f.key, slot: f.slot, bytes: f.bytes, from: f.node, to: move.to, blockMs, maxBlockMs, maxBulkBytes, breaks });
  }
  return out.sort((a, b) => b.bytes - a.bytes || a.key.localeCompare(b.key));
}

/** "210.5 MB" (10^6 bytes, as transferRate counts them). */
export function formatBytes(bytes: number): string {
  if (bytes >= 1e9) return `${(bytes / 1e9).toFixed(1)} GB`;
  if (bytes >= 1e6) return `${(bytes / 1e6).toFixed(1)} MB`;
  if (bytes >= 1e3) return `${(bytes / 1e3).toFixed(1)} kB`;
  return `${bytes} B`;
}

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)} s`;
}

/** What one big key risks, in one clause: the plan line and the refusal share it. */
export function describeBigKey(k: BigKey): string {
  const why = k.breaks.map((b) =>
    b === 'node-timeout'
      ? `MIGRATE blocks ${k.from} ~${seconds(k.blockMs)}, over ${seconds(k.maxBlockMs)} (half of cluster-node-timeout ${k.maxBlockMs * 2} ms)`
      : `over ${k.to}'s proto-max-bulk-len ${formatBytes(k.maxBulkBytes)} (RESTORE refuses it)`,
  );
  return `"${k.key}" (slot ${k.slot}, ~${formatBytes(k.bytes)}, ${k.from} → ${k.to}): ${why.join('; ')}`;
}

/**
 * Why apply must not go ahead, or undefined when it may: no big key, or the decision to move them
 * anyway (--allow-big-keys, given to apply or saved with the plan).
 */
export function bigKeysRefusal(plan: Plan, allowFlag: boolean): string | undefined {
  const keys = plan.bigKeys ?? [];
  if (keys.length === 0 || allowFlag || plan.allowBigKeys) return undefined;
  const shown = keys.slice(0, 3).map(describeBigKey).join('; ');
  const more = keys.length > 3 ? `; and ${keys.length - 3} more (see the plan)` : '';
  const raise = [
    ...(keys.some((k) => k.breaks.includes('node-timeout')) ? ['a longer cluster-node-timeout (redis.nodeTimeout)'] : []),
    ...(keys.some((k) => k.breaks.includes('proto-max-bulk-len')) ? ["a larger proto-max-bulk-len on the target"] : []),
  ];
  return (
    `${keys.length} key(s) too big to move safely: ${shown}${more}. Nothing was changed.\n` +
    `Shrink or delete them first, give the cluster ${raise.join(' and ')}, or run again with --allow-big-keys to move them anyway`
  );
}
