import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Plan } from '../../src/plan/types.js';
import { everySlot, loadKeys, slotKeyName } from '../support/keys.js';
import { answers, localSpec, ports, rcluster, withNode } from './support.js';

// A 200 MB hash in a slot that a scale-out 3 -> 4 masters moves: the plan names it before
// anything moves, and apply refuses it without --allow-big-keys. Kept minimal (3 masters, no
// replicas): the hash alone takes 200 MB of RAM on its node.
const PORTS = ports(7741, 4);
const [P1, P2, , P4] = PORTS as [number, number, number, number];
const addr = (p: number) => `127.0.0.1:${p}`;
const spec = localSpec('itest-bigkeys', PORTS.slice(0, 3));
const FIELDS = 200;
const FIELD_BYTES = 1_000_000;

function writeSpec(nodes: number[], extra: string[] = []): void {
  writeFileSync(spec.file, ['name: itest-bigkeys', 'connection: local', 'replicasPerMaster: 0', ...extra, 'nodes:', ...nodes.map((p) => `  - ${addr(p)}`), ''].join('\n'));
}

type PlanJson = Pick<Plan, 'steps'> & { bigKeys: NonNullable<Plan['bigKeys']>; allowBigKeys: boolean };

async function planJson(...args: string[]): Promise<PlanJson> {
  const r = await rcluster('plan', '-f', spec.file, '--json', ...args);
  expect({ code: r.code, err: r.err }).toEqual({ code: 0, err: '' });
  return JSON.parse(r.out) as PlanJson;
}

function moves(plan: Pick<Plan, 'steps'>) {
  return plan.steps.filter((s) => s.kind === 'migrate_slots');
}

/** Each master's slots, as 127.0.0.1:7741 sees them. */
async function owners(): Promise<string[]> {
  const text = String(await withNode(P1, (r) => r.call('CLUSTER', 'NODES')));
  return text
    .trim()
    .split('\n')
    .map((l) => l.split(' '))
    .map((f) => `${f[1]?.split('@')[0]} ${f.slice(8).join(' ')}`)
    .sort();
}

