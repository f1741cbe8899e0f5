import { HostError } from '../errors.js';
import type { HostDriver } from '../hosts/driver.js';
import { sh } from '../hosts/shell.js';
import { connectNode, describeRedisError } from '../live/connect.js';
import { parseInfo } from '../live/parse.js';
import { renderNodeConf } from '../provision/nodeConf.js';
import { readDirective } from '../provision/redisConf.js';
import type { ConnectionKind, DesiredNode } from '../spec/types.js';
import { waitFor } from './wait.js';

const START_TIMEOUT_MS = 15_000;

/** Write the node's config (keeping what is not rcluster's) and start redis-server on this machine. */
export async function startLocalNode(node: DesiredNode, driver: HostDriver, connection: ConnectionKind): Promise<void> {
  const { configFile, dataDir } = node.redis;
  const mk = await driver.run(node.host, `mkdir -p ${sh(dataDir)}`);
  if (mk.code !== 0) throw new HostError(node.address, 'create data directory', mk.stderr.trim() || `mkdir exited ${mk.code}`);
  const current = await driver.readFile(node.host, configFile);
  const conf = renderNodeConf(node, connection, current);
  if (current === null || conf.changed.length > 0) await driver.writeFileAtomic(node.host, configFile, conf.text, { backup: current !== null });

  const started = await driver.run(node.host, `redis-server ${sh(configFile)}`, { timeoutMs: START_TIMEOUT_MS });
  if (started.code !== 0) {
    const why = (started.stderr || started.stdout).trim().split('\n').slice(-3).join(' | ');
    throw new HostError(node.address, 'start redis-server', why || `redis-server exited ${started.code}`);
  }
  try {
    await waitUntilClusterNode(node.address, START_TIMEOUT_MS);
  } catch (err) {
    const log = readDirective(conf.text, 'logfile');
    const tail = log ? await driver.run(node.host, `tail -n 5 ${sh(log)}`) : undefined;
    const lines = tail?.stdout.trim();
    throw new HostError(node.address, 'start redis-server', `${(err as Error).message}${lines ? `; last log lines:\n${lines}` : ''}`);
  }
}

/** Wait until the node answers PING with cluster_enabled:1. */
export async function waitUntilClusterNode(address: string, timeoutMs: number): Promise<void> {
  await waitFor(
    `${address} to answer as a cluster node`,
    async () => {
      let client;
      try {
        client = await connectNode(address, { connectTimeoutMs: 1000 });
      } catch (err) {
        return describeRedisError(err);
      }
      try {
        const info = parseInfo(await client.info('cluster'));
        return info['cluster_enabled'] === '1' ? true : 'cluster_enabled is 0';
      } finally {
        client.disconnect();
      }
    },
    { timeoutMs },
  );
}

/** SHUTDOWN NOSAVE, then wait until the port refuses. Returns false when the node was not running. */
export async function stopNode(address: string, timeoutMs = 15_000): Promise<boolean> {
  let client;
  try {
    client = await connectNode(address, { connectTimeoutMs: 1000 });
  } catch {
    return false;
  }
  try {
    // NOW (Redis >= 7) skips waiting for replicas to catch up: the data is being thrown away.
    await client.call('SHUTDOWN', 'NOSAVE', 'NOW');
  } catch (err) {
    // The server closes the connection as it exits; that is the expected answer. An older
    // server rejects NOW with a syntax error and gets the plain form.
    if (/syntax|ERR/i.test((err as Error).message)) await client.call('SHUTDOWN', 'NOSAVE').catch(() => {});
  } finally {
    client.disconnect();
  }
  await waitFor(
    `${address} to stop`,
    async () => {
      try {
        const c = await connectNode(address, { connectTimeoutMs: 500 });
        c.disconnect();
        return 'still answering';
      } catch {
        return true;
      }
    },
    { timeoutMs },
  );
  return true;
}
