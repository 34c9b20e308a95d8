import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { formatProblem } from '../../src/errors.js';

const parse = (text: string) => parseConfig(text, 'c.yaml', { env: {}, baseDir: '/' });

describe('server.headersTimeoutMs and server.requestTimeoutMs', () => {
  it('default to 10 s and 20 s', () => {
    const { config } = parse('{}\n');
    expect(config?.server).toMatchObject({ headersTimeoutMs: 10_000, requestTimeoutMs: 20_000 });
  });

  it('are read from the file', () => {
    const { config } = parse('server:\n  headersTimeoutMs: 500\n  requestTimeoutMs: "1500"\n');
    expect(config?.server).toMatchObject({ headersTimeoutMs: 500, requestTimeoutMs: 1_500 });
  });

  it.each([
    [
      'a headers timeout longer than the request timeout',
      'server:\n  headersTimeoutMs: 5000\n  requestTimeoutMs: 1000\n',
      'c.yaml:2:21 server.headersTimeoutMs: Expected headersTimeoutMs <= requestTimeoutMs',
    ],
    [
      'a timeout of 0 (Node reads it as "never")',
      'server:\n  requestTimeoutMs: 0\n',
      'c.yaml:2:21 server.requestTimeoutMs: Expected a number >= 100, got number 0',
    ],
  ])('refuse %s', (_name, text, problem) => {
    const { config, problems } = parse(text);
    expect(config).toBeUndefined();
    expect(problems.map(formatProblem)).toEqual([problem]);
  });
});
