import { countSlots, formatRanges } from '../live/parse.js';
import type { Step, StepGroup, StepKind } from '../plan/types.js';

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
      return `set ${step.config.changed.map((c) => `${c.directive} ${c.to}`).join(', ')} on ${step.node} live (no restart)`;
    case 'set_config_epoch':
      return `set config epoch ${step.epoch} on ${step.node}`;
    case 'meet_node':
      return `meet ${step.node} via ${step.via.join(', ')}`;
    case 'wait_join':
      return `wait until ${step.nodes.length} nodes know each other`;
    case 'add_slots':
      return `assign slots ${formatRanges(step.ranges)} (${countSlots(step.ranges)}) to ${step.node}`;
    case 'wait_cluster_ok':
      return `wait until ${step.nodes.length} nodes agree on slots and report cluster_state:ok`;
    case 'replicate':
      return `make ${step.node} a replica of ${step.master}`;
    case 'wait_replication':
      return `wait until ${step.replicas.length} replica(s) report master_link_status:up`;
  }
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
      return 'slots';
    case 'replicate':
    case 'wait_replication':
      return 'replicas';
  }
}

/** + adds something, ~ changes something in place, · only waits. */
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
      return '~';
    default:
      return '·';
  }
}
