import { UsageError } from '../errors.js';
import { createSshDriver } from '../hosts/ssh.js';
import type { HostDriver } from '../hosts/driver.js';
import { createLocalDriver } from '../hosts/local.js';
import type { DesiredCluster } from '../spec/types.js';

/**
 * The HostDriver for the spec's connection. connection: none gets one that refuses host work.
 * `leaving`: hosts of nodes the spec no longer lists, reached with the cluster-wide settings.
 */
export function driverFor(desired: DesiredCluster, leaving: string[] = []): HostDriver {
  switch (desired.connection) {
    case 'local':
      return createLocalDriver();
    case 'none':
      return noneDriver();
    case 'ssh':
      return createSshDriver([
        ...desired.nodes.map((n) => ({ host: n.host, ssh: n.ssh })),
        ...leaving.filter((host) => !desired.nodes.some((n) => n.host === host)).map((host) => ({ host, ssh: desired.defaults.ssh })),
      ]);
  }
}

function noneDriver(): HostDriver {
  const refuse = async (): Promise<never> => {
    throw new UsageError('connection: none manages topology only; rcluster does not touch hosts');
  };
  return { kind: 'none', readFile: refuse, writeFileAtomic: refuse, run: refuse, close: async () => {} };
}
