import { posix } from 'node:path';
import type { Redis } from 'ioredis';
import pLimit from 'p-limit';
import type { HostDriver } from '../hosts/driver.js';
import type { DesiredCluster, DesiredNode } from '../spec/types.js';
import { connectNode, describeRedisError, splitAddress } from './connect.js';
import { acceptedBy, AuthError, credentials, isNoAuth, noAuthMessage, passwordHash } from './auth.js';
import { unlistedNode } from '../spec/normalize.js';
import { slotList } from '../plan/slots.js';
import { parseClusterNodes, parseInfo, parseKeyspaceKeys, parseReplication, parseServer } from './parse.js';
import { ongoing, parseSlotMigrations, supportsAtomic } from './slotMigrations.js';
import { HostError, HostUnreachableError, PlanError } from '../errors.js';
import { readDirective } from '../provision/redisConf.js';
import { serviceCommands } from '../provision/service.js';
import { sh } from '../hosts/shell.js';
import type { HostFacts, LiveCluster, LiveNode, SlotRange } from './types.js';

export interface InspectOptions {
  /** Used to read the cluster config file of a node that does not answer. */
  driver?: HostDriver;
  concurrency?: number;
}

/** Read every node of the spec, in parallel. Unreachable nodes are facts, not errors. */
export async function inspectCluster(desired: DesiredCluster, opts: InspectOptions = {}): Promise<LiveCluster> {
  const limit = pLimit(opts.concurrency ?? 16);
  // Every read ends before the first failure is reported: one left running would keep
  // connections open (and the process alive) after the caller has closed its driver.
  const commandTimeoutMs = desired.timeouts?.commandMs;
  const nodes = await settleAll(desired.nodes.map((n) => limit(() => inspectNode(n, opts.driver, commandTimeoutMs))));
  // Nodes of the cluster that the spec no longer lists are read too (Redis only: their hosts are
  // not the spec's): the plan drains, forgets and removes them.
  const listed = new Set(desired.nodes.map((n) => n.address));
  const unlisted = new Set<string>();
  for (const n of nodes) {
    for (const e of n.view) {
      const address = `${e.host}:${e.port}`;
      if (!e.myself && !e.handshake && !e.noaddr && e.host && !listed.has(address)) unlisted.add(address);
    }
  }
  const extras = await settleAll(
    [...unlisted].map((address) =>
      limit(async () => {
        const { host, port } = splitAddress(address);
        const node = unlistedNode(desired, host, port);
        const live = await inspectRedis(node, undefined, commandTimeoutMs);
        // One that is stopped: with connection local its saved state is on this machine, where
        // rcluster kept it, and says whether it was reset before it stopped (an apply cut off
        // between a removal's reset and its forget). Only a hint: an unreadable file is no error.
        if (desired.connection === 'local' && opts.driver && !live.reachable && !live.unresponsive) {
          const onDisk = await readOnDiskView(node, opts.driver).catch(() => undefined);
          if (onDisk) live.onDisk = onDisk;
        }
        return live;
      }),
    ),
  );
  return { nodes: [...nodes, ...extras] };
}

export async function inspectNode(node: DesiredNode, driver?: HostDriver, commandTimeoutMs?: number): Promise<LiveNode> {
  const reads = [inspectRedis(node, driver, commandTimeoutMs), driver && driver.kind !== 'none' ? readHostFacts(node, driver) : Promise.resolve(undefined)] as const;
  const [redis, host] = await Promise.allSettled(reads);
  // A host that cannot be reached at all is a fact about the cluster (a powered-off machine whose
  // replica took over), not a failure of the read: the plan decides whether it can do without it.
  if (host.status === 'rejected' && host.reason instanceof HostUnreachableError && redis.status === 'fulfilled') {
    return { ...redis.value, hostDown: host.reason.message };
  }
  const [live, facts] = await Promise.all(reads);
  return facts ? { ...live, facts } : live;
}

