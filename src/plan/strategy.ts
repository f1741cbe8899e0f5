import { serverLabel } from '../live/parse.js';
import { ATOMIC_MIN_VALKEY_MAJOR, supportsAtomic } from '../live/slotMigrations.js';
import type { LiveCluster, ServerInfo } from '../live/types.js';

export { ATOMIC_MIN_VALKEY_MAJOR, supportsAtomic };
import type { DesiredCluster } from '../spec/types.js';
import type { MigrationStrategy } from './types.js';

/**
 * How this plan's slots move: atomically, server-side, when every node of the cluster runs
 * Valkey >= 9; otherwise with the classic MIGRATE engine. Every node, replicas and nodes that
 * leave included: a job's keys reach the target's replicas through its replication stream, and a
 * mixed cluster (a rolling upgrade half done) is exactly where a command one node lacks fails.
 * A running node says what it runs (INFO server, LiveNode.server). One that does not run yet
 * (a new node) runs what the spec says once started: `redis.server`, and on ssh the version its
 * host reports (`valkey-server --version`); where that is unknown (connection local) a spec
 * that says valkey is taken at its word, and apply checks the running node before it sends the
 * first MIGRATESLOTS (apply/atomic.ts). Pure.
 */
export function migrationStrategy(desired: DesiredCluster, live: LiveCluster): MigrationStrategy {
  const byAddress = new Map(live.nodes.map((n) => [n.address, n]));
  const listed = new Set(desired.nodes.map((n) => n.address));
  const reasons: string[] = [];
  let valkey = false;
  const judge = (address: string, server: ServerInfo) => {
    if (server.name === 'valkey') valkey = true;
    if (!supportsAtomic(server)) reasons.push(`${address} is ${serverLabel(server)}`);
  };
  for (const node of desired.nodes) {
    const n = byAddress.get(node.address);
    if (n?.reachable && n.server) judge(node.address, n.server);
    else if (node.redis.server === 'valkey') judge(node.address, { name: 'valkey', version: n?.facts?.redisVersion ?? `${ATOMIC_MIN_VALKEY_MAJOR}` });
    else reasons.push(`${node.address} is to run redis`);
  }
  // Members the spec no longer lists (they leave, often after giving their slots away).
  for (const n of live.nodes) if (!listed.has(n.address) && n.reachable && n.clusterEnabled && n.server) judge(n.address, n.server);
  if (reasons.length === 0) return desired.migration === 'classic' ? { kind: 'classic', why: 'the spec says migration: classic' } : { kind: 'atomic' };
  // A Redis cluster gets no note: classic is all it has.
  if (!valkey) return { kind: 'classic' };
  return { kind: 'classic', why: `${reasons.slice(0, 2).join(', ')}${reasons.length > 2 ? ` and ${reasons.length - 2} more` : ''}; server-side migration needs Valkey >= ${ATOMIC_MIN_VALKEY_MAJOR} on every node` };
}
