import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, isAbsolute, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isScalar } from 'yaml';
import { formatPath, type Problem, type SourceLocation } from '../errors.js';
import { SEVERITIES } from '../pagerduty/types.js';
import { type PathSegment, YamlSource } from '../shared/yaml-source.js';
import { suggest, zodProblems } from '../shared/zod-problems.js';
import { salvage } from '../shared/zod-salvage.js';
import { parsePath, type ValuePath } from './path.js';
import { compilePattern } from './pattern.js';
import type { CompiledDetails, CompiledRule, RuleTest } from './rule.js';
import { type RawRule, ruleFileSchema, ruleSchema } from './schema.js';
import { type CompiledTemplate, compileTemplate, type TemplateError } from './templates.js';

/** The built-in rule files shipped with pd-relay (`rules/` at the package root). */
export const BUILTIN_RULES_DIR: string = fileURLToPath(new URL('../../rules/', import.meta.url));

/** The route every rule uses when it names none. The config loader requires it to exist. */
export const DEFAULT_ROUTE = 'default';

/** One rule file's text and where it came from. */
export interface RuleSource {
  /** Absolute path (test `input_file`s resolve against its directory). */
  path: string;
  /** The path as messages show it. */
  display: string;
  text: string;
  builtin: boolean;
}

export interface LoadRulesOptions {
  /** Built-in rules directory; null loads no built-ins (tests). Default: BUILTIN_RULES_DIR. */
  builtinDir?: string | null;
  /** User rule files and directories (`rules.paths`), in order. */
  paths?: readonly string[];
  /** Configured route names (`routes.*`); default just "default". */
  routes?: Iterable<string>;
  /** Directory that display paths are relative to (default process.cwd()). */
  cwd?: string;
  /** Also report test `input_file`s that do not exist (lint, test; not serve). */
  checkTestFiles?: boolean;
}

/** A loaded, compiled rule set: what an engine is built from. */
export interface RuleSet {
  /** In evaluation order: non-fallback rules (built-ins, then user files), then fallback rules. */
  rules: CompiledRule[];
  /** Display paths of the files read, in load order. */
  files: string[];
  routes: ReadonlySet<string>;
}

export type RuleSetResult = { ok: true; ruleSet: RuleSet } | { ok: false; problems: Problem[] };

/**
 * Reads and compiles the built-in rules and the user's rule files. Every problem in every file is
 * collected (YAML syntax, unknown keys, bad pattern operators, Liquid syntax, unknown filters,
 * undefined routes), each located at `file:line:col`.
 */
export function loadRuleSet(opts: LoadRulesOptions = {}): RuleSetResult {
  const { sources, problems } = readRuleSources(opts);
  const built = buildRuleSet(sources, opts);
  if (!built.ok) problems.push(...built.problems);
  if (problems.length) return { ok: false, problems };
  return built;
}

/**
 * Lists and reads rule files: each directory's `*.yaml`/`*.yml` files in lexical (code point)
 * order, skipping hidden entries (Kubernetes' `..data` and friends); a path that is a file is read
 * whatever its name. Built-ins come first, then `paths` in the order given.
 */
export function readRuleSources(opts: LoadRulesOptions = {}): { sources: RuleSource[]; problems: Problem[] } {
  const cwd = opts.cwd ?? process.cwd();
  const sources: RuleSource[] = [];
  const problems: Problem[] = [];
  const display = (p: string) => {
    const rel = relative(cwd, p);
    return rel && !rel.startsWith('..') && !isAbsolute(rel) ? rel : p;
  };
  const fileProblem = (p: string, message: string) =>
    problems.push({ location: { file: display(p), line: 1, col: 1 }, path: '', message });
  const read = (abs: string, builtin: boolean) => {
    try {
      sources.push({ path: abs, display: display(abs), text: readFileSync(abs, 'utf8'), builtin });
    } catch (err) {
      fileProblem(abs, `Cannot read rule file: ${errnoText(err)}`);
    }
  };
  const readPath = (p: string, builtin: boolean) => {
    const abs = resolve(cwd, p);
    let isDir: boolean;
    try {
      isDir = statSync(abs).isDirectory();
    } catch (err) {
      fileProblem(abs, `Cannot read rules path: ${errnoText(err)}`);
      return;
    }
    if (!isDir) return read(abs, builtin);
    let names: string[];
    try {
      names = readdirSync(abs);
    } catch (err) {
      fileProblem(abs, `Cannot list rules directory: ${errnoText(err)}`);
      return;
    }
    const files = names
      .filter((n) => !n.startsWith('.') && /\.ya?ml$/i.test(n))
      .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    for (const name of files) {
      const file = resolve(abs, name);
      try {
        if (!statSync(file).isFile()) continue;
      } catch {
        continue; // a dangling symlink mid-swap: the next reload sees the new set
      }
      read(file, builtin);
    }
  };
  const builtinDir = opts.builtinDir === undefined ? BUILTIN_RULES_DIR : opts.builtinDir;
  if (builtinDir !== null) readPath(builtinDir, true);
  for (const p of opts.paths ?? []) readPath(p, false);
  return { sources, problems };
}

