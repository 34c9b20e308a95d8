import { describeValue } from '../errors.js';
import type { PathSegment } from '../shared/yaml-source.js';
import { suggest } from '../shared/zod-problems.js';
import { type Cidr, cidrContains, type IpBytes, parseCidr, parseIp, sameIp } from './ip.js';

/**
 * EventBridge event patterns (the `match:` of a rule), compiled once into closures.
 *
 * Semantics follow Amazon EventBridge ("Event patterns" and "Comparison operators" in the
 * EventBridge user guide, and aws/event-ruler, the library behind it):
 * - a pattern is a mapping; every field it names must match (AND); the values of a field are a
 *   list, any of which may match (OR); `$or: [{…}, {…}]` (two or more mappings) ORs sub-patterns;
 * - leaf values compare by JSON type: "5" never equals 5, `null` matches only null (not a missing
 *   field, not ""), numbers compare numerically (300 equals 3.0e2);
 * - a document array matches when any element matches (for nested mappings, all fields of the
 *   sub-pattern must match within one element, as event-ruler's "array consistency" requires);
 * - `exists` looks at leaves only: a field whose value is a mapping or an empty list does not
 *   "exist" (`exists: false` matches it);
 * - prefix, suffix, equals-ignore-case, wildcard and cidr apply to strings only, numeric to JSON
 *   numbers only; anything-but matches any present value except the listed ones (so it never
 *   matches a missing field);
 * - a string value that is an IP address matches the same address in any notation.
 * Unlike EventBridge, numeric operands are not limited to ±5.0e9: larger numbers compare as
 * doubles (a superset, so every valid EventBridge pattern means the same here).
 */

/** A compiled pattern: whether a document matches. */
export type DocMatcher = (doc: unknown) => boolean;

/** A problem in a pattern, located by its path inside the pattern. */
export interface PatternProblem {
  path: PathSegment[];
  message: string;
  /** True when the problem is the key itself (an unknown operator), not its value. */
  key?: boolean;
}

/** The operators a value mapping may use. */
export const OPERATORS = [
  'prefix',
  'suffix',
  'equals-ignore-case',
  'wildcard',
  'anything-but',
  'numeric',
  'exists',
  'cidr',
] as const;
type Operator = (typeof OPERATORS)[number];

const OPERATOR_SET: ReadonlySet<string> = new Set(OPERATORS);
const ANYTHING_BUT_OPERATORS = ['prefix', 'suffix', 'equals-ignore-case', 'wildcard'] as const;

/**
 * Compiles a pattern. An empty or absent pattern matches every document (a rule without `match`
 * applies to everything, as the catch-all does). All problems are collected, never only the first.
 */
export function compilePattern(pattern: unknown): { matcher: DocMatcher; problems: PatternProblem[] } {
  const problems: PatternProblem[] = [];
  if (pattern === undefined || pattern === null) return { matcher: () => true, problems };
  if (!isPlainObject(pattern)) {
    problems.push({ path: [], message: `Expected a mapping of fields, got ${describeValue(pattern)}` });
    return { matcher: () => false, problems };
  }
  if (Object.keys(pattern).length === 0) return { matcher: () => true, problems };
  const matcher = compileObject(pattern, [], false, problems);
  return { matcher: problems.length ? () => false : matcher, problems };
}

type Condition = (value: unknown) => boolean;

