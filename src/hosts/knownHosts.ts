/**
 * OpenSSH known_hosts matching. Pure functions, plus two small file helpers.
 *
 * Supported: plain names and addresses, comma-separated lists, `[host]:port` for ports other than
 * 22, hashed entries `|1|salt|hash` (HMAC-SHA1 of the name, or of `[host]:port`, keyed with the
 * salt), comments and blank lines, negated patterns `!host` (a match rejects the whole line),
 * wildcards `*` and `?`, `@revoked` lines (the offered key is refused whatever the other lines say)
 * and `@cert-authority` lines (ignored: rcluster does not do host certificates).
 *
 * Result:
 * - 'match': a line for this host carries exactly the offered key (same type and blob).
 * - 'changed': no line matches, but the host is listed with another key of the SAME type (the
 *   fingerprint of the first such key is reported), or the offered key is @revoked (`revoked: true`).
 * - 'unknown': otherwise, including when the host is listed only with keys of other types.
 */

import { createHash, createHmac } from 'node:crypto';
import { appendFile, mkdir, readFile } from 'node:fs/promises';
import { dirname } from 'node:path';

export type HostKeyCheck =
  | { status: 'match' }
  | { status: 'unknown' }
  | { status: 'changed'; knownFingerprint: string; revoked?: boolean };

interface Entry {
  marker: '' | '@revoked' | '@cert-authority';
  hosts: string;
  keyType: string;
  blob: Buffer;
}

function parseLine(line: string): Entry | null {
  const trimmed = line.trim();
  if (trimmed === '' || trimmed.startsWith('#')) return null;
  const fields = trimmed.split(/\s+/);
  let marker: Entry['marker'] = '';
  if (fields[0]?.startsWith('@')) {
    const m = fields.shift()!;
    if (m !== '@revoked' && m !== '@cert-authority') return null;
    marker = m;
  }
  const [hosts, keyType, b64] = fields;
  if (hosts === undefined || keyType === undefined || b64 === undefined) return null;
  if (!/^[A-Za-z0-9+/]+=*$/.test(b64)) return null;
  return { marker, hosts, keyType, blob: Buffer.from(b64, 'base64') };
}

/** The name known_hosts stores for a host and port: `host` for 22, `[host]:port` otherwise. */
export function knownHostsName(host: string, port: number): string {
  return port === 22 ? host : `[${host}]:${port}`;
}

function wildcardMatch(pattern: string, name: string): boolean {
  const re = new RegExp(
    '^' +
      pattern
        .split('')
        .map((c) => (c === '*' ? '.*' : c === '?' ? '.' : c.replace(/[.+^${}()|[\]\\]/g, '\\$&')))
        .join('') +
      '$',
    'i',
  );
  return re.test(name);
}

function hashedMatch(entry: string, name: string): boolean {
  const parts = entry.split('|');
  // ['', '1', salt, hash]
  if (parts.length !== 4 || parts[1] !== '1') return false;
  const salt = Buffer.from(parts[2]!, 'base64');
  const want = Buffer.from(parts[3]!, 'base64');
  const got = createHmac('sha1', salt).update(name).digest();
  return got.length === want.length && got.equals(want);
}

/** Whether the host field of a line covers `name` (OpenSSH match_hostname semantics, roughly). */
function hostsMatch(hosts: string, name: string): boolean {
  if (hosts.startsWith('|')) return hashedMatch(hosts, name);
  let positive = false;
  for (const raw of hosts.split(',')) {
    if (raw === '') continue;
    const negated = raw.startsWith('!');
    const pattern = negated ? raw.slice(1) : raw;
    if (wildcardMatch(pattern, name)) {
      if (negated) return false;
      positive = true;
    }
  }
  return positive;
}

export function checkHostKey(
  knownHostsText: string,
  host: string,
  port: number,
  keyType: string,
  keyBlob: Buffer,
): HostKeyCheck {
  const name = knownHostsName(host.toLowerCase(), port);
  let matched = false;
  let changed: string | null = null;
  for (const line of knownHostsText.split(/\r?\n/)) {
    const e = parseLine(line);
    if (!e || e.marker === '@cert-authority') continue;
    if (!hostsMatch(e.hosts, name)) continue;
    if (e.marker === '@revoked') {
      if (e.blob.equals(keyBlob)) {
        return { status: 'changed', knownFingerprint: fingerprintSha256(e.blob), revoked: true };
      }
      continue;
    }
    if (e.keyType !== keyType) continue;
    if (e.blob.equals(keyBlob)) matched = true;
    else changed ??= fingerprintSha256(e.blob);
  }
  if (matched) return { status: 'match' };
  if (changed !== null) return { status: 'changed', knownFingerprint: changed };
  return { status: 'unknown' };
}

/** `SHA256:<base64 without padding>`, as `ssh-keygen -lf` prints it. */
export function fingerprintSha256(keyBlob: Buffer): string {
  return 'SHA256:' + createHash('sha256').update(keyBlob).digest('base64').replace(/=+$/, '');
}

/** A known_hosts line (no newline): `host keytype base64`, or `[host]:port keytype base64`. */
export function knownHostsLine(host: string, port: number, keyType: string, keyBlob: Buffer): string {
  return `${knownHostsName(host, port)} ${keyType} ${keyBlob.toString('base64')}`;
}

/** The key type named inside an SSH public key blob (its first length-prefixed string). */
export function keyTypeOfBlob(keyBlob: Buffer): string | null {
  if (keyBlob.length < 4) return null;
  const len = keyBlob.readUInt32BE(0);
  if (len === 0 || len > 64 || keyBlob.length < 4 + len) return null;
  return keyBlob.subarray(4, 4 + len).toString('latin1');
}

/** The text of a known_hosts file; '' when it does not exist. */
export async function readKnownHosts(file: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return '';
    throw err;
  }
}

/**
 * Append one line to a known_hosts file, creating its directory (mode 700) and the file (mode 600)
 * when missing, and adding a newline first when the file does not end with one.
 */
export async function appendKnownHost(file: string, line: string): Promise<void> {
  await mkdir(dirname(file), { recursive: true, mode: 0o700 });
  const current = await readKnownHosts(file);
  const sep = current === '' || current.endsWith('\n') ? '' : '\n';
  await appendFile(file, `${sep}${line}\n`, { mode: 0o600 });
}
