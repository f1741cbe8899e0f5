/**
 * Loading and checking a known key set on a real cluster, for the integration tests and the
 * benchmark: key `k:<i>` holds a value derived from i, so that every key can be checked after
 * slots moved. Each key is sent straight to the master that owns its slot, pipelined.
 * `route` maps a node's address to where this process dials it (e.g. Harness.intoDatacenter for
 * nodes the runner cannot reach directly); default: the address itself.
 */
import calculateSlot from 'cluster-key-slot';
import { Redis } from 'ioredis';

export function keyName(i: number): string {
  return `k:${i}`;
}

export function valueOf(i: number, bytes: number): string {
  const head = `v${i}:`;
  return head + 'x'.repeat(Math.max(0, bytes - head.length));
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

/** Run `fn` for keys [0, count) grouped by owner, `batch` keys per pipeline. */
async function byOwner(seed: string, count: number, batch: number, fn: (client: Redis, ids: number[]) => Promise<void>, password: string | undefined, route: Route): Promise<void> {
  const owner = await slotOwners(seed, password, route);
  const groups = new Map<string, number[]>();
  for (let i = 0; i < count; i++) {
    const a = owner[calculateSlot(keyName(i))] as string;
    const g = groups.get(a);
    if (g) g.push(i);
    else groups.set(a, [i]);
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
export async function loadKeys(seed: string, count: number, valueBytes = 100, password?: string, route = direct): Promise<void> {
  await byOwner(seed, count, 5000, async (client, ids) => {
    const p = client.pipeline();
    for (const i of ids) p.set(keyName(i), valueOf(i, valueBytes));
    const res = (await p.exec()) ?? [];
    const failed = res.find(([err]) => err);
    if (failed?.[0]) throw failed[0];
  }, password, route);
}

/** Keys of [0, count) that are missing or hold another value, read from their current owners. */
export async function badKeys(seed: string, count: number, valueBytes = 100, password?: string, route = direct): Promise<string[]> {
  const bad: string[] = [];
  await byOwner(seed, count, 5000, async (client, ids) => {
    const p = client.pipeline();
    for (const i of ids) p.get(keyName(i));
    const res = (await p.exec()) ?? [];
    res.forEach(([err, v], j) => {
      const i = ids[j] as number;
      if (err || v !== valueOf(i, valueBytes)) bad.push(`${keyName(i)}: ${err ? err.message : v === null ? 'missing' : 'wrong value'}`);
    });
  }, password, route);
  return bad;
}
