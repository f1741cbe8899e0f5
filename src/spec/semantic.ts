import { hostProblem, parseAddress } from './address.js';
import type { Issue, SourceLocator, SpecPath } from './positions.js';
import { REDIS_PATH_FIELDS } from './raw.js';
import { describe, isPlainObject, valueAt } from './schema-messages.js';
import type { DesiredCluster } from './types.js';
import { derivedMasters, MIN_MASTERS } from './normalize.js';

/** Directives rcluster writes from other spec fields; setting them in redis.config would fight it. */
const MANAGED_DIRECTIVES: Record<string, string> = {
  port: 'nodes',
  dir: 'redis.dataDir',
  'cluster-enabled': 'rcluster (always yes)',
  'cluster-config-file': 'redis.clusterConfigFile',
  'cluster-node-timeout': 'redis.nodeTimeout',
  bind: 'nodes (each node binds its own address)',
};

/** Password directives: rcluster sets them from redis.passwordEnv / passwordFile. */
const SECRET_DIRECTIVES_IN_CONFIG = new Set(['requirepass', 'masterauth', 'masteruser']);

/** With connection: local rcluster runs the processes itself, and needs these as it sets them. */
const LOCAL_MANAGED_DIRECTIVES: Record<string, string> = {
  daemonize: 'rcluster (always yes for local nodes)',
  pidfile: 'rcluster (the node directory, for local nodes)',
  logfile: 'rcluster (the node directory, for local nodes)',
  'cluster-announce-ip': 'nodes (the node address, for local nodes)',
};

/**
 * Checks the schema cannot express. Runs even when the schema found errors, so that one run
 * reports everything; each check therefore looks only at values of the right type.
 */
export function semanticIssues(data: unknown, locator: SourceLocator): Issue[] {
  if (!isPlainObject(data)) return [];
  return [...nodeIssues(data, locator), ...countIssues(data), ...redisIssues(data)];
}

function error(path: SpecPath, message: string, at: 'key' | 'value' = 'value'): Issue {
  return { path, at, severity: 'error', message };
}

function nodeIssues(data: Record<string, unknown>, locator: SourceLocator): Issue[] {
  const nodes = data.nodes;
  if (!Array.isArray(nodes)) return [];
  const out: Issue[] = [];
  const firstSeen = new Map<string, number>();
  nodes.forEach((item: unknown, i) => {
    let address: { host: string; port: number } | undefined;
    if (typeof item === 'string') {
      const parsed = parseAddress(item);
      if ('error' in parsed) out.push(error(['nodes', i], parsed.error));
      else address = parsed;
    } else if (isPlainObject(item)) {
      const { host, port } = item;
      const problem = typeof host === 'string' && host !== '' ? hostProblem(host) : undefined;
      if (problem) out.push(error(['nodes', i, 'host'], problem));
      // Other problems with host and port are the schema's to report.
      if (typeof host === 'string' && !problem && Number.isInteger(port) && (port as number) >= 1 && (port as number) <= 65535) {
        address = { host, port: port as number };
      }
    } else {
      out.push(error(['nodes', i], `nodes[${i}] must be a "host:port" string or a mapping with host and port (got ${describe(item)})`));
    }
    if (!address) return;
    // Hostnames are case-insensitive; names are not resolved, so an IP and its hostname are not caught.
    const key = `${address.host.toLowerCase()}:${address.port}`;
    const first = firstSeen.get(key);
    if (first === undefined) firstSeen.set(key, i);
    else {
      const line = locator.locate(['nodes', first]).line;
      out.push(error(['nodes', i], `duplicate node "${address.host}:${address.port}" (first listed on line ${line})`));
    }
  });
  return out;
}

function countIssues(data: Record<string, unknown>): Issue[] {
  const nodes = data.nodes;
  if (!Array.isArray(nodes) || nodes.length === 0) return [];
  const n = nodes.length;
  const r = data.replicasPerMaster === undefined ? 1 : data.replicasPerMaster;
  if (!Number.isInteger(r) || (r as number) < 0) return [];
  const replicas = r as number;

  if (data.masters === undefined && n < MIN_MASTERS) {
    return [error(['nodes'], `${plural(n, 'node')} give only ${plural(n, 'master')}; Redis Cluster needs ${MIN_MASTERS} masters, which takes at least ${MIN_MASTERS} nodes`, 'key')];
  }
  if (data.masters !== undefined && (!Number.isInteger(data.masters) || (data.masters as number) < MIN_MASTERS)) return [];
  const masters = data.masters === undefined ? derivedMasters(n, replicas) : (data.masters as number);
  if (n < masters) {
    return [error(['masters'], `masters is ${masters} but only ${plural(n, 'node is', 'nodes are')} listed`)];
  }
  const needed = masters * (1 + replicas);
  if (n >= needed) return [];
  // Replicas are spread evenly; those masters that get the smaller share are short.
  const spare = n - masters;
  const base = Math.floor(spare / masters);
  const short = base + 1 < replicas ? masters : masters - (spare % masters);
  const lack = replicas === 1 ? 'no replica' : `fewer than ${replicas} replicas`;
  return [
    {
      path: ['nodes'],
      at: 'key',
      severity: 'warning',
      message:
        `${plural(n, 'node')} are fewer than the ${needed} needed for ${masters} masters with ` +
        `${plural(replicas, 'replica')} each: ${short} of the ${masters} masters will have ${lack}`,
    },
  ];
}

