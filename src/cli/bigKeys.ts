import { readBigKeys } from '../live/bigKeys.js';
import type { LiveCluster } from '../live/types.js';
import { bigKeyScans, bigKeysOf, type BigKey } from '../plan/bigKeys.js';
import type { Plan } from '../plan/types.js';
import { withSpinner } from '../render/progress.js';

/**
 * The big keys among the slots a plan moves (plan/bigKeys.ts), read live once the plan says which
 * slots move. Sources that could not be read are warnings: their keys were not checked.
 */
export async function findBigKeys(plan: Plan, live: LiveCluster, show: boolean): Promise<{ bigKeys: BigKey[]; warnings: string[] }> {
  const scans = bigKeyScans(plan, live);
  if (scans.length === 0) return { bigKeys: [], warnings: [] };
  const slots = scans.reduce((n, s) => n + s.slots.length, 0);
  const byNode = new Map(live.nodes.map((n) => [n.address, n.slotKeys]));
  const read = await withSpinner(`Checking the ${slots} slot(s) that move for keys too big to move`, show, () =>
    readBigKeys(scans, { slotKeys: (node) => byNode.get(node), ...(plan.desired.timeouts ? { commandTimeoutMs: plan.desired.timeouts.commandMs } : {}) }),
  );
  const warnings = read.failed.map((f) => `${f.node}: could not check the slots it gives away for keys too big to move (${f.error}); a big key there would not be named`);
  return { bigKeys: bigKeysOf(plan, live, read.found), warnings };
}

/** The plan with its big keys, and the decision to move them anyway when --allow-big-keys was given. */
export async function withBigKeys(plan: Plan, live: LiveCluster, opts: { show: boolean; allow: boolean }): Promise<Plan> {
  const { bigKeys, warnings } = await findBigKeys(plan, live, opts.show);
  return {
    ...plan,
    warnings: [...plan.warnings, ...warnings],
    ...(bigKeys.length > 0 ? { bigKeys } : {}),
    ...(opts.allow ? { allowBigKeys: true } : {}),
  };
}
