import { createServer, Server, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { RedisRoute } from '../live/connect.js';
import { splitAddress } from '../live/connect.js';
import type { SshDriver } from './ssh.js';

/**
 * ssh.tunnel: every Redis connection rcluster makes goes through the node's own SSH connection,
 * so that nothing dials a Redis port from this machine (they are usually firewalled; only SSH
 * gets through). Node-to-node traffic (gossip, MIGRATE, replication) stays between the nodes.
 *
 * Each connection first opens a direct-tcpip channel from the node's host to the node's address
 * (so a stopped node is refused at once, as a direct dial would be), then a one-use listener on
 * 127.0.0.1 hands that channel to the Redis client.
 */
export function tunnelRoute(driver: SshDriver): { route: RedisRoute; close: () => Promise<void> } {
  const open = new Set<Server | Socket | Duplex>();
  const route: RedisRoute = async (address) => {
    const { host, port } = splitAddress(address);
    let channel;
    try {
      channel = await driver.forward(host, host, port);
    } catch (err) {
      const msg = (err as Error).message;
      // A refusal at the far end reads as a refused connection: the node is stopped.
      const code = /refused/i.test(msg) ? 'ECONNREFUSED' : /timed out/i.test(msg) ? 'ETIMEDOUT' : 'EHOSTUNREACH';
      throw Object.assign(new Error(`${msg} (through SSH)`), { code });
    }
    open.add(channel);
    const server = createServer({ pauseOnConnect: false });
    open.add(server);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    server.once('connection', (socket) => {
      // One client per channel: the listener closes as soon as it is taken.
      server.close();
      open.delete(server);
      open.add(socket);
      socket.pipe(channel).pipe(socket);
      const end = () => {
        open.delete(socket);
        open.delete(channel);
        socket.destroy();
        channel.destroy();
      };
      socket.on('close', end);
      socket.on('error', end);
      channel.on('close', end);
      channel.on('error', end);
    });
    const local = server.address();
    if (!local || typeof local !== 'object') throw new Error('tunnel: no local port');
    return { host: '127.0.0.1', port: local.port };
  };
  return {
    route,
    close: async () => {
      for (const x of open) {
        if (x instanceof Server) x.close();
        else x.destroy();
      }
      open.clear();
      await driver.close();
    },
  };
}
