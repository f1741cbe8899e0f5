import { PlanError } from '../errors.js';
import { pickAnchor } from '../live/anchor.js';
import { countSlots, formatRanges } from '../live/parse.js';
import type { ClusterNodeEntry, LiveCluster, SlotRange } from '../live/types.js';
import type { DesiredCluster } from '../spec/types.js';
import { unlistedNode } from '../spec/normalize.js';
import { splitAddress } from '../live/connect.js';
import { fingerprint, nodeFingerprints } from './fingerprint.js';
import { addressResolver, knowsAll, membership, type LeavingNode } from './membership.js';
import { nodeState, safeRestart, type NodeState } from './nodeState.js';
import { planShards } from './shards.js';
import { SLOT_COUNT, slotList, toRanges } from './slots.js';
import { solveSlots } from './solver.js';
import { migrationStrategy } from './strategy.js';
import { CLIENTS_LEAVE_MS, JOIN_NODE_TIMEOUT_MS, type DownNode, type NodeRole, type Plan, type Step } from './types.js';

/**
 * diff(desired, live) -> Plan. Pure: the only inputs are the spec and what inspection read.
 * Throws PlanError for what rcluster cannot do safely, before anything is touched.
 *
 * The stages, each in its own file: node states (nodeState.ts: what each host needs first),
 * membership (membership.ts: who joins, who leaves, which slots are half-moved), roles by least
 * change (shards.ts), slot targets and the fewest moves (solver.ts); this file orders the steps.
 */
export interface PlanOptions {
  /**
   * --allow-reset: a spec node that holds keys or remembers another cluster is wiped (FLUSHALL,
   * CLUSTER RESET HARD) and joins as a new node, instead of being refused.
   */
  allowReset?: boolean;
}

