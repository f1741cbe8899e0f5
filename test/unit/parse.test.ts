import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  countSlots,
  formatRanges,
  mergeRanges,
  parseClusterNodes,
  parseInfo,
  parseKeyspaceKeys,
  parseReplication,
  parseServer,
  serverLabel,
} from '../../src/live/parse.js';
import type { ClusterNodeEntry } from '../../src/live/types.js';

// All fixtures were captured from real redis-server 7.0.15 processes on 127.0.0.1:30001-30006,
// except valkey-9.1.2-*: valkey-server 9.1.2 (.ci/build-valkey) on 127.0.0.1:7881-7886, started by
// rcluster (connection: local), 3 masters with a replica each, ~66k keys loaded.
function fixture(path: string): string {
  return readFileSync(new URL(`./fixtures/${path}`, import.meta.url), 'utf8');
}
function nodes(name: string): ClusterNodeEntry[] {
  return parseClusterNodes(fixture(`cluster-nodes/${name}.txt`));
}
function byPort(view: ClusterNodeEntry[], port: number): ClusterNodeEntry {
  const n = view.find((e) => e.port === port);
  if (!n) throw new Error(`no node on port ${port}`);
  return n;
}
function myself(view: ClusterNodeEntry[]): ClusterNodeEntry {
  const mine = view.filter((e) => e.myself);
  expect(mine).toHaveLength(1);
  return mine[0]!;
}
function allSlots(view: ClusterNodeEntry[]) {
  return view.flatMap((e) => e.slots);
}

