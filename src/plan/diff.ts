import { posix } from 'node:path';
import { HostError, PlanError } from '../errors.js';
import { renderNodeConf } from '../provision/nodeConf.js';
import { configDiff, needsRestart } from '../provision/redisConf.js';
import type { ClusterNodeEntry, LiveCluster, LiveNode, SlotRange } from '../live/types.js';
import type { DesiredCluster, DesiredNode } from '../spec/types.js';
import { fingerprint } from './fingerprint.js';
import { allocateRoles, type CurrentRoles, type Roles } from './roles.js';
import { pickAnchor } from '../live/anchor.js';
import { formatRanges } from '../live/parse.js';
import { slotList, splitSlots, toRanges, SLOT_COUNT } from './slots.js';
import type { ConfigChange, NodeRole, Plan, Step } from './types.js';

/**
 * What a node will look like once the provisioning steps have run: its live view, or the view
 * saved in its cluster config file, or a fresh node that knows only itself.
 */
interface NodeState {
  node: DesiredNode;
  /** What must happen on the node's host first: provisioning, a restart, or a live config change. */
  hostStep?: Step;
  id?: string;
  view: ClusterNodeEntry[];
  keys: number;
  /** A replica's master_link_status is up. */
  linkUp?: boolean;
  /** The view is the running node's; otherwise it was read from its saved cluster config file. */
  live: boolean;
}

/**
 * diff(desired, live) -> Plan. Pure: the only inputs are the spec and what inspection read.
 * Throws PlanError for what rcluster cannot do safely, before anything is touched.
 */
