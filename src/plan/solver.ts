import type { SlotRange } from '../live/types.js';
import { SLOT_COUNT, slotList, splitSlots, toRanges } from './slots.js';

/**
 * The minimal slot-move solver. Pure, and independent of how the cluster is read: it takes who
 * owns which slot now and what each master should hold, and says which slots go where.
 *
 * - Targets are counts per master from the weights (not contiguous ranges), each within one
 *   slot of its exact share. Where the share leaves a slot over, it goes to a master that already
 *   holds more than the floor, so that the rounding never costs a move.
 * - Every surplus slot moves once, straight to a master with a deficit, so the number moved is
 *   the lower bound Σ max(0, current − target).
 * - Donors give their lightest slots (keys per slot, when known), as one contiguous run of their
 *   slots unless scattered light slots carry markedly fewer keys (see chooseGiven).
 * - Slots nobody owns are assigned (ADDSLOTS), never counted as moves.
 */

export interface SolverMaster {
  node: string;
  /** Relative share; masters being drained are passed in `draining` instead. */
  weight: number;
  slots: SlotRange[];
}

export interface SolverInput {
  /** The masters of the result, in display order (the order slots nobody owns are handed out in). */
  masters: SolverMaster[];
  /** Masters that must end with no slot (removed, or demoted to replicas). */
  draining: { node: string; slots: SlotRange[] }[];
  /** Keys in a slot, when known; unknown slots count as empty for ordering. */
  keysInSlot?: (slot: number) => number | undefined;
}

export interface SlotMove {
  from: string;
  to: string;
  slots: SlotRange[];
  count: number;
  /** Keys in the moved slots when the plan was made (an estimate by the time it runs). */
  keys: number;
}

export interface SolverResult {
  /** Slot count per master of the result. */
  targets: Map<string, number>;
  /** Slots nobody owns, given to a master. */
  adds: { node: string; slots: SlotRange[] }[];
  moves: SlotMove[];
  /** Who owns what once the moves and adds are done. */
  final: Map<string, SlotRange[]>;
}

/** Slot counts per master from the weights: each within one of its share, the rounding spent where it saves a move. */
export function slotTargets(masters: { node: string; weight: number; current: number }[]): Map<string, number> {
  const weights = masters.map((m) => m.weight);
  // redis-cli create's split is the starting point, so that a fresh cluster gets its layout.
  const sizes = splitSlots(weights).map((r) => r.end - r.start + 1);
  const total = weights.reduce((a, b) => a + b, 0);
  const ideal = weights.map((w) => (SLOT_COUNT * w) / total);
  const lo = ideal.map((x) => Math.max(1, Math.floor(x)));
  const hi = ideal.map((x, i) => Math.max(lo[i] as number, Math.ceil(x)));
  // A slot of rounding held by a master that gains nothing from it (it holds no more than the
  // floor) moves to one that does (it holds more than its target): each such swap saves a move.
  const givers = masters.map((m, i) => i).filter((i) => (sizes[i] as number) > (lo[i] as number) && (masters[i]?.current ?? 0) <= (sizes[i] as number) - 1);
  const takers = masters.map((m, i) => i).filter((i) => (sizes[i] as number) < (hi[i] as number) && (masters[i]?.current ?? 0) > (sizes[i] as number));
  // Takers with the largest surplus first: the order does not change the count, only which.
  takers.sort((a, b) => (masters[b]?.current ?? 0) - (sizes[b] as number) - ((masters[a]?.current ?? 0) - (sizes[a] as number)) || a - b);
  for (let k = 0; k < Math.min(givers.length, takers.length); k++) {
    const g = givers[k] as number;
    const t = takers[k] as number;
    sizes[g] = (sizes[g] as number) - 1;
    sizes[t] = (sizes[t] as number) + 1;
  }
  return new Map(masters.map((m, i) => [m.node, sizes[i] as number]));
}

/** The fewest slots any plan can move: Σ max(0, current − target). */
export function lowerBound(current: Map<string, number>, targets: Map<string, number>): number {
  let n = 0;
  for (const [node, c] of current) n += Math.max(0, c - (targets.get(node) ?? 0));
  return n;
}

