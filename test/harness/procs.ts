/**
 * /proc helpers for the test harness: find the processes that live in a test host's
 * mount namespace, and kill them. Everything here is deliberately conservative: a
 * process is only ever considered "ours" when its mount table shows the host's
 * per-host /etc/redis bind mount, so redis-servers or sshds of other people
 * (which live in the root mount namespace) are never touched.
 */
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';

export function listPids(): number[] {
  const out: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (/^\d+$/.test(name)) out.push(Number(name));
  }
  return out;
}

/** `mnt:[4026532177]` (kind mnt) or `net:[4026531840]` (net), or null when the process is gone
 *  (or a zombie). */
function namespace(kind: 'mnt' | 'net', pid: number | 'self'): string | null {
  try {
    return readlinkSync(`/proc/${pid}/ns/${kind}`);
  } catch {
    return null;
  }
}

export const mntNs = (pid: number | 'self') => namespace('mnt', pid);
export const netNs = (pid: number | 'self') => namespace('net', pid);

export const OWN_MNT_NS = mntNs('self');

function unescapeMountinfo(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_m, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

/**
 * True when the process's mount table has `<hostDir>/etc-redis` bound on /etc/redis.
 * mountinfo field 4 is the path of the bind source relative to its filesystem's root,
 * so it is a suffix of the absolute path (equal to it when /tmp is on the root fs).
 */
export function hasHostBind(pid: number, hostDir: string, n: number): boolean {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/mountinfo`, 'utf8');
  } catch {
    return false;
  }
  const source = `${hostDir}/etc-redis`;
  const suffix = `/hosts/${n}/etc-redis`;
  for (const line of text.split('\n')) {
    const f = line.split(' ');
    const root = f[3];
    const mountPoint = f[4];
    if (root === undefined || mountPoint === undefined) continue;
    if (unescapeMountinfo(mountPoint) !== '/etc/redis') continue;
    const r = unescapeMountinfo(root);
    if (r.endsWith(suffix) && source.endsWith(r)) return true;
  }
  return false;
}

/**
 * Pids of every process in test host n's mount namespace (there is one namespace per
 * host boot). Processes sharing our own mount namespace are skipped without reading
 * their mount table; the rest must show the host's bind mount.
 */
export function hostPids(hostDir: string, n: number): number[] {
  const out: number[] = [];
  for (const pid of listPids()) {
    if (pid === process.pid) continue;
    const ns = mntNs(pid);
    if (ns === null || ns === OWN_MNT_NS) continue;
    if (hasHostBind(pid, hostDir, n)) out.push(pid);
  }
  return out;
}

/** Pids whose mount namespace is `ns` (must not be our own namespace). */
export function pidsInNs(ns: string): number[] {
  if (ns === OWN_MNT_NS) throw new Error(`refusing to look up processes of our own mount namespace ${ns}`);
  return listPids().filter((pid) => pid !== process.pid && mntNs(pid) === ns);
}

export function isAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

/** Process start time (clock ticks since boot), to tell a live pid from a reused one. */
export function startTime(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? null;
  } catch {
    return null;
  }
}

export function cmdline(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim();
  } catch {
    return '';
  }
}

/** The last lines of a log file ('' when there is none), for error messages. */
export function tail(file: string, lines = 20): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '';
  }
}

export function kill(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    /* already gone */
  }
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** SIGKILL whatever `find` returns until it returns nothing (processes may fork meanwhile). */
export async function killUntilGone(find: () => number[], what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const pids = find();
    if (pids.length === 0) return;
    if (Date.now() > deadline) {
      throw new Error(`${what}: processes still alive after ${timeoutMs} ms: ${pids.map((p) => `${p} (${cmdline(p)})`).join(', ')}`);
    }
    for (const pid of pids) kill(pid, 'SIGKILL');
    await sleep(10);
  }
}

/** Synchronous variant for process 'exit' handlers. */
export function killUntilGoneSync(find: () => number[], timeoutMs = 2_000): void {
  const deadline = Date.now() + timeoutMs;
  const cell = new Int32Array(new SharedArrayBuffer(4));
  for (;;) {
    const pids = find();
    if (pids.length === 0 || Date.now() > deadline) return;
    for (const pid of pids) kill(pid, 'SIGKILL');
    Atomics.wait(cell, 0, 0, 10);
  }
}
