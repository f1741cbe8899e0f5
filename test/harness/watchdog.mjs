// Watchdog of one harness: started detached by test/harness/index.ts with a pipe on stdin.
// When the pipe closes without the harness having killed us first (the test process
// died: crash, SIGKILL, vitest timeout), kill every process of every test host
// (identified by the host's /etc/redis bind mount in /proc/<pid>/mountinfo) and remove
// the state dir (and the sudoers.d file of HarnessOptions.user, if any; and the datacenter relay
// of HarnessOptions.datacenter, which also exits by itself when the test process dies). A clean stop() SIGKILLs
// the watchdog before tearing down itself.
//
// argv: <realRoot> <n,n,...>
import { readdirSync, readFileSync, readlinkSync, rmSync, existsSync, rmdirSync } from 'node:fs';
import { dirname, basename } from 'node:path';
import { fileURLToPath } from 'node:url';

const RELAY = fileURLToPath(new URL('./relay.mjs', import.meta.url));

const [root, hostList] = process.argv.slice(2);
if (!root || !hostList) process.exit(2);
const hosts = hostList.split(',').map(Number);
const ownNs = (() => {
  try {
    return readlinkSync('/proc/self/ns/mnt');
  } catch {
    return null;
  }
})();

function unescape(s) {
  return s.replace(/\\([0-7]{3})/g, (_m, o) => String.fromCharCode(parseInt(o, 8)));
}

function ours(pid) {
  let ns;
  try {
    ns = readlinkSync(`/proc/${pid}/ns/mnt`);
  } catch {
    return false;
  }
  if (ns === ownNs) return false;
  let text;
  try {
    text = readFileSync(`/proc/${pid}/mountinfo`, 'utf8');
  } catch {
    return false;
  }
  for (const line of text.split('\n')) {
    const f = line.split(' ');
    if (f.length < 5 || unescape(f[4]) !== '/etc/redis') continue;
    const r = unescape(f[3]);
    for (const n of hosts) {
      if (r.endsWith(`/hosts/${n}/etc-redis`) && `${root}/hosts/${n}/etc-redis`.endsWith(r)) return true;
    }
  }
  return false;
}

function find() {
  return readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d))
    .map(Number)
    .filter((p) => p !== process.pid && ours(p));
}

function readState() {
  try {
    return JSON.parse(readFileSync(`${root}/state.json`, 'utf8'));
  } catch {
    return {};
  }
}

function cleanup() {
  const state = readState();
  // Only the relay of this state dir: its pid may have been reused since.
  if (Number.isInteger(state.relayPid)) {
    let cmd = '';
    try {
      cmd = readFileSync(`/proc/${state.relayPid}/cmdline`, 'utf8').split('\0').join(' ').trim();
    } catch {
      /* gone */
    }
    if (cmd.includes(RELAY) && cmd.endsWith(` ${root}`)) {
      try {
        process.kill(state.relayPid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
  }
  const deadline = Date.now() + 10_000;
  const cell = new Int32Array(new SharedArrayBuffer(4));
  for (;;) {
    const pids = find();
    if (pids.length === 0 || Date.now() > deadline) break;
    for (const p of pids) {
      try {
        process.kill(p, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    Atomics.wait(cell, 0, 0, 20);
  }
  // The sudo rule of HarnessOptions.user lives in the real /etc/sudoers.d: never leave it behind.
  const f = state.sudoersFile;
  if (typeof f === 'string' && /^\/etc\/sudoers\.d\/rcluster-harness-[^./]+$/.test(f)) rmSync(f, { force: true });
  if (existsSync(`${root}/.rcluster-harness`)) rmSync(root, { recursive: true, force: true });
  const parent = dirname(root);
  if (basename(parent) === 'rcluster-harness') {
    try {
      rmdirSync(parent);
    } catch {
      /* not empty: other harnesses */
    }
  }
  process.exit(0);
}

process.on('SIGINT', () => {});
process.on('SIGTERM', () => {});
process.on('SIGHUP', () => {});
process.stdin.on('data', () => {});
process.stdin.on('end', cleanup);
process.stdin.on('close', cleanup);
process.stdin.on('error', cleanup);
process.stdin.resume();
