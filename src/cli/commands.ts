import { constants } from 'node:fs';
import { access, stat, writeFile } from 'node:fs/promises';
import { executePlan, phasesOf } from '../apply/execute.js';
import { ApplyError, PlanError, UsageError } from '../errors.js';
import { formatDiagnostic } from '../errors.js';
import { inspectCluster } from '../live/inspect.js';
import { clusterStatus } from '../live/status.js';
import { computePlan } from '../plan/diff.js';
import { fingerprint, nodeFingerprints } from '../plan/fingerprint.js';
import { looksLikePlanFile, readPlanFile, serializePlan } from '../plan/file.js';
import type { Plan } from '../plan/types.js';
import { renderPlan, summaryLine } from '../render/plan.js';
import { formatMs, jsonProgress, listrProgress, withSpinner } from '../render/progress.js';
import { renderStatus } from '../render/status.js';
import { loadSpec, requireSpec } from '../spec/load.js';
import { DEFAULT_TIMEOUTS, type DesiredCluster } from '../spec/types.js';
import { confirm } from './confirm.js';
import { driverFor, useTunnels } from './drivers.js';
import type { HostDriver } from '../hosts/driver.js';
import { destroyLocal, planDestroy, renderDestroy } from './destroy.js';
import type { Io } from './io.js';
import { withClusterLock, type ClusterLock } from './clusterLock.js';
import { withLocalLock } from './lock.js';
import { findBigKeys, withBigKeys } from './bigKeys.js';
import { bigKeysRefusal, describeBigKey } from '../plan/bigKeys.js';
import { useCredentials } from '../live/auth.js';
import { loadCredentials } from '../spec/secrets.js';

export const EXIT_OK = 0;
export const EXIT_ERROR = 1;
export const EXIT_CHANGES = 2;

async function loadDesired(file: string, io: Io): Promise<DesiredCluster> {
  if (await looksLikePlanFile(file)) throw new UsageError(`${file} is a plan saved by rcluster plan --out; apply it with: rcluster apply ${file}`);
  const result = await loadSpec(file);
  for (const d of result.diagnostics) if (d.severity === 'warning') io.err(formatDiagnostic(d));
  return requireSpec(result);
}

export async function validateCommand(opts: { file: string; json?: boolean }, io: Io): Promise<number> {
  const result = await loadSpec(opts.file);
  const errors = result.diagnostics.filter((d) => d.severity === 'error');
  if (opts.json) {
    io.out(JSON.stringify({ valid: errors.length === 0, diagnostics: result.diagnostics }, null, 2));
  } else {
    for (const d of result.diagnostics) io.err(formatDiagnostic(d));
    if (errors.length === 0) {
      const d = result.desired as DesiredCluster;
      io.out(`${opts.file}: valid: cluster "${d.name}", ${d.nodes.length} nodes, ${d.masters} masters, ${d.replicasPerMaster} replica(s) per master (connection: ${d.connection}).`);
    }
  }
  return errors.length === 0 ? EXIT_OK : EXIT_ERROR;
}

/**
 * What can be checked on this machine is checked before any host is contacted: a key file that
 * cannot be read would otherwise fail only after the Redis ports had been dialled.
 */
async function checkLocalFiles(desired: DesiredCluster): Promise<void> {
  // The password too: read now, kept for this run only (live/auth.ts), never written anywhere.
  useCredentials(await loadCredentials(desired));
  if (desired.connection !== 'ssh') return;
  for (const file of new Set(desired.nodes.map((n) => n.ssh.identityFile).filter((f): f is string => f !== undefined))) {
    await access(file, constants.R_OK).catch((err: NodeJS.ErrnoException) => {
      throw new UsageError(`ssh.identityFile ${file}: cannot read it (${err.code === 'ENOENT' ? 'no such file' : (err.code ?? err.message)}); nothing was contacted`);
    });
    if ((await stat(file)).isDirectory()) throw new UsageError(`ssh.identityFile ${file}: cannot read it (a directory); nothing was contacted`);
  }
  useTunnels(desired);
}

/**
 * `shared`: apply's driver, kept open for the steps: a host is logged in to once per run (a
 * slow login then costs its delay once, not once for reading and again for changing).
 */
async function planFor(desired: DesiredCluster, opts: { json?: boolean; allowReset?: boolean; allowBigKeys?: boolean } = {}, shared?: HostDriver): Promise<Plan> {
  await checkLocalFiles(desired);
  const driver = shared ?? driverFor(desired);
  try {
    const what = `Reading ${desired.nodes.length} node(s)${desired.connection === 'ssh' ? ' and their hosts over SSH' : ''}`;
    const live = await withSpinner(what, !opts.json, () => inspectCluster(desired, { driver }));
    const plan = computePlan(desired, live, new Date(), { allowReset: opts.allowReset === true });
    return await withBigKeys(plan, live, { show: !opts.json, allow: opts.allowBigKeys === true });
  } finally {
    if (!shared) await driver.close();
  }
}

