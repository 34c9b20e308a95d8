import type { Document } from 'yaml';
import { isMap, isPair, isScalar, isSeq, LineCounter, type Node, type Pair, parseDocument } from 'yaml';
import type { Problem, SourceLocation } from '../errors.js';

export type PathSegment = string | number;

/**
 * A parsed YAML file that remembers where every node came from, so that a problem found later —
 * by schema validation, a template compiler, a pattern checker — is reported at `file:line:col`.
 * Shared by the config loader and the rule loader.
 */
export class YamlSource {
  private constructor(
    readonly file: string,
    readonly doc: Document.Parsed,
    private readonly lines: LineCounter,
  ) {}

  /**
   * Parses `text`. YAML syntax errors (including duplicate keys) come back as problems; when there
   * are any, `source` is still returned but its contents should not be trusted.
   */
  static parse(text: string, file: string): { source: YamlSource; problems: Problem[] } {
    const lines = new LineCounter();
    const doc = parseDocument(text, {
      lineCounter: lines,
      prettyErrors: false,
      uniqueKeys: true,
      strict: true,
    });
    const source = new YamlSource(file, doc, lines);
    const problems: Problem[] = doc.errors.map((e) => ({
      location: source.at(e.pos[0]),
      path: '',
      message: `YAML syntax: ${firstLine(e.message)}`,
    }));
    return { source, problems };
  }

  /** The location of a character offset in the file. */
  at(offset: number): SourceLocation {
    const { line, col } = this.lines.linePos(offset);
    return { file: this.file, line, col };
  }

  /** The root node's plain JavaScript value. */
  toJS(): unknown {
    return this.doc.toJS({ maxAliasCount: 100 });
  }

  /** The node at `path`, or undefined. */
  node(path: readonly PathSegment[]): Node | undefined {
    let cur: unknown = this.doc.contents;
    for (const seg of path) {
      const next = child(cur, seg);
      if (!next) return undefined;
      cur = next.value;
    }
    return (cur ?? undefined) as Node | undefined;
  }

  /**
   * Where `path` is written. With `key: true`, the position of the mapping key rather than its
   * value (what an "unknown key" error points at). A path that does not exist in the file — a
   * required key left out — resolves to its nearest existing ancestor.
   */
  locate(path: readonly PathSegment[], opts: { key?: boolean } = {}): SourceLocation {
    let cur: unknown = this.doc.contents;
    let best: number = rangeStart(cur) ?? 0;
    for (let i = 0; i < path.length; i++) {
      const found = child(cur, path[i] as PathSegment);
      if (!found) break;
      const last = i === path.length - 1;
      const keyStart = found.pair ? rangeStart(found.pair.key) : undefined;
      if (last && opts.key && keyStart !== undefined) return this.at(keyStart);
      cur = found.value;
      best = rangeStart(cur) ?? keyStart ?? best;
    }
    return this.at(best);
  }
}

function child(node: unknown, seg: PathSegment): { value: unknown; pair?: Pair } | undefined {
  if (isMap(node)) {
    for (const pair of node.items) {
      const k = isScalar(pair.key) ? pair.key.value : pair.key;
      if (k === seg || (typeof seg === 'number' && k === String(seg))) return { value: pair.value, pair };
    }
    return undefined;
  }
  if (isSeq(node) && typeof seg === 'number') {
    const item = node.items[seg];
    return item === undefined ? undefined : { value: item };
  }
  if (isPair(node)) return child(node.value, seg);
  return undefined;
}

function rangeStart(node: unknown): number | undefined {
  if (node && typeof node === 'object' && 'range' in node) {
    const r = (node as { range?: [number, number, number] }).range;
    if (r) return r[0];
  }
  return undefined;
}

function firstLine(s: string): string {
  const i = s.indexOf('\n');
  return i === -1 ? s : s.slice(0, i);
}
