import { posix } from 'node:path';
import pLimit from 'p-limit';
import type { HostDriver } from '../hosts/driver.js';
import type { DesiredCluster, DesiredNode } from '../spec/types.js';
import { connectNode, describeRedisError } from './connect.js';
import { parseClusterNodes, parseInfo, parseKeyspaceKeys, parseReplication } from './parse.js';
import type { LiveCluster, LiveNode } from './types.js';

export interface InspectOptions {
  /** Used to read the cluster config file of a node that does not answer. */
  driver?: HostDriver;
  concurrency?: number;
}

/** Read every node of the spec, in parallel. Unreachable nodes are facts, not errors. */
export async function inspectCluster(desired: DesiredCluster, opts: InspectOptions = {}): Promise<LiveCluster> {
  const limit = pLimit(opts.concurrency ?? 16);
  const nodes = await Promise.all(desired.nodes.map((n) => limit(() => inspectNode(n, opts.driver))));
  return { nodes };
}

export async function inspectNode(node: DesiredNode, driver?: HostDriver): Promise<LiveNode> {
  const base: LiveNode = { address: node.address, host: node.host, port: node.port, reachable: false, clusterEnabled: false, view: [], clusterInfo: {}, keys: 0 };
  let client;
  try {
    client = await connectNode(node.address);
  } catch (err) {
    return { ...base, error: describeRedisError(err), onDisk: await readOnDiskView(node, driver) };
  }
  try {
    const info = parseInfo(await client.info());
    const live: LiveNode = {
      ...base,
      reachable: true,
      clusterEnabled: info['cluster_enabled'] === '1',
      replication: parseReplication(info),
      keys: parseKeyspaceKeys(info),
      redisVersion: info['redis_version'],
    };
    if (live.clusterEnabled) {
      const [nodesText, infoText, myId] = await Promise.all([
        client.call('CLUSTER', 'NODES') as Promise<string>,
        client.call('CLUSTER', 'INFO') as Promise<string>,
        client.call('CLUSTER', 'MYID') as Promise<string>,
      ]);
      live.view = parseClusterNodes(nodesText);
      live.clusterInfo = parseInfo(infoText);
      live.id = myId;
    }
    return live;
  } catch (err) {
    return { ...base, reachable: false, error: describeRedisError(err) };
  } finally {
    client.disconnect();
  }
}

/**
 * A stopped node comes back with the cluster state saved in its cluster config file; reading it
 * lets the plan say what restarting the node will lead to instead of guessing "fresh".
 */
async function readOnDiskView(node: DesiredNode, driver?: HostDriver): Promise<LiveNode['onDisk']> {
  if (!driver || driver.kind === 'none') return undefined;
  // Redis reads cluster-config-file relative to dir.
  const path = posix.resolve(node.redis.dataDir, node.redis.clusterConfigFile);
  try {
    const text = await driver.readFile(node.host, path);
    if (text === null) return undefined;
    const lines = text.split('\n').filter((l) => l.trim() !== '' && !l.startsWith('vars '));
    return { path, view: parseClusterNodes(lines.join('\n')) };
  } catch {
    return undefined;
  }
}
