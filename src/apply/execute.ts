import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import pLimit from 'p-limit';
import { ApplyError, HostError } from '../errors.js';
import type { HostDriver } from '../hosts/driver.js';
import { connectNode, RCLUSTER_CONNECTION_NAME, splitAddress } from '../live/connect.js';
import { credentials, scrubSecrets } from '../live/auth.js';
import { formatRanges, parseClusterNodes, parseInfo } from '../live/parse.js';
import type { SlotRange } from '../live/types.js';
import { JOIN_NODE_TIMEOUT_MS, type ConfigChange, type Plan, type Step, type StepKind } from '../plan/types.js';
import type { ConfEdit } from '../provision/redisConf.js';
import { SLOT_COUNT } from '../plan/slots.js';
import { describeStep, phaseTitle } from '../render/steps.js';
import { provisionSshNode, restartNode, runningIdentity, setConfigLive, startLocalNode, stopNode } from './nodes.js';
import { AtomicMigrator, followJob, waitOwned } from './atomic.js';
import { ClassicMigrator, DEFAULT_MIGRATE_OPTIONS, type MigrateOptions, type MigrationProgress, type SlotMigrator } from './migrate.js';
import { dataTimeoutMs, DEFAULT_TIMEOUTS, type Timeouts } from '../spec/types.js';
import { serviceCommands } from '../provision/service.js';
import { slotList } from '../plan/slots.js';
import { NodePool } from './pool.js';
import { WaitAborted, waitFor } from './wait.js';
import { dependencies } from './schedule.js';

/** What apply tells its listeners: the human progress view and --json both listen to these. */
export type ApplyEvent =
  | { type: 'phase_start'; phase: number; title: string; steps: number[] }
  | { type: 'step_start'; phase: number; index: number; title: string }
  | { type: 'step_done'; phase: number; index: number; title: string; ms: number }
  | { type: 'step_failed'; phase: number; index: number; title: string; error: string }
  /** A slot migration's progress: slots done of total, keys moved so far, time since it started. */
  | { type: 'step_progress'; phase: number; index: number; pair: string; slotsDone: number; slotsTotal: number; keysMoved: number; ms: number }
  | { type: 'phase_done'; phase: number; ms: number }
  | { type: 'phase_failed'; phase: number; error: string };

export interface Phase {
  title: string;
  kind: StepKind;
  steps: { index: number; step: Step }[];
}

export interface ApplyDeps {
  driver: HostDriver;
  /** Upper bound on concurrent steps within a phase. */
  concurrency?: number;
  waitTimeoutMs?: number;
  /** The slot-migration strategy (the classic MIGRATE engine unless given). */
  migrator?: (pool: NodePool) => SlotMigrator;
  /**
   * Called before each step starts: rejects when the cluster lock is no longer ours (another
   * apply took it over with --force-unlock), so that two applies never change a cluster at once.
   */
  checkLock?: () => Promise<void>;
}

/**
 * What was done before a failure, in plan order, one line a step; a kind with many steps (slot
 * migrations, forgets) is one line, so that thousands of steps never print one line each.
 */
export function summarizeDone(done: { title: string; kind: StepKind }[]): string[] {
  const count = new Map<StepKind, number>();
  for (const d of done) count.set(d.kind, (count.get(d.kind) ?? 0) + 1);
  const out: string[] = [];
  const summarized = new Set<StepKind>();
  for (const d of done) {
    const n = count.get(d.kind) ?? 0;
    if (n <= 5) out.push(d.title);
    else if (!summarized.has(d.kind)) {
      summarized.add(d.kind);
      out.push(`${phaseTitle(d.kind, n)} (${n} steps)`);
    }
  }
  return out;
}

/** A step that was not started because another one failed first. */
class NotStarted extends Error {}

/**
 * Consecutive steps of one kind, as progress shows them. What runs when is the scheduler's
 * (schedule.ts): a step starts as soon as the steps it depends on are done, whatever its phase.
 */
export function phasesOf(plan: Plan): Phase[] {
  const phases: Phase[] = [];
  plan.steps.forEach((step, index) => {
    const last = phases[phases.length - 1];
    if (last && last.kind === step.kind) last.steps.push({ index, step });
    else phases.push({ title: '', kind: step.kind, steps: [{ index, step }] });
  });
  for (const p of phases) p.title = phaseTitle(p.kind, p.steps.length);
  return phases;
}

/**
 * Run the plan's steps, and nothing else: the plan alone decides what apply does.
 * On failure, throws ApplyError naming the failed step and every step already done.
 */
