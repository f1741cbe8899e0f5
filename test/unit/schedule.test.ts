import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { dependencies, footprint } from '../../src/apply/schedule.js';
import type { Step } from '../../src/plan/types.js';
import type { SlotRange } from '../../src/live/types.js';

const [A, B, C, D, E] = ['h:1', 'h:2', 'h:3', 'h:4', 'h:5'];
const R = { start: 0, end: 9 };

describe('dependencies', () => {
  it('migrations of every pair run together, even sharing a node; a replicate of one of their nodes waits for them', () => {
    const steps: Step[] = [
      { kind: 'migrate_slots', from: A, to: D, slots: [R], count: 10, keys: 0 },
      { kind: 'migrate_slots', from: B, to: D, slots: [R], count: 10, keys: 0 },
      { kind: 'migrate_slots', from: C, to: E, slots: [R], count: 10, keys: 0 },
      { kind: 'replicate', node: E, master: D },
      { kind: 'add_slots', node: B, ranges: [R] },
    ];
    expect(dependencies(steps)).toEqual([[], [], [], [0, 1, 2], [1]]);
  });

  it('a wait runs alone: after everything before it, and everything after waits for it', () => {
    const steps: Step[] = [
      { kind: 'provision_node', node: A, reason: 'x' },
      { kind: 'provision_node', node: B, reason: 'x' },
      { kind: 'wait_join', nodes: [A, B] },
      { kind: 'add_slots', node: A, ranges: [R] },
      { kind: 'add_slots', node: B, ranges: [R] },
      { kind: 'wait_cluster_ok', nodes: [A, B] },
      { kind: 'wait_replication', replicas: [B] },
    ];
    expect(dependencies(steps)).toEqual([[], [], [0, 1], [2], [2], [3, 4], [5]]);
  });

  it('restarts run one at a time, after everything else', () => {
    const restart = (node: string): Step => ({ kind: 'restart_node', node, reason: 'x', config: { path: '/x', changed: [], diff: '' } });
    const steps: Step[] = [{ kind: 'replicate', node: C, master: A }, restart(A), restart(B)];
    expect(dependencies(steps)).toEqual([[], [0], [1]]);
  });

  it('property: any two steps that touch a common node (and are not both migrations), or where one runs alone, are ordered as in the plan', () => {
    const node = fc.constantFrom(A, B, C, D, E);
    const step: fc.Arbitrary<Step> = fc.oneof(
      fc.record({ kind: fc.constant('replicate' as const), node, master: node }),
      fc.record({ kind: fc.constant('add_slots' as const), node, ranges: fc.constant<SlotRange[]>([R]) }),
      fc.record({ kind: fc.constant('migrate_slots' as const), from: node, to: node, slots: fc.constant<SlotRange[]>([R]), count: fc.constant(10), keys: fc.constant(0) }),
      fc.record({ kind: fc.constant('forget_node' as const), node, id: fc.constant('x'), via: fc.array(node, { maxLength: 3 }) }),
      fc.constant<Step>({ kind: 'wait_cluster_ok', nodes: [A] }),
    );
    fc.assert(
      fc.property(fc.array(step, { maxLength: 25 }), (steps) => {
        const deps = dependencies(steps);
        // The transitive closure: i must be done before j.
        const before = deps.map(() => new Set<number>());
        deps.forEach((ds, j) => ds.forEach((i) => {
          expect(i).toBeLessThan(j);
          before[j]?.add(i);
          for (const k of before[i] ?? []) before[j]?.add(k);
        }));
        for (let j = 0; j < steps.length; j++) {
          for (let i = 0; i < j; i++) {
            const a = footprint(steps[i] as Step);
            const b = footprint(steps[j] as Step);
            const clash = a.exclusive || b.exclusive || (a.nodes.some((n) => b.nodes.includes(n)) && !(a.migration && b.migration));
            if (clash) expect(before[j]?.has(i), `step ${j} must wait for step ${i}`).toBe(true);
          }
        }
      }),
      { numRuns: 300 },
    );
  });
});
