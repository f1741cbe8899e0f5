import { PlanError } from '../errors.js';
import type { SlotRange } from '../live/types.js';
import { countSlots } from '../live/parse.js';
import type { DesiredCluster } from '../spec/types.js';
import { allocateRoles, interleaveByHost } from './roles.js';

/**
 * Stage 2 of planning, roles by least change: nodes keep their live roles wherever the spec
 * allows it. A master that leaves with an in-sync replica hands its slots to that replica (no
 * slot moves); new nodes fill missing masters first, then replicas. Pure.
 */

export interface ShardInput {
  desired: DesiredCluster;
  /** Who owns which slots now (open migrations counted as finished), spec nodes and leaving ones. */
  claims: Map<string, SlotRange[]>;
  /** Spec nodes that are replicas now -> their master's address. */
  replicaOf: Map<string, string>;
  /** Spec replicas whose link to their master is up: they can take over by a graceful failover. */
  inSync: Set<string>;
  /** Nodes of the cluster the spec no longer lists. */
  leaving: Set<string>;
  /** Spec nodes that cannot be reached: never chosen as a new master. */
  down?: Set<string>;
}

export interface ShardPlan {
  /** The masters of the result: current ones in slot order, then new ones. */
  masters: string[];
  /** Every other spec node -> the master it replicates in the result. */
  replicaOf: Map<string, string>;
  /**
   * Master -> the replica that takes its slots over (CLUSTER FAILOVER): a leaving master's in-sync
   * replica, or a shard's preferredMaster that is an in-sync replica now.
   */
  heirs: Map<string, string>;
  /** The masters of `heirs` that stay in the spec (as their heir's replica): preferredMaster swaps. */
  swaps: Set<string>;
  /** Masters that end with no slot: leaving ones without an heir, and masters beyond `masters`. */
  draining: string[];
  /** The share of each master of the result: a weight belongs to the shard, not to an address. */
  weights: Map<string, number>;
}

export function planShards(input: ShardInput): ShardPlan {
  const { desired, claims, replicaOf, inSync, leaving } = input;
  const down = input.down ?? new Set<string>();
  const byAddress = new Map(desired.nodes.map((n) => [n.address, n]));
  const firstSlot = (a: string) => claims.get(a)?.[0]?.start ?? Number.MAX_SAFE_INTEGER;
  const owners = [...claims.keys()].filter((a) => (claims.get(a)?.length ?? 0) > 0).sort((a, b) => firstSlot(a) - firstSlot(b));
  const target = desired.masters;

  // Each leaving master's slots go to its in-sync replica while more masters are wanted.
  const heirs = new Map<string, string>();
  const staying = owners.filter((a) => !leaving.has(a));
  let count = staying.length;
  for (const l of owners.filter((a) => leaving.has(a))) {
    if (count >= target) break;
    const heir = desired.nodes.find((n) => replicaOf.get(n.address) === l && inSync.has(n.address));
    if (heir) {
      heirs.set(l, heir.address);
      count++;
    }
  }
  // Masters in slot order, an heir in its old master's place.
  const kept = owners.flatMap((a) => (leaving.has(a) ? (heirs.has(a) ? [heirs.get(a) as string] : []) : [a]));

  const draining = owners.filter((a) => leaving.has(a) && !heirs.has(a));
  if (kept.length > target) {
    // The masters with the fewest slots give theirs away: the least data moves.
    const demoted = [...kept]
      .map((a, i) => ({ a, i, n: countSlots(claims.get(a) ?? []) }))
      .sort((x, y) => x.n - y.n || y.i - x.i)
      .slice(0, kept.length - target)
      .map((x) => x.a);
    draining.push(...demoted);
  }
  const masters = kept.filter((a) => !draining.includes(a));
  if (masters.length < target) {
    // New masters come from nodes that serve nothing yet (not a replica with data to keep),
    // on hosts without a master first.
    const taken = new Set(masters);
    const mastersOn = new Set(masters.map((m) => byAddress.get(m)?.host));
    const free = interleaveByHost(desired.nodes.filter((n) => !taken.has(n.address) && !replicaOf.has(n.address) && !draining.includes(n.address) && !down.has(n.address)));
    const preferredFirst = [...free.filter((n) => n.preferredMaster), ...free.filter((n) => !n.preferredMaster)];
    const chosen = [...preferredFirst.filter((n) => !mastersOn.has(n.host)), ...preferredFirst.filter((n) => mastersOn.has(n.host))].slice(0, target - masters.length);
    masters.push(...chosen.map((n) => n.address));
  }
  if (masters.length < target) {
    throw new PlanError(
      `the spec asks for ${target} masters, but only ${masters.length} can be had without turning a running replica into an empty master; ` +
        `add ${target - masters.length} node(s) to the spec, or set masters: ${masters.length}`,
    );
  }

  // Links to a leaving master follow its heir (Redis re-points them in the failover).
  const links = new Map<string, string>();
  for (const [r, m] of replicaOf) links.set(r, heirs.get(m) ?? m);
  for (const h of heirs.values()) links.delete(h);
  const nodes = desired.nodes.map((n) => ({ address: n.address, host: n.host }));
  const roles = allocateRoles(nodes, target, { masters, replicaOf: links });
  const swaps = preferredSwaps(desired, roles.masters, roles.replicaOf, replicaOf, inSync, heirs);

  const weights = new Map<string, number>();
  for (const m of roles.masters) weights.set(m, byAddress.get(m)?.weight ?? 1);
  for (const [r, m] of roles.replicaOf) weights.set(m, Math.max(weights.get(m) ?? 1, byAddress.get(r)?.weight ?? 1));
  return { masters: roles.masters, replicaOf: roles.replicaOf, heirs, swaps, draining, weights };
}

/**
 * A preferredMaster that is an in-sync replica of its shard's master (it came back after a
 * failover) takes the master role back with a graceful CLUSTER FAILOVER: no slot moves, and the
 * old master becomes its replica. `masters` and `result` are updated in place; `heirs` gets the swap.
 */
function preferredSwaps(
  desired: DesiredCluster,
  masters: string[],
  result: Map<string, string>,
  live: Map<string, string>,
  inSync: Set<string>,
  heirs: Map<string, string>,
): Set<string> {
  const swaps = new Set<string>();
  const preferred = new Set(desired.nodes.filter((n) => n.preferredMaster).map((n) => n.address));
  for (const r of preferred) {
    const m = live.get(r);
    if (!m || result.get(r) !== m || preferred.has(m) || !inSync.has(r) || heirs.has(m)) continue;
    const i = masters.indexOf(m);
    if (i < 0) continue;
    masters[i] = r;
    result.delete(r);
    for (const [x, y] of result) if (y === m) result.set(x, r);
    result.set(m, r);
    heirs.set(m, r);
    swaps.add(m);
  }
  return swaps;
}
