/**
 * npm run bench: figures side by side with redis-cli --cluster, on this machine's loopback only.
 * The time from nothing to a healthy 3+3 cluster (README command 1), then the day-2 migration
 * benchmark (bench/migrate.ts), then issue 8's slow-login and slow-link figures on the SSH test
 * hosts (bench/laptop.ts). BENCH_ONLY=create, migrate or laptop runs one part.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { main } from '../src/cli/main.js';
import type { Io } from '../src/cli/io.js';
import { connectNode } from '../src/live/connect.js';
import { waitFor } from '../src/apply/wait.js';
import { BenchFailure, migrationBench } from './migrate.js';
import { laptopBench } from './laptop.js';

const RUNS = Number(process.env['BENCH_RUNS'] ?? 3);
const quiet: Io = { out: () => {}, err: (t) => process.stderr.write(t + '\n'), stdinIsTTY: false };

async function rcluster(...args: string[]): Promise<void> {
  const code = await main(['node', 'rcluster', ...args], quiet);
  if (code !== 0) throw new Error(`rcluster ${args.join(' ')} exited ${code}`);
}

function run(cmd: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'inherit'] });
    p.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`${cmd} exited ${code}`))));
  });
}

async function healthy(ports: number[], hostOf: (port: number) => string = () => '127.0.0.1'): Promise<void> {
  await waitFor(
    'cluster healthy',
    async () => {
      for (const p of ports) {
        const c = await connectNode(`${hostOf(p)}:${p}`);
        try {
          if (!String(await c.call('CLUSTER', 'INFO')).includes('cluster_state:ok')) return `${p} not ok`;
          const repl = await c.info('replication');
          if (repl.includes('role:slave') && !repl.includes('master_link_status:up')) return `${p} link down`;
        } finally {
          c.disconnect();
        }
      }
      return true;
    },
    { timeoutMs: 60_000, intervalMs: 20 },
  );
}

async function rclusterCreate(dir: string): Promise<number> {
  const file = join(dir, 'bench.yaml');
  writeFileSync(file, ['name: bench', 'connection: local', 'nodes:', ...[7401, 7402, 7403, 7404, 7405, 7406].map((p) => `  - 127.0.0.1:${p}`)].join('\n') + '\n');
  const t0 = performance.now();
  await rcluster('apply', '-f', file, '--auto-approve', '--json');
  await healthy([7401, 7402, 7403, 7404, 7405, 7406]);
  const ms = performance.now() - t0;
  await rcluster('destroy', '-f', file, '--auto-approve', '--json');
  return ms;
}

/** The same from nothing with redis-server + redis-cli --cluster create, as the runbook does. */
async function redisCliCreate(dir: string): Promise<number> {
  const ports = [7411, 7412, 7413, 7414, 7415, 7416];
  const t0 = performance.now();
  await Promise.all(
    ports.map((p) =>
      run('redis-server', ['--port', String(p), '--bind', '127.0.0.1', '--cluster-enabled', 'yes', '--cluster-config-file', `nodes-${p}.conf`, '--cluster-node-timeout', '5000', '--dir', dir, '--daemonize', 'yes', '--pidfile', join(dir, `${p}.pid`), '--logfile', join(dir, `${p}.log`), '--repl-diskless-sync-delay', '0']),
    ),
  );
  await waitFor('redis-server up', async () => {
    for (const p of ports) (await connectNode(`127.0.0.1:${p}`)).disconnect();
    return true;
  }, { timeoutMs: 10_000, intervalMs: 20 });
  await run('redis-cli', ['--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', '1', '--cluster-yes']);
  await healthy(ports);
  const ms = performance.now() - t0;
  await Promise.all(ports.map((p) => run('redis-cli', ['-p', String(p), 'shutdown', 'nosave']).catch(() => {})));
  return ms;
}

function summary(xs: number[]): string {
  const sorted = [...xs].sort((a, b) => a - b);
  const median = sorted[Math.floor(sorted.length / 2)] ?? NaN;
  return `median ${(median / 1000).toFixed(2)} s (min ${((sorted[0] ?? NaN) / 1000).toFixed(2)}, max ${((sorted[sorted.length - 1] ?? NaN) / 1000).toFixed(2)}, n=${xs.length})`;
}

/** The runbook's create over SSH, on the test hosts 127.0.0.51-56 (root only). */
async function sshCreate(): Promise<number | string> {
  const { harnessAvailable, startHarness } = await import('../test/harness/index.js');
  const { harnessSpec, RUNBOOK_REDIS } = await import('../test/harness/spec.js');
  const available = harnessAvailable();
  if (!available.ok) return `not measured: ${available.why}`;
  const hosts = [51, 52, 53, 54, 55, 56];
  const h = await startHarness({ hosts });
  const dir = mkdtempSync(join(tmpdir(), 'rcluster-bench-ssh-'));
  try {
    const file = join(dir, 'seed.yaml');
    writeFileSync(
      file,
      harnessSpec(h, { name: 'bench-seed', redis: { ...RUNBOOK_REDIS, nodeTimeout: 5000 }, nodes: hosts.map((n) => `127.0.0.${n}:${6300 + n}`) }),
    );
    const t0 = performance.now();
    await rcluster('apply', '-f', file, '--auto-approve', '--json');
    await healthy(hosts.map((n) => 6300 + n), (p) => `127.0.0.${p - 6300}`);
    return performance.now() - t0;
  } finally {
    await h.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function createBench(): Promise<void> {
  const ours: number[] = [];
  const theirs: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const a = mkdtempSync(join(tmpdir(), 'rcluster-bench-'));
    const b = mkdtempSync(join(tmpdir(), 'rcluster-bench-cli-'));
    try {
      ours.push(await rclusterCreate(a));
      theirs.push(await redisCliCreate(b));
    } finally {
      rmSync(a, { recursive: true, force: true });
      rmSync(b, { recursive: true, force: true });
    }
  }
  console.log('create a 3 masters + 3 replicas cluster from nothing (127.0.0.1, redis-server processes started by each tool or script):');
  console.log(`  rcluster apply            ${summary(ours)}`);
  console.log(`  redis-cli --cluster create ${summary(theirs)}`);
  console.log(`  ratio                     ${(Math.min(...ours) / Math.min(...theirs)).toFixed(2)}x (best of each)`);

  const ssh: (number | string)[] = [];
  for (let i = 0; i < RUNS; i++) {
    const r = await sshCreate();
    ssh.push(r);
    if (typeof r === 'string') break;
  }
  const sshTimes = ssh.filter((x): x is number => typeof x === 'number');
  console.log('\nthe runbook\'s create over SSH: six fresh test hosts (standalone redis on :6379) to a healthy 3+3 cluster:');
  console.log(`  rcluster apply            ${sshTimes.length > 0 ? summary(sshTimes) : ssh[0]}`);
}

const only = process.env['BENCH_ONLY'];
if (only !== undefined && only !== 'create' && only !== 'migrate' && only !== 'laptop') {
  console.error(`BENCH_ONLY must be create, migrate or laptop, not "${only}"`);
  process.exit(1);
}
try {
  if (only === undefined || only === 'create') await createBench();
  if (only === undefined || only === 'migrate') await migrationBench();
  if (only === undefined || only === 'laptop') await laptopBench();
} catch (err) {
  if (!(err instanceof BenchFailure)) throw err;
  console.error(`\nbenchmark failed: ${err.message}`);
  process.exitCode = 1;
}
