import { mkdir, open, readFile, rm, rmdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { UsageError } from '../errors.js';
import type { DesiredCluster } from '../spec/types.js';

/**
 * One apply or destroy at a time per local cluster: two at once would race to start the same
 * nodes. The lock is a file holding the owner's pid; one left by a killed process is taken over.
 * Clusters on other hosts have no shared place for a lock yet.
 */
export async function withLocalLock<T>(desired: DesiredCluster, fn: () => Promise<T>): Promise<T> {
  if (desired.connection !== 'local') return fn();
  const path = join(desired.source.dir, '.rcluster', desired.name, 'apply.lock');
  await mkdir(dirname(path), { recursive: true });
  for (let attempt = 0; ; attempt++) {
    try {
      const handle = await open(path, 'wx');
      await handle.writeFile(String(process.pid));
      await handle.close();
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || attempt > 0) throw lockError(path, err);
      const owner = Number((await readFile(path, 'utf8').catch(() => '')).trim());
      if (owner > 0 && alive(owner)) {
        throw new UsageError(`another rcluster (pid ${owner}) is changing cluster "${desired.name}" right now; wait for it to finish (lock: ${path})`);
      }
      await rm(path, { force: true });
    }
  }
  try {
    return await fn();
  } finally {
    await rm(path, { force: true });
    // Leave no empty directory behind (after destroy, say).
    for (const dir of [dirname(path), dirname(dirname(path))]) await rmdir(dir).catch(() => {});
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function lockError(path: string, err: unknown): UsageError {
  return new UsageError(`cannot take the lock ${path}: ${(err as Error).message}`);
}
