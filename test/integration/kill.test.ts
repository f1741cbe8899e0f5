import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import calculateSlot from 'cluster-key-slot';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { executePlan } from '../../src/apply/execute.js';
import { waitFor } from '../../src/apply/wait.js';
import { createLocalDriver } from '../../src/hosts/local.js';
import { inspectCluster } from '../../src/live/inspect.js';
import { parseClusterNodes, parseInfo } from '../../src/live/parse.js';
import type { ClusterNodeEntry } from '../../src/live/types.js';
import { computePlan } from '../../src/plan/diff.js';
import { loadSpec, requireSpec } from '../../src/spec/load.js';
import { badKeys, loadKeys, valueOf } from '../support/keys.js';
import { answers, localSpec, ports, rcluster, redisCli, withNode } from './support.js';

// Issue 7's kill test: `rcluster apply` (the built binary) killed with SIGKILL at several moments of
// scale-outs, scale-ins, a rolling restart and a failover of one cluster holding 300k keys (3
// masters, no replicas; one replica joins for the failover). All of the engine's state is in the
// cluster itself, so after each kill the next plan must show what is half done first, apply must
// finish it, and every key must hold its value, with redis-cli's own check clean and nothing left
// to plan. The moments run in order, each on the cluster the one before left.
//
// Each kill waits for a real condition read from the cluster (never a sleep). Two moments are too
// short to hit with a kill from outside, and are made by hand, exactly as a kill there leaves them:
// a slot told its new owner on the target but not on the source yet (mid-SETSLOT), and a removed
// node reset and stopped but not forgotten yet. Each says so where it happens.
const PORTS = ports(7801, 4);
const [P1, P4] = [PORTS[0] as number, PORTS[3] as number];
const STAY = PORTS.slice(0, 3);
/** A replica, for the failover. */
const P5 = 7805;
const addr = (p: number) => `127.0.0.1:${p}`;
const KEYS = 300_000;
/** Keys of one hot slot: more than one MIGRATE batch (1000 keys), so that it drains in many passes. */
const HOT_KEYS = 20_000;
const NAME = 'itest-kill9';
const spec = localSpec(NAME, STAY, 'replicasPerMaster: 0');
const BIN = fileURLToPath(new URL('../../bin/rcluster.js', import.meta.url));

/** The spec's nodes now; the first one is where keys and checks start from. */
let members = STAY;

function writeSpec(nodes: number[], masters: number, config: string[] = []): void {
  members = nodes;
  const redis = config.length > 0 ? ['redis:', '  config:', ...config.map((c) => `    ${c}`)] : [];
  writeFileSync(spec.file, [`name: ${NAME}`, 'connection: local', 'replicasPerMaster: 0', `masters: ${masters}`, ...redis, 'nodes:', ...nodes.map((p) => `  - ${addr(p)}`), ''].join('\n'));
}

async function pid(port: number): Promise<string> {
  return withNode(port, async (r) => /process_id:(\d+)/.exec(await r.info('server'))?.[1] ?? '');
}

async function view(port: number): Promise<ClusterNodeEntry[]> {
  return parseClusterNodes(String(await withNode(port, (r) => r.call('CLUSTER', 'NODES'))));
}

async function self(port: number): Promise<ClusterNodeEntry> {
  return (await view(port)).find((e) => e.myself) as ClusterNodeEntry;
}

async function keysIn(port: number, slot: number): Promise<number> {
  return Number(await withNode(port, (r) => r.call('CLUSTER', 'COUNTKEYSINSLOT', slot)));
}

/** Start apply (the built binary, in a child process), and kill -9 it as soon as `check` holds. */
async function applyKilledWhen(what: string, check: () => Promise<true | string>): Promise<void> {
  const child = spawn(process.execPath, [BIN, 'apply', '-f', spec.file, '--auto-approve', '--json'], { stdio: 'ignore' });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((res) => child.on('exit', (code, signal) => res({ code, signal })));
  try {
    await waitFor(what, check, { timeoutMs: 50_000, intervalMs: 2 });
  } catch (err) {
    child.kill('SIGKILL');
    throw err;
  }
  child.kill('SIGKILL');
  // Killed, not finished: an apply that had run to its end would prove nothing.
  expect(await exited).toEqual({ code: null, signal: 'SIGKILL' });
}

