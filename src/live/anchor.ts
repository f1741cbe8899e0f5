import type { ClusterNodeEntry } from './types.js';

/**
 * The node whose view of the cluster is trusted, for planning and for status: a running node
 * before one read from its saved file (which may be stale: its node stopped before a failover),
 * then one that owns slots, then the one that knows the most nodes. Ties go to the first.
 */
export function pickAnchor<T extends { live: boolean; view: ClusterNodeEntry[] }>(candidates: T[]): T | undefined {
  const score = (c: T) => (c.live ? 2_000_000 : 0) + (c.view.some((e) => e.myself && e.slots.length > 0) ? 1_000_000 : 0) + c.view.length;
  return candidates.reduce<T | undefined>((best, c) => (best === undefined || score(c) > score(best) ? c : best), undefined);
}
