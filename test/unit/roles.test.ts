import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { allocateRoles, interleaveByHost, replicaCapacities, type CurrentRoles, type RoleNode, type Roles } from '../../src/plan/roles.js';

const RUNBOOK = ['192.168.4.51:6351', '192.168.4.52:6352', '192.168.4.53:6353', '192.168.4.54:6354', '192.168.4.55:6355', '192.168.4.56:6356'];

function roleNode(address: string): RoleNode {
  return { address, host: address.slice(0, address.lastIndexOf(':')) };
}

function hostOf(nodes: RoleNode[], address: string): string {
  const n = nodes.find((x) => x.address === address);
  if (!n) throw new Error(`no node ${address}`);
  return n.host;
}

/** master -> its replicas, for every master (also those with none). */
function replicasByMaster(roles: Roles): Map<string, string[]> {
  const out = new Map<string, string[]>(roles.masters.map((m) => [m, []]));
  for (const [r, m] of roles.replicaOf) out.get(m)?.push(r);
  return out;
}

function colocated(nodes: RoleNode[], roles: Roles): number {
  return [...roles.replicaOf].filter(([r, m]) => hostOf(nodes, r) === hostOf(nodes, m)).length;
}

/**
 * The least number of replicas that can share their master's host, over every assignment of
 * `replicaHosts` to seats where each master host offers `seatsPerHost` seats. Exhaustive search
 * (memoized on the seats left per host: which master of a host a replica takes makes no difference).
 */
function bruteForceMinColocated(replicaHosts: string[], seatsPerHost: Map<string, number>): number {
  const hosts = [...seatsPerHost.keys()];
  const memo = new Map<string, number>();
  const go = (i: number, left: number[]): number => {
    if (i === replicaHosts.length) return 0;
    const key = `${i}|${left.join(',')}`;
    const hit = memo.get(key);
    if (hit !== undefined) return hit;
    let best = Infinity;
    left.forEach((n, h) => {
      if (n === 0) return;
      const next = [...left];
      next[h] = n - 1;
      best = Math.min(best, (hosts[h] === replicaHosts[i] ? 1 : 0) + go(i + 1, next));
    });
    memo.set(key, best);
    return best;
  };
  return go(0, hosts.map((h) => seatsPerHost.get(h) ?? 0));
}

