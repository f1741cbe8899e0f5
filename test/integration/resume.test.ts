import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { executePlan } from '../../src/apply/execute.js';
import { createLocalDriver } from '../../src/hosts/local.js';
import { inspectCluster } from '../../src/live/inspect.js';
import { computePlan } from '../../src/plan/diff.js';
import { loadSpec, requireSpec } from '../../src/spec/load.js';
import { answers, localSpec, ports, rcluster, withNode } from './support.js';

const PORTS = ports(7301, 6);
const spec = localSpec('itest-resume', PORTS);

async function planNow() {
  const desired = requireSpec(await loadSpec(spec.file));
  return computePlan(desired, await inspectCluster(desired, { driver: createLocalDriver() }));
}

async function expectHealthyAndConverged() {
  const status = await rcluster('status', '-f', spec.file, '--json');
  expect(JSON.parse(status.out), status.out).toMatchObject({ healthy: true });
  expect(status.code).toBe(0);
  const again = await rcluster('plan', '-f', spec.file, '--detailed-exitcode');
  expect(again.out).toContain('No changes.');
  expect(again.code).toBe(0);
}

describe('an apply cut off part-way is finished by the next plan', () => {
  afterEach(async () => {
    await rcluster('destroy', '-f', spec.file, '--auto-approve');
  });
  afterAll(() => spec.cleanup());

  // Each cut stops after the last step of one kind, as a kill -9 of apply there would.
  // `exact`: the remaining kinds, in order; otherwise the kinds allowed (gossip may be part-way).
  it.each([
    { cutAfter: 'provision_node', exact: ['add_slots', 'set_config_epoch', 'meet_node', 'wait_join', 'wait_cluster_ok', 'replicate', 'wait_replication'] },
    { cutAfter: 'add_slots', exact: ['set_config_epoch', 'meet_node', 'wait_join', 'wait_cluster_ok', 'replicate', 'wait_replication'] },
    { cutAfter: 'meet_node', allowed: ['meet_node', 'wait_join', 'wait_cluster_ok', 'replicate', 'wait_replication'], required: ['replicate', 'wait_replication'] },
  ])('cut after $cutAfter: the next plan shows only what is left, and apply completes it', async ({ cutAfter, exact, allowed, required }) => {
    const full = await planNow();
    const cut = full.steps.map((s) => s.kind).lastIndexOf(cutAfter as never) + 1;
    await executePlan({ ...full, steps: full.steps.slice(0, cut) }, { driver: createLocalDriver() }, () => {});

    const rest = await planNow();
    const kinds = [...new Set(rest.steps.map((s) => s.kind))];
    if (exact) expect(kinds).toEqual(exact);
    else {
      expect(kinds.filter((k) => !allowed?.includes(k))).toEqual([]);
      expect(kinds).toEqual(expect.arrayContaining(required ?? []));
    }

    const applied = await rcluster('apply', '-f', spec.file, '--auto-approve', '--json');
    expect({ code: applied.code, err: applied.err }).toEqual({ code: 0, err: '' });
    await expectHealthyAndConverged();
  });

  it('cut after replicate: attached replicas are not drift, and the cluster ends healthy', async () => {
    const full = await planNow();
    const cut = full.steps.map((s) => s.kind).lastIndexOf('replicate') + 1;
    await executePlan({ ...full, steps: full.steps.slice(0, cut) }, { driver: createLocalDriver() }, () => {});
    expect((await planNow()).steps).toEqual([]);
    // The sync itself was the one step cut off; wait for it as apply would have.
    await executePlan({ ...full, steps: full.steps.slice(cut) }, { driver: createLocalDriver() }, () => {});
    await expectHealthyAndConverged();
  });

  it('a node that stopped is restarted with its saved state and rejoins; no slot moves', async () => {
    expect((await rcluster('apply', '-f', spec.file, '--auto-approve', '--json')).code).toBe(0);
    await withNode(7305, (r) => r.call('SHUTDOWN', 'NOSAVE').catch(() => {}));
    for (let i = 0; i < 200 && (await answers(7305)); i++) await new Promise((r) => setTimeout(r, 25));

    const status = await rcluster('status', '-f', spec.file);
    expect(status.code).toBe(1);
    expect(status.out).toContain('[ERR] unreachable: 127.0.0.1:7305 (connection refused)');
    expect(status.out).toContain('Unhealthy');

    const plan = await rcluster('plan', '-f', spec.file, '--detailed-exitcode');
    expect(plan.code).toBe(2);
    expect(plan.out).toMatch(/\+ start 127\.0\.0\.1:7305 \(not running; restarts with the state in .*nodes-7305\.conf\)/);
    expect(plan.out).not.toContain('assign slots');
    expect(plan.out).not.toContain('meet ');

    expect((await rcluster('apply', '-f', spec.file, '--auto-approve', '--json')).code).toBe(0);
    await expectHealthyAndConverged();
  });
});
