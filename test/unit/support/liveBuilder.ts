/**
 * In-memory LiveCluster values for planner tests: no Redis, no sockets. Views are written as
 * CLUSTER NODES text and read back with the real parser, so they have the shape inspection gives.
 */
import { createHash } from 'node:crypto';
import { formatRanges, parseClusterNodes } from '../../../src/live/parse.js';
import type { ClusterNodeEntry, LiveCluster, LiveNode, SlotRange } from '../../../src/live/types.js';
import { parseSpec } from '../../../src/spec/load.js';
import type { DesiredCluster } from '../../../src/spec/types.js';

/** A stable 40-hex node id for an address (salt gives a different id to the "same" node). */
export function idOf(address: string, salt = ''): string {
  return createHash('sha1').update(`${salt}${address}`).digest('hex');
}

function splitAddress(address: string): { host: string; port: number } {
  const colon = address.lastIndexOf(':');
  return { host: address.slice(0, colon), port: Number(address.slice(colon + 1)) };
}

/** Spec text -> DesiredCluster; fails the test if the spec has errors. */
export function specFrom(text: string): DesiredCluster {
  const result = parseSpec(text, '/tmp/rcluster-unit/cluster.yaml');
  if (!result.desired) {
    throw new Error(`test spec does not load:\n${result.diagnostics.map((d) => `${d.line}:${d.col} ${d.message}`).join('\n')}`);
  }
  return result.desired;
}

export function addresses(count: number, first = 7001, host = '127.0.0.1'): string[] {
  return Array.from({ length: count }, (_, i) => `${host}:${first + i}`);
}

/** A spec over the given addresses (default: connection local, replicasPerMaster 1, masters derived). */
export function spec(
  nodes: string[],
  opts: { connection?: 'local' | 'ssh' | 'none'; masters?: number; replicasPerMaster?: number; name?: string } = {},
): DesiredCluster {
  const lines = [`name: ${opts.name ?? 'unit'}`, `connection: ${opts.connection ?? 'local'}`];
  if (opts.replicasPerMaster !== undefined) lines.push(`replicasPerMaster: ${opts.replicasPerMaster}`);
  if (opts.masters !== undefined) lines.push(`masters: ${opts.masters}`);
  lines.push('nodes:', ...nodes.map((a) => `  - ${a}`));
  return specFrom(lines.join('\n') + '\n');
}

function base(address: string): Pick<LiveNode, 'address' | 'host' | 'port'> {
  return { address, ...splitAddress(address) };
}

/** A node that does not answer (no cluster config file on disk unless given). */
export function unreachableNode(address: string, error = 'connect ECONNREFUSED', onDisk?: { path: string; view: ClusterNodeEntry[] }): LiveNode {
  const n: LiveNode = { ...base(address), reachable: false, error, clusterEnabled: false, view: [], clusterInfo: {}, keys: 0 };
  if (onDisk) n.onDisk = onDisk;
  return n;
}

/** A redis-server that answers but runs with cluster-enabled no. */
export function plainRedisNode(address: string, keys = 0): LiveNode {
  return {
    ...base(address),
    reachable: true,
    clusterEnabled: false,
    view: [],
    clusterInfo: {},
    replication: { role: 'master', connectedReplicas: 0 },
    keys,
    redisVersion: '7.2.4',
  };
}

/** A running cluster-enabled node that knows only itself: no slots, config epoch 0. */
export function freshNode(address: string, opts: { keys?: number; id?: string } = {}): LiveNode {
  const id = opts.id ?? idOf(address);
  const { host, port } = splitAddress(address);
  const view = parseClusterNodes(`${id} ${host}:${port}@${port + 10000} myself,master - 0 0 0 connected\n`);
  return {
    ...base(address),
    reachable: true,
    clusterEnabled: true,
    id,
    view,
    clusterInfo: { cluster_state: 'fail', cluster_slots_assigned: '0', cluster_known_nodes: '1', cluster_size: '0', cluster_current_epoch: '0' },
    replication: { role: 'master', connectedReplicas: 0 },
    keys: opts.keys ?? 0,
    redisVersion: '7.2.4',
  };
}

