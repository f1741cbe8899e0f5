import { countSlots, formatRanges } from '../live/parse.js';
import { toRanges } from '../plan/slots.js';
import { JOIN_NODE_TIMEOUT_MS, type Step, type StepGroup, type StepKind } from '../plan/types.js';

/** One line naming a step, the same in the plan, the progress view, errors and JSON. */
export function describeStep(step: Step): string {
  switch (step.kind) {
    case 'provision_node':
      return step.config ? `configure ${step.node} and restart it as a cluster node${via(step.service)} (${step.reason})` : `start ${step.node} (${step.reason})`;
    case 'restart_node': {
      const first = step.failoverTo
        ? `; first ${step.failoverTo} takes over its slots (CLUSTER FAILOVER) and it comes back as that node's replica`
        : step.saveFirst
          ? '; no in-sync replica can take over its slots, so its writes are paused and it is saved first'
          : '';
      return `restart ${step.node}${via(step.service)} (${step.reason})${first}`;
    }
    case 'set_config':
      // A password is shown as what it is; a live-only password change (the file already says
      // it) has no diff below, so it says what the node accepts now.
      return `set ${step.config.changed.map((c) => (c.secret && c.from !== null && !step.config.diff ? `${c.directive} ${c.from} → ${c.to}` : `${c.directive} ${c.to}`)).join(', ')} on ${step.node} live (no restart)`;
    case 'set_config_epoch':
      return `set config epoch ${step.epoch} on ${step.node}`;
    case 'meet_node':
      // Apply shortens a node's rejoin delay (README, "A joining node is writable sooner").
      return `meet ${step.node} via ${step.via.join(', ')} (if it has run alone: node timeout ${JOIN_NODE_TIMEOUT_MS} ms until it joins)`;
    case 'wait_join':
      return `wait until ${step.nodes.length} nodes know each other`;
    case 'add_slots':
      return `assign slots ${formatRanges(step.ranges)} (${countSlots(step.ranges)}) to ${step.node}`;
    case 'wait_cluster_ok':
      return `wait until ${step.nodes.length} nodes agree on slots and report cluster_state:ok`;
    case 'replicate':
      return `make ${step.node} a replica of ${step.master}${step.resync ? ' (a full sync from its new master)' : ''}`;
    case 'wait_replication':
      return `wait until ${step.replicas.length} replica(s) report master_link_status:up and every node agrees on the roles`;
    case 'finish_migration':
      return `finish migration of ${step.slots.length === 1 ? `slot ${step.slots[0]}` : `${step.slots.length} slots (${formatRanges(toRanges(step.slots), 6)})`} ${step.from} → ${step.to} (${formatCount(step.keys)} key(s) left)`;
    case 'migrate_slots':
      return `move ${step.count} slot(s) (~${formatCount(step.keys)} keys) ${step.from} → ${step.to}${step.lastSlots ? ` (its last slots; ${step.from} stays a master until it is removed)` : ''}${strategyNote(step)}`;
    case 'wait_slot_migrations':
      return `wait for the server-side migration(s) already in progress (${step.jobs.map((j) => `${formatRanges(j.ranges, 4)} ${j.source} → ${j.target}`).join('; ')}) to end`;
    case 'failover':
      return step.preferred
        ? `${step.node} takes its shard's master role back from ${step.master} (CLUSTER FAILOVER; it is preferredMaster), and ${step.master} becomes its replica`
        : `${step.node} takes over the slots of ${step.master} (CLUSTER FAILOVER), which leaves the spec`;
    case 'reset_node': {
      const what = [
        `FLUSHALL (${step.keys < 0 ? 'whatever keys it loads when it starts' : `${formatCount(step.keys)} key(s)`})`,
        `CLUSTER RESET HARD (it forgets ${step.knows.length > 0 ? step.knows.join(', ') : 'no other node'}${step.slots.length > 0 ? ` and slots ${formatRanges(step.slots, 6)}` : ''})`,
      ];
      return `wipe ${step.node}: ${what.join(' and ')}, so that it joins as a new, empty node`;
    }
    case 'forget_node':
      return `forget ${step.node} (${step.id.slice(0, 8)}) on ${step.via.length} node(s)`;
    case 'remove_node':
      return step.reachable
        ? `reset ${step.node} (CLUSTER RESET SOFT)${step.stop ? ` and stop it${via(step.service)}` : ''}, so that it can be re-added cleanly${step.clientsWaitMs ? `, once no client uses it any more (${step.clientsWaitMs / 1000} s at most)` : ''}`
        : step.wasReset
          ? `${step.node} is stopped, and was reset before it stopped (its saved state knows no other node): it is only forgotten`
          : `${step.node} does not answer: it is only forgotten; reset it (CLUSTER RESET HARD) before it comes back`;
  }
}