export async function executePlan(plan: Plan, deps: ApplyDeps, emit: (e: ApplyEvent) => void): Promise<void> {
  // Plan files written before timeouts existed carry none: the defaults.
  const timeouts: Timeouts = { ...DEFAULT_TIMEOUTS, ...plan.desired.timeouts };
  const pool = new NodePool({ commandTimeoutMs: timeouts.commandMs });
  // Migrations get connections of their own: a MIGRATE of a large batch, or of one large key,
  // legitimately takes longer than any other command is allowed; MIGRATE's own I/O timeout
  // (scaled to the batch's bytes) bounds it.
  const migrationPool = new NodePool({ commandTimeoutMs: 10 * 60_000 });
  // And the hand-overs theirs, so that a slot's SETSLOT NODE never queues behind the source's
  // next batches (the slot answers clients -ASK until it is through). Its wait is as long: a
  // source moving a big key answers nothing else until it is done.
  const controlPool = new NodePool({ commandTimeoutMs: 10 * 60_000 });
  const migrateOptions: MigrateOptions = { ...DEFAULT_MIGRATE_OPTIONS, migrateTimeoutMs: timeouts.commandMs, bytesPerSecond: timeouts.transferRate * 1_000_000 };
  const done: { index: number; title: string; kind: StepKind }[] = [];
  const ctx: StepContext = {
    plan,
    deps,
    pool,
    migrator: deps.migrator?.(migrationPool) ?? new ClassicMigrator(migrationPool, migrateOptions, controlPool),
    // The plan says which moves go server-side (plan/strategy.ts); a migrator given in deps
    // (tests of the classic engine) takes every move.
    atomic: deps.migrator ? undefined : new AtomicMigrator(migrationPool, { timeoutMs: (bytes) => dataTimeoutMs(timeouts, bytes), pollMs: ATOMIC_POLL_MS }),
    migrationPool,
    ids: new Map(),
    assigned: new Map(),
    waitTimeoutMs: deps.waitTimeoutMs ?? timeouts.waitMs,
    timeouts,
    joiningTimeouts: new Map(),
  };
  try {
    const phases = phasesOf(plan);
    const phaseOf = new Map<number, number>();
    phases.forEach((p, pi) => p.steps.forEach((s) => phaseOf.set(s.index, pi)));
    const left = phases.map((p) => p.steps.length);
    const phaseStarted = new Map<number, number>();
    const waits = dependencies(plan.steps);
    const limit = pLimit(deps.concurrency ?? 16);
    // After a failure, steps not started yet are not started: a bad change stops at one node.
    let failure: (Error & { stepTitle?: string; phase?: number }) | undefined;
    const runs: Promise<void>[] = [];
    plan.steps.forEach((step, index) => {
      const pi = phaseOf.get(index) as number;
      runs[index] = (async () => {
        await Promise.all((waits[index] ?? []).map((i) => runs[i]));
        await limit(async () => {
          if (failure) throw new NotStarted();
          if (!phaseStarted.has(pi)) {
            phaseStarted.set(pi, Date.now());
            emit({ type: 'phase_start', phase: pi, title: phases[pi]?.title ?? '', steps: phases[pi]?.steps.map((s) => s.index) ?? [] });
          }
          const title = describeStep(step);
          const t0 = Date.now();
          emit({ type: 'step_start', phase: pi, index, title });
          try {
            await deps.checkLock?.();
            // At most a few frames a second: thousands of slot rounds must not flood a log.
            let shown = 0;
            const pair = 'from' in step && 'to' in step ? `${step.from} → ${step.to}` : step.kind;
            await runStep(step, ctx, (p) => {
              const now = Date.now();
              if (now - shown < 250 && p.slotsDone < p.slotsTotal) return;
              shown = now;
              emit({ type: 'step_progress', phase: pi, index, pair, ...p, ms: now - t0 });
            });
          } catch (err) {
            failure ??= Object.assign(err as Error, { stepTitle: title, phase: pi });
            emit({ type: 'step_failed', phase: pi, index, title, error: scrubSecrets((err as Error).message) });
            throw err;
          }
          done.push({ index, title, kind: step.kind });
          emit({ type: 'step_done', phase: pi, index, title, ms: Date.now() - t0 });
          left[pi] = (left[pi] ?? 1) - 1;
          if (left[pi] === 0) emit({ type: 'phase_done', phase: pi, ms: Date.now() - (phaseStarted.get(pi) ?? t0) });
        });
      })();
    });
    await Promise.allSettled(runs);
    if (failure) {
      // The node timeout a joining node was given, back; if that fails too, the error says so
      // (the next plan shows it as well).
      await restoreNodeTimeouts(ctx).catch((err: Error) => {
        failure = Object.assign(new Error(`${failure?.message}; and ${err.message}`), { stepTitle: failure?.stepTitle, phase: failure?.phase });
      });
      emit({ type: 'phase_failed', phase: failure.phase ?? 0, error: scrubSecrets(failure.message) });
      throw new ApplyError(failure.stepTitle ?? 'apply', failure, summarizeDone(done.sort((a, b) => a.index - b.index)));
    }
    // Normally given back by the wait for cluster_state:ok that follows every meet; a last look.
    await restoreNodeTimeouts(ctx);
  } finally {
    await Promise.all([pool.close(), migrationPool.close(), controlPool.close()]);
  }
}

