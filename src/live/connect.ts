import { Redis } from 'ioredis';

export interface ConnectOptions {
  connectTimeoutMs?: number;
  commandTimeoutMs?: number;
}

export function splitAddress(address: string): { host: string; port: number } {
  const i = address.lastIndexOf(':');
  return { host: address.slice(0, i), port: Number(address.slice(i + 1)) };
}

/**
 * A plain (non-cluster) connection to one node. rcluster talks to each node directly and never
 * follows redirects: it must see what each node itself believes. No retries, so that an absent
 * node is reported at once instead of hanging.
 */
export async function connectNode(address: string, opts: ConnectOptions = {}): Promise<Redis> {
  const { host, port } = splitAddress(address);
  const client = new Redis({
    host,
    port,
    lazyConnect: true,
    connectTimeout: opts.connectTimeoutMs ?? 2000,
    commandTimeout: opts.commandTimeoutMs ?? 10_000,
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
    enableReadyCheck: false,
    retryStrategy: () => null,
    reconnectOnError: () => false,
  });
  // Errors surface through the rejected command; an unhandled 'error' event would only add noise.
  client.on('error', () => {});
  try {
    await client.connect();
  } catch (err) {
    client.disconnect();
    throw err;
  }
  return client;
}

/** Short text for a connection failure: "connection refused", "timed out", or the server's reply. */
export function describeRedisError(err: unknown): string {
  const e = err as { code?: string; message?: string };
  if (e?.code === 'ECONNREFUSED') return 'connection refused';
  if (e?.code === 'ETIMEDOUT' || /timed? ?out/i.test(e?.message ?? '')) return 'timed out';
  if (e?.code === 'EHOSTUNREACH') return 'host unreachable';
  return e?.message ?? String(err);
}
