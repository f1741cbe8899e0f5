import { readdir, rm, rmdir, stat } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import pLimit from 'p-limit';
import { stopNode } from '../apply/nodes.js';
import { PlanError } from '../errors.js';
import { inspectCluster } from '../live/inspect.js';
import type { DesiredCluster } from '../spec/types.js';

export interface DestroyPlan {
  nodes: { address: string; running: boolean; paths: string[] }[];
}

/** What destroy would stop and delete. A node on a spec port that rcluster did not start is refused. */
export async function planDestroy(desired: DesiredCluster): Promise<DestroyPlan> {
  const live = await inspectCluster(desired);
  const nodes = await Promise.all(
    desired.nodes.map(async (n, i) => {
      const node = live.nodes[i];
      const running = node?.reachable ? (node.runningConfigFile ?? '') : null;
      if (running !== null && resolve(running) !== resolve(n.redis.configFile)) {
        throw new PlanError(
          `${n.address} is a ${node?.server?.name ?? 'redis'}-server started from ${running || 'no config file'}, not from ${n.redis.configFile}; rcluster did not start it and will not stop it`,
        );
      }
      const paths: string[] = [];
      for (const p of [n.redis.dataDir, n.redis.configFile]) {
        if (paths.some((q) => p.startsWith(q + '/'))) continue;
        if (await stat(p).catch(() => null)) paths.push(p);
      }
      return { address: n.address, running: running !== null, paths };
    }),
  );
  return { nodes };
}

export function renderDestroy(desired: DesiredCluster, plan: DestroyPlan): string {
  const lines: string[] = [];
  for (const n of plan.nodes) {
    if (n.running) lines.push(`  - stop ${n.address} (SHUTDOWN NOSAVE)`);
    for (const p of n.paths) lines.push(`  - delete ${p}`);
  }
  if (lines.length === 0) return `Nothing to destroy: no node of cluster "${desired.name}" is running and no files are left.\n`;
  const running = plan.nodes.filter((n) => n.running).length;
  const paths = plan.nodes.reduce((k, n) => k + n.paths.length, 0);
  return [`rcluster will destroy cluster "${desired.name}" (connection: local); its data will be lost:`, '', ...lines, '', `Destroy: ${running} node(s) to stop, ${paths} path(s) to delete.`].join('\n') + '\n';
}

export async function destroyLocal(desired: DesiredCluster, plan: DestroyPlan, report: (line: string) => void): Promise<void> {
  const limit = pLimit(16);
  await Promise.all(
    plan.nodes.map((n) =>
      limit(async () => {
        if (n.running && (await stopNode(n.address, { discard: true }))) report(`stopped ${n.address}`);
        for (const p of n.paths) {
          await rm(p, { recursive: true, force: true });
          report(`deleted ${p}`);
        }
      }),
    ),
  );
  // Remove the per-cluster directories rcluster made, once they are empty.
  const parents = new Set(desired.nodes.flatMap((n) => [dirname(n.redis.dataDir), dirname(dirname(n.redis.dataDir))]));
  for (const dir of [...parents].sort((a, b) => b.length - a.length)) {
    if (!dir.split('/').includes('.rcluster')) continue;
    if ((await readdir(dir).catch(() => ['?'])).length === 0) await rmdir(dir).catch(() => {});
  }
}
