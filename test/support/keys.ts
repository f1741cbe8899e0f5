/**
 * Loading and checking a known key set on a real cluster, for the integration tests and the
 * benchmark: key `k:<i>` holds a value derived from i, so that every key can be checked after
 * slots moved. Each key is sent straight to the master that owns its slot, pipelined.
 * A key set is a count of such keys, or `everySlot(count)`: the same keys and one more in each of
 * the 16384 slots, so that no slot is empty and any slot move carries keys (rcluster moves a
 * donor's lightest slots first: with a few keys per slot those are the empty ones).
 * `route` maps a node's address to where this process dials it (e.g. Harness.intoDatacenter for
 * nodes the runner cannot reach directly); default: the address itself.
 */
import calculateSlot from 'cluster-key-slot';
import { Redis } from 'ioredis';

export function keyName(i: number): string {
  return `k:${i}`;
}

export function valueOf(i: number, bytes: number): string {
  return padded(`v${i}:`, bytes);
}

function padded(head: string, bytes: number): string {
  return head + 'x'.repeat(Math.max(0, bytes - head.length));
}

export type KeySet = number | { count: number; everySlot: true };

/** `count` keys `k:<i>`, and `s:{<tag>}` in each slot s (the tag hashes to s), valued from s. */
export function everySlot(count: number): KeySet {
  return { count, everySlot: true };
}

/** How many keys the set holds. */
export function keyTotal(keys: KeySet): number {
  return typeof keys === 'number' ? keys : keys.count + 16384;
}

let tags: string[] | undefined;

/** The key of slot s: its hash tag is the first integer (as text) that hashes to s. */
export function slotKeyName(slot: number): string {
  if (!tags) {
    const found = new Array<string>(16384);
    for (let i = 0, left = 16384; left > 0; i++) {
      const s = calculateSlot(String(i));
      if (found[s] === undefined) {
        found[s] = String(i);
        left--;
      }
    }
    tags = found;
  }
  return `s:{${tags[slot] as string}}`;
}

/** Key `id` of a set: ids below `count` are `k:<id>`, the next 16384 the slots' own keys. */
function nameOf(keys: KeySet, id: number): string {
  const count = typeof keys === 'number' ? keys : keys.count;
  return id < count ? keyName(id) : slotKeyName(id - count);
}

function valueOfId(keys: KeySet, id: number, bytes: number): string {
  const count = typeof keys === 'number' ? keys : keys.count;
  return id < count ? valueOf(id, bytes) : padded(`s${id - count}:`, bytes);
}

export type Route = (address: string) => Promise<string>;

const direct: Route = (address) => Promise.resolve(address);

/** address of the master owning each slot, read from one node. */
async function slotOwners(seed: string, password: string | undefined, route: Route): Promise<string[]> {
  const c = connect(await route(seed), password);
  try {
    const slots = (await c.call('CLUSTER', 'SLOTS')) as [number, number, [string, number]][];
    const owner = new Array<string>(16384);
    for (const [start, end, [host, port]] of slots) for (let s = start; s <= end; s++) owner[s] = `${host}:${port}`;
    return owner;
  } finally {
    c.disconnect();
  }
}

function connect(address: string, password?: string): Redis {
  const i = address.lastIndexOf(':');
  const r = new Redis({ host: address.slice(0, i), port: Number(address.slice(i + 1)), maxRetriesPerRequest: 1, lazyConnect: false, ...(password !== undefined ? { password } : {}) });
  r.on('error', () => {});
  return r;
}

/** Run `fn` for the set's keys grouped by owner, `batch` keys per pipeline. */
async function byOwner(seed: string, keys: KeySet, batch: number, fn: (client: Redis, ids: number[]) => Promise<void>, password: string | undefined, route: Route): Promise<void> {
  const owner = await slotOwners(seed, password, route);
  const groups = new Map<string, number[]>();
  for (let id = 0; id < keyTotal(keys); id++) {
    const a = owner[calculateSlot(nameOf(keys, id))] as string;
    const g = groups.get(a);
    if (g) g.push(id);
    else groups.set(a, [id]);
  }
  await Promise.all(
    [...groups].map(async ([address, ids]) => {
      const client = connect(await route(address), password);
      try {
        for (let k = 0; k < ids.length; k += batch) await fn(client, ids.slice(k, k + batch));
      } finally {
        client.disconnect();
      }
    }),
  );
}

/** `password`: the cluster's, when it has one. */
export async function loadKeys(seed: string, keys: KeySet, valueBytes = 100, password?: string, route = direct): Promise<void> {
  await byOwner(seed, keys, 5000, async (client, ids) => {
    const p = client.pipeline();
    for (const id of ids) p.set(nameOf(keys, id), valueOfId(keys, id, valueBytes));
    const res = (await p.exec()) ?? [];
    const failed = res.find(([err]) => err);
    if (failed?.[0]) throw failed[0];
  }, password, route);
}

/** Keys of the set that are missing or hold another value, read from their current owners. */
export async function badKeys(seed: string, keys: KeySet, valueBytes = 100, password?: string, route = direct): Promise<string[]> {
  const bad: string[] = [];
  await byOwner(seed, keys, 5000, async (client, ids) => {
    const p = client.pipeline();
    for (const id of ids) p.get(nameOf(keys, id));
    const res = (await p.exec()) ?? [];
    res.forEach(([err, v], j) => {
      const id = ids[j] as number;
      if (err || v !== valueOfId(keys, id, valueBytes)) bad.push(`${nameOf(keys, id)}: ${err ? err.message : v === null ? 'missing' : 'wrong value'}`);
    });
  }, password, route);
  return bad;
}

/**
 * How many keys of the test key sets (`k:<i>`, `s:{<tag>}`) one node holds, counted by SCAN, so
 * that other keys (a writer's during the test) do not count. (SCAN may return a key twice.)
 */
export async function keysOn(address: string, password?: string, route = direct): Promise<number> {
  const c = connect(await route(address), password);
  try {
    const seen = new Set<string>();
    let cursor = '0';
    do {
      const [next, names] = await c.scan(cursor, 'MATCH', '[ks]:*', 'COUNT', 1000);
      for (const name of names) seen.add(name);
      cursor = next;
    } while (cursor !== '0');
    return seen.size;
  } finally {
    c.disconnect();
  }
}
