import { homedir } from 'node:os';
import { isAbsolute, resolve } from 'node:path';
import { parseAddress } from './address.js';
import type { RawSpec, RawSsh } from './raw.js';
import type { AuthSpec, ConnectionKind, DesiredCluster, DesiredNode, NodeRedisSettings, RedisSettings, SecretRef, SshSettings } from './types.js';
import { DEFAULT_TIMEOUTS } from './types.js';

export const DEFAULT_SSH_PORT = 22;
export const DEFAULT_KNOWN_HOSTS = '~/.ssh/known_hosts';
export const DEFAULT_NODE_TIMEOUT = 5000;
export const DEFAULT_REPLICAS_PER_MASTER = 1;

/** Redis path defaults; for local they are relative to the spec file's directory. */
export function defaultRedisPaths(connection: ConnectionKind, name: string): Omit<RedisSettings, 'nodeTimeout' | 'config' | 'server' | 'serverBinary'> {
  if (connection === 'local') {
    return {
      configFile: `.rcluster/${name}/{port}/redis.conf`,
      dataDir: `.rcluster/${name}/{port}`,
      clusterConfigFile: 'nodes-{port}.conf',
    };
  }
  return {
    configFile: '/etc/redis/{port}.conf',
    service: '/etc/init.d/redis_{port}',
    dataDir: '/var/lib/redis/{port}',
    clusterConfigFile: 'nodes-{port}.conf',
  };
}

/** Applies defaults to a spec that has passed the schema and the semantic checks. */
export function normalize(raw: RawSpec, specFile: string): DesiredCluster {
  const file = resolve(specFile);
  const dir = resolve(file, '..');
  const connection = raw.connection ?? 'ssh';
  const replicasPerMaster = raw.replicasPerMaster ?? DEFAULT_REPLICAS_PER_MASTER;
  const masters = raw.masters ?? derivedMasters(raw.nodes.length, replicasPerMaster);

  const clusterSsh: SshSettings = {
    port: raw.ssh?.port ?? DEFAULT_SSH_PORT,
    knownHostsFile: localPath(raw.ssh?.knownHostsFile ?? DEFAULT_KNOWN_HOSTS, dir),
    hostKeyPolicy: raw.ssh?.hostKeyPolicy ?? 'strict',
  };
  if (raw.ssh?.user !== undefined) clusterSsh.user = raw.ssh.user;
  if (raw.ssh?.identityFile !== undefined) clusterSsh.identityFile = localPath(raw.ssh.identityFile, dir);
  if (raw.ssh?.configFile !== undefined) clusterSsh.configFile = localPath(raw.ssh.configFile, dir);
  if (raw.ssh?.jump !== undefined) clusterSsh.jump = raw.ssh.jump;
  if (raw.ssh?.become !== undefined) clusterSsh.become = raw.ssh.become;
  if (raw.ssh?.tunnel === true) clusterSsh.tunnel = true;
  // The OpenSSH config may set what the spec leaves to rcluster's defaults.
  const implicit = [...(raw.ssh?.port === undefined ? ['port' as const] : []), ...(raw.ssh?.knownHostsFile === undefined ? ['knownHostsFile' as const] : [])];
  if (implicit.length > 0) clusterSsh.implicit = implicit;

  const redis: RedisSettings = {
    ...defaultRedisPaths(connection, raw.name),
    ...pick(raw.redis, ['configFile', 'service', 'dataDir', 'clusterConfigFile']),
    server: raw.redis?.server ?? 'redis',
    ...(raw.redis?.serverBinary !== undefined ? { serverBinary: commandPath(raw.redis.serverBinary, dir) } : {}),
    nodeTimeout: raw.redis?.nodeTimeout ?? DEFAULT_NODE_TIMEOUT,
    config: normalizeConfig(raw.redis?.config ?? {}),
  };

  const nodes = raw.nodes.map((item): DesiredNode => {
    const { host, port, weight, ssh, preferredMaster } =
      typeof item === 'string' ? { ...(parseAddress(item) as { host: string; port: number }), weight: undefined, ssh: undefined, preferredMaster: undefined } : item;
    return {
      host,
      port,
      address: `${host}:${port}`,
      weight: weight ?? 1,
      ...(preferredMaster ? { preferredMaster: true } : {}),
      ssh: mergeSsh(clusterSsh, ssh, dir),
      redis: nodeRedis(redis, host, port, connection, dir),
    };
  });

  const password = secretRef(raw.redis?.passwordEnv, raw.redis?.passwordFile, dir);
  const previous = secretRef(raw.redis?.previousPasswordEnv, raw.redis?.previousPasswordFile, dir);
  const auth: AuthSpec | undefined = password ? { password, ...(previous ? { previous } : {}) } : undefined;

  return {
    name: raw.name,
    connection,
    replicasPerMaster,
    masters,
    mastersExplicit: raw.masters !== undefined,
    nodes,
    ...(raw.migration === 'classic' ? { migration: 'classic' as const } : {}),
    timeouts: {
      commandMs: raw.timeouts?.command ?? DEFAULT_TIMEOUTS.commandMs,
      waitMs: raw.timeouts?.wait ?? DEFAULT_TIMEOUTS.waitMs,
      transferRate: raw.timeouts?.transferRate ?? DEFAULT_TIMEOUTS.transferRate,
    },
    ...(auth ? { auth } : {}),
    defaults: { ssh: clusterSsh, redis },
    source: { file, dir },
  };
}

