import { writeFileSync } from 'node:fs';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { countSlots, parseClusterNodes } from '../../src/live/parse.js';
import type { ClusterNodeEntry } from '../../src/live/types.js';
import { rampLimit } from '../../src/apply/migrate.js';
import { MIGRATION_WINDOW, RAMP_RATIO } from '../../src/plan/types.js';
import { badKeys, everySlot, loadKeys } from '../support/keys.js';
import { localSpec, ports, rcluster } from './support.js';

// Issue 14's bound, watched from outside while a real apply runs: how many slots each source has
// in MIGRATING (its own CLUSTER NODES `[slot->-id]` markers, polled as fast as they answer), and,
// towards a master that owned no slot, how many are already handed over to it (its own view).
// Rounds of hundreds of slots in MIGRATING made the first redirect most clients met towards a new
// node an -ASK, which redis-py cannot follow to a node it does not know.
const PORTS = ports(7761, 4);
const [P1, , , P4] = PORTS as [number, number, number, number];
const addr = (p: number) => `127.0.0.1:${p}`;
// A key in every slot, so that every moved slot carries keys and spends time in MIGRATING.
const KEYS = everySlot(60_000);
const spec = localSpec('itest-window', PORTS.slice(0, 3), 'replicasPerMaster: 0');

function writeSpec(nodes: number[]): void {
  writeFileSync(spec.file, ['name: itest-window', 'connection: local', 'replicasPerMaster: 0', `masters: ${nodes.length}`, 'nodes:', ...nodes.map((p) => `  - ${addr(p)}`), ''].join('\n'));
}

interface Sample {
  /** Slots in MIGRATING on each master, by port. */
  migrating: Map<number, number>;
  /** Slots migrating to the new master, summed over the sources. */
  toNew: number;
  /** Slots the new master owned just before and just after the markers were read. */
  handedBefore: number;
  handedAfter: number;
}

/** Poll every master until `stop()`, one sample per round of replies. */
function watch(newPort: number, clients: Map<number, Redis>): { stop: () => Promise<Sample[]> } {
  let stopped = false;
  const samples: Sample[] = [];
  const owned = async () => {
    const me = parseClusterNodes(String(await clients.get(newPort)?.call('CLUSTER', 'NODES'))).find((e) => e.myself);
    return countSlots(me?.slots ?? []);
  };
  const sample = async () => {
    const handedBefore = await owned();
    const views = await Promise.all(
      [...clients].map(async ([port, c]) => ({ port, me: parseClusterNodes(String(await c.call('CLUSTER', 'NODES'))).find((e) => e.myself) })),
    );
    const handedAfter = await owned();
    const newId = views.find((v) => v.port === newPort)?.me?.id;
    // A slot answers -ASK while its source still owns it and has it MIGRATING. Once the target
    // owns it, the source learns so from the target's announcement and answers -MOVED, whatever
    // its mark says until it is told (in batches).
    const asking = (me: ClusterNodeEntry | undefined) => (me?.migrating ?? []).filter((m) => me?.slots.some((r) => r.start <= m.slot && m.slot <= r.end));
    const migrating = new Map(views.map((v) => [v.port, asking(v.me).length]));
    const toNew = views.reduce((n, v) => n + asking(v.me).filter((m) => m.to === newId).length, 0);
    samples.push({ migrating, toNew, handedBefore, handedAfter });
  };
  const loop = (async () => {
    while (!stopped) {
      // A node not started yet (the new one) or stopped (the drained one) fails the round: it
      // is tried again, each connection re-dialled every 10 ms.
      await sample().catch(() => new Promise((r) => setImmediate(r)));
    }
  })();
  return {
    stop: async () => {
      stopped = true;
      await loop;
      return samples;
    },
  };
}

async function applyWatched(newPort: number): Promise<{ out: string; samples: Sample[] }> {
  const clients = new Map(PORTS.map((p) => [p, new Redis({ host: '127.0.0.1', port: p, maxRetriesPerRequest: 0, enableOfflineQueue: false, retryStrategy: () => 10, connectionName: 'rcluster-observer' })]));
  for (const c of clients.values()) c.on('error', () => {});
  try {
    const watcher = watch(newPort, clients);
    const r = await rcluster('apply', '-f', spec.file, '--auto-approve', '--wait-timeout', '25000');
    const samples = await watcher.stop();
    expect({ code: r.code, err: r.err.split('\n').filter((l) => l !== '' && !/: warning: /.test(l)) }).toEqual({ code: 0, err: [] });
    return { out: r.out, samples };
  } finally {
    for (const c of clients.values()) c.disconnect();
  }
}

describe('slots in MIGRATING during a move, watched from outside', () => {
  beforeAll(async () => {
    writeSpec(PORTS.slice(0, 3));
    expect((await rcluster('apply', '-f', spec.file, '--auto-approve')).code).toBe(0);
    await loadKeys(addr(P1), KEYS);
  });

  afterAll(async () => {
    writeSpec(PORTS);
    await rcluster('destroy', '-f', spec.file, '--auto-approve');
    spec.cleanup();
  });

  it('scale-out onto a master clients do not know: a first slot alone, then handed-over slots stay 32 times ahead of migrating ones; never more than the window on a source', async () => {
    writeSpec(PORTS);
    const plan = await rcluster('plan', '-f', spec.file);
    expect(plan.err).toBe('');
    expect(plan.out).toContain(`at most ${MIGRATION_WINDOW} in MIGRATING on a source at once`);
    expect(plan.out).toContain(`${addr(P4)} owns no slot yet, so clients do not know it: its first slot moves alone, then at most 1 slot migrates to it per ${RAMP_RATIO} already handed over`);

    const { samples } = await applyWatched(P4);
    const seen = samples.filter((s) => s.toNew > 0);
    // Between the two reads of the new master's slots, at most (after - before) more slots can
    // have started on another source than one instant allows: that is the tolerance.
    const overRamp = seen.filter((s) => s.toNew > rampLimit(s.handedAfter, RAMP_RATIO) + (s.handedAfter - s.handedBefore));
    expect(overRamp.slice(0, 5)).toEqual([]);
    const overWindow = samples.flatMap((s) => [...s.migrating].filter(([, n]) => n > MIGRATION_WINDOW).map(([port, n]) => `${port}: ${n}`));
    expect(overWindow.slice(0, 5)).toEqual([]);
    // The watch saw the migration, from its first slots (while one at a time may migrate; the
    // first slot alone answers -ASK for about a millisecond, which a watch does not always catch)
    // to well past the ramp.
    expect(seen.length).toBeGreaterThan(20);
    expect(seen.some((s) => s.handedBefore < 2 * RAMP_RATIO)).toBe(true);
    expect(Math.max(...seen.map((s) => s.handedAfter))).toBeGreaterThan(1000);
    expect(await badKeys(addr(P1), KEYS)).toEqual([]);
  });

  it('scale-in: the drained master, the only source, never has more than the window in MIGRATING', async () => {
    writeSpec(PORTS.slice(0, 3));
    const plan = await rcluster('plan', '-f', spec.file);
    // Its targets own slots already: clients know them, no ramp.
    expect(plan.out).not.toContain('owns no slot yet');
    const { samples } = await applyWatched(P4);
    const drained = samples.map((s) => s.migrating.get(P4) ?? 0);
    expect(Math.max(...drained)).toBeLessThanOrEqual(MIGRATION_WINDOW);
    expect(drained.filter((n) => n > 0).length).toBeGreaterThan(20);
    expect(await badKeys(addr(P1), KEYS)).toEqual([]);
  });
});
