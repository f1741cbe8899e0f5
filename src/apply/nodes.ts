import type { Redis } from 'ioredis';
import { HostError } from '../errors.js';
import type { HostDriver } from '../hosts/driver.js';
import { sh } from '../hosts/shell.js';
import { connectNode, describeRedisError } from '../live/connect.js';
import { AuthError, credentials } from '../live/auth.js';
import { parseInfo, parseServer, serverLabel } from '../live/parse.js';
import { renderNodeConf } from '../provision/nodeConf.js';
import { editRedisConf, readDirective, splitArgs, type ConfEdit, type ConfEditResult } from '../provision/redisConf.js';
import { serviceCommands } from '../provision/service.js';
import { dataTimeoutMs, DEFAULT_TIMEOUTS, serverCommand, type ConnectionKind, type DesiredNode, type Timeouts } from '../spec/types.js';
import { waitFor } from './wait.js';

const START_TIMEOUT_MS = 15_000;

/** Write the node's config (keeping what is not rcluster's) and start its server on this machine. */
export async function startLocalNode(node: DesiredNode, driver: HostDriver, connection: ConnectionKind): Promise<void> {
  const { configFile, dataDir } = node.redis;
  const mk = await driver.run(node.host, `mkdir -p ${sh(dataDir)}`);
  if (mk.code !== 0) throw new HostError(node.address, 'create data directory', mk.stderr.trim() || `mkdir exited ${mk.code}`);
  const current = await driver.readFile(node.host, configFile);
  const password = credentials()?.password;
  const conf = renderNodeConf(node, { connection, replicasPerMaster: 0, ...(password !== undefined ? { password } : {}) }, current);
  // A file that holds the password is readable by its owner only.
  if (current === null || conf.changed.length > 0) await driver.writeFileAtomic(node.host, configFile, conf.text, { backup: current !== null, ...(password !== undefined ? { mode: 0o600 } : {}) });
  await launchLocalNode(node, driver, conf.text);
}

/** Start the spec's server binary with the config file as it is, and wait until it answers. */
async function launchLocalNode(node: DesiredNode, driver: HostDriver, confText: string): Promise<void> {
  const binary = serverCommand(node.redis);
  const step = `start ${binary}`;
  const started = await driver.run(node.host, `${sh(binary)} ${sh(node.redis.configFile)}`, { timeoutMs: START_TIMEOUT_MS });
  if (started.code !== 0) {
    const why = (started.stderr || started.stdout).trim().split('\n').slice(-3).join(' | ');
    // 127: the shell found no such command.
    const hint = started.code === 127 && node.redis.serverBinary === undefined ? ` (not on PATH: set redis.serverBinary to its path)` : '';
    throw new HostError(node.address, step, `${why || `${binary} exited ${started.code}`}${hint}`);
  }
  try {
    await waitUntilClusterNode(node.address, START_TIMEOUT_MS);
    await expectServer(node);
    await acceptPreviousPassword(node.address);
  } catch (err) {
    const log = readDirective(confText, 'logfile');
    const tail = log ? await driver.run(node.host, `tail -n 5 ${sh(log)}`) : undefined;
    const lines = tail?.stdout.trim();
    throw new HostError(node.address, step, `${(err as Error).message}${lines ? `; last log lines:\n${lines}` : ''}`);
  }
}

/**
 * The binary just started is the server the spec names: a redis.serverBinary that points at the
 * other one would otherwise go unnoticed until the next plan refuses the node. Such a node is
 * stopped again without saving: its files stay as they were, and Redis cannot load what Valkey
 * 8+ saves (an RDB that starts VALKEY080).
 */
async function expectServer(node: DesiredNode): Promise<void> {
  const want = node.redis.server ?? 'redis';
  const client = await connectNode(node.address);
  const server = parseServer(parseInfo(await client.info('server').finally(() => client.disconnect())));
  if (server.name === want) return;
  await stopNode(node.address, { discard: true });
  throw new Error(`${serverCommand(node.redis)} is ${serverLabel(server)}, but the spec says redis.server: ${want}; it was stopped again without saving`);
}

