import { describe, expect, it } from 'vitest';
import {
  configDiff,
  editRedisConf,
  needsRestart,
  readDirective,
  splitArgs,
  type ConfEdit,
} from '../../src/provision/redisConf.js';

interface Case {
  name: string;
  before: string;
  edits: ConfEdit[];
  after: string;
  changed: { directive: string; from: string | null; to: string }[];
}

const cases: Case[] = [
  {
    name: 'comments and blank lines are preserved',
    before: '# top comment\n\n   # indented comment\nport 6379\n\n# tail\n',
    edits: [{ directive: 'port', value: '6380' }],
    after: '# top comment\n\n   # indented comment\nport 6380\n\n# tail\n',
    changed: [{ directive: 'port', from: '6379', to: '6380' }],
  },
  {
    name: 'directive already set: no change',
    before: '# x\ncluster-enabled yes\nport 6351\n',
    edits: [
      { directive: 'cluster-enabled', value: 'yes' },
      { directive: 'port', value: '6351' },
    ],
    after: '# x\ncluster-enabled yes\nport 6351\n',
    changed: [],
  },
  {
    name: 'yes/no compare case-insensitively, quotes are ignored',
    before: 'appendonly YES\ndbfilename "dump.rdb"\n',
    edits: [
      { directive: 'appendonly', value: 'yes' },
      { directive: 'dbfilename', value: 'dump.rdb' },
    ],
    after: 'appendonly YES\ndbfilename "dump.rdb"\n',
    changed: [],
  },
  {
    name: 'in-place replace keeps indentation, spelling and separator',
    before: '# a\n  Cluster-Node-Timeout\t15000\n# b\n',
    edits: [{ directive: 'cluster-node-timeout', value: '5000' }],
    after: '# a\n  Cluster-Node-Timeout\t5000\n# b\n',
    changed: [{ directive: 'cluster-node-timeout', from: '15000', to: '5000' }],
  },
  {
    name: 'duplicates: the last (effective) occurrence is replaced',
    before: 'maxmemory 1gb\n# note\nmaxmemory 2gb\nport 1\n',
    edits: [{ directive: 'maxmemory', value: '3gb' }],
    after: 'maxmemory 1gb\n# note\nmaxmemory 3gb\nport 1\n',
    changed: [{ directive: 'maxmemory', from: '2gb', to: '3gb' }],
  },
  {
    name: 'commented-out example: the directive goes right after it',
    before: '# CLUSTER\n#\n# cluster-enabled yes\n\n# cluster-config-file nodes-6379.conf\nport 6379\n',
    edits: [
      { directive: 'cluster-enabled', value: 'yes' },
      { directive: 'cluster-config-file', value: 'nodes-6351.conf' },
    ],
    after:
      '# CLUSTER\n#\n# cluster-enabled yes\ncluster-enabled yes\n\n# cluster-config-file nodes-6379.conf\ncluster-config-file nodes-6351.conf\nport 6379\n',
    changed: [
      { directive: 'cluster-enabled', from: null, to: 'yes' },
      { directive: 'cluster-config-file', from: null, to: 'nodes-6351.conf' },
    ],
  },
  {
    name: 'missing directive: appended at the end',
    before: 'port 6379\n# end\n',
    edits: [{ directive: 'maxmemory-policy', value: 'allkeys-lru' }],
    after: 'port 6379\n# end\nmaxmemory-policy allkeys-lru\n',
    changed: [{ directive: 'maxmemory-policy', from: null, to: 'allkeys-lru' }],
  },
  {
    name: 'empty file',
    before: '',
    edits: [{ directive: 'port', value: '7000' }],
    after: 'port 7000\n',
    changed: [{ directive: 'port', from: null, to: '7000' }],
  },
  {
    name: 'CRLF file keeps CRLF, also for inserted lines',
    before: '# c\r\nport 6379\r\n\r\n# cluster-enabled yes\r\n',
    edits: [
      { directive: 'port', value: '6351' },
      { directive: 'cluster-enabled', value: 'yes' },
      { directive: 'timeout', value: '0' },
    ],
    after: '# c\r\nport 6351\r\n\r\n# cluster-enabled yes\r\ncluster-enabled yes\r\ntimeout 0\r\n',
    changed: [
      { directive: 'port', from: '6379', to: '6351' },
      { directive: 'cluster-enabled', from: null, to: 'yes' },
      { directive: 'timeout', from: null, to: '0' },
    ],
  },
  {
    name: 'file without final newline stays without one',
    before: '# c\nport 6379',
    edits: [
      { directive: 'port', value: '6351' },
      { directive: 'appendonly', value: 'yes' },
    ],
    after: '# c\nport 6351\nappendonly yes',
    changed: [
      { directive: 'port', from: '6379', to: '6351' },
      { directive: 'appendonly', from: null, to: 'yes' },
    ],
  },
  {
    name: 'example on the last line without final newline',
    before: 'port 1\n# cluster-enabled yes',
    edits: [{ directive: 'cluster-enabled', value: 'yes' }],
    after: 'port 1\n# cluster-enabled yes\ncluster-enabled yes',
    changed: [{ directive: 'cluster-enabled', from: null, to: 'yes' }],
  },
  {
    name: 'include lines are left alone',
    before: 'include /etc/redis/common.conf\nport 6379\n',
    edits: [{ directive: 'port', value: '6352' }],
    after: 'include /etc/redis/common.conf\nport 6352\n',
    changed: [{ directive: 'port', from: '6379', to: '6352' }],
  },
  {
    name: 'values with spaces or empty values are double-quoted',
    before: 'requirepass old\n',
    edits: [
      { directive: 'requirepass', value: 'new secret' },
      { directive: 'masterauth', value: 'a"b\\c' },
      { directive: 'dbfilename', value: '' },
    ],
    after: 'requirepass "new secret"\nmasterauth "a\\"b\\\\c"\ndbfilename ""\n',
    changed: [
      { directive: 'requirepass', from: 'old', to: 'new secret' },
      { directive: 'masterauth', from: null, to: 'a"b\\c' },
      { directive: 'dbfilename', from: null, to: '' },
    ],
  },
  {
    name: 'quoted existing value equal to the wanted one: no change',
    before: 'requirepass "new secret"\n',
    edits: [{ directive: 'requirepass', value: 'new secret' }],
    after: 'requirepass "new secret"\n',
    changed: [],
  },
  {
    name: 'multi-argument directives are one unquoted value',
    before: 'bind 127.0.0.1 -::1\n',
    edits: [{ directive: 'bind', value: '127.0.0.1 ::1' }],
    after: 'bind 127.0.0.1 ::1\n',
    changed: [{ directive: 'bind', from: '127.0.0.1 -::1', to: '127.0.0.1 ::1' }],
  },
  {
    name: 'save accumulates: the last line is replaced, earlier save lines commented out',
    before: 'save 900 1\nsave 300 10\nsave 60 10000\n',
    edits: [{ directive: 'save', value: '3600 1 300 100' }],
    after: '# save 900 1\n# save 300 10\nsave 3600 1 300 100\n',
    changed: [{ directive: 'save', from: '900 1 300 10 60 10000', to: '3600 1 300 100' }],
  },
  {
    name: 'save "" disables snapshots',
    before: 'save 900 1\n',
    edits: [{ directive: 'save', value: '' }],
    after: 'save ""\n',
    changed: [{ directive: 'save', from: '900 1', to: '' }],
  },
  {
    name: 'keyed directives match on their first argument',
    before: 'client-output-buffer-limit normal 0 0 0\nclient-output-buffer-limit replica 256mb 64mb 60\n',
    edits: [{ directive: 'client-output-buffer-limit', value: 'replica 512mb 128mb 60' }],
    after: 'client-output-buffer-limit normal 0 0 0\nclient-output-buffer-limit replica 512mb 128mb 60\n',
    changed: [
      { directive: 'client-output-buffer-limit', from: 'replica 256mb 64mb 60', to: 'replica 512mb 128mb 60' },
    ],
  },
  {
    name: 'a directive with no value gets one',
    before: 'appendonly\n',
    edits: [{ directive: 'appendonly', value: 'yes' }],
    after: 'appendonly yes\n',
    changed: [{ directive: 'appendonly', from: '', to: 'yes' }],
  },
  {
    name: 'prose comments mentioning the directive are not examples',
    before: '#   port that the cluster bus uses\nport 6379\n',
    edits: [{ directive: 'cluster-port', value: '16400' }],
    after: '#   port that the cluster bus uses\nport 6379\ncluster-port 16400\n',
    changed: [{ directive: 'cluster-port', from: null, to: '16400' }],
  },
];

