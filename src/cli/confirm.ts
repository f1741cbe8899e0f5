import { UsageError } from '../errors.js';
import type { Io } from './io.js';

/** terraform's contract: only the word "yes" approves; without a terminal, refuse rather than hang. */
export async function confirm(io: Io): Promise<boolean> {
  if (!io.stdinIsTTY) {
    throw new UsageError('stdin is not a terminal, so rcluster cannot ask for confirmation; re-run with --auto-approve to apply without asking.');
  }
  // Loaded only when asking: most runs (--auto-approve, plan, CI) never prompt.
  const { input } = await import('@inquirer/prompts');
  const answer = await input({ message: "Do you want to perform these actions? Only 'yes' will be accepted to approve:" });
  return answer.trim() === 'yes';
}
