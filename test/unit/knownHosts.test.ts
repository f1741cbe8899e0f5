import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  appendKnownHost,
  checkHostKey,
  fingerprintSha256,
  keyTypeOfBlob,
  knownHostsLine,
  readKnownHosts,
} from '../../src/hosts/knownHosts.js';

interface Key {
  type: string;
  b64: string;
  blob: Buffer;
  pubFile: string;
}

let dir: string;
let edA: Key;
let edB: Key;
let ecC: Key;

function genKey(name: string, type: 'ed25519' | 'ecdsa'): Key {
  const file = join(dir, name);
  execFileSync('ssh-keygen', ['-q', '-t', type, '-N', '', '-C', name, '-f', file]);
  const [keyType, b64] = readFileSync(`${file}.pub`, 'utf8').trim().split(/\s+/);
  return { type: keyType!, b64: b64!, blob: Buffer.from(b64!, 'base64'), pubFile: `${file}.pub` };
}

/** Hash a known_hosts text with OpenSSH's own `ssh-keygen -H`. */
function hashWithSshKeygen(text: string): string {
  const file = join(dir, `kh-${Math.random().toString(16).slice(2)}`);
  writeFileSync(file, text);
  execFileSync('ssh-keygen', ['-H', '-f', file], { stdio: 'ignore' });
  const hashed = readFileSync(file, 'utf8');
  for (const line of hashed.trim().split('\n')) expect(line).toMatch(/^\|1\|[^|]+\|[^|]+ /);
  return hashed;
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'rcluster-kh-'));
  edA = genKey('a', 'ed25519');
  edB = genKey('b', 'ed25519');
  ecC = genKey('c', 'ecdsa');
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('fingerprintSha256', () => {
  it('equals ssh-keygen -lf', () => {
    for (const k of [edA, edB, ecC]) {
      const out = execFileSync('ssh-keygen', ['-l', '-E', 'sha256', '-f', k.pubFile], { encoding: 'utf8' });
      expect(fingerprintSha256(k.blob)).toBe(out.split(/\s+/)[1]);
    }
  });

  it('keyTypeOfBlob reads the type from the blob', () => {
    expect(keyTypeOfBlob(edA.blob)).toBe('ssh-ed25519');
    expect(keyTypeOfBlob(ecC.blob)).toBe(ecC.type);
    expect(keyTypeOfBlob(Buffer.alloc(2))).toBeNull();
  });
});

