import calculateSlot from 'cluster-key-slot';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ClassicMigrator, KeyConflictError } from '../../src/apply/migrate.js';
import { NodePool } from '../../src/apply/pool.js';
import { localSpec, ports, rcluster, withNode } from './support.js';

// The engine against a MIGRATE cut off after the target stored a key but before the source
// deleted it (simulated with MIGRATE … COPY): the same value on both sides is finished, a
// different one is refused with the key's name, and nothing is overwritten blindly.
const PORTS = ports(7561, 3);
const spec = localSpec('itest-engine', PORTS, 'replicasPerMaster: 0');
const addr = (p: number) => `127.0.0.1:${p}`;

async function idOf(port: number): Promise<string> {
  return String(await withNode(port, (r) => r.call('CLUSTER', 'MYID')));
}

async function ownerOf(slot: number): Promise<number> {
  const slots = (await withNode(PORTS[0] as number, (r) => r.call('CLUSTER', 'SLOTS'))) as [number, number, [string, number]][];
  return slots.find(([a, b]) => slot >= a && slot <= b)?.[2][1] as number;
}

/** Key `name` set on its owner, then copied to another master whose slot is left importing. */
async function halfMoved(name: string): Promise<{ slot: number; from: number; to: number }> {
  const slot = Number(await withNode(PORTS[0] as number, (r) => r.call('CLUSTER', 'KEYSLOT', name)));
  const from = await ownerOf(slot);
  const to = PORTS.find((p) => p !== from) as number;
  await withNode(from, (r) => r.set(name, 'v1'));
  await withNode(to, async (r) => r.call('CLUSTER', 'SETSLOT', String(slot), 'IMPORTING', await idOf(from)));
  await withNode(from, async (r) => r.call('CLUSTER', 'SETSLOT', String(slot), 'MIGRATING', await idOf(to)));
  await withNode(from, (r) => r.call('MIGRATE', '127.0.0.1', String(to), '', '0', '5000', 'COPY', 'KEYS', name));
  return { slot, from, to };
}

async function migrate(slot: number, from: number, to: number): Promise<void> {
  const pool = new NodePool();
  try {
    const others = await Promise.all(PORTS.filter((p) => p !== from && p !== to).map(async (p) => ({ address: addr(p), id: await idOf(p) })));
    await new ClassicMigrator(pool).migrate({ from: { address: addr(from), id: await idOf(from) }, to: { address: addr(to), id: await idOf(to) }, slots: [slot], others }, () => {});
  } finally {
    await pool.close();
  }
}

