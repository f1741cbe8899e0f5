import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { RclusterError, SpecError } from '../errors.js';
import { applyCommand, destroyCommand, EXIT_ERROR, planCommand, statusCommand, validateCommand } from './commands.js';
import { processIo, type Io } from './io.js';
import { scrubSecrets, useCredentials } from '../live/auth.js';
import { endRedisRoute } from '../live/connect.js';

const FILE_HELP = 'the cluster spec (YAML)';
const ALLOW_BIG_KEYS_HELP =
  "move keys the plan finds too big to move safely (MIGRATE would block their source longer than half of cluster-node-timeout, or send more than the target's proto-max-bulk-len); without it apply refuses them";

/** A positive number for a timeout flag; anything else is a usage error naming the flag. */
function positive(flag: string, integer: boolean) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isFinite(n) || n <= 0 || (integer && !Number.isInteger(n))) {
      throw new InvalidArgumentError(`${flag} takes a positive ${integer ? 'whole number' : 'number'}, not "${value}"`);
    }
    return n;
  };
}

function fileOption(): Option {
  return new Option('-f, --file <path>', FILE_HELP).default('cluster.yaml');
}

export function buildProgram(io: Io, setExit: (code: number) => void): Command {
  const program = new Command('rcluster')
    .description('Declarative Redis Cluster: keep cluster.yaml in git, `rcluster plan` to see what would change, `rcluster apply` to make it so.')
    .version('0.1.0')
    .showHelpAfterError('(run with --help for usage)')
    .configureOutput({ writeOut: (s) => io.out(s.trimEnd()), writeErr: (s) => io.err(s.trimEnd()) })
    .exitOverride()
    .addHelpText(
      'after',
      `
Examples:
  $ rcluster validate -f examples/local.yaml
  $ rcluster apply -f examples/local.yaml --auto-approve   # a 6-node cluster on 127.0.0.1:7001-7006
  $ rcluster status -f examples/local.yaml
  $ rcluster plan -f cluster.yaml --out plan.json && rcluster apply plan.json
  $ rcluster destroy -f examples/local.yaml --auto-approve

Exit codes: 0 ok, 1 error (or unhealthy for status), 2 changes pending (plan --detailed-exitcode).`,
    );

  program
    .command('validate')
    .description('check a spec and report every problem as FILE:LINE:COL: message')
    .addOption(fileOption())
    .option('--json', 'print the diagnostics as JSON')
    .addHelpText('after', '\nExample:\n  $ rcluster validate -f cluster.yaml')
    .action(async (o) => setExit(await validateCommand(o, io)));

  program
    .command('plan')
    .description('read the live cluster and show what apply would change, without changing anything')
    .addOption(fileOption())
    .option('--out <planfile>', 'save the plan, to apply exactly it later with `rcluster apply PLANFILE`')
    .option('--json', 'print the plan as JSON')
    .option('--detailed-exitcode', 'exit 0 when there is nothing to do, 2 when there are changes, 1 on error')
    .option('--allow-reset', 'wipe (FLUSHALL, CLUSTER RESET HARD) a spec node that holds keys or remembers another cluster, instead of refusing it; the plan says what is wiped')
    .option('--allow-big-keys', `${ALLOW_BIG_KEYS_HELP}; saved with --out, so that applying the plan file moves them`)
    .addHelpText(
      'after',
      '\nExamples:\n  $ rcluster plan -f cluster.yaml\n  $ rcluster plan -f cluster.yaml --detailed-exitcode || echo "drift"\n  $ rcluster plan -f cluster.yaml --out plan.json\n  $ rcluster plan -f cluster.yaml --allow-big-keys --out plan.json   # the big keys the plan names move too',
    )
    .action(async (o) => setExit(await planCommand(o, io)));

  program
    .command('apply')
    .description('show the plan, ask for "yes", then make the changes with live progress')
    .argument('[planfile]', 'a plan saved by `rcluster plan --out` (applied as is, after checking the cluster has not changed)')
    .option('-f, --file <path>', `${FILE_HELP} (default: "cluster.yaml", unless a plan file is given)`)
    .option('--auto-approve', 'do not ask for confirmation (for scripts and CI)')
    .option('--json', 'print the plan and progress events as JSON lines')
    .option('--allow-reset', 'wipe (FLUSHALL, CLUSTER RESET HARD) a spec node that holds keys or remembers another cluster, instead of refusing it; the plan says what is wiped')
    .option('--command-timeout <ms>', 'how long one Redis command may take (overrides timeouts.command; default 10000)', positive('--command-timeout', true))
    .option('--wait-timeout <ms>', 'the base of every wait: joining, agreeing, syncing, saving (overrides timeouts.wait; default 60000)', positive('--wait-timeout', true))
    .option('--transfer-rate <MB/s>', 'the slowest rate data is assumed to move at: waits on data grow by its size at this rate (overrides timeouts.transferRate; default 20)', positive('--transfer-rate', false))
    .option('--force-unlock <lock-id>', 'take over the lock of an apply that is gone (its machine lost the network); the id is in the message that refused the lock')
    .option('--allow-down', 'go ahead while spec nodes the cluster can do without are down (their host or the node does not answer); nothing is done to them')
    .option('--allow-big-keys', ALLOW_BIG_KEYS_HELP)
    .addHelpText(
      'after',
      '\nExamples:\n  $ rcluster apply -f cluster.yaml\n  $ rcluster apply -f cluster.yaml --auto-approve --json\n  $ rcluster apply -f cluster.yaml --allow-reset   # re-add a host that still holds old data\n  $ rcluster apply -f cluster.yaml --allow-down    # add a replica while a failed host is away\n  $ rcluster apply -f cluster.yaml --allow-big-keys   # move the keys the plan names as too big anyway\n  $ rcluster apply plan.json',
    )
    .action(async (planFile: string | undefined, o) => setExit(await applyCommand({ ...o, planFile }, io)));

  program
    .command('status')
    .description("show masters, slots, keys and replicas, and check agreement, open slots, coverage and reachability (redis-trib's info + check)")
    .addOption(fileOption())
    .option('--json', 'print the status as JSON')
    .addHelpText('after', '\nExit code 1 when the cluster is unhealthy.\n\nExample:\n  $ rcluster status -f cluster.yaml')
    .action(async (o) => setExit(await statusCommand(o, io)));

  program
    .command('destroy')
    .description('stop the nodes and delete their files (connection: local only)')
    .addOption(fileOption())
    .option('--auto-approve', 'do not ask for confirmation')
    .option('--json', 'print what is destroyed as JSON lines')
    .addHelpText('after', '\nExample:\n  $ rcluster destroy -f examples/local.yaml --auto-approve')
    .action(async (o) => setExit(await destroyCommand(o, io)));

  return program;
}

/** Runs the CLI and returns the exit code. Known failures print one or two lines, never a stack. */
export async function main(argv: string[], rawIo: Io = processIo): Promise<number> {
  let code = 0;
  // Whatever a server echoes back (a rejected ACL rule, say) never carries a password out.
  const io: Io = { ...rawIo, out: (t) => rawIo.out(scrubSecrets(t)), err: (t) => rawIo.err(scrubSecrets(t)) };
  const program = buildProgram(io, (c) => (code = c));
  try {
    await program.parseAsync(argv);
    return code;
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : EXIT_ERROR;
    if (err instanceof RclusterError) {
      // Spec errors keep the FILE:LINE:COL: shape at the start of each line, for editors and grep.
      io.err(err instanceof SpecError ? err.message : `Error: ${err.message}`);
      return err.exitCode;
    }
    const e = err as Error;
    io.err(`Error: ${e?.message ?? String(err)}`);
    if (process.env['RCLUSTER_DEBUG']) io.err(e?.stack ?? '');
    else io.err('(this is unexpected; run with RCLUSTER_DEBUG=1 for details, and please report it)');
    return EXIT_ERROR;
  } finally {
    useCredentials(undefined);
    await endRedisRoute();
  }
}
