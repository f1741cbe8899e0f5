/**
 * Not part of the test suite: what cluster clients see while slots move, rcluster against
 * `redis-cli --cluster rebalance` doing the same moves on the same cluster (3 masters with a
 * replica each, one key in every slot; a 4th master 7727 with replica 7728 added, the cluster
 * rebalanced onto it, then drained and removed). Same clients as
 * test/integration/client-behaviour.test.ts: replica reads (ioredis scaleReads: 'slave'), master
 * reads, and MULTI/INCR/INCR/EXEC on hash-tagged pairs the loop creates, all with ioredis's
 * defaults. Run it alone (ports 7721-7728):
 *
 *   npm run build && npx tsx test/support/compare-redis-cli.ts [rounds]
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Cluster } from 'ioredis';
import { waitFor } from '../../src/apply/wait.js';
import { rclusterBin, withNode } from '../integration/support.js';
import { Loops, OpenSlots, emptyTally, movedSlots, slotKeyReads, slotOwners, slotTag, type ReadTally } from './client-load.js';
import { everySlot, loadKeys } from './keys.js';

const run = promisify(execFile);
const PORTS = [7721, 7722, 7723, 7724, 7725, 7726, 7727, 7728];
const BASE = PORTS.slice(0, 6);
const addr = (p: number) => `127.0.0.1:${p}`;
const dir = mkdtempSync(join(tmpdir(), 'rcluster-compare-'));
const file = join(dir, 'cluster.yaml');
const SEED = [{ host: '127.0.0.1', port: 7721 }];

function writeSpec(nodes: number[], masters: number): void {
  writeFileSync(file, ['name: compare', 'connection: local', `masters: ${masters}`, 'nodes:', ...nodes.map((p) => `  - ${addr(p)}`), ''].join('\n'));
}

async function cli(...args: string[]): Promise<string> {
  const r = await run('redis-cli', args, { maxBuffer: 64 * 1024 * 1024 });
  return r.stdout;
}

async function idOf(port: number): Promise<string> {
  return String(await withNode(port, (r) => r.call('CLUSTER', 'MYID')));
}

async function checkClean(): Promise<true | string> {
  const out = await cli('--cluster', 'check', addr(7721)).catch((e: { stdout?: string }) => e.stdout ?? 'failed');
  return /\[OK\] All nodes agree/.test(out) && /\[OK\] All 16384 slots covered/.test(out) && !/\[WARNING\]|\[ERR\]/.test(out) ? true : 'redis-cli check not clean';
}

interface Result {
  tool: string;
  direction: string;
  seconds: number;
  movedSlots: number;
  replicaReads: Omit<ReadTally, 'nilSlots' | 'errors'> & { errors: number; nilPer1000: number; errorKinds: Record<string, number> };
  masterReads: { reads: number; nil: number; wrong: number; errors: number };
  exec: { acked: number; appErrors: number; kinds: Record<string, number> };
  /** Mean time a moved slot's key read nil on a replica (nils × 16384 / (reads a ms × slots moved)). */
  replicaNilExposureMs: number;
  /** How long slots stayed open (MIGRATING on one side or IMPORTING on the other), polled every ~10 ms. */
  openMs: { slots: number; median: number; p90: number; max: number };
}

/** Run the clients during `move`, and what they saw. */
async function during(tool: string, direction: string, move: () => Promise<void>): Promise<Result> {
  const replicaClient = new Cluster(SEED, { scaleReads: 'slave' });
  const masterClient = new Cluster(SEED);
  for (const c of [replicaClient, masterClient]) c.on('error', () => {});
  const fromReplicas = emptyTally();
  const fromMasters = emptyTally();
  const execErrors: string[] = [];
  let acked = 0;
  const gen = Date.now();
  const loops = [
    slotKeyReads(replicaClient, fromReplicas, 12),
    slotKeyReads(masterClient, fromMasters, 4),
    new Loops(8, async () => {
      const tag = slotTag(Math.floor(Math.random() * 16384));
      try {
        const res = await masterClient.multi().incr(`p:{${tag}}:${gen}:a`).incr(`p:{${tag}}:${gen}:b`).exec();
        if (!res || res.some(([e]) => e)) throw new Error(`EXEC: ${JSON.stringify(res)}`);
        acked++;
      } catch (err) {
        execErrors.push((err as Error).message.replace(/\d+/g, 'N'));
      }
    }),
  ];
  const before = await slotOwners(7721);
  const t0 = Date.now();
  const watch = new OpenSlots(PORTS);
  watch.start();
  loops.forEach((l) => l.start());
  try {
    await move();
  } finally {
    await Promise.all(loops.map((l) => l.stop()));
  }
  await watch.stop();
  const open = watch.durations();
  const pct = (q: number) => open[Math.min(open.length - 1, Math.floor(q * open.length))] ?? 0;
  const seconds = (Date.now() - t0) / 1000;
  const moved = movedSlots(before, await slotOwners(7721)).size;
  replicaClient.disconnect();
  masterClient.disconnect();
  const kinds = (xs: string[]) => xs.reduce<Record<string, number>>((o, x) => ((o[x] = (o[x] ?? 0) + 1), o), {});
  const { nilSlots: _n, errors: re, ...rest } = fromReplicas;
  return {
    tool,
    direction,
    seconds,
    movedSlots: moved,
    replicaReads: { ...rest, errors: re.length, nilPer1000: Math.round((rest.nil / Math.max(1, rest.reads)) * 10000) / 10, errorKinds: kinds(re.map((e) => e.replace(/\d+/g, 'N'))) },
    masterReads: { reads: fromMasters.reads, nil: fromMasters.nil, wrong: fromMasters.wrong, errors: fromMasters.errors.length },
    exec: { acked, appErrors: execErrors.length, kinds: kinds(execErrors) },
    replicaNilExposureMs: Math.round((rest.nil * 16384) / ((rest.reads / (loops[0] as Loops).activeMs) * Math.max(1, moved))),
    openMs: { slots: open.length, median: pct(0.5), p90: pct(0.9), max: pct(1) },
  };
}

