/**
 * Pure editing of redis.conf text: no I/O.
 *
 * How the file is read (a subset of Redis' own config loader):
 * - A directive line is `<directive> <value...>`; the directive name is case-insensitive.
 *   Leading whitespace is allowed. Lines starting with `#` are comments, blank lines are blank.
 * - When a directive appears several times, Redis uses the last one; so readDirective returns the
 *   last value and editRedisConf replaces the LAST occurrence in place (the effective one) and
 *   leaves the earlier occurrences untouched. Two kinds of directive are handled differently:
 *   - `save` accumulates (every `save` line adds save points, `save ""` resets them), so its value is
 *     all save points of the file joined; when it is edited, the last line gets the new value and
 *     earlier `save` lines are commented out (`# save 900 1`), otherwise they would still apply.
 *   - keyed directives (`client-output-buffer-limit <class>`, `rename-command <cmd>`, `user <name>`,
 *     `loadmodule <path>`) are matched on directive AND first argument: editing
 *     `client-output-buffer-limit` with value `replica 256mb 64mb 60` only touches the `replica` line.
 * - `include` lines are never edited and never followed: directives set in included files are not
 *   seen by readDirective, and a directive set there may still override (or be overridden by) this
 *   file depending on where the include line sits. Editing the `include` directive itself throws.
 * - Everything not edited is kept byte-for-byte: comments, blank lines, order, line endings (LF or
 *   CRLF, per line) and the presence or absence of a final newline.
 * - A directive that is not set is inserted after the last commented-out example of it
 *   (`# cluster-enabled yes` in the stock template), or else appended at the end of the file, using
 *   the file's newline style (that of its first line; LF for an empty file).
 * - A value with whitespace, quotes or backslashes, or an empty value, is written double-quoted,
 *   except for multi-argument directives (`save 900 1`, `bind 127.0.0.1 ::1`, ...) whose value string
 *   holds several arguments separated by spaces. A value that already starts with a quote is
 *   written as given.
 * - "Already set" compares the parsed arguments (quotes removed); `yes`/`no` compare
 *   case-insensitively.
 */

import { createTwoFilesPatch } from 'diff';

export interface ConfEdit {
  directive: string;
  /** The value as it should appear, e.g. 'yes', '5000', '127.0.0.51', '900 1' for save. */
  value: string;
}

export interface ConfEditResult {
  text: string;
  /** One entry per edit that changed the text; `from` is the previous value (as readDirective gives it). */
  changed: { directive: string; from: string | null; to: string }[];
}

/** Directives whose value is several arguments, written without quoting. */
const MULTI_ARG = new Set([
  'save',
  'bind',
  'replicaof',
  'slaveof',
  'client-output-buffer-limit',
  'rename-command',
  'user',
  'loadmodule',
  'oom-score-adj-values',
  'latency-tracking-info-percentiles',
  'notify-keyspace-events',
]);

/** Directives that may appear once per first argument; occurrences are matched on both. */
const KEYED = new Set(['client-output-buffer-limit', 'rename-command', 'user', 'loadmodule']);

interface Line {
  /** Line text without its terminator. */
  content: string;
  /** '\n', '\r\n' or '' (last line without a final newline). */
  eol: string;
}

interface Parsed {
  /** Directive, lower-cased. */
  name: string;
  /** Everything before the value (indentation, directive as spelled, separator). */
  prefix: string;
  /** Raw value text, without trailing whitespace. */
  rawValue: string;
  /** Trailing whitespace after the value, kept when replacing. */
  trailing: string;
}

function splitLines(text: string): Line[] {
  if (text === '') return [];
  const lines: Line[] = [];
  for (const piece of text.split(/(?<=\n)/)) {
    if (piece.endsWith('\r\n')) lines.push({ content: piece.slice(0, -2), eol: '\r\n' });
    else if (piece.endsWith('\n')) lines.push({ content: piece.slice(0, -1), eol: '\n' });
    else lines.push({ content: piece, eol: '' });
  }
  return lines;
}

function joinLines(lines: Line[]): string {
  return lines.map((l) => l.content + l.eol).join('');
}

