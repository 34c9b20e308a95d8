import { describe, expect, it } from 'vitest';
import {
  decodeAttributes,
  decodeNotification,
  detectKind,
  parseMessage,
  parseTopicArn,
} from '../../src/decode/decode.js';
import { envelopeFromSample, wrapMessage } from '../../src/decode/sample.js';
import type { NotificationEnvelope } from '../../src/decode/types.js';

const envelope = (over: Partial<NotificationEnvelope> = {}): NotificationEnvelope => ({
  MessageId: '95df01b4-ee98-5cb9-9903-4c221d41eb5e',
  TopicArn: 'arn:aws:sns:eu-west-1:210987654321:ops-alarms',
  Subject: 'ALARM: "x" in EU (Ireland)',
  Message: '{"AlarmName":"x","NewStateValue":"ALARM"}',
  Timestamp: '2024-03-01T10:15:42.180Z',
  ...over,
});

describe('decodeNotification', () => {
  it('builds the input document from the envelope', () => {
    const doc = decodeNotification(
      envelope({ MessageAttributes: { team: { Type: 'String', Value: 'payments' } } }),
      'ops',
    );
    expect(doc).toEqual({
      kind: 'cloudwatch-alarm',
      endpoint: 'ops',
      topic: 'arn:aws:sns:eu-west-1:210987654321:ops-alarms',
      region: 'eu-west-1',
      account: '210987654321',
      subject: 'ALARM: "x" in EU (Ireland)',
      timestamp: '2024-03-01T10:15:42.180Z',
      messageId: '95df01b4-ee98-5cb9-9903-4c221d41eb5e',
      attributes: { team: 'payments' },
      message: { AlarmName: 'x', NewStateValue: 'ALARM' },
    });
  });

  it.each([
    ['missing', {}],
    ['null (as Lambda delivers it)', { Subject: null }],
  ])('a %s Subject is null', (_name, over) => {
    const env = envelope(over);
    if (!('Subject' in over)) delete env.Subject;
    expect(decodeNotification(env, 'default').subject).toBeNull();
  });

  it('never throws on a malformed envelope', () => {
    const bad = { MessageId: 7, TopicArn: null, Message: undefined } as unknown as NotificationEnvelope;
    const doc = decodeNotification(bad, 'default');
    expect(doc).toMatchObject({
      kind: 'text',
      topic: '',
      region: '',
      account: '',
      messageId: '',
      message: '',
    });
  });
});

describe('detectKind', () => {
  it.each([
    [
      'classic single-metric alarm',
      { AlarmName: 'a', NewStateValue: 'ALARM', Trigger: { MetricName: 'CPU' } },
      'cloudwatch-alarm',
    ],
    [
      'metric-math alarm',
      { AlarmName: 'a', NewStateValue: 'OK', Trigger: { Metrics: [{ Expression: 'm1*1' }] } },
      'cloudwatch-alarm',
    ],
    [
      'anomaly-detection alarm',
      {
        AlarmName: 'a',
        NewStateValue: 'ALARM',
        Trigger: { Metrics: [{ Expression: 'ANOMALY_DETECTION_BAND(m1, 2)' }], ThresholdMetricId: 'ad1' },
      },
      'cloudwatch-alarm',
    ],
    [
      'composite alarm (no Trigger)',
      { AlarmName: 'a', NewStateValue: 'ALARM', AlarmRule: 'ALARM(b)' },
      'cloudwatch-alarm',
    ],
    [
      'metric-filter alarm',
      {
        AlarmName: 'a',
        NewStateValue: 'OK',
        Trigger: { MetricName: 'Errors', Namespace: 'LogMetrics', Dimensions: [], Unit: null },
      },
      'cloudwatch-alarm',
    ],
    [
      'EventBridge event',
      { 'detail-type': 'GuardDuty Finding', source: 'aws.guardduty', detail: {} },
      'eventbridge',
    ],
    [
      'EventBridge event with a null detail',
      { 'detail-type': 'X', source: 'custom', detail: null },
      'eventbridge',
    ],
    ['CloudTrail delivery notice', { s3Bucket: 'b', s3ObjectKey: ['k1', 'k2'] }, 'cloudtrail-delivery'],
    ['alarm-like without a state', { AlarmName: 'a' }, 'json'],
    ['EventBridge-like without detail', { 'detail-type': 'X', source: 'custom' }, 'json'],
    ['JSON array', [1, 2], 'json'],
    ['text', 'hello', 'text'],
  ])('%s → %s', (_name, message, kind) => {
    expect(detectKind(message)).toBe(kind);
  });
});

