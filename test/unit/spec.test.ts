import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { SpecError, UsageError, formatDiagnostic } from '../../src/errors.js';
import { loadSpec, parseSpec, requireSpec, SCHEMA_URL } from '../../src/spec/load.js';
import { serverCommand, type Diagnostic } from '../../src/spec/types.js';

const FILE = 'specs/cluster.yaml';
const SPEC_DIR = resolve('specs');

/** "  - 127.0.0.1:7001" lines, for the common tail of a spec. */
function nodeLines(count: number, first = 7001): string {
  return Array.from({ length: count }, (_, i) => `  - 127.0.0.1:${first + i}`).join('\n');
}
const SIX = `nodes:\n${nodeLines(6)}\n`;

function errors(text: string): Diagnostic[] {
  return parseSpec(text, FILE).diagnostics.filter((d) => d.severity === 'error');
}
function lines(ds: Diagnostic[]): string[] {
  return ds.map((d) => `${d.line}:${d.col}: ${d.message}`);
}

describe('bad specs: each problem is reported at its line and column', () => {
  // [what, spec text, line, col, part of the message]
  const cases: [string, string, number, number, string][] = [
    ['YAML syntax error', `name: x\nnodes: [127.0.0.1:7001\nmasters: 3\n`, 3, 1, 'Flow sequence'],
    ['duplicate YAML key', `name: x\n${SIX}name: y\n`, 9, 1, 'Map keys must be unique'],
    ['empty document', `# nothing here\n`, 1, 1, 'the spec is empty'],
    ['spec is a list', `- a\n- b\n`, 1, 1, 'the spec must be a mapping (got a list)'],
    ['wrong type', `name: x\nreplicasPerMaster: "one"\n${SIX}`, 2, 20, '"replicasPerMaster" must be an integer of at least 0 (got "one")'],
    ['negative replicasPerMaster', `name: x\nreplicasPerMaster: -1\n${SIX}`, 2, 20, '"replicasPerMaster" must be an integer of at least 0 (got -1)'],
    ['unknown top-level key', `name: x\nreplicas: 1\n${SIX}`, 2, 1, 'unknown key "replicas" (allowed: name, connection, ssh, redis, timeouts, replicasPerMaster, masters, migration, nodes)'],
    ['unknown key inside redis', `name: x\nredis:\n  nodeTimeout: 5000\n  maxmemory: 1gb\n${SIX}`, 4, 3, 'unknown key "maxmemory" in redis (allowed: configFile,'],
    ['unknown key in a node object', `name: x\nnodes:\n  - { host: 127.0.0.1, port: 7001, wieght: 2 }\n${nodeLines(5, 7002)}\n`, 3, 36, 'unknown key "wieght" in nodes[0]; did you mean "weight"? (allowed: host, port, weight, preferredMaster, ssh)'],
    ['unknown key in a node ssh', `name: x\nnodes:\n  - host: 127.0.0.1\n    port: 7001\n    ssh: { usr: a }\n${nodeLines(5, 7002)}\n`, 5, 12, 'unknown key "usr" in nodes[0].ssh; did you mean "user"? (allowed: user, port, identityFile, host, jump, become)'],
    ['bad connection', `name: x\nconnection: telnet\n${SIX}`, 2, 13, 'connection must be one of: ssh, local, none (got "telnet")'],
    ['bad hostKeyPolicy', `name: x\nssh:\n  hostKeyPolicy: yolo\n${SIX}`, 3, 18, 'hostKeyPolicy must be one of: strict, accept-new'],
    ['ssh port not an integer', `name: x\nssh:\n  port: 22x\n${SIX}`, 3, 9, '"port" must be an integer from 1 to 65535 (got "22x")'],
    ['host:port without a port', `name: x\nnodes:\n  - 127.0.0.1\n${nodeLines(5, 7002)}\n`, 3, 5, 'node "127.0.0.1" must be "host:port"'],
    ['host:port with a bad port', `name: x\nnodes:\n${nodeLines(5, 7002)}\n  - 127.0.0.1:abc\n`, 8, 5, 'node "127.0.0.1:abc": port "abc" is not a number'],
    ['host:port without a host', `name: x\nnodes:\n  - ":6379"\n${nodeLines(5, 7002)}\n`, 3, 5, 'node ":6379" has no host'],
    ['port 99999 in a string node', `name: x\nreplicasPerMaster: 1\nnodes:\n  - 127.0.0.1:7001\n  - 127.0.0.1:99999\n${nodeLines(4, 7003)}\n`, 5, 5, 'port 99999 is out of range (must be an integer from 1 to 65535)'],
    ['port 0 in an object node', `name: x\nnodes:\n  - host: 127.0.0.1\n    port: 0\n${nodeLines(5, 7002)}\n`, 4, 11, '"port" must be an integer from 1 to 65535 (got 0)'],
    ['bad host in an object node', `name: x\nnodes:\n  - host: "web server"\n    port: 7001\n${nodeLines(5, 7002)}\n`, 3, 11, 'host "web server" is not a valid hostname'],
    ['IPv6 host', `name: x\nnodes:\n  - "::1:7001"\n${nodeLines(5, 7002)}\n`, 3, 5, 'IPv6 address, which is not supported'],
    ['bad IPv4', `name: x\nnodes:\n  - 10.0.0.256:7001\n${nodeLines(5, 7002)}\n`, 3, 5, 'host "10.0.0.256" is not a valid IPv4 address'],
    ['node of the wrong type', `name: x\nnodes:\n${nodeLines(6)}\n  - 7007\n`, 9, 5, 'nodes[6] must be a "host:port" string or a mapping with host and port (got 7007)'],
    ['node weight 0', `name: x\nnodes:\n  - { host: 127.0.0.1, port: 7001, weight: 0 }\n${nodeLines(5, 7002)}\n`, 3, 44, '"weight" must be a number greater than 0 (got 0)'],
    ['node missing its host', `name: x\nnodes:\n  - port: 7001\n${nodeLines(5, 7002)}\n`, 3, 5, 'missing required key "host" in nodes[0]'],
    ['duplicate node', `name: x\nnodes:\n${nodeLines(6)}\n  - 127.0.0.1:7002\n`, 9, 5, 'duplicate node "127.0.0.1:7002" (first listed on line 4)'],
    ['duplicate node across forms', `name: x\nnodes:\n${nodeLines(6)}\n  - { host: 127.0.0.1, port: 7006 }\n`, 9, 5, 'duplicate node "127.0.0.1:7006" (first listed on line 8)'],
    ['masters: 2', `name: x\nmasters: 2\n${SIX}`, 2, 10, '"masters" must be an integer of at least 3 (got 2)'],
    ['too few nodes for 3 masters', `name: x\nreplicasPerMaster: 1\nnodes:\n${nodeLines(2)}\n`, 3, 1, '2 nodes give only 2 masters; Redis Cluster needs 3 masters, which takes at least 3 nodes'],
    ['fewer nodes than masters', `name: x\nmasters: 4\nreplicasPerMaster: 0\nnodes:\n${nodeLines(3)}\n`, 2, 10, 'masters is 4 but only 3 nodes are listed'],
    ['empty nodes', `name: x\nnodes: []\n`, 2, 8, '"nodes" must list at least 1 item'],
    ['missing name', `# a comment\nreplicasPerMaster: 1\n${SIX}`, 2, 1, 'missing required key "name"'],
    ['missing nodes', `name: x\n`, 1, 1, 'missing required key "nodes"'],
    ['timeouts.wait too short', `name: x\ntimeouts:\n  wait: 10\n${SIX}`, 3, 9, '"wait" must be an integer of at least 1000 (got 10)'],
    ['timeouts.transferRate 0', `name: x\ntimeouts:\n  transferRate: 0\n${SIX}`, 3, 17, '"transferRate" must be a number greater than 0 (got 0)'],
    ['unknown key in timeouts', `name: x\ntimeouts:\n  commnd: 500\n${SIX}`, 3, 3, 'unknown key "commnd" in timeouts; did you mean "command"?'],
    ['requirepass in redis.config', `name: x\nredis:\n  config:\n    requirepass: hunter22\n${SIX}`, 4, 5, 'redis.config must not set "requirepass": a password written in the spec ends up in version control; give it with redis.passwordEnv or redis.passwordFile'],
    ['passwordEnv and passwordFile', `name: x\nredis:\n  passwordEnv: PW\n  passwordFile: ./pw\n${SIX}`, 4, 3, 'give the password either as redis.passwordEnv or as redis.passwordFile, not both'],
    ['previousPasswordEnv alone', `name: x\nredis:\n  previousPasswordEnv: OLD\n${SIX}`, 3, 3, 'redis.previousPasswordEnv is the password being rotated away from; it needs the new one'],
    ['passwordEnv not a variable name', `name: x\nredis:\n  passwordEnv: $PW\n${SIX}`, 3, 16, '"passwordEnv"'],
    ['preferredMaster not a boolean', `name: x\nnodes:\n  - { host: 127.0.0.1, port: 7001, preferredMaster: "yes" }\n${nodeLines(5, 7002)}\n`, 3, 53, '"preferredMaster" must be'],
    ['empty name value', `name:\n${SIX}`, 1, 1, '"name" must be a non-empty string (got an empty value)'],
    ['name that is no directory name', `name: a/b\n${SIX}`, 1, 7, '"name" may contain only letters, digits, "-", "_" and "."'],
    ['nodeTimeout not an integer', `name: x\nredis:\n  nodeTimeout: 1.5\n${SIX}`, 3, 16, '"nodeTimeout" must be an integer of at least 100 (got 1.5)'],
    ['nodeTimeout too small', `name: x\nredis:\n  nodeTimeout: 50\n${SIX}`, 3, 16, '"nodeTimeout" must be an integer of at least 100 (got 50)'],
    ['config value of the wrong type', `name: x\nredis:\n  config:\n    save: [1, 2]\n${SIX}`, 4, 11, '"save" must be a string, number or boolean (got a list)'],
    ['config sets a managed directive', `name: x\nredis:\n  config:\n    cluster-enabled: yes\n${SIX}`, 4, 5, 'redis.config must not set "cluster-enabled"'],
    ['config sets bind', `name: x\nredis:\n  config:\n    bind: 0.0.0.0\n${SIX}`, 4, 5, 'redis.config must not set "bind": it comes from nodes'],
    ['config sets daemonize on a local node', `name: x\nconnection: local\nredis:\n  config:\n    daemonize: no\n${SIX}`, 5, 5, 'redis.config must not set "daemonize"'],
    ['config directive name', `name: x\nredis:\n  config:\n    "max memory": 1gb\n${SIX}`, 4, 5, '"max memory" is not a valid redis.conf directive name'],
    ['relative remote path', `name: x\nredis:\n  dataDir: data/{port}\n${SIX}`, 3, 12, '"dataDir" must be an absolute path for connection ssh'],
    ['relative service path', `name: x\nredis:\n  service: init.d/redis_{port}\n${SIX}`, 3, 12, '"service" must be an absolute path for connection ssh'],
    ['unknown placeholder', `name: x\nredis:\n  configFile: /etc/redis/{name}.conf\n${SIX}`, 3, 15, 'unknown placeholder {name} (allowed: {host}, {port})'],
    ['unknown server', `name: x\nredis:\n  server: keydb\n${SIX}`, 3, 11, 'server must be one of: redis, valkey (got "keydb")'],
    ['serverBinary over SSH', `name: x\nredis:\n  server: valkey\n  serverBinary: /opt/valkey/bin/valkey-server\n${SIX}`, 4, 3, "redis.serverBinary is what connection: local starts its nodes with; with connection ssh the node's service starts it (redis.service)"],
    ['nodes sharing a local path', `name: x\nconnection: local\nredis:\n  dataDir: /tmp/shared\n${SIX}`, 4, 12, '"dataDir" is the same for 127.0.0.1:7001 and 127.0.0.1:7002 (/tmp/shared)'],
  ];

  it.each(cases)('%s', (_what, text, line, col, message) => {
    const result = parseSpec(text, FILE);
    const found = result.diagnostics.filter((d) => d.severity === 'error');
    expect(result.desired).toBeUndefined();
    expect(lines(found)).toContainEqual(expect.stringContaining(`${line}:${col}: `));
    const at = found.filter((d) => d.line === line && d.col === col);
    expect(at.map((d) => d.message).join('\n')).toContain(message);
    expect(found.every((d) => d.file === FILE)).toBe(true);
  });

  it('reports every error of a spec at once, in source order', () => {
    const text = [
      'name: x', //                          1
      'connection: ftp', //                  2
      'replicas: 2', //                      3
      'redis:', //                           4
      '  nodeTimeout: fast', //              5
      'nodes:', //                           6
      '  - 127.0.0.1:7001', //               7
      '  - 127.0.0.1:99999', //              8
      '  - { host: 127.0.0.1, port: 0 }', // 9
      '  - 127.0.0.1:7001', //               10
      '  - 127.0.0.1:7005', //               11
      '  - 127.0.0.1:7006', //               12
      '',
    ].join('\n');
    expect(lines(errors(text))).toEqual([
      '2:13: connection must be one of: ssh, local, none (got "ftp")',
      '3:1: unknown key "replicas" (allowed: name, connection, ssh, redis, timeouts, replicasPerMaster, masters, migration, nodes)',
      '5:16: "nodeTimeout" must be an integer of at least 100 (got "fast")',
      '8:5: node "127.0.0.1:99999": port 99999 is out of range (must be an integer from 1 to 65535)',
      '9:30: "port" must be an integer from 1 to 65535 (got 0)',
      '10:5: duplicate node "127.0.0.1:7001" (first listed on line 7)',
    ]);
  });

  it('stops at YAML syntax errors and reports them all', () => {
    const found = errors(`name: x\nnodes: [127.0.0.1:7001\nmasters: 3\nbad: : :\n`);
    expect(found.length).toBeGreaterThanOrEqual(1);
    // Nothing from the schema (e.g. the missing closing bracket must not turn into "unknown key").
    expect(found.every((d) => !d.message.includes('unknown key') && !d.message.includes('missing'))).toBe(true);
    expect(found.every((d) => !d.message.includes('\n'))).toBe(true);
  });

  it('gives one message per bad node item, whatever its form', () => {
    const text = `name: x\nnodes:\n  - 127.0.0.1\n  - { host: 127.0.0.1, port: 0 }\n  - true\n${nodeLines(5, 7002)}\n`;
    const nodeErrors = errors(text).filter((d) => d.line >= 3 && d.line <= 5);
    expect(nodeErrors.map((d) => d.line)).toEqual([3, 4, 5]);
  });
});