describe('parseClusterNodes on real outputs', () => {
  it('fresh single node: empty host, no slots, epoch 0', () => {
    const view = nodes('fresh-single-node');
    expect(view).toHaveLength(1);
    const n = view[0]!;
    expect(n.id).toMatch(/^[0-9a-f]{40}$/);
    expect(n).toMatchObject({
      host: '',
      port: 30001,
      busPort: 40001,
      flags: ['myself', 'master'],
      myself: true,
      role: 'master',
      masterId: null,
      pingSent: 0,
      pongReceived: 0,
      configEpoch: 0,
      linkState: 'connected',
      fail: false,
      pfail: false,
      handshake: false,
      noaddr: false,
      slots: [],
      migrating: [],
      importing: [],
    });
    expect(n.hostname).toBeUndefined();
  });

  it('healthy 3 masters + 3 replicas', () => {
    const view = nodes('healthy-3m3r');
    expect(view).toHaveLength(6);
    expect(new Set(view.map((e) => e.id)).size).toBe(6);
    expect(view.map((e) => e.port).sort()).toEqual([30001, 30002, 30003, 30004, 30005, 30006]);
    expect(view.every((e) => e.host === '127.0.0.1' && e.busPort === e.port + 10000)).toBe(true);

    const me = myself(view);
    expect(me.port).toBe(30001);
    expect(me.role).toBe('master');

    const masters = view.filter((e) => e.role === 'master');
    const replicas = view.filter((e) => e.role === 'replica');
    expect(masters).toHaveLength(3);
    expect(replicas).toHaveLength(3);
    expect(masters.every((m) => m.masterId === null)).toBe(true);
    const masterIds = new Set(masters.map((m) => m.id));
    for (const r of replicas) {
      expect(r.flags).toContain('slave');
      expect(masterIds.has(r.masterId!)).toBe(true);
      expect(r.slots).toEqual([]);
    }
    // one replica per master
    expect(new Set(replicas.map((r) => r.masterId)).size).toBe(3);

    expect(me.slots).toEqual([{ start: 0, end: 5460 }]);
    expect(byPort(view, 30002).slots).toEqual([{ start: 5461, end: 10922 }]);
    expect(byPort(view, 30003).slots).toEqual([{ start: 10923, end: 16383 }]);
    expect(countSlots(allSlots(view))).toBe(16384);
    expect(mergeRanges(allSlots(view))).toEqual([{ start: 0, end: 16383 }]);

    expect(view.every((e) => e.linkState === 'connected' && !e.fail && !e.pfail && !e.handshake)).toBe(true);
    expect(view.every((e) => e.migrating.length === 0 && e.importing.length === 0)).toBe(true);
    expect(view.every((e) => e.configEpoch >= 1 && e.pongReceived > 0)).toBe(true);
  });

  it('healthy cluster seen from a replica: myself is the replica, linked to its master', () => {
    const view = nodes('healthy-3m3r-from-replica');
    expect(view).toHaveLength(6);
    const me = myself(view);
    expect(me.port).toBe(30004);
    expect(me.role).toBe('replica');
    expect(me.flags).toEqual(['myself', 'slave']);
    const master = view.find((e) => e.id === me.masterId);
    expect(master?.role).toBe('master');
    expect(master?.port).toBe(30002);
    expect(countSlots(allSlots(view))).toBe(16384);
  });

  it('migrating marker on the source: parsed, and not counted as an owned slot', () => {
    const view = nodes('migrating-source');
    const src = myself(view);
    const dst = byPort(view, 30002);
    expect(src.port).toBe(30001);
    expect(src.migrating).toEqual([{ slot: 2724, to: dst.id }]);
    expect(src.importing).toEqual([]);
    expect(src.slots).toEqual([{ start: 0, end: 5460 }]);
    expect(countSlots(allSlots(view))).toBe(16384);
    expect(view.filter((e) => e !== src).every((e) => e.migrating.length === 0 && e.importing.length === 0)).toBe(true);
  });

  it('importing marker on the target: parsed, and not counted as an owned slot', () => {
    const view = nodes('importing-target');
    const dst = myself(view);
    const src = byPort(view, 30001);
    expect(dst.port).toBe(30002);
    expect(dst.importing).toEqual([{ slot: 2724, from: src.id }]);
    expect(dst.migrating).toEqual([]);
    expect(dst.slots).toEqual([{ start: 5461, end: 10922 }]);
    expect(countSlots(allSlots(view))).toBe(16384);
  });

  it('both sides of the migration name each other', () => {
    const source = myself(nodes('migrating-source'));
    const target = myself(nodes('importing-target'));
    expect(source.migrating[0]?.to).toBe(target.id);
    expect(target.importing[0]?.from).toBe(source.id);
    expect(source.migrating[0]?.slot).toBe(target.importing[0]?.slot);
  });

  it('killed master: fail? (pfail) first', () => {
    const view = nodes('master-pfail');
    const dead = byPort(view, 30003);
    expect(dead.flags).toEqual(['master', 'fail?']);
    expect(dead.pfail).toBe(true);
    expect(dead.fail).toBe(false);
    expect(dead.role).toBe('master');
    expect(dead.linkState).toBe('disconnected');
    expect(dead.pingSent).toBeGreaterThan(0);
    expect(dead.slots).toEqual([{ start: 10923, end: 16383 }]);
    expect(view.filter((e) => e !== dead).every((e) => !e.pfail && !e.fail)).toBe(true);
  });

  it('killed master: fail after the node timeout', () => {
    const view = nodes('master-fail');
    const dead = byPort(view, 30003);
    expect(dead.flags).toEqual(['master', 'fail']);
    expect(dead.fail).toBe(true);
    expect(dead.pfail).toBe(false);
    expect(dead.linkState).toBe('disconnected');
    expect(view.filter((e) => e.fail)).toHaveLength(1);
  });

  it('after failover: the promoted replica owns the slots, the failed one none', () => {
    const view = nodes('after-failover');
    const dead = byPort(view, 30003);
    expect(dead.fail).toBe(true);
    expect(dead.slots).toEqual([]);
    const promoted = view.find((e) => e.slots.some((r) => r.start === 10923));
    expect(promoted).toBeDefined();
    expect(promoted!.port).not.toBe(30003);
    expect(promoted!.role).toBe('master');
    expect(promoted!.masterId).toBeNull();
    expect(promoted!.configEpoch).toBeGreaterThan(dead.configEpoch);
    expect(countSlots(allSlots(view))).toBe(16384);
  });

  it('handshake entry after CLUSTER MEET to a dead port', () => {
    const view = nodes('handshake');
    expect(view).toHaveLength(7);
    const hs = byPort(view, 30012);
    expect(hs.handshake).toBe(true);
    expect(hs.flags).toEqual(['handshake']);
    expect(hs.role).toBe('unknown');
    expect(hs.masterId).toBeNull();
    expect(hs.linkState).toBe('disconnected');
    expect(hs.busPort).toBe(40012);
    expect(view.filter((e) => e.handshake)).toHaveLength(1);
  });

  it('Redis 7 announced hostnames (ip:port@cport,hostname)', () => {
    const view = nodes('hostnames');
    expect(view).toHaveLength(3);
    for (const e of view) {
      expect(e.host).toBe('127.0.0.1');
      expect(e.busPort).toBe(e.port + 10000);
      expect(e.hostname).toBe(`node-${e.port}.example.internal`);
    }
    const replica = byPort(view, 30003);
    expect(replica.role).toBe('replica');
    expect(replica.masterId).toBe(byPort(view, 30001).id);
    expect(byPort(view, 30001).slots).toEqual([{ start: 0, end: 8191 }]);
  });

  it('nodes.conf: node lines parse like CLUSTER NODES, the vars line is rejected', () => {
    const text = fixture('cluster-nodes/nodes-conf-hostnames.txt');
    const lines = text.split('\n');
    const varsLine = lines.find((l) => l.startsWith('vars '))!;
    expect(varsLine).toBeDefined();
    const view = parseClusterNodes(lines.filter((l) => !l.startsWith('vars ')).join('\n'));
    expect(view).toHaveLength(3);
    expect(myself(view).hostname).toBe('node-30001.example.internal');
    expect(() => parseClusterNodes(text)).toThrow(varsLine);
  });
});

