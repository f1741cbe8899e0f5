/**
 * The day-2 migration benchmark: scale a loaded 3-master cluster out to 4 masters and back in,
 * once with `rcluster apply` and once with the redis-cli --cluster runbook, on two identical
 * local clusters (127.0.0.1 only); then the planning time for a synthetic 1000-master cluster.
 *
 * Both clusters are created by rcluster from the same spec shape (3 masters, no replicas), so they
 * start identical, and each side's extra node is a redis-server started here with the same
 * settings, before either tool is timed: rcluster scales its cluster with `connection: none` (as
 * for a cluster it adopts, it does not start processes), redis-cli with add-node and rebalance.
 * Then rcluster does the same scale-out and scale-in again with `connection: local`, which also
 * writes the new node's config and starts its process inside the timed apply.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import calculateSlot from 'cluster-key-slot';
import { main } from '../src/cli/main.js';
import type { Io } from '../src/cli/io.js';
import { connectNode } from '../src/live/connect.js';
import { parseClusterNodes } from '../src/live/parse.js';
import type { ClusterNodeEntry, LiveCluster, LiveNode } from '../src/live/types.js';
import { waitFor } from '../src/apply/wait.js';
import { computePlan } from '../src/plan/diff.js';
import { fingerprint } from '../src/plan/fingerprint.js';
import { SLOT_COUNT, splitSlots } from '../src/plan/slots.js';
import { parseSpec } from '../src/spec/load.js';
import { badKeys, keyName, loadKeys } from '../test/support/keys.js';

const KEYS = Number(process.env['BENCH_KEYS'] ?? 1_000_000);
const VALUE_BYTES = 100;
const HOST = '127.0.0.1';
const BIN = fileURLToPath(new URL('../bin/rcluster.js', import.meta.url));
const MAIN_JS = new URL('../dist/cli/main.js', import.meta.url).href;
const REPO = fileURLToPath(new URL('..', import.meta.url));
const GNU_TIME = '/usr/bin/time';

/** Ports of one cluster: its three masters and the node added by the scale-out. */
interface Side {
  label: string;
  masters: number[];
  extra: number;
}
const OURS: Side = { label: 'rcluster', masters: [7301, 7302, 7303], extra: 7304 };
const THEIRS: Side = { label: 'redis-cli', masters: [7311, 7312, 7313], extra: 7314 };
const seedOf = (s: Side) => `${HOST}:${s.masters[0]}`;

/** A benchmark step failed: the message says what, and the run exits non-zero. */
export class BenchFailure extends Error {}

const quiet: Io = { out: () => {}, err: (t) => process.stderr.write(t + '\n'), stdinIsTTY: false };

/** The CLI in this process, for the untimed create and destroy (--json: no progress display). */
async function rclusterInProcess(...args: string[]): Promise<void> {
  const code = await main(['node', 'rcluster', ...args, '--json'], quiet);
  if (code !== 0) throw new BenchFailure(`rcluster ${args.join(' ')} exited ${code}`);
}

interface ProcResult {
  code: number;
  out: string;
  err: string;
  ms: number;
}

/** Run a command to completion, capturing its output; never rejects (the caller judges `code`). */
function exec(cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env): Promise<ProcResult> {
  const t0 = performance.now();
  return new Promise((resolve) => {
    execFile(cmd, args, { cwd: REPO, env, maxBuffer: 64 * 1024 * 1024 }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === 'number' ? error.code : 1) : 0;
      resolve({ code, out: String(stdout), err: String(stderr), ms: performance.now() - t0 });
    });
  });
}

async function redisCli(args: string[]): Promise<ProcResult> {
  const r = await exec('redis-cli', args);
  if (r.code !== 0) throw new BenchFailure(`redis-cli ${args.join(' ')} exited ${r.code}:\n${r.out}${r.err}`);
  return r;
}

/**
 * `rcluster apply` in a child process, timed, with its peak RSS in KiB: GNU time when installed,
 * otherwise the CLI run inside a small inline module that reports its own maxRSS (the same
 * process, so the same figure).
 */