describe('big keys: a 200 MB hash in a slot to move', () => {
  let slot = -1;
  let bigName = Buffer.alloc(0);
  // What the plan prints: redis-cli's escaping of the 0xff byte in its name.
  let printed = '';

  beforeAll(async () => {
    writeSpec(PORTS.slice(0, 3));
    const created = await rcluster('apply', '-f', spec.file, '--auto-approve', '--json');
    expect(created.code).toBe(0);
    // A key in every slot: the big key's slot then weighs what the others weigh, and the
    // solver's choice of slots (the lightest) is the same with it as without it.
    await loadKeys(addr(P1), everySlot(0));

    writeSpec(PORTS, ['masters: 4']);
    const before = await planJson();
    const fromP1 = moves(before).find((m) => m.kind === 'migrate_slots' && m.from === addr(P1));
    if (fromP1?.kind !== 'migrate_slots') throw new Error(`the scale-out moves nothing from ${addr(P1)}`);
    const range = fromP1.slots[0] as { start: number; end: number };
    slot = Math.floor((range.start + range.end) / 2);
    // The slot's own small key gives way to the big one: the key counts, and so the plan's
    // choice of slots, stay exactly as they were.
    const tag = /\{(\d+)\}/.exec(slotKeyName(slot))?.[1] as string;
    bigName = Buffer.concat([Buffer.from('big'), Buffer.from([0xff]), Buffer.from(`:{${tag}}`)]);
    printed = `big\\xff:{${tag}}`;
    await withNode(P1, async (r) => {
      await r.del(slotKeyName(slot));
      const field = Buffer.alloc(FIELD_BYTES, 'x');
      for (let i = 0; i < FIELDS; i += 20) {
        const p = r.pipeline();
        for (let j = i; j < i + 20; j++) p.hset(bigName, `f${j}`, field);
        await p.exec();
      }
      expect(Number(await r.call('CLUSTER', 'KEYSLOT', bigName))).toBe(slot);
    });
    expect(moves(await planJson())).toEqual(moves(before));
  });

  afterAll(async () => {
    writeSpec(PORTS);
    await rcluster('destroy', '-f', spec.file, '--auto-approve');
    spec.cleanup();
  });

  it('the plan names the key, its slot, size, estimated block time, source and target, and the limit it breaks', async () => {
    const plan = await planJson();
    expect(plan.bigKeys).toHaveLength(1);
    const [big] = plan.bigKeys as [NonNullable<Plan['bigKeys']>[number]];
    expect({ key: big.key, slot: big.slot, from: big.from, to: big.to, breaks: big.breaks, maxBlockMs: big.maxBlockMs }).toEqual({
      key: printed,
      slot,
      from: addr(P1),
      to: addr(P4),
      breaks: ['node-timeout'],
      // Half of the spec's default cluster-node-timeout (5000 ms).
      maxBlockMs: 2500,
    });
    expect(big.bytes).toBeGreaterThan(FIELDS * FIELD_BYTES);
    // Its bytes at the default transferRate of 20 MB/s: over 10 s.
    expect(big.blockMs).toBe(Math.round(big.bytes / 20_000));

    const text = await rcluster('plan', '-f', spec.file);
    const mb = (big.bytes / 1e6).toFixed(1);
    expect(text.out).toContain(
      `    ! "${printed}" (slot ${slot}, ~${mb} MB, ${addr(P1)} → ${addr(P4)}): MIGRATE blocks ${addr(P1)} ~${(big.blockMs / 1000).toFixed(1)} s, over 2.5 s (half of cluster-node-timeout 5000 ms)`,
    );
    expect(text.out).toContain('Apply moves the big key only with --allow-big-keys.');
  });

  it('a source that refuses scripts is read with plain commands, with the same finding', async () => {
    await withNode(P1, (r) => r.call('ACL', 'SETUSER', 'default', '-eval', '-evalsha'));
    try {
      const plan = await planJson();
      expect(plan.bigKeys.map((k) => [k.key, k.slot, k.from])).toEqual([[printed, slot, addr(P1)]]);
    } finally {
      await withNode(P1, (r) => r.call('ACL', 'SETUSER', 'default', '+eval', '+evalsha'));
    }
  });

  it('apply refuses it without --allow-big-keys: exit 1, the key and the flag named, nothing touched', async () => {
    const before = await owners();
    const r = await rcluster('apply', '-f', spec.file, '--auto-approve');
    expect(r.code).toBe(1);
    const lines = r.err.split('\n').filter((l) => l !== '');
    expect(lines).toHaveLength(2);
    expect(lines[0]).toContain(`1 key(s) too big to move safely: "${printed}" (slot ${slot}`);
    expect(lines[0]).toContain('Nothing was changed.');
    expect(lines[1]).toContain('--allow-big-keys');
    // The new node was not even started, no slot moved, the key is where it was.
    expect(await answers(P4)).toBe(false);
    expect(await owners()).toEqual(before);
    expect(await withNode(P1, (c) => c.hlen(bigName))).toBe(FIELDS);
  });

  it('a saved plan carries the decision: refused without it, kept in the file with plan --allow-big-keys', async () => {
    const refusedFile = join(spec.dir, 'plain.json');
    expect((await rcluster('plan', '-f', spec.file, '--out', refusedFile)).code).toBe(0);
    const refused = await rcluster('apply', refusedFile);
    expect(refused.code).toBe(1);
    expect(refused.err).toContain(`"${printed}"`);
    expect(await answers(P4)).toBe(false);

    // Key sizes are not part of the plan's fingerprint: a key that grew big since the plan was
    // saved is found by reading the moved slots again.
    const plain = JSON.parse(readFileSync(refusedFile, 'utf8')) as Plan;
    const fromP2 = moves(plain).find((m) => m.kind === 'migrate_slots' && m.from === addr(P2));
    if (fromP2?.kind !== 'migrate_slots') throw new Error(`the scale-out moves nothing from ${addr(P2)}`);
    const slot2 = (fromP2.slots[0] as { start: number }).start;
    const grown = slotKeyName(slot2);
    await withNode(P2, async (r) => {
      await r.del(grown);
      const p = r.pipeline();
      for (let i = 0; i < 60; i++) p.hset(grown, `f${i}`, Buffer.alloc(FIELD_BYTES, 'y'));
      await p.exec();
    });
    try {
      const stale = await rcluster('apply', refusedFile);
      expect(stale.code).toBe(1);
      expect(stale.err).toContain(`${refusedFile}: saved plan is stale: 1 key(s) too big to move safely appeared since it was made: "${grown}" (slot ${slot2}`);
      expect(await answers(P4)).toBe(false);
    } finally {
      await withNode(P2, async (r) => {
        await r.del(grown);
        await r.set(grown, 'x');
      });
    }

    const allowedFile = join(spec.dir, 'allowed.json');
    expect((await rcluster('plan', '-f', spec.file, '--allow-big-keys', '--out', allowedFile)).code).toBe(0);
    const saved = JSON.parse(readFileSync(allowedFile, 'utf8')) as Plan;
    expect(saved.allowBigKeys).toBe(true);
    expect(saved.bigKeys?.map((k) => k.key)).toEqual([printed]);
  });

  it('with --allow-big-keys apply moves it, whole', async () => {
    const r = await rcluster('apply', '-f', spec.file, '--auto-approve', '--allow-big-keys', '--wait-timeout', '25000');
    expect({ code: r.code, err: r.err }).toEqual({ code: 0, err: '' });
    expect(r.out).toContain('moved anyway: --allow-big-keys');
    expect(await withNode(P4, (c) => c.hlen(bigName))).toBe(FIELDS);
    expect(await withNode(P4, (c) => c.hstrlen(bigName, `f${FIELDS - 1}`))).toBe(FIELD_BYTES);
    expect(Number(await withNode(P1, (c) => c.call('CLUSTER', 'COUNTKEYSINSLOT', slot)))).toBe(0);
    expect((await rcluster('plan', '-f', spec.file)).out).toContain('No changes.');
  });
});