describe('parseClusterNodes on inline examples', () => {
  const A = 'a'.repeat(40);
  const B = 'b'.repeat(40);
  const C = 'c'.repeat(40);

  it('ip:port@cport,hostname', () => {
    const [n] = parseClusterNodes(`${A} 10.0.0.1:6379@16379,redis-a.example.com myself,master - 0 0 1 connected 0-100 200\n`);
    expect(n).toMatchObject({ host: '10.0.0.1', port: 6379, busPort: 16379, hostname: 'redis-a.example.com' });
    expect(n!.slots).toEqual([{ start: 0, end: 100 }, { start: 200, end: 200 }]);
    expect(n!.aux).toBeUndefined();
  });

  it('Redis 7.2 auxiliary fields with an empty hostname', () => {
    const [n] = parseClusterNodes(`${A} 10.0.0.1:6379@16379,,tls-port=0,shard-id=${B} master - 0 0 1 connected`);
    expect(n!.hostname).toBeUndefined();
    expect(n!.aux).toEqual({ 'tls-port': '0', 'shard-id': B });
    expect(n!.port).toBe(6379);
  });

  it('old ip:port without a bus port, IPv6, :0@0 noaddr, noflags', () => {
    const text = [
      `${A} 192.168.1.2:7000 master - 0 1 2 connected 0-16383`,
      `${B} ::1:7001@17001 slave ${A} 0 1 2 connected`,
      `${C} :0@0 slave,fail,noaddr ${A} 5 6 2 disconnected`,
      `${'d'.repeat(40)} 10.0.0.9:7002@17002 noflags - 0 0 0 connected`,
    ].join('\r\n');
    const [old, v6, noaddr, noflags] = parseClusterNodes(text);
    expect(old).toMatchObject({ host: '192.168.1.2', port: 7000, busPort: 17000 });
    expect(v6).toMatchObject({ host: '::1', port: 7001, busPort: 17001, role: 'replica', masterId: A });
    expect(noaddr).toMatchObject({ host: '', port: 0, busPort: 0, noaddr: true, fail: true, role: 'replica', linkState: 'disconnected' });
    expect(noflags).toMatchObject({ flags: [], role: 'unknown', myself: false });
  });

  it('nofailover flag is kept, and blank lines are ignored', () => {
    const view = parseClusterNodes(`\n\n${A} 1.2.3.4:1@2 master,nofailover - 0 0 1 connected 5\n   \n`);
    expect(view).toHaveLength(1);
    expect(view[0]!.flags).toEqual(['master', 'nofailover']);
    expect(view[0]!.slots).toEqual([{ start: 5, end: 5 }]);
  });

  it('empty input gives no nodes', () => {
    expect(parseClusterNodes('')).toEqual([]);
    expect(parseClusterNodes('\r\n\n')).toEqual([]);
  });

  it.each([
    ['too few fields', `${A} 1.2.3.4:1@2 master - 0 0 1`],
    ['bad node id', `xyz 1.2.3.4:1@2 master - 0 0 1 connected`],
    ['bad master id', `${A} 1.2.3.4:1@2 slave nope 0 0 1 connected`],
    ['bad link state', `${A} 1.2.3.4:1@2 master - 0 0 1 broken`],
    ['address without port', `${A} 1.2.3.4 master - 0 0 1 connected`],
    ['non-numeric epoch', `${A} 1.2.3.4:1@2 master - 0 0 x connected`],
    ['slot out of range', `${A} 1.2.3.4:1@2 master - 0 0 1 connected 0-16384`],
    ['reversed range', `${A} 1.2.3.4:1@2 master - 0 0 1 connected 10-5`],
    ['garbage slot', `${A} 1.2.3.4:1@2 master - 0 0 1 connected abc`],
    ['bad migrating marker', `${A} 1.2.3.4:1@2 master - 0 0 1 connected [5->-short]`],
  ])('throws on a malformed line (%s), quoting it', (_why, line) => {
    const good = `${B} 1.2.3.4:5@6 master - 0 0 1 connected`;
    expect(() => parseClusterNodes(`${good}\n${line}\n`)).toThrow(line);
    expect(() => parseClusterNodes(`${good}\n${line}\n`)).toThrow(/line 2/);
  });
});

