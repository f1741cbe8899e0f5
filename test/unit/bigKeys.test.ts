import { describe, expect, it } from 'vitest';
import { chunkSlots, printableKey } from '../../src/live/bigKeys.js';
import type { LiveCluster } from '../../src/live/types.js';
import { bigKeyScans, bigKeysOf, bigKeysRefusal, clusterNodeTimeoutMs, parseMemory, type FoundKey } from '../../src/plan/bigKeys.js';
import { computePlan } from '../../src/plan/diff.js';
import type { Plan } from '../../src/plan/types.js';
import { renderPlan } from '../../src/render/plan.js';
import { addresses, CREATE_RANGES, freshNode, joinedCluster, spec, specFrom } from './support/liveBuilder.js';

const NOW = new Date('2025-01-02T03:04:05.000Z');
const [N1, N2, N3, N4] = addresses(4) as [string, string, string, string];
const MB = 1_000_000;

/** A loaded 3-master cluster (no replicas) and a fourth node to scale out to. */
function scaleOut(opts: { dataset?: number; nodeTimeout?: string; bulk?: string; extraSpec?: string } = {}): { plan: Plan; live: LiveCluster } {
  const slotKeys = (r: { start: number; end: number }) => new Map(Array.from({ length: r.end - r.start + 1 }, (_, i) => [r.start + i, 10]));
  const live = joinedCluster(CREATE_RANGES.map((r, i) => ({ address: [N1, N2, N3][i] as string, slots: [r], keys: 54_610, slotKeys: slotKeys(r) })), [freshNode(N4)]);
  for (const n of live.nodes) {
    n.datasetBytes = opts.dataset ?? 2_000 * MB;
    n.runningConfig = { 'cluster-node-timeout': opts.nodeTimeout ?? '5000', 'proto-max-bulk-len': opts.bulk ?? '536870912' };
  }
  const desired = specFrom(
    ['name: unit', 'connection: none', 'replicasPerMaster: 0', 'masters: 4', ...(opts.extraSpec ? [opts.extraSpec] : []), 'nodes:', ...[N1, N2, N3, N4].map((a) => `  - ${a}`), ''].join('\n'),
  );
  return { plan: computePlan(desired, live, NOW), live };
}

function movedSlot(plan: Plan, from: string): number {
  const step = plan.steps.find((s) => s.kind === 'migrate_slots' && s.from === from);
  if (step?.kind !== 'migrate_slots') throw new Error(`no move from ${from}`);
  return (step.slots[0] as { start: number }).start;
}

describe('big keys: what is read', () => {
  it('each source is read once, over the slots it gives away, from the smallest size that breaks a limit', () => {
    const { plan, live } = scaleOut();
    const scans = bigKeyScans(plan, live);
    expect(scans.map((s) => s.node).sort()).toEqual([N1, N2, N3]);
    // Half of 5000 ms at the default 20 MB/s: 50 MB; proto-max-bulk-len (512 MiB) is larger.
    expect(scans.every((s) => s.minBytes === 50 * MB)).toBe(true);
    expect(scans.reduce((n, s) => n + s.slots.length, 0)).toBe(4096);
  });

  it('a source whose whole dataset is smaller than that cannot hold such a key: not read at all', () => {
    const { plan, live } = scaleOut({ dataset: 45 * MB });
    expect(bigKeyScans(plan, live)).toEqual([]);
  });

  it('a smaller proto-max-bulk-len on the target lowers the size read from', () => {
    const { plan, live } = scaleOut({ extraSpec: 'timeouts:\n  transferRate: 1000' });
    // Half of 5000 ms at 1000 MB/s is 2.5 GB: the target's 512 MiB is the limit now.
    expect(bigKeyScans(plan, live).map((s) => s.minBytes)).toEqual([536870912, 536870912, 536870912]);
  });

  it("the cluster's node timeout: the smallest, ignoring the 500 ms a joining node has for a moment; Redis's default when unknown", () => {
    const { live } = scaleOut();
    const none = spec([N1, N2, N3], { connection: 'none' });
    live.nodes[0]!.runningConfig = { 'cluster-node-timeout': '500' };
    live.nodes[1]!.runningConfig = { 'cluster-node-timeout': '8000' };
    expect(clusterNodeTimeoutMs(none, live)).toBe(5000);
    // With a config file to apply, a spec node runs the spec's value (default 5000) by the moves.
    expect(clusterNodeTimeoutMs(spec([N1, N2, N3]), { nodes: [] })).toBe(5000);
    expect(clusterNodeTimeoutMs(none, { nodes: [] })).toBe(15_000);
  });

  it('memory values as redis.conf writes them', () => {
    expect([parseMemory('512mb'), parseMemory('100m'), parseMemory('1gb'), parseMemory('2048'), parseMemory('lots'), parseMemory(undefined)]).toEqual([
      512 * 1024 * 1024,
      100 * MB,
      1024 ** 3,
      2048,
      undefined,
      undefined,
    ]);
  });

  it('slots go in calls of about 2000 keys; a bigger slot goes alone', () => {
    const counts = new Map([
      [1, 1500],
      [2, 400],
      [3, 300],
      [4, 5000],
      [5, 1],
    ]);
    expect(chunkSlots([1, 2, 3, 4, 5], counts)).toEqual([[1, 2], [3], [4], [5]]);
  });

  it('key names print as redis-cli prints them', () => {
    expect(printableKey(Buffer.concat([Buffer.from('big'), Buffer.from([0xff, 0x00, 0x0a]), Buffer.from('"q"\\{t}')]))).toBe('big\\xff\\x00\\n\\"q\\"\\\\{t}');
  });
});

