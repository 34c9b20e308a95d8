import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { decodeNotification } from '../../src/decode/decode.js';
import { formatProblem } from '../../src/errors.js';
import { createRuleEngine } from '../../src/rules/engine.js';
import { loadRuleSet, type RuleSet } from '../../src/rules/loader.js';
import { envelopeFromInput, runRuleTests } from '../../src/rules/rule-tests.js';

function load(paths: string[] = []): RuleSet {
  const result = loadRuleSet({ paths, checkTestFiles: true });
  if (!result.ok) throw new Error(result.problems.map(formatProblem).join('\n'));
  return result.ruleSet;
}

const builtins = load();

// CI runs the built-in rules' own `tests:` blocks here, as `pd-relay rules test` does.
describe('tests: blocks of the built-in rules', () => {
  const results = runRuleTests(builtins);
  it('there are tests for every source', () => {
    const rules = new Set(results.map((r) => r.rule));
    for (const rule of [
      'cloudwatch-alarm',
      'cloudwatch-alarm-eventbridge',
      'cloudwatch-alarm-insufficient-data',
      'cloudwatch-alarm-configuration-change',
      'cloudtrail-root-account-usage',
      'cloudtrail-other',
      'guardduty-finding',
      'securityhub-finding',
      'aws-health-event',
      'cloudtrail-log-delivery',
      'catch-all',
    ]) {
      expect(rules.has(rule), rule).toBe(true);
    }
  });
  it.each(results.map((r) => [`${r.location.file}:${r.location.line} ${r.name}`, r] as const))(
    '%s',
    (_name, r) => {
      expect(r.failures).toEqual([]);
      expect(r.notes).toEqual([]);
      expect(r.ok).toBe(true);
    },
  );
});

const alarm = (state: string, arn?: string) => ({
  topic: 'arn:aws:sns:eu-west-1:210987654321:ops-alarms',
  message: {
    AlarmName: 'orders-5xx',
    AlarmDescription: 'Orders API 5xx',
    AWSAccountId: '210987654321',
    NewStateValue: state,
    NewStateReason: 'Insufficient Data: 1 datapoint was unknown.',
    StateChangeTime: '2024-03-01T10:15:42.104+0000',
    ...(arn ? { AlarmArn: arn } : {}),
    Trigger: { MetricName: 'HTTPCode_Target_5XX_Count', Namespace: 'AWS/ApplicationELB', Dimensions: [] },
  },
});

const evaluate = (set: RuleSet, input: Parameters<typeof envelopeFromInput>[0]) =>
  createRuleEngine(set).evaluate(decodeNotification(envelopeFromInput(input), 'default'));

describe('INSUFFICIENT_DATA is overridable by name', () => {
  const dir = mkdtempSync(join(tmpdir(), 'pd-relay-override-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('dropped by default', () => {
    expect(evaluate(builtins, alarm('INSUFFICIENT_DATA'))).toMatchObject({
      rule: 'cloudwatch-alarm-insufficient-data',
      action: 'drop',
      events: [],
    });
  });

  it('disabling the built-in makes the alarm rules trigger it with severity warning', () => {
    const file = join(dir, 'disable.yaml');
    writeFileSync(file, '- name: cloudwatch-alarm-insufficient-data\n  enabled: false\n');
    const ev = evaluate(load([file]), alarm('INSUFFICIENT_DATA'));
    expect(ev.rule).toBe('cloudwatch-alarm');
    expect(ev.events[0]?.body).toMatchObject({
      event_action: 'trigger',
      dedup_key: 'arn:aws:cloudwatch:eu-west-1:210987654321:alarm:orders-5xx',
      payload: { severity: 'warning', summary: expect.stringContaining('orders-5xx is INSUFFICIENT_DATA') },
    });
  });

  it('a rule of the same name replaces it', () => {
    const file = join(dir, 'replace.yaml');
    writeFileSync(
      file,
      [
        '- name: cloudwatch-alarm-insufficient-data',
        '  match:',
        '    kind: [cloudwatch-alarm]',
        '    message: { NewStateValue: [INSUFFICIENT_DATA] }',
        '  action: trigger',
        "  dedup_key: '{{ message.AlarmArn }}'",
        '  payload:',
        "    summary: '{{ message.AlarmName }} has no data'",
        '    severity: info',
      ].join('\n'),
    );
    const set = load([file]);
    const ev = evaluate(
      set,
      alarm('INSUFFICIENT_DATA', 'arn:aws:cloudwatch:eu-west-1:210987654321:alarm:orders-5xx'),
    );
    expect(ev).toMatchObject({ rule: 'cloudwatch-alarm-insufficient-data', action: 'trigger' });
    expect(ev.events[0]?.body).toMatchObject({
      payload: { summary: 'orders-5xx has no data', severity: 'info' },
    });
    // Same place in the order: still before the general alarm rule, and its built-in tests went with it.
    expect(set.rules.findIndex((r) => r.name === 'cloudwatch-alarm-insufficient-data')).toBe(0);
    expect(runRuleTests(set).some((r) => r.rule === 'cloudwatch-alarm-insufficient-data')).toBe(false);
  });
});