describe('slot range helpers', () => {
  it('mergeRanges sorts and joins adjacent and overlapping ranges without mutating', () => {
    const input = [
      { start: 10, end: 20 },
      { start: 0, end: 5 },
      { start: 6, end: 8 },
      { start: 15, end: 30 },
      { start: 100, end: 100 },
    ];
    const copy = structuredClone(input);
    expect(mergeRanges(input)).toEqual([
      { start: 0, end: 8 },
      { start: 10, end: 30 },
      { start: 100, end: 100 },
    ]);
    expect(input).toEqual(copy);
    expect(mergeRanges([])).toEqual([]);
  });

  it('countSlots counts distinct slots', () => {
    expect(countSlots([])).toBe(0);
    expect(countSlots([{ start: 0, end: 5460 }, { start: 5462, end: 5462 }])).toBe(5462);
    expect(countSlots([{ start: 0, end: 9 }, { start: 5, end: 14 }])).toBe(15);
  });

  it('formatRanges', () => {
    expect(formatRanges([{ start: 0, end: 5460 }, { start: 5462, end: 5462 }])).toBe('0-5460,5462');
    expect(formatRanges([])).toBe('');
  });
});

describe('INFO parsing on real outputs', () => {
  const replicaInfo = parseInfo(fixture('info/replica.txt'));
  const masterInfo = parseInfo(fixture('info/master.txt'));

  it('parseInfo: key/value pairs, no section headers, no CR left over', () => {
    expect(fixture('info/replica.txt')).toContain('\r\n');
    expect(replicaInfo['redis_version']).toBe('7.0.15');
    expect(replicaInfo['redis_mode']).toBe('cluster');
    expect(replicaInfo['cluster_enabled']).toBe('1');
    expect(replicaInfo['tcp_port']).toBe('30006');
    expect(Object.keys(replicaInfo).some((k) => k.startsWith('#') || k.includes(' '))).toBe(false);
    expect(Object.values(replicaInfo).some((v) => v.includes('\r'))).toBe(false);
    expect(masterInfo['errorstat_MOVED']).toBe('count=32');
    expect(masterInfo['cmdstat_set']).toMatch(/^calls=19,/);
  });

  it('replica: role, master address and link status', () => {
    expect(parseReplication(replicaInfo)).toEqual({
      role: 'replica',
      masterHost: '127.0.0.1',
      masterPort: 30001,
      masterLinkStatus: 'up',
      connectedReplicas: 0,
    });
  });

  it('master: role and connected replicas', () => {
    expect(parseReplication(masterInfo)).toEqual({ role: 'master', connectedReplicas: 1 });
  });

  it('keyspace: keys on the master and its replica', () => {
    expect(parseKeyspaceKeys(masterInfo)).toBe(19);
    expect(parseKeyspaceKeys(replicaInfo)).toBe(19);
  });
});

