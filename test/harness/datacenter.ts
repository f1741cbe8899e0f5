/**
 * The datacenter of HarnessOptions.datacenter: one network namespace that every host of a
 * harness lives in, held by a relay process (relay.mjs) that is also the only way in from the
 * runner's namespace. See relay.mjs for how the forwarding works.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { tail } from './procs.js';

export const RELAY = fileURLToPath(new URL('./relay.mjs', import.meta.url));

export interface Datacenter {
  /** The relay's pid: /proc/<pid>/ns/net is the datacenter (nsenter --net=...). */
  pid: number;
  /** `net:[4026532...]` of the datacenter. */
  netns: string;
  /**
   * Listen on `listen` (port 0: any free one) in the runner's network namespace and forward
   * every connection to `target` inside the datacenter. Returns the forward's id (for close) and
   * the port listened on.
   */
  forward(listen: { host: string; port: number }, target: { host: string; port: number }): Promise<{ id: number; port: number }>;
  /** Stop listening on a forward: connecting to it is refused again. */
  close(id: number): Promise<void>;
  /** SIGKILL the relay and wait for it: every forward goes with it. Idempotent. */
  stop(): Promise<void>;
}

interface Reply {
  id?: number;
  error?: string;
  type?: string;
  netns?: string;
}

/** Start the relay in a new network namespace with lo up; `dir` gets its log (datacenter.log). */
export async function startDatacenter(o: { unshare: string; ip: string; dir: string }): Promise<Datacenter> {
  const log = join(o.dir, 'datacenter.log');
  const fd = openSync(log, 'a');
  let child: ChildProcess;
  try {
    // With lo up, all of 127.0.0.0/8 is local in the new namespace: the hosts bind their own
    // addresses there. argv[1] (the state dir) names this harness's relay in ps.
    child = spawn(o.unshare, ['-n', '--', '/bin/sh', '-c', '"$0" link set lo up && exec "$@"', o.ip, process.execPath, RELAY, o.dir], {
      cwd: '/',
      stdio: ['ignore', fd, fd, 'ipc'],
    });
  } finally {
    closeSync(fd);
  }
  const pid = child.pid;
  const pending = new Map<number, { resolve: () => void; reject: (e: Error) => void }>();
  let exitedWhy: string | undefined;
  const exited = new Promise<void>((resolve) => {
    child.once('exit', (code, signal) => {
      exitedWhy = `datacenter relay (pid ${pid}) exited (${code ?? signal})${tail(log) ? `; ${log}:\n${tail(log)}` : ''}`;
      for (const p of pending.values()) p.reject(new Error(exitedWhy));
      pending.clear();
      resolve();
    });
    child.once('error', (e) => {
      exitedWhy = `datacenter relay: spawn ${o.unshare} failed: ${e.message}`;
      resolve();
    });
  });
  let nextId = 1;
  // The channel keeps the runner's event loop alive only while an answer is awaited: a harness
  // left running must not keep a test process (or the benchmark) from exiting.
  const settled = () => {
    if (pending.size === 0) child.channel?.unref();
  };
  child.on('message', (m: Reply) => {
    const p = m.id !== undefined ? pending.get(m.id) : undefined;
    if (!p || m.id === undefined) return;
    pending.delete(m.id);
    settled();
    if (m.error) p.reject(new Error(`datacenter relay: ${m.error}`));
    else p.resolve();
  });
  const request = (msg: Record<string, unknown>, handle?: Server): Promise<number> => {
    if (exitedWhy) return Promise.reject(new Error(exitedWhy));
    const id = nextId++;
    child.channel?.ref();
    return new Promise<number>((resolve, reject) => {
      pending.set(id, { resolve: () => resolve(id), reject });
      child.send({ ...msg, id }, handle, (e) => {
        if (!e) return;
        pending.delete(id);
        settled();
        reject(new Error(`datacenter relay: sending ${String(msg['type'])} failed: ${e.message}`));
      });
    });
  };

  const netns = await new Promise<string>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`datacenter relay (pid ${pid}) did not say it was ready within 10 s; ${log}:\n${tail(log)}`)), 10_000);
    child.once('message', (m: Reply) => {
      clearTimeout(t);
      if (m.type === 'ready' && m.netns) resolve(m.netns);
      else reject(new Error(`datacenter relay: expected ready, got ${JSON.stringify(m)}`));
    });
    void exited.then(() => {
      clearTimeout(t);
      reject(new Error(exitedWhy));
    });
  }).catch(async (e: unknown) => {
    child.kill('SIGKILL');
    await exited;
    throw e;
  });
  settled();
  child.unref();
  if (pid === undefined) throw new Error('datacenter relay: no pid');

  return {
    pid,
    netns,
    forward: async (listen, target) => {
      const server = createServer();
      // Until the relay has it, this process holds the listening socket too. Nothing here would
      // serve a connection accepted meanwhile: reset it (a client sees a host not yet up).
      server.on('connection', (s) => s.resetAndDestroy());
      await new Promise<void>((resolve, reject) => {
        server.once('error', (e) => reject(new Error(`datacenter: listening on ${listen.host}:${listen.port} (way in to ${target.host}:${target.port}) failed: ${e.message}`)));
        server.listen(listen.port, listen.host, () => resolve());
      });
      const addr = server.address();
      const port = addr !== null && typeof addr === 'object' ? addr.port : listen.port;
      try {
        const id = await request({ type: 'forward', target }, server);
        return { id, port };
      } finally {
        // The relay's copy keeps listening: a socket lives as long as one process holds it.
        server.close();
      }
    },
    close: async (id) => {
      await request({ type: 'close', forward: id });
    },
    stop: async () => {
      if (!exitedWhy) child.kill('SIGKILL');
      await exited;
    },
  };
}