interface StepContext {
  plan: Plan;
  deps: ApplyDeps;
  pool: NodePool;
  migrator: SlotMigrator;
  /** For the moves the plan marks atomic (Valkey CLUSTER MIGRATESLOTS). */
  atomic: AtomicMigrator | undefined;
  migrationPool: NodePool;
  /** address -> node id, learnt as apply goes (new nodes have no id until they run). */
  ids: Map<string, string>;
  /** Slots this apply gave to each master, so that waiting can tell the other nodes directly. */
  assigned: Map<string, SlotRange[]>;
  waitTimeoutMs: number;
  timeouts: Timeouts;
  /** Nodes met with a shortened cluster-node-timeout, and the value to give back. */
  joiningTimeouts: Map<string, string>;
}

async function runStep(step: Step, ctx: StepContext, progress: (p: MigrationProgress) => void): Promise<void> {
  const { pool } = ctx;
  switch (step.kind) {
    case 'provision_node': {
      const node = nodeOf(step.node, ctx);
      pool.drop(step.node);
      if (ctx.plan.desired.connection === 'ssh') await provisionSshNode(node, ctx.deps.driver, editsOf(step.config), step.replaces);
      else await startLocalNode(node, ctx.deps.driver, ctx.plan.desired.connection);
      return;
    }
    case 'restart_node': {
      const node = nodeOf(step.node, ctx);
      const members = ctx.plan.desired.nodes.map((n) => n.address);
      // Checked again now, not only at plan time: a failover since then changes who may stop.
      await waitClusterOk(members, ctx, 10_000);
      const role = parseInfo(String(await pool.call(step.node, 'INFO', 'replication')));
      const ownsSlots = parseClusterNodes(String(await pool.call(step.node, 'CLUSTER', 'NODES'))).some((e) => e.myself && e.slots.length > 0);
      if (role['role'] === 'slave' && role['master_link_status'] !== 'up') {
        throw new Error(`${step.node} is a replica whose link to its master is down; restarting it now could leave its shard without a copy in sync. Nothing was restarted`);
      }
      let saved: { keys: number; lease: PauseLease } | undefined;
      if (role['role'] === 'master' && ownsSlots) {
        if (step.failoverTo) await failoverTo(step.failoverTo, step.node, ctx);
        else saved = await pauseAndSave(step.node, ctx);
      }
      try {
        const identity = { ...(await runningIdentity(step.node, ctx.timeouts)), ...(saved ? { minKeys: saved.keys } : {}) };
        pool.drop(step.node);
        await restartNode(node, ctx.deps.driver, ctx.plan.desired.connection, editsOf(step.config), identity);
        // The old process took its pause with it; the lease's connection was to that process.
        saved?.lease.end();
      } catch (err) {
        // If it never stopped, its writes must not stay paused.
        await saved?.lease.lift();
        throw err;
      }
      // The next restart waits until this node is back in a healthy cluster and, as a replica,
      // in sync with its master: never two copies of a shard down or stale at once.
      await waitClusterOk(members, ctx);
      await waitReplicasInSync([step.node], ctx);
      return;
    }
    case 'set_config':
      await setConfigLive(nodeOf(step.node, ctx), ctx.deps.driver, editsOf(step.config));
      return;
    case 'set_config_epoch':
      await pool.call(step.node, 'CLUSTER', 'SET-CONFIG-EPOCH', step.epoch);
      return;
    case 'meet_node': {
      const { host, port } = splitAddress(step.node);
      const ip = isIP(host) ? host : (await lookup(host)).address;
      await shortenJoinDelay(step.node, ctx);
      await Promise.all(step.via.map((v) => pool.call(v, 'CLUSTER', 'MEET', ip, port)));
      return;
    }
    case 'wait_join':
      await waitJoin(step.nodes, ctx);
      return;
    case 'add_slots':
      await addSlots(step.node, step.ranges, ctx);
      ctx.assigned.set(step.node, [...(ctx.assigned.get(step.node) ?? []), ...step.ranges]);
      return;
    case 'wait_cluster_ok':
      await announceSlotOwners(step.nodes, ctx);
      await waitClusterOk(step.nodes, ctx);
      await restoreNodeTimeouts(ctx);
      return;
    case 'replicate': {
      const masterId = await idOf(step.master, ctx);
      await pool.call(step.node, 'CLUSTER', 'REPLICATE', masterId);
      return;
    }
    case 'wait_replication':
      await waitReplicasInSync(step.replicas, ctx, { mustBeReplicas: true });
      await waitRolesAgreed(step.replicas, ctx);
      return;
    case 'finish_migration':
      await migrate(step.from, step.to, step.slots, ctx, progress, { finishing: true });
      return;
    case 'migrate_slots':
      // Redis 7 turns a master that gives away its last slot into a replica of the taker
      // (cluster-allow-replica-migration); this one is to stay a master until it is removed.
      if (step.lastSlots) await pool.call(step.from, 'CONFIG', 'SET', 'cluster-allow-replica-migration', 'no');
      await migrate(step.from, step.to, slotList(step.slots), ctx, progress, step.newTarget ? { newTarget: true } : {}, step.strategy?.kind === 'atomic' ? ctx.atomic : undefined);
      return;
    case 'wait_slot_migrations':
      await waitSlotMigrations(step, ctx);
      return;
    case 'failover': {
      await failoverTo(step.node, step.master, ctx);
      // Every node that answers sees the new master serve its slots before apply goes on: one
      // that still marks it failed (it was down earlier and has not heard from it since) reports
      // cluster_state:fail for up to twice the node timeout, and apply would end unconverged.
      const down = new Set((ctx.plan.down ?? []).map((d) => d.node));
      await waitClusterOk(ctx.plan.desired.nodes.map((n) => n.address).filter((a) => !down.has(a)), ctx);
      return;
    }
    case 'reset_node': {
      // A master's keys first: CLUSTER RESET refuses a master that holds any. A replica drops
      // its copy in the reset itself (and refuses FLUSHALL as read-only).
      const role = parseInfo(String(await pool.call(step.node, 'INFO', 'replication')))['role'];
      if (role === 'master') await pool.call(step.node, 'FLUSHALL');
      await pool.call(step.node, 'CLUSTER', 'RESET', 'HARD');
      ctx.ids.delete(step.node);
      return;
    }
    case 'forget_node':
      await Promise.all(
        step.via.map((v) =>
          pool.call(v, 'CLUSTER', 'FORGET', step.id).catch((err: Error) => {
            // Forgotten already: an earlier run got this far.
            if (!/unknown node/i.test(err.message)) throw new Error(`${v}: CLUSTER FORGET ${step.node}: ${err.message}`);
          }),
        ),
      );
      return;
    case 'remove_node':
      if (step.reachable) await removeNode(step, ctx);
      return;
    default:
      return assertNever(step);
  }
}