function compileObject(
  obj: Record<string, unknown>,
  path: PathSegment[],
  insideOr: boolean,
  problems: PatternProblem[],
): Condition {
  const conditions: Condition[] = [];
  const keys = Object.keys(obj);
  if (keys.length === 0) {
    problems.push({
      path,
      message: 'Expected at least one field: an empty mapping matches nothing in EventBridge',
    });
  }
  for (const key of keys) {
    const value = obj[key];
    const here = [...path, key];
    if (key === '$or') {
      const or = compileOr(value, here, problems);
      if (or) conditions.push(or);
      continue;
    }
    if (insideOr && OPERATOR_SET.has(key)) {
      problems.push({
        path: here,
        key: true,
        message: `"${key}" is an operator name and cannot be a field inside $or (EventBridge rejects it)`,
      });
      continue;
    }
    if (Array.isArray(value)) {
      const leaf = compileLeaf(value, here, problems);
      conditions.push((v) => leaf(field(v, key)));
    } else if (isPlainObject(value)) {
      // `source: { prefix: "aws." }` (the list forgotten) would otherwise read as a field named
      // "prefix"; a field of that name with a list value (`prefix: [x]`) stays a field, as in AWS.
      const [only, ...more] = Object.keys(value);
      if (only !== undefined && more.length === 0 && OPERATOR_SET.has(only) && !Array.isArray(value[only])) {
        problems.push({
          path: here,
          message: `Expected a list around the operator (write [{ ${only}: … }]), got a mapping`,
        });
        continue;
      }
      const sub = compileObject(value, here, insideOr, problems);
      conditions.push((v) => matchNested(sub, field(v, key)));
    } else {
      const hint = value === null || typeof value !== 'object' ? ` (write [${JSON.stringify(value)}])` : '';
      problems.push({
        path: here,
        message: `Expected a list of values or a mapping of fields, got ${describeValue(value)}${hint}`,
      });
    }
  }
  if (conditions.length === 1) return conditions[0] as Condition;
  return (v) => {
    for (let i = 0; i < conditions.length; i++) if (!(conditions[i] as Condition)(v)) return false;
    return true;
  };
}

function compileOr(value: unknown, path: PathSegment[], problems: PatternProblem[]): Condition | null {
  if (!Array.isArray(value) || value.length < 2) {
    problems.push({
      path,
      message: `Expected a list of at least two mappings after $or, got ${describeValue(value)}`,
    });
    return null;
  }
  const branches: Condition[] = [];
  value.forEach((branch, i) => {
    if (!isPlainObject(branch)) {
      problems.push({
        path: [...path, i],
        message: `Expected a mapping inside $or, got ${describeValue(branch)}`,
      });
      return;
    }
    branches.push(compileObject(branch, [...path, i], true, problems));
  });
  return (v) => {
    for (let i = 0; i < branches.length; i++) if ((branches[i] as Condition)(v)) return true;
    return false;
  };
}

/** A sub-pattern against a value that may be an array of objects (any element may match). */
function matchNested(sub: Condition, value: unknown): boolean {
  if (!Array.isArray(value)) return sub(value);
  if (value.length === 0) return sub(undefined);
  for (const el of value) {
    if (Array.isArray(el) ? matchNested(sub, el) : sub(el)) return true;
  }
  return false;
}

function field(value: unknown, key: string): unknown {
  return isPlainObject(value) && Object.hasOwn(value, key) ? value[key] : undefined;
}

// ---------------------------------------------------------------------------------------------
// Leaf values

type LeafTest = (leaf: unknown) => boolean;

interface LeafSpec {
  strings: Set<string>;
  numbers: Set<number>;
  ips: IpBytes[];
  matchNull: boolean;
  matchTrue: boolean;
  matchFalse: boolean;
  tests: LeafTest[];
  existsTrue: boolean;
  existsFalse: boolean;
}

function compileLeaf(values: unknown[], path: PathSegment[], problems: PatternProblem[]): Condition {
  const spec: LeafSpec = {
    strings: new Set(),
    numbers: new Set(),
    ips: [],
    matchNull: false,
    matchTrue: false,
    matchFalse: false,
    tests: [],
    existsTrue: false,
    existsFalse: false,
  };
  if (values.length === 0) {
    problems.push({
      path,
      message: 'Expected at least one value: an empty list matches nothing in EventBridge',
    });
  }
  values.forEach((v, i) => {
    const here = [...path, i];
    if (typeof v === 'string') {
      spec.strings.add(v);
      const ip = parseIp(v);
      if (ip) spec.ips.push(ip);
    } else if (typeof v === 'number') {
      if (Number.isFinite(v)) spec.numbers.add(v);
      else problems.push({ path: here, message: `Expected a finite number, got ${describeValue(v)}` });
    } else if (v === null) spec.matchNull = true;
    else if (v === true) spec.matchTrue = true;
    else if (v === false) spec.matchFalse = true;
    else if (isPlainObject(v)) compileOperator(v, here, spec, problems);
    else
      problems.push({
        path: here,
        message: `Expected a value or an operator mapping, got ${describeValue(v)}`,
      });
  });
  return leafCondition(spec);
}

