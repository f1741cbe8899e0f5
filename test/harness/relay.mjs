// Datacenter relay of one harness (HarnessOptions.datacenter in test/harness/index.ts).
//
// Started by the harness as `unshare -n` + `ip link set lo up`, it holds the datacenter: the
// network namespace every host of that harness joins, where all of 127.0.0.0/8 is local, so the
// hosts reach each other (gossip, cluster bus, MIGRATE, replication) and the runner reaches
// nothing in it. The only ways in are the listening sockets the harness creates in the runner's
// namespace and sends here over IPC: a socket stays in the namespace it was created in, so each
// one accepts the runner's connections and the relay dials their target from inside. No other
// process, no unix socket path, no socat.
//
// Messages from the harness (each answered with { id } once done, or { id, error }):
//   { id, type: 'forward', target: { host, port } } with a net.Server handle: forward it;
//   { id, type: 'close', forward: <id of a forward> }: stop accepting on it (a host going down).
// Exits when its IPC channel closes: the harness stopped it, or the test process died.
//
// argv: <harness root> (names the harness in ps; the harness kills a leftover relay by pid only
// when its command line holds this file and that root)
import { readlinkSync } from 'node:fs';
import { connect } from 'node:net';

const servers = new Map();

function loopback(host) {
  return /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

/** Plain byte copy both ways; either side failing or resetting cuts the other, as a dead path would. */
function forward(client, target) {
  const upstream = connect({ host: target.host, port: target.port });
  const cut = () => {
    client.destroy();
    upstream.destroy();
  };
  for (const s of [client, upstream]) {
    s.on('error', cut);
    s.on('close', (hadError) => hadError && cut());
  }
  client.pipe(upstream);
  upstream.pipe(client);
}

process.on('message', (m, handle) => {
  const reply = (error) => process.send?.(error ? { id: m?.id, error } : { id: m?.id });
  if (m?.type === 'forward') {
    if (!handle) return reply('forward: no server handle came with the message');
    if (!loopback(m.target?.host)) {
      handle.close();
      return reply(`forward: loopback targets only, got ${JSON.stringify(m.target)}`);
    }
    handle.on('connection', (client) => forward(client, m.target));
    handle.on('error', () => undefined);
    servers.set(m.id, handle);
    return reply();
  }
  if (m?.type === 'close') {
    const server = servers.get(m.forward);
    servers.delete(m.forward);
    if (!server) return reply();
    // Stops listening at once (new connections are refused); the ones already made end with
    // their host. close()'s callback would wait for those: reply now.
    server.close();
    return reply();
  }
  reply(`unknown message ${JSON.stringify(m)}`);
});
process.on('disconnect', () => process.exit(0));
process.send?.({ type: 'ready', netns: readlinkSync('/proc/self/ns/net') });
