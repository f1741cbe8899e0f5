import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { rampLimit, SlotWindows } from '../../src/apply/migrate.js';

const opts = { window: 8, rampRatio: 32 };

/** Settle the microtasks a resolved acquire schedules. */
const tick = () => new Promise((r) => setImmediate(r));

describe('rampLimit', () => {
  it('the first slot alone, one at a time until twice the ratio is handed over, then one per ratio', () => {
    expect([0, 1, 31, 32, 63, 64, 95, 96, 1024].map((h) => rampLimit(h, 32))).toEqual([1, 1, 1, 1, 1, 2, 2, 3, 32]);
  });
});

describe('SlotWindows', () => {
  it('a source never has more than its window in flight, whatever its targets', async () => {
    const w = new SlotWindows(opts);
    let granted = 0;
    for (let i = 0; i < 20; i++) void w.acquire('src', i % 2 === 0 ? 't1' : 't2', false).then(() => granted++);
    await tick();
    expect(granted).toBe(8);
    w.release('src', 't1', 1, true);
    await tick();
    expect(granted).toBe(9);
    // Another source is not held up by this one's full window.
    let other = false;
    void w.acquire('src2', 't1', false).then(() => (other = true));
    await tick();
    expect(other).toBe(true);
  });

  it('a group waits for room for half the window (or its wish), not one slot at a time: groups stay whole', async () => {
    const w = new SlotWindows(opts);
    const grants: number[] = [];
    for (let i = 0; i < 3; i++) void w.acquire('src', 't', false, 4).then((n) => grants.push(n));
    await tick();
    expect(grants).toEqual([4, 4]);
    w.release('src', 't', 1, true);
    await tick();
    // One slot free: the third group of 4 does not start as a group of one.
    expect(grants).toEqual([4, 4]);
    w.release('src', 't', 3, true);
    await tick();
    expect(grants).toEqual([4, 4, 4]);
    // A job's last slots ask for fewer, and get them as soon as that much is free.
    void w.acquire('src', 't', false, 2).then((n) => grants.push(n));
    w.release('src', 't', 2, true);
    await tick();
    expect(grants).toEqual([4, 4, 4, 2]);
  });

  it("a release queued ahead of its source's next batch counts for that source only (its next group may start; another source still waits)", async () => {
    const w = new SlotWindows(opts);
    // 64 slots handed over: two may migrate to the new target at once.
    for (let i = 0; i < 64; i++) w.release('x', 'new', await w.acquire('x', 'new', true, 1), true);
    expect(rampLimit(w.handedTo('new'), opts.rampRatio)).toBe(2);
    const grants: string[] = [];
    const ask = (from: string) => void w.acquire(from, 'new', true, 2).then((n) => grants.push(`${from}:${n}`));
    ask('a');
    await tick();
    ask('a');
    ask('b');
    await tick();
    expect(grants).toEqual(['a:2']);
    // The target owns a's first group; its release is queued on a's batch connection.
    w.queuedRelease('a', 'new', 2);
    await tick();
    expect(grants).toEqual(['a:2', 'a:2']);
    // b's commands may run before a's release: for b those two slots still migrate.
    w.release('a', 'new', 2, true, 2);
    await tick();
    expect(grants).toEqual(['a:2', 'a:2']);
    w.release('a', 'new', 2, true);
    await tick();
    expect(grants).toEqual(['a:2', 'a:2', 'b:2']);
  });

  it('a new target: its first slot alone, then never more migrating than rampLimit allows, each grant within its wish (property)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.record({ source: fc.integer({ min: 0, max: 3 }), want: fc.integer({ min: 1, max: 6 }) }), { minLength: 1, maxLength: 300 }),
        fc.array(fc.boolean(), { minLength: 300, maxLength: 300 }),
        async (asks, outcomes) => {
          const w = new SlotWindows(opts);
          const inFlight: { from: string; n: number }[] = [];
          const perSource = new Map<string, number>();
          const violations: string[] = [];
          let handed = 0;
          let migrating = 0;
          let firstSeen = false;
          for (const { source, want } of asks) {
            const from = `s${source}`;
            void w.acquire(from, 'new', true, want).then((n) => {
              if (n < 1 || n > want) violations.push(`granted ${n} of ${want}`);
              inFlight.push({ from, n });
              migrating += n;
              perSource.set(from, (perSource.get(from) ?? 0) + n);
              if (!firstSeen && n !== 1) violations.push(`the first grant was ${n} slots, not one alone`);
              firstSeen = true;
              if (migrating > rampLimit(handed, opts.rampRatio)) violations.push(`${migrating} in flight with ${handed} handed over`);
              if ((perSource.get(from) ?? 0) > opts.window) violations.push(`${from}: window exceeded`);
            });
          }
          // Finish groups in an arbitrary order until every ask has been granted and released.
          for (let k = 0; k < asks.length; k++) {
            await tick();
            const g = inFlight.splice(k % Math.max(1, inFlight.length), 1)[0];
            if (g === undefined) break;
            perSource.set(g.from, (perSource.get(g.from) ?? g.n) - g.n);
            migrating -= g.n;
            const ok = outcomes[k] !== false;
            if (ok) handed += g.n;
            w.release(g.from, 'new', g.n, ok);
          }
          expect(violations).toEqual([]);
          expect(w.handedTo('new')).toBe(handed);
        },
      ),
      { numRuns: 100 },
    );
  });

  it('a known target is held only by the window', async () => {
    const w = new SlotWindows(opts);
    let granted = 0;
    for (let i = 0; i < 8; i++) void w.acquire('src', 'known', false).then(() => granted++);
    await tick();
    expect(granted).toBe(8);
  });
});