describe('checkHostKey', () => {
  const cases: {
    name: string;
    text: () => string;
    host: string;
    port: number;
    key: () => Key;
    expected: () => ReturnType<typeof checkHostKey>;
  }[] = [
    {
      name: 'plain entry, same key',
      text: () => `127.0.0.53 ${edA.type} ${edA.b64}\n`,
      host: '127.0.0.53',
      port: 22,
      key: () => edA,
      expected: () => ({ status: 'match' }),
    },
    {
      name: 'plain entry, other key of the same type',
      text: () => `127.0.0.53 ${edA.type} ${edA.b64}\n`,
      host: '127.0.0.53',
      port: 22,
      key: () => edB,
      expected: () => ({ status: 'changed', knownFingerprint: fingerprintSha256(edA.blob) }),
    },
    {
      name: 'host listed only with a key of another type',
      text: () => `127.0.0.53 ${ecC.type} ${ecC.b64}\n`,
      host: '127.0.0.53',
      port: 22,
      key: () => edA,
      expected: () => ({ status: 'unknown' }),
    },
    {
      name: 'other host',
      text: () => `127.0.0.53 ${edA.type} ${edA.b64}\n`,
      host: '127.0.0.54',
      port: 22,
      key: () => edA,
      expected: () => ({ status: 'unknown' }),
    },
    {
      name: 'empty file',
      text: () => '',
      host: '127.0.0.53',
      port: 22,
      key: () => edA,
      expected: () => ({ status: 'unknown' }),
    },
    {
      name: 'comma list, comments, blank lines, CRLF',
      text: () => `# comment\r\n\r\nnode1,127.0.0.54,node3 ${edA.type} ${edA.b64} comment\r\n`,
      host: '127.0.0.54',
      port: 22,
      key: () => edA,
      expected: () => ({ status: 'match' }),
    },
    {
      name: 'a mismatching line does not hide a matching one',
      text: () => `127.0.0.53 ${edB.type} ${edB.b64}\n127.0.0.53 ${edA.type} ${edA.b64}\n`,
      host: '127.0.0.53',
      port: 22,
      key: () => edA,
      expected: () => ({ status: 'match' }),
    },
    {
      name: '[host]:port entry matches that port',
      text: () => `[127.0.0.55]:2222 ${edA.type} ${edA.b64}\n`,
      host: '127.0.0.55',
      port: 2222,
      key: () => edA,
      expected: () => ({ status: 'match' }),
    },
    {
      name: '[host]:port entry changed',
      text: () => `[127.0.0.55]:2222 ${edA.type} ${edA.b64}\n`,
      host: '127.0.0.55',
      port: 2222,
      key: () => edB,
      expected: () => ({ status: 'changed', knownFingerprint: fingerprintSha256(edA.blob) }),
    },
    {
      name: '[host]:port entry does not cover port 22',
      text: () => `[127.0.0.55]:2222 ${edA.type} ${edA.b64}\n`,
      host: '127.0.0.55',
      port: 22,
      key: () => edA,
      expected: () => ({ status: 'unknown' }),
    },
    {
      name: 'plain entry does not cover another port',
      text: () => `127.0.0.55 ${edA.type} ${edA.b64}\n`,
      host: '127.0.0.55',
      port: 2222,
      key: () => edA,
      expected: () => ({ status: 'unknown' }),
    },
    {
      name: 'hashed entry (ssh-keygen -H), match',
      text: () => hashWithSshKeygen(`127.0.0.56 ${edA.type} ${edA.b64}\n`),
      host: '127.0.0.56',
      port: 22,
      key: () => edA,
      expected: () => ({ status: 'match' }),
    },
    {
      name: 'hashed entry, changed',
      text: () => hashWithSshKeygen(`127.0.0.56 ${edA.type} ${edA.b64}\n`),
      host: '127.0.0.56',
      port: 22,
      key: () => edB,
      expected: () => ({ status: 'changed', knownFingerprint: fingerprintSha256(edA.blob) }),
    },
    {
      name: 'hashed entry, other host',
      text: () => hashWithSshKeygen(`127.0.0.56 ${edA.type} ${edA.b64}\n`),
      host: '127.0.0.57',
      port: 22,
      key: () => edA,
      expected: () => ({ status: 'unknown' }),
    },
    {
      name: 'hashed [host]:port entry',
      text: () => hashWithSshKeygen(`[127.0.0.56]:2200 ${edA.type} ${edA.b64}\n`),
      host: '127.0.0.56',
      port: 2200,
      key: () => edA,
      expected: () => ({ status: 'match' }),
    },
    {
      name: 'hashed comma list (ssh-keygen -H splits it)',
      text: () => hashWithSshKeygen(`db1,127.0.0.57 ${edA.type} ${edA.b64}\n`),
      host: '127.0.0.57',
      port: 22,
      key: () => edB,
      expected: () => ({ status: 'changed', knownFingerprint: fingerprintSha256(edA.blob) }),
    },
    {
      name: 'wildcard',
      text: () => `127.0.0.* ${edA.type} ${edA.b64}\n`,
      host: '127.0.0.58',
      port: 22,
      key: () => edA,
      expected: () => ({ status: 'match' }),
    },
    {
      name: '? wildcard',
      text: () => `127.0.0.5? ${edA.type} ${edA.b64}\n`,
      host: '127.0.0.510',
      port: 22,
      key: () => edA,
      expected: () => ({ status: 'unknown' }),
    },
    {
      name: 'negated pattern rejects the line',
      text: () => `127.0.0.*,!127.0.0.58 ${edA.type} ${edA.b64}\n`,
      host: '127.0.0.58',
      port: 22,
      key: () => edB,
      expected: () => ({ status: 'unknown' }),
    },
    {
      name: 'host names are case-insensitive',
      text: () => `Redis-1.Example ${edA.type} ${edA.b64}\n`,
      host: 'redis-1.example',
      port: 22,
      key: () => edA,
      expected: () => ({ status: 'match' }),
    },
    {
      name: '@revoked key is refused even when also listed',
      text: () => `127.0.0.53 ${edA.type} ${edA.b64}\n@revoked * ${edA.type} ${edA.b64}\n`,
      host: '127.0.0.53',
      port: 22,
      key: () => edA,
      expected: () => ({ status: 'changed', knownFingerprint: fingerprintSha256(edA.blob), revoked: true }),
    },
    {
      name: '@revoked of another key does not matter',
      text: () => `@revoked * ${edB.type} ${edB.b64}\n127.0.0.53 ${edA.type} ${edA.b64}\n`,
      host: '127.0.0.53',
      port: 22,
      key: () => edA,
      expected: () => ({ status: 'match' }),
    },
    {
      name: '@cert-authority lines are ignored',
      text: () => `@cert-authority 127.0.0.53 ${edB.type} ${edB.b64}\n`,
      host: '127.0.0.53',
      port: 22,
      key: () => edA,
      expected: () => ({ status: 'unknown' }),
    },
    {
      name: 'malformed lines are skipped',
      text: () => `127.0.0.53\n127.0.0.53 ${edA.type} !!!\n@bogus 127.0.0.53 ${edB.type} ${edB.b64}\n`,
      host: '127.0.0.53',
      port: 22,
      key: () => edA,
      expected: () => ({ status: 'unknown' }),
    },
  ];

  it.each(cases)('$name', ({ text, host, port, key, expected }) => {
    const k = key();
    expect(checkHostKey(text(), host, port, k.type, k.blob)).toEqual(expected());
  });
});

