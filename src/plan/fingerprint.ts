import { createHash } from 'node:crypto';
import type { ClusterNodeEntry, LiveCluster } from '../live/types.js';

/**
 * A hash of the topology the plan was computed from: who is reachable, each node's own entry
 * (id, role, master, slots, open slots: what it claims for itself, which together make the slot
 * map and the roles), how many nodes each one knows, in handshake and failed, saved views of
 * stopped nodes, and each node's config file. Key counts and ping times are left out: they
 * change all the time and don't make a plan wrong.
 *
 * Linear in the nodes: every view is O(nodes), so hashing whole views would cost O(nodes²)
 * (seconds for a thousand masters); a node's own entry and its counts say the same for a plan.
 */
export function fingerprint(live: LiveCluster): string {
  const hash = createHash('sha256');
  for (const n of [...live.nodes].sort((a, b) => a.address.localeCompare(b.address))) {
    const own = n.view.find((e) => e.myself);
    const counts = { known: 0, handshake: 0, failed: 0 };
    for (const e of n.view) {
      if (e.handshake) counts.handshake++;
      else counts.known++;
      if (e.fail) counts.failed++;
    }
    hash.update(
      JSON.stringify([
        n.address,
        n.reachable,
        n.clusterEnabled,
        n.id ?? null,
        own ? entry(own) : null,
        counts,
        n.onDisk ? n.onDisk.view.map(entry) : null,
        n.facts ? [n.facts.configFile, n.facts.configText === null ? null : createHash('sha256').update(n.facts.configText).digest('hex')] : null,
        n.facts?.standalone ? [n.facts.standalone.address, n.facts.standalone.clusterEnabled] : null,
      ]),
    );
    hash.update('\n');
  }
  return 'sha256:' + hash.digest('hex');
}

function entry(e: ClusterNodeEntry): unknown[] {
  return [e.id, `${e.host}:${e.port}`, e.role, e.masterId, e.slots, e.migrating, e.importing, e.fail, e.handshake];
}