/** The plan's step lines (marker and text), in order. */
async function planLines(): Promise<{ lines: string[]; out: string }> {
  const plan = await rcluster('plan', '-f', spec.file);
  expect({ code: plan.code, err: plan.err }).toEqual({ code: 0, err: '' });
  return { lines: plan.out.split('\n').filter((l) => /^\s+[~+\-·] /.test(l)).map((l) => l.trim()), out: plan.out };
}

let hot = { slot: -1, tag: '' };
const hotKey = (i: number) => `{${hot.tag}}:${i}`;

/** The hot slot's keys that are missing or hold another value, read from the slot's owner. */
async function badHotKeys(): Promise<string[]> {
  if (hot.slot < 0) return [];
  const owner = (await view(members[0] as number)).find((e) => e.role === 'master' && e.slots.some((r) => r.start <= hot.slot && hot.slot <= r.end)) as ClusterNodeEntry;
  return withNode(owner.port, async (r) => {
    const p = r.pipeline();
    for (let i = 0; i < HOT_KEYS; i++) p.get(hotKey(i));
    const res = (await p.exec()) ?? [];
    return res.flatMap(([err, v], i) => (err || v !== valueOf(i, 100) ? [`${hotKey(i)}: ${err ? err.message : v === null ? 'missing' : 'wrong value'}`] : []));
  });
}

/** apply finishes what is left; then every key, redis-cli's check, and an empty plan. */
async function expectRepaired(): Promise<void> {
  const applied = await rcluster('apply', '-f', spec.file, '--auto-approve', '--json');
  expect({ code: applied.code, err: applied.err }).toEqual({ code: 0, err: '' });
  for (const p of members) {
    const me = await self(p);
    expect({ node: p, open: [...me.migrating, ...me.importing] }).toEqual({ node: p, open: [] });
  }
  const seed = addr(members[0] as number);
  const check = await redisCli(['--cluster', 'check', seed]);
  expect(check.out).toContain('[OK] All nodes agree about slots configuration.');
  expect(check.out).toContain('[OK] All 16384 slots covered.');
  expect(check.out).not.toMatch(/\[WARNING\]|\[ERR\]/);
  expect(await badKeys(seed, KEYS)).toEqual([]);
  expect(await badHotKeys()).toEqual([]);
  const again = await rcluster('plan', '-f', spec.file, '--detailed-exitcode');
  expect(again.out).toContain('No changes.');
  expect(again.code).toBe(0);
}

/** Plan in this process, as apply would, for the one moment cut off by running part of a plan. */
async function planNow() {
  const desired = requireSpec(await loadSpec(spec.file));
  return computePlan(desired, await inspectCluster(desired, { driver: createLocalDriver() }));
}

const FINISH = /^~ finish migration of (?:slot \d+|(\d+) slots \(.*\)) (\S+) → (\S+) \(([\d,]+) key\(s\) left\)$/;
const MOVE = /^~ move (\d+) slot\(s\) \(~[\d,]+ keys\) (\S+) → (\S+)/;

interface Pair {
  from: string;
  to: string;
  slots: number;
  keys: number;
}

/** A plan's `finish migration` line, read back. */
function finishOf(line: string): Pair {
  const m = FINISH.exec(line);
  if (!m) throw new Error(`not a finish line: ${line}`);
  return { from: m[2] as string, to: m[3] as string, slots: Number(m[1] ?? 1), keys: Number((m[4] as string).replaceAll(',', '')) };
}

/**
 * The slots left open between each pair, read from the nodes' own views (`[slot->-id]` on the
 * source, `[slot-<-id]` on the target), with the keys still on the source (COUNTKEYSINSLOT).
 */
