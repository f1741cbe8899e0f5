import { readFile } from 'node:fs/promises';
import { UsageError } from '../errors.js';
import type { Plan } from './types.js';
import { scrubSecrets } from '../live/auth.js';

/** A saved plan is JSON: the spec as planned, the live fingerprint, and the steps. */
export function serializePlan(plan: Plan): string {
  // A plan names where a password comes from, never the password; the scrub is a second guard.
  return scrubSecrets(JSON.stringify({ rclusterPlan: true, ...plan }, null, 2)) + '\n';
}

export function isPlanText(text: string): boolean {
  return /^\s*\{\s*"rclusterPlan"\s*:\s*true/.test(text);
}

/** Whether a file given as a spec is in fact a saved plan (unreadable files are left to the spec loader). */
export async function looksLikePlanFile(file: string): Promise<boolean> {
  return isPlanText(await readFile(file, 'utf8').catch(() => ''));
}

export async function readPlanFile(file: string): Promise<Plan> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new UsageError(`cannot read ${file}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message}`);
  }
  let parsed: Plan & { rclusterPlan?: boolean };
  try {
    parsed = JSON.parse(text) as Plan & { rclusterPlan?: boolean };
  } catch {
    throw new UsageError(`${file} is not a plan file written by rcluster plan --out (to apply a spec, use -f ${file})`);
  }
  if (!parsed.rclusterPlan) throw new UsageError(`${file} is not a plan file written by rcluster plan --out`);
  if (parsed.formatVersion !== 1) throw new UsageError(`${file}: plan format ${String(parsed.formatVersion)} is not supported by this rcluster (expected 1)`);
  const { rclusterPlan: _marker, ...plan } = parsed;
  return plan;
}
