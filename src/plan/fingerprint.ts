import { createHash } from 'node:crypto';
import type { LiveCluster } from '../live/types.js';

/**
 * A hash of the topology the plan was computed from: who is reachable, ids, roles, slot owners
 * open slots, and each node's config file. Key counts and ping times are left out: they change all the time and don't
 * make a plan wrong.
 */
export function fingerprint(live: LiveCluster): string {
  const canonical = [...live.nodes]
    .sort((a, b) => a.address.localeCompare(b.address))
    .map((n) => ({
      address: n.address,
      reachable: n.reachable,
      clusterEnabled: n.clusterEnabled,
      id: n.id ?? null,
      view: [...n.view]
        .sort((a, b) => a.id.localeCompare(b.id))
        .map((e) => [e.id, `${e.host}:${e.port}`, e.role, e.masterId, e.slots, e.migrating, e.importing, e.fail, e.handshake]),
      onDisk: n.onDisk ? n.onDisk.view.map((e) => [e.id, e.role, e.masterId, e.slots]) : null,
      config: n.facts ? [n.facts.configFile, n.facts.configText === null ? null : createHash('sha256').update(n.facts.configText).digest('hex')] : null,
      standalone: n.facts?.standalone ? [n.facts.standalone.address, n.facts.standalone.clusterEnabled] : null,
    }));
  return 'sha256:' + createHash('sha256').update(JSON.stringify(canonical)).digest('hex');
}
