/**
 * Issue 8's benchmark, on the SSH test hosts (root only): what a slow login and a slow link cost.
 * - The runbook's create on six fresh hosts, plain and with every SSH session starting 1 s late
 *   (the harness's slow-session lever: PAM session modules, LDAP accounts, heavy profiles).
 * - The create and a 4096-slot scale-out (58 added as a master, 1M keys of 100 B), on loopback,
 *   and with 50 ms round trips (the latency proxy, 25 ms each way, in front of every sshd) and
 *   Redis reached only through SSH (ssh.tunnel), on a datacenter harness: the hosts' Redis ports
 *   cannot be reached from here at all, so nothing of that run goes around the tunnels.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { main } from '../src/cli/main.js';
import type { Io } from '../src/cli/io.js';
import { badKeys, loadKeys } from '../test/support/keys.js';

const SEED = [51, 52, 53, 54, 55, 56];
const NEW = 58;
const KEYS = Number(process.env['BENCH_LAPTOP_KEYS'] ?? 1_000_000);
const quiet: Io = { out: () => {}, err: (t) => process.stderr.write(t + '\n'), stdinIsTTY: false };
const addr = (n: number) => `127.0.0.${n}`;
const portOf = (n: number) => 6300 + n;

/** Runs rcluster; with --json, returns each phase's title and time (from the progress events). */
async function rcluster(...args: string[]): Promise<string[]> {
  const titles = new Map<number, string>();
  const phases: string[] = [];
  const io: Io = {
    ...quiet,
    out: (line) => {
      if (!line.startsWith('{')) return;
      const e = JSON.parse(line) as { type?: string; phase?: number; title?: string; ms?: number };
      if (e.type === 'phase_start' && e.phase !== undefined) titles.set(e.phase, e.title ?? '');
      if (e.type === 'phase_done' && e.phase !== undefined) phases.push(`${titles.get(e.phase)} (${((e.ms ?? 0) / 1000).toFixed(2)} s)`);
    },
  };
  const code = await main(['node', 'rcluster', ...args], io);
  if (code !== 0) throw new Error(`rcluster ${args.join(' ')} exited ${code}`);
  return phases;
}

interface Variant {
  slowSessionMs?: number;
  latencyMs?: number;
  tunnel?: boolean;
  scaleOut: boolean;
}

async function runVariant(v: Variant): Promise<{ createMs: number; scaleOutMs?: number; bad?: number; phases?: string[] }> {
  const { startHarness } = await import('../test/harness/index.js');
  const { RUNBOOK_REDIS } = await import('../test/harness/spec.js');
  const hosts = v.scaleOut ? [...SEED, NEW] : SEED;
  const slow = v.slowSessionMs !== undefined ? Object.fromEntries(hosts.map((n) => [n, v.slowSessionMs as number])) : undefined;
  const h = await startHarness({ hosts, ...(slow ? { slowSessionMs: slow } : {}), ...(v.tunnel ? { datacenter: true } : {}) });
  // The benchmark's own key loading and checking: straight, or into the datacenter.
  const route = v.tunnel ? h.intoDatacenter : undefined;
  const dir = mkdtempSync(join(tmpdir(), 'rcluster-bench-laptop-'));
  try {
    // Each host's sshd, straight or behind a proxy that delays each direction.
    const sshPort = new Map<number, number>();
    const known: string[] = [];
    for (const n of hosts) {
      if (v.latencyMs !== undefined) {
        const proxy = await h.latencyProxy(n, { delayMs: v.latencyMs / 2 });
        sshPort.set(n, proxy.port);
        known.push(`[${addr(n)}]:${proxy.port} ${h.hostPublicKey(n)}`);
      } else {
        sshPort.set(n, 22);
        known.push(`${addr(n)} ${h.hostPublicKey(n)}`);
      }
    }
    writeFileSync(join(dir, 'known_hosts'), known.join('\n') + '\n');
    const file = join(dir, 'cluster.yaml');
    const write = (nodes: number[], masters: number) =>
      writeFileSync(
        file,
        [
          'name: bench-laptop',
          'connection: ssh',
          'ssh:',
          '  user: root',
          `  identityFile: ${h.identityFile}`,
          `  knownHostsFile: ${join(dir, 'known_hosts')}`,
          ...(v.tunnel ? ['  tunnel: true'] : []),
          'redis:',
          ...Object.entries(RUNBOOK_REDIS).map(([k, val]) => `  ${k}: ${val}`),
          'replicasPerMaster: 1',
          `masters: ${masters}`,
          'nodes:',
          ...nodes.map((n) => `  - { host: ${addr(n)}, port: ${portOf(n)}, ssh: { port: ${sshPort.get(n)} } }`),
          '',
        ].join('\n'),
      );
    write(SEED, 3);
    const t0 = performance.now();
    await rcluster('apply', '-f', file, '--auto-approve', '--json');
    const createMs = performance.now() - t0;
    if (!v.scaleOut) return { createMs };

    const seed = `${addr(51)}:${portOf(51)}`;
    await loadKeys(seed, KEYS, 100, undefined, route);
    write([...SEED, NEW], 4);
    const t1 = performance.now();
    const phases = await rcluster('apply', '-f', file, '--auto-approve', '--json');
    const scaleOutMs = performance.now() - t1;
    const bad = (await badKeys(seed, KEYS, 100, undefined, route)).length;
    return { createMs, scaleOutMs, bad, phases };
  } finally {
    await h.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

const s = (ms: number) => `${(ms / 1000).toFixed(2)} s`;

export async function laptopBench(): Promise<void> {
  const { harnessAvailable } = await import('../test/harness/index.js');
  const available = harnessAvailable();
  if (!available.ok) {
    console.log(`\nfrom a laptop: not measured: ${available.why}`);
    return;
  }
  console.log('\nfrom a laptop (issue 8), the runbook on the SSH test hosts:');
  // BENCH_LAPTOP_PARTS=login,link: one of the two parts.
  const parts = (process.env['BENCH_LAPTOP_PARTS'] ?? 'login,link').split(',');
  if (parts.includes('login')) {
    const plain = await runVariant({ scaleOut: false });
    const slow = await runVariant({ scaleOut: false, slowSessionMs: 1000 });
    console.log(`  create, six fresh hosts              ${s(plain.createMs)}`);
    console.log(`  create, every SSH session 1 s late   ${s(slow.createMs)}  (+${s(slow.createMs - plain.createMs)}; goal <= +1.50 s)`);
  }
  if (!parts.includes('link')) return;
  const loop = await runVariant({ scaleOut: true });
  const far = await runVariant({ scaleOut: true, latencyMs: 50, tunnel: true });
  console.log(`  create + 4096-slot scale-out with ${KEYS.toLocaleString('en-US')} keys:`);
  console.log(`    loopback                           create ${s(loop.createMs)}, scale-out ${s(loop.scaleOutMs ?? NaN)}, keys wrong or missing: ${loop.bad}`);
  console.log(
    `    50 ms round trips, Redis via SSH only (ports closed to this machine)   create ${s(far.createMs)} (${(far.createMs / loop.createMs).toFixed(2)}x), scale-out ${s(far.scaleOutMs ?? NaN)} (${((far.scaleOutMs ?? NaN) / (loop.scaleOutMs ?? NaN)).toFixed(2)}x), keys wrong or missing: ${far.bad}  (goal <= 2x)`,
  );
  console.log(`    scale-out by phase, loopback: ${(loop.phases ?? []).join('; ')}`);
  console.log(`    scale-out by phase, 50 ms:    ${(far.phases ?? []).join('; ')}`);
}