/** Compiles rule sources into a rule set (replacements by name, fallback ordering, references). */
export function buildRuleSet(
  sources: readonly RuleSource[],
  opts: { routes?: Iterable<string>; checkTestFiles?: boolean } = {},
): RuleSetResult {
  const routes = new Set(opts.routes ?? [DEFAULT_ROUTE]);
  const problems: Problem[] = [];
  // Each slot remembers whether it is a built-in's place: a user rule replacing a built-in by name
  // takes that place (and that precedence), a new user rule goes ahead of every built-in. A rule
  // with problems holds its slot with no compiled rule: its name still counts (a duplicate of it is
  // reported, a test naming it finds it), and with any problem no rule set is returned anyway.
  const ordered: Array<{ rule: CompiledRule | null; builtinSlot: boolean }> = [];
  const byName = new Map<string, { index: number; builtin: boolean; location: SourceLocation }>();
  const pendingRuleRefs: Array<{ name: string; location: SourceLocation; path: string }> = [];

  for (const source of sources) {
    const compiled = compileRuleFile(source, { routes, checkTestFiles: opts.checkTestFiles ?? false });
    problems.push(...compiled.problems);
    pendingRuleRefs.push(...compiled.ruleRefs);
    for (const declared of compiled.rules) {
      const { name, location, compiled: rule } = declared;
      const builtin = source.builtin;
      const seen = byName.get(name);
      if (!seen) {
        byName.set(name, { index: ordered.length, builtin, location });
        ordered.push({ rule, builtinSlot: builtin });
      } else if (seen.builtin && !builtin) {
        // A user rule named like a built-in replaces it, in the built-in's place.
        ordered[seen.index] = { rule, builtinSlot: true };
        byName.set(name, { index: seen.index, builtin: false, location });
      } else {
        const at = `${seen.location.file}:${seen.location.line}:${seen.location.col}`;
        problems.push({
          location,
          path: 'name',
          message: `Duplicate rule name "${name}" (first defined at ${at}); names must be unique${
            seen.builtin ? '' : ' (a user rule may reuse only a built-in rule name, to replace it)'
          }`,
        });
      }
    }
  }

  const names = [...byName.keys()];
  for (const ref of pendingRuleRefs) {
    if (byName.has(ref.name)) continue;
    const hint = suggest(ref.name, names);
    problems.push({
      location: ref.location,
      path: ref.path,
      message: `Unknown rule "${ref.name}"${hint ? ` (did you mean "${hint}"?)` : ''}`,
    });
  }
  if (problems.length) return { ok: false, problems: sortProblems(problems, sources) };
  // Evaluation order: user rules, then built-in rules, then fallback rules (user fallbacks before
  // the built-in catch-all), each group in load order. User rules go first so that they can route, re-grade or drop what a
  // built-in would otherwise decide (DESIGN.md had built-ins first, which left users no way to
  // handle an AWS message a built-in matches short of replacing the whole built-in).
  const active = ordered.flatMap((s) =>
    s.rule?.enabled ? [{ rule: s.rule, builtinSlot: s.builtinSlot }] : [],
  );
  const rules = [
    ...active.filter((s) => !s.builtinSlot && !s.rule.fallback),
    ...active.filter((s) => s.builtinSlot && !s.rule.fallback),
    ...active.filter((s) => !s.builtinSlot && s.rule.fallback),
    ...active.filter((s) => s.builtinSlot && s.rule.fallback),
  ].map((s) => s.rule);
  return { ok: true, ruleSet: { rules, files: sources.map((s) => s.display), routes } };
}

