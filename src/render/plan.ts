import { countSlots, formatRanges } from '../live/parse.js';
import { MIGRATION_WINDOW, RAMP_RATIO, type Plan, type StepGroup } from '../plan/types.js';
import { describeStep, formatCount, stepGroup, stepMarker } from './steps.js';
import { bigKeysNote, renderBigKeys } from './bigKeys.js';

const GROUP_TITLES: Record<StepGroup, string> = {
  provision: 'Nodes',
  join: 'Membership',
  slots: 'Slots',
  replicas: 'Replicas',
  removal: 'Removal',
};

/** The human plan: steps grouped with +/~ markers, then a one-line summary. */
export function renderPlan(plan: Plan): string {
  const out: string[] = [];
  for (const w of plan.warnings) out.push(`Warning: ${w}`);
  if (plan.warnings.length > 0) out.push('');
  const down = plan.down ?? [];
  for (const d of down) {
    out.push(`Down: ${d.node}: ${d.reason}; ${d.failed ? 'the cluster marks it failed; ' : ''}it is ${d.role}. Nothing is planned for it; it is read again when it answers.`);
  }
  if (down.length > 0) out.push('');
  if (plan.steps.length === 0) {
    const downNote = down.length > 0 ? `, ${down.length} of them down` : '';
    out.push(`No changes. Cluster "${plan.desired.name}" matches the spec (${plan.desired.nodes.length} nodes${downNote}).`);
    return out.join('\n') + '\n';
  }
  // Which path Redis traffic takes from here: through SSH (ssh.tunnel), or straight to the ports.
  const path = plan.desired.connection === 'ssh' ? (plan.desired.defaults.ssh.tunnel ? '; Redis through SSH tunnels' : '; Redis directly') : '';
  out.push(`rcluster will perform the following actions on cluster "${plan.desired.name}" (connection: ${plan.desired.connection}${path}):`, '');
  let group: StepGroup | undefined;
  for (const step of plan.steps) {
    // A wait belongs with the steps it waits for, so it never opens a heading of its own.
    const g = stepMarker(step.kind) === '·' && group ? group : stepGroup(step.kind);
    if (g !== group) {
      if (group) out.push('');
      out.push(`  ${GROUP_TITLES[g]}`);
      group = g;
    }
    out.push(`    ${stepMarker(step.kind)} ${describeStep(step)}`);
    const config = 'config' in step ? step.config : undefined;
    if (config?.diff) out.push(...indentDiff(config.diff));
  }
  out.push(...migrationLines(plan));
  out.push(...renderBigKeys(plan));
  out.push('', '  Resulting layout');
  for (const r of plan.roles) {
    if (r.role === 'master') out.push(`    M ${r.node}  slots ${formatRanges(r.slots, 8)} (${countSlots(r.slots)})`);
  }
  for (const r of plan.roles) {
    if (r.role === 'replica') out.push(`    S ${r.node}  replica of ${r.master}`);
  }
  out.push('', summaryLine(plan));
  if (down.length > 0) out.push(`Apply goes ahead without ${down.map((d) => d.node).join(', ')} only with --allow-down.`);
  out.push(...bigKeysNote(plan));
  return out.join('\n') + '\n';
}

/**
 * How slots move, where they do: the window every move keeps, and the ramp towards each master
 * clients do not know yet (one line each).
 */
function migrationLines(plan: Plan): string[] {
  const atomic = (s: Plan['steps'][number]) => s.kind === 'migrate_slots' && s.strategy?.kind === 'atomic';
  const moves = plan.steps.filter((s) => (s.kind === 'migrate_slots' || s.kind === 'finish_migration') && !atomic(s));
  const out: string[] = [];
  if (plan.steps.some(atomic)) {
    out.push(
      '',
      '  Slots move server-side (every node runs Valkey >= 9): one CLUSTER MIGRATESLOTS on each source, which serves the slots\' keys until the target takes them over (clients meet no -ASK).',
    );
  }
  if (moves.length === 0) return out;
  out.push(
    '',
    `  Slots move in groups of ${MIGRATION_WINDOW / 2} from each source, at most ${MIGRATION_WINDOW} in MIGRATING on a source at once (a moved slot answers clients -ASK until it is handed over).`,
  );
  const ramps = new Set(plan.steps.flatMap((s) => (s.kind === 'migrate_slots' && s.newTarget && !atomic(s) ? [s.to] : [])));
  for (const to of ramps) {
    out.push(
      `  ${to} owns no slot yet, so clients do not know it: its first slot moves alone, then at most 1 slot migrates to it per ${RAMP_RATIO} already handed over (a client learns a node from -MOVED; some fail on an -ASK to a node they do not know).`,
    );
  }
  return out;
}

/** The unified diff under its step, without the patch's own header noise. */
function indentDiff(diff: string): string[] {
  return diff
    .split('\n')
    .filter((l) => l !== '' && !l.startsWith('=====') && !l.startsWith('Index: '))
    .map((l) => `        ${l}`);
}

export function summaryLine(plan: Plan): string {
  const count = (k: string) => plan.steps.filter((s) => s.kind === k).length;
  const slots = plan.steps.reduce((n, s) => n + (s.kind === 'add_slots' ? countSlots(s.ranges) : 0), 0);
  const moved = plan.steps.reduce((n, s) => n + (s.kind === 'migrate_slots' ? s.count : 0), 0);
  const keys = plan.steps.reduce((n, s) => n + (s.kind === 'migrate_slots' || s.kind === 'finish_migration' ? s.keys : 0), 0);
  const parts = [
    [count('provision_node'), 'node(s) to provision'],
    [count('restart_node'), 'node(s) to restart'],
    [count('set_config'), 'node(s) to change live'],
    [count('finish_migration'), 'interrupted migration(s) to finish'],
    [count('meet_node'), 'to meet'],
    [slots, 'slot(s) to assign'],
    [moved, `slot(s) to move (~${formatCount(keys)} keys)`],
    [count('failover'), 'failover(s)'],
    [count('replicate'), 'replica(s) to attach'],
    [count('remove_node'), 'node(s) to remove'],
  ]
    .filter(([n]) => (n as number) > 0)
    .map(([n, what]) => `${n} ${what}`);
  return `Plan: ${parts.length > 0 ? parts.join(', ') : `${plan.steps.length} step(s)`}.`;
}
