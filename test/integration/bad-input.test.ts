import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rcluster } from './support.js';

// The bad-input corpus: every malformed spec or file ends in exit 1 with a position or a named
// reason, no stack trace, and no host contacted. The spec's nodes (and its SSH port) point at
// listeners that count connections: any contact would show.
const PORTS = [7596, 7597, 7598];
const NODES = PORTS.map((p) => `  - 127.0.0.1:${p}`).join('\n');
const servers: Server[] = [];
let contacts = 0;
let dir: string;

const spec = (body: string) => `name: bad\n${body}`;
const ssh = (extra = '') => `connection: ssh\nssh:\n  port: ${PORTS[0]}\n${extra}`;

/** [what, file text, expected in stderr] */
const CORPUS: [string, string, RegExp][] = [
  ['unclosed flow sequence', spec(`nodes: [127.0.0.1:${PORTS[0]}\n`), /cluster\.yaml:\d+:\d+: /],
  ['tab indentation', spec(`nodes:\n\t- 127.0.0.1:${PORTS[0]}\n`), /cluster\.yaml:\d+:\d+: /],
  ['a scalar where a mapping is expected', 'just a string\n', /cluster\.yaml:1:1: /],
  ['duplicate key', spec(`nodes:\n${NODES}\nnodes:\n${NODES}\n`), /cluster\.yaml:\d+:\d+: .*(duplicate|unique)/i],
  ['missing name', `nodes:\n${NODES}\n`, /cluster\.yaml:1:1: missing required key "name"/],
  ['missing nodes', 'name: bad\n', /cluster\.yaml:1:1: missing required key "nodes"/],
  ['empty nodes', spec('nodes: []\n'), /cluster\.yaml:2:8: "nodes" must list at least 1 item/],
  ['nodes is a number', spec('nodes: 5\n'), /cluster\.yaml:2:\d+: /],
  ['unknown key, with a suggestion', spec(`replicaPerMaster: 1\nnodes:\n${NODES}\n`), /cluster\.yaml:2:1: .*did you mean "replicasPerMaster"/],
  ['unknown connection key, with a suggestion', spec(`conection: local\nnodes:\n${NODES}\n`), /cluster\.yaml:2:1: .*did you mean "connection"/],
  ['unknown redis key, with a suggestion', spec(`redis:\n  nodetimeout: 5000\nnodes:\n${NODES}\n`), /cluster\.yaml:3:3: .*did you mean "nodeTimeout"/],
  ['replicasPerMaster not a number', spec(`replicasPerMaster: one\nnodes:\n${NODES}\n`), /cluster\.yaml:2:\d+: .*replicasPerMaster/],
  ['replicasPerMaster negative', spec(`replicasPerMaster: -1\nnodes:\n${NODES}\n`), /cluster\.yaml:2:\d+: .*replicasPerMaster/],
  ['masters not an integer', spec(`masters: 2.5\nnodes:\n${NODES}\n`), /cluster\.yaml:2:\d+: .*masters/],
  ['too few masters', spec(`masters: 2\nnodes:\n${NODES}\n`), /cluster\.yaml:2:\d+: .*masters/],
  ['more masters than nodes', spec(`masters: 4\nreplicasPerMaster: 0\nnodes:\n${NODES}\n`), /cluster\.yaml:2:\d+: masters is 4 but only 3 nodes are listed/],
  ['too few nodes for three masters', spec(`nodes:\n  - 127.0.0.1:${PORTS[0]}\n  - 127.0.0.1:${PORTS[1]}\n`), /cluster\.yaml:2:1: 2 nodes give only 2 masters/],
  ['port out of range', spec(`nodes:\n  - 127.0.0.1:99999\n${NODES}\n`), /cluster\.yaml:3:5: /],
  ['port not a number', spec(`nodes:\n  - { host: 127.0.0.1, port: x }\n${NODES}\n`), /cluster\.yaml:3:\d+: .*port/],
  ['address without a port', spec(`nodes:\n  - 127.0.0.1\n${NODES}\n`), /cluster\.yaml:3:5: /],
  ['duplicate node', spec(`nodes:\n${NODES}\n  - 127.0.0.1:${PORTS[0]}\n`), /cluster\.yaml:6:5: duplicate node "127\.0\.0\.1:7596" \(first listed on line 3\)/],
  ['weight zero', spec(`nodes:\n  - { host: 127.0.0.1, port: 7595, weight: 0 }\n${NODES}\n`), /cluster\.yaml:3:\d+: .*weight/],
  ['weight negative', spec(`nodes:\n  - { host: 127.0.0.1, port: 7595, weight: -2 }\n${NODES}\n`), /cluster\.yaml:3:\d+: .*weight/],
  ['unknown placeholder', spec(`redis:\n  configFile: /etc/redis/{hostname}.conf\nnodes:\n${NODES}\n`), /cluster\.yaml:3:\d+: .*unknown placeholder \{hostname\}/],
  ['relative path over ssh', spec(`${ssh()}redis:\n  configFile: redis.conf\nnodes:\n${NODES}\n`), /cluster\.yaml:\d+:\d+: "configFile" must be an absolute path/],
  ['a managed directive in redis.config', spec(`redis:\n  config:\n    port: 6380\nnodes:\n${NODES}\n`), /cluster\.yaml:4:5: redis\.config must not set "port"/],
  ['a config value of the wrong type', spec(`redis:\n  config:\n    save: [1, 2]\nnodes:\n${NODES}\n`), /cluster\.yaml:4:\d+: "save" must be a string, number or boolean/],
  ['a bad connection value', spec(`connection: telnet\nnodes:\n${NODES}\n`), /cluster\.yaml:2:\d+: .*connection/],
  ['a bad host key policy', spec(`${ssh('  hostKeyPolicy: yolo\n')}nodes:\n${NODES}\n`), /cluster\.yaml:\d+:\d+: .*hostKeyPolicy/],
  ['a password in redis.config', spec(`redis:\n  config:\n    requirepass: hunter2hunter2\nnodes:\n${NODES}\n`), /cluster\.yaml:4:5: redis\.config must not set "requirepass": a password written in the spec/],
  ['a password from both a variable and a file', spec(`redis:\n  passwordEnv: PW\n  passwordFile: pw\nnodes:\n${NODES}\n`), /cluster\.yaml:4:3: give the password either as redis\.passwordEnv or as redis\.passwordFile, not both/],
  ['nodeTimeout too small', spec(`redis:\n  nodeTimeout: 50\nnodes:\n${NODES}\n`), /cluster\.yaml:3:16: "nodeTimeout" must be an integer of at least 100/],
];

