import type { z } from 'zod';
import { describeValue, formatPath, type Problem } from '../errors.js';
import type { PathSegment, YamlSource } from './yaml-source.js';

/**
 * Turns zod issues into located problems with "Expected X, got Y" messages. `isSecretPath` marks
 * paths whose values must never be echoed (routing keys, passwords).
 */
export function zodProblems(
  issues: readonly z.core.$ZodIssue[],
  source: YamlSource,
  schema: z.ZodType,
  isSecretPath: (path: readonly PathSegment[]) => boolean = () => false,
): Problem[] {
  const out: Problem[] = [];
  const describe = (path: readonly PathSegment[], input: unknown): string =>
    !isSecretPath(path) || input === undefined
      ? describeValue(input)
      : typeof input === 'string'
        ? `a value of ${input.length} characters (not shown)`
        : `a ${Array.isArray(input) ? 'list' : typeof input === 'object' ? 'mapping' : typeof input} (not shown)`;

  const visit = (issue: z.core.$ZodIssue, prefix: readonly PathSegment[]): void => {
    const path = [...prefix, ...(issue.path as PathSegment[])];
    const input = (issue as { input?: unknown }).input;
    switch (issue.code) {
      case 'unrecognized_keys': {
        const known = knownKeys(schema, path);
        for (const key of issue.keys) {
          if (isSecretPath([...path, key])) {
            out.push({
              location: source.locate([...path, key], { key: true }),
              path: formatPath(path),
              message:
                `Unknown key of ${key.length} characters (not shown)` +
                (known.length ? ` (expected one of: ${known.join(', ')})` : ''),
            });
            continue;
          }
          const hint = suggest(key, known);
          out.push({
            location: source.locate([...path, key], { key: true }),
            path: formatPath([...path, key]),
            message:
              `Unknown key "${key}"` +
              (hint
                ? ` (did you mean "${hint}"?)`
                : known.length
                  ? ` (expected one of: ${known.join(', ')})`
                  : ''),
          });
        }
        return;
      }
      case 'invalid_union': {
        // A union such as "string or {alias, key}": report the branch that matches the input's shape.
        const isObj = input !== null && typeof input === 'object' && !Array.isArray(input);
        const branch = issue.errors.find((errs) =>
          errs.every((e) => e.code !== 'invalid_type' || e.path.length > 0 === isObj),
        );
        if (isObj && branch) {
          for (const e of branch) visit(e, path);
          return;
        }
        // Every branch wanted another type (a template is text, a number or true/false): name them.
        const types = issue.errors.map((errs) =>
          errs.length === 1 && errs[0]?.code === 'invalid_type' && errs[0].path.length === 0
            ? errs[0].expected === 'boolean'
              ? 'true/false'
              : article(errs[0].expected)
            : undefined,
        );
        const message = types.every((t) => t !== undefined)
          ? `Expected ${oneOf([...new Set(types)])}, got ${describe(path, input)}`
          : issue.message;
        out.push({ location: source.locate(path), path: formatPath(path), message });
        return;
      }
      case 'invalid_type': {
        const expected = article(issue.expected);
        const message =
          input === undefined
            ? `Required: expected ${expected}`
            : `Expected ${expected}, got ${describe(path, input)}`;
        out.push({ location: source.locate(path), path: formatPath(path), message });
        return;
      }
      case 'too_small':
      case 'too_big': {
        const bound = issue.code === 'too_small' ? issue.minimum : issue.maximum;
        const cmp =
          issue.code === 'too_small' ? (issue.inclusive ? '>=' : '>') : issue.inclusive ? '<=' : '<';
        const what =
          issue.origin === 'string'
            ? `a string of length ${cmp} ${bound}`
            : issue.origin === 'array'
              ? `a list of length ${cmp} ${bound}`
              : `a number ${cmp} ${bound}`;
        out.push({
          location: source.locate(path),
          path: formatPath(path),
          message: `Expected ${what}, got ${describe(path, input)}`,
        });
        return;
      }
      case 'invalid_value': {
        const values = issue.values.map((v) => JSON.stringify(v)).join(', ');
        out.push({
          location: source.locate(path),
          path: formatPath(path),
          message: `Expected one of ${values}, got ${describe(path, input)}`,
        });
        return;
      }
      case 'invalid_key': {
        const key = path[path.length - 1];
        out.push({
          location: source.locate(path, { key: true }),
          path: formatPath(path),
          message: `Invalid name ${JSON.stringify(key)}: ${issue.issues[0]?.message ?? issue.message}`,
        });
        return;
      }
      default:
        out.push({
          location: source.locate(path),
          path: formatPath(path),
          message: `${issue.message}${input === undefined ? '' : `, got ${describe(path, input)}`}`,
        });
    }
  };

  for (const issue of issues) visit(issue, []);
  return out;
}

/** "a string, a number or a mapping". */
function oneOf(words: readonly string[]): string {
  return words.length < 2 ? (words[0] ?? '') : `${words.slice(0, -1).join(', ')} or ${words.at(-1)}`;
}

function article(type: string): string {
  const names: Record<string, string> = {
    string: 'a string',
    number: 'a number',
    int: 'an integer',
    boolean: 'true or false',
    object: 'a mapping',
    array: 'a list',
    record: 'a mapping',
  };
  return names[type] ?? type;
}

/** The keys an object schema at `path` accepts (for "did you mean" hints). */
export function knownKeys(schema: z.ZodType, path: readonly PathSegment[]): string[] {
  let cur: unknown = schema;
  const unwrap = (s: unknown): unknown => {
    let x = s as { _zod?: { def?: Record<string, unknown> } };
    for (let i = 0; i < 10 && x?._zod?.def; i++) {
      const def = x._zod.def;
      if (def.innerType) x = def.innerType as typeof x;
      else break;
    }
    return x;
  };
  for (const seg of path) {
    cur = unwrap(cur);
    const def = (cur as { _zod: { def: Record<string, unknown> } })._zod.def;
    if (def.type === 'object') cur = (def.shape as Record<string, unknown>)[String(seg)];
    else if (def.type === 'record') cur = def.valueType;
    else if (def.type === 'array') cur = def.element;
    else if (def.type === 'union')
      cur = (def.options as unknown[]).find(
        (o) => (unwrap(o) as { _zod: { def: { type: string } } })._zod.def.type === 'object',
      );
    else return [];
    if (!cur) return [];
  }
  cur = unwrap(cur);
  const def = (cur as { _zod?: { def?: Record<string, unknown> } })?._zod?.def;
  return def?.type === 'object' ? Object.keys(def.shape as object) : [];
}

/** The closest known word within edit distance 2 (case-insensitive), if any. */
export function suggest(word: string, known: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDist = 3;
  for (const k of known) {
    const d = editDistance(word.toLowerCase(), k.toLowerCase());
    if (d < bestDist) {
      bestDist = d;
      best = k;
    }
  }
  return best;
}

function editDistance(a: string, b: string): number {
  const prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let diag = prev[0] as number;
    prev[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = prev[j] as number;
      prev[j] = Math.min(
        (prev[j] as number) + 1,
        (prev[j - 1] as number) + 1,
        diag + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
      diag = tmp;
    }
  }
  return prev[b.length] as number;
}
