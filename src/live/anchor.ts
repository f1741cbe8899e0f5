import { countSlots } from './parse.js';
import type { ClusterNodeEntry } from './types.js';

/**
 * The node whose view of the cluster is trusted, for planning and for status: a running node
 * before one read from its saved file (which may be stale: its node stopped before a failover),
 * then the view that gives the fewest slots to failed nodes (just after a failover the promoted
 * replica knows it owns them before gossip has told the others), then one that owns slots, then
 * the one that knows the most nodes. Ties go to the first.
 */
export function pickAnchor<T extends { live: boolean; view: ClusterNodeEntry[] }>(candidates: T[]): T | undefined {
  const score = (c: T): number[] => [
    c.live ? 1 : 0,
    -c.view.reduce((n, e) => n + (e.fail ? countSlots(e.slots) : 0), 0),
    c.view.some((e) => e.myself && e.slots.length > 0) ? 1 : 0,
    c.view.length,
  ];
  const better = (a: number[], b: number[]): boolean => {
    for (let i = 0; i < a.length; i++) if ((a[i] as number) !== (b[i] as number)) return (a[i] as number) > (b[i] as number);
    return false;
  };
  return candidates.reduce<T | undefined>((best, c) => (best === undefined || better(score(c), score(best)) ? c : best), undefined);
}
