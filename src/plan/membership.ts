import { PlanError } from '../errors.js';
import { formatRanges } from '../live/parse.js';
import type { ClusterNodeEntry, LiveNode, SlotRange } from '../live/types.js';
import type { NodeState } from './nodeState.js';
import { slotList, toRanges } from './slots.js';

/**
 * Stage 1 of planning, membership: which spec nodes are in the cluster, which must be met, which
 * cluster nodes leave (they are no longer in the spec), and which slots an interrupted migration
 * left open. Pure; refuses what cannot be joined safely.
 */

export type Resolver = (e: ClusterNodeEntry, from: NodeState) => string | undefined;

/** A node of the cluster that the spec no longer lists. */
export interface LeavingNode {
  address: string;
  id: string;
  role: 'master' | 'replica' | 'unknown';
  masterId: string | null;
  slots: SlotRange[];
  /** It answers: it can be drained, reset and stopped. */
  reachable: boolean;
  /**
   * It does not answer, and its saved state knows only itself: it was reset before it stopped
   * (a removal cut off before the nodes that stay forgot it). Nothing is left to ask of it.
   */
  wasReset?: boolean;
}

/** A slot left half-moved: finish it towards `to` (the node that was importing it). */
export interface OpenMigration {
  slot: number;
  from: string;
  to: string;
  keys: number;
}

export interface Membership {
  /** Spec nodes the anchor's view holds. */
  members: Set<string>;
  /** Spec nodes to CLUSTER MEET. */
  toMeet: NodeState[];
  leaving: LeavingNode[];
  open: OpenMigration[];
}

/** Maps a CLUSTER NODES entry, seen from `from`, to the spec address of that node (or undefined). */
export function addressResolver(states: NodeState[]): Resolver {
  const byId = new Map<string, string>();
  for (const s of states) if (s.id) byId.set(s.id, s.node.address);
  const known = new Set(states.map((s) => s.node.address));
  return (e, from) => {
    if (e.myself) return from.node.address;
    const byIdHit = byId.get(e.id);
    if (byIdHit) return byIdHit;
    const a = `${e.host}:${e.port}`;
    return known.has(a) ? a : undefined;
  };
}

export function knowsAll(s: NodeState, states: NodeState[], resolve: Resolver): boolean {
  const seen = new Set(s.view.filter((e) => !e.handshake).map((e) => resolve(e, s)));
  return states.every((o) => seen.has(o.node.address));
}

export function anotherCluster(address: string, strangers: ClusterNodeEntry[]): PlanError {
  return new PlanError(
    `${address} already belongs to another cluster (it knows ${strangers.map((e) => `${e.host}:${e.port}`).join(', ')}, not in the spec); ` +
      `rcluster will not merge clusters. Run with --allow-reset to wipe it (FLUSHALL, CLUSTER RESET HARD) if it should join this one.`,
  );
}

/**
 * `extras`: the cluster's nodes that are not in the spec, as inspection read them.
 * `clusterServesSlots`: the anchor's cluster owns slots (a running cluster, not a create).
 */