describe('the bad-input corpus: exit 1, a position or a named reason, no stack trace, no host contacted', () => {
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'rcluster-bad-input-'));
    for (const port of PORTS) {
      const server = createServer((socket) => {
        contacts++;
        socket.destroy();
      });
      await new Promise<void>((res) => server.listen(port, '127.0.0.1', () => res()));
      servers.push(server);
    }
  });

  afterAll(async () => {
    await Promise.all(servers.map((s) => new Promise((res) => s.close(res))));
    rmSync(dir, { recursive: true, force: true });
  });

  it('has at least 30 malformed specs', () => {
    expect(CORPUS.length).toBeGreaterThanOrEqual(30);
  });

  it.each(CORPUS)('%s', async (_what, text, expected) => {
    const file = join(dir, 'cluster.yaml');
    writeFileSync(file, text);
    for (const command of ['validate', 'plan']) {
      const r = await rcluster(command, '-f', file);
      expect(r.code, `${command}: ${r.err}`).toBe(1);
      expect(r.err).toMatch(expected);
      expect(r.err).not.toMatch(/\n\s+at /);
    }
    expect(contacts).toBe(0);
  });

  it.each([
    ['a spec file that does not exist', () => join(dir, 'nope.yaml'), /nope\.yaml/],
    [
      'a directory given as the spec',
      () => {
        const d = join(dir, 'a-directory');
        mkdirSync(d, { recursive: true });
        return d;
      },
      /a-directory/,
    ],
    [
      'an identity file that cannot be read',
      () => {
        const file = join(dir, 'ssh.yaml');
        writeFileSync(file, spec(`${ssh(`  identityFile: ${join(dir, 'no-such-key')}\n`)}nodes:\n${NODES}\n`));
        return file;
      },
      /ssh\.identityFile .*no-such-key: cannot read it/,
    ],
    [
      'a password variable that is not set',
      () => {
        const file = join(dir, 'pw-env.yaml');
        writeFileSync(file, spec(`redis:\n  passwordEnv: RCLUSTER_BAD_INPUT_UNSET\nnodes:\n${NODES}\n`));
        return file;
      },
      /redis\.passwordEnv: \$RCLUSTER_BAD_INPUT_UNSET is not set \(or empty\) in rcluster's environment; nothing was contacted/,
    ],
    [
      'a password file that cannot be read',
      () => {
        const file = join(dir, 'pw-file.yaml');
        writeFileSync(file, spec(`redis:\n  passwordFile: ./no-such-secret\nnodes:\n${NODES}\n`));
        return file;
      },
      /redis\.passwordFile: .*no-such-secret: cannot read it \(no such file\); nothing was contacted/,
    ],
  ] as const)('%s', async (_what, make, expected) => {
    const r = await rcluster('plan', '-f', make());
    expect(r.code).toBe(1);
    expect(r.err).toMatch(expected);
    expect(r.err).not.toMatch(/\n\s+at /);
    expect(contacts).toBe(0);
  });

  it.each([
    ['a corrupt plan file', '{"rclusterPlan": true, "formatVersion": 1, "desired": ', /is not a plan file written by rcluster plan --out/],
    ['a foreign JSON file', '{"hello": "world"}\n', /is not a plan file written by rcluster plan --out/],
    ['a plan of a format this rcluster does not know', '{"rclusterPlan": true, "formatVersion": 99}\n', /plan format 99 is not supported/],
  ] as const)('apply of %s', async (_what, text, expected) => {
    const file = join(dir, 'plan.json');
    writeFileSync(file, text);
    const r = await rcluster('apply', file);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(expected);
    expect(r.err).not.toMatch(/\n\s+at /);
    expect(contacts).toBe(0);
  });
});