describe('big keys: judged, shown, refused', () => {
  it('a 200 MB key breaks the node timeout; one over the target proto-max-bulk-len breaks that too; small ones are dropped', () => {
    const { plan, live } = scaleOut({ bulk: String(100 * 1024 * 1024) });
    // The target is not running yet: its limit comes from the spec, else Redis's default.
    live.nodes.find((n) => n.address === N4)!.runningConfig = { 'proto-max-bulk-len': String(100 * 1024 * 1024) };
    const slot = movedSlot(plan, N1);
    const found: FoundKey[] = [
      { node: N1, slot, key: 'big:hash', bytes: 210 * MB },
      { node: N1, slot, key: 'medium', bytes: 40 * MB },
      // A slot that does not move (not asked for, but not trusted either).
      { node: N1, slot: 5460 - 4000, key: 'stays', bytes: 300 * MB },
    ];
    const keys = bigKeysOf(plan, live, found);
    expect(keys).toEqual([
      { key: 'big:hash', slot, bytes: 210 * MB, from: N1, to: N4, blockMs: 10_500, maxBlockMs: 2500, maxBulkBytes: 100 * 1024 * 1024, breaks: ['node-timeout', 'proto-max-bulk-len'] },
    ]);
  });

  it('the plan names each key, its size, its block time and the limit; apply refuses without the flag, in two lines', () => {
    const { plan: base, live } = scaleOut();
    const slot = movedSlot(base, N2);
    const plan: Plan = { ...base, bigKeys: bigKeysOf(base, live, [{ node: N2, slot, key: 'big\\xff:{7}', bytes: 210_500_000 }]) };
    const text = renderPlan(plan);
    expect(text).toContain('  Big keys (too big to move safely; apply refuses to move them without --allow-big-keys)');
    expect(text).toContain(
      `    ! "big\\xff:{7}" (slot ${slot}, ~210.5 MB, ${N2} → ${N4}): MIGRATE blocks ${N2} ~10.5 s, over 2.5 s (half of cluster-node-timeout 5000 ms)`,
    );
    expect(text).toContain('Apply moves the big key only with --allow-big-keys.');
    const refusal = bigKeysRefusal(plan, false);
    expect(refusal?.split('\n')).toEqual([
      `1 key(s) too big to move safely: "big\\xff:{7}" (slot ${slot}, ~210.5 MB, ${N2} → ${N4}): MIGRATE blocks ${N2} ~10.5 s, over 2.5 s (half of cluster-node-timeout 5000 ms). Nothing was changed.`,
      'Shrink or delete them first, give the cluster a longer cluster-node-timeout (redis.nodeTimeout), or run again with --allow-big-keys to move them anyway',
    ]);
  });

  it('--allow-big-keys on apply, or saved with the plan, lets apply go ahead; no big key, nothing to refuse', () => {
    const { plan: base, live } = scaleOut();
    const plan: Plan = { ...base, bigKeys: bigKeysOf(base, live, [{ node: N1, slot: movedSlot(base, N1), key: 'k', bytes: 300 * MB }]) };
    expect(bigKeysRefusal(plan, true)).toBeUndefined();
    const saved: Plan = JSON.parse(JSON.stringify({ ...plan, allowBigKeys: true })) as Plan;
    expect(bigKeysRefusal(saved, false)).toBeUndefined();
    expect(renderPlan(saved)).toContain('(too big to move safely; moved anyway: --allow-big-keys)');
    expect(renderPlan(saved)).not.toContain('only with --allow-big-keys');
    expect(bigKeysRefusal(base, false)).toBeUndefined();
  });

  it('more than three keys: three named, the rest counted', () => {
    const { plan: base, live } = scaleOut();
    const slot = movedSlot(base, N1);
    const found = [1, 2, 3, 4, 5].map((i) => ({ node: N1, slot, key: `k${i}`, bytes: (100 + i) * MB }));
    const refusal = bigKeysRefusal({ ...base, bigKeys: bigKeysOf(base, live, found) }, false) ?? '';
    expect(refusal).toMatch(/^5 key\(s\) too big .*"k5".*"k4".*"k3".*; and 2 more \(see the plan\)\./);
  });
});
