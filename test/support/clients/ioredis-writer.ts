/** A writer (see writer.ts) using ioredis' Cluster with its default settings. */
import { Cluster } from 'ioredis';
import { describeError, logEvent, parseArgs, runWriter } from './writer.js';

const { host, port, prefix, maxMs } = parseArgs(process.argv);
const client = new Cluster([{ host, port }]);
// As with node-redis: connection errors are events an application listens to, not failed
// operations; stderr shows them.
client.on('error', (err: unknown) => logEvent(`ioredis error event: ${describeError(err)}`));
await runWriter(
  {
    set: (k, v) => client.set(k, v),
    get: (k) => client.get(k),
    close: async () => {
      client.disconnect();
    },
  },
  prefix,
  maxMs,
);
