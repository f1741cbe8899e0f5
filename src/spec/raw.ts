import type { ConnectionKind, HostKeyPolicy, ServerKind } from './types.js';

/** cluster.yaml as written, once it has passed the schema (see schemas/cluster.schema.json). */
export interface RawSpec {
  name: string;
  connection?: ConnectionKind;
  ssh?: RawSsh & { knownHostsFile?: string; hostKeyPolicy?: HostKeyPolicy; configFile?: string; tunnel?: boolean };
  redis?: {
    configFile?: string;
    service?: string;
    server?: ServerKind;
    serverBinary?: string;
    dataDir?: string;
    clusterConfigFile?: string;
    nodeTimeout?: number;
    config?: Record<string, string | number | boolean>;
    passwordEnv?: string;
    passwordFile?: string;
    previousPasswordEnv?: string;
    previousPasswordFile?: string;
  };
  replicasPerMaster?: number;
  masters?: number;
  migration?: 'auto' | 'classic';
  timeouts?: { command?: number; wait?: number; transferRate?: number };
  nodes: (string | RawNode)[];
}

export interface RawSsh {
  user?: string;
  port?: number;
  identityFile?: string;
  host?: string;
  jump?: string;
  become?: 'sudo';
}

export interface RawNode {
  host: string;
  port: number;
  weight?: number;
  preferredMaster?: boolean;
  ssh?: RawSsh;
}

/** Path fields of `redis`, which take {host} and {port}. */
export const REDIS_PATH_FIELDS = ['configFile', 'service', 'dataDir', 'clusterConfigFile'] as const;
export type RedisPathField = (typeof REDIS_PATH_FIELDS)[number];