describe('editRedisConf', () => {
  it.each(cases)('$name', ({ before, edits, after, changed }) => {
    const result = editRedisConf(before, edits);
    expect(result.text).toBe(after);
    expect(result.changed).toEqual(changed);
    // Applying the same edits again is a no-op.
    const again = editRedisConf(result.text, edits);
    expect(again.text).toBe(after);
    expect(again.changed).toEqual([]);
  });

  it('refuses to edit include', () => {
    expect(() => editRedisConf('', [{ directive: 'include', value: '/x' }])).toThrow(/include/);
  });

  it('seed edit of a fresh config gives the exact expected text', () => {
    const fresh = [
      '# Redis configuration file example.',
      '#',
      '# Note that in order to read the configuration file, Redis must be',
      '# started with the file path as first argument:',
      '',
      '################################## NETWORK #####################################',
      '',
      '# bind 192.168.1.100 10.0.0.1     # listens on two specific IPv4 addresses',
      'bind 127.0.0.1 -::1',
      '',
      '# Accept connections on the specified port, default is 6379 (IANA #815344).',
      'port 6379',
      '',
      '################################ REDIS CLUSTER  ###############################',
      '',
      '# Normal Redis instances can\'t be part of a Redis Cluster; only nodes that are',
      '# started as cluster nodes can. In order to start a Redis instance as a',
      '# cluster node enable the cluster support uncommenting the following:',
      '#',
      '# cluster-enabled yes',
      '',
      '# Every cluster node has a cluster configuration file. This file is not',
      '# intended to be edited by hand. It is created and updated by Redis nodes.',
      '#',
      '# cluster-config-file nodes-6379.conf',
      '',
      '# Cluster node timeout is the amount of milliseconds a node must be unreachable',
      '# for it to be considered in failure state.',
      '#',
      '# cluster-node-timeout 15000',
      '',
      '# include /path/to/other.conf',
      '',
    ].join('\n');
    const result = editRedisConf(fresh, [
      { directive: 'port', value: '6351' },
      { directive: 'bind', value: '192.168.4.51' },
      { directive: 'cluster-enabled', value: 'yes' },
      { directive: 'cluster-config-file', value: 'nodes-6379.conf' },
      { directive: 'cluster-node-timeout', value: '5000' },
    ]);
    expect(result.text).toBe(
      [
        '# Redis configuration file example.',
        '#',
        '# Note that in order to read the configuration file, Redis must be',
        '# started with the file path as first argument:',
        '',
        '################################## NETWORK #####################################',
        '',
        '# bind 192.168.1.100 10.0.0.1     # listens on two specific IPv4 addresses',
        'bind 192.168.4.51',
        '',
        '# Accept connections on the specified port, default is 6379 (IANA #815344).',
        'port 6351',
        '',
        '################################ REDIS CLUSTER  ###############################',
        '',
        '# Normal Redis instances can\'t be part of a Redis Cluster; only nodes that are',
        '# started as cluster nodes can. In order to start a Redis instance as a',
        '# cluster node enable the cluster support uncommenting the following:',
        '#',
        '# cluster-enabled yes',
        'cluster-enabled yes',
        '',
        '# Every cluster node has a cluster configuration file. This file is not',
        '# intended to be edited by hand. It is created and updated by Redis nodes.',
        '#',
        '# cluster-config-file nodes-6379.conf',
        'cluster-config-file nodes-6379.conf',
        '',
        '# Cluster node timeout is the amount of milliseconds a node must be unreachable',
        '# for it to be considered in failure state.',
        '#',
        '# cluster-node-timeout 15000',
        'cluster-node-timeout 5000',
        '',
        '# include /path/to/other.conf',
        '',
      ].join('\n'),
    );
    expect(result.changed.map((c) => c.directive)).toEqual([
      'port',
      'bind',
      'cluster-enabled',
      'cluster-config-file',
      'cluster-node-timeout',
    ]);
    expect(readDirective(result.text, 'PORT')).toBe('6351');
    expect(readDirective(result.text, 'cluster-enabled')).toBe('yes');
  });
});

