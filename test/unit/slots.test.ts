import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { SlotRange } from '../../src/live/types.js';
import { countSlots } from '../../src/live/parse.js';
import { rangeSize, SLOT_COUNT, slotList, splitSlots, toRanges } from '../../src/plan/slots.js';

describe('splitSlots', () => {
  it("3 equal weights: redis-cli create's layout 0-5460, 5461-10922, 10923-16383 (5461/5462/5461)", () => {
    const ranges = splitSlots([1, 1, 1]);
    expect(ranges).toEqual([
      { start: 0, end: 5460 },
      { start: 5461, end: 10922 },
      { start: 10923, end: 16383 },
    ]);
    expect(ranges.map(rangeSize)).toEqual([5461, 5462, 5461]);
  });

  it('4 equal weights: 4096 slots each', () => {
    const ranges = splitSlots([2, 2, 2, 2]);
    expect(ranges.map(rangeSize)).toEqual([4096, 4096, 4096, 4096]);
    expect(ranges.map((r) => r.start)).toEqual([0, 4096, 8192, 12288]);
  });

  it('weights 2:1:1 give the first master half the slots', () => {
    expect(splitSlots([2, 1, 1])).toEqual([
      { start: 0, end: 8191 },
      { start: 8192, end: 12287 },
      { start: 12288, end: 16383 },
    ]);
  });

  it('no weights, no ranges; one weight takes every slot', () => {
    expect(splitSlots([])).toEqual([]);
    expect(splitSlots([0.5])).toEqual([{ start: 0, end: 16383 }]);
  });

  const weight = fc.oneof(
    fc.integer({ min: 1, max: 1000 }),
    fc.double({ min: 0.001, max: 1000, noNaN: true, noDefaultInfinity: true }),
  );

  it('property: 1..64 positive weights -> contiguous ordered ranges covering 0..16383 once, at least 1 slot each, each within 1 of its share', () => {
    fc.assert(
      fc.property(fc.array(weight, { minLength: 1, maxLength: 64 }), (weights) => {
        const ranges = splitSlots(weights);
        expect(ranges).toHaveLength(weights.length);
        expect(ranges[0]?.start).toBe(0);
        expect(ranges[ranges.length - 1]?.end).toBe(SLOT_COUNT - 1);
        ranges.forEach((r, i) => {
          expect(Number.isInteger(r.start) && Number.isInteger(r.end)).toBe(true);
          expect(rangeSize(r)).toBeGreaterThanOrEqual(0);
          if (i > 0) expect(r.start).toBe((ranges[i - 1] as SlotRange).end + 1);
        });
        // Every slot exactly once.
        const seen = new Uint8Array(SLOT_COUNT);
        for (const s of slotList(ranges)) seen[s] = (seen[s] ?? 0) + 1;
        expect(seen.every((n) => n === 1)).toBe(true);
        expect(countSlots(ranges)).toBe(SLOT_COUNT);

        const total = weights.reduce((a, b) => a + b, 0);
        const shares = weights.map((w) => (SLOT_COUNT * w) / total);
        // Every master owns at least one slot (one without slots would not count as a master);
        // when no share is below one slot, each range is within 1 of its share.
        ranges.forEach((r) => expect(rangeSize(r)).toBeGreaterThanOrEqual(1));
        if (shares.every((x) => x >= 1)) {
          ranges.forEach((r, i) => expect(Math.abs(rangeSize(r) - (shares[i] as number))).toBeLessThanOrEqual(1 + 1e-9));
        } else {
          // The slots given to tiny shares come from the others: at most one each.
          const tiny = shares.filter((x) => x < 1).length;
          ranges.forEach((r, i) => expect(Math.abs(rangeSize(r) - (shares[i] as number))).toBeLessThanOrEqual(1 + tiny + 1e-9));
        }
      }),
      { numRuns: 300 },
    );
  });

  it('weights whose sum would overflow still give integer ranges that cover every slot', () => {
    // The schema has no maximum weight, so `weight: 1e308` loads; a naive 16384 * 1e308 is
    // Infinity, and NaN ranges would make slotList loop until V8 runs out of memory.
    for (const weights of [
      [1e308, 1, 1],
      [1e305, 1e305, 1e305],
    ]) {
      const ranges = splitSlots(weights);
      expect(ranges.every((r) => Number.isInteger(r.start) && Number.isInteger(r.end))).toBe(true);
      expect(ranges[ranges.length - 1]?.end).toBe(SLOT_COUNT - 1);
    }
  });

  it('property: equal weights give sizes that differ by at most 1', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 64 }), fc.integer({ min: 1, max: 100 }), (n, w) => {
        const sizes = splitSlots(Array.from({ length: n }, () => w)).map(rangeSize);
        expect(Math.max(...sizes) - Math.min(...sizes)).toBeLessThanOrEqual(1);
      }),
    );
  });
});

describe('toRanges / slotList', () => {
  it('examples', () => {
    expect(toRanges([5, 3, 4, 9, 4, 0])).toEqual([
      { start: 0, end: 0 },
      { start: 3, end: 5 },
      { start: 9, end: 9 },
    ]);
    expect(slotList([{ start: 10, end: 12 }, { start: 1, end: 2 }])).toEqual([1, 2, 10, 11, 12]);
    expect(toRanges([])).toEqual([]);
  });

  const slot = fc.integer({ min: 0, max: SLOT_COUNT - 1 });

  it('property: slotList(toRanges(slots)) is the sorted distinct slots; the ranges are sorted, disjoint and not adjacent', () => {
    fc.assert(
      fc.property(fc.array(slot, { maxLength: 300 }), (slots) => {
        const ranges = toRanges(slots);
        expect(slotList(ranges)).toEqual([...new Set(slots)].sort((a, b) => a - b));
        ranges.forEach((r, i) => {
          expect(r.end).toBeGreaterThanOrEqual(r.start);
          if (i > 0) expect(r.start).toBeGreaterThan((ranges[i - 1] as SlotRange).end + 1);
        });
        expect(countSlots(ranges)).toBe(new Set(slots).size);
      }),
    );
  });

  it('property: toRanges(slotList(ranges)) gives back sorted, merged ranges', () => {
    // Disjoint, non-adjacent ranges built from sorted cut points.
    const ranges = fc.uniqueArray(slot, { maxLength: 40 }).map((cuts) => {
      const sorted = [...cuts].sort((a, b) => a - b);
      const out: SlotRange[] = [];
      for (let i = 0; i + 1 < sorted.length; i += 2) {
        const start = sorted[i] as number;
        const end = sorted[i + 1] as number;
        const last = out[out.length - 1];
        if (!last || start > last.end + 1) out.push({ start, end });
      }
      return out;
    });
    fc.assert(
      fc.property(ranges, fc.boolean(), (rs, reverse) => {
        const input = reverse ? [...rs].reverse() : rs;
        expect(toRanges(slotList(input))).toEqual(rs);
      }),
    );
  });

  it('adjacent and overlapping input ranges come back merged', () => {
    expect(
      toRanges(
        slotList([
          { start: 0, end: 10 },
          { start: 11, end: 20 },
          { start: 15, end: 30 },
        ]),
      ),
    ).toEqual([{ start: 0, end: 30 }]);
  });
});
