import type { SlotRange } from '../live/types.js';

import { SLOT_COUNT } from '../live/parse.js';

export { SLOT_COUNT };

/**
 * Contiguous ranges, one per weight, covering 0..16383 exactly once. With equal weights this is
 * redis-cli create's split: 3 masters -> 0-5460, 5461-10922, 10923-16383. Every weight gets at
 * least one slot: a master without slots would not count as one.
 */
export function splitSlots(weights: number[]): SlotRange[] {
  const n = weights.length;
  if (n === 0) return [];
  // Scaled by the largest weight first, so that huge weights cannot overflow the sum.
  const max = Math.max(...weights);
  const scaled = weights.map((w) => w / max);
  const total = scaled.reduce((a, b) => a + b, 0);
  const ranges: SlotRange[] = [];
  let start = 0;
  let cumulative = 0;
  scaled.forEach((w, i) => {
    cumulative += w;
    const ideal = i === n - 1 ? SLOT_COUNT : Math.round((SLOT_COUNT * cumulative) / total);
    // At least one slot here, and one left for each weight still to come.
    const end = Math.min(Math.max(ideal, start + 1), SLOT_COUNT - (n - 1 - i)) - 1;
    ranges.push({ start, end });
    start = end + 1;
  });
  return ranges;
}

export function rangeSize(r: SlotRange): number {
  return r.end - r.start + 1;
}

/** Expand ranges to a sorted list of slot numbers. */
export function slotList(ranges: SlotRange[]): number[] {
  const out: number[] = [];
  for (const r of ranges) for (let s = r.start; s <= r.end; s++) out.push(s);
  return out.sort((a, b) => a - b);
}

/** Compress slot numbers into sorted, merged ranges. */
export function toRanges(slots: Iterable<number>): SlotRange[] {
  const sorted = [...new Set(slots)].sort((a, b) => a - b);
  const out: SlotRange[] = [];
  for (const s of sorted) {
    const last = out[out.length - 1];
    if (last && last.end === s - 1) last.end = s;
    else out.push({ start: s, end: s });
  }
  return out;
}