async function openPairs(): Promise<Pair[]> {
  const selves = await Promise.all(PORTS.map(async (p) => ((await answers(p)) ? self(p) : undefined)));
  const portOf = new Map(selves.flatMap((e, i) => (e ? [[e.id, PORTS[i] as number] as const] : [])));
  const open = new Map<string, { from: number; to: number; slots: Set<number> }>();
  const add = (from: number | undefined, to: number | undefined, slot: number) => {
    if (from === undefined || to === undefined) throw new Error(`slot ${slot} is open towards a node outside the test`);
    const k = `${from}>${to}`;
    const pair = open.get(k) ?? { from, to, slots: new Set<number>() };
    pair.slots.add(slot);
    open.set(k, pair);
  };
  selves.forEach((e, i) => {
    for (const m of e?.migrating ?? []) add(PORTS[i], portOf.get(m.to), m.slot);
    for (const m of e?.importing ?? []) add(portOf.get(m.from), PORTS[i], m.slot);
  });
  const out: Pair[] = [];
  for (const p of open.values()) {
    const counts = await withNode(p.from, async (r) => {
      const pipeline = r.pipeline();
      for (const slot of p.slots) pipeline.call('CLUSTER', 'COUNTKEYSINSLOT', slot);
      return ((await pipeline.exec()) ?? []).map(([err, n]) => (err ? Number.NaN : Number(n)));
    });
    out.push({ from: addr(p.from), to: addr(p.to), slots: p.slots.size, keys: counts.reduce((a, b) => a + b, 0) });
  }
  return out.sort((a, b) => a.from.localeCompare(b.from) || a.to.localeCompare(b.to));
}

/** The plan's finish lines come first, and say exactly what is open and how many keys are left. */
async function expectFinishFirst(lines: string[]): Promise<Pair[]> {
  const finishes = lines.filter((l) => FINISH.test(l));
  expect(finishes.length).toBeGreaterThan(0);
  expect(lines.slice(0, finishes.length)).toEqual(finishes);
  const pairs = finishes.map(finishOf);
  expect([...pairs].sort((a, b) => a.from.localeCompare(b.from) || a.to.localeCompare(b.to))).toEqual(await openPairs());
  return pairs;
}

