import { execFile, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Cluster } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../../src/apply/wait.js';
import { answers, localSpec, ports, rcluster, withNode } from './support.js';

const run = promisify(execFile);
const BIN = fileURLToPath(new URL('../../bin/rcluster.js', import.meta.url));

// A running cluster with data: config changes, bad config, and a failover. No key may be lost.
const PORTS = ports(7501, 6);
const KEYS = 300;
const spec = localSpec('itest-running', PORTS, 'redis:\n  nodeTimeout: 1000');
const baseSpec = readFileSync(spec.file, 'utf8');

function withConfig(lines: string[]): void {
  writeFileSync(spec.file, baseSpec.replace('  nodeTimeout: 1000', ['  nodeTimeout: 1000', '  config:', ...lines.map((l) => `    ${l}`)].join('\n')));
}

async function allKeys(): Promise<number> {
  const cluster = new Cluster([{ host: '127.0.0.1', port: 7501 }], { lazyConnect: true });
  try {
    await cluster.connect();
    const values = await Promise.all(Array.from({ length: KEYS }, (_, i) => cluster.get(`k:${i}`)));
    return values.filter((v, i) => v === `v${i}`).length;
  } finally {
    cluster.disconnect();
  }
}

async function roleOf(port: number): Promise<string | undefined> {
  return withNode(port, async (r) => /role:(\w+)/.exec(await r.info('replication'))?.[1]);
}