describe('warnings', () => {
  it('too few nodes for every master to get its replicas is a warning, and the cluster still loads', () => {
    const result = parseSpec(`name: x\nmasters: 4\nreplicasPerMaster: 1\nnodes:\n${nodeLines(6)}\n`, FILE);
    expect(result.diagnostics).toEqual([
      {
        file: FILE,
        line: 4,
        col: 1,
        severity: 'warning',
        message: '6 nodes are fewer than the 8 needed for 4 masters with 1 replica each: 2 of the 4 masters will have no replica',
      },
    ]);
    expect(result.desired?.masters).toBe(4);
    expect(formatDiagnostic(result.diagnostics[0]!)).toBe(`${FILE}:4:1: warning: 6 nodes are fewer than the 8 needed for 4 masters with 1 replica each: 2 of the 4 masters will have no replica`);
    expect(requireSpec(result).nodes).toHaveLength(6);
  });

  it('without masters, 5 nodes of a 3+3 layout (a replica dropped) still give 3 masters, one of them without a replica', () => {
    const result = parseSpec(`name: x\nreplicasPerMaster: 1\nnodes:\n${nodeLines(5)}\n`, FILE);
    expect(result.diagnostics.map((d) => [d.severity, d.message])).toEqual([
      ['warning', '5 nodes are fewer than the 6 needed for 3 masters with 1 replica each: 1 of the 3 masters will have no replica'],
    ]);
    expect(requireSpec(result)).toMatchObject({ masters: 3, mastersExplicit: false });
  });

  it('counts short masters when replicas per master is above one', () => {
    // 3 masters × 3 = 9 wanted; 7 nodes leave 4 replicas for 3 masters: 2, 1, 1.
    const result = parseSpec(`name: x\nmasters: 3\nreplicasPerMaster: 2\nnodes:\n${nodeLines(7)}\n`, FILE);
    expect(result.diagnostics.map((d) => d.message)).toEqual([
      '7 nodes are fewer than the 9 needed for 3 masters with 2 replicas each: 2 of the 3 masters will have fewer than 2 replicas',
    ]);
    expect(result.desired).toBeDefined();
  });
});

