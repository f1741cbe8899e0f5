import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../../src/apply/wait.js';
import { startTestHosts, type Harness } from '../harness/index.js';
import { harnessSpec, RUNBOOK_REDIS } from '../harness/spec.js';
import { rcluster, redisCli, withNode } from '../integration/support.js';
import { takeClusterLock } from '../../src/cli/clusterLock.js';
import { driverFor } from '../../src/cli/drivers.js';
import { loadSpec, requireSpec } from '../../src/spec/load.js';

// An sshd that dies in the middle of a command: apply must end at once with the host and the
// command named, and the next plan and apply must finish the job.
const HOSTS = [51, 52, 53];
const addr = (n: number) => `127.0.0.${n}`;
const portOf = (n: number) => 6300 + n;

describe('sshd killed mid-apply', () => {
  let h: Harness;
  let dir: string;
  let file: string;
  const hostPath = (n: number, p: string) => h.hosts.find((x) => x.n === n)!.path(p);

  beforeAll(async () => {
    h = await startTestHosts(HOSTS);
    dir = mkdtempSync(join(tmpdir(), 'rcluster-e2e-faults-'));
    file = join(dir, 'cluster.yaml');
    writeFileSync(file, harnessSpec(h, { name: 'faults-e2e', redis: RUNBOOK_REDIS, replicasPerMaster: 0, nodes: HOSTS.map((n) => `${addr(n)}:${portOf(n)}`) }));
    // Host 53's service start is held while /var/lib/redis/hold exists (a slow start, as a
    // loaded host has), and says so: the test cuts the connection while that command runs.
    const held = await h.exec(
      53,
      `sed -i '/^CONF=/a if [ "$1" = start ] \\&\\& [ -e /var/lib/redis/hold ]; then touch /var/lib/redis/start-waiting; while [ -e /var/lib/redis/hold ]; do sleep 0.05; done; fi' /etc/init.d/redis_6379 && touch /var/lib/redis/hold`,
    );
    expect(held.code).toBe(0);
  });

  afterAll(async () => {
    await h?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('a create on fresh hosts is locked too (no node answers yet): a second apply is refused, naming the holder', async () => {
    const desired = requireSpec(await loadSpec(file));
    const driver = driverFor(desired);
    try {
      // Another rcluster, holding the lock from its planning on (its spec ports do not answer).
      const lock = await takeClusterLock(desired, { driver });
      try {
        expect(lock.nodes).toEqual([]);
        const second = await rcluster('apply', '-f', file, '--auto-approve');
        expect(second.code).toBe(1);
        expect(second.err).toMatch(/^Error: cluster "faults-e2e" is locked: another rcluster is changing it: \S+@\S+ \(pid \d+\) since .*, seen on host 127\.0\.0\.5\d from its SSH session; lock id \S+\./m);
        // It changed nothing: the standalone redis of every host still answers on 6379.
        for (const n of HOSTS) expect(await withNode(6379, (r) => r.ping(), addr(n))).toBe('PONG');
        await lock.check();
      } finally {
        await lock.release();
      }
    } finally {
      await driver.close();
    }
  });

  it('apply exits 1 naming the host and the command; the next plan shows the rest and apply finishes it', async () => {
    const applying = rcluster('apply', '-f', file, '--auto-approve');
    await waitFor('host 53 to be starting its node', async () => (existsSync(hostPath(53, '/var/lib/redis/start-waiting')) ? true : 'not yet'), { timeoutMs: 60_000, intervalMs: 20 });
    expect(h.dropSshConnections(53)).toBeGreaterThan(0);
    const failed = await applying;
    expect(failed.code).toBe(1);
    expect(failed.err).toContain(`step failed: configure ${addr(53)}:${portOf(53)} and restart it as a cluster node`);
    expect(failed.err).toContain(`${addr(53)}: run: connection lost while running: /etc/init.d/redis_6379 start`);
    expect(failed.err).toContain('Already done:');
    expect(failed.err).toContain('Run `rcluster plan -f');
    expect(failed.err).not.toMatch(/\n\s+at /);

    rmSync(hostPath(53, '/var/lib/redis/hold'));
    const plan = await rcluster('plan', '-f', file, '--detailed-exitcode');
    expect(plan.code).toBe(2);
    const applied = await rcluster('apply', '-f', file, '--auto-approve');
    expect({ code: applied.code, err: applied.err }).toEqual({ code: 0, err: '' });
    const check = await redisCli(['--cluster', 'check', `${addr(51)}:${portOf(51)}`]);
    expect(check.out).toContain('[OK] All 16384 slots covered.');
    expect(check.out).not.toMatch(/\[WARNING\]|\[ERR\]/);
    expect((await rcluster('plan', '-f', file, '--detailed-exitcode')).code).toBe(0);
  });
});