export async function planCommand(opts: { file: string; out?: string; json?: boolean; detailedExitcode?: boolean; allowReset?: boolean; allowBigKeys?: boolean }, io: Io): Promise<number> {
  const desired = await loadDesired(opts.file, io);
  const plan = await planFor(desired, opts);
  if (opts.out) {
    await writeFile(opts.out, serializePlan(plan)).catch((err: NodeJS.ErrnoException) => {
      throw new UsageError(`cannot write the plan to ${opts.out}: ${err.code === 'ENOENT' ? 'no such directory' : err.message}`);
    });
  }
  if (opts.json) io.out(JSON.stringify(planJson(plan), null, 2));
  else {
    io.out(renderPlan(plan).trimEnd());
    if (opts.out && plan.steps.length > 0) io.out(`\nSaved the plan to ${opts.out}. To perform exactly these actions, run: rcluster apply ${opts.out}`);
  }
  return plan.steps.length > 0 && opts.detailedExitcode ? EXIT_CHANGES : EXIT_OK;
}

function planJson(plan: Plan) {
  return {
    formatVersion: plan.formatVersion,
    cluster: plan.desired.name,
    changes: plan.steps.length > 0,
    summary: plan.steps.length > 0 ? summaryLine(plan) : 'No changes.',
    steps: plan.steps,
    roles: plan.roles,
    warnings: plan.warnings,
    down: plan.down ?? [],
    bigKeys: plan.bigKeys ?? [],
    allowBigKeys: plan.allowBigKeys === true,
    fingerprint: plan.fingerprint,
  };
}

export async function applyCommand(
  opts: {
    file?: string;
    planFile?: string;
    autoApprove?: boolean;
    json?: boolean;
    allowReset?: boolean;
    allowDown?: boolean;
    allowBigKeys?: boolean;
    forceUnlock?: string;
    commandTimeout?: number;
    waitTimeout?: number;
    transferRate?: number;
  },
  io: Io,
): Promise<number> {
  if (opts.planFile && opts.file) {
    throw new UsageError(`give either a plan file (${opts.planFile}) or -f ${opts.file}, not both: a saved plan already names its spec`);
  }
  const saved = opts.planFile ? await readPlanFile(opts.planFile) : undefined;
  const desired = saved?.desired ?? (await loadDesired(opts.file ?? 'cluster.yaml', io));
  // The command line's timeouts win over the spec's (and over a saved plan's).
  desired.timeouts = {
    ...DEFAULT_TIMEOUTS,
    ...desired.timeouts,
    ...(opts.commandTimeout !== undefined ? { commandMs: opts.commandTimeout } : {}),
    ...(opts.waitTimeout !== undefined ? { waitMs: opts.waitTimeout } : {}),
    ...(opts.transferRate !== undefined ? { transferRate: opts.transferRate } : {}),
  };
  // Before the lock: taking it is the first contact with the nodes.
  await checkLocalFiles(desired);
  // Held from planning to the last step, so that no other apply plans against a moving cluster:
  // a file for local clusters (it guards starting processes, before any node answers), and the
  // nodes' own lock for every connection (it works from any machine).
  // One driver for the whole apply: the hosts' locks, reading them, and the steps (a host is
  // logged in to once; a slow login costs its delay once).
  const driver = driverFor(desired);
  try {
    return await withLocalLock(desired, () => withClusterLock(desired, { forceUnlock: opts.forceUnlock, driver }, (lock) => applyWith(desired, saved, opts, io, lock, driver)));
  } finally {
    await driver.close();
  }
}

type ApplyOptions = Parameters<typeof applyCommand>[0];

async function applyWith(desired: DesiredCluster, saved: Plan | undefined, opts: ApplyOptions, io: Io, lock: ClusterLock, driver: HostDriver): Promise<number> {
  let plan: Plan;
  if (saved && opts.planFile) {
    plan = saved;
    await refuseStalePlan(plan, opts.planFile, driver, opts.allowBigKeys === true);
  } else {
    plan = await planFor(desired, opts, driver);
  }
  if (opts.json) io.out(JSON.stringify({ type: 'plan', ...planJson(plan) }));
  else io.out(renderPlan(plan).trimEnd());
  if (plan.steps.length === 0) return EXIT_OK;
  const down = plan.down ?? [];
  if (down.length > 0 && !opts.allowDown) {
    throw new PlanError(
      `${down.map((d) => `${d.node} is down (${d.reason})`).join('; ')}. The plan's steps leave ${down.length === 1 ? 'it' : 'them'} alone, ` +
        `but a change made while part of the cluster is away is yours to choose: run again with --allow-down to go ahead without ${down.length === 1 ? 'it' : 'them'}`,
    );
  }
  const bigKeys = bigKeysRefusal(plan, opts.allowBigKeys === true);
  if (bigKeys) throw new PlanError(bigKeys);

  // A saved plan was reviewed when it was made; that is terraform's contract too.
  if (!opts.autoApprove && !opts.planFile) {
    const ok = await confirm(io);
    if (!ok) {
      io.err('Apply cancelled.');
      return EXIT_ERROR;
    }
  }
  await runPlan(plan, opts, io, lock, driver);
  return EXIT_OK;
}

