import { writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../../src/apply/wait.js';
import { badKeys, everySlot, keysOn, loadKeys } from '../support/keys.js';
import { writeThroughout } from '../support/traffic.js';
import { localSpec, ports, rcluster, redisCli, withNode } from './support.js';

// The runbook's failover test on local processes: a master is shut down, its replica takes over,
// and the plan sees a healthy shard with one node down, not drift. The node comes back as a
// replica; with preferredMaster it takes its role back by a graceful failover.
const PORTS = ports(7631, 6);
const [P1, P2, P3, P4] = PORTS as [number, number, number, number];
const addr = (p: number) => `127.0.0.1:${p}`;
/** With a key in every slot, so that the slots the weight change moves carry keys. */
const KEYS = everySlot(20_000);
const local = localSpec('itest-failover', PORTS);
// The same cluster seen by an operator who manages topology only: connection none.
const noneFile = local.file.replace(/cluster\.yaml$/, 'none.yaml');

function writeSpecs(opts: { weightOfP2?: number; preferP1?: boolean } = {}): void {
  const node = (p: number) => {
    const fields = [`host: 127.0.0.1`, `port: ${p}`];
    if (p === P2 && opts.weightOfP2) fields.push(`weight: ${opts.weightOfP2}`);
    if (p === P1 && opts.preferP1) fields.push('preferredMaster: true');
    return `  - { ${fields.join(', ')} }`;
  };
  const body = ['replicasPerMaster: 1', 'masters: 3', 'redis:', '  nodeTimeout: 2000', 'nodes:', ...PORTS.map(node), ''];
  writeFileSync(local.file, ['name: itest-failover', 'connection: local', ...body].join('\n'));
  writeFileSync(noneFile, ['name: itest-failover', 'connection: none', ...body].join('\n'));
}

async function roleOf(port: number): Promise<string> {
  return /role:(\w+)/.exec(await withNode(port, (r) => r.info('replication')))?.[1] ?? '?';
}

describe("the runbook's failover test: a master goes down, its replica takes over", () => {
  beforeAll(async () => {
    writeSpecs();
    const r = await rcluster('apply', '-f', local.file, '--auto-approve');
    expect(r.code).toBe(0);
    await loadKeys(addr(P1), KEYS);
  });

  afterAll(async () => {
    await rcluster('destroy', '-f', local.file, '--auto-approve');
    local.cleanup();
  });

  it('shut a master down, its replica takes over; the plan shows the node down and no change; --allow-down gates other changes; it rejoins as a replica; preferredMaster takes it back', async () => {
    const writer = writeThroughout({ host: '127.0.0.1', port: P2 });
    try {
      expect(await roleOf(P1)).toBe('master');
      expect(await roleOf(P4)).toBe('slave');
      // As in the runbook: redis-cli shutdown on the master (it waits for its replica to catch up).
      await redisCli(['-p', String(P1), 'shutdown']);
      await waitFor('the replica to take over', async () => ((await roleOf(P4)) === 'master' ? true : 'not yet'), { timeoutMs: 30_000, intervalMs: 100 });
      // As the runbook checks with redis-trib info: every node that is up serves again.
      await waitFor(
        'every node that is up to report cluster_state:ok',
        async () => ((await Promise.all(PORTS.slice(1).map((p) => withNode(p, (r) => r.call('CLUSTER', 'INFO'))))).every((i) => String(i).includes('cluster_state:ok')) ? true : 'not yet'),
        { timeoutMs: 30_000, intervalMs: 100 },
      );

      // Topology-only view: the node is down, its shard is served; nothing to do.
      const plan = await rcluster('plan', '-f', noneFile, '--detailed-exitcode');
      expect(plan.err).toBe('');
      expect(plan.code).toBe(0);
      expect(plan.out).toContain(`Down: ${addr(P1)}: does not answer (connection refused); the cluster marks it failed; it is a master without slots (its replica took over).`);
      expect(plan.out).toContain('No changes. Cluster "itest-failover" matches the spec (6 nodes, 1 of them down).');
      const json = JSON.parse((await rcluster('plan', '-f', noneFile, '--json')).out) as { steps: unknown[]; down: { node: string }[] };
      expect(json.steps).toEqual([]);
      expect(json.down.map((d) => d.node)).toEqual([addr(P1)]);

      // Another change while it is away: planned without it, applied only with --allow-down.
      writeSpecs({ weightOfP2: 2 });
      const refused = await rcluster('apply', '-f', noneFile, '--auto-approve');
      expect(refused.code).toBe(1);
      expect(refused.err).toContain(`${addr(P1)} is down (does not answer (connection refused))`);
      expect(refused.err).toContain('--allow-down');
      expect(refused.out).toContain('move ');
      const owners = String(await withNode(P2, (r) => r.call('CLUSTER', 'NODES')));
      expect(owners).toMatch(new RegExp(`:${P2}@\\d+ myself,master - \\d+ \\d+ \\d+ connected 5461-10922\\n`));
      const before = await keysOn(addr(P2));
      const allowed = await rcluster('apply', '-f', noneFile, '--auto-approve', '--allow-down');
      expect(allowed.err).toBe('');
      expect(allowed.code).toBe(0);
      // 7632 goes from 5462 slots to 8192 (weight 2 of 4), each with at least one key.
      const received = [...allowed.out.matchAll(new RegExp(`move (\\d+) slot\\(s\\) .* → ${addr(P2)}`, 'g'))].reduce((n, m) => n + Number(m[1]), 0);
      expect(received).toBe(8192 - 5462);
      expect((await keysOn(addr(P2))) - before).toBeGreaterThanOrEqual(received);
      const after = await rcluster('plan', '-f', noneFile, '--detailed-exitcode');
      expect(after.code).toBe(0);
      expect(after.out).toContain('No changes.');

      // With connection local rcluster starts it again. Its old slots went to two masters while
      // it was away (the weight change), so which one Redis makes it follow is not certain: the
      // plan gives it its place explicitly, and touches nothing else.
      const start = await rcluster('plan', '-f', local.file);
      expect(start.out).toContain(`+ start ${addr(P1)}`);
      expect(start.out.match(/make .* a replica of .*/g)).toEqual([`make ${addr(P1)} a replica of ${addr(P4)}`]);
      expect(start.out).not.toMatch(/move |CLUSTER FAILOVER/);
      expect((await rcluster('apply', '-f', local.file, '--auto-approve')).code).toBe(0);
      expect(await roleOf(P1)).toBe('slave');
      const empty = await rcluster('plan', '-f', local.file, '--detailed-exitcode');
      expect(empty.out).toContain('No changes.');
      expect(empty.code).toBe(0);

      // preferredMaster: a graceful failover back, no slot moves.
      writeSpecs({ weightOfP2: 2, preferP1: true });
      const back = await rcluster('plan', '-f', local.file);
      expect(back.out).toContain(`~ ${addr(P1)} takes its shard's master role back from ${addr(P4)} (CLUSTER FAILOVER; it is preferredMaster)`);
      expect(back.out).not.toContain('move ');
      expect((await rcluster('apply', '-f', local.file, '--auto-approve')).code).toBe(0);
      expect(await roleOf(P1)).toBe('master');
      expect(await roleOf(P4)).toBe('slave');
      expect((await rcluster('plan', '-f', local.file, '--detailed-exitcode')).code).toBe(0);
    } finally {
      const result = await writer.finish();
      expect(result.acked).toBeGreaterThan(10);
      expect(result.wrong).toEqual([]);
    }
    expect(await badKeys(addr(P2), KEYS)).toEqual([]);
    const check = await redisCli(['--cluster', 'check', addr(P2)]);
    expect(check.out).toContain('[OK] All 16384 slots covered.');
    expect(check.out).not.toMatch(/\[WARNING\]|\[ERR\]/);
  });
});