function assertNever(step: never): never {
  throw new Error(`rcluster cannot run a step of kind ${(step as Step).kind}`);
}

/** Move slots with the migration engine; the other masters are read from the target's view now. */
async function migrate(from: string, to: string, slots: number[], ctx: StepContext, progress: (p: MigrationProgress) => void, how: { newTarget?: boolean; finishing?: boolean }, migrator: SlotMigrator = ctx.migrator): Promise<void> {
  const [fromId, toId] = await Promise.all([idOf(from, ctx), idOf(to, ctx)]);
  const view = parseClusterNodes(String(await ctx.pool.call(to, 'CLUSTER', 'NODES')));
  const others = view
    .filter((e) => e.role === 'master' && !e.handshake && !e.noaddr && !e.fail && e.id !== fromId && e.id !== toId && e.host)
    .map((e) => ({ id: e.id, address: `${e.host}:${e.port}` }));
  await migrator.migrate({ from: { address: from, id: fromId }, to: { address: to, id: toId }, slots, others, ...how }, progress);
}

/** How often a server-side migration's state is read: a small one is over in a few hundred ms. */
const ATOMIC_POLL_MS = 50;

/**
 * Server-side migrations that were running when the plan was made: each followed on its source
 * until it ends; one that ends other than in success fails the step (the plan counted its slots
 * as the target's). One its source no longer lists (restarted) counts as done only if every
 * node names the target the owner of its slots.
 */
async function waitSlotMigrations(step: Extract<Step, { kind: 'wait_slot_migrations' }>, ctx: StepContext): Promise<void> {
  const members = ctx.plan.desired.nodes.map((n) => n.address);
  await Promise.all(
    step.jobs.map(async (j) => {
      const what = `slots ${formatRanges(j.ranges)} ${j.source} -> ${j.target}`;
      const source = await ctx.migrationPool.get(j.source);
      const bytes = await datasetBytes(j.source, ctx).catch(() => 0);
      const opts = { timeoutMs: dataTimeoutMs(ctx.timeouts, bytes), intervalMs: ATOMIC_POLL_MS };
      await followJob(source, j.source, what, { name: j.name }, opts);
      const involved = [...new Set([j.source, j.target, ...members.filter((m) => m !== j.source && m !== j.target)])];
      await waitOwned(ctx.migrationPool, involved, { address: j.target, id: await idOf(j.target, ctx) }, slotList(j.ranges), opts).catch((err: Error) => {
        throw new Error(`${err.message}; the server-side migration of ${what} is no longer listed on ${j.source}, so it did not end in success there. Run plan again`);
      });
    }),
  );
}

/**
 * CLUSTER RESET SOFT, so that the node forgets the cluster and can be re-added cleanly, then stop
 * it through its host; the nodes that stay forget it after this step (see removals in diff.ts).
 * SOFT, not HARD: the node keeps its id. Until they forget it, the nodes that stay still talk to
 * it, and one that answered with a new id would be marked noaddr in their views, losing its
 * address: an apply killed before the stop would leave it running where no plan could find it.
 * A node already reset (another id at that address) is only stopped.
 */
