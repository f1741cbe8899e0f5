import type { Step } from '../plan/types.js';

/**
 * Which steps may run at the same time. Each step declares the nodes it acts on; a step waits
 * for every earlier step that shares a node with it, except that slot migrations sharing a node
 * run together (a node can have slots open towards several others at once). Waits, restarts and
 * failovers need the cluster to themselves: they wait for everything before them, and everything
 * after waits for them. Plan order is kept wherever two steps could interfere. Pure.
 */
export interface Footprint {
  nodes: string[];
  /** Runs alone: after everything before it, before everything after it. */
  exclusive: boolean;
  /** A slot migration: shares its nodes with other migrations. */
  migration: boolean;
}

export function footprint(step: Step): Footprint {
  const on = (...nodes: string[]): Footprint => ({ nodes, exclusive: false, migration: false });
  const alone: Footprint = { nodes: [], exclusive: true, migration: false };
  switch (step.kind) {
    case 'provision_node':
    case 'set_config':
    case 'set_config_epoch':
    case 'add_slots':
    case 'reset_node':
    case 'remove_node':
      return on(step.node);
    case 'meet_node':
    case 'forget_node':
      return on(step.node, ...step.via);
    case 'replicate':
      return on(step.node, step.master);
    case 'finish_migration':
    case 'migrate_slots':
      return { nodes: [step.from, step.to], exclusive: false, migration: true };
    // A restart checks the whole cluster's health and may fail over; a failover changes roles
    // that other steps were planned on; waits watch every node.
    case 'restart_node':
    case 'failover':
    case 'wait_join':
    case 'wait_cluster_ok':
    case 'wait_replication':
    case 'wait_slot_migrations':
      return alone;
  }
}

/** For each step, the indices of the earlier steps it must wait for (transitively enough). */
export function dependencies(steps: Step[]): number[][] {
  const out: number[][] = [];
  let barrier: number | undefined;
  // Steps since the last exclusive one, by node.
  let since: number[] = [];
  let byNode = new Map<string, number[]>();
  steps.forEach((step, j) => {
    const f = footprint(step);
    if (f.exclusive) {
      out.push(since.length > 0 ? since : barrier !== undefined ? [barrier] : []);
      barrier = j;
      since = [];
      byNode = new Map();
      return;
    }
    const deps = new Set<number>(barrier !== undefined ? [barrier] : []);
    for (const n of f.nodes) {
      for (const i of byNode.get(n) ?? []) {
        if (!(f.migration && footprint(steps[i] as Step).migration)) deps.add(i);
      }
    }
    out.push([...deps].sort((a, b) => a - b));
    since.push(j);
    for (const n of new Set(f.nodes)) byNode.set(n, [...(byNode.get(n) ?? []), j]);
  });
  return out;
}