export function computePlan(desired: DesiredCluster, live: LiveCluster, now: Date = new Date(), opts: PlanOptions = {}): Plan {
  const steps: Step[] = [];
  const warnings: string[] = [];
  const liveByAddress = new Map(live.nodes.map((n) => [n.address, n]));

  if (desired.connection === 'ssh' && !desired.auth && !desired.nodes.some((n) => 'protected-mode' in n.redis.config)) {
    warnings.push(
      'the cluster has no password: rcluster sets protected-mode no so that replicas on other hosts can sync (bind stays on each node\'s own address); anyone who can reach those addresses can use the cluster. Set redis.passwordEnv (or passwordFile) to give it one',
    );
  }
  warnings.push(...passwordWarnings(desired, live));
  const states = desired.nodes.map((node) => nodeState(desired, node, liveByAddress.get(node.address)));
  if (desired.connection === 'none') states.forEach((s) => (s.hostStep ??= joinTimeoutLeft(s.node.address, live)));
  // Provisioning runs in parallel; live changes next; restarts of running nodes last, one at a
  // time and replicas first, so that a shard never loses its master and replica together.
  const hostSteps = states.map((s) => (s.hostStep?.kind === 'restart_node' ? safeRestart(s.hostStep, s, states) : s.hostStep)).filter((h): h is Step => h !== undefined);
  const isReplica = (address: string) => states.find((s) => s.node.address === address)?.view.find((e) => e.myself)?.role === 'replica';
  steps.push(...hostSteps.filter((h) => h.kind === 'provision_node'), ...hostSteps.filter((h) => h.kind === 'set_config'));
  // Restarts come last, once every node has joined and every replica is attached: their
  // failovers swap roles the earlier steps were planned on, and each waits for the whole cluster.
  const restarts = hostSteps.filter((h) => h.kind === 'restart_node').sort((a, b) => Number(isReplica(b.node)) - Number(isReplica(a.node)));

  const resolve = addressResolver(states);
  const up = states.filter((s) => !s.down);
  const anchor = pickAnchor(up) as NodeState | undefined;
  if (!anchor) throw new PlanError(states[0]?.downError ?? 'no node of the spec answers');
  const down = downNodes(states, anchor, resolve);
  for (const s of up) if (s.hostDown) warnings.push(`${s.node.address} answers, but its host does not (${s.hostDown}): its config file is not checked this time`);
  const listed = new Set(desired.nodes.map((n) => n.address));
  const extras = live.nodes.filter((n) => !listed.has(n.address));
  const resets = opts.allowReset ? wipeStale(states, anchor, resolve) : [];
  steps.push(...resets);
  const { members, toMeet, leaving, open } = membership(states, anchor, resolve, extras);

  // Keys are only safe in a node that already serves them in this cluster; anywhere else they
  // would sit in slots the node does not own.
  const clusterServesSlots = anchor.view.some((e) => e.slots.length > 0);
  for (const s of states) {
    if (s.keys > 0 && !(clusterServesSlots && members.has(s.node.address))) {
      throw new PlanError(
        `${s.node.address} holds ${s.keys} key(s); rcluster will not join a node that has data. Move or flush its keys first, or run with --allow-reset to wipe it.`,
      );
    }
  }

  // Who owns which slot: the anchor's view, what nodes claim for themselves, and
  // half-moved slots counted with the node that was importing them (they are finished first).
  const leavingById = new Map(leaving.map((l) => [l.id, l]));
  const addressOf = (e: ClusterNodeEntry): string | undefined => resolve(e, anchor) ?? leavingById.get(e.id)?.address;
  const owner = new Map<number, string>();
  const ownerEpoch = new Map<number, number>();
  for (const e of anchor.view) {
    if (e.role !== 'master') continue;
    const who = addressOf(e);
    if (who) {
      for (const slot of slotList(e.slots)) {
        owner.set(slot, who);
        ownerEpoch.set(slot, e.configEpoch);
      }
    }
  }
  // A node's own view is the truth about what it claims; the anchor may not have heard yet
  // (a create cut off after MEET). Slots the anchor sees served stay as it sees them, unless a
  // running master claims them with a newer config epoch than the anchor knows for their owner:
  // a failover that has just happened (an apply killed right after CLUSTER FAILOVER), whose
  // promoted replica bumped its epoch and took the slots before gossip told the anchor. Redis
  // settles it the same way; planned from the anchor's stale view, the old master (a replica by
  // now) was drained of slots it no longer had, and apply failed on it.
  for (const s of states) {
    const me = s.view.find((e) => e.myself);
    const newer = s.live && me?.role === 'master';
    for (const slot of slotList(me?.slots ?? [])) {
      if (!owner.has(slot) || (newer && (me?.configEpoch ?? 0) > (ownerEpoch.get(slot) ?? Infinity))) owner.set(slot, s.node.address);
    }
  }
  for (const o of open) owner.set(o.slot, o.to);
  // Server-side migrations still running (an apply cut off, or one started by hand): their slots
  // count as the target's, as half-moved ones do, and apply first waits for them to end (a job
  // that fails fails that wait: the plan was made for its success). Starting another job for
  // them meanwhile would be refused ("I am already migrating slot …"), and classic SETSLOT on
  // them would race the server's own hand-over.
  const inFlight: Extract<Step, { kind: 'wait_slot_migrations' }>['jobs'] = [];
  for (const n of live.nodes) {
    for (const j of n.slotMigrations ?? []) {
      const e = anchor.view.find((x) => x.id === j.targetNode);
      const target = e ? addressOf(e) : undefined;
      if (!target) throw new PlanError(`${n.address} is moving slots ${j.slotRanges} to node ${j.targetNode.slice(0, 8)} (server-side, job ${j.name.slice(0, 8)}: ${j.state}), which is not part of the cluster; cancel it (CLUSTER CANCELSLOTMIGRATIONS on ${n.address}) or let it end, then plan again`);
      inFlight.push({ source: n.address, target, ranges: j.ranges, name: j.name });
      for (const slot of slotList(j.ranges)) owner.set(slot, target);
      warnings.push(`a server-side migration is in progress (slots ${j.slotRanges} ${n.address} -> ${target}, ${j.state}); apply waits for it to end before anything else`);
    }
  }
  const claims = new Map<string, number[]>();
  for (const [slot, who] of owner) {
    const mine = claims.get(who);
    if (mine) mine.push(slot);
    else claims.set(who, [slot]);
  }
  const claimRanges = new Map([...claims].map(([who, slots]) => [who, toRanges(slots)]));

  // A running cluster (every slot served); a create cut off half-way has fewer masters so far.
  if (owner.size === SLOT_COUNT && !desired.mastersExplicit && claims.size !== desired.masters) {
    const live = claims.size;
    const change = desired.masters - live;
    const add = `set masters: ${desired.masters} to ${change > 0 ? 'add' : 'remove'} ${Math.abs(change) === 1 ? 'a master' : `${Math.abs(change)} masters`}`;
    const keep = desired.nodes.length >= live ? `, or masters: ${live} to keep ${NUMBER_WORDS[live] ?? live}` : '';
    throw new PlanError(`the cluster has ${live} masters; ${desired.nodes.length} nodes derive ${desired.masters}; ${add}${keep}`);
  }

  // Roles by least change, then the slot targets and the fewest moves.
  const idToAddress = new Map<string, string>();
  for (const s of states) if (s.id) idToAddress.set(s.id, s.node.address);
  for (const l of leaving) idToAddress.set(l.id, l.address);
  const replicaOf = new Map<string, string>();
  for (const s of states) {
    const me = selfOf(s, anchor);
    const master = me?.role === 'replica' && me.masterId ? idToAddress.get(me.masterId) : undefined;
    if (master) replicaOf.set(s.node.address, master);
  }
  const shards = planShards({
    desired,
    claims: claimRanges,
    replicaOf,
    inSync: new Set(states.filter((s) => s.live && s.linkUp).map((s) => s.node.address)),
    leaving: new Set(leaving.map((l) => l.address)),
    down: new Set(down.map((d) => d.node)),
  });
  const slotKeys = new Map<number, number>();
  for (const n of live.nodes) for (const [slot, keys] of n.slotKeys ?? []) if (owner.get(slot) === n.address) slotKeys.set(slot, keys);
  const claimOf = (a: string): SlotRange[] => {
    // An heir takes its leaving master's slots as they are.
    const from = [...shards.heirs].find(([, h]) => h === a)?.[0];
    return claimRanges.get(from ?? a) ?? [];
  };
  const solved = solveSlots({
    masters: shards.masters.map((m) => ({ node: m, weight: shards.weights.get(m) ?? 1, slots: claimOf(m) })),
    draining: shards.draining.map((d) => ({ node: d, slots: claimRanges.get(d) ?? [] })),
    keysInSlot: (slot) => slotKeys.get(slot),
  });

  const creating = states.every((s) => s.view.every((e) => e.myself && e.configEpoch === 0));
  const provisioning = steps.some((h) => h.kind === 'provision_node');
  // One step per pair: an engine cut off mid-round leaves dozens of slots open between two nodes.
  const finishing: Step[] = [];
  for (const o of open) {
    const same = finishing.find((f): f is Extract<Step, { kind: 'finish_migration' }> => f.kind === 'finish_migration' && f.from === o.from && f.to === o.to);
    if (same) {
      same.slots.push(o.slot);
      same.keys += o.keys;
    } else finishing.push({ kind: 'finish_migration', from: o.from, to: o.to, slots: [o.slot], keys: o.keys });
  }
  steps.push(...finishing);

  // Distinct epochs up front spare the cluster a round of epoch-collision resolution.
  const epochs: Step[] = creating ? states.map((s, i) => ({ kind: 'set_config_epoch', node: s.node.address, epoch: i + 1 })) : [];
  // A small cluster is met as a full mesh: it joins in one handshake round instead of several
  // gossip rounds (seconds). A larger one is met by the anchor alone, and gossip spreads it.
  const meshLimit = 32;
  const inCluster = up.filter((s) => s !== anchor && members.has(s.node.address)).map((s) => s.node.address);
  const meets: Step[] = toMeet.map((s, i) => ({
    kind: 'meet_node',
    node: s.node.address,
    via: states.length <= meshLimit ? [anchor.node.address, ...inCluster, ...toMeet.slice(0, i).map((m) => m.node.address)] : [anchor.node.address],
  }));
  const joinPending = toMeet.length > 0 || up.some((s) => s !== anchor && members.has(s.node.address) && !knowsAll(s, states, resolve));
  // Waits are on the nodes that answer: a down one is waited for by nobody.
  const all = up.map((s) => s.node.address);
  const waitJoin: Step[] = joinPending || provisioning ? [{ kind: 'wait_join', nodes: all }] : [];
  const addSlots: Step[] = solved.adds.map((a) => ({ kind: 'add_slots', node: a.node, ranges: a.slots }));
  // Also when a node does not report cluster_state:ok yet (a join still settling): apply ends
  // with a cluster that agrees, not just with its own steps done.
  const settling = states.some((s) => s.live && !s.stateOk);
  const waitOk: Step[] = addSlots.length > 0 || joinPending || provisioning || finishing.length > 0 || settling ? [{ kind: 'wait_cluster_ok', nodes: all }] : [];
  if (creating) {
    // As redis-cli create does: slots first, while every master is alone, so that the MEET
    // handshakes carry them and the cluster agrees as soon as it has joined.
    steps.push(...addSlots, ...epochs, ...meets, ...waitJoin, ...waitOk);
  } else {
    steps.push(...meets, ...waitJoin, ...addSlots, ...waitOk);
  }

  // A leaving master's in-sync replica takes its slots over before anything else moves.
  for (const [master, heir] of shards.heirs) steps.push({ kind: 'failover', node: heir, master, ...(shards.swaps.has(master) ? { preferred: true } : {}) });

  // Replicas attach before slots move (a drained master loses its replicas first, a new master
  // has its replica as its slots arrive); masters that give all their slots away attach after.
  const stateOf = new Map(states.map((s) => [s.node.address, s]));
  const draining = new Set(shards.draining);
  const replicate: Extract<Step, { kind: 'replicate' }>[] = [];
  for (const [replica, master] of shards.replicaOf) {
    // A down node gets no step; Redis itself makes it a replica when it comes back.
    if (stateOf.get(replica)?.down) continue;
    const now = replicaOf.get(replica);
    // The failover itself makes a swapped master its heir's replica, and re-points the others.
    if (now === master || (now !== undefined && shards.heirs.get(now) === master) || shards.swaps.has(replica)) continue;
    const s = stateOf.get(replica);
    const wasMaster = s ? selfOf(s, anchor)?.role === 'master' && claims.has(replica) : false;
    replicate.push({ kind: 'replicate', node: replica, master, ...(now !== undefined || wasMaster ? { resync: true } : {}) });
  }
  steps.push(...replicate.filter((r) => !draining.has(r.node)));
  const strategy = migrationStrategy(desired, live);
  const moves: Step[] = solved.moves.map((m) => ({
    kind: 'migrate_slots',
    from: m.from,
    to: m.to,
    slots: m.slots,
    count: m.count,
    keys: m.keys,
    ...(draining.has(m.from) && !desired.nodes.some((n) => n.address === m.from) ? { lastSlots: true } : {}),
    // Half-moved slots count as the importing node's: a node that has some is known already.
    ...(!claims.has(m.to) ? { newTarget: true } : {}),
    // A Redis cluster's moves carry none: classic is all Redis has, and its plans stay as they were.
    ...(strategy.kind === 'atomic' || strategy.why ? { strategy } : {}),
  }));
  steps.push(...moves);
  if (moves.length > 0) steps.push({ kind: 'wait_cluster_ok', nodes: all });
  steps.push(...replicate.filter((r) => draining.has(r.node)));
  const settlingReplicas = [...replicate.map((r) => r.node), ...shards.swaps];
  if (settlingReplicas.length > 0) steps.push({ kind: 'wait_replication', replicas: settlingReplicas });

  steps.push(...removals(desired, leaving));
  steps.push(...restarts);

  warnings.push(...replicaWarnings(desired, shards.masters, shards.replicaOf));
  for (const l of leaving.filter((x) => !x.reachable && !x.wasReset)) {
    warnings.push(`${l.address} (${l.id.slice(0, 8)}) is not in the spec and does not answer: it is forgotten, but cannot be reset or stopped; reset it (CLUSTER RESET HARD) before it is started again`);
  }

  if (inFlight.length > 0) steps.unshift({ kind: 'wait_slot_migrations', jobs: inFlight });

  const finalSlots = solved.final;
  const roleList: NodeRole[] = [
    ...[...shards.masters]
      .sort((a, b) => (finalSlots.get(a)?.[0]?.start ?? 0) - (finalSlots.get(b)?.[0]?.start ?? 0))
      .map((m): NodeRole => ({ node: m, role: 'master', slots: finalSlots.get(m) ?? [] })),
    ...[...shards.replicaOf].map(([node, master]): NodeRole => ({ node, role: 'replica', master })),
  ];
  return {
    formatVersion: 1,
    desired,
    fingerprint: fingerprint(live),
    nodeFingerprints: nodeFingerprints(live),
    roles: roleList,
    steps,
    warnings,
    ...(down.length > 0 ? { down } : {}),
    createdAt: now.toISOString(),
  };
}

