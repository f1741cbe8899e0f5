import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { Client } from 'ssh2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { harnessAvailable, startHarness, type Harness } from '../harness/index.js';

const HOSTS = [51, 52];

interface SshResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Run one command over real SSH (ssh2), verifying the host key against `expectedKeyBlob`. */
function sshExec(address: string, identityFile: string, expectedKeyBlob: Buffer, command: string): Promise<SshResult> {
  return new Promise((resolve, reject) => {
    const conn = new Client();
    conn
      .on('ready', () => {
        conn.exec(command, (err, stream) => {
          if (err) {
            conn.end();
            return reject(err);
          }
          let stdout = '';
          let stderr = '';
          stream.on('data', (d: Buffer) => (stdout += d.toString()));
          stream.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
          stream.on('close', (code: number | null) => {
            conn.end();
            resolve({ code, stdout, stderr });
          });
        });
      })
      .on('error', reject)
      .connect({
        host: address,
        port: 22,
        username: 'root',
        privateKey: readFileSync(identityFile),
        hostVerifier: (key: Buffer) => key.equals(expectedKeyBlob),
        readyTimeout: 10_000,
      });
  });
}

/** 'open' when address:port accepts a connection, else the error code (ECONNREFUSED...). */
function tcpState(address: string, port: number): Promise<string> {
  return new Promise((resolve) => {
    const s = connect({ host: address, port });
    const t = setTimeout(() => {
      s.destroy();
      resolve('timeout');
    }, 3_000);
    s.on('connect', () => {
      clearTimeout(t);
      s.destroy();
      resolve('open');
    });
    s.on('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(t);
      resolve(e.code ?? e.message);
    });
  });
}

/** Send PING to redis, return the first reply line. */
function redisPing(address: string, port = 6379): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: address, port }, () => s.write('PING\r\n'));
    let buf = '';
    const t = setTimeout(() => {
      s.destroy();
      reject(new Error(`no PING reply from ${address}:${port}`));
    }, 3_000);
    s.on('data', (d) => {
      buf += d.toString();
      if (buf.includes('\r\n')) {
        clearTimeout(t);
        s.destroy();
        resolve(buf.split('\r\n')[0] ?? '');
      }
    });
    s.on('error', (e) => {
      clearTimeout(t);
      reject(e);
    });
  });
}

function pgrep(name: string): string[] {
  try {
    return execFileSync('pgrep', ['-a', name], { encoding: 'utf8' }).trim().split('\n');
  } catch {
    return []; // pgrep exits 1 when nothing matches
  }
}

