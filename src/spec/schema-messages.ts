import type { ErrorObject } from 'ajv';
import { pathLabel, pointerToPath, type Issue, type SpecPath } from './positions.js';
import { closest, distance } from 'fastest-levenshtein';

type Schema = Record<string, unknown>;

/**
 * Turns ajv's errors into one readable issue per problem. Node items (a string or a mapping,
 * a oneOf in the schema) are special: ajv reports every failing branch, so only the mapping
 * branch is kept here, and only for mapping items; semantic.ts checks strings and odd types.
 */
export function schemaIssues(errors: ErrorObject[], data: unknown): Issue[] {
  const out: Issue[] = [];
  const seen = new Set<string>();
  for (const e of errors) {
    const path = pointerToPath(e.instancePath);
    if (!keepForNodes(e, path, data)) continue;
    const issue = translate(e, path, data);
    if (!issue) continue;
    // type + minimum on one value (e.g. 1.5 where an integer >= 100 is wanted) give the same text.
    const key = `${issue.at}|${issue.path.join('/')}|${issue.message}`;
    if (seen.has(key)) continue;
    seen.add(key);
    out.push(issue);
  }
  return out;
}

function keepForNodes(e: ErrorObject, path: SpecPath, data: unknown): boolean {
  if (path[0] !== 'nodes' || path.length < 2) return true;
  const item = valueAt(data, path.slice(0, 2));
  if (!isPlainObject(item)) return false;
  if (e.schemaPath.startsWith('#/properties/nodes/items/oneOf')) return false;
  // Hosts are checked by semantic.ts, with the same words for both node forms.
  if (path[2] === 'host' && e.keyword === 'pattern') return false;
  return true;
}

function translate(e: ErrorObject, path: SpecPath, data: unknown): Issue | undefined {
  const parentSchema = (e.parentSchema ?? {}) as Schema;
  const value = valueAt(data, path);
  const label = quotedLabel(path);
  const error = (message: string, at: 'key' | 'value' = 'value', p: SpecPath = path): Issue => ({
    path: p,
    at,
    severity: 'error',
    message,
  });
  const params = e.params as Record<string, unknown>;

  switch (e.keyword) {
    case 'additionalProperties': {
      const key = String(params.additionalProperty);
      const allowed = Object.keys((parentSchema.properties ?? {}) as Schema);
      const hint = suggestion(key, allowed);
      return error(`unknown key "${key}"${context(path)}${hint ? `; did you mean "${hint}"?` : ''} (allowed: ${allowed.join(', ')})`, 'key', [...path, key]);
    }
    case 'required':
      return error(`missing required key "${String(params.missingProperty)}"${context(path)}`);
    case 'enum': {
      const allowed = (params.allowedValues as unknown[]).map(String).join(', ');
      return error(`${plainLabel(path)} must be one of: ${allowed} (got ${describe(value)})`);
    }
    case 'type':
      if (path.length === 0) {
        return error(value === null || value === undefined ? 'the spec is empty' : `the spec must be a mapping (got ${describe(value)})`);
      }
      return error(`${label} must be ${expectation(parentSchema)} (got ${describe(value)})`);
    case 'minimum':
    case 'maximum':
    case 'exclusiveMinimum':
    case 'exclusiveMaximum':
    case 'minLength':
      return error(`${label} must be ${expectation(parentSchema)} (got ${describe(value)})`);
    case 'maxLength':
      return error(`${label} must be at most ${String(params.limit)} characters long`);
    case 'minItems':
      return error(`${label} must list at least ${String(params.limit)} item${params.limit === 1 ? '' : 's'}`);
    case 'propertyNames':
      return error(`"${String(params.propertyName)}" is not a valid redis.conf directive name`, 'key', [
        ...path,
        String(params.propertyName),
      ]);
    case 'pattern':
      // propertyNames reports the key above; this is its inner, less helpful, duplicate.
      if (e.propertyName !== undefined) return undefined;
      return error(patternMessage(path, value));
    case 'oneOf':
    case 'anyOf':
    case 'if':
      return undefined;
    default:
      return error(`${label} ${e.message ?? 'is invalid'}`);
  }
}

function patternMessage(path: SpecPath, value: unknown): string {
  if (path.length === 1 && path[0] === 'name') {
    if (value === '.' || value === '..') return `"name" must not be "." or ".." (it becomes a directory name)`;
    return `"name" may contain only letters, digits, "-", "_" and "." (got ${describe(value)})`;
  }
  return `${quotedLabel(path)} has an invalid format (got ${describe(value)})`;
}

/** What a scalar schema wants, in words: "an integer from 1 to 65535". */
function expectation(s: Schema): string {
  const type = s.type;
  if (type === 'integer' || type === 'number') {
    const noun = type === 'integer' ? 'an integer' : 'a number';
    const { minimum: min, maximum: max, exclusiveMinimum: exMin } = s;
    if (min !== undefined && max !== undefined) return `${noun} from ${String(min)} to ${String(max)}`;
    if (min !== undefined) return `${noun} of at least ${String(min)}`;
    if (exMin !== undefined) return `${noun} greater than ${String(exMin)}`;
    return noun;
  }
  if (type === 'string') return s.minLength ? 'a non-empty string' : 'a string';
  if (Array.isArray(type)) {
    const words = type.map((t) => String(t));
    return `a ${words.slice(0, -1).join(', ')} or ${words[words.length - 1]}`;
  }
  return ({ object: 'a mapping', array: 'a list', boolean: 'true or false' } as Record<string, string>)[String(type)] ?? `of type ${String(type)}`;
}

export function describe(value: unknown): string {
  if (value === null || value === undefined) return 'an empty value';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  return JSON.stringify(value);
}

/** `"port"`: the key name alone, since the position already says which one. */
function quotedLabel(path: SpecPath): string {
  const last = path[path.length - 1];
  if (last === undefined) return 'the spec';
  if (typeof last === 'number' || /^\d+$/.test(last)) return pathLabel(path);
  return `"${last}"`;
}

function plainLabel(path: SpecPath): string {
  const last = path[path.length - 1];
  return last === undefined ? 'the spec' : typeof last === 'number' || /^\d+$/.test(last) ? pathLabel(path) : last;
}

function context(path: SpecPath): string {
  return path.length === 0 ? '' : ` in ${pathLabel(path)}`;
}

export function valueAt(data: unknown, path: SpecPath): unknown {
  let v = data;
  for (const seg of path) {
    if (Array.isArray(v)) v = v[Number(seg)];
    else if (isPlainObject(v)) v = v[String(seg)];
    else return undefined;
  }
  return v;
}

export function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The allowed key a typo most likely meant: a different case, or within a third of its letters. */
function suggestion(key: string, allowed: string[]): string | undefined {
  if (allowed.length === 0) return undefined;
  const same = allowed.find((a) => a.toLowerCase() === key.toLowerCase());
  if (same) return same;
  const near = closest(key, allowed);
  return distance(key, near) <= Math.max(1, Math.floor(key.length / 3)) ? near : undefined;
}