/**
 * --allow-reset: spec nodes outside the anchor's cluster that hold keys or know nodes the spec
 * does not list are wiped first; from then on the plan sees them as new, empty nodes.
 */
function wipeStale(states: NodeState[], anchor: NodeState, resolve: ReturnType<typeof addressResolver>): Step[] {
  const inCluster = new Set(anchor.view.map((e) => resolve(e, anchor)));
  const claimed = new Set(anchor.view.flatMap((e) => (e.myself ? [] : slotList(e.slots))));
  const steps: Step[] = [];
  for (const s of states) {
    if (s === anchor || inCluster.has(s.node.address)) continue;
    const me = s.view.find((e) => e.myself);
    const strangers = s.view.filter((e) => !e.myself && !e.handshake && !resolve(e, s));
    const clash = (me?.slots ?? []).some((r) => claimed.has(r.start) || claimed.has(r.end));
    if (s.keys === 0 && strangers.length === 0 && !clash) continue;
    steps.push({
      kind: 'reset_node',
      node: s.node.address,
      // A stopped node's keys are known only once it has started (it is started first).
      keys: s.live ? s.keys : -1,
      knows: s.view.filter((e) => !e.myself && !e.handshake).map((e) => resolve(e, s) ?? `${e.host}:${e.port}`),
      slots: me?.slots ?? [],
    });
    // What it will be: a new node that knows only itself (its id changes in the reset).
    s.keys = 0;
    s.id = undefined;
    s.view = me ? [{ ...me, role: 'master', masterId: null, slots: [], migrating: [], importing: [], configEpoch: 0 }] : [];
  }
  return steps;
}