async function rclusterMove(): Promise<void> {
  const r = await rclusterBin(['apply', '-f', file, '--auto-approve', '--wait-timeout', '25000'], { timeoutMs: 60_000 });
  if (r.code !== 0) throw new Error(`apply failed: ${r.out}\n${r.err}`);
}

async function startNode(port: number): Promise<void> {
  const d = join(dir, String(port));
  await run('mkdir', ['-p', d]);
  await run('redis-server', [
    '--port', String(port), '--bind', '127.0.0.1', '--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf',
    '--cluster-node-timeout', '5000', '--cluster-announce-ip', '127.0.0.1', '--dir', d, '--daemonize', 'yes',
    '--save', '', '--appendonly', 'no', '--logfile', join(d, 'redis.log'), '--pidfile', join(d, 'redis.pid'),
  ]);
  await waitFor(`${addr(port)} to answer`, async () => ((await withNode(port, (r) => r.ping())) === 'PONG' ? true : 'no PONG'), { timeoutMs: 5000 });
}

const results: Result[] = [];
const rounds = Number(process.argv[2] ?? 1);
try {
  writeSpec(BASE, 3);
  await rclusterMove();
  await loadKeys(addr(7721), everySlot(0));
  for (let i = 0; i < rounds; i++) {
    // rcluster: one spec edit and apply each way; the clients run through the whole apply.
    writeSpec(PORTS, 4);
    results.push(await during('rcluster', 'out', rclusterMove));
    writeSpec(BASE, 3);
    results.push(await during('rcluster', 'in', rclusterMove));

    // redis-cli: the same nodes added by hand, then rebalance; the clients run through the rebalance.
    await startNode(7727);
    await startNode(7728);
    await cli('--cluster', 'add-node', addr(7727), addr(7721));
    const new7727 = await idOf(7727);
    await waitFor('7727 known to all', async () => {
      for (const p of BASE) if (!new RegExp(`^${new7727} \\S+ master \\S+ \\S+ \\S+ \\S+ connected`, 'm').test(String(await withNode(p, (r) => r.call('CLUSTER', 'NODES'))))) return `${addr(p)} does not know 7727 yet`;
      return checkClean();
    }, { timeoutMs: 20_000 });
    await cli('--cluster', 'add-node', addr(7728), addr(7721), '--cluster-slave', '--cluster-master-id', await idOf(7727));
    await waitFor('7728 in sync', async () => ((await withNode(7728, (r) => r.info('replication'))).includes('master_link_status:up') ? checkClean() : 'link down'), { timeoutMs: 20_000 });
    results.push(await during('redis-cli', 'out', async () => void (await cli('--cluster', 'rebalance', addr(7721), '--cluster-use-empty-masters'))));
    await waitFor('check clean', checkClean, { timeoutMs: 20_000 });
    const id7727 = await idOf(7727);
    results.push(await during('redis-cli', 'in', async () => void (await cli('--cluster', 'rebalance', addr(7721), '--cluster-weight', `${id7727}=0`))));
    await cli('--cluster', 'del-node', addr(7721), await idOf(7728));
    await cli('--cluster', 'del-node', addr(7721), id7727);
    // del-node resets the nodes but leaves them running; the next round starts them afresh.
    for (const p of [7727, 7728]) await withNode(p, (r) => r.call('SHUTDOWN', 'NOSAVE')).catch(() => {});
    await waitFor('7727 and 7728 stopped', async () => ((await Promise.all([7727, 7728].map((p) => withNode(p, (r) => r.ping()).catch(() => 'gone')))).every((x) => x === 'gone') ? true : 'still up'), { timeoutMs: 5000 });
    rmSync(join(dir, '7727'), { recursive: true, force: true });
    rmSync(join(dir, '7728'), { recursive: true, force: true });
    await waitFor('check clean', checkClean, { timeoutMs: 20_000 });
    for (const r of results.slice(-4)) console.log(JSON.stringify(r));
  }
} finally {
  for (const p of [7727, 7728]) await withNode(p, (r) => r.call('SHUTDOWN', 'NOSAVE')).catch(() => {});
  writeSpec(BASE, 3);
  await rclusterBin(['destroy', '-f', file, '--auto-approve']);
  rmSync(dir, { recursive: true, force: true });
}
