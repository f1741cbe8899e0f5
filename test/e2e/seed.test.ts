import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../../src/apply/wait.js';
import { writeThroughout } from '../support/traffic.js';
import { startTestHosts, type Harness } from '../harness/index.js';
import { harnessSpec, RUNBOOK_REDIS } from '../harness/spec.js';
import { rcluster, redisCli, withNode } from '../integration/support.js';

// The runbook's create, on test hosts 127.0.0.51-56: node N on 127.0.0.5N:635N.
const HOSTS = [51, 52, 53, 54, 55, 56];
const BIN = fileURLToPath(new URL('../../bin/rcluster.js', import.meta.url));
const addr = (n: number) => `127.0.0.${n}`;
const portOf = (n: number) => 6300 + n;

function seedSpec(h: Harness, nodeTimeout: number, config: string[] = []): string {
  return harnessSpec(h, {
    name: 'seed-e2e',
    redis: { ...RUNBOOK_REDIS, nodeTimeout },
    config,
    replicasPerMaster: 1,
    nodes: HOSTS.map((n) => `${addr(n)}:${portOf(n)}`),
  });
}

describe("the runbook's create over SSH, on six fresh hosts", () => {
  let h: Harness;
  let dir: string;
  let file: string;

  beforeAll(async () => {
    h = await startTestHosts(HOSTS);
    dir = mkdtempSync(join(tmpdir(), 'rcluster-e2e-seed-'));
    file = join(dir, 'cluster.yaml');
    writeFileSync(file, seedSpec(h, 5000));
  });

  afterAll(async () => {
    await h?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('plan shows a config diff for every host and the create steps, and changes nothing', async () => {
    const plan = await rcluster('plan', '-f', file, '--detailed-exitcode');
    expect(plan.err).toBe('');
    expect(plan.code).toBe(2);
    for (const n of HOSTS) {
      expect(plan.out).toContain(`configure ${addr(n)}:${portOf(n)} and restart it as a cluster node through /etc/init.d/redis_6379 (replaces the standalone redis on ${addr(n)}:6379)`);
    }
    expect(plan.out.match(/^ +-port 6379$/gm)).toHaveLength(6);
    expect(plan.out.match(/^ +\+cluster-enabled yes$/gm)).toHaveLength(6);
    expect(plan.out).toContain(`+port ${portOf(51)}`);
    expect(plan.out).toContain('+cluster-node-timeout 5000');
    expect(plan.out).toContain('+protected-mode no');
    expect(plan.out).toContain('Warning: the cluster has no password');
    expect(plan.out).toContain(`+ assign slots 0-5460 (5461) to ${addr(51)}:${portOf(51)}`);
    expect(plan.out).toMatch(/Plan: 6 node\(s\) to provision, 5 to meet, 16384 slot\(s\) to assign, 3 replica\(s\) to attach\./);
    // Nothing changed on the hosts.
    for (const n of HOSTS) {
      expect(readFileSync(h.hosts.find((x) => x.n === n)!.path('/etc/redis/6379.conf'), 'utf8')).toContain('\nport 6379\n');
      expect(await withNode6379(n)).toBe('PONG');
    }
  });

  it('apply turns them into the seed cluster', async () => {
    const t0 = Date.now();
    const applied = await rcluster('apply', '-f', file, '--auto-approve', '--json');
    const ms = Date.now() - t0;
    expect(applied.err).toBe('');
    expect(applied.code).toBe(0);
    console.log(`fresh hosts to a healthy cluster over SSH: ${ms} ms`);

    for (const n of HOSTS) {
      const host = h.hosts.find((x) => x.n === n)!;
      const conf = readFileSync(host.path('/etc/redis/6379.conf'), 'utf8');
      expect(conf).toMatch(new RegExp(`^port ${portOf(n)}$`, 'm'));
      expect(conf).toMatch(new RegExp(`^bind ${addr(n).replace(/\./g, '\\.')}$`, 'm'));
      expect(conf).toMatch(/^cluster-enabled yes$/m);
      expect(conf).toMatch(/^cluster-config-file nodes-6379\.conf$/m);
      expect(conf).toMatch(/^cluster-node-timeout 5000$/m);
      // The fresh host's own settings and comments stay.
      expect(conf).toContain('# Redis configuration file example.');
      expect(conf).toMatch(/^pidfile \/var\/run\/redis_6379\.pid$/m);
      expect(conf).toMatch(/^logfile \/var\/log\/redis_6379\.log$/m);
      expect(readFileSync(host.path('/etc/redis/6379.conf.rcluster.bak'), 'utf8')).toMatch(/^port 6379$/m);
      expect(readFileSync(host.path('/var/lib/redis/6379/nodes-6379.conf'), 'utf8')).toContain('myself');
      // The standalone instance is gone.
      expect(await withNode6379(n).catch(() => 'refused')).toBe('refused');
    }
    const infos = await Promise.all(HOSTS.map((n) => withNodeAt(n, (r) => r.call('CLUSTER', 'INFO'))));
    for (const info of infos) expect(String(info)).toContain('cluster_state:ok');
    const status = await rcluster('status', '-f', file, '--json');
    expect(status.code).toBe(0);
    const s = JSON.parse(status.out) as { masters: { address: string; slots: number; replicas: { address: string; linkUp: boolean }[] }[] };
    expect(s.masters.map((m) => m.slots)).toEqual([5461, 5462, 5461]);
    for (const m of s.masters) {
      expect(m.replicas).toHaveLength(1);
      expect(m.replicas[0]?.linkUp).toBe(true);
      // A replica never shares its master's host.
      expect(m.replicas[0]?.address.split(':')[0]).not.toBe(m.address.split(':')[0]);
    }
  });

  it('a -c write through one node reads back through another', async () => {
    expect((await redisCli(['-c', '-h', addr(51), '-p', String(portOf(51)), 'set', 'seed', 'ok'])).out.trim()).toBe('OK');
    expect((await redisCli(['-c', '-h', addr(56), '-p', String(portOf(56)), 'get', 'seed'])).out.trim()).toBe('ok');
  });

  it('a second plan says No changes.', async () => {
    const plan = await rcluster('plan', '-f', file, '--detailed-exitcode');
    expect(plan.out).toContain('No changes.');
    expect(plan.code).toBe(0);
  });

  it('nodeTimeout: 6000 is applied live, without restarting any node', async () => {
    const before = await Promise.all(HOSTS.map((n) => withNodeAt(n, async (r) => /process_id:(\d+)/.exec(await r.info('server'))?.[1])));
    writeFileSync(file, seedSpec(h, 6000));
    const plan = await rcluster('plan', '-f', file);
    expect(plan.out.match(/~ set cluster-node-timeout 6000 on .* live \(no restart\)/g)).toHaveLength(6);
    expect(plan.out).not.toContain('restart ');
    const applied = await rcluster('apply', '-f', file, '--auto-approve', '--json');
    expect(applied.code).toBe(0);
    const after = await Promise.all(HOSTS.map((n) => withNodeAt(n, async (r) => /process_id:(\d+)/.exec(await r.info('server'))?.[1])));
    expect(after).toEqual(before);
    for (const n of HOSTS) {
      expect(await withNodeAt(n, (r) => r.call('CONFIG', 'GET', 'cluster-node-timeout'))).toEqual(['cluster-node-timeout', '6000']);
      expect(readFileSync(h.hosts.find((x) => x.n === n)!.path('/etc/redis/6379.conf'), 'utf8')).toMatch(/^cluster-node-timeout 6000$/m);
    }
    expect((await rcluster('plan', '-f', file, '--detailed-exitcode')).code).toBe(0);
  });

  it('a directive that needs a restart restarts one node at a time, replicas first, and the cluster stays whole', { timeout: 300_000 }, async () => {
    const pid = (n: number) => withNodeAt(n, async (r) => /process_id:(\d+)/.exec(await r.info('server'))?.[1]);
    const before = await Promise.all(HOSTS.map(pid));
    const roleOf = new Map<string, string | undefined>(await Promise.all(HOSTS.map(async (n) => [`${addr(n)}:${portOf(n)}` as string, await withNodeAt(n, async (r) => /role:(\w+)/.exec(await r.info('replication'))?.[1])] as const)));
    writeFileSync(file, seedSpec(h, 6000, ['io-threads: 2']));

    const plan = await rcluster('plan', '-f', file, '--json');
    const restarts = (JSON.parse(plan.out) as { steps: { kind: string; node: string }[] }).steps.filter((s) => s.kind === 'restart_node');
    expect(restarts).toHaveLength(6);
    expect(restarts.map((s) => roleOf.get(s.node))).toEqual(['slave', 'slave', 'slave', 'master', 'master', 'master']);

    const applied = await rcluster('apply', '-f', file, '--auto-approve', '--json');
    expect(applied.err).toBe('');
    expect(applied.code).toBe(0);
    // One restart at a time: each finishes before the next starts.
    const events = applied.out.split('\n').map((l) => JSON.parse(l) as { type: string; title?: string });
    const restartEvents = events.filter((e) => (e.type === 'step_start' || e.type === 'step_done') && e.title?.startsWith('restart '));
    expect(restartEvents.map((e) => e.type)).toEqual(Array.from({ length: 6 }, () => ['step_start', 'step_done']).flat());

    const after = await Promise.all(HOSTS.map(pid));
    after.forEach((p, i) => expect(p).not.toBe(before[i]));
    for (const n of HOSTS) expect(await withNodeAt(n, (r) => r.call('CONFIG', 'GET', 'io-threads'))).toEqual(['io-threads', '2']);
    const status = await rcluster('status', '-f', file);
    expect(status.code).toBe(0);
    expect(await redisCli(['-c', '-h', addr(53), '-p', String(portOf(53)), 'get', 'seed']).then((r) => r.out.trim())).toBe('ok');
    expect((await rcluster('plan', '-f', file, '--detailed-exitcode')).code).toBe(0);
  });

  it("the runbook's failover test: a master's host goes down, its replica takes over, the plan proposes nothing; back up, it rejoins as a replica", { timeout: 120_000 }, async () => {
    const roles = await Promise.all(HOSTS.map(async (n) => ({ n, info: await withNodeAt(n, (r) => r.info('replication')) })));
    const master = roles.find((x) => /role:master/.test(x.info))!.n;
    const replica = roles.find((x) => new RegExp(`master_port:${portOf(master)}\\b`).test(x.info))!.n;
    const writer = writeThroughout({ host: addr(replica), port: portOf(replica) });
    try {
      // As in the runbook (redis-cli shutdown), then the whole host goes away, sshd included.
      await h.stopHost(master, { graceful: true });
      await waitFor('the replica to take over', async () => (/role:master/.test(await withNodeAt(replica, (r) => r.info('replication'))) ? true : 'not yet'), { timeoutMs: 60_000, intervalMs: 200 });
      // As the runbook checks with redis-trib info: every node that is up serves again.
      const up = HOSTS.filter((n) => n !== master);
      await waitFor(
        'every node that is up to report cluster_state:ok',
        async () => ((await Promise.all(up.map((n) => withNodeAt(n, (r) => r.call('CLUSTER', 'INFO'))))).every((i) => String(i).includes('cluster_state:ok')) ? true : 'not yet'),
        { timeoutMs: 30_000, intervalMs: 200 },
      );

      const plan = await rcluster('plan', '-f', file, '--detailed-exitcode');
      expect(plan.err).toBe('');
      // The whole output on failure: what the plan proposed instead.
      expect({ code: plan.code, out: plan.out }).toEqual({ code: 0, out: expect.stringContaining('No changes.') as unknown });
      expect(plan.out).toContain(`Down: ${addr(master)}:${portOf(master)}: host down (ssh: connection refused); the cluster marks it failed; it is a master without slots (its replica took over).`);
      expect(plan.out).toContain('No changes. Cluster "seed-e2e" matches the spec (6 nodes, 1 of them down).');

      // The host boots; its redis starts from its init script, as in the runbook.
      await h.startHost(master);
      await waitFor(
        'the old master to rejoin as a replica',
        async () => {
          const info = await withNodeAt(master, (r) => r.info('replication')).catch(() => '');
          return /role:slave/.test(info) && /master_link_status:up/.test(info) ? true : 'not yet';
        },
        { timeoutMs: 60_000, intervalMs: 200 },
      );
      await waitFor('every node to agree', async () => ((await rcluster('plan', '-f', file, '--detailed-exitcode')).code === 0 ? true : 'plan not empty yet'), { timeoutMs: 30_000, intervalMs: 500 });
      const empty = await rcluster('plan', '-f', file, '--detailed-exitcode');
      expect(empty.out).toContain('No changes. Cluster "seed-e2e" matches the spec (6 nodes).');
    } finally {
      const result = await writer.finish();
      expect(result.acked).toBeGreaterThan(10);
      expect(result.wrong).toEqual([]);
    }
  });

  it('two applies at once from two processes: the second is refused with the holder named; a holder gone quiet is taken over with --force-unlock, and stops if it comes back', { timeout: 120_000 }, async () => {
    writeFileSync(file, seedSpec(h, 7000, ['io-threads: 2']));
    // Apply A runs in a terminal (script gives it one) and waits at its "yes" prompt, holding the
    // lock, as an operator who walked away from it would.
    const a = spawn('script', ['-qfec', `${process.execPath} ${BIN} apply -f ${file}`, '/dev/null'], { env: { ...process.env, NO_COLOR: '1' } });
    let aOut = '';
    a.stdout.on('data', (d: Buffer) => (aOut += d.toString()));
    a.stderr.on('data', (d: Buffer) => (aOut += d.toString()));
    const aExit = new Promise<number | null>((res) => a.on('exit', (code) => res(code)));
    try {
      await waitFor('apply A to ask for "yes"', async () => (aOut.includes('Do you want to perform these actions?') ? true : 'not yet'), { timeoutMs: 30_000, intervalMs: 20 });

      const b = await rcluster('apply', '-f', file, '--auto-approve');
      expect(b.code).toBe(1);
      expect(b.err).toMatch(
        /^Error: cluster "seed-e2e" is locked: another rcluster is changing it: \S+@\S+ \(pid \d+\) since \d{4}-\d\d-\d\dT[\d:.]+Z \(\d+ s ago\), seen on (127\.0\.0\.5\d:635\d from [\d.]+:\d+|host 127\.0\.0\.5\d from its SSH session); lock id \S+\. Wait for it to finish\./,
      );
      const id = /--force-unlock (\S+)$/.exec(b.err.trim())?.[1];
      expect(id).toMatch(/^\S+@\S+\/\d+\/\d+$/);
      // Nothing was changed by the refused apply.
      for (const n of HOSTS) expect(await withNodeAt(n, (r) => r.call('CONFIG', 'GET', 'cluster-node-timeout'))).toEqual(['cluster-node-timeout', '6000']);

      const wrong = await rcluster('apply', '-f', file, '--auto-approve', '--force-unlock', 'nobody@nowhere/1/1');
      expect(wrong.code).toBe(1);
      expect(wrong.err).toContain('--force-unlock nobody@nowhere/1/1: no such lock');

      const taken = await rcluster('apply', '-f', file, '--auto-approve', '--json', '--force-unlock', id!);
      expect(taken.err).toBe('');
      expect(taken.code).toBe(0);
      for (const n of HOSTS) expect(await withNodeAt(n, (r) => r.call('CONFIG', 'GET', 'cluster-node-timeout'))).toEqual(['cluster-node-timeout', '7000']);

      // The operator comes back and says yes: A's lock is gone, so it stops before its first step.
      a.stdin.write('yes\r');
      const code = await aExit;
      expect({ code, out: aOut }).toEqual({ code: 1, out: expect.stringContaining('the cluster lock is no longer this apply') as unknown });
    } finally {
      a.kill('SIGKILL');
    }
    const again = await rcluster('plan', '-f', file, '--detailed-exitcode');
    expect(again.out).toContain('No changes.');
  });

  function withNodeAt<T>(n: number, fn: Parameters<typeof withNode<T>>[1]): Promise<T> {
    return withNode(portOf(n), fn, addr(n));
  }
  function withNode6379(n: number): Promise<string> {
    return withNode(6379, (r) => r.ping(), addr(n));
  }
});