function redisIssues(data: Record<string, unknown>): Issue[] {
  const redis = data.redis;
  if (!isPlainObject(redis)) return [];
  const out: Issue[] = [];
  const config = redis.config;
  const hasPassword = redis.passwordEnv !== undefined || redis.passwordFile !== undefined;
  if (redis.passwordEnv !== undefined && redis.passwordFile !== undefined) {
    out.push(error(['redis', 'passwordFile'], 'give the password either as redis.passwordEnv or as redis.passwordFile, not both', 'key'));
  }
  if (redis.previousPasswordEnv !== undefined && redis.previousPasswordFile !== undefined) {
    out.push(error(['redis', 'previousPasswordFile'], 'give the previous password either as redis.previousPasswordEnv or as redis.previousPasswordFile, not both', 'key'));
  }
  for (const field of ['previousPasswordEnv', 'previousPasswordFile'] as const) {
    if (redis[field] !== undefined && !hasPassword) {
      out.push(error(['redis', field], `redis.${field} is the password being rotated away from; it needs the new one in redis.passwordEnv or redis.passwordFile`, 'key'));
    }
  }
  if (isPlainObject(config)) {
    for (const directive of Object.keys(config)) {
      if (SECRET_DIRECTIVES_IN_CONFIG.has(directive.toLowerCase())) {
        out.push(
          error(
            ['redis', 'config', directive],
            `redis.config must not set "${directive}": a password written in the spec ends up in version control; give it with redis.passwordEnv or redis.passwordFile, and rcluster sets requirepass and masterauth from it`,
            'key',
          ),
        );
        continue;
      }
      const owner = MANAGED_DIRECTIVES[directive.toLowerCase()] ?? (data.connection === 'local' ? LOCAL_MANAGED_DIRECTIVES[directive.toLowerCase()] : undefined);
      if (owner) out.push(error(['redis', 'config', directive], `redis.config must not set "${directive}": it comes from ${owner}`, 'key'));
    }
  }
  const remote = data.connection === undefined || data.connection === 'ssh' || data.connection === 'none';
  if (remote && redis.serverBinary !== undefined) {
    // Only a local node is started by rcluster itself; elsewhere its service (or whoever runs it) does.
    out.push(error(['redis', 'serverBinary'], `redis.serverBinary is what connection: local starts its nodes with; with connection ${String(data.connection ?? 'ssh')} the node's service starts it (redis.service), and redis.server says which server it is`, 'key'));
  }
  for (const field of REDIS_PATH_FIELDS) {
    const value = redis[field];
    if (typeof value !== 'string') continue;
    const unknown = [...value.matchAll(/\{([^{}]*)\}/g)].map((m) => m[1]).filter((p) => p !== 'host' && p !== 'port');
    if (unknown.length > 0) {
      out.push(error(['redis', field], `"${field}" has unknown placeholder {${unknown[0]}} (allowed: {host}, {port})`));
    }
    // clusterConfigFile is relative to dataDir on every kind of host; the others name files on a
    // remote host, where there is no sensible directory to be relative to. A service without a
    // slash is a systemd unit (provision/service.ts), e.g. Debian's valkey-server.
    const unit = field === 'service' && !value.includes('/');
    if (remote && field !== 'clusterConfigFile' && !unit && !value.startsWith('/')) {
      out.push(error(['redis', field], `"${field}" must be an absolute path for connection ${String(data.connection ?? 'ssh')} (got ${describe(value)})`));
    }
  }
  return out;
}

/**
 * Nodes that share a machine must not share files: a user-set path without {port} would make
 * them overwrite each other. Runs on the normalized cluster, where paths are resolved.
 */
export function collisionIssues(desired: DesiredCluster, data: unknown): Issue[] {
  const out: Issue[] = [];
  const userSet = (field: string): boolean => valueAt(data, ['redis', field]) !== undefined;
  for (const field of ['configFile', 'dataDir', 'service'] as const) {
    const owner = new Map<string, string>();
    for (const node of desired.nodes) {
      const path = node.redis[field];
      if (path === undefined) continue;
      // For local every node is on this machine, whatever host it is listed under.
      const machine = desired.connection === 'local' ? '' : node.host.toLowerCase();
      const key = `${machine}\0${path}`;
      const other = owner.get(key);
      if (other === undefined) {
        owner.set(key, node.address);
        continue;
      }
      out.push(
        error(
          userSet(field) ? ['redis', field] : ['redis'],
          `"${field}" is the same for ${other} and ${node.address} (${path}); include {port} in it`,
        ),
      );
      break;
    }
  }
  return out;
}

function plural(n: number, one: string, many = `${one}s`): string {
  return `${n} ${n === 1 ? one : many}`;
}
