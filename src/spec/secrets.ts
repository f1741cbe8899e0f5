import { readFile, stat } from 'node:fs/promises';
import { UsageError } from '../errors.js';
import type { Credentials } from '../live/auth.js';
import type { DesiredCluster, SecretRef } from './types.js';

/** How the plan and messages name a secret's source, never its value. */
export function describeSecretRef(ref: SecretRef): string {
  return 'env' in ref ? `$${ref.env}` : `file ${ref.file}`;
}

/**
 * The cluster's passwords, read from where the spec says, before any node is contacted: a
 * missing variable or unreadable file is a usage error that names the field and touches nothing.
 */
export async function loadCredentials(desired: DesiredCluster, env: NodeJS.ProcessEnv = process.env): Promise<Credentials | undefined> {
  const auth = desired.auth;
  if (!auth) return undefined;
  const password = await readSecret(auth.password, 'password', env);
  const out: Credentials = { password, source: describeSecretRef(auth.password) };
  if (auth.previous) {
    out.previous = await readSecret(auth.previous, 'previousPassword', env);
    out.previousSource = describeSecretRef(auth.previous);
    if (out.previous === password) {
      throw new UsageError(`redis.previousPassword${'env' in auth.previous ? 'Env' : 'File'}: it holds the same password as redis.password${'env' in auth.password ? 'Env' : 'File'}; remove it once a rotation is over; nothing was contacted`);
    }
  }
  return out;
}

async function readSecret(ref: SecretRef, field: 'password' | 'previousPassword', env: NodeJS.ProcessEnv): Promise<string> {
  let value: string;
  let where: string;
  if ('env' in ref) {
    where = `redis.${field}Env: $${ref.env}`;
    const v = env[ref.env];
    if (v === undefined || v === '') throw new UsageError(`${where} is not set (or empty) in rcluster's environment; nothing was contacted`);
    value = v;
  } else {
    where = `redis.${field}File: ${ref.file}`;
    try {
      if ((await stat(ref.file)).isDirectory()) throw Object.assign(new Error('is a directory'), { code: 'EISDIR' });
      // One line: the trailing newline an editor or `echo` adds is not part of the password.
      value = (await readFile(ref.file, 'utf8')).replace(/\r?\n$/, '');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      const why = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : code === 'EISDIR' ? 'a directory' : (err as Error).message;
      throw new UsageError(`${where}: cannot read it (${why}); nothing was contacted`);
    }
    if (value === '') throw new UsageError(`${where} is empty; nothing was contacted`);
  }
  // It is written unquoted into redis.conf and sent in commands; and a password short enough to
  // appear by chance in other text could not be reliably kept out of rcluster's output.
  if (/[\s"'\\]/.test(value) || /[^\x21-\x7e]/.test(value)) {
    throw new UsageError(`${where}: the password must be printable ASCII without spaces, quotes or backslashes (it is written into redis.conf as is); nothing was contacted`);
  }
  if (value.length < 8) throw new UsageError(`${where}: the password is shorter than 8 characters; nothing was contacted`);
  return value;
}