async function inspectRedis(node: DesiredNode, driver?: HostDriver, commandTimeoutMs?: number): Promise<LiveNode> {
  const base: LiveNode = { address: node.address, host: node.host, port: node.port, reachable: false, clusterEnabled: false, view: [], clusterInfo: {}, keys: 0 };
  let client;
  try {
    client = await connectNode(node.address, commandTimeoutMs !== undefined ? { commandTimeoutMs } : {});
  } catch (err) {
    // A node that refuses every password rcluster has cannot be read, and must not pass for a
    // stopped one (that would be restarted).
    if (err instanceof AuthError) throw err;
    // A refused connection is a stopped node; a timeout is not: the node may be busy (a long
    // command, a fork) or its host unreachable, and restarting it would be the worst answer.
    if (describeRedisError(err) === 'timed out') return { ...base, unresponsive: true, error: 'the connection timed out' };
    return { ...base, error: describeRedisError(err), onDisk: await readOnDiskView(node, driver) };
  }
  try {
    const info = parseInfo(await client.info());
    const live: LiveNode = {
      ...base,
      reachable: true,
      clusterEnabled: info['cluster_enabled'] === '1',
      replication: parseReplication(info),
      keys: parseKeyspaceKeys(info),
      redisVersion: info['redis_version'],
      server: parseServer(info),
      ...(info['used_memory_dataset'] !== undefined ? { datasetBytes: Number(info['used_memory_dataset']) } : {}),
      runningConfigFile: info['config_file'] ?? '',
    };
    if (!live.clusterEnabled) live.onDisk = await readOnDiskView(node, driver);
    const names = Object.keys(node.redis.config);
    // Every read that does not depend on another goes at once: one round trip over a slow link.
    const c = client;
    const [running, nodeTimeout, cluster, auth, migrations] = await Promise.all([
      runningConfig(c, names),
      // cluster-node-timeout too: apply shortens it while a node joins, and a run cut off then
      // leaves it short (the plan gives the spec's back). Only if the node lets us read it: a
      // node that refuses CONFIG is still read for everything else. proto-max-bulk-len: the
      // biggest key a node accepts from MIGRATE (plan/bigKeys.ts).
      runningConfig(c, ['cluster-node-timeout', 'proto-max-bulk-len']).catch(() => ({})),
      live.clusterEnabled
        ? Promise.all([c.call('CLUSTER', 'NODES') as Promise<string>, c.call('CLUSTER', 'INFO') as Promise<string>, c.call('CLUSTER', 'MYID') as Promise<string>])
        : undefined,
      authState(c, node.address),
      // Server-side migrations this node is sending (plan/diff.ts waits for them). Only where
      // the command exists; a node that refuses it (an ACL) is planned as having none.
      live.clusterEnabled && supportsAtomic(live.server)
        ? c.call('CLUSTER', 'GETSLOTMIGRATIONS').then((r) => ongoing(parseSlotMigrations(r)), () => undefined)
        : undefined,
    ]);
    if (migrations && migrations.length > 0) live.slotMigrations = migrations;
    live.runningConfig = { ...nodeTimeout, ...running };
    live.unknownDirectives = names.filter((n) => !FILE_ONLY.has(n.toLowerCase()) && !(n.toLowerCase() in running));
    if (auth) live.auth = auth;
    if (cluster) {
      const [nodesText, infoText, myId] = cluster;
      live.view = parseClusterNodes(nodesText);
      live.clusterInfo = parseInfo(infoText);
      live.id = myId;
      const mine = live.view.find((e) => e.myself);
      if (mine?.role === 'master' && live.keys > 0) live.slotKeys = await keysPerSlot(client, mine.slots);
    }
    return live;
  } catch (err) {
    if (isNoAuth(err)) throw new PlanError(noAuthMessage(node.address));
    const why = describeRedisError(err);
    const error = why === 'timed out' ? `no reply within ${commandTimeoutMs ?? 10_000} ms (timeouts.command)` : why;
    return { ...base, reachable: true, unresponsive: true, error };
  } finally {
    client.disconnect();
  }
}

/**
 * Whether the node's passwords are the spec's: the passwords it accepts (ACL GETUSER default
 * lists their SHA-256, so no password is read back) and the one it gives its master (masterauth).
 */
async function authState(client: Redis, address: string): Promise<LiveNode['auth']> {
  const c = credentials();
  if (!c) return undefined;
  const by = acceptedBy(address) ?? 'password';
  const [reply, masterauthReply] = (await Promise.all([client.call('ACL', 'GETUSER', 'default'), client.call('CONFIG', 'GET', 'masterauth')])) as [unknown[], string[]];
  const field = (name: string): string[] => {
    const i = reply.findIndex((x) => String(x) === name);
    return i >= 0 && Array.isArray(reply[i + 1]) ? (reply[i + 1] as unknown[]).map(String) : [];
  };
  const have = new Set(field('passwords'));
  const mine = passwordHash(c.password);
  const previous = c.previous !== undefined ? passwordHash(c.previous) : undefined;
  const accepts = {
    password: have.has(mine),
    previous: previous !== undefined && have.has(previous),
    others: [...have].filter((h) => h !== mine && h !== previous).length,
    nopass: field('flags').includes('nopass'),
  };
  const passwordsOk = accepts.password && accepts.others === 0 && !accepts.nopass && accepts.previous === (previous !== undefined);
  const masterauth = masterauthReply[1] ?? '';
  return { acceptedBy: by, accepts, passwordsOk, masterauthOk: masterauth === c.password };
}

