import { UsageError } from '../errors.js';
import type { HostDriver } from '../hosts/driver.js';
import { createLocalDriver } from '../hosts/local.js';
import type { DesiredCluster } from '../spec/types.js';

/** The HostDriver for the spec's connection. connection: none gets one that refuses host work. */
export function driverFor(desired: DesiredCluster): HostDriver {
  switch (desired.connection) {
    case 'local':
      return createLocalDriver();
    case 'none':
      return noneDriver();
    case 'ssh':
      throw new UsageError(
        `${desired.source.file}: connection: ssh is not available in this version of rcluster yet; ` +
          `use connection: none for nodes that already run with cluster-enabled, or connection: local for a demo on this machine.`,
      );
  }
}

function noneDriver(): HostDriver {
  const refuse = async (): Promise<never> => {
    throw new UsageError('connection: none manages topology only; rcluster does not touch hosts');
  };
  return { kind: 'none', readFile: refuse, writeFileAtomic: refuse, run: refuse, close: async () => {} };
}
