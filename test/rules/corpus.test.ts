import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { decodeNotification } from '../../src/decode/decode.js';
import { envelopeFromSample, wrapMessage } from '../../src/decode/sample.js';
import type { InputDocument } from '../../src/decode/types.js';
import { formatProblem } from '../../src/errors.js';
import { MAX_EVENT_BYTES } from '../../src/pagerduty/limits.js';
import { createRuleEngine } from '../../src/rules/engine.js';
import { loadRuleSet } from '../../src/rules/loader.js';
import { getPath, parsePath } from '../../src/rules/path.js';
import type { Evaluation } from '../../src/rules/types.js';
import { CORPUS_MISSING, corpusRoot, jsonFiles } from './corpus.js';

const root = corpusRoot();
if (!root) console.warn(CORPUS_MISSING);

const loaded = loadRuleSet();
if (!loaded.ok) throw new Error(loaded.problems.map(formatProblem).join('\n'));
const engine = createRuleEngine(loaded.ruleSet);

function evaluateSample(file: string): { doc: InputDocument; ev: Evaluation } {
  const { envelope } = envelopeFromSample(readFileSync(file, 'utf8'));
  const doc = decodeNotification(envelope, 'default');
  return { doc, ev: engine.evaluate(doc) };
}

/** The fields of the first event, by path (`payload.severity`). */
function fields(ev: Evaluation, paths: string[]): Record<string, unknown> {
  const body = ev.events[0]?.body;
  return Object.fromEntries(paths.map((p) => [p, getPath(body, parsePath(p) as (string | number)[])]));
}

interface Expectation {
  kind: InputDocument['kind'];
  rule: string;
  action: string;
  count: number;
  fields?: Record<string, unknown>;
}