describe('good specs', () => {
  it('applies the defaults', () => {
    const result = parseSpec(`name: prod\n${SIX}`, FILE);
    expect(result.diagnostics).toEqual([]);
    const c = requireSpec(result);
    expect(c).toMatchObject({ name: 'prod', connection: 'ssh', replicasPerMaster: 1, masters: 3 });
    expect(c.timeouts).toEqual({ commandMs: 10_000, waitMs: 60_000, transferRate: 20 });
    expect(c.source).toEqual({ file: join(SPEC_DIR, 'cluster.yaml'), dir: SPEC_DIR });
    const n = c.nodes[1]!;
    expect(n).toMatchObject({ host: '127.0.0.1', port: 7002, address: '127.0.0.1:7002', weight: 1 });
    expect(n.ssh).toEqual({ port: 22, knownHostsFile: join(homedir(), '.ssh/known_hosts'), hostKeyPolicy: 'strict', implicit: ['port', 'knownHostsFile'] });
    expect(n.redis).toEqual({
      configFile: '/etc/redis/7002.conf',
      service: '/etc/init.d/redis_7002',
      server: 'redis',
      dataDir: '/var/lib/redis/7002',
      clusterConfigFile: 'nodes-7002.conf',
      nodeTimeout: 5000,
      config: {},
    });
  });

  it('takes timeouts from the spec, each defaulting on its own', () => {
    const c = requireSpec(parseSpec(`name: x\ntimeouts:\n  wait: 300000\n  transferRate: 2.5\n${SIX}`, FILE));
    expect(c.timeouts).toEqual({ commandMs: 10_000, waitMs: 300_000, transferRate: 2.5 });
  });

  it('keeps only where the password comes from: a variable name, or an absolute file path', () => {
    const env = requireSpec(parseSpec(`name: x\nredis:\n  passwordEnv: PW\n  previousPasswordFile: old.secret\n${SIX}`, FILE));
    expect(env.auth).toEqual({ password: { env: 'PW' }, previous: { file: join(SPEC_DIR, 'old.secret') } });
    expect(requireSpec(parseSpec(`name: x\n${SIX}`, FILE)).auth).toBeUndefined();
  });

  it('computes masters from the node count and makes the rest extra replicas', () => {
    const c = requireSpec(parseSpec(`name: x\nreplicasPerMaster: 2\nnodes:\n${nodeLines(11)}\n`, FILE));
    expect(c.masters).toBe(3);
    expect(c.nodes).toHaveLength(11);
  });

  it('resolves {host} and {port}, and normalizes config values to strings', () => {
    const text = [
      'name: x',
      'connection: none',
      'redis:',
      '  configFile: /etc/redis/{host}-{port}.conf',
      '  service: /etc/init.d/redis_{port}',
      '  dataDir: /data/{host}/{port}',
      '  clusterConfigFile: nodes-{host}-{port}.conf',
      '  nodeTimeout: 15000',
      '  config:',
      '    appendonly: true',
      '    protected-mode: false',
      '    maxmemory: 2gb',
      '    tcp-backlog: 511',
      'nodes:',
      '  - db1:6379',
      '  - db2:6379',
      '  - db3:6379',
      '',
    ].join('\n');
    const c = requireSpec(parseSpec(`${text}replicasPerMaster: 0\n`, FILE));
    expect(c.connection).toBe('none');
    expect(c.nodes[1]!.redis).toEqual({
      configFile: '/etc/redis/db2-6379.conf',
      service: '/etc/init.d/redis_6379',
      server: 'redis',
      dataDir: '/data/db2/6379',
      clusterConfigFile: 'nodes-db2-6379.conf',
      nodeTimeout: 15000,
      config: { appendonly: 'yes', 'protected-mode': 'no', maxmemory: '2gb', 'tcp-backlog': '511' },
    });
  });

  it('makes local paths absolute under <specdir>/.rcluster/<name>/<port>', () => {
    const c = requireSpec(parseSpec(`name: demo\nconnection: local\n${SIX}`, FILE));
    const n = c.nodes[0]!;
    expect(n.redis.configFile).toBe(join(SPEC_DIR, '.rcluster/demo/7001/redis.conf'));
    expect(n.redis.dataDir).toBe(join(SPEC_DIR, '.rcluster/demo/7001'));
    expect(n.redis.clusterConfigFile).toBe('nodes-7001.conf');
    expect(n.redis.service).toBeUndefined();
  });

  it('redis.server valkey: local nodes start valkey-server from PATH, or redis.serverBinary (a path relative to the spec, ~, or a bare name)', () => {
    const node = (redis: string) => requireSpec(parseSpec(`name: demo\nconnection: local\nredis:\n${redis}${SIX}`, FILE)).nodes[0]!.redis;
    expect(serverCommand(requireSpec(parseSpec(`name: demo\nconnection: local\n${SIX}`, FILE)).nodes[0]!.redis)).toBe('redis-server');
    expect(node('  server: valkey\n')).toMatchObject({ server: 'valkey' });
    expect(serverCommand(node('  server: valkey\n'))).toBe('valkey-server');
    expect(serverCommand(node('  server: valkey\n  serverBinary: bin/valkey-server\n'))).toBe(join(SPEC_DIR, 'bin/valkey-server'));
    expect(serverCommand(node('  server: valkey\n  serverBinary: ~/valkey/valkey-server\n'))).toBe(join(homedir(), 'valkey/valkey-server'));
    expect(serverCommand(node('  server: valkey\n  serverBinary: valkey-server-9\n'))).toBe('valkey-server-9');
    // Over SSH it only says which binaries to ask on the host; the service starts the node: an
    // init script, or a systemd unit such as Debian's valkey-server.
    expect(requireSpec(parseSpec(`name: x\nredis:\n  server: valkey\n  service: valkey-server@{port}\n${SIX}`, FILE)).nodes[0]!.redis).toMatchObject({ server: 'valkey', service: 'valkey-server@7001' });
    expect(requireSpec(parseSpec(`name: x\nredis:\n  server: valkey\n  configFile: /etc/valkey/valkey.conf\nnodes:\n  - 10.0.0.1:6379\n  - 10.0.0.2:6379\n  - 10.0.0.3:6379\n`, FILE)).nodes[0]!.redis).toMatchObject({ server: 'valkey', configFile: '/etc/valkey/valkey.conf' });
  });

  it('resolves relative and ~ paths for local against the spec directory and the home directory', () => {
    const text = `name: demo\nconnection: local\nredis:\n  configFile: conf/{port}.conf\n  dataDir: ~/redis/{port}\n${SIX}`;
    const n = requireSpec(parseSpec(text, FILE)).nodes[2]!;
    expect(n.redis.configFile).toBe(join(SPEC_DIR, 'conf/7003.conf'));
    expect(n.redis.dataDir).toBe(join(homedir(), 'redis/7003'));
  });

  it('merges per-node ssh settings over the cluster ones', () => {
    const text = [
      'name: x',
      'ssh:',
      '  user: root',
      '  port: 2222',
      '  identityFile: ~/.ssh/id_ed25519',
      '  knownHostsFile: keys/known_hosts',
      '  hostKeyPolicy: accept-new',
      'nodes:',
      '  - host: 10.0.0.1',
      '    port: 6379',
      '    weight: 2.5',
      '    ssh: { user: admin, identityFile: keys/admin }',
      '  - { host: 10.0.0.2, port: 6379, ssh: { port: 22 } }',
      '  - 10.0.0.3:6379',
      'replicasPerMaster: 0',
      '',
    ].join('\n');
    const [a, b, c] = requireSpec(parseSpec(text, FILE)).nodes;
    const knownHostsFile = join(SPEC_DIR, 'keys/known_hosts');
    expect(a!.weight).toBe(2.5);
    expect(a!.ssh).toEqual({ user: 'admin', port: 2222, identityFile: join(SPEC_DIR, 'keys/admin'), knownHostsFile, hostKeyPolicy: 'accept-new' });
    expect(b!.ssh).toEqual({ user: 'root', port: 22, identityFile: join(homedir(), '.ssh/id_ed25519'), knownHostsFile, hostKeyPolicy: 'accept-new' });
    expect(c!.ssh).toEqual({ user: 'root', port: 2222, identityFile: join(homedir(), '.ssh/id_ed25519'), knownHostsFile, hostKeyPolicy: 'accept-new' });
  });

  it('accepts any set of distinct nodes that gives at least 3 masters', () => {
    const spec = fc
      .record({
        replicas: fc.integer({ min: 0, max: 3 }),
        ports: fc.uniqueArray(fc.integer({ min: 1, max: 65535 }), { minLength: 3, maxLength: 40 }),
        asObjects: fc.boolean(),
      })
      .filter(({ replicas, ports }) => Math.floor(ports.length / (replicas + 1)) >= 3);
    fc.assert(
      fc.property(spec, ({ replicas, ports, asObjects }) => {
        const items = ports.map((p) => (asObjects ? `  - { host: node-1.example, port: ${p} }` : `  - node-1.example:${p}`));
        const result = parseSpec(`name: x\nreplicasPerMaster: ${replicas}\nnodes:\n${items.join('\n')}\n`, FILE);
        expect(result.diagnostics).toEqual([]);
        const c = requireSpec(result);
        expect(c.masters).toBe(Math.floor(ports.length / (replicas + 1)));
        expect(c.nodes.map((n) => n.address)).toEqual(ports.map((p) => `node-1.example:${p}`));
      }),
      { numRuns: 100 },
    );
  });
});

