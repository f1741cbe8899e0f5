import type { Redis } from 'ioredis';
import { connectNode } from '../live/connect.js';

/** One connection per node for the whole apply, re-dialled when a node restarts. */
export class NodePool {
  private readonly clients = new Map<string, Promise<Redis>>();

  /** `commandTimeoutMs`: how long one command may take before the connection gives up on it. */
  constructor(private readonly opts: { commandTimeoutMs?: number } = {}) {}

  get(address: string): Promise<Redis> {
    let c = this.clients.get(address);
    if (!c) {
      c = connectNode(address, this.opts.commandTimeoutMs !== undefined ? { commandTimeoutMs: this.opts.commandTimeoutMs } : {});
      c.catch(() => this.clients.delete(address));
      this.clients.set(address, c);
    }
    return c;
  }

  /** Run a command; a dropped connection is dialled again once. */
  async call(address: string, ...args: (string | number)[]): Promise<unknown> {
    const [cmd, ...rest] = args;
    try {
      const client = await this.get(address);
      return await client.call(String(cmd), ...rest);
    } catch (err) {
      if (!isConnectionError(err)) throw err;
      this.drop(address);
      const client = await this.get(address);
      return client.call(String(cmd), ...rest);
    }
  }

  drop(address: string): void {
    const c = this.clients.get(address);
    this.clients.delete(address);
    c?.then((client) => client.disconnect()).catch(() => {});
  }

  async close(): Promise<void> {
    const all = [...this.clients.values()];
    this.clients.clear();
    await Promise.all(all.map((c) => c.then((client) => client.disconnect()).catch(() => {})));
  }
}

function isConnectionError(err: unknown): boolean {
  const e = err as { code?: string; message?: string };
  return e?.code === 'ECONNRESET' || e?.code === 'ECONNREFUSED' || e?.code === 'EPIPE' || /Connection is closed|Stream isn't writeable/i.test(e?.message ?? '');
}