export function solveSlots(input: SolverInput): SolverResult {
  const keysOf = (slot: number) => input.keysInSlot?.(slot) ?? 0;
  const current = new Map<string, number[]>();
  for (const m of input.masters) current.set(m.node, slotList(m.slots));
  for (const d of input.draining) current.set(d.node, slotList(d.slots));
  const owned = new Set<number>();
  for (const slots of current.values()) for (const s of slots) owned.add(s);
  const unowned: number[] = [];
  for (let s = 0; s < SLOT_COUNT; s++) if (!owned.has(s)) unowned.push(s);

  const targets = slotTargets(input.masters.map((m) => ({ node: m.node, weight: m.weight, current: current.get(m.node)?.length ?? 0 })));

  // Surplus per donor, lightest slots first; ties from the end of the donor's ranges.
  const donors: { node: string; give: number[] }[] = [];
  const keep = new Map<string, number[]>();
  for (const [node, slots] of current) {
    const surplus = slots.length - (targets.get(node) ?? 0);
    if (surplus <= 0) {
      keep.set(node, slots);
      continue;
    }
    const give = chooseGiven(slots, surplus, keysOf);
    const given = new Set(give);
    keep.set(node, slots.filter((s) => !given.has(s)));
    donors.push({ node, give });
  }
  // Drained masters give first, so that their slots spread over the receivers in order.
  const draining = new Set(input.draining.map((d) => d.node));
  donors.sort((a, b) => Number(draining.has(b.node)) - Number(draining.has(a.node)));

  const receivers = input.masters
    .map((m) => ({ node: m.node, need: (targets.get(m.node) ?? 0) - (current.get(m.node)?.length ?? 0) }))
    .filter((r) => r.need > 0);

  const adds: SolverResult['adds'] = [];
  const moves: SlotMove[] = [];
  const gained = new Map<string, number[]>();
  // Slots nobody owns are handed out first, in slot order: a fresh cluster gets contiguous ranges.
  let ri = 0;
  let pool = unowned;
  let taken = 0;
  const take = (count: number): number[] => {
    const part = pool.slice(taken, taken + count);
    taken += count;
    return part;
  };
  const feed = (from: string | undefined) => {
    while (taken < pool.length && ri < receivers.length) {
      const r = receivers[ri] as { node: string; need: number };
      const part = take(Math.min(r.need, pool.length - taken));
      r.need -= part.length;
      gained.set(r.node, [...(gained.get(r.node) ?? []), ...part]);
      if (from === undefined) adds.push({ node: r.node, slots: toRanges(part) });
      else moves.push({ from, to: r.node, slots: toRanges(part), count: part.length, keys: part.reduce((n, s) => n + keysOf(s), 0) });
      if (r.need === 0) ri++;
    }
  };
  feed(undefined);
  for (const d of donors) {
    pool = d.give;
    taken = 0;
    feed(d.node);
  }

  const final = new Map<string, SlotRange[]>();
  for (const m of input.masters) final.set(m.node, toRanges([...(keep.get(m.node) ?? []), ...(gained.get(m.node) ?? [])]));
  return { targets, adds: mergeAdds(adds), moves: mergeMoves(moves), final };
}

/**
 * Keys scattered over fewer slots than a contiguous run would spare only a little with evenly
 * spread keys, and leave every master with hundreds of ranges (long CLUSTER NODES lines, big
 * client slot maps, plans nobody can read). So: the lightest contiguous run of `count` of the
 * donor's slots (the last one among equals, so that a donor keeps the start of its ranges),
 * unless the lightest slots taken one by one carry at least SCATTER_GAIN fewer keys, as with a
 * few hot slots. Both are sums over the same counts, so the choice is cheap and deterministic.
 */
export const SCATTER_GAIN = 0.2;

function chooseGiven(slots: number[], count: number, keysOf: (slot: number) => number): number[] {
  if (count >= slots.length) return [...slots];
  let best = 0;
  let bestSum = Infinity;
  let sum = 0;
  for (let i = 0; i < slots.length; i++) {
    sum += keysOf(slots[i] as number);
    if (i >= count) sum -= keysOf(slots[i - count] as number);
    if (i >= count - 1 && sum <= bestSum) {
      bestSum = sum;
      best = i - count + 1;
    }
  }
  const lightest = [...slots].sort((a, b) => keysOf(a) - keysOf(b) || b - a).slice(0, count);
  const lightestSum = lightest.reduce((n, s) => n + keysOf(s), 0);
  if (bestSum - lightestSum > SCATTER_GAIN * bestSum) return lightest.sort((a, b) => a - b);
  return slots.slice(best, best + count);
}

/** One add per master and one move per pair, whatever order the pool was fed in. */
function mergeAdds(adds: SolverResult['adds']): SolverResult['adds'] {
  const by = new Map<string, SlotRange[]>();
  for (const a of adds) by.set(a.node, [...(by.get(a.node) ?? []), ...a.slots]);
  return [...by].map(([node, slots]) => ({ node, slots: toRanges(slotList(slots)) }));
}

function mergeMoves(moves: SlotMove[]): SlotMove[] {
  const by = new Map<string, SlotMove>();
  for (const m of moves) {
    const key = `${m.from}\0${m.to}`;
    const seen = by.get(key);
    if (!seen) by.set(key, { ...m });
    else by.set(key, { ...seen, slots: toRanges(slotList([...seen.slots, ...m.slots])), count: seen.count + m.count, keys: seen.keys + m.keys });
  }
  return [...by.values()];
}
