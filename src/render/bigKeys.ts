import { describeBigKey } from '../plan/bigKeys.js';
import type { Plan } from '../plan/types.js';

/** The plan's big keys, under the steps that would move them; nothing when there are none. */
export function renderBigKeys(plan: Plan): string[] {
  const keys = plan.bigKeys ?? [];
  if (keys.length === 0) return [];
  const what = plan.allowBigKeys ? 'moved anyway: --allow-big-keys' : 'apply refuses to move them without --allow-big-keys';
  return ['', `  Big keys (too big to move safely; ${what})`, ...keys.map((k) => `    ! ${describeBigKey(k)}`)];
}

/** The line under the summary, as --allow-down has. */
export function bigKeysNote(plan: Plan): string[] {
  const n = plan.bigKeys?.length ?? 0;
  if (n === 0 || plan.allowBigKeys) return [];
  return [`Apply moves ${n === 1 ? 'the big key' : `the ${n} big keys`} only with --allow-big-keys.`];
}
