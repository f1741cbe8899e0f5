import { Listr, ProcessOutput, type ListrTaskWrapper } from 'listr2';
import type { ApplyEvent, Phase } from '../apply/execute.js';
import { formatCount } from './steps.js';

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
  // Per phase, the migrations running in it: one line each, redrawn as they progress.
  const moving = new Map<number, Map<number, string>>();
  const doneTitles = new Map<number, string>();
  const listr = new Listr(
    phases.map((phase, i) => ({
      title: phase.title,
      // Every running migration keeps its own line under its phase.
      rendererOptions: { outputBar: Infinity } as never,
      task: async (_ctx: unknown, task: ListrTaskWrapper<unknown, never, never>) => {
        tasks.set(i, task);
        await gates[i]?.promise;
        // Set here: a fast phase may finish before listr2 has started its task.
        const done = doneTitles.get(i);
        if (done) task.title = done;
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
        case 'step_start':
          if (task) task.output = e.title;
          break;
        case 'step_progress': {
          const lines = moving.get(e.phase) ?? new Map<number, string>();
          moving.set(e.phase, lines);
          lines.set(e.index, progressLine(e));
          // A terminal redraws every pair in place; a log gets only the line that changed.
          if (task) task.output = process.stdout.isTTY ? [...lines.values()].join('\n') : progressLine(e);
          break;
        }
        case 'phase_done':
          doneTitles.set(e.phase, `${phases[e.phase]?.title} (${formatMs(e.ms)})`);
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

/** `A → B  512/1365 slots  31,200 keys  25,000 keys/s  ETA 3.1 s` */
export function progressLine(e: Extract<ApplyEvent, { type: 'step_progress' }>): string {
  const rate = e.ms > 0 ? Math.round((e.keysMoved * 1000) / e.ms) : 0;
  const eta = e.slotsDone > 0 && e.slotsDone < e.slotsTotal ? `  ETA ${formatMs(Math.round((e.ms / e.slotsDone) * (e.slotsTotal - e.slotsDone)))}` : '';
  return `${e.pair}  ${e.slotsDone}/${e.slotsTotal} slots  ${formatCount(e.keysMoved)} keys  ${formatCount(rate)} keys/s${eta}`;
}

export function formatMs(ms: number): string {
  return ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(1)} s`;
}

/**
 * A spinner on stderr for work before the plan can be shown (reading the nodes, over SSH a second
 * or more), so that stdout keeps only the plan. Only on a terminal: elsewhere it stays silent.
 */
export async function withSpinner<T>(title: string, enabled: boolean, fn: () => Promise<T>): Promise<T> {
  // Both must be terminals: with stdout piped, listr2 would fall back to plain lines on stdout.
  if (!enabled || !process.stderr.isTTY || !process.stdout.isTTY) return fn();
  let result: T | undefined;
  const started = Date.now();
  const listr = new Listr(
    [
      {
        title,
        task: async (_ctx: unknown, task: ListrTaskWrapper<unknown, never, never>) => {
          result = await fn();
          task.title = `${title} (${formatMs(Date.now() - started)})`;
        },
      },
    ],
    {
      exitOnError: true,
      registerSignalListeners: false,
      renderer: 'default',
      rendererOptions: { processOutput: new ProcessOutput(process.stderr, process.stderr), showErrorMessage: false },
    } as never,
  );
  await listr.run();
  return result as T;
}
