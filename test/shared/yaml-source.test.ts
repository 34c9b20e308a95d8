import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { formatProblem } from '../../src/errors.js';
import { buildRuleSet } from '../../src/rules/loader.js';
import { MAX_ALIAS_COUNT, YamlSource } from '../../src/shared/yaml-source.js';

/** "Billion laughs": each level holds ten aliases of the one before, 10^depth values in all. */
function aliasBomb(depth: number, indent = ''): string {
  const lines = [`${indent}l0: &l0 [x, x, x, x, x, x, x, x, x, x]`];
  for (let i = 1; i <= depth; i++) {
    lines.push(`${indent}l${i}: &l${i} [${Array.from({ length: 10 }, () => `*l${i - 1}`).join(', ')}]`);
  }
  return `${lines.join('\n')}\n`;
}

/** One anchor used more often than the limit allows: no bomb, still refused by the library. */
const manyAliases = `- &rule { name: a, match: {} }\n${'- *rule\n'.repeat(MAX_ALIAS_COUNT + 1)}`;

describe('YAML alias expansion', () => {
  it('is a located problem in a config file, not an exception', () => {
    const result = parseConfig(aliasBomb(8), 'bomb.yaml', { env: {}, baseDir: '/' });
    expect(result.config).toBeUndefined();
    expect(result.problems.map(formatProblem)).toEqual([
      `bomb.yaml:2:10 YAML aliases: expected at most ${MAX_ALIAS_COUNT} alias expansions, got more; write the repeated values out`,
    ]);
  });

  it.each([
    [
      'a billion laughs',
      `- name: a\n  match: {}\n  payload:\n    custom_details:\n${aliasBomb(8, '      ')}`,
      6,
      16,
    ],
    ['one anchor used too often', manyAliases, 2, 3],
  ])('is a located problem in a rule file: %s', (_, text, line, col) => {
    const result = buildRuleSet([{ path: '/virtual/r.yaml', display: 'r.yaml', text, builtin: false }]);
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.problems.map(formatProblem)).toEqual([
      `r.yaml:${line}:${col} YAML aliases: expected at most ${MAX_ALIAS_COUNT} alias expansions, got more; write the repeated values out`,
    ]);
  });

  it('leaves ordinary aliases alone', () => {
    const { source, problems } = YamlSource.parse('a: &x { b: 1 }\nc: *x\nd: *x\n', 'ok.yaml');
    expect(problems).toEqual([]);
    expect(source.toJS()).toEqual({ a: { b: 1 }, c: { b: 1 }, d: { b: 1 } });
  });
});

describe('YAML syntax errors', () => {
  it('point at the right line and column after a tab-indented line', () => {
    // The yaml library's LineCounter lost a line here: the errors of the lines below were put on
    // the tab-indented line, at columns past its end.
    const text = '- name: a\n  match:\n    kind: [text]\n\taction: drop\n  tests:\n    - input: x\n';
    const { problems } = YamlSource.parse(text, 'tab.yaml');
    expect(problems.map(formatProblem)).toEqual([
      'tab.yaml:4:2 YAML syntax: Unexpected scalar at node end',
      'tab.yaml:4:8 YAML syntax: Unexpected map-value-ind token in YAML stream',
      'tab.yaml:4:10 YAML syntax: Unexpected scalar token in YAML stream',
      'tab.yaml:5:8 YAML syntax: Unexpected map-value-ind token in YAML stream',
      'tab.yaml:6:5 YAML syntax: Unexpected seq-item-ind token in YAML stream',
      'tab.yaml:6:7 YAML syntax: Unexpected scalar token in YAML stream',
      'tab.yaml:6:12 YAML syntax: Unexpected map-value-ind token in YAML stream',
      'tab.yaml:6:14 YAML syntax: Unexpected scalar token in YAML stream',
    ]);
  });

  it('count lines by "\\n", CRLF files included', () => {
    const { source } = YamlSource.parse('a: 1\r\nbb: 2\r\n', 'crlf.yaml');
    expect(source.locate(['bb'], { key: true })).toEqual({ file: 'crlf.yaml', line: 2, col: 1 });
    expect(source.locate(['bb'])).toEqual({ file: 'crlf.yaml', line: 2, col: 5 });
  });

  it('never quote the file: an inline routing key below broken indentation stays out', () => {
    const key = 'cdefghijklmnopqrstuvwxyz01234567';
    const text = `    ratePerMinute: 100\n  security:\n    keys: [{ alias: sec, key: "${key}" }]\nrules: {}\n`;
    const { problems } = parseConfig(text, 'c.yaml', { env: {}, baseDir: '/' });
    expect(problems.length).toBeGreaterThan(5);
    expect(problems.map(formatProblem)).toContain(
      'c.yaml:3:31 YAML syntax: Unexpected double-quoted-scalar token in YAML stream',
    );
    expect(problems.map(formatProblem).join('\n')).not.toContain(key);
  });
});
