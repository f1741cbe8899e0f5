import { Listr, type ListrTaskWrapper } from 'listr2';
import type { ApplyEvent, Phase } from '../apply/execute.js';

export interface ProgressView {
  emit(e: ApplyEvent): void;
  /** Resolves once the view has drawn its last frame. */
  finish(): Promise<void>;
}

/** --json: one JSON object per line and per event, for machines. */
export function jsonProgress(write: (line: string) => void): ProgressView {
  return {
    emit: (e) => write(JSON.stringify({ ...e, time: new Date().toISOString() })),
    finish: async () => {},
  };
}

interface Deferred {
  promise: Promise<void>;
  resolve: () => void;
  reject: (err: Error) => void;
}

function deferred(): Deferred {
  let resolve!: () => void;
  let reject!: (err: Error) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  promise.catch(() => {});
  return { promise, resolve, reject };
}

/**
 * listr2 draws the phases; the executor drives them through events, so that the view never
 * decides what runs. Without a TTY listr2 falls back to plain lines.
 */
export function listrProgress(phases: Phase[]): ProgressView {
  const gates = phases.map(() => deferred());
  const tasks = new Map<number, ListrTaskWrapper<unknown, never, never>>();
  const running = new Map<number, Set<string>>();
  const listr = new Listr(
    phases.map((phase, i) => ({
      title: phase.title,
      task: async (_ctx: unknown, task: ListrTaskWrapper<unknown, never, never>) => {
        tasks.set(i, task);
        await gates[i]?.promise;
      },
    })),
    {
      concurrent: false,
      exitOnError: true,
      registerSignalListeners: false,
      renderer: 'default',
      fallbackRenderer: 'simple',
      rendererOptions: { collapseSubtasks: false, showErrorMessage: false },
      fallbackRendererOptions: { timestamp: undefined },
    } as never,
  );
  const run = listr.run().catch(() => {});

  return {
    emit(e) {
      const task = 'phase' in e ? tasks.get(e.phase) : undefined;
      switch (e.type) {
        case 'step_start': {
          const set = running.get(e.phase) ?? new Set();
          set.add(e.title);
          running.set(e.phase, set);
          if (task) task.output = e.title;
          break;
        }
        case 'step_done':
          running.get(e.phase)?.delete(e.title);
          break;
        case 'phase_done':
          if (task) task.title = `${phases[e.phase]?.title} (${formatMs(e.ms)})`;
          gates[e.phase]?.resolve();
          break;
        case 'phase_failed':
          gates[e.phase]?.reject(new Error(e.error));
          break;
      }
    },
    async finish() {
      // Phases never reached (after a failure) are released so that listr2 can stop.
      for (const g of gates) g.reject(new Error('not run'));
      await run;
    },
  };
}

export function formatMs(ms: number): string {
  return ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(1)} s`;
}
