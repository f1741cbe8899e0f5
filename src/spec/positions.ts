import { isAlias, isMap, isPair, isScalar, isSeq, type Document, type LineCounter, type Node } from 'yaml';

/** A path into the parsed spec: map keys as strings, sequence indexes as numbers. */
export type SpecPath = (string | number)[];

export interface Position {
  line: number;
  col: number;
}

/**
 * A problem found before positions are known; `at` says whether it concerns a mapping key
 * (unknown keys, where the value is irrelevant) or the value at `path`.
 */
export interface Issue {
  path: SpecPath;
  at: 'key' | 'value';
  severity: 'error' | 'warning';
  message: string;
}

/** JSON pointer (ajv's instancePath) to a SpecPath; numeric segments are kept as strings and matched loosely. */
export function pointerToPath(pointer: string): SpecPath {
  if (pointer === '') return [];
  return pointer
    .slice(1)
    .split('/')
    .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
}

/** Human label for a path: `redis.nodeTimeout`, `nodes[2].ssh`. */
export function pathLabel(path: SpecPath): string {
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number' || /^\d+$/.test(seg)) out += `[${seg}]`;
    else out += out === '' ? seg : `.${seg}`;
  }
  return out;
}

/**
 * Finds where things are in the YAML source. Walks the document itself rather than using
 * doc.getIn, because getIn compares keys strictly (a YAML key `7001` is a number, while the
 * validated JS object, and so ajv's path, has the string "7001").
 */
export class SourceLocator {
  constructor(
    private readonly doc: Document,
    private readonly lineCounter: LineCounter,
  ) {}

  locate(path: SpecPath, at: 'key' | 'value' = 'value'): Position {
    const own = at === 'key' ? [this.keyOffset(path), this.valueOffset(path)] : [this.valueOffset(path), this.keyOffset(path)];
    for (const offset of own) if (offset !== undefined) return this.position(offset);
    // The path may run past what the YAML holds (a missing key): report its nearest ancestor,
    // by key, which says more than the start of its whole value would.
    for (let n = path.length - 1; n >= 0; n--) {
      const prefix = path.slice(0, n);
      const offset = this.keyOffset(prefix) ?? this.valueOffset(prefix);
      if (offset !== undefined) return this.position(offset);
    }
    return { line: 1, col: 1 };
  }

  position(offset: number): Position {
    const { line, col } = this.lineCounter.linePos(offset);
    return { line, col };
  }

  private valueOffset(path: SpecPath): number | undefined {
    const node = this.nodeAt(path);
    // An empty value (`key:`) sits wherever the next token is; its key is the better place.
    if (isScalar(node) && node.value === null && node.range && node.range[0] === node.range[1]) return undefined;
    return node?.range?.[0];
  }

  private keyOffset(path: SpecPath): number | undefined {
    if (path.length === 0) return undefined;
    const parent = this.nodeAt(path.slice(0, -1));
    const last = path[path.length - 1]!;
    if (isMap(parent)) {
      const pair = parent.items.find((p) => isPair(p) && keyMatches(p.key, last));
      const key = pair?.key;
      if (key && typeof key === 'object' && 'range' in key) return (key as Node).range?.[0];
      return undefined;
    }
    // Sequence items have no key; their own position is the best answer.
    return this.valueOffset(path);
  }

  private nodeAt(path: SpecPath): Node | undefined {
    let node = this.resolve(this.doc.contents as Node | null);
    for (const seg of path) {
      if (isMap(node)) {
        const pair = node.items.find((p) => isPair(p) && keyMatches(p.key, seg));
        node = this.resolve((pair?.value ?? undefined) as Node | undefined);
      } else if (isSeq(node)) {
        const index = typeof seg === 'number' ? seg : /^\d+$/.test(seg) ? Number(seg) : -1;
        node = this.resolve(node.items[index] as Node | undefined);
      } else {
        return undefined;
      }
      if (!node) return undefined;
    }
    return node ?? undefined;
  }

  private resolve(node: Node | null | undefined): Node | undefined {
    if (!node) return undefined;
    if (isAlias(node)) return (node.resolve(this.doc) as Node | undefined) ?? node;
    return node;
  }
}

function keyMatches(key: unknown, seg: string | number): boolean {
  if (isScalar(key)) return String(key.value) === String(seg);
  return key !== null && key !== undefined && String(key) === String(seg);
}
