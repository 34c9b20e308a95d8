import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { formatProblem } from '../../src/errors.js';
import { buildRuleSet } from '../../src/rules/loader.js';

// Found by the loader fuzz: a quoted "\n" in a YAML string reached a message as a line break, and
// the printed problem spanned two lines (the second without a file:line:col).
describe('a printed problem is one line', () => {
  it('escapes a line break in a config value', () => {
    const { problems } = parseConfig('sns:\n  topics: ["a\\nb"]\n', 'c.yaml', { env: {}, baseDir: '/' });
    expect(problems.map(formatProblem)).toEqual([
      'c.yaml:2:12 sns.topics[0]: Expected a topic ARN or glob such as "arn:aws:sns:*:123456789012:*", got "a\\nb"',
    ]);
  });

  it.each([
    [
      'a value',
      '- name: a\n  action: "trig\\r\\u0007ger"\n',
      'r.yaml:2:11 [0].action: Expected one of trigger, acknowledge, resolve, change, drop (or a template), got "trig\\r\\u0007ger"',
    ],
    [
      'a key',
      '- name: a\n  "x\\ny": 1\n',
      expect.stringMatching(/^r\.yaml:2:3 \[0\]\["x\\ny"\]: Unknown key "x\\ny" \(expected one of: /),
    ],
  ])('escapes control characters in a rule file: %s', (_name, text, line) => {
    const result = buildRuleSet([{ path: '/virtual/r.yaml', display: 'r.yaml', text, builtin: false }]);
    expect(result.ok ? [] : result.problems.map(formatProblem)).toEqual([line]);
  });
});