async function timedApply(spec: string, dir: string, phase: string): Promise<{ ms: number; rssKiB: number; phases: string[] }> {
  const rssFile = join(dir, `rss-${phase}`);
  const env = { ...process.env, NO_COLOR: '1' };
  const cli = ['apply', '-f', spec, '--auto-approve'];
  const r = existsSync(GNU_TIME)
    ? await exec(GNU_TIME, ['-o', rssFile, '-f', '%M', process.execPath, BIN, ...cli], env)
    : await exec(
        process.execPath,
        [
          '--input-type=module',
          '-e',
          // With -e, process.argv is [node, ...args]: main() wants [node, script, ...args].
          `import { writeFileSync } from 'node:fs';
           const { main } = await import(${JSON.stringify(MAIN_JS)});
           process.exitCode = await main(['node', 'rcluster', ...process.argv.slice(1)]);
           writeFileSync(${JSON.stringify(rssFile)}, String(process.resourceUsage().maxRSS));`,
          ...cli,
        ],
        env,
      );
  if (r.code !== 0) {
    process.stderr.write(`\n---- rcluster apply (${phase}) output ----\n${r.out}${r.err}---- end of output ----\n`);
    throw new BenchFailure(`rcluster apply -f ${spec} --auto-approve failed (${phase}, exit ${r.code}); its output is above`);
  }
  // GNU time may print a notice before the figure; the figure is the last line.
  const rssKiB = Number(readFileSync(rssFile, 'utf8').trim().split('\n').pop());
  // Without a terminal the progress view prints one "✔ <phase> (<duration>)" line per phase:
  // kept for the report, to show where the time goes.
  const phases = `${r.out}\n${r.err}`
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l.startsWith('✔'))
    .map((l) => l.slice(1).trim());
  return { ms: r.ms, rssKiB, phases };
}

function specText(name: string, ports: number[], connection: 'local' | 'none' = 'local'): string {
  return [
    `name: ${name}`,
    `connection: ${connection}`,
    'replicasPerMaster: 0',
    // Explicit: a node count alone never makes rcluster move slots.
    `masters: ${ports.length}`,
    // No RDB snapshots: a background save forking in the middle of a migration would be noise.
    // redis-cli's extra node is started with the same setting.
    'redis:',
    '  config:',
    '    save: ""',
    'nodes:',
    ...ports.map((p) => `  - ${HOST}:${p}`),
    '',
  ].join('\n');
}

async function clusterNodes(port: number): Promise<ClusterNodeEntry[]> {
  const c = await connectNode(`${HOST}:${port}`);
  try {
    return parseClusterNodes(String(await c.call('CLUSTER', 'NODES')));
  } finally {
    c.disconnect();
  }
}

/** The owner ("host:port") of every slot, from CLUSTER SLOTS of one node. */
async function slotOwners(port: number): Promise<string[]> {
  const c = await connectNode(`${HOST}:${port}`);
  try {
    const slots = (await c.call('CLUSTER', 'SLOTS')) as [number, number, [string, number]][];
    const owner = new Array<string>(SLOT_COUNT).fill('');
    for (const [start, end, [host, port]] of slots) owner.fill(`${host}:${port}`, start, end + 1);
    return owner;
  } finally {
    c.disconnect();
  }
}

/**
 * Wait until every node of `ports` knows exactly those nodes, with no handshake left, all agree
 * on who owns every slot, and each reports cluster_state:ok (a node that has just joined refuses
 * MIGRATE's RESTORE with CLUSTERDOWN until then). Untimed: the settling between runbook steps.
 */
