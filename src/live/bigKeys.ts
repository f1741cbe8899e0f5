import type { Redis } from 'ioredis';
import pLimit from 'p-limit';
import type { BigKeyScan, FoundKey } from '../plan/bigKeys.js';
import { connectNode, describeRedisError } from './connect.js';

/**
 * Every key at least ARGV[1] bytes big (MEMORY USAGE, which samples a few elements of an
 * aggregate) in the slots ARGV[2..], read on the source by a read-only script: the names of the
 * small keys, nearly all of them, never leave the node. Returns slot, name, bytes for each.
 * allow-cross-slot-keys: it looks at keys of many slots in one call.
 */
const BIG_KEYS_LUA = `#!lua flags=no-writes,allow-cross-slot-keys
local min = tonumber(ARGV[1])
local out = {}
for i = 2, #ARGV do
  local s = tonumber(ARGV[i])
  local keys = redis.call('CLUSTER', 'GETKEYSINSLOT', s, redis.call('CLUSTER', 'COUNTKEYSINSLOT', s))
  for j = 1, #keys do
    local b = redis.call('MEMORY', 'USAGE', keys[j])
    if b and b >= min then
      out[#out + 1] = s
      out[#out + 1] = keys[j]
      out[#out + 1] = b
    end
  end
end
return out
`;

/**
 * Keys read per call. Measured on Redis 7.0 (2-core machine): about 1.6 µs a key, so a call
 * keeps the node from other clients for about 3 ms.
 */
const KEYS_PER_CALL = 2000;
/** Calls in flight per node: one running, the next one already there; clients go in between. */
const CALLS_IN_FLIGHT = 2;

export interface BigKeyReadResult {
  found: FoundKey[];
  /** Sources that could not be read: why, naming the node. */
  failed: { node: string; error: string }[];
}

/**
 * Read each source's moved slots for keys at least `minBytes` big (plan/bigKeys.ts says which).
 * Read-only; a source that cannot be read is reported, not fatal: the plan says its keys were
 * not checked.
 */
export async function readBigKeys(scans: BigKeyScan[], opts: { slotKeys?: (node: string) => Map<number, number> | undefined; commandTimeoutMs?: number } = {}): Promise<BigKeyReadResult> {
  const result: BigKeyReadResult = { found: [], failed: [] };
  await Promise.all(
    scans.map(async (scan) => {
      let client: Redis | undefined;
      try {
        client = await connectNode(scan.node, opts.commandTimeoutMs !== undefined ? { commandTimeoutMs: opts.commandTimeoutMs } : {});
        result.found.push(...(await readSource(client, scan, opts.slotKeys?.(scan.node))));
      } catch (err) {
        result.failed.push({ node: scan.node, error: describeRedisError(err) });
      } finally {
        client?.disconnect();
      }
    }),
  );
  return result;
}

async function readSource(client: Redis, scan: BigKeyScan, counts: Map<number, number> | undefined): Promise<FoundKey[]> {
  const chunks = chunkSlots(scan.slots, counts);
  const limit = pLimit(CALLS_IN_FLIGHT);
  const found: FoundKey[] = [];
  let scripted = true;
  await Promise.all(
    chunks.map((slots) =>
      limit(async () => {
        if (scripted) {
          try {
            const reply = (await client.callBuffer('EVAL', BIG_KEYS_LUA, 0, scan.minBytes, ...slots)) as unknown[];
            for (let i = 0; i + 2 < reply.length; i += 3) {
              found.push({ node: scan.node, slot: Number(reply[i]), key: printableKey(reply[i + 1] as Buffer), bytes: Number(reply[i + 2]) });
            }
            return;
          } catch (err) {
            // EVAL renamed, refused by an ACL, or a server without script flags (before 7.0):
            // the same reads as plain commands, the names travelling to rcluster.
            if (!isScriptRefused(err)) throw err;
            scripted = false;
          }
        }
        found.push(...(await readPlain(client, scan, slots)));
      }),
    ),
  );
  return found;
}

function isScriptRefused(err: unknown): boolean {
  return /unknown command|NOPERM|NOSCRIPT|Unexpected flag|unexpected symbol|shebang|Unknown lua/i.test((err as Error)?.message ?? '');
}

async function readPlain(client: Redis, scan: BigKeyScan, slots: number[]): Promise<FoundKey[]> {
  const counts = (await client.pipeline(slots.map((s) => ['cluster', 'countkeysinslot', String(s)])).exec()) ?? [];
  const read = client.pipeline();
  // As bytes: a name that is not UTF-8 would come back changed.
  slots.forEach((s, i) => read.callBuffer('CLUSTER', 'GETKEYSINSLOT', s, Number(unwrap(counts[i]))));
  const names = (await read.exec()) ?? [];
  const keys = slots.flatMap((slot, i) => (unwrap(names[i]) as Buffer[]).map((name) => ({ slot, name })));
  const pipeline = client.pipeline();
  for (const k of keys) pipeline.call('MEMORY', 'USAGE', k.name);
  const sizes = (await pipeline.exec()) ?? [];
  const out: FoundKey[] = [];
  keys.forEach((k, i) => {
    const bytes = Number(unwrap(sizes[i]) ?? 0);
    if (bytes >= scan.minBytes) out.push({ node: scan.node, slot: k.slot, key: printableKey(k.name), bytes });
  });
  return out;
}

function unwrap(entry: [Error | null, unknown] | undefined): unknown {
  if (!entry) throw new Error('no reply');
  if (entry[0]) throw entry[0];
  return entry[1];
}

/** Consecutive slots, about KEYS_PER_CALL keys a call (a bigger slot goes alone). */
export function chunkSlots(slots: number[], counts: Map<number, number> | undefined): number[][] {
  const out: number[][] = [];
  let current: number[] = [];
  let keys = 0;
  for (const slot of slots) {
    // A slot not counted (a node read before it held keys) costs at most a call of its own.
    const n = counts?.get(slot) ?? KEYS_PER_CALL;
    if (current.length > 0 && keys + n > KEYS_PER_CALL) {
      out.push(current);
      current = [];
      keys = 0;
    }
    current.push(slot);
    keys += n;
  }
  if (current.length > 0) out.push(current);
  return out;
}

/** A key name as redis-cli prints it (sdscatrepr), without the quotes: any bytes, one printable line. */
export function printableKey(name: Buffer): string {
  let out = '';
  for (const b of name) {
    if (b === 0x5c) out += '\\\\';
    else if (b === 0x22) out += '\\"';
    else if (b === 0x0a) out += '\\n';
    else if (b === 0x0d) out += '\\r';
    else if (b === 0x09) out += '\\t';
    else if (b === 0x07) out += '\\a';
    else if (b === 0x08) out += '\\b';
    else if (b >= 0x20 && b < 0x7f) out += String.fromCharCode(b);
    else out += `\\x${b.toString(16).padStart(2, '0')}`;
  }
  return out;
}
