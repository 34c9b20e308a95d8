import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { formatProblem } from '../../src/errors.js';

// Keys typed in the wrong place are still keys: the loader's problems locate them without
// echoing them (found by the loader fuzz, test/fuzz/loaders.test.ts).
const KEY = 'abcdefghijklmnopqrstuvwxyz012345';
const PASSWORD = 'correct-horse-battery-staple';

describe('config problems never echo a misplaced secret', () => {
  it.each([
    [
      'a key list written as one string',
      `routes:\n  default:\n    keys: S"${KEY}"]\n`,
      'c.yaml:3:11 routes.default.keys: Expected a list, got a value of 36 characters (not shown)',
    ],
    [
      'a route written as a bare key',
      `routes:\n  default: ${KEY}\n`,
      'c.yaml:2:12 routes.default: Expected a mapping, got a value of 32 characters (not shown)',
    ],
    [
      'a missing colon in a key entry',
      `routes:\n  default:\n    keys:\n      - { alias: a, key ${KEY} }\n`,
      'c.yaml:4:21 routes.default.keys[0]: Unknown key of 36 characters (not shown)',
    ],
    [
      'a whole file that is a key (found by the loader fuzz)',
      `${KEY}\n`,
      'c.yaml:1:1 Expected a mapping, got a value of 32 characters (not shown)',
    ],
    [
      'basic auth written as one string',
      `server:\n  basicAuth: "sns:${PASSWORD}"\n`,
      'c.yaml:2:14 server.basicAuth: Expected a mapping, got a value of 32 characters (not shown)',
    ],
  ])('%s', (_name, text, problem) => {
    const problems = parseConfig(text, 'c.yaml', { env: {}, baseDir: '/' }).problems.map(formatProblem);
    expect(problems).toContain(problem);
    expect(problems.join('\n')).not.toContain(KEY);
    expect(problems.join('\n')).not.toContain(PASSWORD);
  });

  it('still names a mistyped route setting, with a hint', () => {
    const problems = parseConfig('routes:\n  default:\n    ratePerMinit: 10\n', 'c.yaml', {
      env: {},
      baseDir: '/',
    }).problems.map(formatProblem);
    expect(problems).toEqual([
      'c.yaml:3:5 routes.default.ratePerMinit: Unknown key "ratePerMinit" (did you mean "ratePerMinute"?)',
    ]);
  });
});
