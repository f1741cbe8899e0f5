import type { ConnectionKind } from '../spec/types.js';

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  timeoutMs?: number;
}

/**
 * Everything rcluster does to a host goes through this interface, so that the same
 * plan runs on this machine (local), over SSH (ssh), or not at all (none).
 * Every method names the host it acts on; errors are HostError and carry the host and step.
 */
export interface HostDriver {
  readonly kind: ConnectionKind;
  /** The file's content, or null when it does not exist. */
  readFile(host: string, path: string): Promise<string | null>;
  /**
   * Write through a temp file and rename; with backup, keep the previous content beside it. An
   * existing file keeps its mode. `mode` (a file holding a password: 0600) is a new file's mode;
   * the local driver also takes from an existing one what `mode` does not allow.
   */
  writeFileAtomic(host: string, path: string, content: string, opts?: { backup?: boolean; mode?: number }): Promise<void>;
  /** Run a shell command on the host. A non-zero exit is a result, not an error. */
  run(host: string, command: string, opts?: RunOptions): Promise<RunResult>;
  /** Release connections. */
  close(): Promise<void>;
}
