import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { Ajv, type ValidateFunction } from 'ajv';
import { LineCounter, parseDocument, type YAMLError } from 'yaml';
import { SpecError, UsageError } from '../errors.js';
import { normalize } from './normalize.js';
import { SourceLocator, type Issue } from './positions.js';
import type { RawSpec } from './raw.js';
import { schemaIssues } from './schema-messages.js';
import { collisionIssues, semanticIssues } from './semantic.js';
import type { DesiredCluster, Diagnostic } from './types.js';

export interface LoadResult {
  /** Present exactly when there are no error-severity diagnostics. */
  desired?: DesiredCluster;
  diagnostics: Diagnostic[];
}

/** schemas/ sits two levels above both src/spec/ and dist/spec/, and ships in the package. */
export const SCHEMA_URL = new URL('../../schemas/cluster.schema.json', import.meta.url);

let validator: ValidateFunction | undefined;

function validate(): ValidateFunction {
  if (!validator) {
    const schema = JSON.parse(readFileSync(SCHEMA_URL, 'utf8')) as object;
    // verbose: messages need the failing schema (allowed keys, ranges); allowUnionTypes: config values.
    const ajv = new Ajv({ allErrors: true, verbose: true, strict: true, allowUnionTypes: true });
    validator = ajv.compile(schema);
  }
  return validator;
}

/** Reads and checks a spec file. An unreadable file is a UsageError; problems in it are diagnostics. */
export async function loadSpec(file: string): Promise<LoadResult> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new UsageError(`cannot read ${file}: ${readReason(err)}`);
  }
  return parseSpec(text, file);
}

/** Checks spec text; `file` names it in diagnostics and anchors relative paths (its directory). */
export function parseSpec(text: string, file: string): LoadResult {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, keepSourceTokens: true, prettyErrors: true });
  const yamlDiagnostic = (e: YAMLError, severity: Diagnostic['severity']): Diagnostic => ({
    file,
    line: e.linePos?.[0].line ?? 1,
    col: e.linePos?.[0].col ?? 1,
    severity,
    message: yamlMessage(e),
  });
  const warnings = doc.warnings.map((w) => yamlDiagnostic(w, 'warning'));
  if (doc.errors.length > 0) {
    // Positions in a document that did not parse mean little; report the syntax and stop.
    return { diagnostics: sortDiagnostics([...doc.errors.map((e) => yamlDiagnostic(e, 'error')), ...warnings]) };
  }

  const locator = new SourceLocator(doc, lineCounter);
  const toDiagnostic = (i: Issue): Diagnostic => ({ file, ...locator.locate(i.path, i.at), severity: i.severity, message: i.message });

  let data: unknown;
  try {
    data = doc.toJS({ maxAliasCount: 1000 });
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    return { diagnostics: [{ file, line: 1, col: 1, severity: 'error', message: `cannot read the YAML: ${message}` }] };
  }

  const check = validate();
  const schemaOk = check(data);
  const issues = [...schemaIssues(check.errors ?? [], data), ...semanticIssues(data, locator)];
  let desired: DesiredCluster | undefined;
  if (schemaOk && !issues.some((i) => i.severity === 'error')) {
    desired = normalize(data as RawSpec, file);
    const collisions = collisionIssues(desired, data);
    if (collisions.length > 0) desired = undefined;
    issues.push(...collisions);
  }
  const diagnostics = sortDiagnostics([...warnings, ...issues.map(toDiagnostic)]);
  return desired ? { desired, diagnostics } : { diagnostics };
}

/** The cluster, or a SpecError carrying every error (warnings are left to the caller to show). */
export function requireSpec(result: LoadResult): DesiredCluster {
  const errors = result.diagnostics.filter((d) => d.severity === 'error');
  if (errors.length > 0 || !result.desired) throw new SpecError(errors);
  return result.desired;
}

/** yaml's messages repeat the position and quote the source over several lines; keep the first clause. */
function yamlMessage(e: YAMLError): string {
  const first = e.message.split('\n')[0] ?? e.message;
  return first.replace(/ at line \d+, column \d+:?$/, '');
}

function readReason(err: unknown): string {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  switch (code) {
    case 'ENOENT':
      return 'no such file';
    case 'EACCES':
    case 'EPERM':
      return 'permission denied';
    case 'EISDIR':
      return 'is a directory';
    default:
      return (err instanceof Error ? err.message : String(err)).split('\n')[0] ?? 'unknown error';
  }
}

function sortDiagnostics(list: Diagnostic[]): Diagnostic[] {
  return list
    .map((d, i) => ({ d, i }))
    .sort((a, b) => a.d.line - b.d.line || a.d.col - b.d.col || a.i - b.i)
    .map(({ d }) => d);
}
