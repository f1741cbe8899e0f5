import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { AtomicMigrator } from '../../src/apply/atomic.js';
import { NodePool } from '../../src/apply/pool.js';
import { waitFor } from '../../src/apply/wait.js';
import { ongoing, parseSlotMigrations } from '../../src/live/slotMigrations.js';
import { everySlot, keysOn, keyTotal, loadKeys } from '../support/keys.js';
import { answers, expectClusterIntact, infoOf, localSpec, masterSlotCounts, ports, rcluster, rclusterBin, valkeyBin, valkeyCli, withNode } from './support.js';

// Atomic, server-side slot migration (CLUSTER MIGRATESLOTS) on valkey-server 9 processes, ports
// 7891-7898: the plan names the strategy, and a scale-out 3 -> 4 and back moves every key with
// no MIGRATE at all (the classic engine's path, test/integration/valkey.test.ts, on the same
// keys). Each change is one spec edit and one `rcluster apply` of the built binary.
const PORTS = ports(7891, 8);
const [P1, P2, P3, P4, P5, P6, P7, P8] = PORTS as [number, number, number, number, number, number, number, number];
const addr = (p: number) => `127.0.0.1:${p}`;
const KEYS = everySlot(20_000);
const NAME = 'itest-valkey-atomic';
const spec = localSpec(NAME, []);
const MOVE_TIMEOUT_MS = 240_000;
const BIN = fileURLToPath(new URL('../../bin/rcluster.js', import.meta.url));

let server = '';

function writeSpec(nodes: number[], extra: string[] = []): void {
  const lines = [`name: ${NAME}`, 'connection: local', 'replicasPerMaster: 1', ...extra, 'redis:', '  server: valkey', `  serverBinary: ${server}`];
  writeFileSync(spec.file, [...lines, 'nodes:', ...nodes.map((p) => `  - ${addr(p)}`), ''].join('\n'));
}

/** apply --json: exits 0; returns how long the slot moves took (the migrate_slots phase, ms). */
async function applyMoves(): Promise<number> {
  const r = await rclusterBin(['apply', '-f', spec.file, '--auto-approve', '--json', '--wait-timeout', '60000'], { timeoutMs: MOVE_TIMEOUT_MS - 10_000 });
  expect({ code: r.code, signal: r.signal, err: r.err }).toEqual({ code: 0, signal: null, err: '' });
  const events = r.out
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as { type: string; phase?: number; title?: string; ms?: number });
  const phase = events.find((e) => e.type === 'phase_start' && e.title?.startsWith('Move slots'))?.phase;
  const done = events.find((e) => e.type === 'phase_done' && e.phase === phase);
  expect(done?.ms, 'a phase that moves slots').toBeTypeOf('number');
  return done?.ms as number;
}

/** Calls of a command since the node's last CONFIG RESETSTAT (INFO commandstats); 0 when never called. */
async function calls(port: number, command: string): Promise<number> {
  return Number(/calls=(\d+)/.exec((await infoOf(port, 'commandstats'))[`cmdstat_${command}`] ?? '')?.[1] ?? 0);
}

