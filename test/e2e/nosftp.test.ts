import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestHosts, type Harness } from '../harness/index.js';
import { harnessSpec, RUNBOOK_REDIS } from '../harness/spec.js';
import { rclusterBin } from '../integration/support.js';

// Hardened hosts disable the sftp subsystem: rcluster reads and writes files through its shell
// on the host, so such a host is provisioned like any other. And, seen by a new user: when one
// host's read failed, `plan` printed the error and kept running for 14 minutes. Every failure
// must end the process promptly, exit 1.
const HOSTS = [51, 52, 53, 54, 55, 56];

describe('a host without the sftp subsystem', () => {
  let h: Harness;
  let dir: string;
  let file: string;

  beforeAll(async () => {
    h = await startTestHosts(HOSTS, { noSftp: [56] });
    dir = mkdtempSync(join(tmpdir(), 'rcluster-e2e-nosftp-'));
    file = join(dir, 'cluster.yaml');
    writeFileSync(file, harnessSpec(h, { name: 'nosftp', redis: RUNBOOK_REDIS, replicasPerMaster: 0, nodes: HOSTS.map((n) => `127.0.0.${n}:${6300 + n}`) }));
  });

  afterAll(async () => {
    await h?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('a host whose read fails ends plan at once with exit 1, naming the host and the step, and no stack trace', async () => {
    expect((await h.exec(55, 'mv /etc/redis/6379.conf /etc/redis/6379.conf.away')).code).toBe(0);
    // The child is killed if it outlives the bound: a hang shows as a signal, not exit 1.
    const r = await rclusterBin(['plan', '-f', file], { timeoutMs: 30_000 });
    expect(r.signal).toBeNull();
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/^Error: 127\.0\.0\.55: read \/etc\/redis\/6379\.conf: no such file/m);
    expect(r.err).not.toMatch(/\n\s+at /);
    expect((await h.exec(55, 'mv /etc/redis/6379.conf.away /etc/redis/6379.conf')).code).toBe(0);
  });

  it('the host without sftp is provisioned like the others, and the next plan is empty', async () => {
    const applied = await rclusterBin(['apply', '-f', file, '--auto-approve'], { timeoutMs: 120_000 });
    expect({ code: applied.code, err: applied.err }).toEqual({ code: 0, err: '' });
    expect(readFileSync(h.hosts.find((x) => x.n === 56)!.path('/etc/redis/6379.conf'), 'utf8')).toMatch(/^port 6356$/m);
    const again = await rclusterBin(['plan', '-f', file, '--detailed-exitcode'], { timeoutMs: 30_000 });
    expect(again.code).toBe(0);
  });
});