function leafCondition(spec: LeafSpec): Condition {
  const { strings, numbers, ips, tests, existsTrue, existsFalse } = spec;
  const hasStrings = strings.size > 0;
  const hasNumbers = numbers.size > 0;
  const hasIps = ips.length > 0;
  const testLeaf = (leaf: unknown): boolean => {
    switch (typeof leaf) {
      case 'string':
        if (hasStrings && strings.has(leaf)) return true;
        if (hasIps && (leaf.includes('.') || leaf.includes(':'))) {
          const ip = parseIp(leaf);
          if (ip && ips.some((p) => sameIp(p, ip))) return true;
        }
        break;
      case 'number':
        if (hasNumbers && numbers.has(leaf)) return true;
        break;
      case 'boolean':
        if (leaf ? spec.matchTrue : spec.matchFalse) return true;
        break;
      default:
        if (leaf === null && spec.matchNull) return true;
    }
    for (let i = 0; i < tests.length; i++) if ((tests[i] as LeafTest)(leaf)) return true;
    return false;
  };
  return (value) => {
    if (value === undefined) return existsFalse;
    if (typeof value !== 'object' || value === null) return existsTrue || testLeaf(value);
    if (!Array.isArray(value)) return existsFalse; // a mapping is not a leaf
    const found = scanLeaves(value, testLeaf);
    if (found === LEAVES_NONE) return existsFalse;
    return existsTrue || found === LEAVES_MATCH;
  };
}

const LEAVES_NONE = 0;
const LEAVES_SOME = 1;
const LEAVES_MATCH = 2;

/** Walks the scalar leaves of a (possibly nested) array: none, some but no match, or a match. */
function scanLeaves(arr: unknown[], test: LeafTest): number {
  let result = LEAVES_NONE;
  for (const el of arr) {
    if (Array.isArray(el)) {
      const inner = scanLeaves(el, test);
      if (inner === LEAVES_MATCH) return LEAVES_MATCH;
      if (inner === LEAVES_SOME) result = LEAVES_SOME;
    } else if (typeof el !== 'object' || el === null) {
      if (test(el)) return LEAVES_MATCH;
      result = LEAVES_SOME;
    }
  }
  return result;
}

// ---------------------------------------------------------------------------------------------
// Operators

