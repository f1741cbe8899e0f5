/** Where the CLI writes; tests pass their own to read what a user would see. */
export interface Io {
  out(text: string): void;
  err(text: string): void;
  stdinIsTTY: boolean;
}

export const processIo: Io = {
  out: (t) => process.stdout.write(t + '\n'),
  err: (t) => process.stderr.write(t + '\n'),
  stdinIsTTY: Boolean(process.stdin.isTTY),
};