describe('a running local cluster with data', () => {
  beforeAll(async () => {
    const created = await rcluster('apply', '-f', spec.file, '--auto-approve', '--json');
    // On failure, the reason is in the message, not only an exit code.
    expect({ code: created.code, err: created.err }).toEqual({ code: 0, err: '' });
    const cluster = new Cluster([{ host: '127.0.0.1', port: 7501 }], { lazyConnect: true });
    await cluster.connect();
    await Promise.all(Array.from({ length: KEYS }, (_, i) => cluster.set(`k:${i}`, `v${i}`)));
    cluster.disconnect();
  });
  afterAll(async () => {
    await rcluster('destroy', '-f', spec.file, '--auto-approve');
    spec.cleanup();
  });

  it('a typo in redis.config is refused at plan time, naming the node and the directive', async () => {
    withConfig(['maxmemroy: 1gb']);
    const r = await rcluster('plan', '-f', spec.file);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/127\.0\.0\.1:75\d\d \(redis 7\.\d+\.\d+\) does not know redis\.config "maxmemroy"/);
  });

  it('a directive that needs a restart: replicas first, masters hand over to their replica first, and every key survives', async () => {
    withConfig(['io-threads: 2']);
    const plan = await rcluster('plan', '-f', spec.file);
    expect(plan.out.match(/~ restart 127\.0\.0\.1:\d+ \(io-threads change only with a restart\)$/gm)).toHaveLength(3);
    expect(plan.out.match(/~ restart 127\.0\.0\.1:\d+ \(io-threads change only with a restart\); first 127\.0\.0\.1:\d+ takes over its slots \(CLUSTER FAILOVER\)/gm)).toHaveLength(3);

    const applied = await rcluster('apply', '-f', spec.file, '--auto-approve', '--json');
    expect({ code: applied.code, err: applied.err }).toEqual({ code: 0, err: '' });
    expect(await allKeys()).toBe(KEYS);
    for (const p of PORTS) expect(await withNode(p, (r) => r.call('CONFIG', 'GET', 'io-threads'))).toEqual(['io-threads', '2']);
    // The former replicas now hold the slots; that is not drift.
    expect(await Promise.all(PORTS.map(roleOf))).toEqual(['slave', 'slave', 'slave', 'master', 'master', 'master']);
    const again = await rcluster('plan', '-f', spec.file, '--detailed-exitcode');
    expect(again.out).toContain('No changes.');
  });

  it('a value redis rejects at start: the first node gets its old config back, the rest are not touched', async () => {
    const pidsBefore = await Promise.all(PORTS.map((p) => withNode(p, async (r) => /process_id:(\d+)/.exec(await r.info('server'))?.[1])));
    withConfig(['io-threads: 2', 'io-threads-do-reads: maybe']);
    const applied = await rcluster('apply', '-f', spec.file, '--auto-approve', '--json');
    expect(applied.code).toBe(1);
    expect(applied.err).toMatch(/Error: step failed: restart 127\.0\.0\.1:\d+ .*the previous .*redis\.conf was put back and the node runs with it again/s);
    for (const p of PORTS) expect(await answers(p)).toBe(true);
    const pidsAfter = await Promise.all(PORTS.map((p) => withNode(p, async (r) => /process_id:(\d+)/.exec(await r.info('server'))?.[1])));
    // Exactly one node was restarted (and restored); the others kept running.
    expect(pidsAfter.filter((p, i) => p !== pidsBefore[i])).toHaveLength(1);
    for (const p of PORTS) expect(readFileSync(join(spec.dir, '.rcluster', 'itest-running', String(p), 'redis.conf'), 'utf8')).not.toContain('io-threads-do-reads maybe');
    await waitFor('cluster ok', async () => ((await rcluster('status', '-f', spec.file)).code === 0 ? true : 'not healthy'), { timeoutMs: 30_000, intervalMs: 200 });
    expect(await allKeys()).toBe(KEYS);
    withConfig(['io-threads: 2']);
    expect((await rcluster('plan', '-f', spec.file, '--detailed-exitcode')).code).toBe(0);
  });

  it('after a master dies and its replica takes over, the plan only starts the old master, which rejoins as a replica', async () => {
    const masters = (await Promise.all(PORTS.map(async (p) => [p, await roleOf(p)] as const))).filter(([, r]) => r === 'master').map(([p]) => p);
    const victim = masters[0]!;
    const pid = readFileSync(join(spec.dir, '.rcluster', 'itest-running', String(victim), 'redis.pid'), 'utf8').trim();
    process.kill(Number(pid), 'SIGKILL');
    await waitFor(
      'a replica to take over',
      async () => {
        const roles = await Promise.all(PORTS.filter((p) => p !== victim).map(roleOf));
        return roles.filter((r) => r === 'master').length === 3 ? true : 'no failover yet';
      },
      { timeoutMs: 30_000, intervalMs: 100 },
    );

    const plan = await rcluster('plan', '-f', spec.file, '--json');
    const steps = (JSON.parse(plan.out) as { steps: { kind: string; node: string }[] }).steps;
    expect(steps.filter((s) => s.kind !== 'wait_join' && s.kind !== 'wait_cluster_ok')).toEqual([
      expect.objectContaining({ kind: 'provision_node', node: `127.0.0.1:${victim}` }),
    ]);
    expect((await rcluster('apply', '-f', spec.file, '--auto-approve', '--json')).code).toBe(0);
    expect(await roleOf(victim)).toBe('slave');
    await waitFor('link up', async () => ((await rcluster('status', '-f', spec.file)).code === 0 ? true : 'not healthy'), { timeoutMs: 30_000, intervalMs: 200 });
    expect(await allKeys()).toBe(KEYS);
    expect((await rcluster('plan', '-f', spec.file, '--detailed-exitcode')).code).toBe(0);
  });

  it('an apply cut off between writing the file and restarting is finished by the next apply: a value in the file the process does not run with yet is a pending restart', async () => {
    // Shared cluster from the describe above: io-threads is 2 in spec, file and process.
    withConfig(['io-threads: 3']);
    for (const p of PORTS) {
      const file = join(spec.dir, '.rcluster', 'itest-running', String(p), 'redis.conf');
      writeFileSync(file, readFileSync(file, 'utf8').replace(/^io-threads 2$/m, 'io-threads 3'));
    }
    const plan = await rcluster('plan', '-f', spec.file);
    expect(plan.out.match(/~ restart 127\.0\.0\.1:\d+ \(io-threads \(in the file, not yet running\) change only with a restart\)/g)).toHaveLength(6);
    const applied = await rcluster('apply', '-f', spec.file, '--auto-approve', '--json');
    expect({ code: applied.code, err: applied.err }).toEqual({ code: 0, err: '' });
    for (const p of PORTS) expect(await withNode(p, (r) => r.call('CONFIG', 'GET', 'io-threads'))).toEqual(['io-threads', '3']);
    expect(await allKeys()).toBe(KEYS);
    expect((await rcluster('plan', '-f', spec.file, '--detailed-exitcode')).code).toBe(0);
  });
});