/**
 * Spec nodes that cannot be reached at all. A member of the running cluster that holds no slot
 * (a replica, or a master whose replica took over, as in the runbook's failover test) is shown
 * and left alone: nothing is planned for it until it answers. One that still owns slots, or one
 * that is not a member yet, cannot be planned around.
 */
function downNodes(states: NodeState[], anchor: NodeState, resolve: ReturnType<typeof addressResolver>): DownNode[] {
  const out: DownNode[] = [];
  const running = anchor.live && anchor.view.some((e) => e.slots.length > 0);
  for (const s of states) {
    if (!s.down) continue;
    const seen = running ? anchor.view.find((e) => !e.handshake && !e.myself && resolve(e, anchor) === s.node.address) : undefined;
    if (!seen) throw new PlanError(s.downError ?? `${s.node.address} is down: ${s.down}`);
    if (seen.slots.length > 0) {
      throw new PlanError(
        `${s.node.address} is down (${s.down}) and still owns slots ${formatRanges(seen.slots)}: no replica has taken them over${seen.fail ? '' : ' (the cluster does not mark it failed yet)'}. ` +
          `rcluster will not change a cluster whose slots are not all served; start it again, or wait for its replica to take over (cluster-node-timeout)`,
      );
    }
    // What the cluster says of it stands for its own view.
    s.id = seen.id;
    s.view = [{ ...seen, myself: true }];
    const role = seen.role === 'replica' && seen.masterId ? `a replica of ${addressOfEntry(anchor.view, seen.masterId)}` : 'a master without slots (its replica took over)';
    out.push({ node: s.node.address, reason: s.down, role, failed: seen.fail });
  }
  return out;
}