/** Promise.all that waits for every promise before rejecting with the first failure. */
async function settleAll<T>(promises: Promise<T>[]): Promise<T[]> {
  const results = await Promise.allSettled(promises);
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
  return results.map((r) => (r as PromiseFulfilledResult<T>).value);
}

/**
 * A stopped node comes back with the cluster state saved in its cluster config file; reading it
 * lets the plan say what restarting the node will lead to instead of guessing "fresh".
 */
async function readOnDiskView(node: DesiredNode, driver?: HostDriver): Promise<LiveNode['onDisk']> {
  if (!driver || driver.kind === 'none') return undefined;
  // Redis reads cluster-config-file relative to dir.
  const path = posix.resolve(node.redis.dataDir, node.redis.clusterConfigFile);
  // A file that exists but cannot be read or parsed is an error: planning the node as fresh
  // would be wrong, and redis itself would refuse to start with it.
  let text: string | null;
  try {
    text = await driver.readFile(node.host, path);
  } catch (err) {
    // The host read reports it (hostDown); the saved state is simply unknown.
    if (err instanceof HostUnreachableError) return undefined;
    throw err;
  }
  if (text === null) return undefined;
  const lines = text.split('\n').filter((l) => l.trim() !== '' && !l.startsWith('vars '));
  try {
    return { path, view: parseClusterNodes(lines.join('\n')) };
  } catch (err) {
    throw new HostError(node.host, `read ${path}`, `not a cluster config file redis could load: ${(err as Error).message}`);
  }
}

/** The node's config file, its service, and a standalone redis still on the file's old port. */
async function readHostFacts(node: DesiredNode, driver: HostDriver): Promise<HostFacts> {
  const { configFile, service } = node.redis;
  // Debian's valkey packages name their binaries valkey-server and valkey-cli (redis-* only with
  // valkey-redis-compat installed).
  const server = node.redis.server ?? 'redis';
  const configText = await driver.readFile(node.host, configFile);
  const facts: HostFacts = { configFile, configText, serviceExists: true, configWritable: true };
  if (driver.kind === 'ssh') {
    // One round trip for every check, rather than one each.
    const probe: string[] = [
      service ? `if ${serviceCommands(service).exists}; then echo service=yes; else echo service=no; fi` : 'echo service=yes',
      `if test -w ${sh(configFile)} && test -w "$(dirname ${sh(configFile)})"; then echo writable=yes; else echo writable=no; fi`,
      `${server}-server --version 2>/dev/null || true`,
    ];
    // The file's own server, asked from the host itself: a packaged redis often binds only
    // 127.0.0.1, where rcluster cannot reach it from outside, and its keys must still be seen.
    const own = configText === null ? undefined : ownAddress(configText);
    if (own) {
      // The cli logs in with the password in the file itself (REDISCLI_AUTH, which valkey-cli
      // reads too, set on the host),
      // so that no password travels in a command line; a wrong one fails closed (no count).
      probe.push(
        `pw=$(sed -n 's/^[[:space:]]*requirepass[[:space:]][[:space:]]*//p' ${sh(configFile)} 2>/dev/null | tail -n 1); pw=\${pw#\\"}; pw=\${pw%\\"}; if [ -n "$pw" ]; then REDISCLI_AUTH=$pw; export REDISCLI_AUTH; fi`,
        `printf 'dbsize=%s\\n' "$(${server}-cli -h ${sh(own.host)} -p ${own.port} dbsize 2>&1 | grep -v '^Warning' | head -n 1)"`,
      );
    }
    const out = (await driver.run(node.host, probe.join('; '))).stdout;
    facts.serviceExists = !out.includes('service=no');
    facts.configWritable = configText === null || !out.includes('writable=no');
    const v = /v=(\d+\.\d+\.\d+)/.exec(out)?.[1];
    if (v) facts.redisVersion = v;
    const dbsize = /^dbsize=(.*)$/m.exec(out)?.[1]?.trim();
    if (own && dbsize !== undefined && !/refused|could not connect|not found|no such file/i.test(dbsize)) {
      facts.onHost = { address: `${own.host}:${own.port}`, keys: /^\d+$/.test(dbsize) ? Number(dbsize) : undefined, reply: dbsize };
    }
  }
  const port = configText === null ? undefined : Number(readDirective(configText, 'port') ?? 6379);
  if (port !== undefined && port !== node.port && Number.isInteger(port) && port > 0) {
    const address = `${node.host}:${port}`;
    let client: Redis | undefined;
    try {
      // It logs in with its own file's password: it is not a member of the cluster yet.
      client = await connectNode(address, { connectTimeoutMs: 1000, password: readDirective(configText as string, 'requirepass') ?? null });
    } catch (err) {
      // Nothing answers on the old port: nothing to stop. Anything else (a password it refuses)
      // is a server whose keys cannot be counted, and it would be stopped: refused.
      const why = describeRedisError(err);
      if (!['connection refused', 'timed out', 'host unreachable'].includes(why)) {
        throw new PlanError(`${address} (the redis of ${configFile}) answers but rcluster cannot count its keys (${why}); rcluster will not replace a server whose keys it cannot count`);
      }
    }
    if (client) {
      try {
        const info = parseInfo(await client.info());
        facts.standalone = { address, clusterEnabled: info['cluster_enabled'] === '1', keys: parseKeyspaceKeys(info) };
      } catch (err) {
        throw new PlanError(`${address} (the redis of ${configFile}) answers but rcluster cannot count its keys (${describeRedisError(err)}); rcluster will not replace a server whose keys it cannot count`);
      } finally {
        client.disconnect();
      }
    }
  }
  return facts;
}