/**
 * Problems in the order an author fixes them: file by file in load order (problems of a path
 * that could not be read, which belong to no loaded file, first), each file's by line and column.
 * Problems at one position keep the order they were found in (the sort is stable).
 */
function sortProblems(problems: Problem[], sources: readonly RuleSource[]): Problem[] {
  const rank = new Map(sources.map((s, i) => [s.display, i]));
  const fileRank = (p: Problem) => rank.get(p.location.file) ?? -1;
  return problems.sort(
    (a, b) =>
      fileRank(a) - fileRank(b) || a.location.line - b.location.line || a.location.col - b.location.col,
  );
}

interface FileContext {
  routes: ReadonlySet<string>;
  checkTestFiles: boolean;
}

/** A rule as a file declares it: its name, and the compiled rule when it has no problem. */
export interface DeclaredRule {
  name: string;
  /** Where its `name` is written. */
  location: SourceLocation;
  /** null when the rule has problems (they are in the file's problems). */
  compiled: CompiledRule | null;
}

/**
 * Compiles one rule file. Every rule is checked as far as it can be: a rule that fails the schema
 * (an unknown key, a value of the wrong type, a missing name) still has its well-formed parts
 * compiled — its pattern, templates, paths and tests — so that one run reports all of its
 * problems. Rules with problems are declared (by name, when they have one) but not compiled.
 */
export function compileRuleFile(
  src: RuleSource,
  ctx: FileContext,
): {
  rules: DeclaredRule[];
  problems: Problem[];
  ruleRefs: Array<{ name: string; location: SourceLocation; path: string }>;
} {
  const { source, problems } = YamlSource.parse(src.text, src.display);
  const rules: DeclaredRule[] = [];
  const ruleRefs: Array<{ name: string; location: SourceLocation; path: string }> = [];
  if (problems.length) return { rules, problems, ruleRefs };
  const doc = source.toJS();
  if (doc === null || doc === undefined) return { rules, problems, ruleRefs }; // an empty file
  if (!Array.isArray(doc)) {
    problems.push({
      location: source.locate([]),
      path: '',
      message: `Expected a list of rules at the top level (each item "- name: …"), got ${
        typeof doc === 'object' ? 'a mapping' : typeof doc
      }`,
    });
    return { rules, problems, ruleRefs };
  }

  doc.forEach((item, index) => {
    const before = problems.length;
    const parsed = ruleSchema.safeParse(item, { reportInput: true });
    let raw: RawRule | null = parsed.success ? parsed.data : null;
    if (!parsed.success) {
      const issues = parsed.error.issues.map((i) => ({ ...i, path: [index, ...i.path] }));
      problems.push(...zodProblems(issues as typeof parsed.error.issues, source, ruleFileSchema));
      raw = salvageRule(item);
    }
    // Compiled even when the schema failed, for the problems of its valid parts.
    const rule = raw ? compileRule(raw, index, src, source, ctx, problems, ruleRefs) : null;
    const name = (item as { name?: unknown } | null)?.name;
    if (typeof name !== 'string') return;
    rules.push({
      name,
      location: source.locate([index, 'name']),
      compiled: problems.length === before ? rule : null,
    });
  });
  // In file order, as an editor shows them (checks run by kind, not by position).
  problems.sort((a, b) => a.location.line - b.location.line || a.location.col - b.location.col);
  return { rules, problems, ruleRefs };
}

/**
 * What a rule that failed the schema still has to check: its valid parts. It may lack required
 * fields (a name, a test's expect, a link's href) and have holes in its lists, which compileRule
 * tolerates; it is compiled for its problems only.
 */
function salvageRule(item: unknown): RawRule | null {
  const kept = salvage(ruleSchema, item);
  return kept.ok ? kept.value : null;
}