describe('loading files', () => {
  it.each([
    ['examples/local.yaml', 6, 3],
    ['examples/local-4-masters.yaml', 8, 4],
    ['examples/seed.yaml', 6, 3],
    ['examples/laptop.yaml', 6, 3],
  ] as const)('%s loads with no diagnostics', async (file, nodes, masters) => {
    const result = await loadSpec(file);
    expect(result.diagnostics).toEqual([]);
    expect(result.desired?.nodes).toHaveLength(nodes);
    expect(result.desired?.masters).toBe(masters);
  });

  it('examples/local.yaml is the local demo, with its files next to it', async () => {
    const c = requireSpec(await loadSpec('examples/local.yaml'));
    expect(c.connection).toBe('local');
    expect(c.nodes.map((n) => n.address)).toEqual(Array.from({ length: 6 }, (_, i) => `127.0.0.1:${7001 + i}`));
    expect(c.nodes[5]!.redis.dataDir).toBe(resolve('examples/.rcluster/local/7006'));
    expect(readFileSync('examples/local.yaml', 'utf8').split('\n')[0]).toBe('# yaml-language-server: $schema=../schemas/cluster.schema.json');
  });

  it('examples/seed.yaml is the runbook layout', async () => {
    const c = requireSpec(await loadSpec('examples/seed.yaml'));
    expect(c.connection).toBe('ssh');
    expect(c.nodes.map((n) => n.address)).toEqual([1, 2, 3, 4, 5, 6].map((i) => `192.168.4.5${i}:635${i}`));
    expect(c.nodes[3]!.ssh.user).toBe('root');
    expect(c.nodes[3]!.redis).toMatchObject({
      configFile: '/etc/redis/6379.conf',
      service: '/etc/init.d/redis_6379',
      dataDir: '/var/lib/redis/6379',
      clusterConfigFile: 'nodes-6379.conf',
      nodeTimeout: 5000,
    });
  });

  it('a missing file is a usage error of one line', async () => {
    const err = await loadSpec('examples/no-such.yaml').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UsageError);
    expect((err as Error).message).toBe('cannot read examples/no-such.yaml: no such file');
  });

  it('a directory is a usage error', async () => {
    await expect(loadSpec('examples')).rejects.toThrow('cannot read examples: is a directory');
  });

  it('requireSpec throws a SpecError listing every error as FILE:LINE:COL', () => {
    const result = parseSpec(`name: x\nconnection: ftp\nmasters: 2\n${SIX}`, 'examples/bad.yaml');
    let caught: unknown;
    try {
      requireSpec(result);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(SpecError);
    expect((caught as SpecError).message.split('\n')).toEqual([
      'examples/bad.yaml:2:13: connection must be one of: ssh, local, none (got "ftp")',
      'examples/bad.yaml:3:10: "masters" must be an integer of at least 3 (got 2)',
    ]);
  });
});

