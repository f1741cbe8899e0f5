import { createHash } from 'node:crypto';
import type { ClusterNodeEntry, LiveCluster } from '../live/types.js';
import { maskConfigText } from '../live/auth.js';

/**
 * A hash of what the plan was computed from: who is reachable, each node's own entry
 * (id, role, master, slots, open slots: what it claims for itself, which together make the slot
 * map and the roles), how many nodes each one knows, in handshake and failed, saved views of
 * stopped nodes, each node's config file, and whether keys sit where the plan refuses them.
 * Key counts and ping times are left out: they change all the time and don't make a plan wrong.
 *
 * Linear in the nodes: every view is O(nodes), so hashing whole views would cost O(nodes²)
 * (seconds for a thousand masters); a node's own entry and its counts say the same for a plan.
 */
export function fingerprint(live: LiveCluster): string {
  const hash = createHash('sha256');
  for (const [address, h] of Object.entries(nodeFingerprints(live)).sort(([a], [b]) => a.localeCompare(b))) hash.update(`${address} ${h}\n`);
  return 'sha256:' + hash.digest('hex');
}

/** The same, node by node, so that a stale saved plan can say which nodes changed. */
export function nodeFingerprints(live: LiveCluster): Record<string, string> {
  const out: Record<string, string> = {};
  for (const n of live.nodes) {
    const own = n.view.find((e) => e.myself);
    const counts = { known: 0, handshake: 0, failed: 0 };
    for (const e of n.view) {
      if (e.handshake) counts.handshake++;
      else counts.known++;
      if (e.fail) counts.failed++;
    }
    const canonical = JSON.stringify([
      n.reachable,
      n.clusterEnabled,
      n.id ?? null,
      own ? entry(own) : null,
      counts,
      n.onDisk ? n.onDisk.view.map(entry) : null,
      // Passwords in the file are hashed as what they are (the spec's, another), never as
      // themselves: a plan file must not carry anything a password could be guessed against.
      n.facts ? [n.facts.configFile, n.facts.configText === null ? null : createHash('sha256').update(maskConfigText(n.facts.configText)).digest('hex')] : null,
      n.auth ? [n.auth.acceptedBy, n.auth.accepts, n.auth.masterauthOk] : null,
      n.facts?.standalone ? [n.facts.standalone.address, n.facts.standalone.clusterEnabled] : null,
      // Whether data sits where the plan refuses it (a standalone redis, a node outside the
      // cluster): a plan saved while it was empty must not strand keys that arrived since.
      // Not the counts themselves: a cluster serving writes changes them all the time.
      [!n.clusterEnabled && n.keys > 0, (n.facts?.standalone?.keys ?? 0) > 0, (n.facts?.onHost?.keys ?? 0) > 0],
    ]);
    out[n.address] = createHash('sha256').update(canonical).digest('hex').slice(0, 16);
  }
  return out;
}

function entry(e: ClusterNodeEntry): unknown[] {
  return [e.id, `${e.host}:${e.port}`, e.role, e.masterId, e.slots, e.migrating, e.importing, e.fail, e.handshake];
}