function addressOfEntry(view: ClusterNodeEntry[], id: string): string {
  const e = view.find((x) => x.id === id);
  return e ? `${e.host}:${e.port}` : id.slice(0, 8);
}

const NUMBER_WORDS: Record<number, string> = { 3: 'three', 4: 'four', 5: 'five', 6: 'six', 7: 'seven', 8: 'eight', 9: 'nine', 10: 'ten' };

/**
 * Nodes that leave: reset and stopped first, then forgotten by every node that stays (all of
 * them: they must not learn of it again from each other within the 60 s ban).
 *
 * In this order, an apply killed between the two leaves a state the next plan can see: the nodes
 * that stay still list the leaving one, and it either answers with its own id (reset, not yet
 * stopped) or not at all. Forgotten first, a kill before its reset left a node that no spec node
 * lists any more, still running with the cluster's state: the next plan saw nothing to do, and
 * putting the node back in the spec later waited for a join that never came (it knows the
 * cluster, so it looked like a join still spreading).
 */
function removals(desired: DesiredCluster, leaving: LeavingNode[]): Step[] {
  const via = desired.nodes.map((n) => n.address);
  const service = (address: string) => {
    const { host, port } = splitAddress(address);
    const svc = desired.connection === 'ssh' ? unlistedNode(desired, host, port).redis.service : undefined;
    return svc ? { service: svc } : {};
  };
  return [
    ...leaving.map(
      (l): Step => ({
        kind: 'remove_node',
        node: l.address,
        id: l.id,
        stop: desired.connection !== 'none',
        reachable: l.reachable,
        ...(l.wasReset ? { wasReset: true } : {}),
        ...service(l.address),
        ...(l.reachable ? { clientsWaitMs: CLIENTS_LEAVE_MS } : {}),
      }),
    ),
    ...leaving.map((l): Step => ({ kind: 'forget_node', node: l.address, id: l.id, via })),
  ];
}

