import type { SlotMigrationEntry } from './slotMigrations.js';

/** What is really there, read fresh each time. */

export interface SlotRange {
  /** Inclusive bounds. */
  start: number;
  end: number;
}

/** One line of CLUSTER NODES. */
export interface ClusterNodeEntry {
  id: string;
  /** host:port as announced; host may be '' on a node that has not learnt its own address yet. */
  host: string;
  port: number;
  busPort: number;
  hostname?: string;
  /** Redis 7.2+ auxiliary address fields (`shard-id=…`, `tls-port=…`), when present. */
  aux?: Record<string, string>;
  flags: string[];
  myself: boolean;
  role: 'master' | 'replica' | 'unknown';
  /** The master's id for a replica, else null. */
  masterId: string | null;
  pingSent: number;
  pongReceived: number;
  configEpoch: number;
  linkState: 'connected' | 'disconnected';
  fail: boolean;
  pfail: boolean;
  handshake: boolean;
  noaddr: boolean;
  slots: SlotRange[];
  /** `[slot->-id]`: this node is migrating the slot to node id. */
  migrating: { slot: number; to: string }[];
  /** `[slot-<-id]`: this node is importing the slot from node id. */
  importing: { slot: number; from: string }[];
}

export interface ReplicationInfo {
  role: 'master' | 'replica';
  masterHost?: string;
  masterPort?: number;
  masterLinkStatus?: 'up' | 'down';
  connectedReplicas: number;
}

/** The server a node runs, from INFO server (parseServer). */
export interface ServerInfo {
  /** `server_name`: `valkey`; `redis` when INFO has none (Redis). */
  name: string;
  /** Its own version: `valkey_version` on Valkey, `redis_version` on Redis. */
  version: string;
}

export interface LiveNode {
  /** host:port as rcluster dialled it. */
  address: string;
  host: string;
  port: number;
  reachable: boolean;
  /** Why the node could not be read, when it could not. */
  error?: string;
  /** It accepted the connection but failed to answer (BUSY, LOADING, a timeout): state unknown. */
  unresponsive?: boolean;
  /** redis.config keys this running server does not know (CONFIG GET returns nothing). */
  unknownDirectives?: string[];
  /** CONFIG GET of the spec's redis.config directives on the running server (names lowercased). */
  runningConfig?: Record<string, string>;
  /** INFO server config_file: the file the running redis-server was started with. */
  runningConfigFile?: string;
  clusterEnabled: boolean;
  /** This node's own id (cluster-enabled only). */
  id?: string;
  /** This node's view of the cluster (cluster-enabled only). */
  view: ClusterNodeEntry[];
  clusterInfo: Record<string, string>;
  replication?: ReplicationInfo;
  /** Keys across all databases. */
  keys: number;
  /** Keys in each slot a master owns (CLUSTER COUNTKEYSINSLOT), when it holds any. */
  slotKeys?: Map<number, number>;
  /** INFO redis_version: on Valkey, the Redis version it is compatible with (see `server`). */
  redisVersion?: string;
  server?: ServerInfo;
  /**
   * Server-side slot migrations this node is running as their source (Valkey >= 9 CLUSTER
   * GETSLOTMIGRATIONS, EXPORTs not ended yet); absent where the server has none to report.
   */
  slotMigrations?: SlotMigrationEntry[];
  /** INFO used_memory_dataset: no key on the node is bigger (plan/bigKeys.ts skips reading its keys). */
  datasetBytes?: number;
  /** For a node that does not answer: the cluster state saved in its cluster config file, if any. */
  onDisk?: { path: string; view: ClusterNodeEntry[] };
  /** What its host says about it (connections local and ssh). */
  facts?: HostFacts;
  /**
   * Its host cannot be reached over SSH at all (refused, timed out, no route): why, naming the
   * host. `facts` is then unknown; the node itself may still answer.
   */
  hostDown?: string;
  /**
   * With a password in the spec: which password the node took when rcluster logged in, whether
   * it accepts exactly the spec's (and, while rotating, the previous one), and whether its
   * masterauth is the spec's. Only comparisons: no password is kept.
   */
  auth?: {
    acceptedBy: 'password' | 'previous' | 'none';
    /** What its default user accepts: the spec's password, the previous one, how many others, or anything (nopass). */
    accepts: { password: boolean; previous: boolean; others: number; nopass: boolean };
    /** It accepts exactly what the spec asks: the password, and the previous one while rotating. */
    passwordsOk: boolean;
    masterauthOk: boolean;
  };
}

/** A node's files and service, as read through its host. */
export interface HostFacts {
  configFile: string;
  /** The config file's content; null when it does not exist. */
  configText: string | null;
  /** The service command exists and is executable (ssh). */
  serviceExists: boolean;
  /** The config file and its directory can be written (ssh): the edit is a temp file + rename. */
  configWritable: boolean;
  /**
   * `redis-server --version` on the host (ssh), or `valkey-server --version` with redis.server
   * valkey: every Valkey has the directives Redis 7.2 has, so a version test for Redis 7 holds.
   */
  redisVersion?: string;
  /**
   * A redis answering on the port the config file sets today, when that differs from the spec's
   * port: the standalone instance of a freshly installed host.
   */
  standalone?: { address: string; clusterEnabled: boolean; keys: number };
  /**
   * The config file's server asked from its own host (ssh): `keys` when it answered DBSIZE,
   * otherwise its reply (an error such as NOAUTH). Absent when nothing answers there.
   */
  onHost?: { address: string; keys?: number; reply: string };
}

export interface LiveCluster {
  /** One entry per address rcluster looked at, in spec order, then any others discovered. */
  nodes: LiveNode[];
}