describe('Valkey 9.1.2: the same parsers on its real outputs', () => {
  const master = parseInfo(fixture('info/valkey-9.1.2-master.txt'));
  const replica = parseInfo(fixture('info/valkey-9.1.2-replica.txt'));

  it('parseServer: Valkey names itself and its own version; its redis_version is the Redis it is compatible with', () => {
    expect(master['redis_version']).toBe('7.2.4');
    expect(parseServer(master)).toEqual({ name: 'valkey', version: '9.1.2' });
    expect(parseServer(replica)).toEqual({ name: 'valkey', version: '9.1.2' });
    expect(serverLabel(parseServer(master))).toBe('valkey 9.1.2');
    // Redis has no server_name: its redis_version is its own.
    expect(parseServer(parseInfo(fixture('info/master.txt')))).toEqual({ name: 'redis', version: '7.0.15' });
    expect(serverLabel(undefined)).toBe('redis ?');
  });

  it('config_file, cluster_enabled, replication and keyspace read as on Redis', () => {
    expect(master['config_file']).toBe('/tmp/vk-try/.rcluster/vk-try/7881/redis.conf');
    expect(master['cluster_enabled']).toBe('1');
    expect(parseReplication(master)).toEqual({ role: 'master', connectedReplicas: 1 });
    expect(parseReplication(replica)).toEqual({ role: 'replica', masterHost: '127.0.0.1', masterPort: 7881, masterLinkStatus: 'up', connectedReplicas: 0 });
    // Valkey adds keys_with_volatile_items= to each db line: not a second keys= count.
    expect(master['db0']).toMatch(/keys_with_volatile_items=/);
    expect(parseKeyspaceKeys(master)).toBe(22106);
    expect(parseKeyspaceKeys(replica)).toBe(22106);
  });

  it('CLUSTER NODES: 3 masters with a replica each', () => {
    const view = nodes('valkey-9.1.2-3m3r');
    expect(view.filter((e) => e.role === 'master').map((e) => [e.port, formatRanges(e.slots)])).toEqual([
      [7881, '0-5460'],
      [7882, '5461-10922'],
      [7883, '10923-16383'],
    ]);
    const mine = view.find((e) => e.myself);
    expect(mine?.port).toBe(7881);
    expect(view.find((e) => e.port === 7884)).toMatchObject({ role: 'replica', masterId: mine?.id });
  });
});

describe('INFO parsing on inline examples', () => {
  it('keyspace sums every db and ignores other keys', () => {
    const info = parseInfo(
      '# Keyspace\r\ndb0:keys=3,expires=0,avg_ttl=0\r\ndb2:keys=40,expires=1,avg_ttl=100\r\ndb15:keys=7,expires=7,avg_ttl=5\r\ndbsize:keys=1000\r\ndb1_distrib_strings_sizes:keys=9\r\n',
    );
    expect(parseKeyspaceKeys(info)).toBe(50);
    expect(parseKeyspaceKeys({})).toBe(0);
  });

  it('skips every # line, even one with a colon', () => {
    expect(parseInfo('# Server\r\n# note:x\r\nredis_version:7.0.15\r\n  \r\n')).toEqual({ redis_version: '7.0.15' });
  });

  it('splits on the first colon only (IPv6 master_host)', () => {
    const info = parseInfo('role:slave\nmaster_host:::1\nmaster_port:6379\n');
    expect(info['master_host']).toBe('::1');
    expect(parseReplication(info).masterHost).toBe('::1');
  });

  it('replica with a down link', () => {
    const info = parseInfo('# Replication\nrole:slave\nmaster_host:10.0.0.1\nmaster_port:7000\nmaster_link_status:down\nconnected_slaves:0\n');
    expect(parseReplication(info)).toEqual({
      role: 'replica',
      masterHost: '10.0.0.1',
      masterPort: 7000,
      masterLinkStatus: 'down',
      connectedReplicas: 0,
    });
  });

  it('unknown or missing role throws', () => {
    expect(() => parseReplication({})).toThrow(/role/);
    expect(() => parseReplication({ role: 'sentinel' })).toThrow(/sentinel/);
  });
});
