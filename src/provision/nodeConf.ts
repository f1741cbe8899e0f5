import type { ConnectionKind, DesiredNode } from '../spec/types.js';
import { editRedisConf, type ConfEdit, type ConfEditResult } from './redisConf.js';

/**
 * The redis.conf directives rcluster owns for a node. Everything else in the file is the
 * operator's and is kept as it is.
 */
export interface ConfContext {
  connection: ConnectionKind;
  replicasPerMaster: number;
  /** The redis-server version on the node's host, when known: some directives need 7.0. */
  redisVersion?: string;
  /** The cluster's password (requirepass and masterauth), when the spec gives one. */
  password?: string;
}

export function ownedDirectives(node: DesiredNode, ctx: ConfContext): ConfEdit[] {
  const { connection } = ctx;
  const r = node.redis;
  const edits: ConfEdit[] = [
    { directive: 'port', value: String(node.port) },
    { directive: 'bind', value: node.host },
    { directive: 'cluster-enabled', value: 'yes' },
    { directive: 'cluster-config-file', value: r.clusterConfigFile },
    { directive: 'cluster-node-timeout', value: String(r.nodeTimeout) },
    { directive: 'dir', value: r.dataDir },
  ];
  if (connection === 'local') {
    // Every local node shares this machine's loopback; announcing the spec's address keeps
    // peers from learning each other by whatever source address the kernel picked.
    edits.push({ directive: 'cluster-announce-ip', value: node.host });
  }
  if (ctx.password !== undefined) {
    // Clients and rcluster log in with it; replicas give it to their master.
    edits.push({ directive: 'requirepass', value: ctx.password }, { directive: 'masterauth', value: ctx.password });
  } else if (connection === 'ssh' && !('protected-mode' in r.config)) {
    // Redis 7's protected mode trusts only 127.0.0.1 and ::1 when there is no password: a
    // replica on another host would get -DENIED on every sync and could never fail over.
    // bind (above) keeps the node on its own address. With a password, protected mode is off
    // by itself.
    edits.push({ directive: 'protected-mode', value: 'no' });
  }
  if (connection === 'ssh' && ctx.replicasPerMaster > 0 && atLeast(ctx.redisVersion, 7) && !('repl-diskless-sync-max-replicas' in r.config)) {
    // A master then starts a diskless sync as soon as its expected replicas have connected,
    // instead of waiting repl-diskless-sync-delay (5 s by default) for more to come.
    edits.push({ directive: 'repl-diskless-sync-max-replicas', value: String(ctx.replicasPerMaster) });
  }
  for (const [directive, value] of Object.entries(r.config)) edits.push({ directive, value });
  return edits;
}

function atLeast(version: string | undefined, major: number): boolean {
  return version !== undefined && Number(version.split('.')[0]) >= major;
}

/** The file a local node starts from: the process settings a daemon on this machine needs. */
export function localBaseConf(node: DesiredNode): string {
  const dir = node.redis.dataDir;
  return [
    `# redis.conf for ${node.address}, written by rcluster (connection: local).`,
    `# Directives rcluster owns are rewritten on apply; others added here are kept.`,
    `daemonize yes`,
    `pidfile ${dir}/redis.pid`,
    `logfile ${dir}/redis.log`,
    `# Demo nodes start empty: let a replica's first sync start at once instead of`,
    `# waiting 5 s for other replicas to share it.`,
    `repl-diskless-sync-delay 0`,
    ``,
  ].join('\n');
}

/** The node's config file after rcluster's edits, from its current content (null: none yet). */
export function renderNodeConf(node: DesiredNode, ctx: ConfContext, current: string | null): ConfEditResult {
  const base = current ?? (ctx.connection === 'local' ? localBaseConf(node) : '');
  return editRedisConf(base, ownedDirectives(node, ctx));
}
