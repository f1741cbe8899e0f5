import { posix } from 'node:path';
import { HostError, PlanError } from '../errors.js';
import { renderNodeConf } from '../provision/nodeConf.js';
import { configDiff, needsRestart } from '../provision/redisConf.js';
import type { ClusterNodeEntry, LiveNode } from '../live/types.js';
import { serverLabel } from '../live/parse.js';
import { credentials, describePassword, maskConfigText, SECRET_DIRECTIVES, type Credentials } from '../live/auth.js';
import { serverCommand, type DesiredCluster, type DesiredNode } from '../spec/types.js';
import type { ConfigChange, Step } from './types.js';

/**
 * What a node will look like once the provisioning steps have run: its live view, or the view
 * saved in its cluster config file, or a fresh node that knows only itself.
 */
export interface NodeState {
  node: DesiredNode;
  /** What must happen on the node's host first: provisioning, a restart, or a live config change. */
  hostStep?: Step;
  id?: string;
  view: ClusterNodeEntry[];
  keys: number;
  /** Keys per slot the node owns (masters with keys). */
  slotKeys?: Map<number, number>;
  /** It reports cluster_state:ok (a running node). */
  stateOk?: boolean;
  /** A replica's master_link_status is up. */
  linkUp?: boolean;
  /** The view is the running node's; otherwise it was read from its saved cluster config file. */
  live: boolean;
  /**
   * Why the node cannot be reached at all (its host is down, or with connection none the node
   * does not answer). A member of the cluster that is down gets no step: the plan shows it and
   * goes on without it. Anything else that is down cannot be planned (`downError`).
   */
  down?: string;
  /** What to report when a down node turns out not to be a member of the cluster. */
  downError?: string;
  /** Its host is unreachable over SSH although the node answers: its config file was not read. */
  hostDown?: string;
}

