import type { ServerInfo, SlotRange } from './types.js';

/**
 * Reply shapes (valkey-server 9.1.2, RESP2; fixtures in test/unit/fixtures/getslotmigrations):
 * MIGRATESLOTS answers +OK (no job name); GETSLOTMIGRATIONS lists recent and ongoing jobs, the
 * newest first, each a flat array of field/value pairs (name, operation EXPORT|IMPORT,
 * slot_ranges "100-103 200-200", target_node, source_node, create_time, last_update_time,
 * last_ack_time, state, message, cow_size, remaining_repl_size). One MIGRATESLOTS with several
 * SLOTSRANGE…NODE groups makes one job per target. A slot already in a job: "ERR I am already
 * migrating slot 600.". CANCELSLOTMIGRATIONS (no argument) cancels every ongoing job of the
 * node: the source's become `cancelled`, the target's `failed` with a message.
 */
export interface SlotMigrationEntry {
  name: string;
  operation: string;
  /** As the server writes it: "100-103 200-200". */
  slotRanges: string;
  ranges: SlotRange[];
  targetNode: string;
  sourceNode: string;
  state: string;
  message: string;
  createTime: number;
  lastUpdateTime: number;
}

/** Job states after which nothing changes any more. */
const FINAL_STATES = new Set(['success', 'failed', 'cancelled']);

export function isFinalState(state: string): boolean {
  return FINAL_STATES.has(state);
}

/** "100-103 200-200" -> ranges; a malformed part is an error (the parser must not guess). */
export function parseSlotRanges(text: string): SlotRange[] {
  return text
    .trim()
    .split(/\s+/)
    .filter((p) => p !== '')
    .map((p) => {
      const m = /^(\d+)-(\d+)$/.exec(p) ?? /^(\d+)$/.exec(p);
      if (!m) throw new Error(`cannot read slot range "${p}" in "${text}"`);
      const start = Number(m[1]);
      return { start, end: m[2] !== undefined ? Number(m[2]) : start };
    });
}

/** The ranges as the server writes them, to compare a job with what was sent. */
export function formatSlotRanges(ranges: SlotRange[]): string {
  return ranges.map((r) => `${r.start}-${r.end}`).join(' ');
}

/** CLUSTER GETSLOTMIGRATIONS (RESP2: an array of flat field/value arrays; RESP3 maps come as the same). */
export function parseSlotMigrations(reply: unknown): SlotMigrationEntry[] {
  if (!Array.isArray(reply)) throw new Error(`CLUSTER GETSLOTMIGRATIONS: expected an array, got ${JSON.stringify(reply)}`);
  return reply.map((item) => {
    if (!Array.isArray(item)) throw new Error(`CLUSTER GETSLOTMIGRATIONS: expected field/value pairs, got ${JSON.stringify(item)}`);
    const f: Record<string, string> = {};
    for (let i = 0; i + 1 < item.length; i += 2) f[String(item[i])] = String(item[i + 1]);
    const slotRanges = f['slot_ranges'] ?? '';
    return {
      name: f['name'] ?? '',
      operation: f['operation'] ?? '',
      slotRanges,
      ranges: parseSlotRanges(slotRanges),
      targetNode: f['target_node'] ?? '',
      sourceNode: f['source_node'] ?? '',
      state: f['state'] ?? '',
      message: f['message'] ?? '',
      createTime: Number(f['create_time'] ?? 0),
      lastUpdateTime: Number(f['last_update_time'] ?? 0),
    };
  });
}

/**
 * Ongoing jobs (state not final) in a node's GETSLOTMIGRATIONS: what the plan must wait for
 * before it moves anything. Only EXPORTs: the source's entry is the job's authority (a target's
 * IMPORT may fail while the source retries or cancels).
 */
export function ongoing(entries: SlotMigrationEntry[]): SlotMigrationEntry[] {
  return entries.filter((e) => e.operation === 'EXPORT' && !isFinalState(e.state));
}

/** The first Valkey with CLUSTER MIGRATESLOTS (server-side, atomic slot migration). */
export const ATOMIC_MIN_VALKEY_MAJOR = 9;

export function supportsAtomic(server: ServerInfo | undefined): boolean {
  return server?.name === 'valkey' && Number(/^(\d+)/.exec(server.version)?.[1] ?? 0) >= ATOMIC_MIN_VALKEY_MAJOR;
}
