import type { Document } from 'yaml';
import { isAlias, isMap, isPair, isScalar, isSeq, type Node, type Pair, parseDocument, visit } from 'yaml';
import type { Problem, SourceLocation } from '../errors.js';

export type PathSegment = string | number;

/**
 * How many times aliases may be expanded when the document becomes plain values (the yaml
 * library's own default): beyond it the library throws, to stop a "billion laughs" file from
 * taking the process's memory.
 */
export const MAX_ALIAS_COUNT = 100;

/**
 * A parsed YAML file that remembers where every node came from, so that a problem found later —
 * by schema validation, a template compiler, a pattern checker — is reported at `file:line:col`.
 * Shared by the config loader and the rule loader.
 */
export class YamlSource {
  private constructor(
    readonly file: string,
    readonly doc: Document.Parsed,
    /** Offset of the first character of each line. */
    private readonly lineStarts: readonly number[],
  ) {}

  /**
   * Parses `text`. YAML syntax errors (including duplicate keys) come back as problems; when there
   * are any, `source` is still returned but its contents should not be trusted.
   */
  static parse(text: string, file: string): { source: YamlSource; problems: Problem[] } {
    const doc = parseDocument(text, {
      prettyErrors: false,
      uniqueKeys: true,
      strict: true,
    });
    const source = new YamlSource(file, doc, lineStarts(text));
    const problems: Problem[] = doc.errors.map((e) => ({
      location: source.at(e.pos[0]),
      path: '',
      message: `YAML syntax: ${syntaxMessage(e.message)}`,
    }));
    if (problems.length === 0) {
      // The library refuses to expand aliases past the limit by throwing; checked here, where a
      // problem can be located, so that toJS() cannot throw for any file that parsed cleanly.
      try {
        source.toJS();
      } catch (err) {
        const message = firstLine(String((err as Error)?.message ?? err));
        problems.push(
          /alias/i.test(message)
            ? {
                location: source.at(firstAliasOffset(doc)),
                path: '',
                message: `YAML aliases: expected at most ${MAX_ALIAS_COUNT} alias expansions, got more; write the repeated values out`,
              }
            : { location: source.at(0), path: '', message: `YAML: ${message}` },
        );
      }
    }
    return { source, problems };
  }

  /** The location of a character offset in the file. */
  at(offset: number): SourceLocation {
    // Counted here rather than by the yaml library's LineCounter, which loses lines after some
    // syntax errors (a tab-indented line put the next line's errors on it, past its end).
    const starts = this.lineStarts;
    let lo = 0;
    let hi = starts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if ((starts[mid] as number) <= offset) lo = mid;
      else hi = mid - 1;
    }
    return { file: this.file, line: lo + 1, col: offset - (starts[lo] as number) + 1 };
  }

  /** The root node's plain JavaScript value. */
  toJS(): unknown {
    return this.doc.toJS({ maxAliasCount: MAX_ALIAS_COUNT });
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

/** Offsets where lines start: 0, and after each "\n" (which also ends a "\r\n" line). */
function lineStarts(text: string): number[] {
  const starts = [0];
  for (let i = text.indexOf('\n'); i !== -1; i = text.indexOf('\n', i + 1)) starts.push(i + 1);
  return starts;
}

/** Where the first alias (`*name`) of the document is written: where expansion starts. */
function firstAliasOffset(doc: Document.Parsed): number {
  let offset = 0;
  visit(doc, {
    Alias(_, node) {
      if (!isAlias(node)) return;
      offset = node.range?.[0] ?? 0;
      return visit.BREAK;
    },
  });
  return offset;
}

/**
 * The yaml library's message without the source text it quotes: the location already points at
 * the token, and the token may be a secret (a routing key written inline in a config file whose
 * indentation broke above it would be echoed to stderr and the logs).
 */
function syntaxMessage(message: string): string {
  return firstLine(message).replace(/^(Unexpected [\w-]+ token in YAML stream|Not a YAML token): .*$/s, '$1');
}

function firstLine(s: string): string {
  const i = s.indexOf('\n');
  return i === -1 ? s : s.slice(0, i);
}