function compileRule(
  raw: RawRule,
  index: number,
  src: RuleSource,
  source: YamlSource,
  ctx: FileContext,
  problems: Problem[],
  ruleRefs: Array<{ name: string; location: SourceLocation; path: string }>,
): CompiledRule {
  const at = (path: PathSegment[], key = false) => source.locate([index, ...path], { key });
  const problem = (path: PathSegment[], message: string, key = false) =>
    problems.push({ location: at(path, key), path: formatPath([index, ...path]), message });

  const pattern = compilePattern(raw.match);
  for (const p of pattern.problems) problem(['match', ...p.path], p.message, p.key ?? false);

  const template = (path: PathSegment[], value: string | undefined): CompiledTemplate | null => {
    if (value === undefined) return null;
    const result = compileTemplate(value);
    if ('error' in result) {
      problems.push({
        location: templateLocation(source, src.text, [index, ...path], result.error),
        path: formatPath([index, ...path]),
        message: result.error.message,
      });
      return null;
    }
    return result.template;
  };
  const path = (where: PathSegment[], text: string): ValuePath | null => {
    const parsed = parsePath(text);
    if (typeof parsed === 'string') {
      problem(where, parsed);
      return null;
    }
    return parsed;
  };

  const route = template(['route'], raw.route);
  if (route?.kind === 'static') {
    const name = route.render({});
    if (!ctx.routes.has(name)) problem(['route'], unknownRoute(name, ctx.routes));
  }
  const action = template(['action'], raw.action);
  if (action?.kind === 'static') {
    const a = action.render({});
    if (!RULE_ACTIONS.includes(a.toLowerCase()))
      problem(['action'], `Expected one of ${RULE_ACTIONS.join(', ')} (or a template), got "${a}"`);
  }
  // A fixed severity is checked now; a templated one falls back to "error" at runtime if invalid.
  const severity = template(['payload', 'severity'], raw.payload?.severity);
  if (severity?.kind === 'static') {
    const sev = severity.render({});
    if (!(SEVERITIES as readonly string[]).includes(sev.toLowerCase()))
      problem(
        ['payload', 'severity'],
        `Expected one of ${SEVERITIES.join(', ')} (or a template), got "${sev}"`,
      );
  }

  let details: CompiledDetails | null = null;
  const cd = raw.payload?.custom_details;
  if (typeof cd === 'string') {
    const p = path(['payload', 'custom_details'], cd);
    if (p) details = { kind: 'path', path: p };
  } else if (cd) {
    const entries: Array<[string, CompiledTemplate | { path: ValuePath }]> = [];
    for (const [key, value] of Object.entries(cd)) {
      const where: PathSegment[] = ['payload', 'custom_details', key];
      if (typeof value === 'object') {
        // A salvaged rule (see salvageRule) may lack the required path.
        const p = value.path === undefined ? null : path([...where, 'path'], value.path);
        if (p) entries.push([key, { path: p }]);
      } else {
        const t = template(where, value);
        if (t) entries.push([key, t]);
      }
    }
    details = { kind: 'map', entries };
  }

  const tests: RuleTest[] = [];
  (raw.tests ?? []).forEach((t, k) => {
    const where: PathSegment[] = ['tests', k];
    if ((t.input === undefined) === (t.input_file === undefined)) {
      problem(where, 'Expected exactly one of input (an inline message) or input_file');
      return;
    }
    if (t.input !== undefined && !Object.hasOwn(t.input, 'message')) {
      problem([...where, 'input'], 'Required: expected input.message (the SNS Message, as text or YAML)');
      return;
    }
    let input: RuleTest['input'];
    if (t.input_file !== undefined) {
      const file = resolve(dirname(src.path), t.input_file);
      if (ctx.checkTestFiles) {
        try {
          statSync(file);
        } catch (err) {
          problem([...where, 'input_file'], `Cannot read ${t.input_file}: ${errnoText(err)}`);
        }
      }
      input = { file };
    } else {
      input = { inline: t.input as NonNullable<typeof t.input> };
    }
    const fieldPaths = (fields: Record<string, unknown> | undefined, base: PathSegment[]) => {
      const out: Array<[string, ValuePath]> = [];
      for (const key of Object.keys(fields ?? {})) {
        const parsed = parsePath(key);
        if (typeof parsed === 'string') problem([...base, key], parsed, true);
        else out.push([key, parsed]);
      }
      return out;
    };
    const expect = t.expect ?? {}; // absent only in a salvaged rule (see salvageRule)
    if (expect.rule !== undefined && expect.rule !== null) {
      ruleRefs.push({
        name: expect.rule,
        location: at([...where, 'expect', 'rule']),
        path: formatPath([index, ...where, 'expect', 'rule']),
      });
    }
    if (expect.route !== undefined && !ctx.routes.has(expect.route)) {
      problem([...where, 'expect', 'route'], unknownRoute(expect.route, ctx.routes));
    }
    const eventFieldPaths = (expect.events ?? []).map((e, j) => {
      if (e.route !== undefined && !ctx.routes.has(e.route))
        problem([...where, 'expect', 'events', j, 'route'], unknownRoute(e.route, ctx.routes));
      return fieldPaths(e.fields, [...where, 'expect', 'events', j, 'fields']);
    });
    tests.push({
      rule: raw.name,
      name: t.name ?? `${raw.name} test ${k + 1}`,
      location: at(where),
      input,
      expect: { ...expect, fieldPaths: fieldPaths(expect.fields, [...where, 'expect', 'fields']) },
      eventFieldPaths,
    });
  });

  return {
    name: raw.name,
    ...(raw.description !== undefined ? { description: raw.description } : {}),
    location: at(['name']),
    builtin: src.builtin,
    enabled: raw.enabled ?? true,
    fallback: raw.fallback ?? false,
    continue: raw.continue ?? false,
    match: pattern.matcher,
    forEach: raw.for_each === undefined ? null : path(['for_each'], raw.for_each),
    action,
    route,
    dedupKey: template(['dedup_key'], raw.dedup_key),
    payload: {
      summary: template(['payload', 'summary'], raw.payload?.summary),
      source: template(['payload', 'source'], raw.payload?.source),
      severity,
      timestamp: template(['payload', 'timestamp'], raw.payload?.timestamp),
      component: template(['payload', 'component'], raw.payload?.component),
      group: template(['payload', 'group'], raw.payload?.group),
      class: template(['payload', 'class'], raw.payload?.class),
      details,
    },
    links: (raw.links ?? []).flatMap((l, i) => {
      const href = template(['links', i, 'href'], l.href);
      const text = template(['links', i, 'text'], l.text);
      return href ? [{ href, text }] : [];
    }),
    images: (raw.images ?? []).flatMap((img, i) => {
      const srcT = template(['images', i, 'src'], img.src);
      const href = template(['images', i, 'href'], img.href);
      const alt = template(['images', i, 'alt'], img.alt);
      return srcT ? [{ src: srcT, href, alt }] : [];
    }),
    client: template(['client'], raw.client),
    clientUrl: template(['client_url'], raw.client_url),
    tests,
  };
}

