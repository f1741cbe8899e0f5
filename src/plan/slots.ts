import type { SlotRange } from '../live/types.js';

export const SLOT_COUNT = 16384;

/**
 * Contiguous ranges, one per weight, covering 0..16383 exactly once. With equal weights this is
 * redis-cli create's split: 3 masters -> 0-5460, 5461-10922, 10923-16383.
 */
export function splitSlots(weights: number[]): SlotRange[] {
  if (weights.length === 0) return [];
  const total = weights.reduce((a, b) => a + b, 0);
  const ranges: SlotRange[] = [];
  let start = 0;
  let cumulative = 0;
  weights.forEach((w, i) => {
    cumulative += w;
    const end = i === weights.length - 1 ? SLOT_COUNT - 1 : Math.round((SLOT_COUNT * cumulative) / total) - 1;
    ranges.push({ start, end: Math.max(start - 1, end) });
    start = Math.max(start, end + 1);
  });
  return ranges;
}

export function rangeSize(r: SlotRange): number {
  return r.end - r.start + 1;
}

export function slotsIn(ranges: SlotRange[]): number {
  return ranges.reduce((n, r) => n + Math.max(0, rangeSize(r)), 0);
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
