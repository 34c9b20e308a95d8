import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { inspect } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfig, parseConfig } from '../../src/config/load.js';
import { DEFAULT_CERT_HOST_PATTERN } from '../../src/config/schema.js';
import { UserError } from '../../src/errors.js';

const FIXTURES = 'test/fixtures/config';
const KEY_A = 'abcdefghijklmnopqrstuvwxyz012345';
const KEY_B = 'bcdefghijklmnopqrstuvwxyz0123456';
const KEY_C = 'cdefghijklmnopqrstuvwxyz01234567';

/** Loads a fixture and returns the error report lines (first line is the summary). */
function problemsOf(fixture: string, env: NodeJS.ProcessEnv = {}): string[] {
  try {
    loadConfig({ file: `${FIXTURES}/${fixture}`, env });
  } catch (err) {
    expect(err).toBeInstanceOf(UserError);
    return (err as UserError).report().split('\n');
  }
  throw new Error(`${fixture} loaded without problems`);
}

describe('config: one fixture per failure mode', () => {
  const f = (name: string) => `${FIXTURES}/${name}`;
  it.each([
    [
      'unknown-key.yaml',
      [`${f('unknown-key.yaml')}:3:3 server.prot: Unknown key "prot" (did you mean "port"?)`],
    ],
    [
      'yaml-syntax.yaml',
      [`${f('yaml-syntax.yaml')}:2:9 YAML syntax: Nested mappings are not allowed in compact mappings`],
    ],
    ['duplicate-key.yaml', [`${f('duplicate-key.yaml')}:3:3 YAML syntax: Map keys must be unique`]],
    ['top-level-list.yaml', [`${f('top-level-list.yaml')}:1:1 Expected a mapping, got a list`]],
    [
      'wrong-type.yaml',
      [
        `${f('wrong-type.yaml')}:2:9 server.port: Expected a number, got the string "eighty"`,
        `${f('wrong-type.yaml')}:4:16 sns.autoConfirm: Expected true or false, got the string "sometimes"`,
      ],
    ],
    [
      'out-of-range.yaml',
      [
        `${f('out-of-range.yaml')}:2:9 server.port: Expected a number <= 65535, got number 70000`,
        `${f('out-of-range.yaml')}:3:17 server.maxBodyBytes: Expected a number >= 1024, got number 10`,
      ],
    ],
    [
      'bad-enum.yaml',
      [
        `${f('bad-enum.yaml')}:2:10 log.level: Expected one of "trace", "debug", "info", "warn", "error", "fatal", "silent", got the string "verbose"`,
      ],
    ],
    [
      'env-unset.yaml',
      [
        `${f('env-unset.yaml')}:5:12 routes.default.keys[0]: Environment variable PD_RELAY_TEST_UNSET_KEY is not set or empty (set it, or write \${PD_RELAY_TEST_UNSET_KEY:-default})`,
      ],
    ],
    [
      'keys-without-topics.yaml',
      [
        expect.stringMatching(
          /^test\/fixtures\/config\/keys-without-topics\.yaml:1:1 sns\.topics: Required when routes have keys: without a topic allow-list, anyone with an AWS account can subscribe/,
        ),
      ],
    ],
    [
      'bad-routing-key.yaml',
      [
        `${f('bad-routing-key.yaml')}:6:9 routes.default.keys[0]: Expected a 32-character PagerDuty integration key (letters and digits), got a value of 31 characters (not shown)`,
      ],
    ],
    [
      'key-and-keyfile.yaml',
      [`${f('key-and-keyfile.yaml')}:6:9 routes.default.keys[0]: Expected exactly one of key or keyFile`],
    ],
    [
      'keyfile-missing.yaml',
      [
        `${f('keyfile-missing.yaml')}:7:18 routes.default.keys[0].keyFile: Cannot read ./no-such-secret-file: no such file`,
      ],
    ],
    [
      'basic-auth-both.yaml',
      [`${f('basic-auth-both.yaml')}:3:5 server.basicAuth: Expected exactly one of password or passwordFile`],
    ],
    [
      'bad-cert-host-pattern.yaml',
      [
        expect.stringMatching(
          /bad-cert-host-pattern\.yaml:2:20 sns\.certHostPattern: Not a valid regular expression: .*Unterminated group/,
        ),
      ],
    ],
    [
      'bad-topic.yaml',
      [
        `${f('bad-topic.yaml')}:4:7 sns.topics[1]: Expected a topic ARN or glob such as "arn:aws:sns:*:123456789012:*", got "my-topic"`,
      ],
    ],
    [
      'duplicate-alias.yaml',
      [
        `${f('duplicate-alias.yaml')}:7:18 routes.default.keys[1].alias: Duplicate alias "a" in route "default"`,
      ],
    ],
    [
      'route-without-keys.yaml',
      [
        `${f('route-without-keys.yaml')}:6:13 routes.security: Route "security" has no keys while other routes do: add keys or remove it`,
      ],
    ],
    [
      'missing-default-route.yaml',
      [
        `${f('missing-default-route.yaml')}:2:3 routes: Expected a route named "default": the built-in rules send to it`,
      ],
    ],
    [
      'bad-route-name.yaml',
      [
        expect.stringMatching(
          /bad-route-name\.yaml:3:3 routes\["team a\/b"\]: Invalid name "team a\/b": Expected a name of letters/,
        ),
      ],
    ],
    [
      'tls-missing.yaml',
      [
        `${f('tls-missing.yaml')}:3:15 server.tls.certFile: Cannot read ./missing-cert.pem: no such file`,
        `${f('tls-missing.yaml')}:4:14 server.tls.keyFile: Cannot read ./missing-key.pem: no such file`,
      ],
    ],
    [
      'backoff-order.yaml',
      [`${f('backoff-order.yaml')}:2:17 delivery.minBackoffMs: Expected minBackoffMs <= maxBackoffMs`],
    ],
  ])('%s', (fixture, expected) => {
    const lines = problemsOf(fixture);
    expect(lines[0]).toMatch(
      new RegExp(
        `^Invalid configuration in ${FIXTURES}/${fixture.replace('.', '\\.')} \\(\\d+ problems?\\):$`,
      ),
    );
    expect(lines.slice(1).slice(0, expected.length)).toEqual(expected);
  });

  it('collects every problem of a file at once, in file order', () => {
    const lines = problemsOf('many-problems.yaml');
    expect(lines).toEqual([
      `Invalid configuration in ${f('many-problems.yaml')} (4 problems):`,
      `${f('many-problems.yaml')}:2:9 server.port: Expected a number >= 0, got number -1`,
      `${f('many-problems.yaml')}:3:3 server.hots: Unknown key "hots" (did you mean "host"?)`,
      `${f('many-problems.yaml')}:5:9 metrics.port: Expected a number, got the string "x"`,
      `${f('many-problems.yaml')}:9:8 pagerduty.url: Expected an http(s) URL, got the string "ftp://events.pagerduty.com"`,
    ]);
  });

  it('names a missing config file plainly', () => {
    expect(() => loadConfig({ file: 'test/fixtures/config/nope.yaml' })).toThrow(
      'Cannot read config file test/fixtures/config/nope.yaml: no such file.',
    );
  });

  it('never echoes a secret in a problem', () => {
    const secretish = 'not-a-key-but-a-secretish-value';
    expect(problemsOf('bad-routing-key.yaml').join('\n')).not.toContain(secretish);
    expect(problemsOf('basic-auth-both.yaml').join('\n')).not.toContain('hunter2');
    const typed = parseConfig('server:\n  basicAuth:\n    username: u\n    password: 12345678\n', 'c.yaml', {
      env: {},
      baseDir: '/',
    });
    expect(typed.problems.map((p) => p.message).join('\n')).not.toContain('12345678');
  });
});

