/** A writer (see writer.ts) using node-redis 5's cluster client with its default settings. */
import { createCluster } from 'redis';
import { describeError, logEvent, parseArgs, runWriter } from './writer.js';

const { host, port, prefix, maxMs } = parseArgs(process.argv);
const client = createCluster({ rootNodes: [{ url: `redis://${host}:${port}` }] });
// node-redis emits connection errors as events, and an 'error' event without a listener would end
// the process: an application attaches one. They are not failed operations; stderr shows them.
client.on('error', (err: unknown) => logEvent(`node-redis error event: ${describeError(err)}`));
// Its per-node connection events, for the report when this writer hangs: an application's log.
type NodeInfo = { host: string; port: number };
client.on('node-error', (err: unknown, n: NodeInfo) => logEvent(`node-redis node-error ${n.host}:${n.port}: ${describeError(err)}`));
client.on('node-reconnecting', (n: NodeInfo) => logEvent(`node-redis node-reconnecting ${n.host}:${n.port}`));
client.on('node-disconnect', (n: NodeInfo) => logEvent(`node-redis node-disconnect ${n.host}:${n.port}`));
await client.connect();
await runWriter(
  {
    set: (k, v) => client.set(k, v),
    get: (k) => client.get(k),
    close: async () => {
      client.destroy();
    },
  },
  prefix,
  maxMs,
);