/**
 * How a move goes: `(atomic, server-side)` (Valkey CLUSTER MIGRATESLOTS: no -ASK, so no ramp),
 * or `(MIGRATE)` with the ramp towards a new master, and on a Valkey cluster why not atomic.
 */
function strategyNote(step: Extract<Step, { kind: 'migrate_slots' }>): string {
  if (step.strategy?.kind === 'atomic') return ' (atomic, server-side)';
  const why = step.strategy?.why ? `: ${step.strategy.why}` : '';
  return ` (MIGRATE${why})${step.newTarget ? ' (new to clients: on a ramp)' : ''}`;
}

/** 83400 -> "83,400". */
export function formatCount(n: number): string {
  return n.toLocaleString('en-US');
}

function via(service: string | undefined): string {
  return service ? ` through ${service}` : '';
}

const PHASE_TITLES: Record<StepKind, (n: number) => string> = {
  provision_node: (n) => `Provision ${n} node(s)`,
  restart_node: (n) => `Restart ${n} node(s), one at a time`,
  set_config: (n) => `Change config live on ${n} node(s)`,
  set_config_epoch: (n) => `Set config epochs on ${n} node(s)`,
  meet_node: (n) => `Meet ${n} node(s)`,
  wait_join: () => 'Wait for nodes to join',
  add_slots: (n) => `Assign slots to ${n} master(s)`,
  wait_cluster_ok: () => 'Wait for cluster_state:ok',
  replicate: (n) => `Attach ${n} replica(s)`,
  wait_replication: () => 'Wait for replicas to sync',
  finish_migration: (n) => `Finish ${n} interrupted slot migration(s)`,
  migrate_slots: (n) => `Move slots between ${n} pair(s) of masters`,
  wait_slot_migrations: () => 'Wait for server-side migrations in progress',
  failover: (n) => `Fail over ${n} master(s) to their replicas`,
  reset_node: (n) => `Wipe ${n} node(s) re-added with --allow-reset`,
  forget_node: (n) => `Forget ${n} node(s)`,
  remove_node: (n) => `Reset and stop ${n} removed node(s)`,
};

export function phaseTitle(kind: StepKind, count: number): string {
  return PHASE_TITLES[kind](count);
}

export function stepGroup(kind: StepKind): StepGroup {
  switch (kind) {
    case 'provision_node':
    case 'restart_node':
    case 'set_config':
      return 'provision';
    case 'set_config_epoch':
    case 'meet_node':
    case 'wait_join':
      return 'join';
    case 'add_slots':
    case 'wait_cluster_ok':
    case 'finish_migration':
    case 'migrate_slots':
    case 'wait_slot_migrations':
      return 'slots';
    case 'replicate':
    case 'wait_replication':
    case 'failover':
      return 'replicas';
    case 'forget_node':
    case 'remove_node':
      return 'removal';
    case 'reset_node':
      return 'join';
  }
}

/** + adds something, ~ changes something in place, - removes something, · only waits. */
export function stepMarker(kind: StepKind): string {
  switch (kind) {
    case 'provision_node':
    case 'meet_node':
    case 'add_slots':
      return '+';
    case 'set_config_epoch':
    case 'replicate':
    case 'restart_node':
    case 'set_config':
    case 'finish_migration':
    case 'migrate_slots':
    case 'failover':
      return '~';
    case 'forget_node':
    case 'remove_node':
    case 'reset_node':
      return '-';
    case 'wait_join':
    case 'wait_cluster_ok':
    case 'wait_replication':
    case 'wait_slot_migrations':
      return '·';
  }
}
