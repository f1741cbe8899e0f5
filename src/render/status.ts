import Table from 'cli-table3';
import type { ClusterStatus } from '../live/status.js';
import { SLOT_COUNT } from '../plan/slots.js';

export function renderStatus(name: string, s: ClusterStatus): string {
  const table = new Table({ head: ['master', 'id', 'keys', 'slots', 'ranges', 'replicas'], style: { head: [], border: [] } });
  for (const m of s.masters) {
    const link = (up: boolean | null) => (up === true ? '' : up === false ? ' (link down)' : ' (unreadable)');
    const replicas = m.replicas.map((r) => `${r.address} ${r.id.slice(0, 8)}${link(r.linkUp)}`).join('\n') || '(none)';
    table.push([`${m.address}${m.fail ? ' (fail)' : ''}`, m.id.slice(0, 8), m.keys ?? '?', m.slots, m.ranges, replicas]);
  }
  const c = s.checks;
  const mark = (ok: boolean) => (ok ? '[OK]' : '[ERR]');
  if (s.masters.length === 0 && !c.clusterStateOk) {
    return [`Cluster "${name}":`, ...s.problems.map((p) => `[ERR] ${p}`), `Unhealthy: ${s.problems.length} problem(s).`].join('\n') + '\n';
  }
  const lines = [
    `Cluster "${name}": ${s.masters.length} master(s), ${s.masters.reduce((n, m) => n + m.replicas.length, 0)} replica(s)`,
    table.toString(),
    `${mark(c.agree)} all nodes agree about slots configuration${c.agree ? '' : `: ${c.disagreeing.join(', ')} disagree`}`,
    `${mark(c.openSlots.length === 0)} ${c.openSlots.length === 0 ? 'no open slots' : `open slots: ${c.openSlots.join('; ')}`}`,
    `${mark(c.slotsCovered === SLOT_COUNT)} ${c.slotsCovered} of ${SLOT_COUNT} slots covered`,
    `${mark(c.unreachable.length === 0)} ${c.unreachable.length === 0 ? 'all nodes reachable' : `unreachable: ${c.unreachable.join(', ')}`}`,
    `${mark(c.clusterStateOk)} cluster_state ${c.clusterStateOk ? 'ok' : 'not ok on every node'}`,
    `${mark(c.replicasDown.length === 0)} ${c.replicasDown.length === 0 ? 'every replica link is up' : `replica link not up: ${c.replicasDown.join(', ')}`}`,
  ];
  if (c.notClusterEnabled.length > 0) lines.push(`[ERR] not cluster-enabled: ${c.notClusterEnabled.join(', ')}`);
  if (c.failed.length > 0) lines.push(`[ERR] failing nodes: ${c.failed.join(', ')}`);
  lines.push(s.healthy ? 'Healthy.' : `Unhealthy: ${s.problems.length} problem(s).`);
  return lines.join('\n') + '\n';
}