describe('Valkey 9: atomic slot migration (CLUSTER MIGRATESLOTS) when every node supports it', () => {
  beforeAll(() => {
    server = valkeyBin();
  });

  afterAll(async () => {
    if (server) {
      writeSpec(PORTS);
      await rcluster('destroy', '-f', spec.file, '--auto-approve');
    }
    spec.cleanup();
  });

  it('create 3 masters with a replica each, and load keys into every slot', async () => {
    writeSpec([P1, P2, P3, P4, P5, P6]);
    const r = await rclusterBin(['apply', '-f', spec.file, '--auto-approve'], { timeoutMs: 120_000 });
    expect({ code: r.code, err: r.err }).toEqual({ code: 0, err: '' });
    expect(await masterSlotCounts(P1)).toEqual([5461, 5461, 5462]);
    await loadKeys(addr(P1), KEYS);
    await expectClusterIntact({ seed: addr(P1), keys: KEYS, cli: valkeyCli, specFile: spec.file });
  });

  it(
    'scale out 3 -> 4: the plan says atomic, server-side for each move; 4096 slots move with no MIGRATE and no -ASK state',
    async () => {
      writeSpec(PORTS, ['masters: 4']);
      const plan = await rcluster('plan', '-f', spec.file);
      // The new master does not run yet: the spec's redis.server stands for it, checked at apply.
      const moves = plan.out.split('\n').filter((l) => l.includes('~ move '));
      expect(moves).toHaveLength(3);
      for (const l of moves) expect(l).toMatch(new RegExp(`127\\.0\\.0\\.1:789[123] → ${addr(P7).replace(/\./g, '\\.')} \\(atomic, server-side\\)$`));
      expect(plan.out).toContain('Slots move server-side (every node runs Valkey >= 9)');
      expect(plan.out).not.toContain('on a ramp');
      for (const p of [P1, P2, P3]) await withNode(p, (r) => r.config('RESETSTAT'));
      const ms = await applyMoves();
      console.info(`valkey-atomic: scale-out 3 -> 4 (${keyTotal(KEYS)} keys): slot moves took ${ms} ms`);
      expect(await masterSlotCounts(P1)).toEqual([4096, 4096, 4096, 4096]);
      expect(await keysOn(addr(P7))).toBeGreaterThanOrEqual(4096);
      for (const p of [P1, P2, P3]) {
        // No classic move: no MIGRATE from the sources, no script, no SETSLOT MIGRATING.
        expect({ port: p, migrate: await calls(p, 'migrate'), evalsha: await calls(p, 'evalsha') }).toEqual({ port: p, migrate: 0, evalsha: 0 });
        expect(await calls(p, 'cluster|migrateslots')).toBe(1);
      }
      // A MIGRATE would have reached the target as RESTORE-ASKING.
      expect(await calls(P7, 'restore-asking')).toBe(0);
      await expectClusterIntact({ seed: addr(P1), keys: KEYS, cli: valkeyCli, specFile: spec.file });
    },
    MOVE_TIMEOUT_MS,
  );

  it(
    'scale in 4 -> 3: the new master is drained server-side and removed with its replica',
    async () => {
      writeSpec([P1, P2, P3, P4, P5, P6], ['masters: 3']);
      const plan = await rcluster('plan', '-f', spec.file);
      const moves = plan.out.split('\n').filter((l) => l.includes('~ move '));
      expect(moves).toHaveLength(3);
      for (const l of moves) expect(l).toMatch(/\(atomic, server-side\)$/);
      for (const p of [P1, P2, P3]) await withNode(p, (r) => r.config('RESETSTAT'));
      const ms = await applyMoves();
      console.info(`valkey-atomic: scale-in 4 -> 3 (${keyTotal(KEYS)} keys): slot moves took ${ms} ms`);
      const counts = await masterSlotCounts(P1);
      expect(counts).toHaveLength(3);
      for (const n of counts) expect(Math.abs(n - 5461)).toBeLessThanOrEqual(1);
      for (const p of [P1, P2, P3]) expect({ port: p, restoreAsking: await calls(p, 'restore-asking') }).toEqual({ port: p, restoreAsking: 0 });
      expect(await answers(P7)).toBe(false);
      expect(await answers(P8)).toBe(false);
      await expectClusterIntact({ seed: addr(P1), keys: KEYS, cli: valkeyCli, specFile: spec.file });
    },
    MOVE_TIMEOUT_MS,
  );
  it('a server-side migration that is cancelled: the engine fails naming source, target, slots and the state; the slots stay with the source', async () => {
    const id = async (p: number) => String(await withNode(p, (r) => r.call('CLUSTER', 'MYID')));
    const [from, to] = [{ address: addr(P1), id: await id(P1) }, { address: addr(P2), id: await id(P2) }];
    const pool = new NodePool();
    // The target holds back its writes: the job waits for it, and stays in progress (not final).
    await withNode(P2, (r) => r.call('CLIENT', 'PAUSE', '30000', 'WRITE'));
    try {
      const moving = new AtomicMigrator(pool, { timeoutMs: () => 60_000, pollMs: 50 }).migrate({ from, to, slots: Array.from({ length: 100 }, (_, i) => i), others: [] }, () => {});
      moving.catch(() => {});
      await waitFor('the job to be listed on the source', async () => (ongoing(parseSlotMigrations(await withNode(P1, (r) => r.call('CLUSTER', 'GETSLOTMIGRATIONS')))).length > 0 ? true : 'not yet'), { timeoutMs: 10_000 });
      expect(await withNode(P1, (r) => r.call('CLUSTER', 'CANCELSLOTMIGRATIONS'))).toBe('OK');
      await expect(moving).rejects.toThrow(/^127\.0\.0\.1:7891: the server-side migration of slots 0-99 127\.0\.0\.1:7891 -> 127\.0\.0\.1:7892 \(job [0-9a-f]{8}\) ended cancelled; the slots stay with 127\.0\.0\.1:7891$/);
    } finally {
      await withNode(P2, (r) => r.call('CLIENT', 'UNPAUSE'));
      await pool.close();
    }
    const owner = String(await withNode(P1, (r) => r.call('CLUSTER', 'NODES'))).split('\n').find((l) => l.includes('myself'));
    expect(owner).toMatch(/ 0-\d+/);
    await expectClusterIntact({ seed: addr(P1), keys: KEYS, cli: valkeyCli, specFile: spec.file });
  });

  it('a server-side migration in progress when apply starts: the plan says so and apply waits for it before moving anything, then puts the slots back', async () => {
    const target = String(await withNode(P2, (r) => r.call('CLUSTER', 'MYID')));
    // The target holds back its writes (CLIENT PAUSE … WRITE), so the job stays in progress
    // until apply has reached its wait; 30 s at most if something goes wrong.
    await withNode(P2, (r) => r.call('CLIENT', 'PAUSE', '30000', 'WRITE'));
    expect(await withNode(P1, (r) => r.call('CLUSTER', 'MIGRATESLOTS', 'SLOTSRANGE', '0', '99', 'NODE', target))).toBe('OK');
    const plan = await rcluster('plan', '-f', spec.file);
    expect(plan.out).toMatch(/Warning: a server-side migration is in progress \(slots 0-99 127\.0\.0\.1:7891 -> 127\.0\.0\.1:7892, [a-z-]+\); apply waits for it to end before anything else/);
    expect(plan.out).toContain('· wait for the server-side migration(s) already in progress (0-99 127.0.0.1:7891 → 127.0.0.1:7892) to end');
    // The plan counts the slots as 127.0.0.1:7892's already: 100 move back, to even the masters out.
    expect(plan.out).toMatch(/~ move 100 slot\(s\) \(~[\d,]+ keys\) 127\.0\.0\.1:7892 → 127\.0\.0\.1:7891 \(atomic, server-side\)/);
    const child = spawn(process.execPath, [BIN, 'apply', '-f', spec.file, '--auto-approve', '--json', '--wait-timeout', '60000'], { stdio: ['ignore', 'pipe', 'pipe'] });
    const events: { type: string; title?: string }[] = [];
    let err = '';
    let buffered = '';
    child.stdout.on('data', (d: Buffer) => {
      buffered += d.toString();
      const lines = buffered.split('\n');
      buffered = lines.pop() ?? '';
      for (const l of lines) if (l.startsWith('{')) events.push(JSON.parse(l) as { type: string; title?: string });
    });
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const exited = new Promise<number | null>((res) => child.on('exit', (code) => res(code)));
    try {
      await waitFor('apply to wait for the migration in progress', async () => (events.some((e) => e.type === 'step_start' && e.title?.startsWith('wait for the server-side migration')) ? true : `${events.length} event(s)`), { timeoutMs: 20_000 });
      // Nothing else has started: the wait comes first, alone.
      expect(events.filter((e) => e.type === 'step_start').map((e) => e.title)).toEqual(['wait for the server-side migration(s) already in progress (0-99 127.0.0.1:7891 → 127.0.0.1:7892) to end']);
    } finally {
      await withNode(P2, (r) => r.call('CLIENT', 'UNPAUSE'));
    }
    expect({ code: await exited, err }).toEqual({ code: 0, err: '' });
    expect(events.filter((e) => e.type === 'step_done').map((e) => e.title)).toEqual([
      'wait for the server-side migration(s) already in progress (0-99 127.0.0.1:7891 → 127.0.0.1:7892) to end',
      expect.stringMatching(/^move 100 slot\(s\) .* 127\.0\.0\.1:7892 → 127\.0\.0\.1:7891 \(atomic, server-side\)$/),
      'wait until 6 nodes agree on slots and report cluster_state:ok',
    ]);
    expect(await masterSlotCounts(P1)).toEqual([5461, 5461, 5462]);
    await expectClusterIntact({ seed: addr(P1), keys: KEYS, cli: valkeyCli, specFile: spec.file });
  });
});
