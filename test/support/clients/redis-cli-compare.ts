/**
 * Issue 14's comparison, by hand, not part of CI: the same three writers as
 * test/integration/clients.test.ts through redis-cli's own runbook instead of rcluster apply:
 * scale-out with `--cluster add-node` + `rebalance --cluster-use-empty-masters`, scale-in with
 * `rebalance --cluster-weight <id>=0` + `del-node`, then the node stopped (as rcluster stops it).
 * The 3 base masters are created with rcluster (the starting point does not matter here); each
 * cycle's new node is a redis-server started here, on a port no client has seen.
 *
 *   npm run build && node --import tsx test/support/clients/redis-cli-compare.ts [CYCLES]
 *
 * Uses ports 7701-7708 (the test's: do not run both at once). Prints each phase's account per
 * writer, then each writer's result.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { waitFor } from '../../../src/apply/wait.js';
import { answers, ports, rcluster, withNode } from '../../integration/support.js';
import { badKeys, everySlot, loadKeys } from '../keys.js';
import { WriterProcess, type Library, type Stretch } from './processes.js';

const PORTS = ports(7701, 8);
const BASE = PORTS.slice(0, 3);
const P1 = BASE[0] as number;
const addr = (p: number) => `127.0.0.1:${p}`;
const KEYS = everySlot(200_000);
const CYCLES = Math.min(Number(process.argv[2] ?? 3), PORTS.length - BASE.length);
const LIBRARIES: { library: Library; prefix: string }[] = [
  { library: 'redis-py', prefix: 'py:' },
  { library: 'node-redis', prefix: 'nr:' },
  { library: 'ioredis', prefix: 'io:' },
];

function run(file: string, args: string[]): Promise<{ code: number; out: string }> {
  return new Promise((res) => execFile(file, args, { maxBuffer: 64 << 20 }, (err, stdout, stderr) => res({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, out: stdout + stderr })));
}

async function redisCli(args: string[]): Promise<string> {
  const r = await run('redis-cli', ['--cluster', ...args]);
  if (r.code !== 0) throw new Error(`redis-cli --cluster ${args.join(' ')} exited ${r.code}:\n${r.out.slice(-3000)}`);
  return r.out;
}

/** Every node of `nodes` knows exactly those, agrees on slot owners, and says cluster_state:ok. */
async function converged(nodes: number[]): Promise<void> {
  await waitFor(
    `${nodes.join(',')} to agree`,
    async () => {
      const views = await Promise.all(nodes.map((p) => withNode(p, (r) => r.call('CLUSTER', 'NODES')).then(String)));
      const owners = views.map((v) =>
        v
          .trim()
          .split('\n')
          .map((l) => l.split(' '))
          .filter((f) => f[2]?.includes('master'))
          .map((f) => `${f[1]?.split('@')[0]} ${f.slice(8).filter((s) => !s.startsWith('[')).join(',')}`)
          .sort()
          .join(';'),
      );
      if (views.some((v) => v.trim().split('\n').length !== nodes.length || v.includes('handshake'))) return 'a node does not know all the others yet';
      if (new Set(owners).size !== 1) return 'slot owners differ between views';
      const infos = await Promise.all(nodes.map((p) => withNode(p, (r) => r.call('CLUSTER', 'INFO')).then(String)));
      return infos.every((i) => i.includes('cluster_state:ok')) || 'not cluster_state:ok everywhere';
    },
    { timeoutMs: 60_000, intervalMs: 100 },
  );
}

async function startNode(port: number, dir: string): Promise<void> {
  const r = await run('redis-server', [
    '--port', String(port), '--bind', '127.0.0.1', '--cluster-enabled', 'yes', '--cluster-config-file', join(dir, `nodes-${port}.conf`),
    '--cluster-node-timeout', '5000', '--dir', dir, '--daemonize', 'yes', '--pidfile', join(dir, `${port}.pid`), '--logfile', join(dir, `${port}.log`),
    '--save', '', '--appendonly', 'no',
  ]);
  if (r.code !== 0) throw new Error(`redis-server ${port}: ${r.out}`);
  await waitFor(`${port} to answer`, async () => (await answers(port)) || 'not yet', { timeoutMs: 10_000 });
}

