/**
 * Which nodes are masters and which replica follows which master.
 * Pure: the planner calls it with the spec's nodes and, when a cluster already runs, its live roles.
 */

export interface RoleNode {
  address: string;
  host: string;
}

export interface Roles {
  /** Masters in slot order. */
  masters: string[];
  /** replica address -> master address */
  replicaOf: Map<string, string>;
}

export interface CurrentRoles {
  masters: string[];
  replicaOf: Map<string, string>;
}

/**
 * Masters go on distinct hosts first (nodes interleaved host by host, as redis-cli create does).
 * Every non-master node is a replica, spread evenly (so each master gets replicasPerMaster when there are
 * enough nodes, and extras go round-robin, as with redis-cli create); within those counts the
 * number of replicas sharing their master's host is the least possible (a maximum matching on
 * different-host pairs). When `current` is given, its masters and replica links are kept.
 */
export function allocateRoles(
  nodes: RoleNode[],
  masterCount: number,
  current?: CurrentRoles,
): Roles {
  const byAddress = new Map(nodes.map((n) => [n.address, n]));
  const masters = current && current.masters.length > 0 ? [...current.masters] : interleaveByHost(nodes).slice(0, masterCount).map((n) => n.address);
  const masterSet = new Set(masters);
  const candidates = interleaveByHost(nodes.filter((n) => !masterSet.has(n.address)));

  // The masters that get one replica more than the others are those that have most now, so
  // that an uneven spread that is already there stays as it is.
  const even = replicaCapacities(masters.length, candidates.length);
  const loadNow = (m: string) => candidates.filter((c) => current?.replicaOf.get(c.address) === m).length;
  // Among masters with as many, a master that the unattached nodes can serve from other hosts.
  const unattached = candidates.filter((c) => !masterSet.has(current?.replicaOf.get(c.address) ?? ''));
  const reachableFrom = (m: string) => unattached.filter((c) => c.host !== byAddress.get(m)?.host).length;
  const byLoad = masters
    .map((m, i) => ({ i, load: loadNow(m), others: reachableFrom(m) }))
    .sort((a, b) => b.load - a.load || b.others - a.others || a.i - b.i);
  const capacity = new Array<number>(masters.length);
  byLoad.forEach(({ i }, rank) => (capacity[i] = even[rank] as number));
  const replicaOf = new Map<string, string>();
  const load = new Map(masters.map((m) => [m, 0]));

  // Keep live links first: moving a synced replica costs a full resync for nothing.
  for (const c of candidates) {
    const m = current?.replicaOf.get(c.address);
    if (m === undefined || !masterSet.has(m)) continue;
    const i = masters.indexOf(m);
    if ((load.get(m) ?? 0) < (capacity[i] ?? 0)) {
      replicaOf.set(c.address, m);
      load.set(m, (load.get(m) ?? 0) + 1);
    }
  }

  const free = candidates.filter((c) => !replicaOf.has(c.address));
  const seats: { master: string; host: string }[] = [];
  masters.forEach((m, i) => {
    for (let k = load.get(m) ?? 0; k < (capacity[i] ?? 0); k++) seats.push({ master: m, host: byAddress.get(m)?.host ?? '' });
  });
  const seatOf = maxMatching(free, seats);
  const openSeats = seats.map((_, i) => i).filter((i) => ![...seatOf.values()].includes(i));
  for (const c of free) {
    let seat = seatOf.get(c.address);
    if (seat === undefined) seat = openSeats.shift();
    const s = seat === undefined ? undefined : seats[seat];
    if (s) replicaOf.set(c.address, s.master);
  }
  return { masters, replicaOf };
}

/** Nodes ordered host by host: the first node of each host, then the second of each, ... */
export function interleaveByHost<T extends RoleNode>(nodes: T[]): T[] {
  const hosts = new Map<string, T[]>();
  for (const n of nodes) {
    const list = hosts.get(n.host);
    if (list) list.push(n);
    else hosts.set(n.host, [n]);
  }
  const queues = [...hosts.values()];
  const out: T[] = [];
  for (let round = 0; out.length < nodes.length; round++) {
    for (const q of queues) {
      const n = q[round];
      if (n) out.push(n);
    }
  }
  return out;
}

/** How many replicas each master gets: an even spread, the first masters taking the remainder. */
export function replicaCapacities(masters: number, replicas: number): number[] {
  return Array.from({ length: masters }, (_, i) => Math.floor(replicas / masters) + (i < replicas % masters ? 1 : 0));
}

/** Kuhn's augmenting paths: node -> seat index, only across different hosts. */
function maxMatching(nodes: RoleNode[], seats: { host: string }[]): Map<string, number> {
  const seatOwner = new Array<number>(seats.length).fill(-1);
  const tryAssign = (ni: number, seen: boolean[]): boolean => {
    const node = nodes[ni];
    if (!node) return false;
    for (let si = 0; si < seats.length; si++) {
      if (seen[si] || seats[si]?.host === node.host) continue;
      seen[si] = true;
      const owner = seatOwner[si] ?? -1;
      if (owner === -1 || tryAssign(owner, seen)) {
        seatOwner[si] = ni;
        return true;
      }
    }
    return false;
  };
  nodes.forEach((_, ni) => tryAssign(ni, new Array<boolean>(seats.length).fill(false)));
  const out = new Map<string, number>();
  seatOwner.forEach((ni, si) => {
    const n = ni >= 0 ? nodes[ni] : undefined;
    if (n) out.set(n.address, si);
  });
  return out;
}