/** Wait until the node answers PING with cluster_enabled:1. */
export async function waitUntilClusterNode(address: string, timeoutMs: number): Promise<void> {
  await waitFor(
    `${address} to answer as a cluster node`,
    async () => {
      let client;
      try {
        client = await connectNode(address, { connectTimeoutMs: 1000 });
      } catch (err) {
        return describeRedisError(err);
      }
      try {
        const info = parseInfo(await client.info('cluster'));
        return info['cluster_enabled'] === '1' ? true : 'cluster_enabled is 0';
      } finally {
        client.disconnect();
      }
    },
    { timeoutMs },
  );
}

/**
 * Stop a node and wait until its port refuses. `discard` (destroy): SHUTDOWN NOSAVE NOW, the data
 * is being thrown away. Otherwise a plain SHUTDOWN, which persists as the node is configured to
 * and lets replicas catch up. Returns false when the node was not running.
 */
export async function stopNode(address: string, opts: { discard: boolean }, timeoutMs = 15_000): Promise<boolean> {
  let client;
  try {
    client = await connectNode(address, { connectTimeoutMs: 1000 });
  } catch {
    return false;
  }
  try {
    // NOW (Redis >= 7) skips waiting for replicas to catch up.
    await client.call('SHUTDOWN', ...(opts.discard ? ['NOSAVE', 'NOW'] : []));
  } catch (err) {
    // The server closes the connection as it exits; that is the expected answer. An older
    // server rejects NOW with a syntax error and gets the plain form.
    if (opts.discard && /syntax|ERR/i.test((err as Error).message)) await client.call('SHUTDOWN', 'NOSAVE').catch(() => {});
  } finally {
    client.disconnect();
  }
  await waitFor(`${address} to stop`, async () => ((await answersAt(address)) ? 'still answering' : true), { timeoutMs });
  return true;
}

/**
 * Over SSH: edit the node's config file (temp file + rename, backup beside it), restart it through
 * its service, and wait until it answers on its port as a cluster node. `replaces`: a standalone
 * redis on the file's old port, which must be gone afterwards.
 */
export async function provisionSshNode(node: DesiredNode, driver: HostDriver, edits: ConfEdit[], replaces?: string): Promise<void> {
  const { service } = node.redis;
  // Everything that can fail without touching the node goes first.
  if (!service) throw new HostError(node.host, 'restart', 'redis.service is not set, so rcluster cannot restart the node');
  // Redis refuses to start in a dir that does not exist; a new dataDir is created first, owned
  // by the user redis runs as (the running server's, else its parent directory's owner):
  // created by root through sudo, a redis running as `redis` could not write it.
  const d = sh(node.redis.dataDir);
  const mk = await driver.run(
    node.host,
    `if [ ! -d ${d} ]; then mkdir -p ${d} || exit 1; u=$(ps -o user= -C ${node.redis.server ?? 'redis'}-server 2>/dev/null | head -n 1 | tr -d ' '); ` +
      // Best effort: an SSH user without root cannot give it away, and needs no other owner.
      `if [ -n "$u" ] && [ "$u" != root ]; then chown "$u": ${d} 2>/dev/null; else chown --reference="$(dirname ${d})" ${d} 2>/dev/null; fi; true; fi`,
  );
  if (mk.code !== 0) throw new HostError(node.host, `mkdir ${node.redis.dataDir}`, mk.stderr.trim() || `exited ${mk.code}`);
  const conf = await editConfigFile(node, driver, edits);
  const { cmd, stop, start } = await serviceRestart(node, driver);
  const logTail = async () => {
    const log = readDirective(conf.text, 'logfile');
    if (!log) return '';
    const dir = readDirective(conf.text, 'dir') ?? node.redis.dataDir;
    const path = log.startsWith('/') ? log : `${dir}/${log}`;
    const tail = await driver.run(node.host, `tail -n 5 ${sh(path)}`).catch(() => undefined);
    return tail?.stdout.trim() ? `; last lines of ${path}:\n${tail.stdout.trim()}` : '';
  };
  if (start.code !== 0) {
    const out = `${start.stdout}${start.stderr}`.trim().split('\n').slice(-3).join(' | ');
    const stopOut = stop.code !== 0 ? ` (stop exited ${stop.code})` : '';
    throw new HostError(node.host, `${cmd.start}`, `exited ${start.code}${stopOut}${out ? `: ${out}` : ''}${await logTail()}`);
  }
  try {
    await waitUntilClusterNode(node.address, START_TIMEOUT_MS);
    await acceptPreviousPassword(node.address);
  } catch (err) {
    throw new HostError(node.host, `start ${node.address}`, `${(err as Error).message}${await logTail()}`);
  }
  if (replaces && replaces !== node.address) {
    await waitFor(`the standalone redis on ${replaces} to stop`, async () => ((await answersAt(replaces)) ? 'it still answers' : true), { timeoutMs: 10_000 }).catch((err) => {
      throw new HostError(node.host, 'stop the standalone redis', (err as Error).message);
    });
  }
}