describe('parseMessage', () => {
  it.each([
    ['{"a":1}', { a: 1 }],
    ['  \n[1,2]', [1, 2]],
    ['{not json', '{not json'],
    ['42', '42'],
    ['true', 'true'],
    ['"quoted"', '"quoted"'],
    ['', ''],
  ])('%j → %j', (raw, parsed) => {
    expect(parseMessage(raw)).toEqual(parsed);
  });
});

describe('decodeAttributes', () => {
  it('decodes each SNS data type', () => {
    expect(
      decodeAttributes({
        s: { Type: 'String', Value: 'payments' },
        n: { Type: 'Number', Value: '2.5' },
        custom: { Type: 'Number.int', Value: '7' },
        arr: { Type: 'String.Array', Value: '["a", 1, true, null]' },
        bin: { Type: 'Binary', Value: 'AAEC' },
        badNumber: { Type: 'Number', Value: 'many' },
        badArray: { Type: 'String.Array', Value: '[oops' },
      }),
    ).toEqual({
      s: 'payments',
      n: 2.5,
      custom: 7,
      arr: ['a', 1, true, null],
      bin: 'AAEC',
      badNumber: 'many',
      badArray: '[oops',
    });
  });

  it('is empty without attributes', () => {
    expect(decodeAttributes(undefined)).toEqual({});
  });
});

describe('parseTopicArn', () => {
  it.each([
    ['arn:aws:sns:us-east-1:123456789012:alarms', 'us-east-1', '123456789012'],
    ['arn:aws-cn:sns:cn-north-1:123456789012:a', 'cn-north-1', '123456789012'],
    ['not-an-arn', '', ''],
  ])('%s', (arn, region, account) => {
    expect(parseTopicArn(arn)).toEqual({ region, account });
  });
});

describe('envelopeFromSample', () => {
  it('takes a complete SNS envelope as it is', () => {
    const text = JSON.stringify({ Type: 'Notification', ...envelope(), SignatureVersion: '1' });
    const { envelope: env, shape } = envelopeFromSample(text);
    expect(shape).toBe('sns-envelope');
    expect(env.TopicArn).toBe('arn:aws:sns:eu-west-1:210987654321:ops-alarms');
  });

  it('unwraps a Lambda SNS event', () => {
    const sns = { ...envelope(), Type: 'Notification', Subject: null, MessageAttributes: {} };
    const { envelope: env, shape } = envelopeFromSample(
      JSON.stringify({ Records: [{ EventSource: 'aws:sns', Sns: sns }] }),
    );
    expect(shape).toBe('lambda-sns-event');
    expect(env.Message).toBe(sns.Message);
  });

  it('wraps a bare EventBridge event in a topic of its region and account', () => {
    const text = JSON.stringify({
      'detail-type': 'X',
      source: 's',
      account: '111122223333',
      region: 'ap-south-1',
      detail: {},
    });
    const { envelope: env, shape } = envelopeFromSample(text);
    expect(shape).toBe('message');
    expect(env.TopicArn).toBe('arn:aws:sns:ap-south-1:111122223333:pd-relay-sample');
    expect(env.Message).toBe(text);
  });

  it('takes region and account of a bare alarm from its ARN', () => {
    const msg = {
      AlarmName: 'a',
      NewStateValue: 'ALARM',
      AlarmArn: 'arn:aws-cn:cloudwatch:cn-north-1:123456789012:alarm:a',
    };
    expect(wrapMessage(JSON.stringify(msg), msg).TopicArn).toBe(
      'arn:aws-cn:sns:cn-north-1:123456789012:pd-relay-sample',
    );
  });

  it('a CloudTrail log file (Records without Sns) is a bare message', () => {
    expect(envelopeFromSample('{"Records":[{"eventName":"CreateUser"}]}').shape).toBe('message');
  });
});
