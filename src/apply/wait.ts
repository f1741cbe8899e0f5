/**
 * Thrown by a check when waiting longer cannot help (a save that failed, a node that is gone
 * for good): waitFor gives up at once instead of polling until its deadline.
 */
export class WaitAborted extends Error {}

/**
 * Poll a real condition until it holds. `check` returns true when done, or a string saying what
 * is still missing, which becomes the error if the deadline passes.
 */
export async function waitFor(what: string, check: () => Promise<true | string>, opts: { timeoutMs: number; intervalMs?: number }): Promise<void> {
  const deadline = Date.now() + opts.timeoutMs;
  let last = 'not checked yet';
  for (;;) {
    try {
      const r = await check();
      if (r === true) return;
      last = r;
    } catch (err) {
      if (err instanceof WaitAborted) throw err;
      last = (err as Error).message;
    }
    if (Date.now() >= deadline) throw new Error(`${what}: still waiting after ${Math.round(opts.timeoutMs / 1000)}s (${last})`);
    await new Promise((r) => setTimeout(r, opts.intervalMs ?? 50));
  }
}
