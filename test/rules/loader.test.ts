import { mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { formatProblem, type Problem } from '../../src/errors.js';
import {
  BUILTIN_RULES_DIR,
  buildRuleSet,
  loadRuleSet,
  type RuleSource,
  readRuleSources,
} from '../../src/rules/loader.js';

const src = (display: string, text: string, builtin = false): RuleSource => ({
  path: `/virtual/${display}`,
  display,
  text,
  builtin,
});

/** Builds sources and returns their formatted problems (the way the CLI prints them). */
function problemsOf(sources: RuleSource[], routes: string[] = ['default', 'team-payments']): string[] {
  const result = buildRuleSet(sources, { routes });
  return result.ok ? [] : result.problems.map(formatProblem);
}

function ruleNames(sources: RuleSource[]): string[] {
  const result = buildRuleSet(sources);
  if (!result.ok) throw new Error(result.problems.map(formatProblem).join('\n'));
  return result.ruleSet.rules.map((r) => r.name);
}

describe('located problems', () => {
  it.each<[string, string, string[]]>([
    ['YAML syntax', '- name: a\n  match: {kind: [text]\n', ['f.yaml:3:1 YAML syntax: ']],
    ['a mapping at the top level', 'name: a\n', ['f.yaml:1:1 Expected a list of rules at the top level']],
    [
      'an unknown key, with a hint',
      '- name: a\n  paylod:\n    summary: x\n',
      ['f.yaml:2:3 [0].paylod: Unknown key "paylod" (did you mean "payload"?)'],
    ],
    [
      'an unknown nested key',
      '- name: a\n  payload:\n    sumary: x\n',
      ['f.yaml:3:5 [0].payload.sumary: Unknown key "sumary" (did you mean "summary"?)'],
    ],
    ['a missing name', '- action: drop\n', ['f.yaml:1:3 [0].name: Required: expected a string']],
    [
      'a bad rule name',
      '- name: "has spaces"\n',
      ['f.yaml:1:9 [0].name: Expected a rule name of letters, digits'],
    ],
    [
      'an unknown pattern operator',
      '- name: a\n  match:\n    source: [{ prefx: aws. }]\n',
      ['f.yaml:3:16 [0].match.source[0].prefx: Unknown operator "prefx" (did you mean "prefix"?)'],
    ],
    [
      'a bad numeric operand',
      '- name: a\n  match:\n    n:\n      - numeric: [">", "x"]\n',
      ['f.yaml:4:24 [0].match.n[0].numeric[1]: Expected a number after ">", got the string "x"'],
    ],
    [
      'anything-but misuse',
      '- name: a\n  match:\n    s: [{ anything-but: [a, 1] }]\n',
      ['f.yaml:3:25 [0].match.s[0].anything-but: Expected only strings or only numbers'],
    ],
    [
      'a Liquid syntax error in a quoted scalar',
      "- name: a\n  payload:\n    summary: 'Alarm {{ message.AlarmName | upcase'\n",
      ['f.yaml:3:21 [0].payload.summary: Liquid: output "{{ message.AlarmName | upcase" not closed'],
    ],
    [
      'an unknown filter inside a block scalar',
      '- name: a\n  payload:\n    summary: |-\n      first line\n        {{ message | nofilter }}\n',
      ['f.yaml:5:9 [0].payload.summary: Liquid: undefined filter: nofilter'],
    ],
    [
      'an unknown tag in a link',
      '- name: a\n  links:\n    - href: "{% lnk x %}"\n',
      ['f.yaml:3:14 [0].links[0].href: Liquid: tag "lnk" not found'],
    ],
    [
      'an undefined route',
      '- name: a\n  route: team-paymnets\n',
      [
        'f.yaml:2:10 [0].route: Unknown route "team-paymnets" (did you mean "team-payments"?); configured routes: default, team-payments',
      ],
    ],
    [
      'an invalid static action',
      '- name: a\n  action: page\n',
      [
        'f.yaml:2:11 [0].action: Expected one of trigger, acknowledge, resolve, change, drop (or a template), got "page"',
      ],
    ],
    [
      'an invalid fixed severity',
      '- name: a\n  payload: { severity: urgent }\n',
      [
        'f.yaml:2:24 [0].payload.severity: Expected one of critical, error, warning, info (or a template), got "urgent"',
      ],
    ],
    [
      'a bad for_each path',
      '- name: a\n  for_each: message..findings\n',
      ['f.yaml:2:13 [0].for_each: Empty name in path "message..findings"'],
    ],
    [
      'a bad custom_details path',
      '- name: a\n  payload:\n    custom_details:\n      event: { path: "message[x]" }\n',
      [
        'f.yaml:4:22 [0].payload.custom_details.event.path: Expected [number] or ["name"] in path "message[x]", got [x]',
      ],
    ],
    [
      'a test with both input and input_file',
      '- name: a\n  tests:\n    - input: { message: x }\n      input_file: x.json\n      expect: { action: trigger }\n',
      ['f.yaml:3:7 [0].tests[0]: Expected exactly one of input (an inline message) or input_file'],
    ],
    [
      'a test without a message',
      '- name: a\n  tests:\n    - input: { subject: x }\n      expect: {}\n',
      ['f.yaml:3:14 [0].tests[0].input: Required: expected input.message'],
    ],
    [
      'a test expecting an unknown rule',
      '- name: alpha\n  tests:\n    - input: { message: x }\n      expect: { rule: alpah }\n',
      ['f.yaml:4:23 [0].tests[0].expect.rule: Unknown rule "alpah" (did you mean "alpha"?)'],
    ],
    [
      'a test expecting an unknown route',
      '- name: a\n  tests:\n    - input: { message: x }\n      expect: { route: nope }\n',
      ['f.yaml:4:24 [0].tests[0].expect.route: Unknown route "nope"'],
    ],
    [
      'a test with a bad field path',
      '- name: a\n  tests:\n    - input: { message: x }\n      expect:\n        fields: { "payload..x": 1 }\n',
      ['f.yaml:5:19 [0].tests[0].expect.fields["payload..x"]: Empty name in path "payload..x"'],
    ],
  ])('%s', (_name, text, expected) => {
    const problems = problemsOf([src('f.yaml', text)]);
    expect(problems).toHaveLength(expected.length);
    for (const [i, p] of problems.entries()) expect(p.startsWith(expected[i] as string), p).toBe(true);
  });

  it('collects every problem of every file', () => {
    const problems = problemsOf([
      src('a.yaml', '- name: one\n  route: nowhere\n  payload: { summary: "{{ x | bad }}" }\n'),
      src('b.yaml', '- name: two\n  match: { kind: text }\n- name: three\n  actoin: drop\n'),
    ]);
    expect(problems.map((p) => p.split(' ')[0])).toEqual([
      'a.yaml:2:10',
      'a.yaml:3:24',
      'b.yaml:2:18',
      'b.yaml:4:3',
    ]);
  });

  it('an empty file has no rules and no problems', () => {
    expect(ruleNames([src('empty.yaml', '# nothing yet\n')])).toEqual([]);
  });
});

/**
 * Every problem of every rule in one run: a rule that fails the schema still has its templates,
 * pattern, paths, routes and tests checked. One fixture directory per combination under
 * test/fixtures/rules/, loaded as `rules.paths` with the routes default and payments.
 */
describe('every problem of a rule file at once', () => {
  const FIXTURES = join(import.meta.dirname, '../fixtures/rules');
  const cases: Array<[string, string[]]> = [
    [
      'unknown-key-and-template',
      [
        'unknown-key-and-template/rules.yaml:4:3 [0].actoin: Unknown key "actoin" (did you mean "action"?)',
        'unknown-key-and-template/rules.yaml:6:28 [0].payload.summary: Liquid: undefined filter: upcse',
      ],
    ],
    [
      'two-files',
      [
        'two-files/a.yaml:4:16 [0].match.source[0].prefx: Unknown operator "prefx" (did you mean "prefix"?)',
        'two-files/a.yaml:6:3 [0].severty: Unknown key "severty" (expected one of: name, description, enabled, match, continue, fallback, for_each, route, action, dedup_key, payload, links, images, client, client_url, tests)',
        'two-files/b.yaml:2:10 [0].route: Unknown route "paymnets" (did you mean "payments"?); configured routes: default, payments',
        'two-files/b.yaml:4:15 [0].payload.summary: Liquid: tag {% if message.x %} not closed',
      ],
    ],
    [
      'template-and-pattern',
      [
        'template-and-pattern/rules.yaml:4:18 [0].match.detail-type: Expected a list around the operator (write [{ prefix: … }]), got a mapping',
        'template-and-pattern/rules.yaml:6:44 [0].match.detail.eventTypeCategory[0].numeric[1]: Expected a number after ">", got the string "x"',
        'template-and-pattern/rules.yaml:8:15 [0].payload.summary: Liquid: output "{{ message.detail.eventTypeCode" not closed',
        'template-and-pattern/rules.yaml:9:15 [0].payload.severity: Expected one of critical, error, warning, info (or a template), got "urgent"',
      ],
    ],
    [
      'no-name',
      [
        'no-name/rules.yaml:2:3 [0].name: Required: expected a string',
        'no-name/rules.yaml:2:23 [0].match.source[0].sufix: Unknown operator "sufix" (did you mean "suffix"?)',
        'no-name/rules.yaml:3:12 [0].action: Liquid: undefined filter: nofilter',
        'no-name/rules.yaml:4:9 [1].name: Expected a rule name of letters, digits, "_", "." or "-" (at most 63, starting with a letter or digit), got the string "Not a name"',
        'no-name/rules.yaml:5:15 [1].dedup_key: Liquid: tag "unknowntag" not found',
      ],
    ],
    [
      'wrong-types',
      [
        'wrong-types/rules.yaml:3:13 [0].continue: Expected true or false, got the string "yes"',
        'wrong-types/rules.yaml:4:13 [0].for_each: Empty name in path "message..findings"',
        'wrong-types/rules.yaml:6:14 [0].links[0].href: Liquid: output "{{ message.url" not closed',
        'wrong-types/rules.yaml:7:7 [0].links[0].txt: Unknown key "txt" (did you mean "text"?)',
        'wrong-types/rules.yaml:8:13 [0].links[1].href: Expected a string, a number or true/false, got a list',
        'wrong-types/rules.yaml:9:14 [0].links[1].text: Liquid: undefined filter: bad',
        'wrong-types/rules.yaml:11:15 [0].payload.severity: Expected one of critical, error, warning, info (or a template), got "urgent"',
        'wrong-types/rules.yaml:12:40 [0].payload.custom_details.finding.path: Expected [number] or ["name"] in path "message[x]", got [x]',
        'wrong-types/rules.yaml:12:54 [0].payload.custom_details.finding.as: Unknown key "as"',
      ],
    ],
    [
      'tests-and-names',
      [
        'tests-and-names/rules.yaml:3:3 [0].descripton: Unknown key "descripton" (did you mean "description"?)',
        'tests-and-names/rules.yaml:5:28 [0].tests[0].input.subjct: Unknown key "subjct" (did you mean "subject"?)',
        'tests-and-names/rules.yaml:6:24 [0].tests[0].expect.route: Unknown route "security"; configured routes: default, payments',
        'tests-and-names/rules.yaml:7:7 [0].tests[1].expect: Required: expected a mapping',
        'tests-and-names/rules.yaml:7:14 [0].tests[1].input: Required: expected input.message (the SNS Message, as text or YAML)',
        // No "Unknown rule" for checker's test: the broken rule keeps its name.
        'tests-and-names/rules.yaml:12:9 name: Duplicate rule name "guardduty" (first defined at tests-and-names/rules.yaml:2:9); names must be unique (a user rule may reuse only a built-in rule name, to replace it)',
        'tests-and-names/rules.yaml:13:24 [2].payload.summary: Liquid: undefined filter: nope',
      ],
    ],
    [
      'order-across-files',
      [
        // Rule references are resolved after every file is read; the problem still sorts into a.yaml.
        'order-across-files/a.yaml:5:23 [0].tests[0].expect.rule: Unknown rule "secnd" (did you mean "second"?)',
        'order-across-files/b.yaml:2:24 [0].payload.summary: Liquid: undefined filter: nope',
      ],
    ],
    [
      'syntax-error-and-more',
      [
        'syntax-error-and-more/a.yaml:4:1 YAML syntax: Flow map in block collection must be sufficiently indented and end with a }',
        'syntax-error-and-more/b.yaml:2:3 [0].enabeld: Unknown key "enabeld" (did you mean "enabled"?)',
        'syntax-error-and-more/b.yaml:3:16 [0].client_url: Liquid: undefined filter: nope',
      ],
    ],
  ];

  it.each(cases)('%s', (dir, expected) => {
    const result = loadRuleSet({
      builtinDir: null,
      paths: [dir],
      cwd: FIXTURES,
      routes: ['default', 'payments'],
      checkTestFiles: true,
    });
    expect(result.ok ? [] : result.problems.map(formatProblem)).toEqual(expected);
  });

  it('has a case for every fixture directory', () => {
    expect(readdirSync(FIXTURES).sort()).toEqual(cases.map(([dir]) => dir).sort());
  });

  it('the same problems, in the same order, whichever way the files are given', () => {
    const load = (paths: string[]) => {
      const result = loadRuleSet({ builtinDir: null, paths, cwd: FIXTURES, routes: ['default', 'payments'] });
      return result.ok ? [] : result.problems.map(formatProblem);
    };
    // A directory lists its files in lexical order; files named one by one load in the order given.
    expect(load(['two-files/a.yaml', 'two-files/b.yaml'])).toEqual(load(['two-files']));
    expect(load(['two-files/b.yaml', 'two-files/a.yaml'])).toEqual([
      ...load(['two-files/b.yaml']),
      ...load(['two-files/a.yaml']),
    ]);
  });
});

describe('rule order and names', () => {
  const builtin = src(
    '10-builtin.yaml',
    [
      '- name: alarms',
      '  match: { kind: [cloudwatch-alarm] }',
      '- name: catch-all',
      '  fallback: true',
      '- name: insufficient',
      '  action: drop',
    ].join('\n'),
    true,
  );

  it('user rules go before the built-ins, fallback rules last, user fallbacks before the catch-all', () => {
    const user = src('user.yaml', '- name: mine\n- name: my-fallback\n  fallback: true\n- name: also-mine\n');
    expect(ruleNames([builtin, user])).toEqual([
      'mine',
      'also-mine',
      'alarms',
      'insufficient',
      'my-fallback',
      'catch-all',
    ]);
  });

  it('a user rule named like a built-in replaces it in its place', () => {
    const result = buildRuleSet([
      builtin,
      src('user.yaml', '- name: alarms\n  route: default\n  action: drop\n'),
    ]);
    expect(
      result.ok && result.ruleSet.rules.map((r) => `${r.name}:${r.builtin ? 'builtin' : 'user'}`),
    ).toEqual(['alarms:user', 'insufficient:builtin', 'catch-all:builtin']);
  });

  it('enabled: false removes a built-in', () => {
    expect(ruleNames([builtin, src('user.yaml', '- name: insufficient\n  enabled: false\n')])).toEqual([
      'alarms',
      'catch-all',
    ]);
  });

  it('two user rules may not share a name', () => {
    expect(problemsOf([src('a.yaml', '- name: x\n'), src('b.yaml', '- name: x\n')])).toEqual([
      'b.yaml:1:9 name: Duplicate rule name "x" (first defined at a.yaml:1:9); names must be unique (a user rule may reuse only a built-in rule name, to replace it)',
    ]);
  });
});

describe('reading rule files', () => {
  const dir = mkdtempSync(join(tmpdir(), 'pd-relay-loader-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('lists a directory in lexical order, skipping hidden entries and other files', () => {
    const rules = join(dir, 'rules');
    mkdirSync(rules);
    mkdirSync(join(rules, '..2024_01_01'));
    writeFileSync(join(rules, '..2024_01_01', 'b.yaml'), '- name: b\n');
    symlinkSync('..2024_01_01', join(rules, '..data'));
    symlinkSync('..data/b.yaml', join(rules, 'b.yaml'));
    writeFileSync(join(rules, 'a.yml'), '- name: a\n');
    writeFileSync(join(rules, '.hidden.yaml'), '- name: hidden\n');
    writeFileSync(join(rules, 'README.txt'), 'not rules');
    const { sources, problems } = readRuleSources({ builtinDir: null, paths: [rules], cwd: dir });
    expect(problems).toEqual([]);
    expect(sources.map((s) => s.display)).toEqual(['rules/a.yml', 'rules/b.yaml']);
  });

  it('reports a path that does not exist', () => {
    const { problems } = readRuleSources({ builtinDir: null, paths: ['missing.yaml'], cwd: dir });
    expect(problems.map(formatProblem)).toEqual([
      'missing.yaml:1:1 Cannot read rules path: no such file or directory',
    ]);
  });

  it('reports a test input_file that does not exist (lint and test only)', () => {
    const file = join(dir, 'with-test.yaml');
    writeFileSync(file, '- name: t\n  tests:\n    - input_file: samples/none.json\n      expect: {}\n');
    const lint = loadRuleSet({ builtinDir: null, paths: [file], cwd: dir, checkTestFiles: true });
    expect(lint.ok ? [] : lint.problems.map((p: Problem) => formatProblem(p))).toEqual([
      'with-test.yaml:3:19 [0].tests[0].input_file: Cannot read samples/none.json: no such file or directory',
    ]);
    expect(loadRuleSet({ builtinDir: null, paths: [file], cwd: dir }).ok).toBe(true);
  });

  it('loads the built-in rules without problems, catch-all last', () => {
    const result = loadRuleSet({ checkTestFiles: true });
    expect(result.ok ? [] : result.problems.map(formatProblem)).toEqual([]);
    const rules = result.ok ? result.ruleSet.rules : [];
    expect(rules.at(-1)?.name).toBe('catch-all');
    expect(rules.every((r) => r.builtin)).toBe(true);
    expect(BUILTIN_RULES_DIR).toMatch(/rules\/?$/);
  });
});
