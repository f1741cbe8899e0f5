import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { migrateSlotsArgs } from '../../src/apply/atomic.js';
import { formatSlotRanges, isFinalState, ongoing, parseSlotMigrations, parseSlotRanges, supportsAtomic } from '../../src/live/slotMigrations.js';
import type { LiveCluster, LiveNode } from '../../src/live/types.js';
import { computePlan } from '../../src/plan/diff.js';
import { toRanges } from '../../src/plan/slots.js';
import { migrationStrategy } from '../../src/plan/strategy.js';
import type { Plan, Step } from '../../src/plan/types.js';
import { renderPlan } from '../../src/render/plan.js';
import { addresses, freshNode, healthyMembers, joinedCluster, specFrom, type Member } from './support/liveBuilder.js';

// CLUSTER GETSLOTMIGRATIONS as valkey-server 9.1.2 answered it over RESP2 (ioredis `call`).
const fixture = (name: string): unknown => JSON.parse(readFileSync(new URL(`fixtures/getslotmigrations/${name}.json`, import.meta.url), 'utf8'));

const NOW = new Date('2025-01-02T03:04:05.000Z');
const A = addresses(6);
const [N1, , , N4] = A as [string, string, string, string];
const N7 = '127.0.0.1:7007';
const N8 = '127.0.0.1:7008';

function valkeySpec(nodes: string[], masters?: number, extra: string[] = []) {
  return specFrom([`name: unit`, 'connection: local', ...(masters ? [`masters: ${masters}`] : []), ...extra, 'redis:', '  server: valkey', 'nodes:', ...nodes.map((a) => `  - ${a}`), ''].join('\n'));
}

const running = (version: string, name = 'valkey') => (n: LiveNode): LiveNode => ({ ...n, server: { name, version } });

/** 3+3 with keys in every slot, plus two fresh nodes: the scale-out to 4 masters. */
function scaleOut(version: (address: string) => string): LiveCluster {
  const members = healthyMembers(A).map((m): Member => (m.slots ? { ...m, keys: 100 } : m));
  const live: LiveCluster = { nodes: [...joinedCluster(members).nodes, freshNode(N7), freshNode(N8)] };
  return { nodes: live.nodes.map((n) => running(version(n.address))(n)) };
}

function moves(plan: Plan): Extract<Step, { kind: 'migrate_slots' }>[] {
  return plan.steps.filter((s): s is Extract<Step, { kind: 'migrate_slots' }> => s.kind === 'migrate_slots');
}

describe('CLUSTER GETSLOTMIGRATIONS replies (captured from valkey-server 9.1.2)', () => {
  it('a source with finished and cancelled jobs: each entry read field by field, newest first', () => {
    const jobs = parseSlotMigrations(fixture('source-success-and-cancelled'));
    expect(jobs.map((j) => [j.operation, j.slotRanges, j.state])).toEqual([
      ['EXPORT', '601-601', 'cancelled'],
      ['EXPORT', '600-600', 'cancelled'],
      ['EXPORT', '300-301', 'success'],
      ['EXPORT', '400-400 500-500', 'success'],
      ['EXPORT', '100-103 200-200', 'success'],
    ]);
    expect(jobs[4]).toMatchObject({
      name: '80fb0a2caa8c0f256e87100fb6cd8f72b42dff51',
      ranges: [{ start: 100, end: 103 }, { start: 200, end: 200 }],
      targetNode: '57d4778227bdcc769ce2d624f80f69a159ceaf51',
      sourceNode: '2004d96c7e668280e169ee78d0eed9232d3797e0',
      message: '',
    });
    expect(jobs[4]?.createTime).toBeGreaterThan(1_700_000_000);
    expect(ongoing(jobs)).toEqual([]);
  });

  it('a target whose import failed: the message the server gave', () => {
    const [failed] = parseSlotMigrations(fixture('target-import-failed'));
    expect(failed).toMatchObject({ operation: 'IMPORT', slotRanges: '600-600', state: 'failed' });
    expect(failed?.message).toMatch(/^Connection lost to source/);
    // IMPORTs are never what a plan waits for: the source's EXPORT is the job's authority.
    expect(ongoing(parseSlotMigrations(fixture('target-7892')))).toEqual([]);
  });

  it('a job still running on its source is ongoing; final states are success, failed and cancelled', () => {
    const jobs = parseSlotMigrations(fixture('source-ongoing'));
    expect(ongoing(jobs).map((j) => [j.slotRanges, j.state])).toEqual([['700-700', 'waiting-to-snapshot']]);
    for (const s of ['success', 'failed', 'cancelled']) expect(isFinalState(s)).toBe(true);
    for (const s of ['waiting-to-snapshot', 'snapshotting', 'failover-granted']) expect(isFinalState(s)).toBe(false);
  });

  it('an empty list, and replies that are not what the server sends, are errors rather than guesses', () => {
    expect(parseSlotMigrations([])).toEqual([]);
    expect(() => parseSlotMigrations('OK')).toThrow(/expected an array/);
    expect(() => parseSlotMigrations([['slot_ranges', '1-x']])).toThrow(/cannot read slot range "1-x"/);
  });
});