describe('readDirective', () => {
  it.each([
    ['port 6379\n', 'port', '6379'],
    ['port 1\nport 2\n', 'port', '2'],
    ['# port 1\n', 'port', null],
    ['PORT 7\n', 'port', '7'],
    ['requirepass "a b"\n', 'requirepass', 'a b'],
    ["requirepass 'it\\'s'\n", 'requirepass', "it's"],
    ['bind 127.0.0.1   ::1\n', 'bind', '127.0.0.1 ::1'],
    ['save 900 1\nsave 300 10\n', 'save', '900 1 300 10'],
    ['save 900 1\nsave ""\n', 'save', ''],
    ['include /etc/redis/common.conf\n', 'port', null],
    ['port 1\r\n', 'port', '1'],
  ] as const)('%j %s -> %j', (text, directive, expected) => {
    expect(readDirective(text, directive)).toBe(expected);
  });
});

describe('splitArgs', () => {
  it.each([
    ['a b  c', ['a', 'b', 'c']],
    ['"a b" c', ['a b', 'c']],
    ['"\\x41\\n"', ['A\n']],
    ['""', ['']],
    ['"unterminated', null],
    ['"a"b', null],
  ] as const)('%j', (input, expected) => {
    expect(splitArgs(input)).toEqual(expected);
  });
});

