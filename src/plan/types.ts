import type { DesiredCluster } from '../spec/types.js';
import type { SlotRange } from '../live/types.js';
import type { BigKey } from './bigKeys.js';

/**
 * One change to a cluster. A closed union, named verb + noun, that grows with each capability;
 * nodes are named by address ("host:port") because new nodes have no id until they run.
 */
export type Step =
  /**
   * Write the node's redis.conf and (re)start it with cluster-enabled; wait until it answers.
   * `replaces`: a standalone redis on another port of the host that the restart stops.
   */
  | { kind: 'provision_node'; node: string; reason: string; config?: ConfigChange; service?: string; replaces?: string }
  /**
   * A running node whose config changes in a way only a restart applies; one node at a time.
   * A master first hands its slots to `failoverTo` (CLUSTER FAILOVER) and restarts as its replica;
   * a master without an in-sync replica has its writes paused and is saved first (`saveFirst`).
   * Apply checks the roles again when it gets there.
   */
  | { kind: 'restart_node'; node: string; reason: string; config: ConfigChange; service?: string; failoverTo?: string; saveFirst?: boolean }
  /** Directives CONFIG SET changes live; the file is updated too, and nothing restarts. */
  | { kind: 'set_config'; node: string; config: ConfigChange }
  /** Give a fresh master a distinct config epoch before it meets anyone, as redis-cli create does. */
  | { kind: 'set_config_epoch'; node: string; epoch: number }
  /**
   * CLUSTER MEET `node` from each node of `via`. Meeting more than one node at once lets the
   * handshakes run in parallel instead of waiting for gossip to spread them.
   */
  | { kind: 'meet_node'; node: string; via: string[] }
  /** Wait until every node knows every other node, with no handshake left. */
  | { kind: 'wait_join'; nodes: string[] }
  /** CLUSTER ADDSLOTSRANGE on a master for slots nobody owns. */
  | { kind: 'add_slots'; node: string; ranges: SlotRange[] }
  /** Wait until every node agrees on slot owners and reports cluster_state:ok. */
  | { kind: 'wait_cluster_ok'; nodes: string[] }
  /**
   * CLUSTER REPLICATE: make `node` a replica of `master`. `resync`: it follows another master now
   * (or was one), and fetches the new master's data in a full sync.
   */
  | { kind: 'replicate'; node: string; master: string; resync?: boolean }
  /**
   * Wait until each replica's INFO replication shows master_link_status:up, and every node's view
   * agrees on who replicates whom.
   */
  | { kind: 'wait_replication'; replicas: string[] }
  /**
   * A slot left open by an interrupted migration (`[slot->-id]` / `[slot-<-id]`): move the keys
   * left and give it to the node that was importing it. Comes before anything else touches slots.
   */
  | { kind: 'finish_migration'; from: string; to: string; slots: number[]; keys: number }
  /**
   * Move slots between two masters with keys in them (the migration engine). `lastSlots`: the
   * source gives away everything it has and must stay a master until it is removed.
   * `newTarget`: `to` owns no slot yet, so clients do not know it: its first slot moves alone,
   * then its slots migrate on a ramp (apply/migrate.ts rampLimit).
   * `strategy`: how apply moves them (plan/strategy.ts decides it from what every node runs);
   * absent (plan files written before it existed): the classic MIGRATE engine.
   */
  | { kind: 'migrate_slots'; from: string; to: string; slots: SlotRange[]; count: number; keys: number; lastSlots?: boolean; newTarget?: boolean; strategy?: MigrationStrategy }
  /**
   * A server-side migration (Valkey CLUSTER MIGRATESLOTS) that was already running when the plan
   * was made, by an apply cut off or by hand: apply waits for it to end before anything else,
   * and fails if it ends other than in success. The plan counts its slots as the target's.
   */
  | { kind: 'wait_slot_migrations'; jobs: { source: string; target: string; ranges: SlotRange[]; name: string }[] }
  /**
   * The in-sync replica `node` takes its master's slots over (CLUSTER FAILOVER): the master leaves
   * the spec, or (`preferred`) `node` is the shard's preferredMaster and the master stays as its replica.
   */
  | { kind: 'failover'; node: string; master: string; preferred?: boolean }
  /**
   * A node that holds keys or remembers another cluster, re-added with --allow-reset: FLUSHALL
   * (a master's keys; a replica's copy goes with the reset) and CLUSTER RESET HARD, so that it
   * joins as a new, empty node. `keys` (-1: not running yet, so not counted), `knows` and `slots`
   * say what is wiped.
   */
  | { kind: 'reset_node'; node: string; keys: number; knows: string[]; slots: SlotRange[] }
  /** CLUSTER FORGET the node on each node of `via` (every node that stays). */
  | { kind: 'forget_node'; node: string; id: string; via: string[] }
  /**
   * A node that leaves the spec and the cluster: CLUSTER RESET SOFT (it holds no slots by then, and
   * a replica's copy is dropped) so that it can be re-added cleanly, then stop it through its host
   * (connection local and ssh); forget_node follows. `reachable` false: it is down and is only
   * forgotten; `wasReset`: its saved state shows it was reset before it stopped.
   */
  | { kind: 'remove_node'; node: string; id: string; stop: boolean; reachable: boolean; wasReset?: boolean; service?: string; clientsWaitMs?: number };

