import { readFile } from 'node:fs/promises';
import { homedir, userInfo } from 'node:os';
import SSHConfig from 'ssh-config';
import { HostError } from '../errors.js';
import type { HostKeyPolicy, SshSettings } from '../spec/types.js';

/** How to reach one SSH endpoint, after the spec and the OpenSSH config are combined. */
export interface SshEndpoint {
  /** What the user calls it (the node's host, an alias, a jump host as written). */
  label: string;
  /** The address dialled (HostName) and checked in known_hosts. */
  hostname: string;
  port: number;
  user: string;
  identityFile?: string;
  knownHostsFile: string;
  hostKeyPolicy: HostKeyPolicy;
  /** Jump hosts, outermost first (ProxyJump order). */
  jumps: SshEndpoint[];
}

export const DEFAULT_SSH_CONFIG = '~/.ssh/config';

export function expandHome(p: string): string {
  if (p === '~') return homedir();
  if (p.startsWith('~/')) return homedir() + p.slice(1);
  return p;
}

const parsed = new Map<string, Promise<SSHConfig | null>>();

/**
 * The OpenSSH client config, parsed by the maintained `ssh-config` package: `~/.ssh/config` when
 * it exists (none is fine), or the spec's `ssh.configFile`, which must exist.
 */
async function loadConfig(file: string | undefined, host: string): Promise<SSHConfig | null> {
  const path = expandHome(file ?? DEFAULT_SSH_CONFIG);
  let p = parsed.get(path);
  if (!p) {
    p = readFile(path, 'utf8').then(
      (text) => SSHConfig.parse(text),
      (err: NodeJS.ErrnoException) => {
        if (err.code === 'ENOENT' && file === undefined) return null;
        throw err;
      },
    );
    parsed.set(path, p);
  }
  return p.catch((err: NodeJS.ErrnoException) => {
    parsed.delete(path);
    throw new HostError(host, 'ssh', `cannot read ssh.configFile ${file}: ${err.code === 'ENOENT' ? 'no such file' : err.message}`);
  });
}

function first(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

/**
 * The endpoint for a spec node's host. The spec's `ssh:` fields win; the OpenSSH config fills in
 * what the spec leaves out (HostName, User, Port, IdentityFile, UserKnownHostsFile, ProxyJump),
 * looked up by `ssh.host` (an alias) or the node's host, as `ssh` itself would.
 */
export async function resolveEndpoint(host: string, s: SshSettings): Promise<SshEndpoint> {
  const cfg = await loadConfig(s.configFile, host);
  const name = s.alias ?? host;
  const c = cfg?.compute(name) ?? {};
  const implicit = new Set(s.implicit ?? []);
  const knownHosts = implicit.has('knownHostsFile') ? (first(c['UserKnownHostsFile'])?.split(/\s+/)[0] ?? s.knownHostsFile) : s.knownHostsFile;
  const endpoint: SshEndpoint = {
    label: host,
    hostname: first(c['HostName']) ?? name,
    port: implicit.has('port') && c['Port'] !== undefined ? Number(first(c['Port'])) : s.port,
    user: s.user ?? first(c['User']) ?? userInfo().username,
    knownHostsFile: expandHome(knownHosts),
    hostKeyPolicy: s.hostKeyPolicy,
    jumps: [],
  };
  const identity = s.identityFile ?? first(c['IdentityFile']);
  if (identity !== undefined) endpoint.identityFile = expandHome(identity);
  const jump = s.jump ?? first(c['ProxyJump']);
  if (jump && jump !== 'none') {
    for (const hop of jump.split(',').map((j) => j.trim()).filter(Boolean)) endpoint.jumps.push(await jumpEndpoint(hop, s, cfg, host));
  }
  return endpoint;
}

/**
 * A jump host as ProxyJump writes it, `[user@]host[:port]`; the OpenSSH config applies to it as
 * well (an alias, its own user, key and port). Host keys are checked the same way.
 */
async function jumpEndpoint(hop: string, s: SshSettings, cfg: SSHConfig | null, node: string): Promise<SshEndpoint> {
  const m = /^(?:([^@]+)@)?(\[[^\]]+\]|[^:]+)(?::(\d+))?$/.exec(hop);
  if (!m) throw new HostError(node, 'ssh', `cannot read the jump host "${hop}" (expected [user@]host[:port])`);
  const name = (m[2] as string).replace(/^\[|\]$/g, '');
  const c = cfg?.compute(name) ?? {};
  const identity = first(c['IdentityFile']) ?? s.identityFile;
  const knownHosts = first(c['UserKnownHostsFile'])?.split(/\s+/)[0] ?? s.knownHostsFile;
  return {
    label: hop,
    hostname: first(c['HostName']) ?? name,
    port: m[3] !== undefined ? Number(m[3]) : c['Port'] !== undefined ? Number(first(c['Port'])) : 22,
    user: m[1] ?? first(c['User']) ?? s.user ?? userInfo().username,
    ...(identity !== undefined ? { identityFile: expandHome(identity) } : {}),
    knownHostsFile: expandHome(knownHosts),
    hostKeyPolicy: s.hostKeyPolicy,
    jumps: [],
  };
}