/**
 * CLUSTER COUNTKEYSINSLOT of every slot in `ranges`, counted by the node itself in one read-only
 * script: the plan moves the lightest slots first and says how many keys each move carries.
 * ARGV: start, end of each range. Returns the counts in slot order.
 */
const COUNT_KEYS_LUA = `#!lua flags=no-writes
local out = {}
for i = 1, #ARGV, 2 do
  for s = tonumber(ARGV[i]), tonumber(ARGV[i + 1]) do
    out[#out + 1] = redis.call('CLUSTER', 'COUNTKEYSINSLOT', s)
  end
end
return out
`;

/**
 * The keys in each slot a master owns. One script per node; thousands of pipelined commands cost
 * rcluster more time than the node needs to count (a node that refuses scripts gets those).
 */
async function keysPerSlot(client: Redis, ranges: SlotRange[]): Promise<Map<number, number>> {
  const out = new Map<number, number>();
  const slots = slotList(ranges);
  try {
    const counts = (await client.call('EVAL', COUNT_KEYS_LUA, 0, ...ranges.flatMap((r) => [r.start, r.end]))) as number[];
    if (counts.length === slots.length) {
      counts.forEach((n, i) => out.set(slots[i] as number, Number(n)));
      return out;
    }
  } catch {
    // EVAL renamed or refused by an ACL: count them one by one below.
  }
  const pipeline = client.pipeline();
  for (const slot of slots) pipeline.call('CLUSTER', 'COUNTKEYSINSLOT', String(slot));
  const replies = (await pipeline.exec()) ?? [];
  replies.forEach(([err, n], i) => {
    if (!err) out.set(slots[i] as number, Number(n));
  });
  return out;
}

/** Directives only a config file takes: CONFIG GET knows nothing of them. */
const FILE_ONLY = new Set(['include', 'rename-command', 'loadmodule', 'user']);

/**
 * The running values of the spec's redis.config directives. A typo would only show when the
 * node fails to restart, and a value in the file that the process does not run with yet is a
 * restart still to do; the running server can tell both now. Unknown names are left out.
 */
async function runningConfig(client: Redis, names: string[]): Promise<Record<string, string>> {
  const values: Record<string, string> = {};
  // All at once (one round trip over a slow link).
  const replies = await Promise.all(names.filter((n) => !FILE_ONLY.has(n.toLowerCase())).map((name) => client.call('CONFIG', 'GET', name) as Promise<string[]>));
  for (const reply of replies) {
    for (let i = 0; i + 1 < reply.length; i += 2) values[String(reply[i]).toLowerCase()] = String(reply[i + 1]);
  }
  return values;
}

/** Where the server of a config file listens, as seen from its own host. */
function ownAddress(configText: string): { host: string; port: number } | undefined {
  const port = Number(readDirective(configText, 'port') ?? 6379);
  if (!Number.isInteger(port) || port <= 0) return undefined;
  const bind = (readDirective(configText, 'bind') ?? '127.0.0.1').split(/\s+/)[0]?.replace(/^-/, '') || '127.0.0.1';
  return { host: bind === '*' || bind === '0.0.0.0' ? '127.0.0.1' : bind, port };
}