describe('one alarm, one incident, whichever way it arrives', () => {
  const eventBridge = (state: string, resources: string[]) => ({
    message: {
      version: '0',
      id: '0d6fbb3c-5e65-40a8-8a5e-8c1c9b1f6f36',
      'detail-type': 'CloudWatch Alarm State Change',
      source: 'aws.cloudwatch',
      account: '210987654321',
      time: '2024-03-01T10:15:42Z',
      region: 'eu-west-1',
      resources,
      detail: { alarmName: 'orders-5xx', state: { value: state, reason: 'r' } },
    },
  });
  const key = (input: Parameters<typeof envelopeFromInput>[0]) =>
    evaluate(builtins, input).events[0]?.dedupKey;
  const arn = 'arn:aws:cloudwatch:eu-west-1:210987654321:alarm:orders-5xx';

  it.each([
    ['SNS with AlarmArn', alarm('ALARM', arn)],
    ['SNS without AlarmArn', alarm('ALARM')],
    ['EventBridge', eventBridge('ALARM', [arn])],
    ['EventBridge without resources', eventBridge('ALARM', [])],
    ['SNS OK', alarm('OK', arn)],
    ['EventBridge OK', eventBridge('OK', [arn])],
  ])('%s → the alarm ARN', (_name, input) => {
    expect(key(input)).toBe(arn);
  });

  it('raised through SNS, resolved through EventBridge', () => {
    const raised = evaluate(builtins, alarm('ALARM', arn)).events[0];
    const resolved = evaluate(builtins, eventBridge('OK', [arn])).events[0];
    expect(raised?.action).toBe('trigger');
    expect(resolved?.action).toBe('resolve');
    expect(resolved?.dedupKey).toBe(raised?.dedupKey);
  });
});

describe('tests: blocks in user files', () => {
  const dir = mkdtempSync(join(tmpdir(), 'pd-relay-user-tests-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('report every difference, and read input files relative to the rule file', () => {
    writeFileSync(join(dir, 'deploy.json'), JSON.stringify({ app: 'billing', status: 'failed' }));
    const file = join(dir, 'app.yaml');
    writeFileSync(
      file,
      [
        '- name: deploys',
        '  match: { kind: [json], message: { app: [{ exists: true }] } }',
        "  dedup_key: 'deploy/{{ message.app }}'",
        "  payload: { summary: 'Deploy of {{ message.app }} {{ message.status }}', severity: warning }",
        '  tests:',
        '    - name: right',
        '      input_file: deploy.json',
        '      expect: { action: trigger, fields: { payload.severity: warning, dedup_key: deploy/billing } }',
        '    - name: wrong',
        '      input: { message: { app: billing, status: failed } }',
        '      expect:',
        '        rule: catch-all',
        '        action: resolve',
        '        count: 2',
        "        fields: { payload.severity: critical, payload.summary: 'Deploy failed', links: null }",
      ].join('\n'),
    );
    const results = runRuleTests(load([file])).filter((r) => r.rule === 'deploys');
    expect(results.map((r) => [r.name, r.ok])).toEqual([
      ['right', true],
      ['wrong', false],
    ]);
    expect(results[1]?.failures).toEqual([
      'Expected rule "catch-all", got "deploys"',
      'Expected action "resolve", got "trigger"',
      'Expected 2 event(s), got 1',
      'Expected payload.severity to be "critical", got "warning"',
      'Expected payload.summary to be "Deploy failed", got "Deploy of billing failed"',
    ]);
  });
});
