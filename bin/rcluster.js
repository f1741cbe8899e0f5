#!/usr/bin/env node
import { main } from '../dist/cli/main.js';

// `rcluster plan | head` closes the pipe early; that is not an error worth a stack trace.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (err) => {
    if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
    throw err;
  });
}

process.exitCode = await main(process.argv);
// Everything main started is finished or released by now (locks, connections, SSH sessions).
// What may remain are sockets ioredis is still closing politely, which keep the process alive up
// to 100 ms after the work is done: once what was printed has been written out, exit.
await Promise.all([process.stdout, process.stderr].map((s) => new Promise((resolve) => s.write('', resolve))));
process.exit();