describe('configDiff', () => {
  it('is a unified diff with a/ and b/ headers', () => {
    const before = '# c\nbind 127.0.0.1\nport 6379\n\n# end\n';
    const after = editRedisConf(before, [{ directive: 'port', value: '6351' }]).text;
    const d = configDiff('/etc/redis/6379.conf', before, after);
    const lines = d.split('\n');
    expect(lines).toContain('--- a/etc/redis/6379.conf');
    expect(lines).toContain('+++ b/etc/redis/6379.conf');
    expect(lines).toContain('-port 6379');
    expect(lines).toContain('+port 6351');
    expect(lines).toContain(' bind 127.0.0.1');
    expect(d).toMatch(/^@@ -1,5 \+1,5 @@$/m);
  });

  it('relative paths keep their name', () => {
    expect(configDiff('redis.conf', 'a\n', 'b\n')).toContain('--- a/redis.conf');
  });

  it('is empty when the texts are equal', () => {
    expect(configDiff('/etc/redis.conf', 'port 1\n', 'port 1\n')).toBe('');
  });
});

describe('needsRestart', () => {
  it.each([
    ['port', true],
    ['bind', true],
    ['BIND', true],
    ['cluster-enabled', true],
    ['cluster-config-file', true],
    ['cluster-port', true],
    ['daemonize', true],
    ['pidfile', true],
    ['logfile', true],
    ['dir', true],
    ['include', true],
    ['bind-source-addr', true],
    ['tls-port', true],
    ['unixsocket', true],
    ['databases', true],
    ['rename-command', true],
    ['some-future-directive', true],
    ['cluster-node-timeout', false],
    ['maxmemory', false],
    ['maxmemory-policy', false],
    ['timeout', false],
    ['save', false],
    ['appendonly', false],
    ['requirepass', false],
    ['masterauth', false],
    ['protected-mode', false],
    ['loglevel', false],
    ['cluster-announce-ip', false],
  ] as const)('%s -> %s', (directive, expected) => {
    expect(needsRestart(directive)).toBe(expected);
  });
});
