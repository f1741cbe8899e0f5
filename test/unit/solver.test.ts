import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { countSlots } from '../../src/live/parse.js';
import { slotList, SLOT_COUNT, toRanges } from '../../src/plan/slots.js';
import { lowerBound, slotTargets, solveSlots, type SolverInput } from '../../src/plan/solver.js';

const CREATE = [
  { start: 0, end: 5460 },
  { start: 5461, end: 10922 },
  { start: 10923, end: 16383 },
];

function counts(input: SolverInput): Map<string, number> {
  return new Map([...input.masters, ...input.draining].map((m) => [m.node, countSlots(m.slots)]));
}

/** Everything the solver promises, checked on one input. */
function checkSolution(input: SolverInput): void {
  const result = solveSlots(input);
  // Targets: what the weights give, summing to every slot.
  const total = [...result.targets.values()].reduce((a, b) => a + b, 0);
  expect(total).toBe(SLOT_COUNT);
  const weightSum = input.masters.reduce((a, m) => a + m.weight, 0);
  for (const m of input.masters) {
    const t = result.targets.get(m.node) as number;
    const ideal = (SLOT_COUNT * m.weight) / weightSum;
    expect(t).toBeGreaterThanOrEqual(Math.max(1, Math.floor(ideal)));
    expect(t).toBeLessThanOrEqual(Math.max(1, Math.ceil(ideal)));
    expect(countSlots(result.final.get(m.node) ?? [])).toBe(t);
  }
  // Every slot has exactly one owner at the end. (Plain checks in the loops: expect() per slot is slow.)
  const problems: string[] = [];
  const owner = new Map<number, string>();
  for (const [node, ranges] of result.final) {
    for (const s of slotList(ranges)) {
      if (owner.has(s)) problems.push(`slot ${s} owned twice`);
      owner.set(s, node);
    }
  }
  expect(owner.size).toBe(SLOT_COUNT);
  // Moves: each slot at most once, from the master that holds it, to the one that ends with it.
  const before = new Map<number, string>();
  for (const m of [...input.masters, ...input.draining]) for (const s of slotList(m.slots)) before.set(s, m.node);
  const moved = new Set<number>();
  for (const mv of result.moves) {
    expect(mv.count).toBe(countSlots(mv.slots));
    for (const s of slotList(mv.slots)) {
      if (moved.has(s)) problems.push(`slot ${s} moves twice`);
      moved.add(s);
      if (before.get(s) !== mv.from) problems.push(`slot ${s} moves from ${mv.from} but was on ${before.get(s)}`);
      if (owner.get(s) !== mv.to) problems.push(`slot ${s} moves to ${mv.to} but ends on ${owner.get(s)}`);
    }
  }
  // Slots that did not move kept their owner; unowned ones were added, not moved.
  const added = new Map<number, string>();
  for (const a of result.adds) for (const s of slotList(a.slots)) added.set(s, a.node);
  for (const [s, node] of owner) {
    if (moved.has(s)) continue;
    const was = before.get(s);
    if (was === undefined ? added.get(s) !== node : was !== node) problems.push(`slot ${s} changed owner without a move or an add`);
  }
  expect(problems.slice(0, 5)).toEqual([]);
  // The number moved is the lower bound, so no plan moves fewer.
  expect(moved.size).toBe(lowerBound(counts(input), result.targets));
  // And the rounding was spent where it saves moves: no +1 target sits on a master that does not
  // use it while a master that holds more than its target could have used it.
  const cur = counts(input);
  const idle = input.masters.filter((m) => {
    const t = result.targets.get(m.node) as number;
    const ideal = (SLOT_COUNT * m.weight) / weightSum;
    return t > Math.max(1, Math.floor(ideal)) && (cur.get(m.node) ?? 0) < t;
  });
  const wanting = input.masters.filter((m) => {
    const t = result.targets.get(m.node) as number;
    const ideal = (SLOT_COUNT * m.weight) / weightSum;
    return t < Math.ceil(ideal) && (cur.get(m.node) ?? 0) > t;
  });
  expect(idle.length === 0 || wanting.length === 0).toBe(true);
}