async function stopNode(port: number): Promise<void> {
  if (!(await answers(port))) return;
  await withNode(port, (r) => r.call('SHUTDOWN', 'NOSAVE')).catch(() => {});
  await waitFor(`${port} to stop`, async () => !(await answers(port)) || 'still answers', { timeoutMs: 10_000 });
}

function account(w: WriterProcess, s: Stretch): string {
  if (s.silent) return `${w.library}: ${s.silent}`;
  const errors = s.errors.length > 0 ? ` errors: ${s.errors.join(' | ')}` : '';
  return `${w.library}: ops +${s.ops}, acked +${s.acked}, failed +${s.failed}, read wrong +${s.readWrong}, longest stall ${s.longestStallMs} ms${s.stuckIn ? `, stuck in ${s.stuckIn}` : ''}${errors}`;
}

async function phase(writers: WriterProcess[], what: string, fn: () => Promise<void>): Promise<void> {
  const ends = await Promise.all(writers.map((w) => w.stretch()));
  const t0 = Date.now();
  await fn();
  const seconds = ((Date.now() - t0) / 1000).toFixed(1);
  const stretches = await Promise.all(ends.map((end) => end()));
  console.log(`${what} (${seconds} s):\n  ${writers.map((w, i) => account(w, stretches[i] as Stretch)).join('\n  ')}`);
}

const dir = mkdtempSync(join(tmpdir(), 'rcluster-clients-cli-'));
const spec = join(dir, 'cluster.yaml');
const writeSpec = (nodes: number[]) =>
  writeFileSync(spec, ['name: clients-cli', 'connection: local', 'replicasPerMaster: 0', 'masters: 3', 'nodes:', ...nodes.map((p) => `  - ${addr(p)}`), ''].join('\n'));
let writers: WriterProcess[] = [];
try {
  writeSpec(BASE);
  const created = await rcluster('apply', '-f', spec, '--auto-approve');
  if (created.code !== 0) throw new Error(`create: ${created.err}`);
  await loadKeys(addr(P1), KEYS);
  writers = LIBRARIES.map(({ library, prefix }) => new WriterProcess(library, prefix, addr(P1), 600));
  await Promise.all(writers.map((w) => waitFor(`${w.library} writing`, async () => (w.last?.acked ?? 0) > 0 || `not yet (${w.stderr.slice(-500)})`, { timeoutMs: 20_000 })));
  for (let n = 0; n < CYCLES; n++) {
    const port = PORTS[BASE.length + n] as number;
    await startNode(port, dir);
    await phase(writers, `cycle ${n + 1} scale-out onto ${addr(port)}: add-node + rebalance --cluster-use-empty-masters`, async () => {
      await redisCli(['add-node', addr(port), addr(P1)]);
      // The runbook's wait: rebalance run before every node knows the new one fails.
      await converged([...BASE, port]);
      await redisCli(['rebalance', addr(P1), '--cluster-use-empty-masters']);
    });
    const id = String(await withNode(port, (r) => r.call('CLUSTER', 'MYID')));
    await converged([...BASE, port]);
    await phase(writers, `cycle ${n + 1} scale-in of ${addr(port)}: rebalance --cluster-weight ${id.slice(0, 8)}=0 + del-node + stop`, async () => {
      await redisCli(['rebalance', addr(P1), '--cluster-weight', `${id}=0`]);
      await redisCli(['del-node', addr(P1), id]);
      await stopNode(port);
    });
    await converged(BASE);
  }
  for (const w of writers) {
    const { result, exit, hung } = await w.stop(30_000);
    console.log(`${w.library}: ${hung ? 'hung, killed; ' : ''}exit ${JSON.stringify(exit)}, result ${JSON.stringify(result)}${w.stderr ? `\n  stderr (tail): ${w.stderr.slice(-1500)}` : ''}`);
  }
  const bad = await badKeys(addr(P1), KEYS);
  console.log(`loaded keys missing or wrong: ${bad.length}`);
} finally {
  for (const w of writers) w.kill();
  for (const p of PORTS.slice(BASE.length)) await stopNode(p);
  writeSpec(PORTS);
  await rcluster('destroy', '-f', spec, '--auto-approve');
  rmSync(dir, { recursive: true, force: true });
}