export function membership(states: NodeState[], anchor: NodeState, resolve: Resolver, extras: LiveNode[]): Membership {
  const members = new Set(anchor.view.filter((e) => !e.handshake && !e.noaddr).map((e) => resolve(e, anchor)).filter((a): a is string => !!a));
  members.add(anchor.node.address);
  const clusterServesSlots = anchor.view.some((e) => e.slots.length > 0);

  const foreign = anchor.view.filter((e) => !e.handshake && !e.noaddr && !resolve(e, anchor));
  if (!clusterServesSlots && foreign.length > 0) throw anotherCluster(anchor.node.address, foreign);
  const claimed = new Map<number, string>();
  for (const e of anchor.view) for (const slot of slotList(e.slots)) claimed.set(slot, e.id);

  const toMeet: NodeState[] = [];
  for (const s of states) {
    if (members.has(s.node.address)) continue;
    const others = s.view.filter((e) => !e.myself && !e.handshake);
    if (others.some((e) => resolve(e, s) === anchor.node.address)) continue; // gossip still spreading
    const strangers = others.filter((e) => !resolve(e, s));
    if (strangers.length > 0) throw anotherCluster(s.node.address, strangers);
    // Knowing only nodes of the spec, but not the anchor yet: a join that is still spreading
    // (an apply cut off after MEET), or a create cut off after its slots were assigned. Meeting
    // it is harmless as long as what it claims is not claimed by anyone else.
    const mine = s.view.find((e) => e.myself)?.slots ?? [];
    const clash = slotList(mine).filter((slot) => claimed.has(slot));
    if (clash.length > 0) {
      throw new PlanError(
        `${s.node.address} is not part of this cluster yet but owns slots ${formatRanges(mine)}, and the cluster already serves ${formatRanges(toRanges(clash))} of them; ` +
          `rcluster will not join it. Run with --allow-reset to wipe it (FLUSHALL, CLUSTER RESET HARD) if it should join this cluster.`,
      );
    }
    for (const slot of slotList(mine)) claimed.set(slot, s.id ?? s.node.address);
    toMeet.push(s);
  }

  const extraByAddress = new Map(extras.map((n) => [n.address, n]));
  const leaving: LeavingNode[] = clusterServesSlots
    ? foreign.map((e) => {
        const address = `${e.host}:${e.port}`;
        const live = extraByAddress.get(address);
        const reachable = Boolean(live?.reachable && live.clusterEnabled && live.id === e.id);
        const saved = live?.onDisk?.view ?? [];
        const wasReset = !reachable && saved.length === 1 && saved[0]?.myself === true && saved[0].id === e.id;
        return { address, id: e.id, role: e.role, masterId: e.masterId, slots: e.slots, reachable, ...(wasReset ? { wasReset } : {}) };
      })
    : [];
  for (const l of leaving) {
    if (l.slots.length > 0 && !l.reachable) {
      throw new PlanError(
        `${l.address} (${l.id.slice(0, 8)}) owns slots ${formatRanges(l.slots)} and is not in the spec, but it does not answer, so its keys cannot be moved; ` +
          `start it again (rcluster then drains it), or keep it in the spec`,
      );
    }
  }
  return { members, toMeet, leaving, open: openMigrations(states, anchor, resolve, extras, leaving) };
}

/**
 * Slots an interrupted migration left open, from the nodes' own views (only a node itself shows
 * `[slot->-id]` and `[slot-<-id]`). Each is finished towards the importing side.
 */
function openMigrations(states: NodeState[], anchor: NodeState, resolve: Resolver, extras: LiveNode[], leaving: LeavingNode[]): OpenMigration[] {
  const addressOfId = new Map<string, string>();
  for (const s of states) if (s.id) addressOfId.set(s.id, s.node.address);
  for (const l of leaving) addressOfId.set(l.id, l.address);
  for (const e of anchor.view) if (!addressOfId.has(e.id) && e.host) addressOfId.set(e.id, resolve(e, anchor) ?? `${e.host}:${e.port}`);
  const keysOf = new Map<string, Map<number, number> | undefined>();
  const byOpen = new Map<number, OpenMigration>();
  const views: { address: string; view: ClusterNodeEntry[]; slotKeys?: Map<number, number> }[] = [
    ...states.filter((s) => s.live).map((s) => ({ address: s.node.address, view: s.view, slotKeys: s.slotKeys })),
    ...extras.filter((n) => n.reachable).map((n) => ({ address: n.address, view: n.view, slotKeys: n.slotKeys })),
  ];
  for (const v of views) keysOf.set(v.address, v.slotKeys);
  const name = (id: string, slot: number, side: string): string => {
    const a = addressOfId.get(id);
    if (!a) {
      throw new PlanError(
        `slot ${slot} is open (${side} node ${id.slice(0, 8)}), and that node is not part of the cluster; ` +
          `rcluster cannot finish this migration. Close the slot by hand (CLUSTER SETSLOT ${slot} STABLE on the node that has it open)`,
      );
    }
    return a;
  };
  for (const v of views) {
    const me = v.view.find((e) => e.myself);
    for (const m of me?.migrating ?? []) {
      byOpen.set(m.slot, { slot: m.slot, from: v.address, to: name(m.to, m.slot, 'target'), keys: v.slotKeys?.get(m.slot) ?? 0 });
    }
  }
  for (const v of views) {
    const me = v.view.find((e) => e.myself);
    for (const m of me?.importing ?? []) {
      if (byOpen.has(m.slot)) continue;
      const from = name(m.from, m.slot, 'source');
      byOpen.set(m.slot, { slot: m.slot, from, to: v.address, keys: keysOf.get(from)?.get(m.slot) ?? 0 });
    }
  }
  return [...byOpen.values()].sort((a, b) => a.slot - b.slot);
}
