import type { Diagnostic } from './spec/types.js';

/**
 * Every failure a user can see is one of these. The CLI prints `message` (one or two lines)
 * and never a stack trace; anything else reaching the top is a bug and is shown as one.
 */
export abstract class RclusterError extends Error {
  abstract readonly exitCode: number;
}

/** Bad command-line usage or an unreadable input file. */
export class UsageError extends RclusterError {
  readonly exitCode = 1;
}

/** The spec has errors; each diagnostic carries file:line:col. */
export class SpecError extends RclusterError {
  readonly exitCode = 1;
  constructor(readonly diagnostics: Diagnostic[]) {
    super(diagnostics.map(formatDiagnostic).join('\n'));
  }
}

/** Something went wrong on one host, during one step: `127.0.0.53: ssh: connect timed out after 10s`. */
export class HostError extends RclusterError {
  readonly exitCode = 1;
  constructor(
    readonly host: string,
    readonly step: string,
    readonly reason: string,
  ) {
    super(`${host}: ${step}: ${reason}`);
  }
}

/**
 * The host cannot be reached at all (its sshd refuses, times out, or the network has no route):
 * the plan treats its nodes as down instead of failing, when the cluster can do without them.
 */
export class HostUnreachableError extends HostError {}

/** The live cluster cannot be brought to the spec safely; nothing was changed. */
export class PlanError extends RclusterError {
  readonly exitCode = 1;
}

/** A step of apply failed; `done` lists the steps that had already completed. */
export class ApplyError extends RclusterError {
  readonly exitCode = 1;
  constructor(
    readonly failedStep: string,
    override readonly cause: Error,
    readonly done: string[],
  ) {
    super(`step failed: ${failedStep}: ${cause.message}`);
  }
}

export function formatDiagnostic(d: Diagnostic): string {
  return `${d.file}:${d.line}:${d.col}: ${d.severity === 'warning' ? 'warning: ' : ''}${d.message}`;
}