export type StepKind = Step['kind'];

/**
 * `atomic`: the source moves the slots itself (Valkey >= 9 CLUSTER MIGRATESLOTS, apply/atomic.ts);
 * `classic`: SETSLOT + MIGRATE driven by rcluster (apply/migrate.ts). `why`: on a cluster that
 * runs Valkey, why not atomic ("127.0.0.1:7884 is valkey 8.1.0").
 */
export type MigrationStrategy = { kind: 'atomic' } | { kind: 'classic'; why?: string };

/** An edit of a node's config file, as the plan shows it. */
export interface ConfigChange {
  path: string;
  /**
   * `secret`: a password directive. `from` and `to` then say what the value is ("(the password
   * from $REDIS_PASSWORD)"), never the value; apply takes the value from this run's credentials.
   */
  changed: { directive: string; from: string | null; to: string; secret?: true }[];
  /** Unified diff of the file. */
  diff: string;
}

/** Where a step is shown in the human plan, and with which marker. */
export type StepGroup = 'provision' | 'join' | 'slots' | 'replicas' | 'removal';

/** The role the plan gives a node. */
export type NodeRole = { node: string; role: 'master'; slots: SlotRange[] } | { node: string; role: 'replica'; master: string };

export interface Plan {
  formatVersion: 1;
  /** The spec as it was planned; apply of a plan file uses it and nothing else. */
  desired: DesiredCluster;
  /** Hash of the live state the plan was computed from (the staleness check compares it). */
  fingerprint: string;
  /** The same, node by node (address -> hash): what a stale plan names as changed. */
  nodeFingerprints?: Record<string, string>;
  /** The roles the spec leads to (for display and for later checks). */
  roles: NodeRole[];
  steps: Step[];
  warnings: string[];
  /** Spec nodes that cannot be reached: nothing is planned for them; apply needs --allow-down. */
  down?: DownNode[];
  /** Keys in the slots that move too big to move safely (plan/bigKeys.ts); apply refuses them. */
  bigKeys?: BigKey[];
  /** --allow-big-keys given to plan: a saved plan carries the decision to move them anyway. */
  allowBigKeys?: boolean;
  createdAt: string;
}

/** A member of the cluster that cannot be reached, as the plan shows it. */
export interface DownNode {
  node: string;
  /** "host down (ssh: connection refused)", "does not answer (connect ECONNREFUSED)". */
  reason: string;
  /** What the cluster says it is: "a replica of 127.0.0.1:7002", "a master without slots (…)". */
  role: string;
  /** The cluster marks it failed (fail flag), not only suspected. */
  failed: boolean;
}

/**
 * The cluster-node-timeout apply gives a node while it joins: Redis's shortest rejoin delay
 * (CLUSTER_MIN_REJOIN_DELAY). A run cut off before it gave the node its own back leaves it; the
 * plan recognises it.
 */
export const JOIN_NODE_TIMEOUT_MS = 500;

/**
 * Slots in flight from one source at once (in MIGRATING, or about to be), over all its moves:
 * only these can answer clients -ASK. They move in two groups of half as many, each in one
 * script and handed over in one pipeline: each group costs every node whose slots change a
 * nodes.conf save (and most an fsync), so smaller groups cost more. Measured with npm run bench
 * (250k keys move, a 2-core machine): with 8 or 16 a scale-in took 2-3 times the time and node
 * CPU of the rounds of 256 slots this replaced; with 32 its moves took 2.6 s (3.0 s before) and
 * a scale-out's 2.5 s (2.1 s before, the ramp included).
 */
export const MIGRATION_WINDOW = 32;

/**
 * Towards a master that owned no slot when the plan was made, and that clients therefore do not
 * know: slots already handed over to it per slot migrating to it, after its first slot moved
 * alone. A client learns a node from a -MOVED; some (redis-py) fail on an -ASK to a node they
 * do not know.
 */
export const RAMP_RATIO = 32;

/**
 * How long a node to be removed waits for its clients to leave before it is reset and stopped.
 * A cluster client whose slot map still names it sends it commands: answered -MOVED while it is
 * a member, they fail once it is reset (CLUSTERDOWN) or stopped (node-redis then waits on it
 * for ever). A client refreshes its map on the first -MOVED, and drops the node. Connections
 * that stay longer (a per-node exporter, a redis-cli session) are cut when it stops.
 */
export const CLIENTS_LEAVE_MS = 10_000;