describe('the migration engine and keys on both sides (BUSYKEY)', () => {
  beforeAll(async () => {
    expect((await rcluster('apply', '-f', spec.file, '--auto-approve')).code).toBe(0);
  });

  afterAll(async () => {
    await rcluster('destroy', '-f', spec.file, '--auto-approve');
    spec.cleanup();
  });

  it('a slot that belongs to neither side any more (moved since the plan) is refused, and the import it opened is closed', async () => {
    const slot = 42;
    let key = 'k0';
    for (let i = 0; calculateSlot(key) !== slot; i++) key = `k${i}`;
    const owner = await ownerOf(slot);
    const [from, to] = PORTS.filter((p) => p !== owner) as [number, number];
    await withNode(owner, (r) => r.set(key, 'kept'));
    const err = await migrate(slot, from, to).then(
      () => undefined,
      (e: Error) => e,
    );
    expect(err?.message).toContain(`slot(s) ${slot} belong to neither ${addr(from)} nor ${addr(to)} any more`);
    expect(await ownerOf(slot)).toBe(owner);
    expect(String(await withNode(to, (r) => r.call('CLUSTER', 'NODES')))).not.toContain(`[${slot}-<-`);
    expect(await withNode(owner, (r) => r.get(key))).toBe('kept');
  });

  it('the same value on both sides: the slot is finished, the key kept once with its value', async () => {
    const { slot, from, to } = await halfMoved('same');
    await migrate(slot, from, to);
    expect(await ownerOf(slot)).toBe(to);
    expect(await withNode(to, (r) => r.get('same'))).toBe('v1');
    expect(await withNode(from, (r) => r.call('CLUSTER', 'COUNTKEYSINSLOT', String(slot)))).toBe(0);
  });

  it('a different value on the target: refused with the key named, nothing overwritten, the slot left open to finish by hand', async () => {
    const { slot, from, to } = await halfMoved('differs');
    // The target's copy changes (as a client's write through -ASK would): now they differ.
    await withNode(to, async (r) => {
      await r.call('ASKING');
      await r.set('differs', 'v2');
    });
    const err = await migrate(slot, from, to).then(
      () => undefined,
      (e: Error) => e,
    );
    expect(err).toBeInstanceOf(KeyConflictError);
    expect(err?.message).toContain(`key "differs" (slot ${slot}) exists on both ${addr(from)} and ${addr(to)} with different values`);
    expect(await withNode(from, (r) => r.get('differs'))).toBe('v1');
    expect(
      await withNode(to, async (r) => {
        await r.call('ASKING');
        return r.get('differs');
      }),
    ).toBe('v2');
    // Closed by hand here so that destroy finds a stable cluster.
    await withNode(from, (r) => r.call('CLUSTER', 'SETSLOT', String(slot), 'STABLE'));
    await withNode(to, (r) => r.call('CLUSTER', 'SETSLOT', String(slot), 'STABLE'));
  });

  it('each batch is read and moved by the source in one script; a source that leaves a script no room (busy-reply-threshold) or refuses scripts (ACL) gets plain MIGRATE', async () => {
    const cases = [
      { slot: 100, scripted: true, limit: [] as string[][], undo: [] as string[][] },
      { slot: 200, scripted: false, limit: [['CONFIG', 'SET', 'busy-reply-threshold', '500']], undo: [['CONFIG', 'SET', 'busy-reply-threshold', '5000']] },
      { slot: 300, scripted: false, limit: [['ACL', 'SETUSER', 'default', '-@scripting']], undo: [['ACL', 'SETUSER', 'default', '+@all']] },
    ];
    for (const { slot, scripted, limit, undo } of cases) {
      let tag = 't0';
      for (let i = 0; calculateSlot(tag) !== slot; i++) tag = `t${i}`;
      const keys = Array.from({ length: 2500 }, (_, i) => `{${tag}}:${i}`);
      // A name that is not UTF-8: it must travel as bytes (as a string it would come back changed).
      const binary = Buffer.concat([Buffer.from(`{${tag}}:`), Buffer.from([0xff, 0xfe, 0x00, 0x80])]);
      const from = await ownerOf(slot);
      const to = PORTS.find((p) => p !== from) as number;
      await withNode(from, async (r) => {
        await r.mset(Object.fromEntries(keys.map((k) => [k, `value of ${k}`])));
        await r.set(binary, 'binary');
        await r.config('RESETSTAT');
        for (const [cmd, ...args] of limit) await r.call(cmd as string, ...args);
      });
      try {
        await migrate(slot, from, to);
      } finally {
        await withNode(from, async (r) => {
          for (const [cmd, ...args] of undo) await r.call(cmd as string, ...args);
        });
      }
      const stats = await withNode(from, (r) => r.info('commandstats'));
      expect({ limit, scripts: /cmdstat_evalsha:calls=[1-9]/.test(stats) }).toEqual({ limit, scripts: scripted });
      expect(await ownerOf(slot)).toBe(to);
      expect(await withNode(from, (r) => r.call('CLUSTER', 'COUNTKEYSINSLOT', String(slot)))).toBe(0);
      // More keys than one batch (1000): the slot took several passes, every key arrived with its value.
      expect(await withNode(to, (r) => r.mget(keys))).toEqual(keys.map((k) => `value of ${k}`));
      expect(await withNode(to, (r) => r.get(binary))).toBe('binary');
    }
  });
});