describe('apply killed with -9 anywhere (300k keys): the next plan shows the repair first, apply finishes it, no key is lost', () => {
  beforeAll(async () => {
    const created = await rcluster('apply', '-f', spec.file, '--auto-approve', '--json');
    expect({ code: created.code, err: created.err }).toEqual({ code: 0, err: '' });
    await loadKeys(addr(P1), KEYS);
  });

  afterAll(async () => {
    writeSpec([...PORTS, P5], 4);
    await rcluster('destroy', '-f', spec.file, '--auto-approve');
    spec.cleanup();
  });

  it('early, 3 -> 4 masters: killed once every master knows the new node; the plan neither starts nor meets it again, and moves its 4096 slots', async () => {
    writeSpec(PORTS, 4);
    await applyKilledWhen('every master to know the new node', async () => {
      for (const p of STAY) {
        const e = (await view(p)).find((x) => x.port === P4);
        if (!e || e.handshake) return `${addr(p)} does not know ${addr(P4)} yet`;
      }
      return true;
    });
    // Early indeed: nothing has moved yet.
    expect((await self(P4)).slots).toEqual([]);
    for (const p of STAY) expect((await self(p)).migrating).toEqual([]);

    const { lines } = await planLines();
    const firstMove = lines.findIndex((l) => MOVE.test(l));
    // What is left before the moves is waiting for gossip to finish the join, and, had apply
    // shortened the new node's timeout while it joined (a node up for a second or more), giving
    // it back. Both are repaired by the apply below, and the plan after it is empty.
    const giveBack = `~ set cluster-node-timeout 5000 on ${addr(P4)} live (no restart)`;
    expect(lines.slice(0, firstMove).filter((l) => !l.startsWith('· wait until') && l !== giveBack)).toEqual([]);
    const moves = lines.filter((l) => MOVE.test(l)).map((l) => MOVE.exec(l) as RegExpExecArray);
    expect(moves.map((m) => m[3])).toEqual([addr(P4), addr(P4), addr(P4)]);
    expect(moves.reduce((n, m) => n + Number(m[1]), 0)).toBe(4096);

    await expectRepaired();
  });

  it('mid-slot, during a removal (4 -> 3): killed while a hot slot drains, its keys on both sides; the plan finishes the open slots first, then the rest, then the removal', async () => {
    // A hot slot of the node that leaves: 20k keys, drained in many MIGRATE passes.
    const first = (await self(P4)).slots[0]?.start;
    // Without slots (the moment before failed) there is no hot slot to find: the search below
    // would never end.
    expect(first).toBeTypeOf('number');
    hot = { slot: first as number, tag: '' };
    for (let i = 0; hot.tag === ''; i++) if (calculateSlot(`h${i}`) === hot.slot) hot.tag = `h${i}`;
    const inSlot = (await keysIn(P4, hot.slot)) + HOT_KEYS;
    await withNode(P4, async (r) => {
      const p = r.pipeline();
      for (let i = 0; i < HOT_KEYS; i++) p.set(hotKey(i), valueOf(i, 100));
      await p.exec();
    });
    expect(await keysIn(P4, hot.slot)).toBe(inSlot);

    writeSpec(STAY, 3);
    let target = 0;
    await applyKilledWhen('the hot slot half-drained', async () => {
      // The target first: its count only grows, and the source keeps 5 batches' margin.
      for (const p of STAY) if ((await keysIn(p, hot.slot)) > 0) target = p;
      if (target === 0) return 'no key of the hot slot has arrived yet';
      return (await keysIn(P4, hot.slot)) >= 5000 ? true : 'the hot slot is almost drained';
    });
    const left = await keysIn(P4, hot.slot);
    expect(left).toBeGreaterThan(0);
    expect(await keysIn(target, hot.slot)).toBeGreaterThan(0);
    expect(left + (await keysIn(target, hot.slot))).toBe(inSlot);
    const [id4, idT] = [(await self(P4)).id, (await self(target)).id];
    expect((await self(P4)).migrating).toContainEqual({ slot: hot.slot, to: idT });
    expect((await self(target)).importing).toContainEqual({ slot: hot.slot, from: id4 });

    const { lines } = await planLines();
    const pairs = await expectFinishFirst(lines);
    expect(new Set(pairs.map((p) => p.from))).toEqual(new Set([addr(P4)]));
    // The hot slot's pair comes first (it holds the lowest slots), its keys left among its count.
    expect(pairs[0]?.to).toBe(addr(target));
    expect(pairs[0]?.keys).toBeGreaterThanOrEqual(left);
    expect(lines.slice(-2)).toEqual([
      `- reset ${addr(P4)} (CLUSTER RESET SOFT) and stop it, so that it can be re-added cleanly, once no client uses it any more (10 s at most)`,
      `- forget ${addr(P4)} (${id4.slice(0, 8)}) on 3 node(s)`,
    ]);

    await expectRepaired();
    expect(await answers(P4)).toBe(false);
  });

  it('mid-slot then mid-SETSLOT, 3 -> 4 again: killed with slots open; then one pair told the new owner on the target only; the plan finishes both kinds first', async () => {
    writeSpec(PORTS, 4);
    await applyKilledWhen('a slot migration in flight', async () => {
      for (const p of STAY) if ((await self(p)).migrating.length > 0) return true;
      return 'no open slot yet';
    });
    // Open slots with keys left, on the source (MIGRATING) or only on the target so far
    // (IMPORTING is set first): the plan finishes them first.
    const before = await expectFinishFirst((await planLines()).lines);
    for (const p of before) expect(p.to).toBe(addr(P4));

    // Mid-SETSLOT, by hand. The engine tells the target SETSLOT NODE, then the source, in two
    // pipelines one round trip apart: too short a moment to kill apply in from outside. A kill
    // there leaves the round's slots drained, owned by the target, and still MIGRATING on the
    // source. That state is made here, as the engine does it, for every slot one source has open
    // towards the new master; slots only IMPORTING on the target are left as the kill left them.
    const id4 = (await self(P4)).id;
    let source = (await Promise.all(STAY.map(async (p) => ((await self(p)).migrating.length > 0 ? p : 0)))).find((p) => p !== 0);
    if (source === undefined) {
      // The kill landed between a group's hand-over and the next script (a slot is MIGRATING on
      // its source only from its script until its hand-over, a few milliseconds): one slot the
      // target imports is put in MIGRATING on its source by hand, as the engine's script does.
      const imported = (await self(P4)).importing[0];
      if (!imported) throw new Error('the kill left no slot open on the new master (the plan above showed some)');
      const ids = await Promise.all(STAY.map(async (p) => [(await self(p)).id, p] as const));
      source = new Map(ids).get(imported.from) as number;
      await withNode(source, (r) => r.call('CLUSTER', 'SETSLOT', imported.slot, 'MIGRATING', id4));
    }
    const slots = (await self(source)).migrating.map((m) => m.slot);
    const idS = (await self(source)).id;
    const importingOnly = (await self(P4)).importing.filter((i) => i.from === idS && !slots.includes(i.slot)).map((i) => i.slot);
    await withNode(source, async (r) => {
      for (const slot of slots) {
        for (;;) {
          const keys = (await r.call('CLUSTER', 'GETKEYSINSLOT', slot, 1000)) as string[];
          if (keys.length === 0) break;
          await r.call('MIGRATE', '127.0.0.1', P4, '', 0, 10_000, 'KEYS', ...keys);
        }
      }
    });
    await withNode(P4, async (r) => {
      for (const slot of slots) await r.call('CLUSTER', 'SETSLOT', slot, 'NODE', id4);
    });
    const target = await self(P4);
    expect(target.importing.filter((i) => slots.includes(i.slot))).toEqual([]);
    expect(slots.every((s) => target.slots.some((r) => r.start <= s && s <= r.end))).toBe(true);
    // The source keeps the slots MIGRATING (Redis 7.0 does not close them when gossip tells it
    // the target owns them now): a migration half done that the plan must finish.
    expect((await self(source)).migrating.map((m) => m.slot)).toEqual(slots);

    // The pair cut off mid-SETSLOT is still a migration to finish: its slots are those open on the
    // source, with no key left in them, and those only IMPORTING on the target, with their keys.
    const { lines } = await planLines();
    const pairs = await expectFinishFirst(lines);
    for (const p of pairs) expect(p.to).toBe(addr(P4));
    let left = 0;
    for (const slot of importingOnly) left += await keysIn(source, slot);
    expect(pairs.find((p) => p.from === addr(source))).toEqual({ from: addr(source), to: addr(P4), slots: slots.length + importingOnly.length, keys: left });
    // Everything else still goes to the new master.
    for (const l of lines.filter((x) => MOVE.test(x))) expect(MOVE.exec(l)?.[3]).toBe(addr(P4));

    await expectRepaired();
  });

  it('a removal cut off after the node was reset and stopped, before the others forgot it: the plan forgets it; nothing is left running', async () => {
    writeSpec(STAY, 3);
    // Made by running the plan's own steps up to the reset-and-stop: after it the next step
    // (CLUSTER FORGET) is sent the moment the port refuses, too short a moment to kill apply in.
    const full = await planNow();
    const cut = full.steps.findIndex((s) => s.kind === 'remove_node') + 1;
    expect(full.steps.slice(cut).map((s) => s.kind)).toEqual(['forget_node']);
    await executePlan({ ...full, steps: full.steps.slice(0, cut) }, { driver: createLocalDriver() }, () => {});
    expect(await answers(P4)).toBe(false);
    const stayers = await Promise.all(STAY.map(view));
    const id4 = stayers[0]?.find((e) => e.port === P4)?.id as string;
    for (const v of stayers) expect(v.some((e) => e.id === id4)).toBe(true);

    // Its saved state (this machine's, with connection local) shows the reset: nothing to warn of.
    const { lines, out } = await planLines();
    expect(lines).toEqual([
      `- ${addr(P4)} is stopped, and was reset before it stopped (its saved state knows no other node): it is only forgotten`,
      `- forget ${addr(P4)} (${id4.slice(0, 8)}) on 3 node(s)`,
    ]);
    expect(out).not.toContain('Warning:');

    await expectRepaired();
    for (const p of STAY) expect((await view(p)).some((e) => e.id === id4)).toBe(false);
    expect(await answers(P4)).toBe(false);
  });

  it('during a rolling restart: killed once the first master is back with its data; the plan restarts only the other two', async () => {
    // io-threads changes only with a restart. The masters have no replica: each one's writes are
    // paused and it is saved before it stops, one master at a time.
    writeSpec(STAY, 3, ['io-threads: 2']);
    const before = await Promise.all(STAY.map(pid));
    await applyKilledWhen('the first master to be back as a new process with its data loaded', async () => {
      for (const [i, p] of STAY.entries()) {
        const now = await pid(p).catch(() => before[i]);
        if (now === before[i]) continue;
        const loading = await withNode(p, async (r) => /loading:(\d)/.exec(await r.info('persistence'))?.[1]);
        return loading === '0' ? true : `${addr(p)} is loading its data`;
      }
      return 'no master restarted yet';
    });
    const now = await Promise.all(STAY.map(pid));
    const done = STAY.filter((_, i) => now[i] !== before[i]);
    expect(done).toHaveLength(1);
    expect(await withNode(done[0] as number, (r) => r.call('CONFIG', 'GET', 'io-threads'))).toEqual(['io-threads', '2']);

    const { lines } = await planLines();
    const steps = lines.filter((l) => !l.startsWith('· wait until'));
    const saved = 'no in-sync replica can take over its slots, so its writes are paused and it is saved first';
    expect(steps).toEqual(
      STAY.filter((p) => p !== done[0]).map((p) => `~ restart ${addr(p)} (io-threads change only with a restart); ${saved}`),
    );

    await expectRepaired();
    for (const p of STAY) expect(await withNode(p, (r) => r.call('CONFIG', 'GET', 'io-threads'))).toEqual(['io-threads', '2']);
  });

  it('during a failover (a master leaves, masters stays 3): killed once its replica is master; the plan only removes the old master', async () => {
    const config = ['io-threads: 2'];
    writeSpec([...STAY, P5], 3, config);
    const added = await rcluster('apply', '-f', spec.file, '--auto-approve', '--json');
    expect({ code: added.code, err: added.err }).toEqual({ code: 0, err: '' });
    const roleOf = async (port: number) => parseInfo(await withNode(port, (r) => r.info('replication')));
    const gone = Number((await roleOf(P5))['master_port']);
    expect(STAY).toContain(gone);
    const goneId = (await self(gone)).id;

    writeSpec([...STAY.filter((p) => p !== gone), P5], 3, config);
    await applyKilledWhen(`${addr(P5)} to take over from ${addr(gone)}`, async () => ((await roleOf(P5))['role'] === 'master' ? true : `${addr(P5)} is still a replica`));
    expect((await self(P5)).slots.length).toBeGreaterThan(0);

    // The failover is done (Redis ends it itself): nothing fails over again; what is left is
    // the removal. Killed right after the takeover, the old master still runs; had apply gone
    // one step further, it is reset and stopped already. Either way the plan ends the removal.
    // (Planned while gossip had not told the other masters yet, this once drained the old
    // master of the slots it no longer had; the newer config epoch now wins, as in Redis.)
    const { lines } = await planLines();
    expect(lines, lines.join('\n')).toHaveLength(2);
    expect(lines[0]).toMatch(
      new RegExp(`^- (reset ${addr(gone)} \\(CLUSTER RESET SOFT\\) and stop it, so that it can be re-added cleanly, once no client uses it any more \\(10 s at most\\)|${addr(gone)} is stopped, and was reset before it stopped .*: it is only forgotten)$`),
    );
    expect(lines[1]).toBe(`- forget ${addr(gone)} (${goneId.slice(0, 8)}) on 3 node(s)`);

    await expectRepaired();
    expect(await answers(gone)).toBe(false);
  });
});