// Every message file of the corpus and what the built-in rules make of it.
const MESSAGES: Record<string, Expectation> = {
  'cloudwatch-alarm-sns/classic-metric-ALARM.rheoceros-REAL.message.json': {
    kind: 'cloudwatch-alarm',
    rule: 'cloudwatch-alarm',
    action: 'trigger',
    count: 1,
    fields: {
      dedup_key:
        'arn:aws:cloudwatch:us-east-1:427809481713:alarm:if-sim-app_427809481713_us-east-1-metric_emitting_node_failure',
      'payload.severity': 'error',
      'payload.source': '427809481713/us-east-1',
      'payload.component': 'sim-app_427809481713_us-east-1',
      'payload.class': 'IExecutionFailureHook',
      'payload.timestamp': '2021-11-10T02:45:55.640Z',
      'links[0].href':
        'https://us-east-1.console.aws.amazon.com/cloudwatch/home?region=us-east-1#alarmsV2:alarm/if-sim-app_427809481713_us-east-1-metric_emitting_node_failure',
    },
  },
  'cloudwatch-alarm-sns/composite-ALARM.rheoceros-REAL.message.json': {
    kind: 'cloudwatch-alarm',
    rule: 'cloudwatch-alarm',
    action: 'trigger',
    count: 1,
    fields: {
      dedup_key:
        'arn:aws:cloudwatch:us-east-1:427809481713:alarm:if-sim-app_427809481713_us-east-1-test_node_monitor',
      'payload.class': 'composite',
    },
  },
  'cloudwatch-alarm-sns/classic-metric-ALARM.aws-lambda-go.message.json': {
    kind: 'cloudwatch-alarm',
    rule: 'cloudwatch-alarm',
    action: 'trigger',
    count: 1,
    fields: { 'payload.component': 'AWS/EC2', 'payload.class': 'NetworkOut' },
  },
  'cloudwatch-alarm-sns/classic-metric-ALARM.aws-lambda-go.lambda-event.orig.json': {
    kind: 'cloudwatch-alarm',
    rule: 'cloudwatch-alarm',
    action: 'trigger',
    count: 1,
  },
  'cloudwatch-alarm-sns/metric-math-ALARM.aws-lambda-go.message.json': {
    kind: 'cloudwatch-alarm',
    rule: 'cloudwatch-alarm',
    action: 'trigger',
    count: 1,
    fields: { 'payload.component': 'AWS/EC2', 'payload.class': 'NetworkOut' },
  },
  'cloudwatch-alarm-sns/metric-math-ALARM.aws-lambda-go.lambda-event.orig.json': {
    kind: 'cloudwatch-alarm',
    rule: 'cloudwatch-alarm',
    action: 'trigger',
    count: 1,
  },
  // No AlarmArn in this one: the key is built from account, the topic's region and the name.
  'cloudwatch-alarm-sns/log-metric-filter-OK.notify-slack.message.json': {
    kind: 'cloudwatch-alarm',
    rule: 'cloudwatch-alarm',
    action: 'resolve',
    count: 1,
    fields: {
      event_action: 'resolve',
      dedup_key: 'arn:aws:cloudwatch:us-east-1:735598076380:alarm:DBMigrationRequired',
      payload: undefined,
    },
  },
  'cloudwatch-alarm-sns/log-metric-filter-OK.notify-slack.lambda-event.orig.json': {
    kind: 'cloudwatch-alarm',
    rule: 'cloudwatch-alarm',
    action: 'resolve',
    count: 1,
  },
  'eventbridge/cloudwatch-single-metric-alarm-state-change.awsdocs.json': {
    kind: 'eventbridge',
    rule: 'cloudwatch-alarm-eventbridge',
    action: 'trigger',
    count: 1,
    fields: {
      dedup_key: 'arn:aws:cloudwatch:us-east-1:123456789012:alarm:ServerCpuTooHigh',
      'payload.component': 'AWS/EC2',
      'payload.class': 'CPUUtilization',
      'payload.timestamp': '2019-10-02T17:04:40.989Z',
    },
  },
  'eventbridge/cloudwatch-metric-math-alarm-state-change.awsdocs.json': {
    kind: 'eventbridge',
    rule: 'cloudwatch-alarm-eventbridge',
    action: 'trigger',
    count: 1,
    fields: { 'payload.class': 'NetworkIn' },
  },
  'eventbridge/cloudwatch-anomaly-detection-alarm-state-change.awsdocs.json': {
    kind: 'eventbridge',
    rule: 'cloudwatch-alarm-eventbridge',
    action: 'trigger',
    count: 1,
    fields: {
      dedup_key: 'arn:aws:cloudwatch:us-east-1:123456789012:alarm:EC2 CPU Utilization Anomaly',
      'links[0].href':
        'https://us-east-1.console.aws.amazon.com/cloudwatch/home?region=us-east-1#alarmsV2:alarm/EC2%20CPU%20Utilization%20Anomaly',
    },
  },
  'eventbridge/cloudwatch-composite-alarm-with-suppressor-state-change.awsdocs.json': {
    kind: 'eventbridge',
    rule: 'cloudwatch-alarm-eventbridge',
    action: 'trigger',
    count: 1,
    fields: { 'payload.class': 'composite' },
  },
  'eventbridge/cloudwatch-metric-alarm-update.awsdocs.json': {
    kind: 'eventbridge',
    rule: 'cloudwatch-alarm-configuration-change',
    action: 'drop',
    count: 0,
  },
  'eventbridge/aws-api-call-via-cloudtrail-s3-putobject.awsdocs.json': {
    kind: 'eventbridge',
    rule: 'cloudtrail-other',
    action: 'drop',
    count: 0,
  },
  'eventbridge/guardduty-finding.aws-to-slack.message.json': {
    kind: 'eventbridge',
    rule: 'guardduty-finding',
    action: 'trigger',
    count: 1,
    fields: { dedup_key: 'aws.guardduty/345rf3ff', 'payload.severity': 'info' },
  },
  'eventbridge/securityhub-findings-imported.aws-to-slack-REAL.message.json': {
    kind: 'eventbridge',
    rule: 'securityhub-finding',
    action: 'resolve',
    count: 1,
    fields: {
      event_action: 'resolve',
      dedup_key:
        'arn:aws:securityhub:us-west-2:229111641549:subscription/cis-aws-foundations-benchmark/v/1.2.0/4.2/finding/f80f3994-e294-48cf-8042-22cedd10a679',
    },
  },
  'eventbridge/aws-health-event.notify-slack.json': {
    kind: 'eventbridge',
    rule: 'aws-health-event',
    action: 'trigger',
    count: 1,
    fields: {
      'payload.severity': 'error',
      dedup_key:
        'arn:aws:health:us-west-2::event/AWS_EC2_INSTANCE_STORE_DRIVE_PERFORMANCE_DEGRADED_90353408594353980::123456789012',
    },
  },
  'eventbridge/aws-health-event-acm-renewal.aws-to-slack.json': {
    kind: 'eventbridge',
    rule: 'aws-health-event',
    action: 'trigger',
    count: 1,
    fields: { 'payload.severity': 'warning' },
  },
  'cloudtrail-sns/log-delivery-single.awsdocs.json': {
    kind: 'cloudtrail-delivery',
    rule: 'cloudtrail-log-delivery',
    action: 'drop',
    count: 0,
  },
  'cloudtrail-sns/log-delivery-multiple.awsdocs.json': {
    kind: 'cloudtrail-delivery',
    rule: 'cloudtrail-log-delivery',
    action: 'drop',
    count: 0,
  },
  'sns-envelopes/ecs-ami-update.awsdocs-REAL.envelope.json': {
    kind: 'json',
    rule: 'catch-all',
    action: 'trigger',
    count: 1,
    fields: {
      dedup_key: 'sns/e2534930-337d-5561-8636-1a2be5ba802e',
      'payload.source': 'arn:aws:sns:us-west-2:917786371007:ecs-optimized-amazon-ami-update',
      'payload.severity': 'warning',
    },
  },
  'CONSTRUCTED/securityhub-findings-imported-x92-under-256KiB.message.json': {
    kind: 'eventbridge',
    rule: 'securityhub-finding',
    action: 'resolve',
    count: 92,
  },
};