export function computePlan(desired: DesiredCluster, live: LiveCluster, now: Date = new Date()): Plan {
  const steps: Step[] = [];
  const warnings: string[] = [];
  const liveByAddress = new Map(live.nodes.map((n) => [n.address, n]));

  const withPassword = desired.nodes.find((n) => 'requirepass' in n.redis.config);
  if (withPassword) {
    throw new PlanError(
      `redis.config.requirepass: rcluster cannot log in to password-protected nodes yet (passwords from an environment variable come in a later version); remove it for now`,
    );
  }
  if (desired.connection === 'ssh' && !desired.nodes.some((n) => 'protected-mode' in n.redis.config)) {
    warnings.push(
      'the cluster has no password: rcluster sets protected-mode no so that replicas on other hosts can sync (bind stays on each node\'s own address); anyone who can reach those addresses can use the cluster',
    );
  }
  const states = desired.nodes.map((node) => nodeState(desired, node, liveByAddress.get(node.address)));
  // Provisioning runs in parallel; live changes next; restarts of running nodes last, one at a
  // time and replicas first, so that a shard never loses its master and replica together.
  const hostSteps = states.map((s) => (s.hostStep?.kind === 'restart_node' ? safeRestart(s.hostStep, s, states) : s.hostStep)).filter((h): h is Step => h !== undefined);
  const isReplica = (address: string) => states.find((s) => s.node.address === address)?.view.find((e) => e.myself)?.role === 'replica';
  steps.push(...hostSteps.filter((h) => h.kind === 'provision_node'), ...hostSteps.filter((h) => h.kind === 'set_config'));
  // Restarts come last, once every node has joined and every replica is attached: their
  // failovers swap roles the earlier steps were planned on, and each waits for the whole cluster.
  const restarts = hostSteps.filter((h) => h.kind === 'restart_node').sort((a, b) => Number(isReplica(b.node)) - Number(isReplica(a.node)));

  const resolve = addressResolver(states);
  const anchor = pickAnchor(states) as NodeState;
  const members = new Set(anchor.view.filter((e) => !e.handshake && !e.noaddr).map((e) => resolve(e, anchor)).filter((a): a is string => !!a));
  members.add(anchor.node.address);

  checkOpenSlots(states);

  // The layout a create from nothing gives; nodes alone with slots inside their share of it are
  // what an interrupted create left behind, and are finished rather than refused.
  const layout = freshLayout(desired);

  // Keys are only safe in a node that already serves them in this cluster; anywhere else they
  // would sit in slots the node does not own.
  const clusterServesSlots = anchor.view.some((e) => e.slots.length > 0);
  for (const s of states) {
    if (s.keys > 0 && !(clusterServesSlots && members.has(s.node.address))) {
      throw new PlanError(`${s.node.address} holds ${s.keys} key(s); rcluster will not join a node that has data. Move or flush its keys first.`);
    }
  }
  const foreign = anchor.view.filter((e) => !e.handshake && !resolve(e, anchor));
  if (!clusterServesSlots && foreign.length > 0) throw anotherCluster(anchor.node.address, foreign);

  // Membership: fresh nodes are met; a node that already knows others must already be ours.
  const toMeet: NodeState[] = [];
  for (const s of states) {
    if (members.has(s.node.address)) continue;
    const others = s.view.filter((e) => !e.myself && !e.handshake);
    const mySlots = s.view.find((e) => e.myself)?.slots ?? [];
    if (others.some((e) => resolve(e, s) === anchor.node.address)) continue; // gossip still spreading
    const strangers = others.filter((e) => !resolve(e, s));
    if (strangers.length > 0) throw anotherCluster(s.node.address, strangers);
    // Knowing only nodes of the spec, but not the anchor yet: a join that is still spreading
    // (an apply cut off after MEET). Meeting it again is harmless.
    if (mySlots.length > 0 && !fitsLayout(layout, s.node.address, mySlots)) {
      throw new PlanError(
        `${s.node.address} is not part of this cluster yet but owns slots ${formatRanges(mySlots)}, which the spec's layout does not give it; ` +
          `rcluster will not join it. Reset that node (CLUSTER RESET HARD) if it should join this cluster.`,
      );
    }
    toMeet.push(s);
  }
  // Slots as claimed: the anchor's view, plus what nodes not yet met claim for themselves.
  const claims = new Map<string, SlotRange[]>();
  for (const e of anchor.view) {
    if (e.slots.length === 0 || e.role !== 'master') continue;
    const who = resolve(e, anchor);
    if (!who) throw new PlanError(`node ${e.id.slice(0, 8)} (${e.host}:${e.port}) owns slots but is not in the spec; removing masters comes in a later version of rcluster`);
    claims.set(who, e.slots);
  }
  for (const s of toMeet) {
    const mySlots = s.view.find((e) => e.myself)?.slots ?? [];
    if (mySlots.length > 0) claims.set(s.node.address, mySlots);
  }

  const creating =
    states.every((s) => s.view.every((e) => e.myself && e.configEpoch === 0)) && [...claims].every(([a, ranges]) => fitsLayout(layout, a, ranges));
  const provisioning = steps.some((h) => h.kind === 'provision_node');

  // Distinct epochs up front spare the cluster a round of epoch-collision resolution.
  const epochs: Step[] = creating ? states.map((s, i) => ({ kind: 'set_config_epoch', node: s.node.address, epoch: i + 1 })) : [];

  // A new cluster is met as a full mesh (small, and it joins in one handshake round instead of
  // several gossip rounds); a node joining a running cluster is met by the anchor alone.
  const meshLimit = 32;
  const meets: Step[] = toMeet.map((s, i) => ({
    kind: 'meet_node',
    node: s.node.address,
    via: creating && states.length <= meshLimit ? [anchor.node.address, ...toMeet.slice(0, i).map((m) => m.node.address)] : [anchor.node.address],
  }));
  const joinPending = toMeet.length > 0 || states.some((s) => s !== anchor && members.has(s.node.address) && !knowsAll(s, states, resolve));
  const all = desired.nodes.map((n) => n.address);
  const waitJoin: Step[] = joinPending || provisioning ? [{ kind: 'wait_join', nodes: all }] : [];

  const owners = new Map<number, string>();
  for (const [who, ranges] of claims) for (const r of ranges) for (let slot = r.start; slot <= r.end; slot++) owners.set(slot, who);
  const { roles, targets } = chooseRoles(desired, states, anchor, claims, owners.size, layout);
  const addSlots: Step[] = [];
  roles.masters.forEach((m, i) => {
    const missing = slotList(targets[i] ?? []).filter((slot) => owners.get(slot) === undefined);
    if (missing.length > 0) addSlots.push({ kind: 'add_slots', node: m, ranges: toRanges(missing) });
  });
  const waitOk: Step[] = addSlots.length > 0 || joinPending || provisioning ? [{ kind: 'wait_cluster_ok', nodes: all }] : [];

  if (creating) {
    // As redis-cli create does: slots first, while every master is alone, so that the MEET
    // handshakes carry them and the cluster agrees as soon as it has joined.
    steps.push(...addSlots, ...epochs, ...meets, ...waitJoin, ...waitOk);
  } else {
    steps.push(...meets, ...waitJoin, ...addSlots, ...waitOk);
  }

  const replicate: Step[] = [];
  const stateOf = new Map(states.map((s) => [s.node.address, s]));
  for (const [replica, master] of roles.replicaOf) {
    // A node's own view is the truth about its role; other nodes learn it by gossip, later.
    const r = stateOf.get(replica);
    const me = r ? selfOf(r, anchor) : undefined;
    const masterId = stateOf.get(master)?.id;
    if (me && me.role === 'replica' && masterId && me.masterId === masterId) continue;
    replicate.push({ kind: 'replicate', node: replica, master });
  }
  steps.push(...replicate);
  if (replicate.length > 0) steps.push({ kind: 'wait_replication', replicas: replicate.map((s) => (s as { node: string }).node) });
  steps.push(...restarts);

  for (const e of anchor.view) {
    if (!resolve(e, anchor) && !e.handshake) {
      warnings.push(`node ${e.id.slice(0, 8)} (${e.host}:${e.port}) is in the cluster but not in the spec; rcluster leaves it alone (removing nodes comes in a later version)`);
    }
  }

  const roleList: NodeRole[] = [
    ...roles.masters.map((m, i): NodeRole => ({ node: m, role: 'master', slots: targets[i] ?? [] })),
    ...[...roles.replicaOf].map(([node, master]): NodeRole => ({ node, role: 'replica', master })),
  ];
  return { formatVersion: 1, desired, fingerprint: fingerprint(live), roles: roleList, steps, warnings, createdAt: now.toISOString() };
}