function newlineStyle(lines: Line[]): string {
  const first = lines.find((l) => l.eol !== '');
  return first ? first.eol : '\n';
}

function parseLine(content: string): Parsed | null {
  const m = /^(\s*)([^\s#][^\s]*)(\s*)(.*?)(\s*)$/.exec(content);
  if (!m) return null;
  const [, indent = '', name = '', sep = '', rawValue = '', trailing = ''] = m;
  return { name: name.toLowerCase(), prefix: indent + name + sep, rawValue, trailing };
}

/**
 * Split a value into arguments the way Redis' sdssplitargs does (double quotes with escapes,
 * single quotes with only \' escaped). Returns null for unbalanced quotes.
 */
export function splitArgs(input: string): string[] | null {
  const args: string[] = [];
  let i = 0;
  const n = input.length;
  for (;;) {
    while (i < n && /\s/.test(input[i]!)) i++;
    if (i >= n) return args;
    let cur = '';
    let inDq = false;
    let inSq = false;
    let done = false;
    while (!done) {
      const c = input[i];
      if (inDq) {
        if (c === undefined) return null;
        if (c === '\\' && input[i + 1] === 'x' && /^[0-9a-fA-F]{2}$/.test(input.slice(i + 2, i + 4))) {
          cur += String.fromCharCode(parseInt(input.slice(i + 2, i + 4), 16));
          i += 3;
        } else if (c === '\\' && i + 1 < n) {
          i++;
          const e = input[i]!;
          cur += e === 'n' ? '\n' : e === 'r' ? '\r' : e === 't' ? '\t' : e === 'b' ? '\b' : e === 'a' ? '\x07' : e;
        } else if (c === '"') {
          const next = input[i + 1];
          if (next !== undefined && !/\s/.test(next)) return null;
          done = true;
        } else cur += c;
      } else if (inSq) {
        if (c === undefined) return null;
        if (c === '\\' && input[i + 1] === "'") {
          i++;
          cur += "'";
        } else if (c === "'") {
          const next = input[i + 1];
          if (next !== undefined && !/\s/.test(next)) return null;
          done = true;
        } else cur += c;
      } else if (c === undefined || /\s/.test(c)) {
        done = true;
      } else if (c === '"' && cur === '') {
        inDq = true;
      } else if (c === "'" && cur === '') {
        inSq = true;
      } else cur += c;
      if (c !== undefined) i++;
    }
    args.push(cur);
  }
}

/** The value with quotes removed and arguments joined by one space (raw text if unparsable). */
function normalizeValue(raw: string): string {
  const args = splitArgs(raw);
  return args === null ? raw.trim() : args.join(' ');
}

function sameValue(a: string, b: string): boolean {
  if (a === b) return true;
  const yn = /^(yes|no)$/i;
  return yn.test(a) && yn.test(b) && a.toLowerCase() === b.toLowerCase();
}

function quote(value: string): string {
  return (
    '"' +
    value
      .replace(/\\/g, '\\\\')
      .replace(/"/g, '\\"')
      .replace(/\n/g, '\\n')
      .replace(/\r/g, '\\r')
      .replace(/\t/g, '\\t') +
    '"'
  );
}

/** How a value is written in the file. */
function formatValue(directive: string, value: string): string {
  if (value === '') return '""';
  if (value.startsWith('"') || value.startsWith("'")) return value;
  if (MULTI_ARG.has(directive)) return value;
  if (/[\s"'\\]/.test(value)) return quote(value);
  return value;
}

function firstArg(raw: string): string | null {
  const args = splitArgs(raw);
  return args?.[0]?.toLowerCase() ?? null;
}

/** Indexes of the lines setting `name` (and, for keyed directives, with first argument `key`). */
function occurrences(lines: Line[], name: string, key: string | null): number[] {
  const out: number[] = [];
  lines.forEach((l, i) => {
    const p = parseLine(l.content);
    if (!p || p.name !== name) return;
    if (key !== null && firstArg(p.rawValue) !== key) return;
    out.push(i);
  });
  return out;
}

/** The effective value of `save`: all save points after the last reset, or null when unset. */
function saveValue(lines: Line[], idx: number[]): string | null {
  if (idx.length === 0) return null;
  let points: string[] = [];
  for (const i of idx) {
    const v = normalizeValue(parseLine(lines[i]!.content)!.rawValue);
    if (v === '') points = [];
    else points.push(v);
  }
  return points.join(' ');
}

function effectiveValue(lines: Line[], name: string, key: string | null): string | null {
  const idx = occurrences(lines, name, key);
  if (name === 'save') return saveValue(lines, idx);
  const last = idx[idx.length - 1];
  if (last === undefined) return null;
  return normalizeValue(parseLine(lines[last]!.content)!.rawValue);
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** Index of the last commented-out example of a directive (`# cluster-enabled yes`), or -1. */
function lastCommentedExample(lines: Line[], name: string): number {
  const re = new RegExp(`^\\s*# ?${escapeRegExp(name)}(\\s|$)`, 'i');
  for (let i = lines.length - 1; i >= 0; i--) if (re.test(lines[i]!.content)) return i;
  return -1;
}

function insertAfter(lines: Line[], index: number, content: string, eolStyle: string): void {
  if (index < 0) {
    lines.unshift({ content, eol: eolStyle });
    return;
  }
  const prev = lines[index]!;
  if (prev.eol === '') {
    // The file had no final newline: the new line becomes the last line, still without one.
    prev.eol = eolStyle;
    lines.splice(index + 1, 0, { content, eol: '' });
  } else {
    lines.splice(index + 1, 0, { content, eol: prev.eol });
  }
}

/** The effective (last) value of a directive in this file, quotes removed; null when unset. */
export function readDirective(text: string, directive: string): string | null {
  const name = directive.trim().toLowerCase();
  return effectiveValue(splitLines(text), name, null);
}

export function editRedisConf(text: string, edits: ConfEdit[]): ConfEditResult {
  const lines = splitLines(text);
  const eolStyle = newlineStyle(lines);
  const changed: ConfEditResult['changed'] = [];

  for (const edit of edits) {
    const name = edit.directive.trim().toLowerCase();
    if (name === '' || /\s/.test(name) || name.startsWith('#')) {
      throw new Error(`editRedisConf: invalid directive name ${JSON.stringify(edit.directive)}`);
    }
    if (name === 'include') throw new Error('editRedisConf: include lines are not editable');
    const formatted = formatValue(name, edit.value);
    const key = KEYED.has(name) ? firstArg(formatted) : null;
    const wanted = normalizeValue(formatted);
    const from = effectiveValue(lines, name, key);
    if (from !== null && sameValue(from, wanted)) continue;

    const idx = occurrences(lines, name, key);
    const last = idx[idx.length - 1];
    if (last !== undefined) {
      const line = lines[last]!;
      const p = parseLine(line.content)!;
      const prefix = /\s$/.test(p.prefix) ? p.prefix : p.prefix + ' ';
      line.content = prefix + formatted + p.trailing;
      if (name === 'save') {
        for (const i of idx.slice(0, -1)) lines[i]!.content = '# ' + lines[i]!.content;
      }
    } else {
      const example = lastCommentedExample(lines, name);
      insertAfter(lines, example >= 0 ? example : lines.length - 1, `${edit.directive.trim()} ${formatted}`, eolStyle);
    }
    changed.push({ directive: edit.directive, from, to: edit.value });
  }

  return { text: changed.length === 0 ? text : joinLines(lines), changed };
}

/**
 * A unified diff of a config file (3 lines of context, headers `a/<path>` and `b/<path>`, with a
 * leading `/` of an absolute path dropped as git does); '' when the texts are equal.
 */
export function configDiff(path: string, before: string, after: string): string {
  if (before === after) return '';
  const p = path.replace(/^\/+/, '');
  return createTwoFilesPatch(`a/${p}`, `b/${p}`, before, after, undefined, undefined, { context: 3 });
}

/**
 * Directives rcluster applies by restarting redis-server rather than with CONFIG SET: those Redis 7
 * refuses to change at runtime, and those it can change but rcluster must not change live (`port`,
 * `bind`, `tls-port`... move the node's announced address and cluster bus; `dir` would move the data
 * directory under a running node).
 */
const RESTART = new Set([
  'port',
  'bind',
  'bind-source-addr',
  'tls-port',
  'tls-cluster',
  'cluster-enabled',
  'cluster-config-file',
  'cluster-port',
  'daemonize',
  'supervised',
  'pidfile',
  'logfile',
  'syslog-enabled',
  'syslog-ident',
  'syslog-facility',
  'dir',
  'include',
  'unixsocket',
  'unixsocketperm',
  'unixsocketgroup',
  'databases',
  'tcp-backlog',
  'io-threads',
  'io-threads-do-reads',
  'appendfilename',
  'appenddirname',
  'aclfile',
  'loadmodule',
  'rename-command',
  'always-show-logo',
  'set-proc-title',
  'proc-title-template',
  'enable-protected-configs',
  'enable-debug-command',
  'enable-module-command',
  'disable-thp',
  'sentinel',
]);

/** Directives that CONFIG SET changes safely on a running node. */
const LIVE = new Set([
  'cluster-node-timeout',
  'cluster-require-full-coverage',
  'cluster-replica-validity-factor',
  'cluster-slave-validity-factor',
  'cluster-migration-barrier',
  'cluster-allow-replica-migration',
  'cluster-replica-no-failover',
  'cluster-slave-no-failover',
  'cluster-allow-reads-when-down',
  'cluster-allow-pubsubshard-when-down',
  'cluster-announce-ip',
  'cluster-announce-port',
  'cluster-announce-bus-port',
  'cluster-announce-tls-port',
  'cluster-announce-hostname',
  'cluster-preferred-endpoint-type',
  'cluster-link-sendbuf-limit',
  'maxmemory',
  'maxmemory-policy',
  'maxmemory-samples',
  'maxmemory-eviction-tenacity',
  'maxclients',
  'timeout',
  'tcp-keepalive',
  'save',
  'appendonly',
  'appendfsync',
  'auto-aof-rewrite-percentage',
  'auto-aof-rewrite-min-size',
  'no-appendfsync-on-rewrite',
  'aof-use-rdb-preamble',
  'aof-timestamp-enabled',
  'dbfilename',
  'rdbcompression',
  'rdbchecksum',
  'stop-writes-on-bgsave-error',
  'requirepass',
  'masterauth',
  'masteruser',
  'protected-mode',
  'loglevel',
  'hz',
  'dynamic-hz',
  'slowlog-log-slower-than',
  'slowlog-max-len',
  'latency-monitor-threshold',
  'notify-keyspace-events',
  'lazyfree-lazy-eviction',
  'lazyfree-lazy-expire',
  'lazyfree-lazy-server-del',
  'lazyfree-lazy-user-del',
  'lazyfree-lazy-user-flush',
  'replica-lazy-flush',
  'replica-read-only',
  'replica-serve-stale-data',
  'replica-priority',
  'repl-backlog-size',
  'repl-backlog-ttl',
  'repl-timeout',
  'repl-diskless-sync',
  'repl-diskless-sync-delay',
  'repl-diskless-load',
  'repl-disable-tcp-nodelay',
  'min-replicas-to-write',
  'min-replicas-max-lag',
  'client-output-buffer-limit',
  'client-query-buffer-limit',
  'proto-max-bulk-len',
  'activerehashing',
  'activedefrag',
  'hash-max-listpack-entries',
  'hash-max-listpack-value',
  'list-max-listpack-size',
  'set-max-intset-entries',
  'zset-max-listpack-entries',
  'zset-max-listpack-value',
  'stream-node-max-bytes',
  'stream-node-max-entries',
  'busy-reply-threshold',
  'lua-time-limit',
  'oom-score-adj',
  'oom-score-adj-values',
  'jemalloc-bg-thread',
]);

/**
 * Whether rcluster must restart redis-server to apply a change of this directive. Directives it
 * does not know are treated as needing a restart: a restart always applies a config file, CONFIG
 * SET of an unknown or immutable directive does not.
 */
export function needsRestart(directive: string): boolean {
  const name = directive.trim().toLowerCase();
  if (RESTART.has(name)) return true;
  if (LIVE.has(name)) return false;
  return true;
}
