import { hostname, userInfo } from 'node:os';
import type { Redis } from 'ioredis';
import { HostUnreachableError, UsageError } from '../errors.js';
import type { HostDriver } from '../hosts/driver.js';
import type { SshDriver } from '../hosts/ssh.js';
import { connectNode } from '../live/connect.js';
import type { DesiredCluster } from '../spec/types.js';

/**
 * One apply at a time per cluster, from any machine and over any connection: the lock lives in
 * the nodes themselves, as a client connection named `rcluster-lock/…` held open on every node
 * that answers, for as long as the apply runs.
 *
 * - Taking it: name our connection on every node first, then list each node's clients. Whoever
 *   named theirs second sees the other's name, so two applies can never both see only
 *   themselves (both may back off; neither goes ahead alone without seeing the other).
 * - It ends with the process: a killed apply's connections close and the lock is gone, with no
 *   file to clean up. Only a holder whose machine vanished without closing its TCP connections
 *   (a laptop that lost the network) leaves a lock behind, until the node's TCP keepalive drops
 *   it; `--force-unlock <id>` takes that one over, and only that one: CLIENT KILL of the named
 *   holder, then the same two-step check, so two takers of one stale lock cannot both win.
 * - Nodes that do not answer (a create before any node runs, a host that is down) carry no lock;
 *   an apply that finds no node to lock on says so.
 */

const PREFIX = 'rcluster-lock/';

export interface LockHolder {
  /** What --force-unlock takes: `<user>@<machine>/<pid>/<started, unix seconds>`. */
  id: string;
  user: string;
  machine: string;
  pid: number;
  since: Date;
  /** Where it holds the lock: node address and the holder's client address seen there. */
  node: string;
  from: string;
}

export interface ClusterLock {
  /** Nodes the lock is held on. */
  nodes: string[];
  release(): Promise<void>;
  /** Rejects when the lock is no longer ours (taken over with --force-unlock). */
  check(): Promise<void>;
}

export function lockId(now = new Date()): string {
  return `${safe(userInfo().username)}@${safe(hostname())}/${process.pid}/${Math.floor(now.getTime() / 1000)}`;
}

function safe(s: string): string {
  return s.replace(/[^A-Za-z0-9._-]/g, '_') || 'unknown';
}

export function parseHolder(name: string, node: string, from: string): LockHolder | undefined {
  if (!name.startsWith(PREFIX)) return undefined;
  const id = name.slice(PREFIX.length);
  const m = /^([^@/]+)@([^/]+)\/(\d+)\/(\d+)$/.exec(id);
  if (!m) return { id, user: '?', machine: '?', pid: 0, since: new Date(0), node, from };
  return { id, user: m[1] as string, machine: m[2] as string, pid: Number(m[3]), since: new Date(Number(m[4]) * 1000), node, from };
}

interface Client {
  id: string;
  name: string;
  addr: string;
}

function parseClientList(text: string): Client[] {
  return text
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((line) => {
      const f = new Map(line.split(' ').map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]));
      return { id: f.get('id') ?? '', name: f.get('name') ?? '', addr: f.get('addr') ?? '' };
    });
}

export function describeHolder(h: LockHolder, now = new Date()): string {
  const age = Math.max(0, Math.round((now.getTime() - h.since.getTime()) / 1000));
  return `${h.user}@${h.machine} (pid ${h.pid}) since ${h.since.toISOString()} (${age} s ago), seen on ${h.node} from ${h.from}; lock id ${h.id}`;
}

