import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { run } from '../../src/cli/main.js';
import { captureIo } from '../helpers/io.js';

const dir = mkdtempSync(join(tmpdir(), 'pd-relay-cli-rules-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const write = (name: string, text: string) => {
  const file = join(dir, name);
  mkdirSync(join(file, '..'), { recursive: true });
  writeFileSync(file, text);
  return file;
};

// A dry-run config (no keys) with a second route and a rules directory.
const rulesDir = join(dir, 'team-rules');
mkdirSync(rulesDir);
writeFileSync(
  join(rulesDir, 'payments.yaml'),
  [
    '- name: payments-json',
    '  match: { kind: [json], message: { team: [payments] } }',
    '  route: team-payments',
    "  dedup_key: 'payments/{{ message.id }}'",
    "  payload: { summary: 'Payments: {{ message.text }}', severity: critical }",
    '  tests:',
    '    - input: { message: { team: payments, id: 7, text: card declines up } }',
    '      expect: { action: trigger, route: team-payments, fields: { payload.severity: critical } }',
  ].join('\n'),
);
const config = write(
  'config.yaml',
  [
    'routes:',
    '  default: { keys: [] }',
    '  team-payments: { keys: [] }',
    'rules:',
    '  paths: [team-rules]',
  ].join('\n'),
);

describe('pd-relay rules lint', () => {
  it('passes on the built-in rules', async () => {
    const io = captureIo();
    expect(await run(['rules', 'lint'], io)).toBe(0);
    expect(io.stdout).toEqual([expect.stringMatching(/^OK: \d+ rules in 7 files\.$/)]);
  });

  it('checks the configured paths with the configured routes', async () => {
    const io = captureIo();
    expect(await run(['rules', 'lint', '--config', config], io)).toBe(0);
    expect(io.stdout[0]).toMatch(/in 8 files/);
  });

  it('prints every problem as file:line:col path: message and exits 1', async () => {
    const bad = write(
      'bad.yaml',
      [
        '- name: one',
        '  route: team-payments',
        '  match: { source: [{ prefx: aws. }] }',
        '- name: two',
        '  payload:',
        "    summary: '{{ message | nofilter }}'",
        '    severity: critical',
        '  actoin: drop',
      ].join('\n'),
    );
    const io = captureIo();
    expect(await run(['rules', 'lint', bad], io)).toBe(1);
    const file = bad.startsWith(process.cwd()) ? bad.slice(process.cwd().length + 1) : bad;
    expect(io.stdout).toEqual([
      `${file}:2:10 [0].route: Unknown route "team-payments"; configured routes: default`,
      `${file}:3:23 [0].match.source[0].prefx: Unknown operator "prefx" (did you mean "prefix"?)`,
      // Rule two's unknown key does not hide its broken template.
      `${file}:6:15 [1].payload.summary: Liquid: undefined filter: nofilter`,
      `${file}:8:3 [1].actoin: Unknown key "actoin" (did you mean "action"?)`,
    ]);
    expect(io.stderr).toEqual(['4 problems in 1 file.']);
  });

  it('reports every problem of every file in one run, file by file', async () => {
    const fixtures = join(import.meta.dirname, '../fixtures/rules/two-files');
    const cfg = write('two-routes.yaml', 'routes: { default: { keys: [] }, payments: { keys: [] } }\n');
    const io = captureIo();
    expect(await run(['rules', 'lint', '--config', cfg, fixtures], io)).toBe(1);
    const rel = (f: string) => (f.startsWith(process.cwd()) ? f.slice(process.cwd().length + 1) : f);
    const a = rel(join(fixtures, 'a.yaml'));
    const b = rel(join(fixtures, 'b.yaml'));
    expect(io.stdout).toEqual([
      `${a}:4:16 [0].match.source[0].prefx: Unknown operator "prefx" (did you mean "prefix"?)`,
      `${a}:6:3 [0].severty: Unknown key "severty" (expected one of: name, description, enabled, match, continue, fallback, for_each, route, action, dedup_key, payload, links, images, client, client_url, tests)`,
      `${b}:2:10 [0].route: Unknown route "paymnets" (did you mean "payments"?); configured routes: default, payments`,
      `${b}:4:15 [0].payload.summary: Liquid: tag {% if message.x %} not closed`,
    ]);
    expect(io.stderr).toEqual(['4 problems in 2 files.']);
  });
});

describe('pd-relay rules test', () => {
  it('runs every tests: block and reports pass/fail', async () => {
    const io = captureIo();
    expect(await run(['rules', 'test', '--config', config], io)).toBe(0);
    expect(io.stdout).toContainEqual(
      expect.stringMatching(/^PASS \S*team-rules\/payments\.yaml:7:7 payments-json: /),
    );
    expect(io.stdout.at(-1)).toMatch(/^\d+ passed, 0 failed \(\d+ tests in 8 files\)\.$/);
  });

  it('exits 1 when a test fails and says why', async () => {
    const failing = join(dir, 'failing');
    write(
      'failing/a.yaml',
      [
        '- name: mine',
        '  match: { kind: [text], subject: [ping] }',
        '  payload: { severity: info }',
        '  tests:',
        '    - name: severity check',
        '      input: { message: hello, subject: ping }',
        '      expect: { fields: { payload.severity: critical } }',
      ].join('\n'),
    );
    const cfg = write('failing.yaml', `rules: { paths: [${failing}] }\n`);
    const io = captureIo();
    expect(await run(['rules', 'test', '--config', cfg], io)).toBe(1);
    const at = io.stdout.findIndex((l) => l.includes('FAIL') && l.includes('mine: severity check'));
    expect(at).toBeGreaterThanOrEqual(0);
    expect(io.stdout[at + 1]).toBe('     Expected payload.severity to be "critical", got "info"');
    expect(io.stdout.at(-1)).toMatch(/, 1 failed/);
  });

  it('--json with files: one object per file per line, in input order', async () => {
    const alarm = write(
      'samples/alarm.json',
      JSON.stringify({
        AlarmName: 'api-5xx',
        AWSAccountId: '123456789012',
        NewStateValue: 'ALARM',
        NewStateReason: 'Threshold Crossed',
        StateChangeTime: '2024-03-01T10:15:42.104+0000',
        AlarmArn: 'arn:aws:cloudwatch:us-east-1:123456789012:alarm:api-5xx',
        Trigger: { MetricName: '5XXError', Namespace: 'AWS/ApiGateway', Dimensions: [] },
      }),
    );
    const delivery = write('samples/delivery.json', JSON.stringify({ s3Bucket: 'b', s3ObjectKey: ['k'] }));
    const envelope = write(
      'samples/envelope.json',
      JSON.stringify({
        Type: 'Notification',
        MessageId: 'e2534930-337d-5561-8636-1a2be5ba802e',
        TopicArn: 'arn:aws:sns:us-west-2:123456789012:payments',
        Message: JSON.stringify({ team: 'payments', id: 9, text: 'refunds stuck' }),
        Timestamp: '2024-03-01T10:00:00.000Z',
        SignatureVersion: '1',
        Signature: 'x',
      }),
    );
    const io = captureIo();
    expect(await run(['rules', 'test', '--config', config, '--json', alarm, delivery, envelope], io)).toBe(0);
    const lines = io.stdout.map((l) => JSON.parse(l));
    expect(lines).toHaveLength(3);
    expect(lines[0]).toEqual({
      file: alarm,
      rule: 'cloudwatch-alarm',
      action: 'trigger',
      events: [
        {
          route: 'default',
          event: expect.objectContaining({
            event_action: 'trigger',
            dedup_key: 'arn:aws:cloudwatch:us-east-1:123456789012:alarm:api-5xx',
          }),
        },
      ],
    });
    expect(lines[0].events[0].event).not.toHaveProperty('routing_key');
    expect(lines[1]).toEqual({ file: delivery, rule: 'cloudtrail-log-delivery', action: 'drop', events: [] });
    expect(lines[2]).toMatchObject({
      file: envelope,
      rule: 'payments-json',
      action: 'trigger',
      events: [
        {
          route: 'team-payments',
          event: { dedup_key: 'payments/9', payload: { summary: 'Payments: refunds stuck' } },
        },
      ],
    });
  });

  it('shows readable text without --json, and exits 1 for a file it cannot read', async () => {
    const text = write('samples/text.txt', 'Backup failed on db-1\n');
    const io = captureIo();
    expect(await run(['rules', 'test', text, join(dir, 'nope.json')], io)).toBe(1);
    expect(io.stdout[0]).toBe(`${text} (bare message): rule catch-all -> trigger, 1 event`);
    expect(io.stdout).toContain('  route default:');
    expect(io.stdout.join('\n')).toContain('"summary": "Backup failed on db-1"');
    expect(io.stderr).toEqual([`Cannot read ${join(dir, 'nope.json')}: ENOENT`]);
  });

  it.each([
    [['rules'], /Missing subcommand: lint or test/],
    [['rules', 'frob'], /Unknown subcommand "frob"/],
    [['rules', 'test', '--bogus'], /Unknown option '--bogus'/],
  ])('%j is a usage error (exit 2)', async (argv, message) => {
    const io = captureIo();
    expect(await run(argv, io)).toBe(2);
    expect(io.stderr.join('\n')).toMatch(message);
    expect(io.stderr.join('\n')).toMatch(/Usage: pd-relay rules lint/);
  });
});