async function converged(ports: number[], timeoutMs = 60_000): Promise<void> {
  await waitFor(
    `cluster ${ports.join(',')} converged`,
    async () => {
      let reference: string | undefined;
      for (const p of ports) {
        const view = await clusterNodes(p);
        if (view.some((e) => e.handshake)) return `${p} still in handshake`;
        if (view.length !== ports.length) return `${p} knows ${view.length} nodes, not ${ports.length}`;
        const owners = view
          .filter((e) => e.role === 'master')
          .map((e) => `${e.port}:${e.slots.map((r) => `${r.start}-${r.end}`).join(',')}`)
          .sort()
          .join(' ');
        if (reference !== undefined && owners !== reference) return `${p} disagrees on slot owners`;
        reference = owners;
      }
      for (const p of ports) {
        const c = await connectNode(`${HOST}:${p}`);
        try {
          if (!String(await c.call('CLUSTER', 'INFO')).includes('cluster_state:ok')) return `${p} not cluster_state:ok`;
        } finally {
          c.disconnect();
        }
      }
      return true;
    },
    { timeoutMs, intervalMs: 50 },
  );
}

/** Keys of `k:0..count-1` in each slot: what moves when a slot changes owner. */
function keysPerSlot(count: number): Uint32Array {
  const perSlot = new Uint32Array(SLOT_COUNT);
  for (let i = 0; i < count; i++) {
    const slot = calculateSlot(keyName(i));
    perSlot[slot] = (perSlot[slot] ?? 0) + 1;
  }
  return perSlot;
}

function moved(before: string[], after: string[], perSlot: Uint32Array): { slots: number; keys: number } {
  let slots = 0;
  let keys = 0;
  for (let s = 0; s < SLOT_COUNT; s++) {
    if (before[s] === after[s]) continue;
    slots++;
    keys += perSlot[s]!;
  }
  return { slots, keys };
}

async function dbsizeSum(ports: number[]): Promise<number> {
  let total = 0;
  for (const p of ports) {
    const c = await connectNode(`${HOST}:${p}`);
    try {
      total += Number(await c.dbsize());
    } finally {
      c.disconnect();
    }
  }
  return total;
}

interface Check {
  bad: number;
  /** DBSIZE summed over the masters: more than KEYS means keys left behind on a source. */
  total: number;
  /** `redis-cli --cluster check`: 'OK', 'OK after N s' (settling), or 'not OK'. */
  check: string;
}

async function clusterCheck(seed: string): Promise<boolean> {
  const r = await exec('redis-cli', ['--cluster', 'check', seed]);
  const ok = r.code === 0 && /\[OK\] All 16384 slots covered/.test(r.out) && !/\[ERR\]|\[WARNING\]/.test(r.out);
  if (!ok) process.stderr.write(`redis-cli --cluster check ${seed}:\n${r.out}${r.err}`);
  return ok;
}

/** After a step: every key there with its value, no extra copies, and redis-cli's own check. */
async function verify(ports: number[]): Promise<Check> {
  const seed = `${HOST}:${ports[0]}`;
  let check = 'OK';
  if (!(await clusterCheck(seed))) {
    // Report how long the cluster took to agree, rather than a bare failure.
    const t0 = performance.now();
    await converged(ports, 30_000).catch(() => {});
    check = (await clusterCheck(seed)) ? `OK after ${((performance.now() - t0) / 1000).toFixed(1)} s` : 'not OK';
  }
  const bad = await badKeys(seed, KEYS, VALUE_BYTES);
  for (const b of bad.slice(0, 5)) process.stderr.write(`  bad key ${b}\n`);
  return { bad: bad.length, total: await dbsizeSum(ports), check };
}

/** Start redis-cli's extra node by hand, with the settings rcluster gives its local nodes. */
async function startManualNode(port: number, dir: string): Promise<string> {
  mkdirSync(dir, { recursive: true });
  const pidfile = join(dir, 'redis.pid');
  const r = await exec('redis-server', [
    '--port', String(port),
    '--bind', HOST,
    '--cluster-enabled', 'yes',
    '--cluster-config-file', join(dir, `nodes-${port}.conf`),
    '--cluster-node-timeout', '5000',
    '--cluster-announce-ip', HOST,
    '--dir', dir,
    '--daemonize', 'yes',
    '--pidfile', pidfile,
    '--logfile', join(dir, 'redis.log'),
    '--save', '',
    '--appendonly', 'no',
    '--repl-diskless-sync-delay', '0',
  ]);
  if (r.code !== 0) throw new BenchFailure(`redis-server on ${port} did not start:\n${r.out}${r.err}`);
  await waitFor(`${port} answers`, async () => (await answers(port)) || 'not yet', { timeoutMs: 10_000, intervalMs: 20 });
  return pidfile;
}

