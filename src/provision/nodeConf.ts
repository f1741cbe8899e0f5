import type { ConnectionKind, DesiredNode } from '../spec/types.js';
import { editRedisConf, type ConfEdit, type ConfEditResult } from './redisConf.js';

/**
 * The redis.conf directives rcluster owns for a node. Everything else in the file is the
 * operator's and is kept as it is.
 */
export function ownedDirectives(node: DesiredNode, connection: ConnectionKind): ConfEdit[] {
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
  for (const [directive, value] of Object.entries(r.config)) edits.push({ directive, value });
  return edits;
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
export function renderNodeConf(node: DesiredNode, connection: ConnectionKind, current: string | null): ConfEditResult {
  const base = current ?? (connection === 'local' ? localBaseConf(node) : '');
  return editRedisConf(base, ownedDirectives(node, connection));
}
