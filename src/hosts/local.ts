import { exec } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { copyFile, mkdir, readFile, rename, rm, stat, writeFile, chmod } from 'node:fs/promises';
import { dirname } from 'node:path';
import { HostError } from '../errors.js';
import type { HostDriver, RunOptions, RunResult } from './driver.js';

/** connection: local — the "host" is this machine; files and commands are local. */
export function createLocalDriver(): HostDriver {
  return {
    kind: 'local',
    async readFile(host, path) {
      try {
        return await readFile(path, 'utf8');
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
        throw new HostError(host, `read ${path}`, (err as Error).message);
      }
    },
    async writeFileAtomic(host, path, content, opts) {
      const tmp = `${path}.rcluster-tmp-${randomBytes(4).toString('hex')}`;
      try {
        await mkdir(dirname(path), { recursive: true });
        const previous = await stat(path).catch(() => null);
        const mode = previous ? previous.mode & 0o777 & (opts?.mode ?? 0o777) : (opts?.mode ?? 0o644);
        await writeFile(tmp, content, { mode });
        await chmod(tmp, mode);
        if (opts?.backup && previous) {
          await copyFile(path, `${path}.rcluster.bak`);
          await chmod(`${path}.rcluster.bak`, mode);
        }
        await rename(tmp, path);
      } catch (err) {
        await rm(tmp, { force: true });
        throw new HostError(host, `write ${path}`, (err as Error).message);
      }
    },
    run(_host, command, opts?: RunOptions): Promise<RunResult> {
      return new Promise((resolve) => {
        exec(command, { timeout: opts?.timeoutMs ?? 60_000, shell: '/bin/sh' }, (err, stdout, stderr) => {
          const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
          resolve({ code, stdout, stderr });
        });
      });
    },
    async close() {},
  };
}