async function removeNode(step: Extract<Step, { kind: 'remove_node' }>, ctx: StepContext): Promise<void> {
  const id = String(await ctx.pool.call(step.node, 'CLUSTER', 'MYID'));
  if (id === step.id) {
    if (step.clientsWaitMs) await clientsLeft(step.node, step.clientsWaitMs, ctx);
    await ctx.pool.call(step.node, 'CLUSTER', 'RESET', 'SOFT');
  } else {
    // Another id: reset already, or another node entirely. Only an empty node that knows no
    // one is ours to stop.
    const [nodes, keys] = await Promise.all([ctx.pool.call(step.node, 'CLUSTER', 'NODES'), ctx.pool.call(step.node, 'DBSIZE')]);
    if (String(nodes).trim().split('\n').length > 1 || Number(keys) > 0) {
      throw new Error(`${step.node} now answers as another node (${id.slice(0, 8)}, not ${step.id.slice(0, 8)}) that has keys or knows other nodes; not touching it`);
    }
  }
  if (!step.stop) return;
  ctx.pool.drop(step.node);
  const { host } = splitAddress(step.node);
  if (ctx.plan.desired.connection === 'ssh') {
    const stop = serviceCommands(step.service ?? '').stop;
    const r = await ctx.deps.driver.run(host, stop, { timeoutMs: 60_000 });
    if (r.code !== 0) throw new HostError(host, stop, `exited ${r.code}: ${(r.stderr || r.stdout).trim().split('\n').slice(-2).join(' | ')}`);
  } else {
    await stopNode(step.node, { discard: false });
  }
}

/** A connection that sent nothing for this long belongs to a client that no longer routes here. */
const CLIENT_QUIET_S = 2;

/**
 * Until no client but rcluster's own and the node's replication links uses `address` (CLIENT
 * LIST), for `ms` at most (CLIENTS_LEAVE_MS says why). rcluster's own are named
 * "rcluster", and its tools' (its tests' observers) "rcluster-…". Not a failure when some stay: the
 * plan said they are cut off then. A node that refuses CLIENT LIST is not waited for.
 */

async function clientsLeft(address: string, ms: number, ctx: StepContext): Promise<void> {
  const ours = new RegExp(` name=${RCLUSTER_CONNECTION_NAME}(-\\S*)? `);
  const clients = async (): Promise<true | string> => {
    const list = await ctx.pool.call(address, 'CLIENT', 'LIST', 'TYPE', 'normal').catch((err: Error) => {
      if (err.name === 'ReplyError') throw new WaitAborted(err.message);
      throw err;
    });
    // A client still routing commands here sends them (and gets -MOVED, then refreshes its
    // map); a connection that has sent nothing for two seconds belongs to one that no longer
    // does (redis-py keeps such a connection until it rebuilds its map; one second let a
    // node-redis client with a slot it rarely used still mapped here meet the stop). The other
    // masters' MIGRATE connections (RESTORE-ASKING, cached by Redis for 10 s) are not clients.
    const active = String(list)
      .split('\n')
      .filter((l) => l.trim() !== '' && !ours.test(l) && !/ cmd=restore-asking /.test(l) && Number(/ idle=(\d+)/.exec(l)?.[1] ?? 0) < CLIENT_QUIET_S);
    return active.length === 0 || `${active.length} client connection(s) still in use`;
  };
  await waitFor(`${address}: clients to leave`, clients, { timeoutMs: ms }).catch(() => {});
}

/** Apply makes exactly the edits the plan showed. */
/** The plan's edits with real values: a password comes from this run's credentials, never from the plan. */
function editsOf(config: ConfigChange | undefined): ConfEdit[] {
  return (config?.changed ?? []).map((c) => {
    if (!c.secret) return { directive: c.directive, value: c.to };
    const password = credentials()?.password;
    if (password === undefined) throw new Error(`the plan sets ${c.directive}, but this run has no password (redis.passwordEnv or redis.passwordFile)`);
    return { directive: c.directive, value: password };
  });
}

function nodeOf(address: string, ctx: StepContext) {
  const node = ctx.plan.desired.nodes.find((n) => n.address === address);
  if (!node) throw new Error(`${address} is not in the plan's spec`);
  return node;
}

/**
 * A master that ran alone for more than its first 2 s (a node started by hand, or on a host
 * provisioned a while ago) counts as having been cut off with a minority: once it knows the
 * cluster it stays cluster_state:fail, refusing the keys a migration sends it, for its
 * cluster-node-timeout (at most 5 s). While it joins it gets JOIN_NODE_TIMEOUT_MS; the wait for
 * cluster_state:ok gives the configured value back.
 */
async function shortenJoinDelay(address: string, ctx: StepContext): Promise<void> {
  if (ctx.joiningTimeouts.has(address)) return;
  // A node started a moment ago (rcluster's own, just provisioned) meets the cluster within its
  // first 2 s, before Redis judges its state at all: it has no rejoin delay to shorten, and
  // masters that are about to own slots keep their own failure detection.
  const uptime = Number(/uptime_in_seconds:(\d+)/.exec(String(await ctx.pool.call(address, 'INFO', 'server').catch(() => '')))?.[1] ?? 0);
  if (uptime < 1) return;
  // Only a shortcut: a node that refuses CONFIG (renamed, an ACL) joins at Redis's own pace.
  const reply = (await ctx.pool.call(address, 'CONFIG', 'GET', 'cluster-node-timeout').catch(() => undefined)) as [string, string] | undefined;
  const current = reply?.[1];
  if (current === undefined || !(Number(current) > JOIN_NODE_TIMEOUT_MS)) return;
  // Noted first: a reply lost after the node took the value must not leave it short. Only a
  // refusal (an error reply) says it did not.
  ctx.joiningTimeouts.set(address, current);
  await ctx.pool.call(address, 'CONFIG', 'SET', 'cluster-node-timeout', String(JOIN_NODE_TIMEOUT_MS)).catch((err: Error) => {
    if (err.name === 'ReplyError') ctx.joiningTimeouts.delete(address);
  });
}

