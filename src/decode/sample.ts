import { parseMessage } from './decode.js';
import type { NotificationEnvelope } from './types.js';

/** What a sample file (for `pd-relay rules test FILE` and rule-file tests) turned out to hold. */
export type SampleShape = 'sns-envelope' | 'lambda-sns-event' | 'message';

/** Defaults for a bare message that arrives without an SNS envelope. */
export const SAMPLE_DEFAULTS = {
  region: 'us-east-1',
  account: '123456789012',
  topicName: 'pd-relay-sample',
  messageId: '00000000-0000-4000-8000-000000000000',
  timestamp: '1970-01-01T00:00:00.000Z',
} as const;

/**
 * Builds the Notification envelope for a sample: a complete SNS HTTP(S) envelope is used as is; a
 * Lambda SNS event (`Records[0].Sns`) is unwrapped; anything else is taken as the bare Message
 * and wrapped in an envelope whose topic lives in the region and account the message names (an
 * EventBridge event's `region`/`account`, an alarm's `AlarmArn`/`AWSAccountId`), so that rules
 * which build keys from them see realistic values.
 */
export function envelopeFromSample(text: string): { envelope: NotificationEnvelope; shape: SampleShape } {
  const parsed = parseMessage(text);
  if (isRecord(parsed)) {
    if (isEnvelope(parsed)) return { envelope: toEnvelope(parsed), shape: 'sns-envelope' };
    const records = parsed.Records;
    if (Array.isArray(records) && records.length > 0 && isRecord(records[0])) {
      const sns = (records[0] as Record<string, unknown>).Sns;
      if (isRecord(sns) && isEnvelope(sns)) return { envelope: toEnvelope(sns), shape: 'lambda-sns-event' };
    }
  }
  return { envelope: wrapMessage(text, parsed), shape: 'message' };
}

/** Wraps a bare Message (text, and its parsed form) in a synthetic Notification envelope. */
export function wrapMessage(
  raw: string,
  parsed: unknown = parseMessage(raw),
  overrides: Partial<NotificationEnvelope> = {},
): NotificationEnvelope {
  const { region, account } = placeOf(parsed);
  return {
    MessageId: SAMPLE_DEFAULTS.messageId,
    TopicArn: `arn:${partitionOf(region)}:sns:${region}:${account}:${SAMPLE_DEFAULTS.topicName}`,
    Subject: null,
    Message: raw,
    Timestamp: SAMPLE_DEFAULTS.timestamp,
    ...overrides,
  };
}

/** The AWS partition of a region code. */
export function partitionOf(region: string): string {
  if (region.startsWith('cn-')) return 'aws-cn';
  if (region.startsWith('us-gov-')) return 'aws-us-gov';
  return 'aws';
}

const REGION = /^[a-z]{2}(-[a-z]+)+-\d+$/;
const ACCOUNT = /^\d{12}$/;

function placeOf(message: unknown): { region: string; account: string } {
  let region: string = SAMPLE_DEFAULTS.region;
  let account: string = SAMPLE_DEFAULTS.account;
  if (isRecord(message)) {
    const arn = typeof message.AlarmArn === 'string' ? message.AlarmArn.split(':') : [];
    const candidatesRegion = [message.region, arn[3]];
    const candidatesAccount = [message.account, message.AWSAccountId, arn[4]];
    for (const r of candidatesRegion) {
      if (typeof r === 'string' && REGION.test(r)) {
        region = r;
        break;
      }
    }
    for (const a of candidatesAccount) {
      if (typeof a === 'string' && ACCOUNT.test(a)) {
        account = a;
        break;
      }
    }
  }
  return { region, account };
}

function isEnvelope(v: Record<string, unknown>): boolean {
  return (
    (v.Type === 'Notification' || v.Type === undefined) &&
    typeof v.Message === 'string' &&
    typeof v.TopicArn === 'string' &&
    typeof v.MessageId === 'string'
  );
}

function toEnvelope(v: Record<string, unknown>): NotificationEnvelope {
  return {
    MessageId: v.MessageId as string,
    TopicArn: v.TopicArn as string,
    Subject: typeof v.Subject === 'string' ? v.Subject : null,
    Message: v.Message as string,
    Timestamp: typeof v.Timestamp === 'string' ? v.Timestamp : SAMPLE_DEFAULTS.timestamp,
    ...(isRecord(v.MessageAttributes)
      ? { MessageAttributes: v.MessageAttributes as NotificationEnvelope['MessageAttributes'] }
      : {}),
  };
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