/** A spec node as the plan sees it: its live state, and what its host needs first. */
export function nodeState(desired: DesiredCluster, node: DesiredNode, live: LiveNode | undefined): NodeState {
  if (live?.hostDown && !live.reachable) {
    return { node, view: [], keys: 0, live: false, down: `host down (${live.hostDown.replace(`${node.host}: `, '')})`, downError: live.hostDown };
  }
  if (desired.connection === 'none' && live && !live.reachable) {
    const why = live.error ?? 'it does not answer';
    return {
      node,
      view: [],
      keys: 0,
      live: false,
      down: `does not answer (${why})`,
      downError: `${node.address}: it does not answer (${why}); with connection: none rcluster manages topology only and cannot start or configure nodes`,
    };
  }
  if (live?.unresponsive && !live.reachable) {
    throw new PlanError(
      `${node.address} does not answer: ${live.error} (a stopped node refuses the connection at once). It may be busy, or its host unreachable; ` +
        `rcluster will not restart or replace a node it cannot read. Try again when it answers.`,
    );
  }
  if (live?.unresponsive) {
    throw new PlanError(`${node.address} answers but does not report its state (${live.error}); rcluster will not plan around a node it cannot read. Try again when it responds.`);
  }
  if (desired.connection === 'local' && live?.reachable && live.runningConfigFile !== undefined && posix.normalize(live.runningConfigFile) !== posix.normalize(node.redis.configFile)) {
    throw new PlanError(
      `${node.address} is a ${live.server?.name ?? 'redis'}-server started from ${live.runningConfigFile || 'no config file'}, not from ${node.redis.configFile}; rcluster did not start it and will not take it over. Stop it or choose another port.`,
    );
  }
  // Local nodes run what the spec says. Switching servers under a running node is a restart that
  // cannot always be undone (Redis does not load what Valkey 8+ saves), so it is not planned.
  const want = node.redis.server ?? 'redis';
  if (desired.connection === 'local' && live?.reachable && live.server && live.server.name !== want) {
    throw new PlanError(
      `${node.address} runs ${serverLabel(live.server)}, but the spec says redis.server: ${want}; rcluster does not switch a running node to another server. ` +
        `Set redis.server: ${live.server.name} again, or stop the node first: apply then starts it with ${serverCommand(node.redis)} from its files (Valkey loads Redis's RDB; Redis does not load Valkey 8+'s).`,
    );
  }
  const unknown = live?.unknownDirectives ?? [];
  if (unknown.length > 0) {
    throw new PlanError(
      `${node.address} (${serverLabel(live?.server)}) does not know redis.config ${unknown.map((d) => `"${d}"`).join(', ')}: CONFIG GET returns nothing. A typo would stop the node at its next start.`,
    );
  }
  const base = {
    node,
    keys: live?.keys ?? 0,
    slotKeys: live?.slotKeys,
    stateOk: live?.clusterInfo['cluster_state'] === 'ok',
    linkUp: live?.replication?.masterLinkStatus === 'up',
    live: Boolean(live?.reachable && live.clusterEnabled),
    ...(live?.hostDown ? { hostDown: live.hostDown } : {}),
  };
  if (live?.hostDown) {
    // The node answers but its host does not: it takes part in topology steps, and its config
    // file waits (the plan warns). Anything that needs the host cannot be planned.
    if (!base.live) throw new PlanError(live.hostDown);
    return { ...base, id: live.id, view: live.view };
  }
  const config = configChange(desired, node, live);
  if (live?.reachable && live.clusterEnabled) {
    refuseDataMove(node, config, 'a running cluster node');
    const pending = pendingRestart(node, live, config);
    if ((!config || config.changed.length === 0) && pending.length === 0) return { ...base, id: live.id, view: live.view };
    const restartFor = [...(config?.changed ?? []).filter((c) => needsRestart(c.directive)).map((c) => c.directive), ...pending.map((p) => `${p} (in the file, not yet running)`)];
    if (!config) throw new PlanError(`${node.address}: ${pending.join(', ')} must be restarted to take effect, and connection: ${desired.connection} cannot restart nodes`);
    const hostStep: Step =
      restartFor.length > 0
        ? { kind: 'restart_node', node: node.address, reason: `${restartFor.join(', ')} change only with a restart`, config, ...serviceOf(desired, node) }
        : { kind: 'set_config', node: node.address, config };
    return { ...base, id: live.id, view: live.view, hostStep };
  }
  if (desired.connection === 'none') {
    const why = live?.reachable ? 'it answers but cluster-enabled is off' : `it does not answer (${live?.error ?? 'not inspected'})`;
    throw new PlanError(`${node.address}: ${why}; with connection: none rcluster manages topology only and cannot start or configure nodes`);
  }
  if (live?.reachable && desired.connection === 'local') {
    throw new PlanError(
      `${node.address} answers but is not a cluster-enabled node that rcluster started; stop that ${live.server?.name ?? 'redis'}-server or choose another port`,
    );
  }
  const facts = live?.facts;
  if (desired.connection === 'ssh' && facts && !facts.serviceExists) {
    throw new HostError(node.host, 'service', `${node.redis.service ?? '(no service)'} is missing or not executable; set redis.service to the command that starts and stops this node`);
  }
  // A standalone redis with data would come back as a cluster node holding keys of slots it does
  // not own: refuse before touching it.
  const onHost = facts?.onHost;
  if (onHost && onHost.keys === undefined) {
    throw new PlanError(`${onHost.address}: the redis of ${facts?.configFile} answers on its host but not to DBSIZE (${onHost.reply}); rcluster will not restart a server whose keys it cannot count`);
  }
  const standalone = [live?.reachable ? { address: node.address, keys: live.keys } : facts?.standalone, onHost?.keys !== undefined ? { address: onHost.address, keys: onHost.keys } : undefined]
    .filter((x): x is { address: string; keys: number } => x !== undefined)
    .sort((a, b) => b.keys - a.keys)[0];
  if (standalone && standalone.keys > 0) {
    throw new PlanError(
      `${standalone.address} is a standalone redis holding ${standalone.keys} key(s); turning it into cluster node ${node.address} would strand them. Move or flush its keys first.`,
    );
  }
  const saved = live?.onDisk?.view ?? [];
  if (saved.length > 0) refuseDataMove(node, config, `a node with saved cluster state (${live?.onDisk?.path})`);
  const me = saved.find((e) => e.myself);
  let reason = saved.length > 0 ? `not running; restarts with the state in ${live?.onDisk?.path}` : 'not running';
  if (live?.reachable) reason = 'answers with cluster-enabled off';
  else if (facts?.standalone) reason = `replaces the standalone redis on ${facts.standalone.address}`;
  const hostStep: Step = {
    kind: 'provision_node',
    node: node.address,
    reason,
    ...(desired.connection === 'ssh' && config ? { config, ...serviceOf(desired, node) } : {}),
    ...(facts?.standalone && !live?.reachable ? { replaces: facts.standalone.address } : {}),
  };
  return { ...base, hostStep, id: me?.id, view: saved };
}

