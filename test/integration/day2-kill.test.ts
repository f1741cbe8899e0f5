import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../../src/apply/wait.js';
import { badKeys, loadKeys } from '../support/keys.js';
import { localSpec, ports, rcluster, redisCli, withNode } from './support.js';

// kill -9 of apply in the middle of a slot migration: all engine state is in the cluster (open
// slots), so the next plan shows the finish first and apply completes it without losing a key.
const PORTS = ports(7421, 4);
const addr = (p: number) => `127.0.0.1:${p}`;
const KEYS = 120_000;
const spec = localSpec('itest-kill', PORTS.slice(0, 3), 'replicasPerMaster: 0');
const BIN = fileURLToPath(new URL('../../bin/rcluster.js', import.meta.url));

function writeSpec(nodes: number[], extra: string[]): void {
  writeFileSync(spec.file, ['name: itest-kill', 'connection: local', 'replicasPerMaster: 0', ...extra, 'nodes:', ...nodes.map((p) => `  - ${addr(p)}`), ''].join('\n'));
}

async function openSlots(): Promise<number> {
  let open = 0;
  for (const p of PORTS.slice(0, 3)) {
    const text = String(await withNode(p, (r) => r.call('CLUSTER', 'NODES')));
    open += (text.match(/->-/g) ?? []).length;
  }
  return open;
}

describe('apply killed mid-migration', () => {
  beforeAll(async () => {
    const created = await rcluster('apply', '-f', spec.file, '--auto-approve');
    expect(created.code).toBe(0);
    await loadKeys(addr(PORTS[0] as number), KEYS);
  });

  afterAll(async () => {
    writeSpec(PORTS, ['masters: 4']);
    await rcluster('destroy', '-f', spec.file, '--auto-approve');
    spec.cleanup();
  });

  it('the next plan shows the finish first; apply completes it; no key is lost', async () => {
    writeSpec(PORTS, ['masters: 4']);
    const child = spawn(process.execPath, [BIN, 'apply', '-f', spec.file, '--auto-approve', '--json'], { stdio: 'ignore' });
    const exited = new Promise<number | null>((res) => child.on('exit', (code) => res(code)));
    // Killed as soon as a slot is seen half-moved: a real condition, not a guess at timing.
    await waitFor('a slot migration in flight', async () => ((await openSlots()) > 0 ? true : 'no open slot yet'), { timeoutMs: 60_000, intervalMs: 5 });
    child.kill('SIGKILL');
    expect(await exited).toBeNull();
    expect(await openSlots()).toBeGreaterThan(0);

    const plan = await rcluster('plan', '-f', spec.file);
    expect(plan.code).toBe(0);
    const lines = plan.out.split('\n').filter((l) => /^\s+[~+\-·] /.test(l));
    expect(lines[0]).toMatch(/finish migration of (slot \d+|\d+ slots \(.*\)) 127\.0\.0\.1:742[123] → 127\.0\.0\.1:7424 \([\d,]+ key\(s\) left\)/);

    const applied = await rcluster('apply', '-f', spec.file, '--auto-approve');
    expect({ code: applied.code, err: applied.err }).toEqual({ code: 0, err: '' });
    expect(await openSlots()).toBe(0);
    expect(await badKeys(addr(PORTS[0] as number), KEYS)).toEqual([]);
    const check = await redisCli(['--cluster', 'check', addr(PORTS[0] as number)]);
    expect(check.out).toContain('[OK] All 16384 slots covered.');
    expect(check.out).not.toMatch(/\[WARNING\]|\[ERR\]/);
    const again = await rcluster('plan', '-f', spec.file, '--detailed-exitcode');
    expect(again.code).toBe(0);
  });
});
