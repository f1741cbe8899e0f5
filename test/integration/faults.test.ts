import { createServer, type Server, type Socket } from 'node:net';
import { writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { localSpec, rclusterBin } from './support.js';

// Nodes that accept a connection and then never answer (a hung server, a full accept queue
// behind a proxy): plan and apply end with a named cause within the configured command timeout,
// never a hang. rclusterBin kills the process after 30 s, so a hang fails the test by its signal.
const PORTS = [7591, 7592, 7593];

describe('a node that accepts connections but never answers', () => {
  const servers: Server[] = [];
  const sockets: Socket[] = [];
  const spec = localSpec('itest-faults', PORTS);

  beforeAll(async () => {
    for (const port of PORTS) {
      const server = createServer((socket) => {
        sockets.push(socket); // read everything, answer nothing
        socket.on('error', () => {});
      });
      await new Promise<void>((res) => server.listen(port, '127.0.0.1', res));
      servers.push(server);
    }
    writeFileSync(
      spec.file,
      ['name: itest-faults', 'connection: none', 'replicasPerMaster: 0', 'timeouts:', '  command: 500', 'nodes:', ...PORTS.map((p) => `  - 127.0.0.1:${p}`), ''].join('\n'),
    );
  });

  afterAll(async () => {
    for (const s of sockets) s.destroy();
    await Promise.all(servers.map((s) => new Promise((res) => s.close(res))));
    spec.cleanup();
  });

  for (const command of [['plan'], ['apply', '--auto-approve']]) {
    it(`${command[0]}: exit 1 naming the node and the timeout, no stack trace`, async () => {
      const r = await rclusterBin([...command, '-f', spec.file], { timeoutMs: 30_000 });
      expect(r.signal).toBeNull();
      expect(r.code).toBe(1);
      expect(r.err.trim()).toMatch(/^Error: 127\.0\.0\.1:759\d answers but does not report its state \(no reply within 500 ms \(timeouts\.command\)\); rcluster will not plan around a node it cannot read\. Try again when it responds\.$/);
    });
  }

  it('--command-timeout must be a positive whole number', async () => {
    const before = sockets.length;
    const r = await rclusterBin(['apply', '-f', spec.file, '--auto-approve', '--command-timeout', 'soon'], { timeoutMs: 30_000 });
    expect(r.code).toBe(1);
    expect(r.err).toContain('--command-timeout takes a positive whole number, not "soon"');
    // Refused before anything was contacted.
    expect(sockets.length).toBe(before);
  });
});