/**
 * Restart a running node with its new config: over SSH through its service, locally itself.
 * If it does not come back, the previous file is put back and the node started again, so that a
 * bad directive costs one failed step, not a node.
 */
export interface RunningIdentity {
  /** CLUSTER MYID: the node must come back as itself. */
  id: string;
  /** INFO server run_id: a new process, not the old one still answering. */
  runId: string;
  /** When the node was saved before its restart: it must come back with at least these keys. */
  minKeys?: number;
  /** How long loading its data back may take (from its size). */
  loadTimeoutMs?: number;
}

/** Who is answering on a node's port now. */
export async function runningIdentity(address: string, timeouts: Timeouts = DEFAULT_TIMEOUTS): Promise<RunningIdentity> {
  const client = await connectNode(address);
  try {
    const [id, info, memory] = await Promise.all([client.call('CLUSTER', 'MYID') as Promise<string>, client.info('server'), client.info('memory')]);
    // Loading it back after the restart takes time in proportion to its data.
    const bytes = Number(parseInfo(memory)['used_memory_dataset'] ?? 0);
    return { id, runId: parseInfo(info)['run_id'] ?? '', loadTimeoutMs: dataTimeoutMs(timeouts, bytes) };
  } finally {
    client.disconnect();
  }
}

/** After a restart: the same node, a new process, its data loaded. */
async function verifyRestarted(address: string, before: RunningIdentity): Promise<void> {
  await waitFor(
    `${address} to finish loading its data`,
    async () => {
      const client = await connectNode(address);
      try {
        return parseInfo(await client.info('persistence'))['loading'] === '0' ? true : 'still loading';
      } finally {
        client.disconnect();
      }
    },
    { timeoutMs: before.loadTimeoutMs ?? DEFAULT_TIMEOUTS.waitMs, intervalMs: 100 },
  );
  const after = await runningIdentity(address);
  if (after.runId === before.runId) throw new Error('the old server process is still the one answering: it was not stopped');
  if (after.id !== before.id) throw new Error(`it came back as a different node (id ${after.id.slice(0, 8)}, was ${before.id.slice(0, 8)}): its cluster config file was not found`);
  if (before.minKeys !== undefined) {
    const client = await connectNode(address);
    const keys = Number(await client.dbsize().finally(() => client.disconnect()));
    if (keys < before.minKeys) throw new Error(`it came back with ${keys} key(s) of the ${before.minKeys} saved before the restart`);
  }
}

export async function restartNode(node: DesiredNode, driver: HostDriver, connection: ConnectionKind, edits: ConfEdit[], identity: RunningIdentity): Promise<void> {
  const { configFile } = node.redis;
  const before = await driver.readFile(node.host, configFile);
  const restart = async (): Promise<void> => {
    if (connection === 'ssh') await provisionSshNode(node, driver, edits);
    else {
      const conf = await editConfigFile(node, driver, edits);
      await stopNode(node.address, { discard: false });
      await launchLocalNode(node, driver, conf.text);
    }
    await verifyRestarted(node.address, identity);
  };
  try {
    await restart();
  } catch (err) {
    if (before === null) throw err;
    try {
      await driver.writeFileAtomic(node.host, configFile, before);
      if (connection === 'ssh') await serviceRestart(node, driver);
      else {
        await stopNode(node.address, { discard: false });
        await launchLocalNode(node, driver, before);
      }
      await waitUntilClusterNode(node.address, START_TIMEOUT_MS);
    } catch (rollbackErr) {
      throw new HostError(node.host, `restart ${node.address}`, `${(err as Error).message}; putting the previous ${configFile} back failed too: ${(rollbackErr as Error).message}`);
    }
    throw new HostError(node.host, `restart ${node.address}`, `${(err as Error).message}; the previous ${configFile} was put back and the node runs with it again`);
  }
}

