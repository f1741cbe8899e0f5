import { Cluster } from 'ioredis';

/**
 * A cluster client that writes `<prefix><i>` = i through a failover or a topology change, until
 * stopped. A write that fails (a dead master's slots before its replica takes over) was not
 * acknowledged and is not counted; every acknowledged key must hold its value at the end.
 */
export interface Writer {
  /** Stop writing, read every acknowledged key back, close the client. */
  finish(): Promise<{ acked: number; wrong: string[] }>;
}

/** `password`: the one this client logs in with, when the cluster has one. */
export function writeThroughout(seed: { host: string; port: number }, prefix = 'fo:', password?: string): Writer {
  // A short command timeout: a write queued to a node that died must fail, not wait for ever.
  const redisOptions = { commandTimeout: 1000, ...(password !== undefined ? { password } : {}) };
  const client = new Cluster([seed], { maxRedirections: 64, retryDelayOnTryAgain: 20, retryDelayOnClusterDown: 50, clusterRetryStrategy: () => 50, redisOptions });
  client.on('error', () => {});
  let stopped = false;
  const acked: string[] = [];
  const loop = (async () => {
    for (let i = 0; !stopped; i++) {
      try {
        await client.set(`${prefix}${i}`, String(i));
        acked.push(`${prefix}${i}`);
      } catch {
        await new Promise((r) => setTimeout(r, 20));
      }
    }
  })();
  return {
    finish: async () => {
      stopped = true;
      await loop;
      try {
        const values = await Promise.all(acked.map((k) => client.get(k)));
        return { acked: acked.length, wrong: acked.filter((k, i) => values[i] !== k.slice(prefix.length)) };
      } finally {
        client.disconnect();
      }
    },
  };
}