/**
 * Redis keeps a master that has just started unwritable for its first 2 s (CLUSTER_WRITABLE_DELAY):
 * both sides' extra nodes are past that before either tool is timed. Having run alone, each then
 * waits out Redis's rejoin delay once it knows the cluster (its cluster-node-timeout, at most 5 s):
 * redis-cli's runbook waits for it before rebalancing, rcluster shortens it while the node joins.
 */
async function pastStartupDelay(port: number): Promise<void> {
  await waitFor(
    `${port} up for 3 s`,
    async () => {
      const c = await connectNode(`${HOST}:${port}`);
      try {
        const up = Number(/uptime_in_seconds:(\d+)/.exec(await c.info('server'))?.[1] ?? 0);
        return up >= 3 || `up for ${up} s`;
      } finally {
        c.disconnect();
      }
    },
    { timeoutMs: 10_000, intervalMs: 100 },
  );
}

/** Stop a process started here, by the pid it wrote; it may already be gone (del-node stops it). */
function killByPidfile(pidfile: string): void {
  if (!existsSync(pidfile)) return;
  const pid = Number(readFileSync(pidfile, 'utf8').trim());
  if (!Number.isInteger(pid) || pid <= 0) return;
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // already exited
  }
}

async function answers(port: number): Promise<boolean> {
  try {
    (await connectNode(`${HOST}:${port}`, { connectTimeoutMs: 500 })).disconnect();
    return true;
  } catch {
    return false;
  }
}

/**
 * Planning time for a 1000-master cluster growing by one master: a synthetic LiveCluster (no
 * I/O), median of 5 runs of computePlan.
 */
export function planningBench(masterCount = 1000, runs = 5): { medianMs: number; fingerprintMs: number; moves: number; slots: number } {
  const port0 = 20001;
  const ids = Array.from({ length: masterCount + 1 }, (_, i) => createHash('sha1').update(`bench-node-${i}`).digest('hex'));
  const ranges = splitSlots(new Array<number>(masterCount).fill(1));
  const lines = ranges.map((r, i) => `${ids[i]} ${HOST}:${port0 + i}@${port0 + i + 10000} master - 0 0 ${i + 1} connected ${r.start}-${r.end}`);
  // Parsed once; every node shares the entries and only its own is copied with `myself` set
  // (the planner only reads views). 1000 views of 1000 fresh entries would be a million objects.
  const shared = parseClusterNodes(lines.join('\n'));
  const keysPerSlot = Math.round(1_000_000 / SLOT_COUNT);
  const nodes: LiveNode[] = shared.map((own, i) => {
    const view = shared.slice();
    view[i] = { ...own, myself: true, flags: ['myself', 'master'] };
    const slotKeys = new Map<number, number>();
    for (let s = own.slots[0]!.start; s <= own.slots[0]!.end; s++) slotKeys.set(s, keysPerSlot);
    return liveNode(port0 + i, ids[i]!, view, slotKeys);
  });
  // The new node: cluster-enabled and empty, knowing only itself, as a freshly started one.
  const fresh = masterCount;
  const [freshEntry] = parseClusterNodes(`${ids[fresh]} ${HOST}:${port0 + fresh}@${port0 + fresh + 10000} myself,master - 0 0 0 connected`);
  nodes.push(liveNode(port0 + fresh, ids[fresh]!, [freshEntry!], new Map()));
  const live: LiveCluster = { nodes };

  const text = [
    'name: plan-bench',
    'connection: none',
    'replicasPerMaster: 0',
    `masters: ${masterCount + 1}`,
    'nodes:',
    ...nodes.map((n) => `  - ${n.address}`),
    '',
  ].join('\n');
  const { desired, diagnostics } = parseSpec(text, join(tmpdir(), 'plan-bench.yaml'));
  if (!desired) throw new BenchFailure(`planning bench spec: ${diagnostics.map((d) => d.message).join('; ')}`);

  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const times: number[] = [];
  let moves = 0;
  let slots = 0;
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    const plan = computePlan(desired, live);
    times.push(performance.now() - t0);
    const migrations = plan.steps.filter((s) => s.kind === 'migrate_slots');
    moves = migrations.length;
    slots = migrations.reduce((n, s) => n + s.count, 0);
  }
  if (moves === 0) throw new BenchFailure('planning bench: the plan moves no slots');
  // The plan's staleness fingerprint hashes every node's whole view (N x N entries): timed on its
  // own too, to show how much of the planning time it is.
  const fingerprintTimes: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    fingerprint(live);
    fingerprintTimes.push(performance.now() - t0);
  }
  return { medianMs: median(times), fingerprintMs: median(fingerprintTimes), moves, slots };
}

