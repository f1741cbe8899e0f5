import { Redis } from 'ioredis';
import { authenticate } from './auth.js';

export interface ConnectOptions {
  connectTimeoutMs?: number;
  commandTimeoutMs?: number;
  /**
   * Log in with this password (null: none) instead of the cluster's: a standalone redis that a
   * node replaces has the password of its own config file, if any.
   */
  password?: string | null;
}

/**
 * Where to dial for a node's address: itself, or (ssh.tunnel) a local port that leads through the
 * node's SSH connection. Set by the command for its whole run (cli/commands.ts).
 */
export type RedisRoute = (address: string) => Promise<{ host: string; port: number }>;
let route: RedisRoute | undefined;
let closeRoute: (() => Promise<void>) | undefined;

export function useRedisRoute(r: { route: RedisRoute; close: () => Promise<void> }): void {
  route = r.route;
  closeRoute = r.close;
}

export function redisRouted(): boolean {
  return route !== undefined;
}

/** Back to direct connections, closing the tunnels' SSH connections. */
export async function endRedisRoute(): Promise<void> {
  const close = closeRoute;
  route = undefined;
  closeRoute = undefined;
  await close?.();
}

export function splitAddress(address: string): { host: string; port: number } {
  const i = address.lastIndexOf(':');
  return { host: address.slice(0, i), port: Number(address.slice(i + 1)) };
}

/** CLIENT SETNAME of every connection rcluster makes. */
export const RCLUSTER_CONNECTION_NAME = 'rcluster';

/**
 * A plain (non-cluster) connection to one node. rcluster talks to each node directly and never
 * follows redirects: it must see what each node itself believes. No retries, so that an absent
 * node is reported at once instead of hanging.
 */
export async function connectNode(address: string, opts: ConnectOptions = {}): Promise<Redis> {
  const timeoutMs = opts.connectTimeoutMs ?? 2000;
  const { host, port } = route ? await route(address) : splitAddress(address);
  const client = new Redis({
    host,
    port,
    lazyConnect: true,
    // Our own timer below: ioredis' connect timer outlives a refused connection and keeps
    // the process alive for its full length.
    connectTimeout: 0,
    commandTimeout: opts.commandTimeoutMs ?? 10_000,
    // After a failed connect the stream never emits 'close', and this timer would hold the
    // process open for its full length.
    disconnectTimeout: 100,
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
    enableReadyCheck: false,
    retryStrategy: () => null,
    reconnectOnError: () => false,
    // So that a node's CLIENT LIST tells rcluster's own connections from its clients' (a node
    // to be removed waits for its clients to leave).
    connectionName: RCLUSTER_CONNECTION_NAME,
  });
  // connect() only says "Connection is closed."; the reason arrives as an 'error' event.
  let reason: unknown;
  client.on('error', (err) => (reason ??= err));
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      client.connect(),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(Object.assign(new Error(`connect timed out after ${timeoutMs} ms`), { code: 'ETIMEDOUT' })), timeoutMs);
      }),
    ]);
  } catch (err) {
    client.disconnect();
    throw reason ?? err;
  } finally {
    clearTimeout(timer);
  }
  // A connection whose server went away (a node this run stopped) never emits 'close' again, so
  // ioredis' disconnect timer would hold the process open for its full length: there is nothing
  // left to close.
  const disconnect = client.disconnect.bind(client);
  client.disconnect = (reconnect?: boolean) => {
    if (client.status !== 'end') disconnect(reconnect);
  };
  // Every connection rcluster makes logs in here (inspection, apply, migrations, the lock), with
  // the password of this run (live/auth.ts) when the spec gives one.
  try {
    if (opts.password === undefined) await authenticate(client, address);
    else if (opts.password !== null) await client.call('AUTH', opts.password);
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