describe('multi-host test harness', () => {
  let h: Harness | undefined;
  let startMs = 0;

  beforeAll(async () => {
    const avail = harnessAvailable();
    // Never skip silently: the e2e suite needs root, sshd, redis-server and unshare.
    if (!avail.ok) throw new Error(`test harness unavailable: ${avail.why}`);
    const t0 = Date.now();
    h = await startHarness({ hosts: HOSTS });
    startMs = Date.now() - t0;
  });

  afterAll(async () => {
    await h?.stop();
  });

  const harness = (): Harness => {
    if (!h) throw new Error('harness did not start');
    return h;
  };

  it('is available and starts quickly', () => {
    expect(harnessAvailable()).toEqual({ ok: true });
    expect(harness().hosts.map((x) => x.address)).toEqual(['127.0.0.51', '127.0.0.52']);
    expect(startMs).toBeLessThan(5_000);
  });

  it('writes known_hosts with every host key', () => {
    const hs = harness();
    const lines = readFileSync(hs.knownHostsFile, 'utf8').trim().split('\n');
    expect(lines).toEqual(HOSTS.map((n) => `127.0.0.${n} ${hs.hostPublicKey(n)}`));
    for (const line of lines) expect(line).toMatch(/^127\.0\.0\.\d+ ssh-ed25519 AAAA[A-Za-z0-9+/=]+$/);
  });

  it('gives each host its own /etc/redis, seen over real SSH', async () => {
    const hs = harness();
    for (const n of HOSTS) {
      const r = await sshExec(`127.0.0.${n}`, hs.identityFile, hs.hostKeyBlob(n), 'cat /etc/redis/6379.conf');
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(new RegExp(`^bind 127\\.0\\.0\\.${n}$`, 'm'));
      expect(r.stdout).not.toMatch(/^cluster-enabled/m);
      expect(r.stdout).toContain('# Redis configuration file example');
    }
    // The file behind host 51's /etc/redis/6379.conf is the per-host one.
    const h51 = hs.hosts.find((x) => x.n === 51);
    expect(readFileSync(h51!.path('/etc/redis/6379.conf'), 'utf8')).toMatch(/^bind 127\.0\.0\.51$/m);
    // The system's /etc/redis is untouched.
    expect(existsSync('/etc/redis/6379.conf')).toBe(false);
  });

  it('rejects a wrong host key (hostVerifier is really checked)', async () => {
    const hs = harness();
    await expect(sshExec('127.0.0.51', hs.identityFile, hs.hostKeyBlob(52), 'true')).rejects.toThrow();
  });

  it('runs redis through the init script', async () => {
    const hs = harness();
    const r = await sshExec('127.0.0.51', hs.identityFile, hs.hostKeyBlob(51), '/etc/init.d/redis_6379 status');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/running/);
    expect(r.stdout).not.toMatch(/not running/);
    expect(await redisPing('127.0.0.51')).toBe('+PONG');
    expect(await redisPing('127.0.0.52')).toBe('+PONG');
    const e = await hs.exec(52, 'cat /var/run/redis_6379.pid; ls /var/lib/redis');
    expect(e.code).toBe(0);
    expect(e.stdout).toMatch(/^\d+\n6379\n$/);
  });

  it('stopHost takes the whole host down and startHost brings it back', async () => {
    const hs = harness();
    await hs.stopHost(51);
    expect(await tcpState('127.0.0.51', 22)).toBe('ECONNREFUSED');
    expect(await tcpState('127.0.0.51', 6379)).toBe('ECONNREFUSED');
    expect(hs.isUp(51)).toBe(false);
    // host 52 is unaffected
    expect(await redisPing('127.0.0.52')).toBe('+PONG');

    await hs.startHost(51);
    expect(await tcpState('127.0.0.51', 22)).toBe('open');
    expect(await redisPing('127.0.0.51')).toBe('+PONG');
    const r = await sshExec('127.0.0.51', hs.identityFile, hs.hostKeyBlob(51), '/etc/init.d/redis_6379 status');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/Redis is running/);
  });

  it('rotateHostKey gives the host a new key that ssh clients see', async () => {
    const hs = harness();
    const oldBlob = hs.hostKeyBlob(52);
    const knownBefore = readFileSync(hs.knownHostsFile, 'utf8');
    await hs.rotateHostKey(52);
    expect(hs.hostKeyBlob(52).equals(oldBlob)).toBe(false);
    await expect(sshExec('127.0.0.52', hs.identityFile, oldBlob, 'true')).rejects.toThrow();
    const r = await sshExec('127.0.0.52', hs.identityFile, hs.hostKeyBlob(52), 'echo ok');
    expect(r.stdout).toBe('ok\n');
    // like a client's known_hosts, the file still has the old key until asked to refresh
    expect(readFileSync(hs.knownHostsFile, 'utf8')).toBe(knownBefore);
    await hs.writeKnownHosts();
    expect(readFileSync(hs.knownHostsFile, 'utf8')).toContain(`127.0.0.52 ${hs.hostPublicKey(52)}`);
  });

  it('stop() leaves no process, mount or state dir behind', async () => {
    const hs = harness();
    const root = hs.root;
    await hs.stop();
    h = undefined;
    const mine = (line: string) => /127\.0\.0\.5[12]\b/.test(line) || line.includes(root);
    expect(pgrep('redis-server').filter(mine)).toEqual([]);
    expect(pgrep('sshd').filter(mine)).toEqual([]);
    expect(existsSync(root)).toBe(false);
    expect(readFileSync('/proc/self/mountinfo', 'utf8')).not.toContain('rcluster-harness');
    expect(await tcpState('127.0.0.51', 22)).toBe('ECONNREFUSED');
    expect(await tcpState('127.0.0.52', 6379)).toBe('ECONNREFUSED');
  });
});