function compileOperator(
  op: Record<string, unknown>,
  path: PathSegment[],
  spec: LeafSpec,
  problems: PatternProblem[],
): void {
  const keys = Object.keys(op);
  if (keys.length !== 1) {
    problems.push({
      path,
      message: `Expected exactly one operator in a value mapping, got ${keys.length ? keys.join(', ') : 'none'}`,
    });
    return;
  }
  const name = keys[0] as string;
  const arg = op[name];
  const here = [...path, name];
  if (!OPERATOR_SET.has(name)) {
    const hint = suggest(name, OPERATORS);
    problems.push({
      path: here,
      key: true,
      message:
        `Unknown operator "${name}"` +
        (hint ? ` (did you mean "${hint}"?)` : ` (expected one of: ${OPERATORS.join(', ')})`),
    });
    return;
  }
  const problem = (message: string, at: PathSegment[] = here) => problems.push({ path: at, message });
  switch (name as Operator) {
    case 'prefix':
    case 'suffix': {
      const ignoreCase = caseInsensitiveArg(arg, here, name, problems);
      const text = ignoreCase ?? (typeof arg === 'string' ? arg : undefined);
      if (text === undefined) {
        if (ignoreCase === undefined && !isPlainObject(arg))
          problem(`Expected a string or { equals-ignore-case: string }, got ${describeValue(arg)}`);
        return;
      }
      spec.tests.push(affixTest(name === 'prefix', text, ignoreCase !== undefined));
      return;
    }
    case 'equals-ignore-case': {
      if (typeof arg !== 'string') return void problem(`Expected a string, got ${describeValue(arg)}`);
      const lower = arg.toLowerCase();
      spec.tests.push((leaf) => typeof leaf === 'string' && leaf.toLowerCase() === lower);
      return;
    }
    case 'wildcard': {
      if (typeof arg !== 'string') return void problem(`Expected a string, got ${describeValue(arg)}`);
      const glob = compileWildcard(arg);
      if (typeof glob === 'string') return void problem(glob);
      spec.tests.push((leaf) => typeof leaf === 'string' && glob(leaf));
      return;
    }
    case 'exists': {
      if (typeof arg !== 'boolean') return void problem(`Expected true or false, got ${describeValue(arg)}`);
      if (arg) spec.existsTrue = true;
      else spec.existsFalse = true;
      return;
    }
    case 'cidr': {
      const cidr = typeof arg === 'string' ? parseCidr(arg) : null;
      if (!cidr)
        return void problem(
          `Expected an IPv4 or IPv6 CIDR block such as "10.0.0.0/24", got ${describeValue(arg)}`,
        );
      spec.tests.push(cidrTest(cidr));
      return;
    }
    case 'numeric': {
      const test = compileNumeric(arg, here, problems);
      if (test) spec.tests.push(test);
      return;
    }
    case 'anything-but': {
      const test = compileAnythingBut(arg, here, problems);
      if (test) spec.tests.push(test);
      return;
    }
  }
}

/** For `prefix`/`suffix`: the string of `{ equals-ignore-case: string }`, else undefined. */
function caseInsensitiveArg(
  arg: unknown,
  path: PathSegment[],
  op: string,
  problems: PatternProblem[],
): string | undefined {
  if (!isPlainObject(arg)) return undefined;
  const keys = Object.keys(arg);
  if (keys.length !== 1 || keys[0] !== 'equals-ignore-case') {
    problems.push({
      path,
      message: `Expected ${op}: string or ${op}: { equals-ignore-case: string }, got a mapping with ${keys.join(', ') || 'no keys'}`,
    });
    return undefined;
  }
  const v = arg['equals-ignore-case'];
  if (typeof v !== 'string') {
    problems.push({
      path: [...path, 'equals-ignore-case'],
      message: `Expected a string, got ${describeValue(v)}`,
    });
    return undefined;
  }
  return v;
}

function affixTest(prefix: boolean, text: string, ignoreCase: boolean): LeafTest {
  if (ignoreCase) {
    const lower = text.toLowerCase();
    return prefix
      ? (leaf) => typeof leaf === 'string' && leaf.toLowerCase().startsWith(lower)
      : (leaf) => typeof leaf === 'string' && leaf.toLowerCase().endsWith(lower);
  }
  return prefix
    ? (leaf) => typeof leaf === 'string' && leaf.startsWith(text)
    : (leaf) => typeof leaf === 'string' && leaf.endsWith(text);
}

function cidrTest(cidr: Cidr): LeafTest {
  return (leaf) => {
    if (typeof leaf !== 'string') return false;
    const ip = parseIp(leaf);
    return ip !== null && cidrContains(cidr, ip);
  };
}

/**
 * `numeric: ["=", 5]`, `[">", 0]`, `[">=", 0, "<", 10]` (a lower bound, then an upper bound),
 * as event-ruler parses it; matches JSON numbers only.
 */