async function runPlan(plan: Plan, opts: { file?: string; planFile?: string; json?: boolean }, io: Io, lock: ClusterLock, driver: HostDriver): Promise<void> {
  const view = opts.json ? jsonProgress((l) => io.out(l)) : listrProgress(phasesOf(plan));
  const started = Date.now();
  try {
    await executePlan(plan, { driver, checkLock: lock.check }, (e) => view.emit(e));
  } catch (err) {
    await view.finish();
    if (err instanceof ApplyError) {
      const file = opts.planFile ? plan.desired.source.file : (opts.file ?? 'cluster.yaml');
      const done = err.done.length > 0 ? `Already done:\n${err.done.map((d) => `  - ${d}`).join('\n')}` : 'No step had completed.';
      throw new ApplyError(err.failedStep, new Error(`${err.cause.message}\n${done}\nRun \`rcluster plan -f ${file}\` to see what is left.`), err.done);
    }
    throw err;
  }
  await view.finish();
  const ms = Date.now() - started;
  if (opts.json) io.out(JSON.stringify({ type: 'apply_complete', steps: plan.steps.length, ms }));
  else io.out(`\nApply complete: ${plan.steps.length} step(s) in ${formatMs(ms)}.`);
}

/** "127.0.0.1:7002 changed, 127.0.0.1:7007 appeared", or a general word for older plan files. */
function whatChanged(before: Record<string, string> | undefined, now: Record<string, string>): string {
  if (!before) return 'the cluster changed since the plan was made';
  const parts = [
    ...Object.keys(now)
      .filter((a) => before[a] !== undefined && before[a] !== now[a])
      .map((a) => `${a} changed (roles, slots, membership, config file or data)`),
    ...Object.keys(now).filter((a) => before[a] === undefined).map((a) => `${a} appeared`),
    ...Object.keys(before).filter((a) => now[a] === undefined).map((a) => `${a} is gone`),
  ];
  return parts.length > 0 ? parts.join(', ') : 'the cluster changed since the plan was made';
}

async function refuseStalePlan(plan: Plan, planFile: string, driver: HostDriver, allowBigKeys: boolean): Promise<void> {
  const live = await inspectCluster(plan.desired, { driver });
  if (fingerprint(live) !== plan.fingerprint) {
    throw new PlanError(`${planFile}: saved plan is stale: ${whatChanged(plan.nodeFingerprints, nodeFingerprints(live))}; run rcluster plan again`);
  }
  // Key sizes are not in the fingerprint (they change all the time); a key that grew too big to
  // move since the plan was reviewed is read again here, as cheaply as the plan read it.
  if (allowBigKeys || plan.allowBigKeys) return;
  const known = new Set((plan.bigKeys ?? []).map((k) => `${k.from} ${k.key}`));
  const grown = (await findBigKeys(plan, live, false)).bigKeys.filter((k) => !known.has(`${k.from} ${k.key}`));
  if (grown.length > 0) {
    throw new PlanError(`${planFile}: saved plan is stale: ${grown.length} key(s) too big to move safely appeared since it was made: ${grown.slice(0, 3).map(describeBigKey).join('; ')}; run rcluster plan again`);
  }
}

export async function statusCommand(opts: { file: string; json?: boolean }, io: Io): Promise<number> {
  const desired = await loadDesired(opts.file, io);
  await checkLocalFiles(desired);
  const live = await inspectCluster(desired);
  const status = clusterStatus(live);
  if (opts.json) io.out(JSON.stringify({ cluster: desired.name, ...status }, null, 2));
  else io.out(renderStatus(desired.name, status).trimEnd());
  return status.healthy ? EXIT_OK : EXIT_ERROR;
}

export async function destroyCommand(opts: { file: string; autoApprove?: boolean; json?: boolean }, io: Io): Promise<number> {
  const desired = await loadDesired(opts.file, io);
  if (desired.connection !== 'local') {
    throw new UsageError(
      `destroy supports connection: local only. This cluster uses connection: ${desired.connection}; ` +
        `rcluster will not stop nodes or delete data on other hosts in this version.`,
    );
  }
  await checkLocalFiles(desired);
  return withLocalLock(desired, () => destroyLocked(desired, opts, io));
}

async function destroyLocked(desired: DesiredCluster, opts: { autoApprove?: boolean; json?: boolean }, io: Io): Promise<number> {
  const plan = await planDestroy(desired);
  if (opts.json) io.out(JSON.stringify({ type: 'destroy_plan', ...plan }));
  else io.out(renderDestroy(desired, plan).trimEnd());
  if (plan.nodes.every((n) => !n.running && n.paths.length === 0)) return EXIT_OK;
  if (!opts.autoApprove) {
    const ok = await confirm(io);
    if (!ok) {
      io.err('Destroy cancelled.');
      return EXIT_ERROR;
    }
  }
  const started = Date.now();
  await destroyLocal(desired, plan, (line) => (opts.json ? io.out(JSON.stringify({ type: 'destroyed', what: line })) : io.out(line)));
  if (!opts.json) io.out(`\nDestroy complete in ${formatMs(Date.now() - started)}.`);
  return EXIT_OK;
}
