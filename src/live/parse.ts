/**
 * Pure parsers for what Redis tells us: CLUSTER NODES (also the node lines of nodes.conf) and INFO.
 * No I/O here; everything is tested against outputs captured from real redis-server processes.
 */
import type { ClusterNodeEntry, ReplicationInfo, ServerInfo, SlotRange } from './types.js';

export const SLOT_COUNT = 16384;
const MAX_SLOT = SLOT_COUNT - 1;
const NODE_ID = /^[0-9a-f]{40}$/i;
const UINT = /^\d+$/;

class LineError extends Error {}

/**
 * Parse CLUSTER NODES output (Redis 4..8; also the node lines of a nodes.conf file).
 *
 * Line format: `<id> <addr> <flags> <master> <ping-sent> <pong-recv> <config-epoch> <link-state> <slot>...`
 * where addr is `ip:port@cport[,hostname[,key=value...]]`, or the pre-4.0 `ip:port`.
 * Blank lines are ignored; any other line that does not fit throws an Error quoting it.
 */
export function parseClusterNodes(text: string): ClusterNodeEntry[] {
  const entries: ClusterNodeEntry[] = [];
  const lines = text.split(/\r?\n/);
  lines.forEach((raw, index) => {
    const line = raw.trim();
    if (line === '') return;
    try {
      entries.push(parseNodeLine(line));
    } catch (err) {
      const why = err instanceof LineError ? err.message : String(err);
      throw new Error(`Malformed CLUSTER NODES line ${index + 1}: ${why}: "${line}"`);
    }
  });
  return entries;
}

function parseNodeLine(line: string): ClusterNodeEntry {
  const fields = line.split(/\s+/);
  if (fields.length < 8) throw new LineError(`expected at least 8 fields, got ${fields.length}`);
  const [id, addr, flagField, master, pingSent, pongReceived, epoch, link, ...slotFields] = fields as [
    string, string, string, string, string, string, string, string, ...string[],
  ];

  if (!NODE_ID.test(id)) throw new LineError(`bad node id "${id}"`);
  const address = parseAddress(addr);

  const flags = flagField === 'noflags' ? [] : flagField.split(',').filter((f) => f !== '');
  if (flags.length === 0 && flagField !== 'noflags') throw new LineError(`empty flags "${flagField}"`);

  let masterId: string | null;
  if (master === '-') masterId = null;
  else if (NODE_ID.test(master)) masterId = master;
  else throw new LineError(`bad master id "${master}"`);

  if (link !== 'connected' && link !== 'disconnected') throw new LineError(`bad link state "${link}"`);

  const role: ClusterNodeEntry['role'] = flags.includes('master')
    ? 'master'
    : flags.includes('slave') || flags.includes('replica')
      ? 'replica'
      : 'unknown';

  const entry: ClusterNodeEntry = {
    id,
    host: address.host,
    port: address.port,
    busPort: address.busPort,
    flags,
    myself: flags.includes('myself'),
    role,
    masterId,
    pingSent: parseUint(pingSent, 'ping-sent'),
    pongReceived: parseUint(pongReceived, 'pong-recv'),
    configEpoch: parseUint(epoch, 'config-epoch'),
    linkState: link,
    fail: flags.includes('fail'),
    pfail: flags.includes('fail?'),
    handshake: flags.includes('handshake'),
    noaddr: flags.includes('noaddr'),
    slots: [],
    migrating: [],
    importing: [],
  };
  if (address.hostname !== undefined) entry.hostname = address.hostname;
  if (address.aux !== undefined) entry.aux = address.aux;

  for (const s of slotFields) parseSlotField(s, entry);
  return entry;
}

interface Address {
  host: string;
  port: number;
  busPort: number;
  hostname?: string;
  aux?: Record<string, string>;
}

function parseAddress(addr: string): Address {
  const [endpoint = '', ...extra] = addr.split(',');
  const at = endpoint.indexOf('@');
  const hostPort = at === -1 ? endpoint : endpoint.slice(0, at);
  // IPv6 addresses are printed without brackets (`::1:6379@16379`): the port follows the last colon.
  const colon = hostPort.lastIndexOf(':');
  if (colon === -1) throw new LineError(`bad address "${addr}"`);
  let host = hostPort.slice(0, colon);
  if (host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1);
  const port = parseUint(hostPort.slice(colon + 1), 'port');
  // Before Redis 4 there was no `@cport`: the bus port was always port + 10000.
  const busPort = at === -1 ? (port === 0 ? 0 : port + 10000) : parseUint(endpoint.slice(at + 1), 'bus port');
  if (port > 65535 || busPort > 65535) throw new LineError(`port out of range in "${addr}"`);

  const out: Address = { host, port, busPort };
  extra.forEach((part, i) => {
    const eq = part.indexOf('=');
    if (eq === -1) {
      // Only the first extra field is the hostname (it may be empty: `ip:port@cport,,shard-id=…`).
      if (i !== 0) throw new LineError(`bad auxiliary address field "${part}"`);
      if (part !== '') out.hostname = part;
    } else {
      (out.aux ??= {})[part.slice(0, eq)] = part.slice(eq + 1);
    }
  });
  return out;
}

const MIGRATING = /^\[(\d+)->-([0-9a-f]{40})\]$/i;
const IMPORTING = /^\[(\d+)-<-([0-9a-f]{40})\]$/i;
const RANGE = /^(\d+)(?:-(\d+))?$/;