function liveNode(port: number, id: string, view: ClusterNodeEntry[], slotKeys: Map<number, number>): LiveNode {
  let keys = 0;
  for (const k of slotKeys.values()) keys += k;
  return {
    address: `${HOST}:${port}`,
    host: HOST,
    port,
    reachable: true,
    clusterEnabled: true,
    id,
    view,
    clusterInfo: { cluster_state: 'ok' },
    replication: { role: 'master', connectedReplicas: 0 },
    keys,
    slotKeys,
  };
}

const seconds = (ms: number) => `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)} s`;
const count = (n: number) => n.toLocaleString('en-US');
const mb = (kib: number) => `${Math.round(kib / 1024)} MB`;

interface Phase {
  ours: number;
  /** rcluster apply's own phase lines, with their durations. */
  oursPhases: string[];
  theirs: number;
  /** redis-cli's untimed wait for the new node to be known everywhere (scale-out). */
  theirsWait: number;
  /** The slot moves alone: redis-cli's rebalance. */
  theirsMove: number;
  movedOurs: { slots: number; keys: number };
  movedTheirs: { slots: number; keys: number };
  checks: [Check, Check];
}

/** rcluster with connection: local, which starts and configures the new node itself. */
interface LocalRun {
  out: { ms: number; phases: string[]; check: Check };
  back: { ms: number; phases: string[]; check: Check };
}