describe('masters without replicas and without save points', () => {
  const PORTS3 = ports(7511, 3);
  const spec3 = localSpec('itest-masters', PORTS3, 'replicasPerMaster: 0\nredis:\n  config:\n    save: \'""\'');
  const base3 = readFileSync(spec3.file, 'utf8');

  const restartPlan = join(spec3.dir, 'restart.json');

  beforeAll(async () => {
    expect((await rcluster('apply', '-f', spec3.file, '--auto-approve', '--json')).code).toBe(0);
    // A restart planned while the cluster is still empty, applied after the data arrived.
    writeFileSync(spec3.file, base3.replace(`save: '""'`, `save: '""'\n    io-threads: 2`));
    expect((await rcluster('plan', '-f', spec3.file, '--out', restartPlan)).code).toBe(0);
    writeFileSync(spec3.file, base3);
    const cluster = new Cluster([{ host: '127.0.0.1', port: 7511 }], { lazyConnect: true });
    await cluster.connect();
    await Promise.all(Array.from({ length: KEYS }, (_, i) => cluster.set(`k:${i}`, `v${i}`)));
    cluster.disconnect();
  });
  afterAll(async () => {
    await rcluster('destroy', '-f', spec3.file, '--auto-approve');
    spec3.cleanup();
  });

  it('moving where a running node keeps its data is refused', async () => {
    writeFileSync(spec3.file, base3.replace(`save: '""'`, `save: '""'\n    dbfilename: data.rdb`));
    const r = await rcluster('plan', '-f', spec3.file);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/127\.0\.0\.1:751\d: changing dbfilename \(default -> data\.rdb\) on a running cluster node would restart it without its data/);
  });

  it('a save that fails stops the restart at once, names the node, and leaves no write paused', async () => {
    // Slow saves, so that one is in flight long enough to be killed, as the OOM killer would.
    for (const p of PORTS3) await withNode(p, (r) => r.call('CONFIG', 'SET', 'rdb-key-save-delay', '200000'));
    writeFileSync(spec3.file, base3.replace(`save: '""'`, `save: '""'\n    io-threads: 2`));
    const cluster = new Cluster([{ host: '127.0.0.1', port: 7511 }], { lazyConnect: true, redisOptions: { commandTimeout: 5000 } });
    try {
      const applying = rcluster('apply', '-f', spec3.file, '--auto-approve');
      await waitFor(
        'a save in flight to kill',
        async () => {
          for (const p of PORTS3) {
            const saving = await withNode(p, (r) => r.info('persistence'));
            if (!saving.includes('rdb_bgsave_in_progress:1')) continue;
            const pid = /process_id:(\d+)/.exec(await withNode(p, (r) => r.info('server')))?.[1] as string;
            const children = (await run('pgrep', ['-P', pid])).stdout.trim().split('\n').filter(Boolean);
            for (const child of children) process.kill(Number(child), 'SIGKILL');
            return children.length > 0 ? true : 'the save has no child process yet';
          }
          return 'no save in flight yet';
        },
        { timeoutMs: 30_000, intervalMs: 20 },
      );
      const applied = await applying;
      expect(applied.code).toBe(1);
      expect(applied.err).toMatch(/restart 127\.0\.0\.1:751\d .*BGSAVE failed \(rdb_last_bgsave_status:err\); its writes are no longer paused, and nothing was restarted/s);
      // Every master takes writes at once (a paused one would hold them until the timeout).
      await cluster.connect();
      await Promise.all(Array.from({ length: 30 }, (_, i) => cluster.set(`probe:${i}`, '1')));
      await Promise.all(Array.from({ length: 30 }, (_, i) => cluster.del(`probe:${i}`)));
    } finally {
      cluster.disconnect();
      for (const p of PORTS3) await withNode(p, (r) => r.call('CONFIG', 'SET', 'rdb-key-save-delay', '0'));
      writeFileSync(spec3.file, base3);
    }
  });

  it('an apply killed while a master\'s writes are paused for its save: the pause runs out by itself within its lease', async () => {
    // Slow saves (50 ms a key), so that the pause and the save last long enough to kill apply in.
    for (const p of PORTS3) await withNode(p, (r) => r.call('CONFIG', 'SET', 'rdb-key-save-delay', '50000'));
    writeFileSync(spec3.file, base3.replace(`save: '""'`, `save: '""'\n    io-threads: 2`));
    const child = spawn(process.execPath, [BIN, 'apply', '-f', spec3.file, '--auto-approve', '--json'], { stdio: 'ignore' });
    const exited = new Promise<number | null>((res) => child.on('exit', (code) => res(code)));
    const cluster = new Cluster([{ host: '127.0.0.1', port: 7511 }], { lazyConnect: true, redisOptions: { commandTimeout: 30_000 } });
    try {
      let paused = 0;
      await waitFor(
        'a master paused and saving',
        async () => {
          for (const p of PORTS3) {
            if ((await withNode(p, (r) => r.info('persistence'))).includes('rdb_bgsave_in_progress:1')) {
              paused = p;
              return true;
            }
          }
          return 'no save in flight yet';
        },
        { timeoutMs: 30_000, intervalMs: 10 },
      );
      child.kill('SIGKILL');
      expect(await exited).toBeNull();
      // A key of the paused master's: the write waits out the pause, which nobody renews now
      // (before the lease, it lasted for the whole save-and-restart allowance: minutes).
      await cluster.connect();
      const slots = (await cluster.call('CLUSTER', 'SLOTS')) as [number, number, [string, number]][];
      const range = slots.find(([, , [, port]]) => port === paused) as [number, number, unknown];
      let key = '';
      for (let i = 0; ; i++) {
        const slot = Number(await cluster.call('CLUSTER', 'KEYSLOT', `lease:${i}`));
        if (slot >= range[0] && slot <= range[1]) {
          key = `lease:${i}`;
          break;
        }
      }
      expect(await cluster.set(key, '1')).toBe('OK');
      await cluster.del(key);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
      cluster.disconnect();
      for (const p of PORTS3) await withNode(p, (r) => r.call('CONFIG', 'SET', 'rdb-key-save-delay', '0'));
      // The save the killed apply started finishes at its own pace before the next test saves.
      for (const p of PORTS3) {
        await waitFor(`${p} to finish its save`, async () => ((await withNode(p, (r) => r.info('persistence'))).includes('rdb_bgsave_in_progress:0') ? true : 'saving'), { timeoutMs: 30_000 });
      }
      writeFileSync(spec3.file, base3);
    }
  }, 90_000);

  it('a restart planned on the empty cluster saves each master first, with writes paused, and every key comes back', async () => {
    const planned = JSON.parse(readFileSync(restartPlan, 'utf8')) as { steps: { kind: string; saveFirst?: boolean }[] };
    expect(planned.steps.filter((s) => s.kind === 'restart_node' && s.saveFirst)).toHaveLength(3);
    writeFileSync(spec3.file, base3.replace(`save: '""'`, `save: '""'\n    io-threads: 2`));
    const applied = await rcluster('apply', restartPlan, '--json');
    expect({ code: applied.code, err: applied.err }).toEqual({ code: 0, err: '' });
    const cluster = new Cluster([{ host: '127.0.0.1', port: 7511 }], { lazyConnect: true });
    try {
      await cluster.connect();
      const values = await Promise.all(Array.from({ length: KEYS }, (_, i) => cluster.get(`k:${i}`)));
      expect(values.filter((v, i) => v === `v${i}`)).toHaveLength(KEYS);
      // Writes are accepted again after the pause.
      expect(await cluster.set('after', '1')).toBe('OK');
    } finally {
      cluster.disconnect();
    }
    expect((await rcluster('plan', '-f', spec3.file, '--detailed-exitcode')).code).toBe(0);
  });
});