describe('the JSON Schema', () => {
  const schema = JSON.parse(readFileSync(SCHEMA_URL, 'utf8')) as Record<string, unknown>;

  it('documents every property with a description and examples, and allows no unknown keys', () => {
    const undocumented: string[] = [];
    const open: string[] = [];
    const visit = (s: Record<string, unknown>, where: string): void => {
      const props = s.properties as Record<string, Record<string, unknown>> | undefined;
      if (props) {
        if (s.additionalProperties !== false) open.push(where);
        for (const [k, p] of Object.entries(props)) {
          const target = typeof p.$ref === 'string' ? resolveRef(p.$ref) : p;
          if (!target.description || !Array.isArray(target.examples)) undocumented.push(`${where}.${k}`);
          visit(target, `${where}.${k}`);
        }
      }
      const items = s.items as Record<string, unknown> | undefined;
      for (const branch of (items?.oneOf as Record<string, unknown>[] | undefined) ?? []) {
        visit(typeof branch.$ref === 'string' ? resolveRef(branch.$ref) : branch, `${where}[]`);
      }
    };
    const resolveRef = (ref: string): Record<string, unknown> =>
      ref.replace(/^#\//, '').split('/').reduce<Record<string, unknown>>((s, k) => s[k] as Record<string, unknown>, schema);
    visit(schema, '');
    expect(undocumented).toEqual([]);
    expect(open).toEqual([]);
    expect(Object.keys(schema.properties as object)).toEqual(['name', 'connection', 'ssh', 'redis', 'timeouts', 'replicasPerMaster', 'masters', 'migration', 'nodes']);
  });
});