export async function migrationBench(): Promise<void> {
  const dirOurs = mkdtempSync(join(tmpdir(), 'rcluster-bench-migrate-'));
  const dirTheirs = mkdtempSync(join(tmpdir(), 'rcluster-bench-migrate-cli-'));
  const specOurs = join(dirOurs, 'cluster.yaml');
  const specOursOut = join(dirOurs, 'cluster-4.yaml');
  const specNone = join(dirOurs, 'cluster-none.yaml');
  const specNoneOut = join(dirOurs, 'cluster-none-4.yaml');
  const specTheirs = join(dirTheirs, 'cluster.yaml');
  const pidfiles: string[] = [];

  const cleanup = async () => {
    // The 4-node spec covers 7304 whether or not the scale-in removed it; destroy skips what is gone.
    for (const spec of [specOursOut, specOurs, specTheirs]) {
      if (existsSync(spec)) await rclusterInProcess('destroy', '-f', spec, '--auto-approve').catch((e) => process.stderr.write(`cleanup: ${(e as Error).message}\n`));
    }
    for (const f of pidfiles) killByPidfile(f);
    rmSync(dirOurs, { recursive: true, force: true });
    rmSync(dirTheirs, { recursive: true, force: true });
  };
  const onSignal = () => void cleanup().finally(() => process.exit(130));
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  try {
    const all = [...OURS.masters, OURS.extra, ...THEIRS.masters, THEIRS.extra];
    const busy: number[] = [];
    for (const p of all) if (await answers(p)) busy.push(p);
    if (busy.length > 0) {
      throw new BenchFailure(`port(s) ${busy.join(', ')} already answer; the migration benchmark needs 7301-7304 and 7311-7314 (the integration tests use 7301-7306)`);
    }

    console.log(`\nDay-2 migration: creating two 3-master clusters and loading ${count(KEYS)} keys of ${VALUE_BYTES} B into each...`);
    writeFileSync(specOurs, specText('bench-migrate', OURS.masters));
    writeFileSync(specOursOut, specText('bench-migrate', [...OURS.masters, OURS.extra]));
    writeFileSync(specNone, specText('bench-migrate', OURS.masters, 'none'));
    writeFileSync(specNoneOut, specText('bench-migrate', [...OURS.masters, OURS.extra], 'none'));
    writeFileSync(specTheirs, specText('bench-migrate-cli', THEIRS.masters));
    await rclusterInProcess('apply', '-f', specOurs, '--auto-approve');
    await rclusterInProcess('apply', '-f', specTheirs, '--auto-approve');
    await converged(OURS.masters);
    await converged(THEIRS.masters);
    for (const side of [OURS, THEIRS]) {
      const t0 = performance.now();
      await loadKeys(seedOf(side), KEYS, VALUE_BYTES);
      console.log(`  loaded ${side.label}'s cluster in ${seconds(performance.now() - t0)}`);
    }
    const perSlot = keysPerSlot(KEYS);
    // The same starting point for both tools: an empty redis-server already running for each.
    for (const side of [OURS, THEIRS]) pidfiles.push(await startManualNode(side.extra, join(side === OURS ? dirOurs : dirTheirs, 'manual', String(side.extra))));
    for (const side of [OURS, THEIRS]) await pastStartupDelay(side.extra);

    // Scale-out, 3 -> 4 masters.
    console.log('  scale-out: rcluster apply (connection: none)...');
    let before = await slotOwners(OURS.masters[0]!);
    const outOurs = await timedApply(specNoneOut, dirOurs, 'scale-out');
    const movedOutOurs = moved(before, await slotOwners(OURS.masters[0]!), perSlot);

    console.log('  scale-out: redis-cli --cluster add-node + rebalance...');
    const theirsAll = [...THEIRS.masters, THEIRS.extra];
    before = await slotOwners(THEIRS.masters[0]!);
    const addNode = await redisCli(['--cluster', 'add-node', `${HOST}:${THEIRS.extra}`, seedOf(THEIRS)]);
    // Timed apart: the runbook waits for the new node to be known everywhere before rebalancing
    // (run at once, redis-cli fails with ERR Unknown node). rcluster's apply waits for the same
    // thing inside its own time.
    const waitStart = performance.now();
    await converged(theirsAll);
    const waitMs = performance.now() - waitStart;
    const rebalanceOut = await redisCli(['--cluster', 'rebalance', seedOf(THEIRS), '--cluster-use-empty-masters']);
    const movedOutTheirs = moved(before, await slotOwners(THEIRS.masters[0]!), perSlot);

    console.log('  checking keys after the scale-out...');
    const out: Phase = {
      ours: outOurs.ms,
      oursPhases: outOurs.phases,
      theirs: addNode.ms + rebalanceOut.ms,
      theirsWait: waitMs,
      theirsMove: rebalanceOut.ms,
      movedOurs: movedOutOurs,
      movedTheirs: movedOutTheirs,
      checks: [await verify([...OURS.masters, OURS.extra]), await verify(theirsAll)],
    };

    // Scale-in, back to 3 masters: the node added above is drained and removed.
    await converged([...OURS.masters, OURS.extra]);
    await converged(theirsAll);
    console.log('  scale-in: rcluster apply (connection: none)...');
    before = await slotOwners(OURS.masters[0]!);
    const inOurs = await timedApply(specNone, dirOurs, 'scale-in');
    const movedInOurs = moved(before, await slotOwners(OURS.masters[0]!), perSlot);

    console.log('  scale-in: redis-cli --cluster rebalance (weight 0) + del-node...');
    const extraId = (await clusterNodes(THEIRS.extra)).find((e) => e.myself)?.id;
    if (!extraId) throw new BenchFailure(`${HOST}:${THEIRS.extra} does not report its own id`);
    before = await slotOwners(THEIRS.masters[0]!);
    const rebalanceIn = await redisCli(['--cluster', 'rebalance', seedOf(THEIRS), '--cluster-weight', `${extraId}=0`]);
    const delNode = await redisCli(['--cluster', 'del-node', seedOf(THEIRS), extraId]);
    const movedInTheirs = moved(before, await slotOwners(THEIRS.masters[0]!), perSlot);

    console.log('  checking keys after the scale-in...');
    const back: Phase = {
      ours: inOurs.ms,
      oursPhases: inOurs.phases,
      theirs: rebalanceIn.ms + delNode.ms,
      theirsWait: 0,
      theirsMove: rebalanceIn.ms,
      movedOurs: movedInOurs,
      movedTheirs: movedInTheirs,
      checks: [await verify(OURS.masters), await verify(THEIRS.masters)],
    };
    const stillThere = await clusterNodes(OURS.masters[0]!);
    if (stillThere.length !== OURS.masters.length) throw new BenchFailure(`after the scale-in ${HOST}:${OURS.masters[0]} still knows ${stillThere.length} nodes`);

    // The same two steps with connection: local: rcluster writes the new node's config and starts
    // its process inside the timed apply (the manual node above, reset by the scale-in, goes).
    for (const f of pidfiles.splice(0)) killByPidfile(f);
    await waitFor(`${OURS.extra} stopped`, async () => !(await answers(OURS.extra)) || 'still answers', { timeoutMs: 10_000, intervalMs: 20 });
    console.log('  scale-out and scale-in again: rcluster apply (connection: local)...');
    const localOut = await timedApply(specOursOut, dirOurs, 'scale-out-local');
    const localOutCheck = await verify([...OURS.masters, OURS.extra]);
    await converged([...OURS.masters, OURS.extra]);
    const localIn = await timedApply(specOurs, dirOurs, 'scale-in-local');
    const local: LocalRun = {
      out: { ms: localOut.ms, phases: localOut.phases, check: localOutCheck },
      back: { ms: localIn.ms, phases: localIn.phases, check: await verify(OURS.masters) },
    };

    console.log('  planning a 1000-master cluster...');
    const planning = planningBench();

    const rss = Math.max(outOurs.rssKiB, inOurs.rssKiB, localOut.rssKiB, localIn.rssKiB);
    report(out, back, local, rss, planning);
    const checks = [...out.checks, ...back.checks, local.out.check, local.back.check];
    const failed = checks.some((c) => c.bad > 0 || c.total !== KEYS || c.check === 'not OK');
    if (failed) throw new BenchFailure('keys missing, wrong or duplicated, or redis-cli --cluster check failed (see above)');
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await cleanup();
  }
}

