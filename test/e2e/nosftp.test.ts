import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestHosts, type Harness } from '../harness/index.js';
import { harnessSpec, RUNBOOK_REDIS } from '../harness/spec.js';
import { rclusterBin } from '../integration/support.js';

// Seen by a new user: on a host whose sshd has no sftp subsystem, `plan` printed the error and
// then kept running for 14 minutes. Every failure must end the process promptly, exit 1.
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

  it('plan ends at once with exit 1, naming the host and the step, and no stack trace', async () => {
    // The child is killed if it outlives the bound: a hang shows as a signal, not exit 1.
    const r = await rclusterBin(['plan', '-f', file], { timeoutMs: 30_000 });
    expect(r.signal).toBeNull();
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/^Error: 127\.0\.0\.56: read \/etc\/redis\/6379\.conf: cannot start SFTP: /m);
    expect(r.err).not.toMatch(/\n\s+at /);
  });
});