function nodeState(desired: DesiredCluster, node: DesiredNode, live: LiveNode | undefined): NodeState {
  if (live?.unresponsive) {
    throw new PlanError(`${node.address} answers but does not report its state (${live.error}); rcluster will not plan around a node it cannot read. Try again when it responds.`);
  }
  if (desired.connection === 'local' && live?.reachable && live.runningConfigFile !== undefined && posix.normalize(live.runningConfigFile) !== posix.normalize(node.redis.configFile)) {
    throw new PlanError(
      `${node.address} is a redis-server started from ${live.runningConfigFile || 'no config file'}, not from ${node.redis.configFile}; rcluster did not start it and will not take it over. Stop it or choose another port.`,
    );
  }
  const unknown = live?.unknownDirectives ?? [];
  if (unknown.length > 0) {
    throw new PlanError(
      `${node.address} (redis ${live?.redisVersion ?? '?'}) does not know redis.config ${unknown.map((d) => `"${d}"`).join(', ')}: CONFIG GET returns nothing. A typo would stop the node at its next start.`,
    );
  }
  const base = { node, keys: live?.keys ?? 0, linkUp: live?.replication?.masterLinkStatus === 'up', live: Boolean(live?.reachable && live.clusterEnabled) };
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
      `${node.address} answers but is not a cluster-enabled node that rcluster started; stop that redis-server or choose another port`,
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
function safeRestart(step: Extract<Step, { kind: 'restart_node' }>, s: NodeState, states: NodeState[]): Step {
  const me = s.view.find((e) => e.myself);
  if (!me || me.role !== 'master' || me.slots.length === 0) return step;
  const heir = states.find((r) => {
    const self = r.view.find((e) => e.myself);
    return self?.role === 'replica' && self.masterId === me.id && r.linkUp === true;
  });
  return heir ? { ...step, failoverTo: heir.node.address } : { ...step, saveFirst: true };
}

function anotherCluster(address: string, strangers: ClusterNodeEntry[]): PlanError {
  return new PlanError(
    `${address} already belongs to another cluster (it knows ${strangers.map((e) => `${e.host}:${e.port}`).join(', ')}, not in the spec); ` +
      `rcluster will not merge clusters. Reset that node (CLUSTER RESET HARD) if it should join this one.`,
  );
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
  const result = renderNodeConf(node, { connection: desired.connection, replicasPerMaster: desired.replicasPerMaster, redisVersion: facts.redisVersion }, facts.configText);
  if (result.changed.length > 0 && !facts.configWritable) {
    throw new HostError(node.host, `write ${facts.configFile}`, 'not writable by the SSH user (rcluster writes a temp file beside it and renames it)');
  }
  return { path: facts.configFile, changed: result.changed, diff: result.changed.length > 0 ? configDiff(facts.configFile, facts.configText, result.text) : '' };
}

/**
 * What a node is, or will be once started. A running node says it itself. A stopped one comes
 * back with its saved state and then follows the cluster's newer one: a master whose slots a
 * replica took over while it was down rejoins as that replica's replica.
 */
function selfOf(s: NodeState, anchor: NodeState): ClusterNodeEntry | undefined {
  const me = s.view.find((e) => e.myself);
  if (s.live || !anchor.live || !me) return me;
  const seen = anchor.view.find((e) => e.id === me.id);
  if (!seen) return me;
  if (seen.role === 'master' && seen.slots.length === 0 && me.slots.length > 0) {
    const owns = new Set(slotList(me.slots));
    const heir = anchor.view.find((e) => e.id !== me.id && e.role === 'master' && e.slots.some((r) => owns.has(r.start) || owns.has(r.end)));
    if (heir) return { ...me, role: 'replica', masterId: heir.id, slots: [] };
  }
  return { ...me, role: seen.role, masterId: seen.masterId, slots: seen.slots };
}

/** Maps a CLUSTER NODES entry, seen from `from`, to the spec address of that node (or undefined). */
function addressResolver(states: NodeState[]) {
  const byId = new Map<string, string>();
  for (const s of states) if (s.id) byId.set(s.id, s.node.address);
  const known = new Set(states.map((s) => s.node.address));
  return (e: ClusterNodeEntry, from: NodeState): string | undefined => {
    if (e.myself) return from.node.address;
    const byIdHit = byId.get(e.id);
    if (byIdHit) return byIdHit;
    const a = `${e.host}:${e.port}`;
    return known.has(a) ? a : undefined;
  };
}

function knowsAll(s: NodeState, states: NodeState[], resolve: ReturnType<typeof addressResolver>): boolean {
  const seen = new Set(s.view.filter((e) => !e.handshake).map((e) => resolve(e, s)));
  return states.every((o) => seen.has(o.node.address));
}

function checkOpenSlots(states: NodeState[]): void {
  for (const s of states) {
    const me = s.view.find((e) => e.myself);
    const open = [...(me?.migrating ?? []).map((m) => `${m.slot} (migrating)`), ...(me?.importing ?? []).map((m) => `${m.slot} (importing)`)];
    if (open.length > 0) {
      throw new PlanError(
        `${s.node.address} has open slots ${open.slice(0, 5).join(', ')}${open.length > 5 ? ', ...' : ''}: an interrupted slot migration. ` +
          `Finishing migrations comes in a later version of rcluster; until then finish it with redis-cli --cluster fix.`,
      );
    }
  }
}

/** The layout of a create from nothing: redis-cli create's roles and contiguous slot ranges. */
function freshLayout(desired: DesiredCluster): { roles: Roles; targets: SlotRange[][] } {
  const nodes = desired.nodes.map((n) => ({ address: n.address, host: n.host }));
  const weight = new Map(desired.nodes.map((n) => [n.address, n.weight]));
  const roles = allocateRoles(nodes, desired.masters, undefined);
  return { roles, targets: splitSlots(roles.masters.map((m) => weight.get(m) ?? 1)).map((r) => [r]) };
}

/** Whether `ranges` lie inside the share the fresh layout gives `address` as a master. */
function fitsLayout(layout: { roles: Roles; targets: SlotRange[][] }, address: string, ranges: SlotRange[]): boolean {
  const t = layout.targets[layout.roles.masters.indexOf(address)]?.[0];
  return t !== undefined && ranges.every((r) => r.start >= t.start && r.end <= t.end);
}

/**
 * Least change: a running cluster keeps its masters and replica links; an empty one gets
 * redis-cli create's layout. A create interrupted half-way is finished, not started again.
 */
function chooseRoles(
  desired: DesiredCluster,
  states: NodeState[],
  anchor: NodeState,
  claims: Map<string, SlotRange[]>,
  covered: number,
  layout: { roles: Roles; targets: SlotRange[][] },
): { roles: Roles; targets: SlotRange[][] } {
  if (claims.size === 0) return layout;
  const fits = [...claims].every(([m, ranges]) => fitsLayout(layout, m, ranges));
  if (covered < SLOT_COUNT && fits) return layout;
  if (covered < SLOT_COUNT) {
    throw new PlanError(
      `${SLOT_COUNT - covered} slot(s) have no owner and the slot layout does not match the spec's; ` +
        `rebalancing comes in a later version of rcluster (see rcluster status)`,
    );
  }
  if (claims.size !== desired.masters) {
    throw new PlanError(
      `the cluster has ${claims.size} masters and the spec asks for ${desired.masters}; ` +
        `changing the number of masters comes in a later version of rcluster`,
    );
  }
  const current: CurrentRoles = {
    // Masters in slot order, so that display lines up with the live layout.
    masters: [...claims].sort((a, b) => (a[1][0]?.start ?? 0) - (b[1][0]?.start ?? 0)).map(([m]) => m),
    replicaOf: new Map(),
  };
  const resolveId = new Map(states.filter((s) => s.id).map((s) => [s.id as string, s.node.address]));
  for (const e of anchor.view) if (!resolveId.has(e.id) && e.host) resolveId.set(e.id, `${e.host}:${e.port}`);
  for (const s of states) {
    const me = selfOf(s, anchor);
    const master = me?.masterId ? resolveId.get(me.masterId) : undefined;
    if (me?.role === 'replica' && master) current.replicaOf.set(s.node.address, master);
  }
  const nodes = desired.nodes.map((n) => ({ address: n.address, host: n.host }));
  const roles = allocateRoles(nodes, desired.masters, current);
  return { roles, targets: roles.masters.map((m) => claims.get(m) ?? []) };
}