/** One node of a joined cluster. Roles, slots and links are the same in every member's view. */
export interface Member {
  address: string;
  id?: string;
  /** Address of its master: the node is a replica. */
  master?: string;
  slots?: SlotRange[];
  /** Config epoch (default: position + 1 for masters, the master's for replicas). */
  epoch?: number;
  /** Open slots, shown (as Redis does) only in the node's own view. */
  migrating?: { slot: number; to: string }[];
  importing?: { slot: number; from: string }[];
  keys?: number;
  /** Keys per slot (COUNTKEYSINSLOT), for a master. */
  slotKeys?: Map<number, number>;
  /** Shown with the `fail` flag in everybody's view. */
  failed?: boolean;
  /** Addresses this node's view contains besides itself (default: every member). */
  knows?: string[];
  /** Not inspected (a node outside the spec): it appears in views but gets no LiveNode. */
  notInspected?: boolean;
  /** pong-recv time written in views (fingerprints must ignore it). */
  pong?: number;
}

/** The redis-cli create layout: 3 masters with 0-5460, 5461-10922, 10923-16383. */
export const CREATE_RANGES: SlotRange[] = [
  { start: 0, end: 5460 },
  { start: 5461, end: 10922 },
  { start: 10923, end: 16383 },
];

/** A cluster whose members all see the same topology (each with itself as `myself`). */
export function joinedCluster(members: Member[], extra: LiveNode[] = []): LiveCluster {
  const byAddress = new Map(members.map((m) => [m.address, m]));
  const idFor = (address: string): string => byAddress.get(address)?.id ?? idOf(address);
  const epochOf = (m: Member, i: number): number => {
    if (m.epoch !== undefined) return m.epoch;
    if (m.master !== undefined) {
      const master = byAddress.get(m.master);
      return master ? epochOf(master, members.indexOf(master)) : 0;
    }
    return i + 1;
  };
  const line = (m: Member, i: number, myself: boolean): string => {
    const { host, port } = splitAddress(m.address);
    const flags = [...(myself ? ['myself'] : []), m.master !== undefined ? 'slave' : 'master', ...(m.failed ? ['fail'] : [])].join(',');
    const masterId = m.master !== undefined ? idFor(m.master) : '-';
    const slots = formatRanges(m.slots ?? []).split(',').filter((s) => s !== '');
    if (myself) {
      for (const o of m.migrating ?? []) slots.push(`[${o.slot}->-${idFor(o.to)}]`);
      for (const o of m.importing ?? []) slots.push(`[${o.slot}-<-${idFor(o.from)}]`);
    }
    const link = m.failed && !myself ? 'disconnected' : 'connected';
    return [idFor(m.address), `${host}:${port}@${port + 10000}`, flags, masterId, 0, m.pong ?? 1700000000000 + i, epochOf(m, i), link, ...slots].join(' ');
  };
  const assigned = members.reduce((n, m) => n + (m.slots ?? []).reduce((k, r) => k + r.end - r.start + 1, 0), 0);

  const nodes: LiveNode[] = [];
  members.forEach((m, i) => {
    if (m.notInspected) return;
    const known = new Set(m.knows ?? members.map((o) => o.address));
    const lines = members.map((o, j) => (o === m ? line(o, j, true) : known.has(o.address) ? line(o, j, false) : undefined)).filter((l): l is string => !!l);
    const master = m.master !== undefined ? splitAddress(m.master) : undefined;
    nodes.push({
      ...base(m.address),
      reachable: true,
      clusterEnabled: true,
      id: idFor(m.address),
      view: parseClusterNodes(lines.join('\n') + '\n'),
      clusterInfo: {
        cluster_state: assigned === 16384 ? 'ok' : 'fail',
        cluster_slots_assigned: String(assigned),
        cluster_known_nodes: String(lines.length),
      },
      replication: master
        ? { role: 'replica', masterHost: master.host, masterPort: master.port, masterLinkStatus: 'up', connectedReplicas: 0 }
        : { role: 'master', connectedReplicas: members.filter((o) => o.master === m.address).length },
      keys: m.keys ?? 0,
      ...(m.slotKeys ? { slotKeys: m.slotKeys } : {}),
      redisVersion: '7.2.4',
    });
  });
  return { nodes: [...nodes, ...extra] };
}

/**
 * A healthy 3+3 cluster over six addresses: the first three are masters with the create layout,
 * replica i+3 follows master i.
 */
export function healthyMembers(addrs: string[]): Member[] {
  const [m1, m2, m3, r1, r2, r3] = addrs as [string, string, string, string, string, string];
  return [
    { address: m1, slots: [CREATE_RANGES[0]!] },
    { address: m2, slots: [CREATE_RANGES[1]!] },
    { address: m3, slots: [CREATE_RANGES[2]!] },
    { address: r1, master: m1 },
    { address: r2, master: m2 },
    { address: r3, master: m3 },
  ];
}

export function healthyCluster(addrs: string[] = addresses(6)): LiveCluster {
  return joinedCluster(healthyMembers(addrs));
}