describe('knownHostsLine', () => {
  it('uses the plain name for port 22 and [host]:port otherwise', () => {
    expect(knownHostsLine('127.0.0.53', 22, edA.type, edA.blob)).toBe(`127.0.0.53 ${edA.type} ${edA.b64}`);
    expect(knownHostsLine('127.0.0.53', 2222, edA.type, edA.blob)).toBe(`[127.0.0.53]:2222 ${edA.type} ${edA.b64}`);
  });

  it('is found by ssh-keygen -F and by checkHostKey', async () => {
    const file = join(dir, 'sub', 'dir', 'known_hosts');
    expect(await readKnownHosts(file)).toBe('');
    await appendKnownHost(file, knownHostsLine('127.0.0.53', 2222, edA.type, edA.blob));
    await appendKnownHost(file, knownHostsLine('127.0.0.54', 22, ecC.type, ecC.blob));
    const text = await readKnownHosts(file);
    expect(text.split('\n')).toHaveLength(3);
    const found = execFileSync('ssh-keygen', ['-F', '[127.0.0.53]:2222', '-f', file], { encoding: 'utf8' });
    expect(found).toContain(edA.b64);
    expect(checkHostKey(text, '127.0.0.53', 2222, edA.type, edA.blob)).toEqual({ status: 'match' });
    expect(checkHostKey(text, '127.0.0.54', 22, ecC.type, ecC.blob)).toEqual({ status: 'match' });
  });

  it('appendKnownHost adds a missing final newline first', async () => {
    const file = join(dir, 'nonl');
    writeFileSync(file, `127.0.0.9 ${edB.type} ${edB.b64}`);
    await appendKnownHost(file, knownHostsLine('127.0.0.10', 22, edA.type, edA.blob));
    expect(readFileSync(file, 'utf8')).toBe(
      `127.0.0.9 ${edB.type} ${edB.b64}\n127.0.0.10 ${edA.type} ${edA.b64}\n`,
    );
  });
});