describe('slotTargets', () => {
  it("3 equal masters from nothing: redis-cli create's 5461/5462/5461", () => {
    const t = slotTargets(['a', 'b', 'c'].map((node) => ({ node, weight: 1, current: 0 })));
    expect([...t.values()]).toEqual([5461, 5462, 5461]);
  });

  it('the slot left over stays with the master that already holds it', () => {
    // 4 masters: 4096 each, nothing over. 3 masters after a drain: the extra goes to whoever holds 5462 now.
    const t = slotTargets([
      { node: 'a', weight: 1, current: 5462 },
      { node: 'b', weight: 1, current: 5461 },
      { node: 'c', weight: 1, current: 5461 },
    ]);
    expect([...t.values()]).toEqual([5462, 5461, 5461]);
  });
});

describe('solveSlots: examples', () => {
  it('3 -> 4 masters: 4096 slots move to the new one, 1365 or 1366 from each, each a contiguous run from the end', () => {
    const keys = new Map<number, number>([[5460, 0], [100, 0]]);
    const result = solveSlots({
      masters: [
        { node: 'a', weight: 1, slots: [CREATE[0]!] },
        { node: 'b', weight: 1, slots: [CREATE[1]!] },
        { node: 'c', weight: 1, slots: [CREATE[2]!] },
        { node: 'd', weight: 1, slots: [] },
      ],
      draining: [],
      keysInSlot: (s) => keys.get(s) ?? 10,
    });
    expect(result.adds).toEqual([]);
    expect(result.moves.map((m) => [m.from, m.to, m.count])).toEqual([
      ['a', 'd', 1365],
      ['b', 'd', 1366],
      ['c', 'd', 1365],
    ]);
    // Two empty slots are not worth scattering for: a gives one run, the lightest at its end.
    expect(result.moves[0]!.slots).toEqual([{ start: 4096, end: 5460 }]);
    expect(result.moves[0]!.keys).toBe(1364 * 10);
    expect(countSlots(result.final.get('d')!)).toBe(4096);
  });

  it('hot slots everywhere: the lightest slots go, scattered, when that spares many keys', () => {
    const keysInSlot = (s: number) => (s % 3 === 0 ? 100 : 1);
    const result = solveSlots({
      masters: [...CREATE.map((r, i) => ({ node: `m${i}`, weight: 1, slots: [r] })), { node: 'n', weight: 1, slots: [] }],
      draining: [],
      keysInSlot,
    });
    for (const m of result.moves) {
      expect(slotList(m.slots).every((s) => keysInSlot(s) === 1)).toBe(true);
      expect(m.keys).toBe(m.count);
    }
  });

  it('a hot run is avoided by the contiguous choice when a cold run exists', () => {
    const keysInSlot = (s: number) => (s >= 4000 && s <= 5460 ? 1000 : 1);
    const result = solveSlots({ masters: [...CREATE.map((r, i) => ({ node: `m${i}`, weight: 1, slots: [r] })), { node: 'n', weight: 1, slots: [] }], draining: [], keysInSlot });
    const fromM0 = result.moves.find((m) => m.from === 'm0')!;
    expect(fromM0.slots).toHaveLength(1);
    expect(fromM0.keys).toBe(1365);
  });

  it('draining a master spreads its slots over every master with a deficit', () => {
    const result = solveSlots({
      masters: [
        { node: 'a', weight: 1, slots: [{ start: 0, end: 4095 }] },
        { node: 'b', weight: 1, slots: [{ start: 4096, end: 8191 }] },
        { node: 'c', weight: 1, slots: [{ start: 8192, end: 12287 }] },
      ],
      draining: [{ node: 'd', slots: [{ start: 12288, end: 16383 }] }],
    });
    expect(result.moves.map((m) => [m.from, m.to, m.count])).toEqual([
      ['d', 'a', 1365],
      ['d', 'b', 1366],
      ['d', 'c', 1365],
    ]);
  });

  it('a cluster that matches moves nothing', () => {
    const result = solveSlots({ masters: CREATE.map((r, i) => ({ node: `m${i}`, weight: 1, slots: [r] })), draining: [] });
    expect(result.moves).toEqual([]);
    expect(result.adds).toEqual([]);
  });

  it('from nothing: contiguous ranges in master order, as redis-cli create', () => {
    const result = solveSlots({ masters: ['a', 'b', 'c'].map((node) => ({ node, weight: 1, slots: [] })), draining: [] });
    expect(result.adds).toEqual([
      { node: 'a', slots: [CREATE[0]] },
      { node: 'b', slots: [CREATE[1]] },
      { node: 'c', slots: [CREATE[2]] },
    ]);
  });

  it('a weight change reshards only the difference', () => {
    const result = solveSlots({
      masters: [
        { node: 'a', weight: 2, slots: [CREATE[0]!] },
        { node: 'b', weight: 1, slots: [CREATE[1]!] },
        { node: 'c', weight: 1, slots: [CREATE[2]!] },
      ],
      draining: [],
    });
    expect(result.targets.get('a')).toBe(8192);
    const moved = result.moves.reduce((n, m) => n + m.count, 0);
    expect(moved).toBe(8192 - 5461);
    expect(result.moves.every((m) => m.to === 'a')).toBe(true);
  });

  it('plans 1000 masters in well under a second', () => {
    const masters = Array.from({ length: 1000 }, (_, i) => ({ node: `n${i}`, weight: 1 + (i % 3), slots: [] as { start: number; end: number }[] }));
    // Start from an even layout over the first 900, so that there is real work.
    const per = Math.floor(SLOT_COUNT / 900);
    masters.slice(0, 900).forEach((m, i) => (m.slots = [{ start: i * per, end: i === 899 ? SLOT_COUNT - 1 : (i + 1) * per - 1 }]));
    const result = solveSlots({ masters, draining: [] });
    expect(result.moves.length).toBeGreaterThan(0);
    checkSolution({ masters, draining: [] });
  });
});