export async function takeClusterLock(desired: DesiredCluster, opts: { forceUnlock?: string; connectTimeoutMs?: number; driver?: HostDriver } = {}): Promise<ClusterLock> {
  const id = lockId();
  const name = `${PREFIX}${id}`;
  // Over SSH, the hosts hold it too (a flock kept by this run's shell on each host): a create on
  // fresh hosts, whose spec ports do not answer yet, is locked as well.
  const ssh = opts.driver && 'lockHost' in opts.driver ? (opts.driver as SshDriver) : undefined;
  if (ssh) await lockHosts(desired, ssh, id, opts.forceUnlock);
  const held = new Map<string, { client: Redis; myId: string; runId: string }>();
  const release = async () => {
    for (const { client } of held.values()) client.disconnect();
    held.clear();
  };
  /** Our name on one node, when it answers. */
  const hold = async (address: string): Promise<void> => {
    let client: Redis;
    try {
      client = await connectNode(address, { connectTimeoutMs: opts.connectTimeoutMs ?? 2000 });
    } catch {
      return; // down or not running yet: nothing to hold there
    }
    try {
      await client.call('CLIENT', 'SETNAME', name);
      const [myId, info] = await Promise.all([client.call('CLIENT', 'ID'), client.info('server')]);
      held.set(address, { client, myId: String(myId), runId: /run_id:(\w+)/.exec(info)?.[1] ?? '' });
    } catch {
      client.disconnect(); // answers but cannot take a name (still loading, say): no lock there
    }
  };
  /** Every other holder's connection, listed after ours was named. */
  const others = async () => {
    const found: (LockHolder & { clientId: string })[] = [];
    for (const [address, { client, myId }] of held) {
      const list = parseClientList(String(await client.call('CLIENT', 'LIST', 'TYPE', 'normal')));
      for (const c of list) {
        if (c.id === myId) continue;
        const h = parseHolder(c.name, address, c.addr);
        if (h) found.push({ ...h, clientId: c.id });
      }
    }
    return found;
  };
  try {
    await Promise.all(desired.nodes.map((n) => hold(n.address)));
    let found = await others();
    if (found.length > 0 && opts.forceUnlock) {
      const stale = found.filter((h) => h.id === opts.forceUnlock);
      if (stale.length === 0) {
        throw new UsageError(`--force-unlock ${opts.forceUnlock}: no such lock; cluster "${desired.name}" is locked by ${describeHolder(found[0] as LockHolder)}`);
      }
      for (const h of stale) await held.get(h.node)?.client.call('CLIENT', 'KILL', 'ID', h.clientId).catch(() => 0);
      found = await others();
    }
    const first = found[0];
    if (first) {
      throw new UsageError(
        `cluster "${desired.name}" is locked: another rcluster is changing it: ${describeHolder(first)}. ` +
          `Wait for it to finish. If that apply is gone for good (its machine lost the network), take the lock over with --force-unlock ${first.id}`,
      );
    }
  } catch (err) {
    await release();
    throw err;
  }

  // A node restarted by this apply drops our connection to it; one killed by another apply's
  // --force-unlock does too. Before each step, dropped connections are made again and checked.
  let checking: Promise<void> | undefined;
  const recheck = async (): Promise<void> => {
    const dropped = [...held].filter(([, h]) => h.client.status !== 'ready');
    if (dropped.length === 0) return;
    for (const [a, h] of dropped) {
      h.client.disconnect();
      held.delete(a);
    }
    await Promise.all(dropped.map(([a]) => hold(a)));
    // The same server process (same run_id) closed our connection: it was killed (CLIENT KILL by
    // --force-unlock), not dropped by a restart. Whoever did it may have finished already.
    const killed = dropped.filter(([a, h]) => held.get(a)?.runId === h.runId).map(([a]) => a);
    const taken = (await others())[0];
    if (taken || killed.length > 0) {
      throw new Error(
        `the cluster lock is no longer this apply's (${taken ? `taken over by ${describeHolder(taken)}` : `its connection to ${killed.join(', ')} was closed while the node kept running: another rcluster's --force-unlock, or the network dropped it`}); this apply stops here`,
      );
    }
  };
  const check = (): Promise<void> => {
    const lost = ssh?.lostHostLocks() ?? [];
    if (lost.length > 0) {
      return Promise.reject(new Error(`the cluster lock is no longer this apply's: its SSH session holding the lock on ${lost.join(', ')} ended (another rcluster's --force-unlock, or the connection dropped); this apply stops here`));
    }
    checking ??= recheck().finally(() => (checking = undefined));
    return checking;
  };
  return { nodes: [...held.keys()], release, check };
}

/** The lock on every spec host, through the driver's shells. */
async function lockHosts(desired: DesiredCluster, ssh: SshDriver, id: string, forceUnlock: string | undefined): Promise<void> {
  const hosts = [...new Set(desired.nodes.map((n) => n.host))];
  const results = await Promise.allSettled(hosts.map(async (host) => ({ host, holder: await ssh.lockHost(host, desired.name, id) })));
  const taken = results.flatMap((r) => (r.status === 'fulfilled' && r.value.holder !== null ? [{ host: r.value.host, holder: r.value.holder }] : []));
  // A host that cannot be reached at all is the plan's business (a down host), not the lock's.
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected' && !(r.reason instanceof HostUnreachableError));
  if (failed) throw failed.reason;
  const first = taken[0];
  if (!first) return;
  const holder = parseHolder(`${PREFIX}${(first.holder.split(' ')[0] ?? '')}`, `host ${first.host}`, 'its SSH session') as LockHolder;
  if (forceUnlock === undefined) {
    throw new UsageError(
      `cluster "${desired.name}" is locked: another rcluster is changing it: ${describeHolder(holder)}. ` +
        `Wait for it to finish. If that apply is gone for good (its machine lost the network), take the lock over with --force-unlock ${holder.id}`,
    );
  }
  if (holder.id !== forceUnlock) {
    throw new UsageError(`--force-unlock ${forceUnlock}: no such lock; cluster "${desired.name}" is locked by ${describeHolder(holder)}`);
  }
  // Take it over where that holder has it: its shell is ended, and the lock taken anew.
  for (const t of taken) {
    const again = await ssh.lockHost(t.host, desired.name, id, forceUnlock);
    if (again !== null) throw new UsageError(`--force-unlock ${forceUnlock}: host ${t.host} is still locked by ${again}`);
  }
}

/** Held from planning to the last step, so that no other apply plans against a moving cluster. */
export async function withClusterLock<T>(desired: DesiredCluster, opts: { forceUnlock?: string; driver?: HostDriver }, fn: (lock: ClusterLock) => Promise<T>): Promise<T> {
  const lock = await takeClusterLock(desired, { ...(opts.forceUnlock !== undefined ? { forceUnlock: opts.forceUnlock } : {}), ...(opts.driver ? { driver: opts.driver } : {}) });
  try {
    return await fn(lock);
  } finally {
    await lock.release();
  }
}