describe('config: valid files', () => {
  it('zero config is a dry-run on 0.0.0.0:8080 with built-in defaults', () => {
    const config = loadConfig({ cwd: '/srv/relay', env: {} });
    expect(config).toMatchObject({
      file: null,
      dryRun: true,
      server: { host: '0.0.0.0', port: 8080, maxBodyBytes: 2_097_152 },
      metrics: { host: '0.0.0.0', port: 9464 },
      sns: { topics: [], autoConfirm: true, certHostPattern: DEFAULT_CERT_HOST_PATTERN },
      pagerduty: { url: 'https://events.pagerduty.com', timeoutMs: 10_000 },
      routes: { default: { name: 'default', keys: [], ratePerMinute: 120 } },
      rules: { paths: [] },
      spool: { dir: '/srv/relay/data' },
      delivery: { maxAgeSeconds: 86_400 },
    });
    expect(config.server.tls).toBeUndefined();
    expect(config.server.basicAuth).toBeUndefined();
  });

  it('reads every key of the public interface, substitutes ${ENV} and reads *File secrets', () => {
    const config = loadConfig({
      file: `${FIXTURES}/valid-full.yaml`,
      env: { PD_RELAY_TEST_PORT: '8443', PD_RELAY_TEST_KEY: KEY_A },
    });
    const dir = resolve(FIXTURES);
    expect(config.dryRun).toBe(false);
    expect(config.server).toMatchObject({ host: '127.0.0.1', port: 8443, maxBodyBytes: 4_194_304 });
    expect(config.server.basicAuth?.username).toBe('sns');
    expect(config.server.basicAuth?.password.reveal()).toBe('correct-horse-battery');
    expect(config.sns.autoConfirm).toBe(false);
    expect(config.pagerduty.url).toBe('https://events.eu.pagerduty.com');
    expect(config.routes.default?.keys.map((k) => [k.alias, k.key.reveal()])).toEqual([
      ['default-1', KEY_A],
      ['secondary', KEY_B],
    ]);
    expect(config.routes.default?.ratePerMinute).toBe(100);
    expect(config.routes.security?.keys.map((k) => [k.alias, k.key.reveal()])).toEqual([['sec', KEY_C]]);
    expect(config.rules.paths).toEqual([join(dir, 'my-rules')]);
    expect(config.spool.dir).toBe(join(dir, 'spool'));
    expect(config.delivery.maxAgeSeconds).toBe(3600);
  });

  it('keeps secrets out of JSON, inspect and string conversion of the whole config', () => {
    const config = loadConfig({
      file: `${FIXTURES}/valid-full.yaml`,
      env: { PD_RELAY_TEST_PORT: '8443', PD_RELAY_TEST_KEY: KEY_A },
    });
    for (const text of [
      JSON.stringify(config),
      inspect(config, { depth: 10 }),
      `${config.routes.default?.keys[0]?.key}`,
    ]) {
      for (const secret of [KEY_A, KEY_B, KEY_C, 'correct-horse-battery']) expect(text).not.toContain(secret);
    }
    expect(JSON.stringify(config)).toContain('[redacted]');
  });

  it.each([
    [
      '$$ is a literal dollar',
      'log:\n  level: info\nsns:\n  certHostPattern: "^a$$"\n',
      (c: ReturnType<typeof loadConfig>) => c.sns.certHostPattern,
      '^a$',
    ],
    [
      '${VAR:-default} applies when unset',
      'server:\n  port: ${NOPE:-9000}\n',
      (c: ReturnType<typeof loadConfig>) => c.server.port,
      9000,
    ],
    [
      'numeric strings become numbers',
      'server:\n  port: "${PORT}"\n',
      (c: ReturnType<typeof loadConfig>) => c.server.port,
      8123,
    ],
    [
      'booleans from env',
      'sns:\n  autoConfirm: ${AUTO}\n',
      (c: ReturnType<typeof loadConfig>) => c.sns.autoConfirm,
      false,
    ],
  ])('%s', (_name, text, pick, expected) => {
    const { config, problems } = parseConfig(text, 'c.yaml', {
      env: { PORT: '8123', AUTO: 'false' },
      baseDir: '/',
    });
    expect(problems).toEqual([]);
    expect(pick(config as ReturnType<typeof loadConfig>)).toBe(expected);
  });

  it('an env value cannot inject YAML structure', () => {
    const { config, problems } = parseConfig('server:\n  host: ${HOST}\n', 'c.yaml', {
      env: { HOST: 'x\nmetrics: {port: 1}' },
      baseDir: '/',
    });
    expect(problems).toEqual([]);
    expect(config?.server.host).toBe('x\nmetrics: {port: 1}');
    expect(config?.metrics.port).toBe(9464);
  });
});

describe('config: secrets from files', () => {
  const dir = mkdtempSync(join(tmpdir(), 'pd-relay-config-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('trims the trailing newline Kubernetes Secrets usually carry', () => {
    writeFileSync(join(dir, 'key'), `${KEY_C}\n`);
    writeFileSync(join(dir, 'pw'), 'pa ss\n\n');
    const text = [
      'server:',
      '  basicAuth: { username: sns, passwordFile: pw }',
      'sns:',
      '  topics: ["arn:aws:sns:*:123456789012:*"]',
      'routes:',
      '  default:',
      '    keys: [{ alias: k, keyFile: key }]',
    ].join('\n');
    const { config, problems } = parseConfig(text, 'c.yaml', { env: {}, baseDir: dir });
    expect(problems).toEqual([]);
    expect(config?.routes.default?.keys[0]?.key.reveal()).toBe(KEY_C);
    expect(config?.server.basicAuth?.password.reveal()).toBe('pa ss');
  });
});
