import { UsageError } from '../errors.js';
import { createSshDriver, type SshDriver } from '../hosts/ssh.js';
import { tunnelRoute } from '../hosts/tunnel.js';
import { redisRouted, useRedisRoute } from '../live/connect.js';
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
      // Hosts of nodes the spec no longer lists are reached with the cluster-wide settings.
      return sshDriverFor(desired, leaving, { otherHosts: true });
  }
}

export function sshDriverFor(desired: DesiredCluster, leaving: string[] = [], opts: { otherHosts?: boolean } = {}): SshDriver {
  return createSshDriver(
    [
      ...desired.nodes.map((n) => ({ host: n.host, ssh: n.ssh })),
      ...leaving.filter((host) => !desired.nodes.some((n) => n.host === host)).map((host) => ({ host, ssh: desired.defaults.ssh })),
    ],
    opts.otherHosts ? { otherHosts: desired.defaults.ssh } : {},
  );
}

/**
 * ssh.tunnel: Redis connections of this run go through SSH (one connection per host of their
 * own, for the whole command: the cluster lock's connections live as long as it).
 */
export function useTunnels(desired: DesiredCluster): void {
  if (desired.connection !== 'ssh' || !desired.defaults.ssh.tunnel || redisRouted()) return;
  useRedisRoute(tunnelRoute(sshDriverFor(desired, [], { otherHosts: true })));
}

function noneDriver(): HostDriver {
  const refuse = async (): Promise<never> => {
    throw new UsageError('connection: none manages topology only; rcluster does not touch hosts');
  };
  return { kind: 'none', readFile: refuse, writeFileAtomic: refuse, run: refuse, close: async () => {} };
}