function report(out: Phase, back: Phase, local: LocalRun, rssKiB: number, planning: ReturnType<typeof planningBench>): void {
  const row = (name: string, p: Phase) => {
    const movedText = p.movedOurs.keys === p.movedTheirs.keys ? count(p.movedOurs.keys) : `${count(p.movedOurs.keys)} / ${count(p.movedTheirs.keys)}`;
    const slotsText = p.movedOurs.slots === p.movedTheirs.slots ? count(p.movedOurs.slots) : `${count(p.movedOurs.slots)} / ${count(p.movedTheirs.slots)}`;
    return `  ${name.padEnd(15)}${seconds(p.ours).padEnd(11)}${seconds(p.theirs).padEnd(12)}${(p.ours / p.theirs).toFixed(2).padEnd(8)}${movedText.padEnd(20)}${slotsText}`;
  };
  const checks = [...out.checks, ...back.checks, local.out.check, local.back.check];
  const bad = checks.reduce((n, c) => n + c.bad, 0);
  const totals = checks.map((c) => c.total);
  const clusterChecks = [
    `after scale-out rcluster ${out.checks[0].check}, redis-cli ${out.checks[1].check}`,
    `after scale-in rcluster ${back.checks[0].check}, redis-cli ${back.checks[1].check}`,
    `after rcluster's local scale-out ${local.out.check.check}, scale-in ${local.back.check.check}`,
  ];
  console.log(`\nDay-2 migration, ${count(KEYS)} keys of ${VALUE_BYTES} B, 3 -> 4 masters and back (this machine, loopback)`);
  console.log(`                 ${'rcluster'.padEnd(11)}${'redis-cli'.padEnd(12)}${'ratio'.padEnd(8)}${'keys moved'.padEnd(20)}slots moved`);
  console.log(row('scale-out', out));
  console.log(row('scale-in', back));
  console.log('  (Both start from the same state: 3 loaded masters and a 4th redis-server running for 3 s, past Redis\'s 2 s start-up delay.');
  console.log('   rcluster: apply with connection: none. redis-cli: add-node + rebalance --cluster-use-empty-masters, then rebalance');
  console.log('   --cluster-weight <id>=0 + del-node; its wait for the new node to be known everywhere is not counted.');
  console.log('   keys/slots moved: "rcluster / redis-cli" where the two differ.)');
  const worst = Math.max(out.ours / out.theirs, back.ours / back.theirs);
  console.log(`  goal: ratio <= 0.20 (stretch <= 0.10): ${worst <= 0.1 ? 'met, stretch too' : worst <= 0.2 ? 'met' : 'NOT met'}; peak RSS of rcluster apply: ${mb(rssKiB)} (goal <= 200 MB${rssKiB <= 200 * 1024 ? '' : ', NOT met'})`);
  console.log(
    `  rcluster with connection: local, also writing the new node's config and starting its process (then waiting out Redis's 2 s start-up delay): ` +
      `scale-out ${seconds(local.out.ms)} (ratio ${(local.out.ms / out.theirs).toFixed(2)}), scale-in ${seconds(local.back.ms)} (ratio ${(local.back.ms / back.theirs).toFixed(2)})`,
  );
  console.log(
    `  planning a 1000-master cluster (+1 master: ${count(planning.slots)} slots in ${count(planning.moves)} moves): ${Math.round(planning.medianMs)} ms, median of 5 (goal <= 200 ms${planning.medianMs <= 200 ? '' : ', NOT met'}); of which the live-state fingerprint alone: ${Math.round(planning.fingerprintMs)} ms`,
  );
  console.log(`  keys checked after each step: ${bad} missing or wrong; keys held (DBSIZE over the masters): ${totals.every((t) => t === KEYS) ? `${count(KEYS)} everywhere` : totals.map(count).join(', ')}`);
  console.log(`  redis-cli --cluster check: ${clusterChecks.join('; ')}`);
  for (const [name, phases] of [
    ['scale-out', out.oursPhases],
    ['scale-in', back.oursPhases],
    ['scale-out (local)', local.out.phases],
    ['scale-in (local)', local.back.phases],
  ] as const) {
    if (phases.length > 0) console.log(`  rcluster apply ${name}, by phase: ${phases.join('; ')}`);
  }
  // The same comparison two other ways, so that no single choice of stopwatch decides it.
  for (const [name, p] of [['scale-out', out], ['scale-in', back]] as const) {
    const moveText = p.oursPhases.find((ph) => ph.startsWith('Move slots'));
    const moveMs = moveText ? parseDuration(moveText) : undefined;
    const parts: string[] = [];
    if (moveMs !== undefined) parts.push(`moving slots only: rcluster ${seconds(moveMs)} vs redis-cli rebalance ${seconds(p.theirsMove)}, ratio ${(moveMs / p.theirsMove).toFixed(2)}`);
    if (p.theirsWait > 0) parts.push(`counting redis-cli's wait for the new node (${seconds(p.theirsWait)}): ratio ${(p.ours / (p.theirs + p.theirsWait)).toFixed(2)}`);
    if (parts.length > 0) console.log(`  ${name}, ${parts.join('; ')}`);
  }
}

/** "Move slots between 3 pair(s) of masters (2.4 s)" -> 2400; "(812 ms)" -> 812. */
function parseDuration(phase: string): number | undefined {
  const m = /\((\d+(?:\.\d+)?) (s|ms)\)$/.exec(phase);
  if (!m) return undefined;
  return Number(m[1]) * (m[2] === 's' ? 1000 : 1);
}