/** The actions a rule may decide. */
export const RULE_ACTIONS: readonly string[] = ['trigger', 'acknowledge', 'resolve', 'change', 'drop'];

function unknownRoute(name: string, routes: ReadonlySet<string>): string {
  const known = [...routes];
  const hint = suggest(name, known);
  return `Unknown route "${name}"${hint ? ` (did you mean "${hint}"?)` : ''}; configured routes: ${known.join(', ')}`;
}

/**
 * Where a template error sits in the file: the template's own position plus the error's line and
 * column inside it. Each template line is found in the scalar's source text in turn, which is exact
 * for plain, quoted and block scalars; a line that escapes or folding changed falls back to the
 * start of the value.
 */
function templateLocation(
  source: YamlSource,
  text: string,
  path: PathSegment[],
  err: TemplateError,
): SourceLocation {
  const node = source.node(path);
  if (!node || !isScalar(node) || !node.range) return source.locate(path);
  const [start, end] = node.range;
  const raw = text.slice(start, end);
  const lines = String(node.value).split('\n');
  let from = 0;
  let lineStart = 0;
  for (let i = 0; i < err.line; i++) {
    const line = lines[i];
    if (line === undefined) return source.locate(path);
    if (line === '') {
      // An empty template line has no text to find; the next line's search starts where we are.
      lineStart = from;
      continue;
    }
    const found = raw.indexOf(line, from);
    if (found < 0) return source.locate(path);
    lineStart = found;
    from = found + line.length;
  }
  return source.at(start + lineStart + Math.max(0, err.col - 1));
}

function errnoText(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  switch (e.code) {
    case 'ENOENT':
      return 'no such file or directory';
    case 'EACCES':
      return 'permission denied';
    default:
      return e.code ?? e.message;
  }
}