async function restoreNodeTimeouts(ctx: StepContext): Promise<void> {
  await Promise.all(
    [...ctx.joiningTimeouts].map(async ([address, value]) => {
      await ctx.pool.call(address, 'CONFIG', 'SET', 'cluster-node-timeout', value).catch((err: Error) => {
        throw new Error(`${address}: CONFIG SET cluster-node-timeout ${value} (given back after it joined): ${err.message}`);
      });
      ctx.joiningTimeouts.delete(address);
    }),
  );
}

/** The node's data in memory (INFO memory used_memory_dataset): what a sync, save or load moves. */
async function datasetBytes(address: string, ctx: StepContext): Promise<number> {
  return Number(/used_memory_dataset:(\d+)/.exec(String(await ctx.pool.call(address, 'INFO', 'memory')))?.[1] ?? 0);
}

async function idOf(address: string, ctx: StepContext): Promise<string> {
  let id = ctx.ids.get(address);
  if (!id) {
    id = String(await ctx.pool.call(address, 'CLUSTER', 'MYID'));
    ctx.ids.set(address, id);
  }
  return id;
}

/** Every node given that is a replica reports master_link_status:up (and, if asked, is a replica). */
async function waitReplicasInSync(nodes: string[], ctx: StepContext, opts: { mustBeReplicas?: boolean } = {}): Promise<void> {
  // A first sync moves the master's whole dataset (an RDB, then its load): the wait grows with it.
  const bytes = await Promise.all(
    nodes.map(async (r) => {
      const info = parseInfo(String(await ctx.pool.call(r, 'INFO', 'replication')));
      const master = info['master_host'] && info['master_port'] ? `${info['master_host']}:${info['master_port']}` : undefined;
      return master ? datasetBytes(master, ctx).catch(() => 0) : 0;
    }),
  );
  await waitFor(
    'replicas to sync with their masters',
    async () => {
      // Read in parallel, judged in order: a poll costs one round trip, not one per node.
      const infos = await readAll(nodes, ctx, 'INFO', 'replication');
      for (const [i, r] of nodes.entries()) {
        const info = parseInfo(infos[i] as string);
        if (info['role'] !== 'slave') {
          if (opts.mustBeReplicas) return `${r} is not a replica yet`;
          continue;
        }
        if (info['master_link_status'] !== 'up') return `${r}: master_link_status:${info['master_link_status'] ?? 'unknown'}`;
      }
      return true;
    },
    { timeoutMs: Math.max(ctx.waitTimeoutMs, dataTimeoutMs(ctx.timeouts, Math.max(0, ...bytes))) },
  );
}

/**
 * Gossip spreads a new role slowly: after CLUSTER REPLICATE, other nodes may list the replica as a
 * master for up to half the node timeout. Apply is done only when every node's view says what
 * each replica says of itself; clients that read the topology from any node then see the same
 * cluster. A node that lags is sent a packet from the replica at once: CLUSTER MEET from the
 * replica to that node carries the replica's header (and its role), and the handshake entry it
 * creates is dropped as soon as the node answers with its known id.
 */
async function waitRolesAgreed(replicas: string[], ctx: StepContext): Promise<void> {
  const members = ctx.plan.desired.nodes.map((n) => n.address);
  const ids = await Promise.all(replicas.map((r) => idOf(r, ctx)));
  const nudged = new Set<string>();
  await waitFor(
    'every node to agree on the replicas\' masters',
    async () => {
      const own = await Promise.all(replicas.map(async (r) => parseClusterNodes(String(await ctx.pool.call(r, 'CLUSTER', 'NODES'))).find((e) => e.myself)?.masterId));
      let lagging: string | undefined;
      const views = await readAll(members, ctx, 'CLUSTER', 'NODES');
      for (const [m, n] of members.entries()) {
        const view = parseClusterNodes(views[m] as string);
        const me = view.find((e) => e.myself);
        for (const [i, id] of ids.entries()) {
          const e = view.find((x) => x.id === id);
          if (e && e.role === 'replica' && e.masterId === own[i]) continue;
          const r = replicas[i] as string;
          lagging ??= `${n} does not list ${r} as a replica of its master yet`;
          if (me?.host && r !== n && !nudged.has(`${r}>${n}`)) {
            nudged.add(`${r}>${n}`);
            await ctx.pool.call(r, 'CLUSTER', 'MEET', me.host, me.port, me.busPort).catch(() => {});
          }
        }
      }
      return lagging ?? true;
    },
    { timeoutMs: ctx.waitTimeoutMs },
  );
}

/**
 * A master with no replica to take over is saved before it stops: writes are paused (clients
 * wait, nothing acknowledged is lost), a background save runs to completion, and the key count
 * it had is returned so that the restart can be checked against it.
 */
