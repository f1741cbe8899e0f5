/**
 * A TCP proxy that adds latency: every chunk is passed on `delayMs` after it arrived, in each
 * direction, in order. It delays and never throttles (bandwidth is whatever loopback gives);
 * the only pause is TCP backpressure from the receiving side. Loopback addresses only, both
 * the listening and the target side: it exists to make a test host look far away.
 */
import { connect, createServer, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';

export interface LatencyProxy {
  /** Where clients connect: the host's own address. */
  host: string;
  port: number;
  /** Stop listening and cut every open connection. Idempotent. */
  close(): Promise<void>;
}

export interface LatencyProxyOptions {
  /** Listen address (loopback). */
  host: string;
  /** 0: any free port. */
  port: number;
  targetHost: string;
  targetPort: number;
  delayMs: number;
}

function isLoopback(address: string): boolean {
  return /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(address) || address === '::1';
}

/**
 * Copies src to dst, each chunk (and the end of the stream) `delayMs` after src produced it.
 * One queue per direction and a single timer draining it in arrival order: ordering never
 * depends on timers with equal deadlines firing in order.
 */
function pipeDelayed(src: Socket, dst: Socket, delayMs: number): void {
  const queue: { due: number; chunk: Buffer | null }[] = []; // null: src ended
  let timer: NodeJS.Timeout | undefined;
  let waitingForDrain = false;

  const schedule = () => {
    const head = queue[0];
    if (timer || !head) return;
    // setTimeout may fire up to a millisecond early: pump checks the deadline and comes back.
    timer = setTimeout(pump, Math.max(1, Math.ceil(head.due - performance.now())));
  };
  const pump = () => {
    timer = undefined;
    if (dst.destroyed) {
      queue.length = 0;
      return;
    }
    const now = performance.now();
    while (queue.length > 0 && queue[0]!.due <= now) {
      const { chunk } = queue.shift()!;
      if (chunk === null) {
        dst.end();
        continue;
      }
      if (!dst.write(chunk) && !waitingForDrain) {
        waitingForDrain = true;
        src.pause();
        dst.once('drain', () => {
          waitingForDrain = false;
          src.resume();
        });
      }
    }
    schedule();
  };
  const push = (chunk: Buffer | null) => {
    queue.push({ due: performance.now() + delayMs, chunk });
    schedule();
  };
  src.on('data', (chunk: Buffer) => push(chunk));
  src.on('end', () => push(null));
}

export async function startLatencyProxy(o: LatencyProxyOptions): Promise<LatencyProxy> {
  if (!isLoopback(o.host) || !isLoopback(o.targetHost)) {
    throw new Error(`latency proxy: loopback addresses only (listen ${o.host}, target ${o.targetHost})`);
  }
  if (!Number.isFinite(o.delayMs) || o.delayMs < 0) throw new Error(`latency proxy: delayMs must be >= 0, got ${o.delayMs}`);
  const sockets = new Set<Socket>();
  const track = (s: Socket) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  };
  // allowHalfOpen: a FIN is passed on (delayed) like data, not answered by closing both ways.
  const server = createServer({ allowHalfOpen: true, pauseOnConnect: true }, (client) => {
    const upstream = connect({ host: o.targetHost, port: o.targetPort, allowHalfOpen: true });
    track(client);
    track(upstream);
    // A reset or refused connection on either side ends both at once, as a dead path would.
    const cut = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on('error', cut);
    upstream.on('error', cut);
    // Both ended and flushed: each socket closes by itself. One side closing before the other
    // has ended (no FIN seen) is a reset: cut the other.
    client.on('close', (hadError) => hadError && cut());
    upstream.on('close', (hadError) => hadError && cut());
    pipeDelayed(client, upstream, o.delayMs);
    pipeDelayed(upstream, client, o.delayMs);
    client.resume();
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port, o.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const addr = server.address();
  if (addr === null || typeof addr === 'string') throw new Error('latency proxy: no address');
  let closing: Promise<void> | undefined;
  return {
    host: o.host,
    port: addr.port,
    close: () =>
      (closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const s of sockets) s.destroy();
      })),
  };
}
