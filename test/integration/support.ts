import { execFile } from 'node:child_process';
import { accessSync, constants, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { expect } from 'vitest';
import { main } from '../../src/cli/main.js';
import type { Io } from '../../src/cli/io.js';
import { parseInfo } from '../../src/live/parse.js';
import { badKeys, type KeySet } from '../support/keys.js';

export interface CliResult {
  code: number;
  out: string;
  err: string;
}

/** Run the CLI in this process, as a user without a terminal would. */
export async function rcluster(...args: string[]): Promise<CliResult> {
  const out: string[] = [];
  const err: string[] = [];
  const io: Io = { out: (t) => out.push(t), err: (t) => err.push(t), stdinIsTTY: false };
  const code = await main(['node', 'rcluster', ...args], io);
  return { code, out: out.join('\n'), err: err.join('\n') };
}

const BIN = fileURLToPath(new URL('../../bin/rcluster.js', import.meta.url));

/**
 * Run the built binary in a child process: what a user's shell sees, exit code included.
 * `timeoutMs`: kill it after that long (`signal` then says so), so that a hang fails a test.
 */
export function rclusterBin(args: string[], opts: { cwd?: string; timeoutMs?: number } = {}): Promise<CliResult & { signal: string | null }> {
  return new Promise((res) => {
    execFile(process.execPath, [BIN, ...args], { cwd: opts.cwd, env: { ...process.env, NO_COLOR: '1' }, timeout: opts.timeoutMs ?? 0 }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === 'number' ? error.code : 1) : 0;
      res({ code, out: stdout, err: stderr, signal: error?.signal ?? null });
    });
  });
}

export function redisCli(args: string[]): Promise<CliResult> {
  return runTool('redis-cli', args);
}

function runTool(bin: string, args: string[]): Promise<CliResult> {
  return new Promise((res) => {
    execFile(bin, args, (error, stdout, stderr) => {
      res({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, out: stdout, err: stderr });
    });
  });
}

/**
 * A binary of the Valkey build that .ci/build-valkey caches (RCLUSTER_VALKEY_DIR, default
 * /var/cache/rcluster/valkey, as the script reads it). Debian 12 has no Valkey package, so a
 * machine without the build cannot run the Valkey tests: they fail saying how to get it,
 * rather than being skipped.
 */
export function valkeyBin(name: 'valkey-server' | 'valkey-cli' = 'valkey-server'): string {
  const dir = process.env['RCLUSTER_VALKEY_DIR'] || '/var/cache/rcluster/valkey';
  const path = join(dir, 'bin', name);
  try {
    accessSync(path, constants.X_OK);
  } catch {
    throw new Error(`${path} is missing or not executable: run .ci/build-valkey (it builds Valkey 9 from Debian sid's source into ${dir}, or RCLUSTER_VALKEY_DIR; .ci/run does so before the tests)`);
  }
  return path;
}

export function valkeyCli(args: string[]): Promise<CliResult> {
  return runTool(valkeyBin('valkey-cli'), args);
}

/** A spec for connection: local in a fresh temp dir; returns its path. */
export function localSpec(name: string, ports: number[], extra = ''): { file: string; dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), `rcluster-${name}-`));
  const file = join(dir, 'cluster.yaml');
  writeFileSync(file, [`name: ${name}`, 'connection: local', extra, 'nodes:', ...ports.map((p) => `  - 127.0.0.1:${p}`), ''].filter((l) => l !== '').join('\n') + '\n');
  return { file, dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export async function withNode<T>(port: number, fn: (r: Redis) => Promise<T>, host = '127.0.0.1'): Promise<T> {
  const r = new Redis({ host, port, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  r.on('error', () => {});
  await r.connect();
  try {
    return await fn(r);
  } finally {
    r.disconnect();
  }
}

export async function answers(port: number, host = '127.0.0.1'): Promise<boolean> {
  try {
    return (await withNode(port, (r) => r.ping(), host)) === 'PONG';
  } catch {
    return false;
  }
}

export function ports(from: number, count: number): number[] {
  return Array.from({ length: count }, (_, i) => from + i);
}

/** INFO `section` of the node on `port`, as fields. */
export async function infoOf(port: number, section: string): Promise<Record<string, string>> {
  return parseInfo(await withNode(port, (r) => r.info(section)));
}

/** Slots held by each master that holds any, ascending, as the node on `port` sees them. */
export async function masterSlotCounts(port: number): Promise<number[]> {
  const text = String(await withNode(port, (r) => r.call('CLUSTER', 'NODES')));
  return text
    .trim()
    .split('\n')
    .map((line) =>
      line
        .split(' ')
        .slice(8)
        .filter((r) => !r.startsWith('['))
        .reduce((k, r) => {
          const [a, b] = r.split('-').map(Number);
          return k + ((b ?? a) as number) - (a as number) + 1;
        }, 0),
    )
    .filter((n) => n > 0)
    .sort((a, b) => a - b);
}

/**
 * What a step of a test ends with: every key there with its value, the server's own
 * `--cluster check` (redis-cli or valkey-cli) clean, and nothing left to plan.
 */
export async function expectClusterIntact(o: { seed: string; keys: KeySet; cli: (args: string[]) => Promise<CliResult>; specFile: string }): Promise<void> {
  expect(await badKeys(o.seed, o.keys)).toEqual([]);
  const check = await o.cli(['--cluster', 'check', o.seed]);
  expect(check.out).toContain('[OK] All nodes agree about slots configuration.');
  expect(check.out).toContain('[OK] All 16384 slots covered.');
  expect(check.out).not.toMatch(/\[WARNING\]|\[ERR\]/);
  const again = await rcluster('plan', '-f', o.specFile, '--detailed-exitcode');
  expect(again.out).toContain('No changes.');
  expect(again.code).toBe(0);
}