describe('allocateRoles: examples', () => {
  it('runbook: 6 nodes on 6 hosts, 3 masters -> masters 51, 52, 53; every replica on another host than its master', () => {
    const nodes = RUNBOOK.map(roleNode);
    const roles = allocateRoles(nodes, 3);
    expect(roles.masters).toEqual(['192.168.4.51:6351', '192.168.4.52:6352', '192.168.4.53:6353']);
    expect([...roles.replicaOf.keys()].sort()).toEqual(['192.168.4.54:6354', '192.168.4.55:6355', '192.168.4.56:6356']);
    expect(new Set(roles.replicaOf.values())).toEqual(new Set(roles.masters));
    for (const [replica, master] of roles.replicaOf) expect(hostOf(nodes, replica)).not.toBe(hostOf(nodes, master));
  });

  it('6 nodes on one host: masters 7001-7003, replicas 7004->7001, 7005->7002, 7006->7003', () => {
    const nodes = [7001, 7002, 7003, 7004, 7005, 7006].map((p) => roleNode(`127.0.0.1:${p}`));
    const roles = allocateRoles(nodes, 3);
    expect(roles.masters).toEqual(['127.0.0.1:7001', '127.0.0.1:7002', '127.0.0.1:7003']);
    expect([...roles.replicaOf].sort()).toEqual([
      ['127.0.0.1:7004', '127.0.0.1:7001'],
      ['127.0.0.1:7005', '127.0.0.1:7002'],
      ['127.0.0.1:7006', '127.0.0.1:7003'],
    ]);
  });

  it('masters go on distinct hosts first even when the spec lists a host several times in a row', () => {
    // a:1 a:2 b:1 b:2 c:1 c:2 -> interleaved a:1 b:1 c:1 a:2 b:2 c:2
    const nodes = ['a:1', 'a:2', 'b:1', 'b:2', 'c:1', 'c:2'].map(roleNode);
    const roles = allocateRoles(nodes, 3);
    expect(roles.masters).toEqual(['a:1', 'b:1', 'c:1']);
    expect(colocated(nodes, roles)).toBe(0);
  });

  it('two hosts, 4 masters with 1 replica each: no replica on its master host', () => {
    const nodes = ['a:1', 'a:2', 'a:3', 'a:4', 'b:1', 'b:2', 'b:3', 'b:4'].map(roleNode);
    const roles = allocateRoles(nodes, 4);
    expect(roles.masters).toEqual(['a:1', 'b:1', 'a:2', 'b:2']);
    expect(colocated(nodes, roles)).toBe(0);
    expect([...replicasByMaster(roles).values()].map((r) => r.length)).toEqual([1, 1, 1, 1]);
  });

  it('keeps current masters and replica links; moves a replica whose master is over capacity', () => {
    const nodes = addressesOnOneHost(6);
    const current: CurrentRoles = {
      masters: ['h:4', 'h:2', 'h:3'],
      // h:5 and h:6 both follow h:4, which has room for one: the other moves; h:1 becomes a replica.
      replicaOf: new Map([
        ['h:5', 'h:4'],
        ['h:6', 'h:4'],
      ]),
    };
    const roles = allocateRoles(nodes, 3, current);
    expect(roles.masters).toEqual(['h:4', 'h:2', 'h:3']);
    const kept = [...current.replicaOf].filter(([r, m]) => roles.replicaOf.get(r) === m);
    expect(kept).toHaveLength(1); // h:4 has room for exactly one replica
    expect([...replicasByMaster(roles).values()].map((r) => r.length)).toEqual([1, 1, 1]);
    expect([...roles.replicaOf.keys()].sort()).toEqual(['h:1', 'h:5', 'h:6']);
  });

  it('interleaveByHost takes the first node of each host, then the second of each, ...', () => {
    const nodes = ['a:1', 'a:2', 'a:3', 'b:1', 'c:1', 'c:2'].map(roleNode);
    expect(interleaveByHost(nodes).map((n) => n.address)).toEqual(['a:1', 'b:1', 'c:1', 'a:2', 'c:2', 'a:3']);
  });

  it('replicaCapacities spreads evenly, the first masters taking the remainder', () => {
    expect(replicaCapacities(3, 3)).toEqual([1, 1, 1]);
    expect(replicaCapacities(3, 5)).toEqual([2, 2, 1]);
    expect(replicaCapacities(4, 2)).toEqual([1, 1, 0, 0]);
    expect(replicaCapacities(3, 0)).toEqual([0, 0, 0]);
  });
});

function addressesOnOneHost(n: number): RoleNode[] {
  return Array.from({ length: n }, (_, i) => ({ address: `h:${i + 1}`, host: 'h' }));
}

interface Scenario {
  nodes: RoleNode[];
  masters: number;
  replicasPerMaster: number;
}

/** 3..16 nodes over 1..6 hosts (in random spec order), replicasPerMaster 0..3, masters 3..n/(r+1). */
const scenario: fc.Arbitrary<Scenario> = fc
  .record({ n: fc.integer({ min: 3, max: 16 }), hostCount: fc.integer({ min: 1, max: 6 }), r: fc.integer({ min: 0, max: 3 }) })
  .chain(({ n, hostCount, r }) =>
    fc.record({
      hosts: fc.array(fc.integer({ min: 1, max: hostCount }), { minLength: n, maxLength: n }),
      masters: fc.integer({ min: 3, max: Math.max(3, Math.floor(n / (r + 1))) }),
      replicasPerMaster: fc.constant(r),
    }),
  )
  .map(({ hosts, masters, replicasPerMaster }) => ({
    nodes: hosts.map((h, i) => ({ address: `10.0.0.${h}:${7000 + i}`, host: `10.0.0.${h}` })),
    masters,
    replicasPerMaster,
  }));

