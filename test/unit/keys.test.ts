import calculateSlot from 'cluster-key-slot';
import { describe, expect, it } from 'vitest';
import { everySlot, keyTotal, slotKeyName } from '../support/keys.js';

// The test key sets' per-slot keys: one in each slot, so that every slot move carries keys.
describe('everySlot key sets', () => {
  it('hold one key in each of the 16384 slots, distinct from the k:<i> keys', () => {
    const names = Array.from({ length: 16384 }, (_, s) => slotKeyName(s));
    expect(names.filter((n, s) => calculateSlot(n) !== s)).toEqual([]);
    expect(new Set(names).size).toBe(16384);
    expect(names.filter((n) => n.startsWith('k:'))).toEqual([]);
    expect(keyTotal(everySlot(20_000))).toBe(36_384);
    expect(keyTotal(20_000)).toBe(20_000);
  });
});