async function pauseAndSave(address: string, ctx: StepContext): Promise<{ keys: number; lease: PauseLease }> {
  const saveMs = dataTimeoutMs(ctx.timeouts, await datasetBytes(address, ctx));
  // Held as a lease until the process stops: an apply killed meanwhile leaves writes paused
  // for PAUSE_LEASE_MS at most, not for the whole save-and-restart allowance.
  const lease = await PauseLease.take(address, ctx.timeouts.commandMs);
  const keys = Number(await ctx.pool.call(address, 'DBSIZE'));
  await ctx.pool.call(address, 'BGSAVE').catch((err: Error) => {
    // One already running (a scheduled save) will do if it finishes with nothing left unsaved.
    if (!/in progress/i.test(err.message)) throw err;
  });
  await waitFor(
    `${address} to finish saving`,
    async () => {
      const p = parseInfo(String(await ctx.pool.call(address, 'INFO', 'persistence')));
      if (p['rdb_bgsave_in_progress'] !== '0') return 'saving';
      // A failed save will not succeed by waiting: give up now, and the pause is lifted below.
      if (p['rdb_last_bgsave_status'] !== 'ok') throw new WaitAborted(`BGSAVE failed (rdb_last_bgsave_status:${p['rdb_last_bgsave_status']}); its writes are no longer paused, and nothing was restarted`);
      if (p['rdb_changes_since_last_save'] !== '0') {
        await ctx.pool.call(address, 'BGSAVE').catch(() => {});
        return 'changes since the last save';
      }
      return true;
    },
    { timeoutMs: saveMs, intervalMs: 100 },
  ).catch(async (err) => {
    await lease.lift();
    throw err;
  });
  return { keys, lease };
}

/** How long one CLIENT PAUSE lasts; it is renewed every third of that while apply holds it. */
export const PAUSE_LEASE_MS = 10_000;

/**
 * A write pause (CLIENT PAUSE … WRITE) that lasts only while apply is alive to renew it, on a
 * connection of its own to the paused process: when that process stops (the restart), the
 * connection dies with it and no renewal can reach the new process.
 */
class PauseLease {
  private timer: NodeJS.Timeout | undefined;
  private constructor(private readonly client: Awaited<ReturnType<typeof connectNode>>) {}

  static async take(address: string, commandTimeoutMs: number): Promise<PauseLease> {
    const client = await connectNode(address, { commandTimeoutMs });
    const lease = new PauseLease(client);
    await client.call('CLIENT', 'PAUSE', PAUSE_LEASE_MS, 'WRITE');
    lease.timer = setInterval(() => {
      client.call('CLIENT', 'PAUSE', PAUSE_LEASE_MS, 'WRITE').catch(() => lease.end());
    }, PAUSE_LEASE_MS / 3);
    client.on('close', () => lease.end());
    return lease;
  }

  /** Stop renewing (the process is gone, or the pause is to run out). */
  end(): void {
    clearInterval(this.timer);
    this.timer = undefined;
    this.client.disconnect();
  }

  /** Writes go on now: every failure path. */
  async lift(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    await this.client.call('CLIENT', 'UNPAUSE').catch(() => {});
    this.client.disconnect();
  }
}

/**
 * CLUSTER FAILOVER on a synced replica, so that a master can restart as a replica without its
 * shard going down or losing writes; waits until the two have swapped roles.
 */
async function failoverTo(replica: string, master: string, ctx: StepContext): Promise<void> {
  const info = parseInfo(String(await ctx.pool.call(replica, 'INFO', 'replication')));
  const masterId = await idOf(master, ctx);
  const view = parseClusterNodes(String(await ctx.pool.call(replica, 'CLUSTER', 'NODES')));
  const me = view.find((e) => e.myself);
  if (me?.masterId !== masterId || info['master_link_status'] !== 'up') {
    throw new Error(`${replica} is not an in-sync replica of ${master} (master_link_status:${info['master_link_status'] ?? 'none'}); not failing over, nothing restarted`);
  }
  // Redis drops a manual failover that has not finished in 5 s (a vote refused, a replica that
  // restarted a moment ago and is not known everywhere yet); asking again is safe.
  const tries = 4;
  const swapped = async (): Promise<true | string> => {
    const [r, m] = await Promise.all([ctx.pool.call(replica, 'INFO', 'replication'), ctx.pool.call(master, 'INFO', 'replication')]);
    if (parseInfo(String(r))['role'] !== 'master') return `${replica} is not master yet`;
    if (parseInfo(String(m))['role'] !== 'slave') return `${master} is not a replica yet`;
    return true;
  };
  for (let attempt = 1; ; attempt++) {
    // A failover asked for earlier may have finished just after the last wait gave up.
    if (attempt > 1 && (await swapped()) === true) return;
    await ctx.pool.call(replica, 'CLUSTER', 'FAILOVER');
    try {
      await waitFor(`${replica} to take over from ${master}`, swapped, { timeoutMs: 7_000 });
      return;
    } catch (err) {
      if (attempt >= tries) throw new Error(`${(err as Error).message}, after ${tries} CLUSTER FAILOVER attempts; ${master} was not restarted`);
    }
  }
}