/**
 * A master restarts only after a synced replica has taken its slots over (CLUSTER FAILOVER), so
 * that its shard stays up and no write is lost; one without such a replica has its writes paused
 * and is saved first.
 */
export function safeRestart(step: Extract<Step, { kind: 'restart_node' }>, s: NodeState, states: NodeState[]): Step {
  const me = s.view.find((e) => e.myself);
  if (!me || me.role !== 'master' || me.slots.length === 0) return step;
  const heir = states.find((r) => {
    const self = r.view.find((e) => e.myself);
    return self?.role === 'replica' && self.masterId === me.id && r.linkUp === true;
  });
  return heir ? { ...step, failoverTo: heir.node.address } : { ...step, saveFirst: true };
}

/**
 * Restart-only directives whose value the config file already has but the running process does
 * not: an apply cut off between writing the file and restarting. Only values that compare
 * plainly (numbers, yes/no, single words) are judged, so that unit spellings never look like drift.
 */
function pendingRestart(node: DesiredNode, live: LiveNode, config: ConfigChange | undefined): string[] {
  const running = live.runningConfig ?? {};
  const inFile = new Set((config?.changed ?? []).map((c) => c.directive.toLowerCase()));
  return Object.entries(node.redis.config)
    .filter(([directive, value]) => {
      if (inFile.has(directive.toLowerCase())) return false; // the file changes anyway
      const now = running[directive.toLowerCase()];
      if (now === undefined || !needsRestart(directive) || !/^[A-Za-z0-9_.-]+$/.test(value) || /^\d+[a-z]+$/i.test(value)) return false;
      return now.toLowerCase() !== value.toLowerCase();
    })
    .map(([directive]) => directive);
}

/** Where a node keeps its data and identity: changing one would start it empty, or as a new node. */
const DATA_LOCATION = new Set(['dir', 'dbfilename', 'cluster-config-file', 'appendfilename', 'appenddirname']);

function refuseDataMove(node: DesiredNode, config: ConfigChange | undefined, what: string): void {
  const moved = (config?.changed ?? []).filter((c) => DATA_LOCATION.has(c.directive.toLowerCase()));
  if (moved.length === 0) return;
  throw new PlanError(
    `${node.address}: changing ${moved.map((c) => `${c.directive} (${c.from ?? 'default'} -> ${c.to})`).join(', ')} on ${what} would restart it without its data or its cluster identity; ` +
      `rcluster does not move data files. Keep the current value in the spec, or move the files by hand first.`,
  );
}

function serviceOf(desired: DesiredCluster, node: DesiredNode): { service?: string } {
  return desired.connection === 'ssh' && node.redis.service ? { service: node.redis.service } : {};
}

