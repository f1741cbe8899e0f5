import { pickAnchor } from './anchor.js';
import { countSlots, formatRanges, SLOT_COUNT } from './parse.js';
import type { ClusterNodeEntry, LiveCluster, LiveNode } from './types.js';

export interface ReplicaStatus {
  address: string;
  id: string;
  linkUp: boolean | null;
}

export interface MasterStatus {
  address: string;
  id: string;
  keys: number | null;
  slots: number;
  ranges: string;
  replicas: ReplicaStatus[];
  fail: boolean;
}

export interface ClusterStatus {
  masters: MasterStatus[];
  checks: {
    /** Every reachable node has the same slot map and node set. */
    agree: boolean;
    disagreeing: string[];
    openSlots: string[];
    slotsCovered: number;
    unreachable: string[];
    notClusterEnabled: string[];
    clusterStateOk: boolean;
    replicasDown: string[];
    failed: string[];
  };
  healthy: boolean;
  problems: string[];
}

/**
 * redis-trib's `info` and `check` in one pure computation over what inspection read: masters
 * with keys, slots and replicas, then agreement, open slots, coverage and reachability.
 */
export function clusterStatus(live: LiveCluster): ClusterStatus {
  const reachable = live.nodes.filter((n) => n.reachable && n.clusterEnabled && !n.unresponsive);
  const byId = new Map<string, LiveNode>();
  for (const n of reachable) if (n.id) byId.set(n.id, n);
  const anchor = pickAnchor(reachable.map((n) => ({ ...n, live: true })));
  // Roles as each node reports itself: gossip tells the others a moment later.
  const self = new Map<string, ClusterNodeEntry>();
  for (const n of reachable) {
    const me = n.view.find((e) => e.myself);
    if (me) self.set(me.id, me);
  }
  const view = (anchor?.view ?? []).map((e) => {
    const me = self.get(e.id);
    return me ? { ...e, role: me.role, masterId: me.masterId } : e;
  });
  const addressOf = (id: string, host: string, port: number) => byId.get(id)?.address ?? `${host}:${port}`;

  const masters: MasterStatus[] = view
    .filter((e) => e.role === 'master' && (e.slots.length > 0 || view.some((r) => r.masterId === e.id)))
    .map((e) => ({
      address: addressOf(e.id, e.host, e.port),
      id: e.id,
      keys: byId.get(e.id)?.keys ?? null,
      slots: countSlots(e.slots),
      ranges: formatRanges(e.slots),
      fail: e.fail,
      replicas: view
        .filter((r) => r.masterId === e.id)
        .map((r) => {
          const node = byId.get(r.id);
          const link = node?.replication?.masterLinkStatus;
          return { address: addressOf(r.id, r.host, r.port), id: r.id, linkUp: link === undefined ? null : link === 'up' };
        }),
    }))
    .sort((a, b) => a.address.localeCompare(b.address, undefined, { numeric: true }));

  const signature = (n: LiveNode) =>
    n.view
      .filter((e) => !e.handshake)
      .map((e) => `${e.id}:${formatRanges(e.slots)}`)
      .sort()
      .join(';');
  const reference = anchor ? signature(anchor) : '';
  const disagreeing = reachable.filter((n) => signature(n) !== reference).map((n) => n.address);
  const openSlots = reachable.flatMap((n) => {
    const me = n.view.find((e) => e.myself);
    return [...(me?.migrating ?? []).map((m) => `${n.address}: slot ${m.slot} migrating`), ...(me?.importing ?? []).map((m) => `${n.address}: slot ${m.slot} importing`)];
  });
  const covered = new Set<number>();
  for (const e of view) for (const r of e.slots) for (let s = r.start; s <= r.end; s++) covered.add(s);
  const unreachable = live.nodes.filter((n) => !n.reachable || n.unresponsive).map((n) => `${n.address} (${n.error ?? 'unreachable'})`);
  const notClusterEnabled = live.nodes.filter((n) => n.reachable && !n.unresponsive && !n.clusterEnabled).map((n) => n.address);
  const clusterStateOk = reachable.length > 0 && reachable.every((n) => n.clusterInfo['cluster_state'] === 'ok');
  // A replica that cannot be read is not known to be in sync.
  const replicasDown = masters.flatMap((m) => m.replicas.filter((r) => r.linkUp !== true).map((r) => r.address));
  const failed = view.filter((e) => e.fail || e.pfail).map((e) => `${addressOf(e.id, e.host, e.port)} (${e.fail ? 'fail' : 'fail?'})`);

  const problems: string[] = [];
  if (reachable.length === 0) problems.push('no node answers as a cluster node');
  if (disagreeing.length > 0) problems.push(`nodes disagree about the cluster: ${disagreeing.join(', ')}`);
  if (openSlots.length > 0) problems.push(`open slots: ${openSlots.join('; ')}`);
  if (covered.size !== SLOT_COUNT) problems.push(`only ${covered.size} of ${SLOT_COUNT} slots are covered`);
  if (unreachable.length > 0) problems.push(`unreachable: ${unreachable.join(', ')}`);
  if (notClusterEnabled.length > 0) problems.push(`not cluster-enabled: ${notClusterEnabled.join(', ')}`);
  if (reachable.length > 0 && !clusterStateOk) problems.push('cluster_state is not ok on every node');
  if (replicasDown.length > 0) problems.push(`replication link not up: ${replicasDown.join(', ')}`);
  if (failed.length > 0) problems.push(`failing nodes: ${failed.join(', ')}`);

  return {
    masters,
    checks: { agree: disagreeing.length === 0, disagreeing, openSlots, slotsCovered: covered.size, unreachable, notClusterEnabled, clusterStateOk, replicasDown, failed },
    healthy: problems.length === 0,
    problems,
  };
}