function parseSlotField(field: string, entry: ClusterNodeEntry): void {
  let m = MIGRATING.exec(field);
  if (m) {
    entry.migrating.push({ slot: checkSlot(Number(m[1]), field), to: m[2]! });
    return;
  }
  m = IMPORTING.exec(field);
  if (m) {
    entry.importing.push({ slot: checkSlot(Number(m[1]), field), from: m[2]! });
    return;
  }
  m = RANGE.exec(field);
  if (!m) throw new LineError(`bad slot field "${field}"`);
  const start = checkSlot(Number(m[1]), field);
  const end = m[2] === undefined ? start : checkSlot(Number(m[2]), field);
  if (end < start) throw new LineError(`slot range ends before it starts "${field}"`);
  entry.slots.push({ start, end });
}

function checkSlot(n: number, field: string): number {
  if (!Number.isInteger(n) || n < 0 || n > MAX_SLOT) throw new LineError(`slot out of range in "${field}"`);
  return n;
}

function parseUint(s: string, what: string): number {
  if (!UINT.test(s)) throw new LineError(`bad ${what} "${s}"`);
  const n = Number(s);
  if (!Number.isSafeInteger(n)) throw new LineError(`bad ${what} "${s}"`);
  return n;
}

/** Sorted copy with overlapping and adjacent ranges joined: [0-5,6-9,3-4] → [0-9]. */
export function mergeRanges(ranges: SlotRange[]): SlotRange[] {
  const sorted = ranges.map((r) => ({ start: r.start, end: r.end })).sort((a, b) => a.start - b.start || a.end - b.end);
  const out: SlotRange[] = [];
  for (const r of sorted) {
    const last = out[out.length - 1];
    if (last && r.start <= last.end + 1) last.end = Math.max(last.end, r.end);
    else out.push(r);
  }
  return out;
}

/** Number of distinct slots covered (overlaps are counted once). */
export function countSlots(ranges: SlotRange[]): number {
  return mergeRanges(ranges).reduce((n, r) => n + (r.end - r.start + 1), 0);
}

/** `0-5460,5462` — ranges as given, a single slot without a dash; '' for none. */
/** "0-5460,5462"; with `most`, at most that many ranges and then ", … (N ranges)". */
export function formatRanges(ranges: SlotRange[], most?: number): string {
  const shown = most !== undefined && ranges.length > most ? ranges.slice(0, most) : ranges;
  const text = shown.map((r) => (r.start === r.end ? String(r.start) : `${r.start}-${r.end}`)).join(',');
  return shown.length < ranges.length ? `${text},… (${ranges.length} ranges)` : text;
}

/** INFO (or CLUSTER INFO) output → key/value map. Section headers and blank lines are skipped. */
export function parseInfo(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const raw of text.split(/\r?\n/)) {
    const line = raw;
    if (line.startsWith('#')) continue;
    const colon = line.indexOf(':');
    if (colon <= 0) continue; // blank or not a key:value line
    out[line.slice(0, colon)] = line.slice(colon + 1);
  }
  return out;
}

/**
 * Which server answered, from INFO server. Valkey says `server_name:valkey` and its version in
 * `valkey_version`; its `redis_version` is the Redis version it is compatible with (7.2.4 on
 * every Valkey so far), not its own. Redis says neither.
 */
export function parseServer(info: Record<string, string>): ServerInfo {
  const name = info['server_name'] || 'redis';
  return { name, version: info[`${name}_version`] ?? info['redis_version'] ?? '?' };
}

/** "valkey 9.1.2", "redis 7.0.15": how messages name a running server. */
export function serverLabel(server: ServerInfo | undefined): string {
  return server ? `${server.name} ${server.version}` : 'redis ?';
}

/** The replication facts of INFO replication. Throws if `role` is missing or unknown. */
export function parseReplication(info: Record<string, string>): ReplicationInfo {
  const rawRole = info['role'];
  let role: ReplicationInfo['role'];
  if (rawRole === 'master') role = 'master';
  else if (rawRole === 'slave' || rawRole === 'replica') role = 'replica';
  else throw new Error(`INFO replication: unexpected role ${rawRole === undefined ? '(missing)' : `"${rawRole}"`}`);

  const out: ReplicationInfo = { role, connectedReplicas: optionalInt(info['connected_slaves']) ?? 0 };
  if (role === 'replica') {
    const host = info['master_host'];
    if (host !== undefined && host !== '') out.masterHost = host;
    const port = optionalInt(info['master_port']);
    if (port !== undefined) out.masterPort = port;
    const link = info['master_link_status'];
    if (link === 'up' || link === 'down') out.masterLinkStatus = link;
  }
  return out;
}

function optionalInt(s: string | undefined): number | undefined {
  if (s === undefined || !UINT.test(s.trim())) return undefined;
  return Number(s.trim());
}

/** Sum of `keys=` over the `dbN:keys=…,expires=…,avg_ttl=…` lines of INFO keyspace. */
export function parseKeyspaceKeys(info: Record<string, string>): number {
  let total = 0;
  for (const [key, value] of Object.entries(info)) {
    if (!/^db\d+$/.test(key)) continue;
    const m = /(?:^|,)keys=(\d+)(?:,|$)/.exec(value);
    if (m) total += Number(m[1]);
  }
  return total;
}
