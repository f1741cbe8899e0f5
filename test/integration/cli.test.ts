import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../../src/apply/wait.js';
import { answers, localSpec, ports, rcluster, rclusterBin, withNode } from './support.js';

const NO_STACK = /^\s+at .+\(.+:\d+:\d+\)$/m;

describe('bad input: a clear message, exit 1, no stack trace, nothing touched', () => {
  const dir = mkdtempSync(join(tmpdir(), 'rcluster-cli-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('validate reports a port out of range at its line, on stderr, with exit 1', async () => {
    const file = join(dir, 'bad-port.yaml');
    writeFileSync(file, ['name: bad', 'connection: local', 'nodes:', '  - 127.0.0.1:7201', '  - 127.0.0.1:99999', '  - 127.0.0.1:7203', ''].join('\n'));
    const r = await rclusterBin(['validate', '-f', file]);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:5:\\d+: .*99999`, 'm'));
    expect(r.err).not.toMatch(NO_STACK);
    expect(r.out).toBe('');
  });

  it('plan and apply refuse an invalid spec the same way, before contacting any node', async () => {
    const file = join(dir, 'bad-key.yaml');
    writeFileSync(file, ['name: bad', 'connection: local', 'replicas: 1', 'nodes: [127.0.0.1:7201, 127.0.0.1:7202, 127.0.0.1:7203]', ''].join('\n'));
    for (const cmd of [['plan'], ['apply', '--auto-approve']]) {
      const r = await rclusterBin([...cmd, '-f', file]);
      expect(r.code).toBe(1);
      expect(r.err).toContain(`${file}:3:1: unknown key "replicas"`);
      expect(r.err).not.toMatch(NO_STACK);
    }
    expect(existsSync(join(dir, '.rcluster'))).toBe(false);
  });

  it('a missing spec file is one line', async () => {
    const r = await rclusterBin(['plan', '-f', join(dir, 'nope.yaml')]);
    expect(r.code).toBe(1);
    expect(r.err.trim().split('\n')).toEqual([`Error: cannot read ${join(dir, 'nope.yaml')}: no such file`]);
  });

  it('an unknown command or option exits 1 with usage help', async () => {
    const r = await rclusterBin(['plan', '--frobnicate']);
    expect(r.code).toBe(1);
    expect(r.err).toContain("unknown option '--frobnicate'");
  });

  it('--help lists the commands with examples', async () => {
    const r = await rclusterBin(['--help']);
    expect(r.code).toBe(0);
    for (const cmd of ['validate', 'plan', 'apply', 'status', 'destroy']) expect(r.out).toContain(cmd);
    expect(r.out).toContain('rcluster apply -f examples/local.yaml --auto-approve');
  });

  it('destroy refuses connections other than local and says why', async () => {
    const file = join(dir, 'none.yaml');
    writeFileSync(file, ['name: remote', 'connection: none', 'replicasPerMaster: 0', 'nodes: [127.0.0.1:7201, 127.0.0.1:7202, 127.0.0.1:7203]', ''].join('\n'));
    const r = await rclusterBin(['destroy', '-f', file, '--auto-approve']);
    expect(r.code).toBe(1);
    expect(r.err).toContain('destroy supports connection: local only');
  });

  it('connection: none with nodes that do not answer is refused with the node named', async () => {
    const file = join(dir, 'none-down.yaml');
    writeFileSync(file, ['name: remote', 'connection: none', 'replicasPerMaster: 0', 'nodes: [127.0.0.1:7211, 127.0.0.1:7212, 127.0.0.1:7213]', ''].join('\n'));
    const r = await rclusterBin(['plan', '-f', file]);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/127\.0\.0\.1:7211: it does not answer \(connection refused\); with connection: none/);
  });
});

describe('apply asks before changing anything', () => {
  const spec = localSpec('itest-confirm', ports(7221, 3), 'replicasPerMaster: 0');
  afterAll(async () => {
    await rcluster('destroy', '-f', spec.file, '--auto-approve');
    spec.cleanup();
  });

  it('status of a cluster with no node running says so and exits 1', async () => {
    const r = await rcluster('status', '-f', spec.file);
    expect(r.code).toBe(1);
    expect(r.out).toContain('[ERR] no node answers as a cluster node');
    expect(r.out).toContain('[ERR] unreachable: 127.0.0.1:7221 (connection refused)');
  });

  it('without a terminal and without --auto-approve it refuses, and starts nothing', async () => {
    const r = await rclusterBin(['apply', '-f', spec.file]);
    expect(r.code).toBe(1);
    expect(r.out).toContain('+ start 127.0.0.1:7221 (not running)');
    expect(r.err).toContain('re-run with --auto-approve');
    for (const p of ports(7221, 3)) expect(await answers(p)).toBe(false);
    expect(existsSync(join(spec.dir, '.rcluster'))).toBe(false);
  });
});

describe('a port taken by a redis-server that rcluster did not start', () => {
  const spec = localSpec('itest-foreign', ports(7231, 3), 'replicasPerMaster: 0');
  let foreign: ChildProcess;

  beforeAll(async () => {
    // Cluster-enabled, so that it looks like one of ours to anything but its config file.
    foreign = spawn('redis-server', ['--port', '7232', '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--cluster-enabled', 'yes', '--cluster-config-file', join(spec.dir, 'foreign-nodes.conf')], { stdio: 'ignore' });
    for (let i = 0; i < 200 && !(await answers(7232)); i++) await new Promise((r) => setTimeout(r, 25));
  });
  afterAll(() => {
    foreign.kill();
    spec.cleanup();
  });

  it('plan and apply refuse, naming the node, and touch nothing', async () => {
    const r = await rclusterBin(['apply', '-f', spec.file, '--auto-approve']);
    expect(r.code).toBe(1);
    expect(r.err).toContain('127.0.0.1:7232 is a redis-server started from no config file, not from');
    expect(r.err).toContain('rcluster did not start it and will not take it over');
    expect(await answers(7232)).toBe(true);
    expect(await answers(7231)).toBe(false);
    expect(existsSync(join(spec.dir, '.rcluster'))).toBe(false);
    expect(await withNode(7232, (r) => r.call('CLUSTER', 'INFO'))).toContain('cluster_known_nodes:1');
    const destroy = await rclusterBin(['destroy', '-f', spec.file, '--auto-approve']);
    expect(destroy.code).toBe(1);
    expect(destroy.err).toContain('127.0.0.1:7232 is a redis-server started from no config file');
    expect(await answers(7232)).toBe(true);
  });
});

describe('saved plans', () => {
  const spec = localSpec('itest-planfile', ports(7241, 3), 'replicasPerMaster: 0');
  afterAll(async () => {
    await rcluster('destroy', '-f', spec.file, '--auto-approve');
    spec.cleanup();
  });

  it('apply PLANFILE performs exactly the saved plan; a plan made stale by a change is refused', async () => {
    const planFile = join(spec.dir, 'plan.json');
    const stalePlan = join(spec.dir, 'stale.json');
    const planned = await rcluster('plan', '-f', spec.file, '--out', planFile, '--detailed-exitcode');
    expect(planned.code).toBe(2);
    expect(planned.out).toContain(`rcluster apply ${planFile}`);
    expect((await rcluster('plan', '-f', spec.file, '--out', stalePlan)).code).toBe(0);

    const applied = await rcluster('apply', planFile, '--json');
    expect(applied.code).toBe(0);
    const events = applied.out.split('\n').map((l) => JSON.parse(l) as { type: string; title?: string });
    expect(events[0]?.type).toBe('plan');
    expect(events.filter((e) => e.type === 'step_done').map((e) => e.title)).toContain('assign slots 0-5460 (5461) to 127.0.0.1:7241');
    expect(events[events.length - 1]?.type).toBe('apply_complete');
    expect(await withNode(7241, (r) => r.call('CLUSTER', 'INFO'))).toContain('cluster_state:ok');

    const stale = await rcluster('apply', stalePlan);
    expect(stale.code).toBe(1);
    // It names what changed: the apply above gave every node slots and met them.
    expect(stale.err).toContain(`${stalePlan}: saved plan is stale: 127.0.0.1:7241 changed (roles, slots, membership, config file or data)`);
    expect(stale.err).toContain('; run rcluster plan again');

    const notAPlan = await rcluster('apply', spec.file);
    expect(notAPlan.code).toBe(1);
    expect(notAPlan.err).toContain('is not a plan file written by rcluster plan --out');

    const both = await rcluster('apply', planFile, '-f', spec.file);
    expect(both.code).toBe(1);
    expect(both.err).toContain(`give either a plan file (${planFile}) or -f ${spec.file}, not both`);

    const planAsSpec = await rcluster('plan', '-f', planFile);
    expect(planAsSpec.code).toBe(1);
    expect(planAsSpec.err.trim()).toBe(`Error: ${planFile} is a plan saved by rcluster plan --out; apply it with: rcluster apply ${planFile}`);

    const badOut = await rcluster('plan', '-f', spec.file, '--out', join(spec.dir, 'no', 'such', 'dir', 'p.json'));
    expect(badOut.code).toBe(1);
    expect(badOut.err.trim()).toBe(`Error: cannot write the plan to ${join(spec.dir, 'no', 'such', 'dir', 'p.json')}: no such directory`);
  });
});

describe('a step that fails mid-apply', () => {
  const spec = localSpec('itest-fail', ports(7251, 4), 'masters: 3');
  afterAll(async () => {
    await rcluster('destroy', '-f', spec.file, '--auto-approve');
    spec.cleanup();
  });

  it('is named with what was already done, and the next plan shows how to finish', async () => {
    const planFile = join(spec.dir, 'plan.json');
    expect((await rcluster('plan', '-f', spec.file, '--out', planFile)).code).toBe(0);
    // Tamper with the saved plan so that one step is one Redis refuses.
    const plan = JSON.parse(readFileSync(planFile, 'utf8')) as { steps: { kind: string; node?: string; master?: string }[] };
    const replicate = plan.steps.find((s) => s.kind === 'replicate');
    if (!replicate) throw new Error('expected a replicate step');
    replicate.master = replicate.node;
    writeFileSync(planFile, JSON.stringify(plan));

    const r = await rclusterBin(['apply', planFile]);
    expect(r.code).toBe(1);
    expect(r.err).toContain(`Error: step failed: make ${replicate.node} a replica of ${replicate.node}: ERR Can't replicate myself`);
    expect(r.err).toMatch(/Already done:\n  - start 127\.0\.0\.1:7251 \(not running\)/);
    expect(r.err).toContain('  - wait until 4 nodes agree on slots and report cluster_state:ok');
    expect(r.err).toContain(`Run \`rcluster plan -f ${spec.file}\` to see what is left.`);
    expect(r.err).not.toMatch(NO_STACK);

    const next = await rcluster('plan', '-f', spec.file, '--json');
    const steps = (JSON.parse(next.out) as { steps: { kind: string; node: string }[] }).steps;
    expect(steps.map((s) => s.kind)).toEqual(['replicate', 'wait_replication']);
    expect(steps[0]?.node).toBe(replicate.node);
    expect((await rcluster('apply', '-f', spec.file, '--auto-approve', '--json')).code).toBe(0);
    expect((await rcluster('plan', '-f', spec.file, '--detailed-exitcode')).code).toBe(0);
  });
});

describe('two applies at once on one local cluster', () => {
  const spec = localSpec('itest-lock', ports(7261, 3), 'replicasPerMaster: 0');
  afterAll(async () => {
    await rcluster('destroy', '-f', spec.file, '--auto-approve');
    spec.cleanup();
  });

  it('the second is refused while the first holds the lock, and the lock is gone afterwards', async () => {
    const lock = join(spec.dir, '.rcluster', 'itest-lock', 'apply.lock');
    const first = rclusterBin(['apply', '-f', spec.file, '--auto-approve']);
    await waitFor('the first apply to take the lock', async () => (existsSync(lock) ? true : 'no lock yet'), { timeoutMs: 10_000, intervalMs: 10 });
    const second = await rcluster('apply', '-f', spec.file, '--auto-approve');
    expect(second.code).toBe(1);
    expect(second.err).toMatch(/^Error: another rcluster \(pid \d+\) is changing cluster "itest-lock" right now; wait for it to finish/);
    expect((await first).code).toBe(0);
    expect(existsSync(lock)).toBe(false);
    expect((await rcluster('plan', '-f', spec.file, '--detailed-exitcode')).code).toBe(0);
  });
});