/** The edit rcluster would make to the node's config file, from what the host holds now. */
function configChange(desired: DesiredCluster, node: DesiredNode, live: LiveNode | undefined): ConfigChange | undefined {
  const facts = live?.facts;
  if (!facts) return undefined;
  if (facts.configText === null) {
    // A local node's file is rcluster's own and is written when it starts.
    if (desired.connection === 'local') return undefined;
    throw new HostError(node.host, `read ${facts.configFile}`, 'no such file; redis.configFile must name the node\'s existing redis.conf');
  }
  const c = credentials();
  const ctx = { connection: desired.connection, replicasPerMaster: desired.replicasPerMaster, redisVersion: facts.redisVersion, ...(c ? { password: c.password } : {}) };
  const result = renderNodeConf(node, ctx, facts.configText);
  const changed: ConfigChange['changed'] = result.changed.map((ch) => (SECRET_DIRECTIVES.has(ch.directive.toLowerCase()) ? maskChange(ch, c) : ch));
  if (c && live?.auth) changed.push(...authDrift(live.auth, c, changed));
  changed.push(...nodeTimeoutDrift(node, live, changed));
  // Live-only changes (the file already says it) need no write.
  if (result.changed.length > 0 && !facts.configWritable) {
    throw new HostError(node.host, `write ${facts.configFile}`, 'not writable by the SSH user (rcluster writes a temp file beside it and renames it)');
  }
  // The diff shows what each password is, never the password.
  const diff = result.changed.length > 0 ? configDiff(facts.configFile, maskConfigText(facts.configText), maskConfigText(result.text)) : '';
  return { path: facts.configFile, changed, diff };
}

function maskChange(ch: { directive: string; from: string | null; to: string }, c: Credentials | undefined): ConfigChange['changed'][number] {
  const to = ch.directive.toLowerCase() === 'requirepass' && c ? acceptedText(c) : (describePassword(ch.to) ?? '');
  return { directive: ch.directive, from: describePassword(ch.from), to, secret: true };
}

/** What the nodes are to accept: the spec's password, and while rotating the previous one. */
function acceptedText(c: Credentials): string {
  return c.previous !== undefined ? `(the password from ${c.source}; the previous one, from ${c.previousSource}, is accepted too)` : `(the password from ${c.source})`;
}

/**
 * A running node whose cluster-node-timeout is not the spec's while its file says the right thing:
 * set by hand, or an apply cut off while the node was joining (it runs with a short one then).
 */
function nodeTimeoutDrift(node: DesiredNode, live: LiveNode | undefined, inFile: ConfigChange['changed']): ConfigChange['changed'] {
  const running = live?.reachable && live.clusterEnabled ? live.runningConfig?.['cluster-node-timeout'] : undefined;
  const wanted = String(node.redis.nodeTimeout);
  if (running === undefined || running === wanted || inFile.some((ch) => ch.directive.toLowerCase() === 'cluster-node-timeout')) return [];
  return [{ directive: 'cluster-node-timeout', from: running, to: wanted }];
}

/**
 * A running node whose file already says the right thing may still accept other passwords (a
 * rotation whose previous password has just left the spec) or give its master another one: the
 * live change the plan makes then, with the file left as it is.
 */
function authDrift(auth: NonNullable<LiveNode['auth']>, c: Credentials, inFile: ConfigChange['changed']): ConfigChange['changed'] {
  const out: ConfigChange['changed'] = [];
  const has = (d: string) => inFile.some((ch) => ch.directive === d);
  if (!auth.passwordsOk && !has('requirepass')) {
    const a = auth.accepts;
    const now = [
      ...(a.password ? [`the password from ${c.source}`] : []),
      ...(a.previous ? [`the previous one, from ${c.previousSource}`] : []),
      ...(a.others > 0 ? [`${a.others} other password(s)`] : []),
    ];
    const from = a.nopass ? '(any password: nopass)' : now.length > 0 ? `(accepts ${now.join(' and ')})` : null;
    out.push({ directive: 'requirepass', from, to: acceptedText(c), secret: true });
  }
  if (!auth.masterauthOk && !has('masterauth')) out.push({ directive: 'masterauth', from: '(another password, or none)', to: `(the password from ${c.source})`, secret: true });
  return out;
}