function secretRef(env: string | undefined, file: string | undefined, dir: string): SecretRef | undefined {
  if (env !== undefined) return { env };
  if (file !== undefined) return { file: localPath(file, dir) };
  return undefined;
}

/**
 * Masters when the spec does not say: as many full shards as the nodes make, and never fewer than
 * Redis Cluster's three when there are three nodes or more (some masters then lack replicas).
 */
export function derivedMasters(nodes: number, replicasPerMaster: number): number {
  return Math.max(Math.min(nodes, MIN_MASTERS), Math.floor(nodes / (replicasPerMaster + 1)));
}

export const MIN_MASTERS = 3;

/** A node that is no longer listed, as the cluster-wide settings describe it (to remove it). */
export function unlistedNode(desired: DesiredCluster, host: string, port: number): DesiredNode {
  return {
    host,
    port,
    address: `${host}:${port}`,
    weight: 1,
    ssh: { ...desired.defaults.ssh },
    redis: nodeRedis(desired.defaults.redis, host, port, desired.connection, desired.source.dir),
  };
}

function mergeSsh(base: SshSettings, override: RawSsh | undefined, dir: string): SshSettings {
  const out: SshSettings = { ...base };
  if (override?.user !== undefined) out.user = override.user;
  if (override?.port !== undefined) {
    out.port = override.port;
    const implicit = (base.implicit ?? []).filter((f) => f !== 'port');
    if (implicit.length > 0) out.implicit = implicit;
    else delete out.implicit;
  }
  if (override?.identityFile !== undefined) out.identityFile = localPath(override.identityFile, dir);
  if (override?.host !== undefined) out.alias = override.host;
  if (override?.jump !== undefined) out.jump = override.jump;
  if (override?.become !== undefined) out.become = override.become;
  return out;
}

function nodeRedis(redis: RedisSettings, host: string, port: number, connection: ConnectionKind, dir: string): NodeRedisSettings {
  const fill = (p: string): string => p.replaceAll('{host}', host).replaceAll('{port}', String(port));
  // Only local paths are on this machine; remote ones were checked to be absolute already.
  const place = (p: string): string => (connection === 'local' ? localPath(fill(p), dir) : fill(p));
  const out: NodeRedisSettings = {
    configFile: place(redis.configFile),
    dataDir: place(redis.dataDir),
    // Relative to dataDir, as redis itself reads cluster-config-file; so not resolved here.
    clusterConfigFile: fill(redis.clusterConfigFile),
    server: redis.server,
    nodeTimeout: redis.nodeTimeout,
    config: { ...redis.config },
  };
  if (redis.serverBinary !== undefined) out.serverBinary = redis.serverBinary;
  if (redis.service !== undefined) out.service = place(redis.service);
  return out;
}

/** redis.conf wants yes/no, and every value ends up as text in the file anyway. */
export function normalizeConfig(config: Record<string, string | number | boolean>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(config)) out[k] = typeof v === 'boolean' ? (v ? 'yes' : 'no') : String(v);
  return out;
}

/** A command to run on this machine: a bare name is looked up on PATH, anything else is a path. */
function commandPath(p: string, dir: string): string {
  return p.includes('/') || p === '~' ? localPath(p, dir) : p;
}

/** A path on this machine: `~` is the home directory, relative means relative to the spec file. */
export function localPath(p: string, dir: string): string {
  if (p === '~') return homedir();
  if (p.startsWith('~/')) return resolve(homedir(), p.slice(2));
  return isAbsolute(p) ? p : resolve(dir, p);
}

function pick<T extends object, K extends keyof T>(obj: T | undefined, keys: K[]): Partial<Pick<T, K>> {
  const out: Partial<Pick<T, K>> = {};
  for (const k of keys) if (obj?.[k] !== undefined) out[k] = obj[k];
  return out;
}