function compileNumeric(arg: unknown, path: PathSegment[], problems: PatternProblem[]): LeafTest | null {
  const bad = (message: string, at: PathSegment[] = path) => {
    problems.push({ path: at, message });
    return null;
  };
  if (!Array.isArray(arg)) return bad(`Expected a list such as [">", 0, "<=", 5], got ${describeValue(arg)}`);
  if (arg.length !== 2 && arg.length !== 4)
    return bad(
      `Expected [operator, number] or [">"|">=", number, "<"|"<=", number], got ${arg.length} items`,
    );
  const ops = ['=', '<', '<=', '>', '>='];
  const op1 = arg[0];
  const n1 = arg[1];
  if (typeof op1 !== 'string' || !ops.includes(op1))
    return bad(`Expected one of ${ops.map((o) => `"${o}"`).join(', ')}, got ${describeValue(op1)}`, [
      ...path,
      0,
    ]);
  if (typeof n1 !== 'number' || !Number.isFinite(n1))
    return bad(`Expected a number after "${op1}", got ${describeValue(n1)}`, [...path, 1]);
  if (arg.length === 2) {
    switch (op1) {
      case '=':
        return (leaf) => typeof leaf === 'number' && leaf === n1;
      case '<':
        return (leaf) => typeof leaf === 'number' && leaf < n1;
      case '<=':
        return (leaf) => typeof leaf === 'number' && leaf <= n1;
      case '>':
        return (leaf) => typeof leaf === 'number' && leaf > n1;
      default:
        return (leaf) => typeof leaf === 'number' && leaf >= n1;
    }
  }
  if (op1 !== '>' && op1 !== '>=')
    return bad(`Expected ">" or ">=" to open a range, got "${op1}"`, [...path, 0]);
  const op2 = arg[2];
  const n2 = arg[3];
  if (op2 !== '<' && op2 !== '<=')
    return bad(`Expected "<" or "<=" to close the range, got ${describeValue(op2)}`, [...path, 2]);
  if (typeof n2 !== 'number' || !Number.isFinite(n2))
    return bad(`Expected a number after "${op2}", got ${describeValue(n2)}`, [...path, 3]);
  if (n2 < n1 || (n2 === n1 && (op1 === '>' || op2 === '<')))
    return bad(`Expected a non-empty range, got ${op1} ${n1} and ${op2} ${n2}`);
  const lowOpen = op1 === '>';
  const highOpen = op2 === '<';
  return (leaf) =>
    typeof leaf === 'number' && (lowOpen ? leaf > n1 : leaf >= n1) && (highOpen ? leaf < n2 : leaf <= n2);
}

/**
 * `anything-but`: a string, a number, a list of strings or of numbers (not mixed), or one of
 * { prefix | suffix | equals-ignore-case | wildcard: string or list of strings }. Matches any
 * present leaf that is not excluded: a number is never excluded by a string list, and so on.
 */