describe.skipIf(!root)('built-in rules on the real corpus messages', () => {
  const dir = join(root ?? '', 'messages');

  it('every message file of the corpus has an expectation here', () => {
    const files = jsonFiles(dir).filter((f) => !f.startsWith('cloudtrail-records/'));
    expect(files.sort()).toEqual(Object.keys(MESSAGES).sort());
  });

  it.each(Object.entries(MESSAGES))('%s', (file, exp) => {
    const { doc, ev } = evaluateSample(join(dir, file));
    expect(doc.kind).toBe(exp.kind);
    expect({ rule: ev.rule, action: ev.action, count: ev.events.length }).toEqual({
      rule: exp.rule,
      action: exp.action,
      count: exp.count,
    });
    if (exp.fields) expect(fields(ev, Object.keys(exp.fields))).toEqual(exp.fields);
    for (const e of ev.events) {
      expect(Buffer.byteLength(JSON.stringify(e.body))).toBeLessThanOrEqual(MAX_EVENT_BYTES);
      expect(e.dedupKey === null || e.dedupKey.length <= 255).toBe(true);
    }
  });

  it('the 92-finding Security Hub event yields one event per finding, each with its own key', () => {
    const { ev } = evaluateSample(
      join(dir, 'CONSTRUCTED/securityhub-findings-imported-x92-under-256KiB.message.json'),
    );
    expect(new Set(ev.events.map((e) => e.dedupKey)).size).toBe(92);
  });
});

/**
 * The CloudTrail records of the corpus are the `detail` of the EventBridge events CloudTrail
 * produces; wrapped the way EventBridge wraps them, they go through the CloudTrail rules.
 */
function cloudTrailEvent(record: Record<string, unknown>): Record<string, unknown> {
  const signIn = record.eventType === 'AwsConsoleSignIn';
  const service = String(record.eventSource ?? '').split('.')[0];
  const identity = (record.userIdentity ?? {}) as Record<string, unknown>;
  return {
    version: '0',
    id: '11111111-2222-4333-8444-555555555555',
    'detail-type': signIn ? 'AWS Console Sign In via CloudTrail' : 'AWS API Call via CloudTrail',
    source: `aws.${service}`,
    account: record.recipientAccountId ?? identity.accountId,
    time: record.eventTime,
    region: record.awsRegion,
    resources: [],
    detail: record,
  };
}

