import { cpSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { type Config, loadConfig, parseConfig } from '../../src/config/load.js';
import { formatProblem, type Problem, UserError } from '../../src/errors.js';
import { BUILTIN_RULES_DIR, loadRuleSet } from '../../src/rules/loader.js';
import { ruleOptionsFromConfig } from '../../src/rules/reload.js';
import { runRuleTests } from '../../src/rules/rule-tests.js';
import { tempDir } from '../helpers/temp.js';
import { fuzzCount, fuzzSeed, Rng } from './rng.js';
import { type MutatedFile, mutateStructure, mutateText, randomYaml } from './yaml-mutators.js';

// Loader fuzz: mutated built-in rule files and example configs — byte flips, deletions, token
// insertions, invalid UTF-8, line shuffles, value and type swaps, random YAML — go through the
// real loaders. Oracle: no call throws anything but the documented UserError, and every problem is
// located inside the file that has it (line and column within the text), with a path and a
// one-line message. A fixed seed by default; PD_RELAY_FUZZ_SEED and PD_RELAY_FUZZ_FILES change it.

const SEED = fuzzSeed();
const RULE_CASES = fuzzCount('PD_RELAY_FUZZ_FILES', 1_200);
const CONFIG_CASES = Math.round(RULE_CASES * 1.25);
const ROOT = join(import.meta.dirname, '../..');
const ROUTES = ['default', 'payments', 'security', 'team-payments'];
const ENV = {
  PD_RELAY_FUZZ_SET: 'value',
  PD_RELAY_TEST_PORT: '8080',
  PD_RELAY_TEST_KEY: 'abcdefghijklmnopqrstuvwxyz012345',
};
/** Secrets of the seed configs: no problem about a secret may echo one. */
const SECRETS = [
  ENV.PD_RELAY_TEST_KEY,
  'cdefghijklmnopqrstuvwxyz01234567',
  ...['password', 'routing-key'].map((f) =>
    readFileSync(join(ROOT, 'test/fixtures/config/secrets', f), 'utf8').trim(),
  ),
];

const yamlFiles = (dir: string) =>
  readdirSync(dir)
    .filter((f) => f.endsWith('.yaml'))
    .sort()
    .map((f) => readFileSync(join(dir, f), 'utf8'));
const RULE_FILES = [...yamlFiles(BUILTIN_RULES_DIR), ...yamlFiles(join(ROOT, 'k8s/base/rules'))];
/**
 * Each rule of those files on its own (with its tests): a tenth of a file, so its mutations cost a
 * tenth of the YAML parsing and hit a larger share of it. Whole files are mutated too, less often.
 */
const RULE_SEEDS = RULE_FILES.flatMap((text) =>
  text.split(/^(?=- )/m).filter((part) => part.startsWith('- ')),
);
const CONFIG_SEEDS = [
  readFileSync(join(ROOT, 'k8s/base/config.yaml'), 'utf8'),
  readFileSync(join(ROOT, 'k8s/overlays/example/config.yaml'), 'utf8'),
  ...yamlFiles(join(ROOT, 'test/fixtures/config')),
];

const { dir, cleanup } = tempDir('pd-relay-fuzz-loaders-');
cpSync(join(ROOT, 'test/fixtures/config/secrets'), join(dir, 'secrets'), { recursive: true });
afterAll(cleanup);

console.log(
  `Loader fuzz: seed ${SEED} (PD_RELAY_FUZZ_SEED), ${RULE_CASES} rule files and ${CONFIG_CASES} config files (PD_RELAY_FUZZ_FILES).`,
);

/** One generated file from `seeds`: mostly mutations of a real file, some made from nothing. */
function generate(rng: Rng, seeds: readonly string[]): MutatedFile {
  const text = rng.pick(seeds);
  const kind = rng.weighted([
    [6, 'text'],
    [3, 'structure'],
    [1, 'random'],
  ] as const);
  const file =
    kind === 'text'
      ? mutateText(rng, text, seeds)
      : kind === 'structure'
        ? mutateStructure(rng, text)
        : randomYaml(rng);
  return file;
}

/** What is wrong with a list of problems for `file`, whose text (as the loader read it) is `text`. */
function problemDefects(problems: readonly Problem[], file: string, text: string): string[] {
  const lines = text.split('\n');
  const defects: string[] = [];
  for (const p of problems) {
    const shown = formatProblem(p);
    const { line, col } = p.location ?? {};
    if (p.location?.file !== file) defects.push(`not located in ${file}: ${shown}`);
    else if (!Number.isInteger(line) || !Number.isInteger(col) || line < 1 || col < 1)
      defects.push(`line/col not >= 1: ${shown}`);
    else if (line > lines.length) defects.push(`line ${line} past the end (${lines.length} lines): ${shown}`);
    else if (col > (lines[line - 1] as string).length + 1)
      defects.push(
        `col ${col} past the end of line ${line} (${(lines[line - 1] as string).length}): ${shown}`,
      );
    if (typeof p.path !== 'string') defects.push(`no path: ${shown}`);
    if (typeof p.message !== 'string' || p.message.trim() === '') defects.push(`no message: ${shown}`);
    if (/[\r\n]/.test(shown)) defects.push(`printed on several lines: ${JSON.stringify(shown)}`);
    if (SECRETS.some((s) => p.message.includes(s)))
      defects.push(`a secret in a message: ${JSON.stringify(shown)}`);
  }
  return defects;
}

/** Runs `fn`, turning a throw into a defect (the loaders must not throw anything else). */
function guarded<T>(what: string, fn: () => T, defects: string[]): T | undefined {
  try {
    return fn();
  } catch (err) {
    if (err instanceof UserError) throw err;
    defects.push(
      `${what} threw ${(err as Error)?.stack?.split('\n').slice(0, 4).join(' | ') ?? String(err)}`,
    );
    return undefined;
  }
}

interface Failure {
  n: number;
  how: string;
  defects: string[];
  excerpt: string;
}

function report(kind: string, failures: Failure[], cases: number): string {
  return failures
    .slice(0, 5)
    .map(
      (f) =>
        `${kind} case ${f.n}/${cases} (seed ${SEED}; ${f.how}):\n  ${f.defects.join('\n  ')}\n  file starts: ${JSON.stringify(f.excerpt)}`,
    )
    .join('\n');
}

describe(`loader fuzz (seed ${SEED})`, () => {
  // YAML keys that are collections ("[a, b]: 1") make the yaml library print a process warning;
  // the warning is expected here and would only flood the test output.
  vi.spyOn(process, 'emitWarning').mockImplementation(() => {});

  it(`${RULE_CASES} mutated rule files: never a throw, every problem located in the file`, {
    timeout: 120_000 + RULE_CASES * 20,
  }, () => {
    const rng = new Rng(SEED).fork('rules');
    const failures: Failure[] = [];
    const outcomes = { loaded: 0, problems: 0, testsRun: 0 };
    for (let n = 0; n < RULE_CASES; n++) {
      const file = generate(rng, rng.chance(0.15) ? RULE_FILES : RULE_SEEDS);
      writeFileSync(join(dir, 'case.yaml'), file.bytes);
      const text = readFileSync(join(dir, 'case.yaml'), 'utf8');
      const defects: string[] = [];
      // Mostly the file alone; sometimes beside the built-ins, whose problems would all be its own.
      const withBuiltins = rng.chance(0.01);
      const result = guarded(
        'loadRuleSet',
        () =>
          loadRuleSet({
            builtinDir: withBuiltins ? BUILTIN_RULES_DIR : null,
            paths: ['case.yaml'],
            routes: ROUTES,
            cwd: dir,
            checkTestFiles: true,
          }),
        defects,
      );
      if (result?.ok) {
        outcomes.loaded++;
        const results = guarded('runRuleTests', () => runRuleTests(result.ruleSet), defects);
        outcomes.testsRun += results?.length ?? 0;
      } else if (result) {
        outcomes.problems++;
        if (result.problems.length === 0) defects.push('not loaded, yet no problem');
        defects.push(...problemDefects(result.problems, 'case.yaml', text));
      }
      if (defects.length) failures.push({ n, how: file.how, defects, excerpt: text.slice(0, 160) });
    }
    console.log(`Rule files: ${JSON.stringify(outcomes)}`);
    expect(failures.length, report('rules', failures, RULE_CASES)).toBe(0);
    // The generator must reach both sides: files that load and files with problems.
    expect(outcomes.loaded).toBeGreaterThan(RULE_CASES / 50);
    expect(outcomes.problems).toBeGreaterThan(RULE_CASES / 4);
  });

  it(`${CONFIG_CASES} mutated config files: never a throw, every problem located in the file`, {
    timeout: 120_000 + CONFIG_CASES * 10,
  }, () => {
    const rng = new Rng(SEED).fork('config');
    const failures: Failure[] = [];
    const outcomes = { loaded: 0, problems: 0 };
    for (let n = 0; n < CONFIG_CASES; n++) {
      const file = generate(rng, CONFIG_SEEDS);
      writeFileSync(join(dir, 'config.yaml'), file.bytes);
      const text = readFileSync(join(dir, 'config.yaml'), 'utf8');
      const defects: string[] = [];
      let config: Config | undefined;
      try {
        config = guarded(
          'loadConfig',
          () => loadConfig({ file: 'config.yaml', cwd: dir, env: ENV }),
          defects,
        );
      } catch (err) {
        const e = err as UserError;
        if (e.problems.length === 0) defects.push(`a UserError without problems: ${e.message}`);
        defects.push(...problemDefects(e.problems, 'config.yaml', text));
      }
      // parseConfig on the text gives the same problems (loadConfig only adds the file reading).
      const parsed = guarded(
        'parseConfig',
        () => parseConfig(text, 'config.yaml', { env: ENV, baseDir: dir }),
        defects,
      );
      if (parsed && (parsed.config === undefined) !== (config === undefined))
        defects.push('parseConfig and loadConfig disagree');
      if (config) {
        outcomes.loaded++;
        // What serve does next: the rules the config names, checked against its routes (the
        // built-ins left out: they are the same every time and take most of the load time).
        const rules = guarded(
          'loadRuleSet',
          () => loadRuleSet({ ...ruleOptionsFromConfig(config), builtinDir: null, cwd: dir }),
          defects,
        );
        if (rules && !rules.ok) {
          for (const p of rules.problems) {
            if (p.location.line < 1 || p.location.col < 1 || !p.message)
              defects.push(`rules problem not located: ${formatProblem(p)}`);
          }
        }
      } else outcomes.problems++;
      if (defects.length) failures.push({ n, how: file.how, defects, excerpt: text.slice(0, 160) });
    }
    console.log(`Config files: ${JSON.stringify(outcomes)}`);
    expect(failures.length, report('config', failures, CONFIG_CASES)).toBe(0);
    expect(outcomes.loaded).toBeGreaterThan(CONFIG_CASES / 50);
    expect(outcomes.problems).toBeGreaterThan(CONFIG_CASES / 4);
  });
});