/** Any partition of the slots over owners (fragmented), some left unowned. */
const ownership = fc
  .record({
    staying: fc.integer({ min: 1, max: 8 }),
    leaving: fc.integer({ min: 0, max: 3 }),
    chunks: fc.array(fc.record({ len: fc.integer({ min: 1, max: 3000 }), owner: fc.integer({ min: -1, max: 10 }) }), { minLength: 1, maxLength: 40 }),
    weights: fc.array(fc.integer({ min: 1, max: 5 }), { minLength: 8, maxLength: 8 }),
    keys: fc.array(fc.nat({ max: 50 }), { minLength: 64, maxLength: 64 }),
  })
  .map(({ staying, leaving, chunks, weights, keys }) => {
    const owners = [...Array.from({ length: staying }, (_, i) => `m${i}`), ...Array.from({ length: leaving }, (_, i) => `x${i}`)];
    const slotsOf = new Map<string, number[]>(owners.map((o) => [o, []]));
    let slot = 0;
    for (let i = 0; slot < SLOT_COUNT; i++) {
      const c = chunks[i % chunks.length]!;
      const who = c.owner < 0 ? undefined : owners[c.owner % owners.length];
      for (let k = 0; k < c.len && slot < SLOT_COUNT; k++, slot++) if (who) slotsOf.get(who)!.push(slot);
    }
    const input: SolverInput = {
      masters: owners.slice(0, staying).map((node, i) => ({ node, weight: weights[i]!, slots: toRanges(slotsOf.get(node)!) })),
      draining: owners.slice(staying).map((node) => ({ node, slots: toRanges(slotsOf.get(node)!) })),
      keysInSlot: (s) => keys[s % 64],
    };
    return input;
  });

describe('solveSlots: properties', () => {
  it('for any ownership and weights: targets met, one owner per slot, no slot moves twice, moves = the lower bound', () => {
    fc.assert(fc.property(ownership, (input) => checkSolution(input)), { numRuns: 150 });
  });

  it('the result, solved again, moves nothing', () => {
    fc.assert(
      fc.property(ownership, (input) => {
        const first = solveSlots(input);
        const again = solveSlots({ masters: input.masters.map((m) => ({ ...m, slots: first.final.get(m.node) ?? [] })), draining: [] });
        expect(again.moves).toEqual([]);
        expect(again.adds).toEqual([]);
      }),
      { numRuns: 60 },
    );
  });
});