describe('allocateRoles: properties', () => {
  it('every node gets exactly one role, and there are exactly `masters` masters', () => {
    fc.assert(
      fc.property(scenario, ({ nodes, masters }) => {
        const roles = allocateRoles(nodes, masters);
        expect(roles.masters).toHaveLength(masters);
        expect(new Set(roles.masters).size).toBe(masters);
        for (const r of roles.replicaOf.keys()) expect(roles.masters).not.toContain(r);
        for (const m of roles.replicaOf.values()) expect(roles.masters).toContain(m);
        expect([...roles.masters, ...roles.replicaOf.keys()].sort()).toEqual(nodes.map((n) => n.address).sort());
      }),
    );
  });

  it('masters are on min(masters, distinct hosts) distinct hosts', () => {
    fc.assert(
      fc.property(scenario, ({ nodes, masters }) => {
        const roles = allocateRoles(nodes, masters);
        const hosts = new Set(nodes.map((n) => n.host));
        expect(new Set(roles.masters.map((m) => hostOf(nodes, m))).size).toBe(Math.min(masters, hosts.size));
      }),
    );
  });

  it('replica counts differ by at most 1, and with enough nodes every master has replicasPerMaster', () => {
    fc.assert(
      fc.property(scenario, ({ nodes, masters, replicasPerMaster }) => {
        const counts = [...replicasByMaster(allocateRoles(nodes, masters)).values()].map((r) => r.length);
        expect(Math.max(...counts) - Math.min(...counts)).toBeLessThanOrEqual(1);
        if (nodes.length >= masters * (1 + replicasPerMaster)) {
          for (const c of counts) expect(c).toBeGreaterThanOrEqual(replicasPerMaster);
        }
      }),
    );
  });

  it('anti-affinity is optimal: as few replicas share their master host as any assignment with the same counts allows', () => {
    fc.assert(
      fc.property(scenario, ({ nodes, masters }) => {
        const roles = allocateRoles(nodes, masters);
        const seatsPerHost = new Map<string, number>();
        for (const [m, replicas] of replicasByMaster(roles)) {
          const h = hostOf(nodes, m);
          seatsPerHost.set(h, (seatsPerHost.get(h) ?? 0) + replicas.length);
        }
        const replicaHosts = [...roles.replicaOf.keys()].map((r) => hostOf(nodes, r));
        expect(colocated(nodes, roles)).toBe(bruteForceMinColocated(replicaHosts, seatsPerHost));
      }),
      { numRuns: 300 },
    );
  });

  it('the brute-force checker itself finds the known optimum of small cases', () => {
    // Two replicas on host a, seats: one on a, one on b -> one of them must share.
    expect(bruteForceMinColocated(['a', 'a'], new Map([['a', 1], ['b', 1]]))).toBe(1);
    expect(bruteForceMinColocated(['a', 'b'], new Map([['a', 1], ['b', 1]]))).toBe(0);
    expect(bruteForceMinColocated(['a', 'a', 'b'], new Map([['a', 2], ['b', 1]]))).toBe(1);
  });

  it('with current roles: current masters are kept, and valid current links are kept while the master has capacity', () => {
    const withCurrent = scenario.chain((s) =>
      fc.record({
        s: fc.constant(s),
        masterIdx: fc.shuffledSubarray(
          s.nodes.map((_, i) => i),
          { minLength: s.masters, maxLength: s.masters },
        ),
        // per node: -1 = no link, else the index of the node it claims to follow (may be a non-master: invalid)
        links: fc.array(fc.integer({ min: -1, max: s.nodes.length - 1 }), { minLength: s.nodes.length, maxLength: s.nodes.length }),
      }),
    );
    fc.assert(
      fc.property(withCurrent, ({ s, masterIdx, links }) => {
        const { nodes } = s;
        const at = (i: number): string => (nodes[i] as RoleNode).address;
        const current: CurrentRoles = { masters: masterIdx.map(at), replicaOf: new Map() };
        links.forEach((target, i) => {
          if (target >= 0 && target !== i && !masterIdx.includes(i)) current.replicaOf.set(at(i), at(target));
        });
        const roles = allocateRoles(nodes, s.masters, current);

        expect(roles.masters).toEqual(current.masters);
        expect([...roles.masters, ...roles.replicaOf.keys()].sort()).toEqual(nodes.map((n) => n.address).sort());
        const byMaster = replicasByMaster(roles);
        // The even spread, its larger shares going to the masters with the most replicas now.
        const capacity = replicaCapacities(s.masters, nodes.length - s.masters);
        const counts = roles.masters.map((m) => byMaster.get(m)?.length ?? 0);
        expect([...counts].sort((a, b) => b - a)).toEqual(capacity);
        const valid = (m: string) => [...current.replicaOf].filter(([, to]) => to === m).length;
        roles.masters.forEach((m, i) => {
          const kept = [...current.replicaOf].filter(([r, to]) => to === m && roles.replicaOf.get(r) === m).length;
          expect(kept).toBe(Math.min(valid(m), counts[i] ?? 0));
          roles.masters.forEach((o, j) => {
            if (valid(m) > valid(o)) expect(counts[i]).toBeGreaterThanOrEqual(counts[j] as number);
          });
        });
      }),
    );
  });
});
