/** The normalized form of cluster.yaml: what the operator asked for, with defaults applied. */

export type ConnectionKind = 'ssh' | 'local' | 'none';
/** The server the nodes run: Valkey speaks Redis's protocol and reads the same config file. */
export type ServerKind = 'redis' | 'valkey';
export type HostKeyPolicy = 'strict' | 'accept-new';

export interface SshSettings {
  user?: string;
  port: number;
  identityFile?: string;
  knownHostsFile: string;
  hostKeyPolicy: HostKeyPolicy;
  /** The OpenSSH client config to read (absolute); unset: ~/.ssh/config when it exists. */
  configFile?: string;
  /** The name SSH uses for the node's host (a Host alias of the config); unset: the node's host. */
  alias?: string;
  /** Jump hosts, as ProxyJump writes them: `[user@]host[:port]`, comma-separated, outermost first. */
  jump?: string;
  /** `sudo`: the SSH user is not root; every command and file runs through `sudo -n`. */
  become?: 'sudo';
  /** Redis is reached through each node's SSH connection, never dialled directly (cluster-wide). */
  tunnel?: boolean;
  /** Fields holding rcluster's defaults rather than the spec's: the OpenSSH config may set them. */
  implicit?: ('port' | 'knownHostsFile')[];
}

/** Redis settings as written in the spec; path fields may still hold {host} and {port}. */
export interface RedisSettings {
  configFile: string;
  service?: string;
  server: ServerKind;
  /**
   * What connection: local starts a node with (absolute, or a bare name looked up on PATH);
   * unset: `<server>-server`.
   */
  serverBinary?: string;
  dataDir: string;
  clusterConfigFile: string;
  /** cluster-node-timeout, in milliseconds. */
  nodeTimeout: number;
  /** Extra redis.conf directives, directive name -> value. */
  config: Record<string, string>;
}

/** Redis settings for one node, with {host} and {port} resolved (and, for local, made absolute). */
export interface NodeRedisSettings extends RedisSettings {
  service?: string;
}

/**
 * The command that starts a local node. A plan file written before redis.server existed has no
 * server: it ran redis.
 */
export function serverCommand(r: Pick<RedisSettings, 'server' | 'serverBinary'>): string {
  return r.serverBinary ?? `${r.server ?? 'redis'}-server`;
}

export interface DesiredNode {
  host: string;
  port: number;
  /** "host:port": the one name of a node everywhere in rcluster. */
  address: string;
  /** Relative share of slots when the node is a master. */
  weight: number;
  /**
   * The shard's master of choice: picked first as a master, and when it is an in-sync replica
   * (after its host failed and came back), the plan proposes a graceful CLUSTER FAILOVER back to it.
   */
  preferredMaster?: boolean;
  /** SSH settings after per-node overrides. */
  ssh: SshSettings;
  redis: NodeRedisSettings;
}

/**
 * How long rcluster waits. A wait on data (a replica's first sync, a save, a load, a MIGRATE
 * batch) gets `waitMs` plus the data's size at `transferRate`: a 20 GB dataset is not refused for
 * taking longer than a 1 MB one.
 */
export interface Timeouts {
  /** One Redis command, in ms. */
  commandMs: number;
  /** The base of every wait (nodes joining, agreeing, syncing, saving), in ms. */
  waitMs: number;
  /** The slowest rate data is assumed to move at, in MB/s (10^6 bytes a second). */
  transferRate: number;
}

export const DEFAULT_TIMEOUTS: Timeouts = { commandMs: 10_000, waitMs: 60_000, transferRate: 20 };

/** The time a wait on `bytes` of data may take. */
export function dataTimeoutMs(t: Timeouts, bytes: number): number {
  return t.waitMs + Math.ceil(bytes / (t.transferRate * 1000));
}

/** Where a secret comes from: an environment variable, or a file on this machine (absolute path). */
export type SecretRef = { env: string } | { file: string };

/**
 * The cluster's password, by reference only: the value is read when a command runs
 * (spec/secrets.ts) and never enters the spec, a plan or a plan file.
 */
export interface AuthSpec {
  password: SecretRef;
  /** While rotating: the password the nodes still accept alongside the new one. */
  previous?: SecretRef;
}

export interface DesiredCluster {
  name: string;
  connection: ConnectionKind;
  replicasPerMaster: number;
  masters: number;
  /**
   * `masters` was written in the spec. When it was derived from the node count instead, a running
   * cluster with another number of masters is refused rather than resharded: a node count alone
   * never moves slots.
   */
  mastersExplicit: boolean;
  nodes: DesiredNode[];
  /** `migration: classic` in the spec: the MIGRATE engine even where every node could move slots server-side (plan/strategy.ts). */
  migration?: 'classic';
  timeouts: Timeouts;
  /** requirepass and masterauth of every node, and rcluster's own login. */
  auth?: AuthSpec;
  /**
   * The cluster-wide SSH and redis settings, with {host} and {port} unresolved: what a node that
   * is no longer listed (and is being removed) is reached and stopped with.
   */
  defaults: { ssh: SshSettings; redis: RedisSettings };
  /** Absolute path of the spec file, and the directory relative paths resolve against. */
  source: { file: string; dir: string };
}

export type Severity = 'error' | 'warning';

/** One problem with a spec, positioned in its file (line and col are 1-based). */
export interface Diagnostic {
  file: string;
  line: number;
  col: number;
  severity: Severity;
  message: string;
}