/** Masters left with fewer replicas than replicasPerMaster, when the spec lists too few nodes. */
function replicaWarnings(desired: DesiredCluster, masters: string[], replicaOf: Map<string, string>): string[] {
  const want = desired.replicasPerMaster;
  const short = masters.filter((m) => [...replicaOf.values()].filter((x) => x === m).length < want);
  if (short.length === 0) return [];
  return [`${short.join(', ')} will have fewer than ${want} replica(s): the spec lists ${desired.nodes.length} nodes, and ${desired.masters} masters with ${want} each take ${desired.masters * (1 + want)}`];
}

/**
 * What a node is, or will be once started. A running node says it itself. A stopped one comes
 * back with its saved state and then follows the cluster's newer one: a master whose slots a
 * replica took over while it was down rejoins as that replica's replica.
 */
export function selfOf(s: NodeState, anchor: NodeState): ClusterNodeEntry | undefined {
  const me = s.view.find((e) => e.myself);
  if (s.live || !anchor.live || !me) return me;
  const seen = anchor.view.find((e) => e.id === me.id);
  if (!seen) return me;
  if (seen.role === 'master' && seen.slots.length === 0 && me.slots.length > 0) {
    const owns = new Set(slotList(me.slots));
    const heirs = anchor.view.filter((e) => e.id !== me.id && e.role === 'master' && slotList(e.slots).some((slot) => owns.has(slot)));
    if (heirs.length === 1) return { ...me, role: 'replica', masterId: (heirs[0] as ClusterNodeEntry).id, slots: [] };
    // Its slots went to several masters since (slots moved while it was down): which of them
    // Redis makes it follow depends on the order their updates reach it, so the plan does not
    // guess; it comes back an empty master, and a replicate step gives it its place.
    if (heirs.length > 1) return { ...me, role: 'master', masterId: null, slots: [] };
  }
  return { ...me, role: seen.role, masterId: seen.masterId, slots: seen.slots };
}


/**
 * A password change that clients will feel: nodes that had none start refusing clients that send
 * none. (A rotation needs the previous password in the spec, or rcluster could not log in, and
 * then the nodes accept both.)
 */
function passwordWarnings(desired: DesiredCluster, live: LiveCluster): string[] {
  if (!desired.auth) return [];
  const listed = new Set(desired.nodes.map((n) => n.address));
  const members = live.nodes.filter((n) => listed.has(n.address) && n.reachable && n.clusterEnabled && n.auth);
  const out: string[] = [];
  const open = members.filter((n) => n.auth?.acceptedBy === 'none');
  if (open.length > 0) {
    out.push(`${open.length} running node(s) have no password yet (${open.map((n) => n.address).slice(0, 3).join(', ')}${open.length > 3 ? ', …' : ''}): once this applies, clients must send the password`);
  }
  return out;
}

/**
 * connection: none has no config file to say what a node's cluster-node-timeout should be. A
 * node running the 500 ms apply gives a joining node (an apply cut off before it gave the node
 * its own back) while the other members agree on another value gets theirs back, live.
 */
function joinTimeoutLeft(address: string, live: LiveCluster): Step | undefined {
  const timeoutOf = (n: LiveCluster['nodes'][number]) => (n.reachable && n.clusterEnabled ? n.runningConfig?.['cluster-node-timeout'] : undefined);
  const node = live.nodes.find((n) => n.address === address);
  if (!node || timeoutOf(node) !== String(JOIN_NODE_TIMEOUT_MS)) return undefined;
  // Other nodes left short by the same cut-off run do not count: the rest must agree.
  const others = new Set(
    live.nodes
      .filter((n) => n.address !== address)
      .map(timeoutOf)
      .filter((v): v is string => v !== undefined && v !== String(JOIN_NODE_TIMEOUT_MS)),
  );
  const [theirs] = others;
  if (others.size !== 1 || theirs === undefined) return undefined;
  return { kind: 'set_config', node: address, config: { path: '', changed: [{ directive: 'cluster-node-timeout', from: String(JOIN_NODE_TIMEOUT_MS), to: theirs }], diff: '' } };
}