function compileAnythingBut(arg: unknown, path: PathSegment[], problems: PatternProblem[]): LeafTest | null {
  const bad = (message: string, at: PathSegment[] = path) => {
    problems.push({ path: at, message });
    return null;
  };
  if (isPlainObject(arg)) {
    const keys = Object.keys(arg);
    const sub = keys[0];
    if (keys.length !== 1 || sub === undefined)
      return bad(
        `Expected one of ${ANYTHING_BUT_OPERATORS.join(', ')} inside anything-but, got ${keys.length} keys`,
      );
    if (!(ANYTHING_BUT_OPERATORS as readonly string[]).includes(sub)) {
      const hint = suggest(sub, ANYTHING_BUT_OPERATORS);
      problems.push({
        path: [...path, sub],
        key: true,
        message:
          `Unsupported operator "${sub}" inside anything-but` +
          (hint ? ` (did you mean "${hint}"?)` : ` (expected one of: ${ANYTHING_BUT_OPERATORS.join(', ')})`),
      });
      return null;
    }
    const raw = arg[sub];
    const list = Array.isArray(raw) ? raw : [raw];
    const at = [...path, sub];
    if (list.length === 0) return bad('Expected at least one string, got an empty list', at);
    const texts: string[] = [];
    for (const [i, t] of list.entries()) {
      const where = Array.isArray(raw) ? [...at, i] : at;
      if (typeof t !== 'string') return bad(`Expected a string, got ${describeValue(t)}`, where);
      if ((sub === 'prefix' || sub === 'suffix') && t === '')
        return bad(`Expected a non-empty ${sub} (an empty one would exclude every string)`, where);
      texts.push(t);
    }
    switch (sub) {
      case 'prefix':
        return (leaf) => !(typeof leaf === 'string' && texts.some((t) => leaf.startsWith(t)));
      case 'suffix':
        return (leaf) => !(typeof leaf === 'string' && texts.some((t) => leaf.endsWith(t)));
      case 'equals-ignore-case': {
        const lower = new Set(texts.map((t) => t.toLowerCase()));
        return (leaf) => !(typeof leaf === 'string' && lower.has(leaf.toLowerCase()));
      }
      default: {
        const globs: Array<(s: string) => boolean> = [];
        for (const [i, t] of texts.entries()) {
          const g = compileWildcard(t);
          if (typeof g === 'string') return bad(g, Array.isArray(raw) ? [...at, i] : at);
          globs.push(g);
        }
        return (leaf) => !(typeof leaf === 'string' && globs.some((g) => g(leaf)));
      }
    }
  }
  const list = Array.isArray(arg) ? arg : [arg];
  if (list.length === 0) return bad('Expected at least one value, got an empty list');
  const strings = new Set<string>();
  const numbers = new Set<number>();
  for (const [i, v] of list.entries()) {
    const where = Array.isArray(arg) ? [...path, i] : path;
    if (typeof v === 'string') strings.add(v);
    else if (typeof v === 'number' && Number.isFinite(v)) numbers.add(v);
    else
      return bad(
        `Expected strings or numbers (anything-but does not take ${v === null ? 'null' : typeof v === 'boolean' ? 'true/false' : 'mappings or lists'}), got ${describeValue(v)}`,
        where,
      );
  }
  if (strings.size && numbers.size)
    return bad('Expected only strings or only numbers: EventBridge rejects a mixed anything-but list');
  if (strings.size) return (leaf) => !(typeof leaf === 'string' && strings.has(leaf));
  return (leaf) => !(typeof leaf === 'number' && numbers.has(leaf));
}

/**
 * Compiles an EventBridge wildcard: `*` matches any run of characters, `\*` a literal star, `\\`
 * a literal backslash; consecutive stars and other escapes are invalid (event-ruler rejects them).
 * Returns the matcher, or a problem message. Matching is linear: literal parts are found in order
 * (leftmost), which is exact for patterns whose only metacharacter is `*`.
 */
export function compileWildcard(pattern: string): ((s: string) => boolean) | string {
  const parts: string[] = [];
  let cur = '';
  let prevStar = false;
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i] as string;
    if (c === '\\') {
      const next = pattern[i + 1];
      if (next !== '*' && next !== '\\')
        return `Invalid wildcard "${pattern}": a backslash may only escape "*" or "\\"`;
      cur += next;
      i++;
      prevStar = false;
    } else if (c === '*') {
      if (prevStar) return `Invalid wildcard "${pattern}": consecutive "*" are not allowed`;
      parts.push(cur);
      cur = '';
      prevStar = true;
    } else {
      cur += c;
      prevStar = false;
    }
  }
  parts.push(cur);
  if (parts.length === 1) {
    const literal = parts[0] as string;
    return (s) => s === literal;
  }
  const first = parts[0] as string;
  const last = parts[parts.length - 1] as string;
  const middle = parts.slice(1, -1);
  const minLength = parts.reduce((n, p) => n + p.length, 0);
  return (s) => {
    if (s.length < minLength || !s.startsWith(first) || !s.endsWith(last)) return false;
    let pos = first.length;
    const end = s.length - last.length;
    for (const m of middle) {
      const at = s.indexOf(m, pos);
      if (at === -1 || at + m.length > end) return false;
      pos = at + m.length;
    }
    return true;
  };
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