/** Apply the plan's edits to the config file as it is now; keep a backup of the previous one. */
async function editConfigFile(node: DesiredNode, driver: HostDriver, edits: ConfEdit[]): Promise<ConfEditResult> {
  const { configFile } = node.redis;
  const current = await driver.readFile(node.host, configFile);
  if (current === null) throw new HostError(node.host, `read ${configFile}`, 'no such file');
  const conf = editRedisConf(current, edits);
  const secret = credentials() !== undefined;
  if (conf.changed.length > 0) await driver.writeFileAtomic(node.host, configFile, conf.text, { backup: true, ...(secret ? { mode: 0o600 } : {}) });
  return conf;
}

/**
 * While rotating, a node started from its file accepts only the file's requirepass (the new
 * password); clients still on the previous one must not be refused until it leaves the spec.
 */
async function acceptPreviousPassword(address: string): Promise<void> {
  const previous = credentials()?.previous;
  if (previous === undefined) return;
  const client = await connectNode(address);
  try {
    await client.call('ACL', 'SETUSER', 'default', `>${previous}`);
  } finally {
    client.disconnect();
  }
}

/**
 * The passwords a node accepts, live: exactly the spec's, plus the previous one while rotating.
 * ACL SETUSER rather than CONFIG SET requirepass, which can set only one: a rotation keeps both
 * until the previous one leaves the spec, so that no client is refused in between.
 */
async function setPasswordsLive(client: Redis, address: string): Promise<void> {
  const c = credentials();
  if (!c) throw new HostError(address, 'set its password', 'the plan sets a password, but this run has none (redis.passwordEnv or redis.passwordFile)');
  const rules = ['on', 'resetpass', `>${c.password}`, ...(c.previous !== undefined ? [`>${c.previous}`] : [])];
  await client.call('ACL', 'SETUSER', 'default', ...rules).catch((err: Error) => {
    throw new HostError(address, 'ACL SETUSER default (its passwords)', `${err.message}; its passwords were not changed`);
  });
}

/** CONFIG SET each changed directive (Redis validates it), then write the file to match. */
export async function setConfigLive(node: DesiredNode, driver: HostDriver, edits: ConfEdit[]): Promise<void> {
  const passwords = edits.some((e) => e.directive.toLowerCase() === 'requirepass');
  const live = edits.filter((e) => e.directive.toLowerCase() !== 'requirepass');
  // The file's spelling (`save ""`) is not the command's: CONFIG SET takes the parsed value.
  const args = live.flatMap((e) => [e.directive, (splitArgs(e.value) ?? [e.value]).join(' ')]);
  const client = await connectNode(node.address);
  try {
    // masterauth (with the rest) before the passwords: a replica must already give the new one
    // when its master stops taking the old.
    if (args.length > 0) await configSet(client, node, live, args);
    if (passwords) await setPasswordsLive(client, node.address);
  } finally {
    client.disconnect();
  }
  // connection: none has no file to keep in step: the change is the running node's only.
  if (driver.kind !== 'none') await editConfigFile(node, driver, edits);
}

/** One command: Redis 7 applies all of them or none, so a refused value changes nothing. */
async function configSet(client: Redis, node: DesiredNode, edits: ConfEdit[], args: string[]): Promise<void> {
  await client.call('CONFIG', 'SET', ...args).catch(async (err: Error) => {
    // Before Redis 7, CONFIG SET takes one directive at a time.
    if (edits.length > 1 && /wrong number of arguments/i.test(err.message)) {
      for (let i = 0; i < args.length; i += 2) {
        await client.call('CONFIG', 'SET', args[i] as string, args[i + 1] as string).catch((e: Error) => {
          throw new HostError(node.address, `CONFIG SET ${args[i]}`, e.message);
        });
      }
      return;
    }
    throw new HostError(node.address, `CONFIG SET ${edits.map((e) => e.directive).join(' ')}`, `${err.message}; nothing was changed`);
  });
}

async function serviceRestart(node: DesiredNode, driver: HostDriver) {
  const cmd = serviceCommands(node.redis.service ?? '');
  const stop = await driver.run(node.host, cmd.stop, { timeoutMs: 60_000 });
  const start = await driver.run(node.host, cmd.start, { timeoutMs: 60_000 });
  return { cmd, stop, start };
}

async function answersAt(address: string): Promise<boolean> {
  try {
    (await connectNode(address, { connectTimeoutMs: 500 })).disconnect();
    return true;
  } catch (err) {
    // Refusing a password is answering.
    return err instanceof AuthError;
  }
}
