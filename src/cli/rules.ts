import { readFileSync } from 'node:fs';
import { loadConfig } from '../config/load.js';
import { decodeNotification } from '../decode/decode.js';
import { envelopeFromSample } from '../decode/sample.js';
import { formatProblem, type Problem } from '../errors.js';
import { createRuleEngine } from '../rules/engine.js';
import { loadRuleSet, type RuleSet } from '../rules/loader.js';
import { noteTaker, runRuleTests, TEST_ENDPOINT } from '../rules/rule-tests.js';
import { type Command, configPath, type Io, parseCommandArgs, UsageError } from './command.js';

const USAGE = [
  'Usage: pd-relay rules lint [PATH...] [--config FILE]',
  '       pd-relay rules test [--config FILE] [--json] [FILE...]',
  '',
  'lint  Checks the built-in rules plus PATHs (rule files or directories; default: the',
  '      configured rules.paths). Prints every problem as file:line:col path: message.',
  '      Exit 1 on any problem.',
  'test  Without FILEs, runs every tests: block of the built-in and configured rules',
  '      (exit 1 on a failure). With FILEs (each an SNS envelope or a bare message),',
  '      shows what the relay would do with each; --json prints one JSON object per file:',
  '      {"file","rule","action","events":[{"route","event"}]}.',
  '',
  'Options:',
  '  --config FILE  Configuration file (default: $PD_RELAY_CONFIG, else built-in defaults):',
  '                 gives rules.paths and the route names rules may use',
  '  --json         Machine-readable output, one JSON object per line',
].join('\n');

export const rulesCommand: Command = {
  summary: 'Check rule files (lint) and run their tests or sample messages through them (test)',
  usage: USAGE,
  async run(args, io) {
    const [sub, ...rest] = args;
    if (sub === 'lint') return lint(rest, io);
    if (sub === 'test') return test(rest, io);
    throw new UsageError(
      sub === undefined ? 'Missing subcommand: lint or test.' : `Unknown subcommand "${sub}".`,
    );
  },
};

function lint(args: string[], io: Io): number {
  const { values, positionals } = parseCommandArgs(
    args,
    { config: { type: 'string', short: 'c' } },
    { positionals: true },
  );
  const config = loadConfig({ file: configPath(values.config) });
  const paths = positionals.length ? positionals : config.rules.paths;
  const result = loadRuleSet({ paths, routes: Object.keys(config.routes), checkTestFiles: true });
  if (!result.ok) return printProblems(result.problems, io);
  const { rules, files } = result.ruleSet;
  io.out(`OK: ${rules.length} rules in ${files.length} files.`);
  return 0;
}

function test(args: string[], io: Io): number {
  const { values, positionals } = parseCommandArgs(
    args,
    { config: { type: 'string', short: 'c' }, json: { type: 'boolean' } },
    { positionals: true },
  );
  const config = loadConfig({ file: configPath(values.config) });
  const result = loadRuleSet({
    paths: config.rules.paths,
    routes: Object.keys(config.routes),
    checkTestFiles: true,
  });
  if (!result.ok) return printProblems(result.problems, io);
  return positionals.length
    ? runSamples(result.ruleSet, positionals, values.json ?? false, io)
    : runTests(result.ruleSet, values.json ?? false, io);
}

function runTests(ruleSet: RuleSet, json: boolean, io: Io): number {
  const results = runRuleTests(ruleSet);
  let failed = 0;
  for (const r of results) {
    const where = `${r.location.file}:${r.location.line}:${r.location.col}`;
    if (!r.ok) failed++;
    if (json) {
      io.out(
        JSON.stringify({
          test: r.name,
          rule: r.rule,
          at: where,
          ok: r.ok,
          failures: r.failures,
          notes: r.notes,
        }),
      );
      continue;
    }
    io.out(`${r.ok ? 'PASS' : 'FAIL'} ${where} ${r.rule}: ${r.name}`);
    for (const f of r.failures) io.out(`     ${f}`);
    for (const n of r.notes) io.out(`     note: ${n}`);
  }
  const summary = `${results.length - failed} passed, ${failed} failed (${results.length} tests in ${ruleSet.files.length} files).`;
  if (json) io.err(summary);
  else io.out(summary);
  return failed ? 1 : 0;
}

function runSamples(ruleSet: RuleSet, files: string[], json: boolean, io: Io): number {
  const notes: string[] = [];
  const engine = createRuleEngine(ruleSet, { instruments: noteTaker(notes) });
  let status = 0;
  for (const file of files) {
    notes.length = 0;
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      status = 1;
      const message = `Cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`;
      if (json) io.out(JSON.stringify({ file, error: message }));
      else io.err(message);
      continue;
    }
    const { envelope, shape } = envelopeFromSample(text);
    const evaluation = engine.evaluate(decodeNotification(envelope, TEST_ENDPOINT));
    const events = evaluation.events.map((e) => ({ route: e.route, event: e.body }));
    if (json) {
      io.out(JSON.stringify({ file, rule: evaluation.rule, action: evaluation.action, events }));
      for (const n of notes) io.err(`${file}: note: ${n}`);
      continue;
    }
    const count = `${events.length} event${events.length === 1 ? '' : 's'}`;
    io.out(
      `${file} (${describeShape(shape)}): rule ${evaluation.rule ?? '(none)'} -> ${evaluation.action}, ${count}`,
    );
    for (const m of evaluation.matches.slice(0, -1))
      io.out(`  also matched: ${m.rule} (${m.action}, continue)`);
    for (const e of events) {
      io.out(`  route ${e.route}:`);
      for (const line of JSON.stringify(e.event, null, 2).split('\n')) io.out(`    ${line}`);
    }
    for (const n of notes) io.out(`  note: ${n}`);
  }
  return status;
}

function describeShape(shape: string): string {
  switch (shape) {
    case 'sns-envelope':
      return 'SNS envelope';
    case 'lambda-sns-event':
      return 'Lambda SNS event';
    default:
      return 'bare message';
  }
}

function printProblems(problems: readonly Problem[], io: Io): number {
  for (const p of problems) io.out(formatProblem(p));
  const files = new Set(problems.map((p) => p.location.file)).size;
  io.err(
    `${problems.length} problem${problems.length === 1 ? '' : 's'} in ${files} file${files === 1 ? '' : 's'}.`,
  );
  return 1;
}
