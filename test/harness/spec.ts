import type { Harness } from './index.js';

export interface HarnessSpecOptions {
  name: string;
  nodes: string[];
  /** `redis:` fields, in order, e.g. { configFile: '/etc/redis/6379.conf' }. */
  redis?: Record<string, string | number>;
  /** `redis.config` entries, as YAML lines (`io-threads: 2`). */
  config?: string[];
  replicasPerMaster?: number;
  identityFile?: string;
  knownHostsFile?: string;
  hostKeyPolicy?: string;
}

/** A cluster.yaml for nodes on the test hosts, logging in with the harness's key as root. */
export function harnessSpec(h: Harness, o: HarnessSpecOptions): string {
  const config = o.config ?? [];
  return [
    `name: ${o.name}`,
    'connection: ssh',
    'ssh:',
    '  user: root',
    `  identityFile: ${o.identityFile ?? h.identityFile}`,
    `  knownHostsFile: ${o.knownHostsFile ?? h.knownHostsFile}`,
    ...(o.hostKeyPolicy ? [`  hostKeyPolicy: ${o.hostKeyPolicy}`] : []),
    'redis:',
    ...Object.entries(o.redis ?? {}).map(([k, v]) => `  ${k}: ${v}`),
    ...(config.length > 0 ? ['  config:', ...config.map((c) => `    ${c}`)] : []),
    ...(o.replicasPerMaster !== undefined ? [`replicasPerMaster: ${o.replicasPerMaster}`] : []),
    'nodes:',
    ...o.nodes.map((n) => `  - ${n}`),
    '',
  ].join('\n');
}

/** The runbook's layout: /etc/redis/6379.conf, /etc/init.d/redis_6379, nodes-6379.conf. */
export const RUNBOOK_REDIS = {
  configFile: '/etc/redis/6379.conf',
  service: '/etc/init.d/redis_6379',
  dataDir: '/var/lib/redis/6379',
  clusterConfigFile: 'nodes-6379.conf',
};