describe('MIGRATESLOTS arguments', () => {
  it("a job's slots merged into contiguous ranges, written as the server lists them", () => {
    const ranges = toRanges([5, 3, 4, 100, 9000, 9001, 101, 3]);
    expect(ranges).toEqual([{ start: 3, end: 5 }, { start: 100, end: 101 }, { start: 9000, end: 9001 }]);
    expect(migrateSlotsArgs(ranges, 'abc')).toEqual(['SLOTSRANGE', '3', '5', '100', '101', '9000', '9001', 'NODE', 'abc']);
    expect(formatSlotRanges(ranges)).toBe('3-5 100-101 9000-9001');
    expect(parseSlotRanges(formatSlotRanges(ranges))).toEqual(ranges);
    expect(parseSlotRanges('7')).toEqual([{ start: 7, end: 7 }]);
  });
});

describe('migration strategy in the plan', () => {
  it('every node Valkey >= 9: every move is atomic, server-side, with no ramp', () => {
    const plan = computePlan(valkeySpec([...A, N7, N8], 4), scaleOut(() => '9.1.2'), NOW);
    expect(moves(plan)).toHaveLength(3);
    for (const m of moves(plan)) expect(m.strategy).toEqual({ kind: 'atomic' });
    const text = renderPlan(plan);
    expect(text).toContain(`~ move 1365 slot(s) (~0 keys) ${N1} → ${N7} (atomic, server-side)\n`);
    expect(text).toContain('Slots move server-side (every node runs Valkey >= 9): one CLUSTER MIGRATESLOTS on each source');
    expect(text).not.toContain('on a ramp');
    expect(text).not.toContain('in MIGRATING');
  });

  it('migration: classic in the spec: the MIGRATE engine, and the plan says so', () => {
    const plan = computePlan(valkeySpec([...A, N7, N8], 4, ['migration: classic']), scaleOut(() => '9.1.2'), NOW);
    for (const m of moves(plan)) expect(m.strategy).toEqual({ kind: 'classic', why: 'the spec says migration: classic' });
    expect(renderPlan(plan)).toContain(`${N1} → ${N7} (MIGRATE: the spec says migration: classic) (new to clients: on a ramp)`);
    expect(migrationStrategy(valkeySpec([...A, N7, N8], 4, ['migration: auto']), scaleOut(() => '9.1.2'))).toEqual({ kind: 'atomic' });
    expect(() => valkeySpec(A, undefined, ['migration: atomic'])).toThrow(/migration/);
  });

  it('one node on Valkey 8: classic MIGRATE, and the plan says which node and why', () => {
    const plan = computePlan(valkeySpec([...A, N7, N8], 4), scaleOut((a) => (a === N4 ? '8.1.0' : '9.1.2')), NOW);
    for (const m of moves(plan)) expect(m.strategy).toEqual({ kind: 'classic', why: `${N4} is valkey 8.1.0; server-side migration needs Valkey >= 9 on every node` });
    expect(renderPlan(plan)).toContain(`${N1} → ${N7} (MIGRATE: ${N4} is valkey 8.1.0; server-side migration needs Valkey >= 9 on every node) (new to clients: on a ramp)`);
  });

  it('a Redis cluster: classic, with no note about Valkey', () => {
    const desired = specFrom(['name: unit', 'connection: local', 'masters: 4', 'nodes:', ...[...A, N7, N8].map((a) => `  - ${a}`), ''].join('\n'));
    const redis: LiveCluster = { nodes: scaleOut(() => '7.0.15').nodes.map(running('7.0.15', 'redis')) };
    expect(migrationStrategy(desired, redis)).toEqual({ kind: 'classic' });
    const text = renderPlan(computePlan(desired, redis, NOW));
    expect(text).toContain(`${N1} → ${N7} (MIGRATE) (new to clients: on a ramp)`);
  });

  it('a new node not running yet is taken at the spec\'s word (apply checks it before the first MIGRATESLOTS)', () => {
    const live = scaleOut(() => '9.1.2');
    live.nodes = live.nodes.map((n) => (n.address === N7 || n.address === N8 ? { address: n.address, host: n.host, port: n.port, reachable: false, error: 'connect ECONNREFUSED', clusterEnabled: false, view: [], clusterInfo: {}, keys: 0 } : n));
    expect(migrationStrategy(valkeySpec([...A, N7, N8], 4), live)).toEqual({ kind: 'atomic' });
    expect(supportsAtomic({ name: 'valkey', version: '10.0.0' })).toBe(true);
    expect(supportsAtomic({ name: 'valkey', version: '8.1.2' })).toBe(false);
    expect(supportsAtomic({ name: 'redis', version: '9.0.0' })).toBe(false);
  });

  it('a server-side migration in progress: apply waits for it first, and its slots count as the target\'s', () => {
    // Slots 0-99 of N1 are on their way to N7 (an apply cut off after MIGRATESLOTS); N7 is a
    // member the anchor knows: the scale-out after the join.
    const [job] = parseSlotMigrations(fixture('source-ongoing'));
    const members = healthyMembers(A).map((m): Member => (m.slots ? { ...m, keys: 100 } : m));
    const joined = joinedCluster([...members, { address: N7 }, { address: N8 }]);
    const nodes = joined.nodes.map(running('9.1.2'));
    const n7id = nodes.find((n) => n.address === N7)?.id as string;
    (nodes.find((n) => n.address === N1) as LiveNode).slotMigrations = [{ ...(job as NonNullable<typeof job>), targetNode: n7id, slotRanges: '0-99', ranges: [{ start: 0, end: 99 }] }];
    const plan = computePlan(valkeySpec([...A, N7, N8], 4), { nodes }, NOW);
    expect(plan.steps[0]).toEqual({ kind: 'wait_slot_migrations', jobs: [{ source: N1, target: N7, ranges: [{ start: 0, end: 99 }], name: job?.name }] });
    expect(plan.warnings).toContain(`a server-side migration is in progress (slots 0-99 ${N1} -> ${N7}, waiting-to-snapshot); apply waits for it to end before anything else`);
    // N7 gets 4096 slots in all: the 100 already on their way count.
    expect(moves(plan).filter((m) => m.to === N7).reduce((n, m) => n + m.count, 0)).toBe(3996);
    expect(renderPlan(plan)).toContain(`· wait for the server-side migration(s) already in progress (0-99 ${N1} → ${N7}) to end`);
  });
});
