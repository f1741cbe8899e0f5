import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';
import { PlanError } from '../errors.js';

/**
 * The cluster's password, for this run only. It comes from an environment variable or a file
 * named in the spec (spec/secrets.ts) and is never part of the spec, a plan, a plan file or any
 * output: the plan carries only where it comes from ("$REDIS_PASSWORD").
 */
export interface Credentials {
  password: string;
  /** Where it comes from, as the plan may show it: `$REDIS_PASSWORD`, `file ./redis.secret`. */
  source: string;
  /** During a rotation: the password the nodes still accept, so that no client is cut off. */
  previous?: string;
  previousSource?: string;
}

/** Which password a node took when rcluster logged in: the spec's, the previous one, or none (it has none). */
export type AcceptedBy = 'password' | 'previous' | 'none';

let current: Credentials | undefined;
const accepted = new Map<string, AcceptedBy>();

/**
 * One cluster per process: each command sets the credentials it loaded before it contacts a
 * node, and clears them when it ends, so that connectNode can log in wherever it is called from.
 */
export function useCredentials(c: Credentials | undefined): void {
  current = c;
  accepted.clear();
}

export function credentials(): Credentials | undefined {
  return current;
}

/** What the node took at the last login, if rcluster logged in to it this run. */
export function acceptedBy(address: string): AcceptedBy | undefined {
  return accepted.get(address);
}

/** The password rcluster refuses to print: replaced wherever it would appear in text. */
export const REDACTED = '********';

/**
 * Log in to a freshly connected node. The spec's password first; during a rotation, the previous
 * one; a node with no password yet (a fresh host, or a cluster the password is being added to)
 * is used as it is, and the plan sets its password.
 */
export async function authenticate(client: Redis, address: string): Promise<void> {
  const c = current;
  if (!c) return;
  const tryAuth = async (password: string): Promise<'ok' | 'wrong' | 'none'> => {
    try {
      await client.call('AUTH', password);
      return 'ok';
    } catch (err) {
      const msg = (err as Error).message;
      if (/without any password configured|no password is set/i.test(msg)) return 'none';
      if (/WRONGPASS|invalid password|invalid username-password/i.test(msg)) return 'wrong';
      throw err;
    }
  };
  const first = await tryAuth(c.password);
  if (first !== 'wrong') {
    accepted.set(address, first === 'ok' ? 'password' : 'none');
    return;
  }
  if (c.previous !== undefined && (await tryAuth(c.previous)) === 'ok') {
    accepted.set(address, 'previous');
    return;
  }
  throw new AuthError(
    `${address} refuses the password from ${c.source}` +
      (c.previous !== undefined
        ? ` and the previous one from ${c.previousSource}`
        : `; if the cluster still uses another password, give it as redis.previousPasswordEnv (or previousPasswordFile) to rotate to the new one`),
  );
}

/** A node refused every password rcluster has: nothing can be read or planned for it. */
export class AuthError extends PlanError {}

/** A reply that means the node wants a password rcluster was not given. */
export function isNoAuth(err: unknown): boolean {
  return /NOAUTH|Authentication required/i.test((err as Error)?.message ?? '');
}

export function noAuthMessage(address: string): string {
  return `${address} requires a password (NOAUTH); give it to rcluster with redis.passwordEnv or redis.passwordFile`;
}

/**
 * MIGRATE's credentials for its target (Redis >= 4: `AUTH <password>`): the password the target
 * took when rcluster logged in to it, so that a rotation half done on the target still works.
 */
export function migrateAuthArgs(address: string): string[] {
  const c = current;
  if (!c) return [];
  const by = accepted.get(address) ?? 'password';
  if (by === 'none') return [];
  return ['AUTH', by === 'previous' && c.previous !== undefined ? c.previous : c.password];
}

/** Redis keeps each password of a user as its SHA-256 in hex (ACL GETUSER shows those). */
export function passwordHash(password: string): string {
  return createHash('sha256').update(password).digest('hex');
}

/** redis.conf directives that hold a password: never shown, never hashed into a plan file. */
export const SECRET_DIRECTIVES = new Set(['requirepass', 'masterauth']);

/**
 * What a password in a config file is, as the plan shows it: the spec's, the previous one, or
 * some other (one rcluster was not given).
 */
export function describePassword(value: string | null): string | null {
  if (value === null) return null;
  const c = current;
  if (c && value === c.password) return `(the password from ${c.source})`;
  if (c?.previous !== undefined && value === c.previous) return `(the previous password, from ${c.previousSource})`;
  return value === '' ? '""' : '(another password)';
}

/** A config file's text with every password value replaced by what it is. */
export function maskConfigText(text: string): string {
  return text.replace(/^(\s*)(requirepass|masterauth)(\s+)(.*)$/gim, (_m, lead: string, directive: string, gap: string, value: string) => {
    return `${lead}${directive}${gap}${describePassword(unquote(value.trim())) ?? ''}`;
  });
}

function unquote(v: string): string {
  return /^"(.*)"$/.test(v) || /^'(.*)'$/.test(v) ? v.slice(1, -1) : v;
}

/**
 * The last line of defence: any text rcluster prints or saves has the passwords of this run
 * replaced. Code paths are written never to include them (the plan carries only their source);
 * this catches what a server echoes back in an error, e.g. a rejected ACL rule.
 */
export function scrubSecrets(text: string): string {
  const c = current;
  if (!c) return text;
  let out = text;
  for (const s of [c.password, c.previous]) if (s) out = out.split(s).join(REDACTED);
  return out;
}