async function addSlots(address: string, ranges: { start: number; end: number }[], ctx: StepContext): Promise<void> {
  try {
    await ctx.pool.call(address, 'CLUSTER', 'ADDSLOTSRANGE', ...ranges.flatMap((r) => [r.start, r.end]));
  } catch (err) {
    // ADDSLOTSRANGE is Redis >= 7.0; older servers take every slot by number.
    if (!/unknown subcommand|ERR Unknown/i.test((err as Error).message)) throw err;
    const slots: number[] = [];
    for (const r of ranges) for (let s = r.start; s <= r.end; s++) slots.push(s);
    await ctx.pool.call(address, 'CLUSTER', 'ADDSLOTS', ...slots);
  }
}

async function waitJoin(nodes: string[], ctx: StepContext): Promise<void> {
  const ids = await Promise.all(nodes.map((n) => idOf(n, ctx)));
  await waitFor(
    'every node to know every other node',
    async () => {
      const views = await readAll(nodes, ctx, 'CLUSTER', 'NODES');
      for (const [i, n] of nodes.entries()) {
        const view = parseClusterNodes(views[i] as string);
        const missing = ids.filter((id) => !view.some((e) => e.id === id && !e.handshake));
        if (missing.length > 0) return `${n} does not know ${missing.length} node(s) yet`;
        const handshake = view.filter((e) => e.handshake);
        if (handshake.length > 0) return `${n} still has ${handshake.length} node(s) in handshake`;
      }
      return true;
    },
    { timeoutMs: ctx.waitTimeoutMs },
  );
}

/**
 * Gossip tells a node about a master's new slots only when that master next pings it, which
 * takes up to half the node timeout. Telling each node the owners with SETSLOT NODE makes the
 * cluster agree at once. Only slots a node sees as unowned are set, so no claim is overridden.
 */
async function announceSlotOwners(nodes: string[], ctx: StepContext): Promise<void> {
  if (ctx.assigned.size === 0) return;
  const owners = await Promise.all([...ctx.assigned].map(async ([m, ranges]) => ({ id: await idOf(m, ctx), ranges })));
  await Promise.all(
    nodes.map(async (n) => {
      const view = parseClusterNodes(String(await ctx.pool.call(n, 'CLUSTER', 'NODES')));
      const me = view.find((e) => e.myself);
      if (!me || me.role !== 'master') return;
      const owned = new Set<number>();
      for (const e of view) for (const r of e.slots) for (let s = r.start; s <= r.end; s++) owned.add(s);
      const client = await ctx.pool.get(n);
      const pipeline = client.pipeline();
      let queued = 0;
      for (const { id, ranges } of owners) {
        if (id === me.id || !view.some((e) => e.id === id)) continue;
        for (const r of ranges) {
          for (let s = r.start; s <= r.end; s++) {
            if (owned.has(s)) continue;
            pipeline.call('CLUSTER', 'SETSLOT', String(s), 'NODE', id);
            queued++;
          }
        }
      }
      if (queued === 0) return;
      const results = (await pipeline.exec()) ?? [];
      const failed = results.find(([err]) => err);
      if (failed?.[0]) throw new Error(`${n}: CLUSTER SETSLOT NODE: ${failed[0].message}`);
    }),
  );
}

/** Every node reports cluster_state:ok, all slots assigned, the same slot owners, and no open slot. */
async function waitClusterOk(nodes: string[], ctx: StepContext, timeoutMs = ctx.waitTimeoutMs): Promise<void> {
  await waitFor(
    'every node to agree on the slots and report cluster_state:ok',
    async () => {
      let reference: string | undefined;
      const [infos, views] = await Promise.all([readAll(nodes, ctx, 'CLUSTER', 'INFO'), readAll(nodes, ctx, 'CLUSTER', 'NODES')]);
      for (const [i, n] of nodes.entries()) {
        const [infoText, nodesText] = [infos[i], views[i]];
        const info = parseInfo(String(infoText));
        if (info['cluster_state'] !== 'ok') return `${n}: cluster_state:${info['cluster_state']}`;
        if (Number(info['cluster_slots_assigned']) !== SLOT_COUNT) return `${n}: ${info['cluster_slots_assigned']} slots assigned`;
        const me = parseClusterNodes(String(nodesText)).find((e) => e.myself);
        if (me && me.migrating.length + me.importing.length > 0) return `${n} still has ${me.migrating.length + me.importing.length} open slot(s)`;
        const owners = slotMapSignature(String(nodesText));
        if (reference === undefined) reference = owners;
        else if (owners !== reference) return `${n} does not agree on slot owners yet`;
      }
      return true;
    },
    { timeoutMs },
  );
}

/** One command on every node at once: over a slow link a poll costs one round trip. */
async function readAll(nodes: string[], ctx: StepContext, ...command: string[]): Promise<string[]> {
  return Promise.all(nodes.map(async (n) => String(await ctx.pool.call(n, ...command))));
}

function slotMapSignature(nodesText: string): string {
  return parseClusterNodes(nodesText)
    .filter((e) => e.slots.length > 0)
    .map((e) => `${e.id}:${e.slots.map((r) => `${r.start}-${r.end}`).join(',')}`)
    .sort()
    .join(';');
}