const RECORDS: Record<string, { rule: string; action: string; severity?: string }> = {
  'consolelogin-root-success-nomfa.awsdocs.json': {
    rule: 'cloudtrail-root-account-usage',
    action: 'trigger',
    severity: 'critical',
  },
  'consolelogin-root-failure.awsdocs.json': {
    rule: 'cloudtrail-root-account-usage',
    action: 'trigger',
    severity: 'critical',
  },
  'consolelogin-iamuser-failure.awsdocs.json': {
    rule: 'cloudtrail-console-signin-failure',
    action: 'trigger',
    severity: 'warning',
  },
  'consolelogin-iamuser-success-nomfa.awsdocs.json': {
    rule: 'cloudtrail-console-signin-without-mfa',
    action: 'trigger',
    severity: 'error',
  },
  'cloudtrail-updatetrail-error.awsdocs.json': {
    rule: 'cloudtrail-trail-change',
    action: 'trigger',
    severity: 'error',
  },
  'ec2-stopinstances.awsdocs.json': { rule: 'cloudtrail-other', action: 'drop' },
  'iam-createuser.awsdocs.json': { rule: 'cloudtrail-other', action: 'drop' },
};

describe.skipIf(!root)(
  'CloudTrail rules on the corpus CloudTrail records (as EventBridge delivers them)',
  () => {
    const dir = join(root ?? '', 'messages', 'cloudtrail-records');

    it('every record file has an expectation here', () => {
      expect(jsonFiles(dir)).toEqual(Object.keys(RECORDS).sort());
    });

    it.each(Object.entries(RECORDS))('%s', (file, exp) => {
      const parsed = JSON.parse(readFileSync(join(dir, file), 'utf8')) as { Records?: unknown[] };
      const record = (parsed.Records?.[0] ?? parsed) as Record<string, unknown>;
      const event = cloudTrailEvent(record);
      const raw = JSON.stringify(event);
      const doc = decodeNotification(wrapMessage(raw, event), 'default');
      expect(doc.kind).toBe('eventbridge');
      const ev = engine.evaluate(doc);
      expect({ rule: ev.rule, action: ev.action }).toEqual({ rule: exp.rule, action: exp.action });
      if (exp.severity) {
        expect(fields(ev, ['payload.severity', 'dedup_key'])).toEqual({
          'payload.severity': exp.severity,
          dedup_key: record.eventID
            ? `aws.cloudtrail/${record.eventID}`
            : 'aws.cloudtrail/11111111-2222-4333-8444-555555555555',
        });
      }
    });
  },
);

describe.skipIf(!root)('AWS-signed SNS envelopes of the corpus decode and page', () => {
  const signed = join(root ?? '', 'sns-signed');
  it.each<[string, Partial<InputDocument>, string, string]>([
    [
      'amzn-rheoceros/DERIVED-http-cloudwatch-metric-alarm-ALARM-sv1.json',
      { kind: 'cloudwatch-alarm', region: 'us-east-1', account: '427809481713' },
      'cloudwatch-alarm',
      'if-sim-app_427809481713_us-east-1-metric_emitting_node_failure is ALARM: ',
    ],
    [
      'jrnyai-aws-to-slack/DERIVED-http-securityhub-findings-imported-sv1.json',
      { kind: 'eventbridge', subject: null },
      'securityhub-finding',
      '',
    ],
    [
      'aws-php-sns-message-validator/http-04-sv2-subject.json',
      { kind: 'text', subject: 'Hello world' },
      'catch-all',
      'Hello world',
    ],
    [
      'deep-c-django-sns-view/sns_notification.json',
      {
        kind: 'json',
        attributes: {
          'AWS.SNS.MOBILE.MPNS.Type': 'token',
          'AWS.SNS.MOBILE.MPNS.NotificationClass': 'realtime',
          'AWS.SNS.MOBILE.WNS.Type': 'wns/badge',
        },
      },
      'catch-all',
      'With Subject',
    ],
  ])('%s', (file, docFields, rule, summaryStart) => {
    const { doc, ev } = evaluateSample(join(signed, file));
    expect(doc).toMatchObject(docFields);
    expect(ev.rule).toBe(rule);
    const summary = fields(ev, ['payload.summary'])['payload.summary'];
    if (summaryStart) expect(String(summary).startsWith(summaryStart)).toBe(true);
  });
});
