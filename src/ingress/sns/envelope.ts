import { describeValue } from '../../errors.js';
import {
  type NotificationMessage,
  SNS_MESSAGE_TYPES,
  type SnsEnvelope,
  type SnsMessageType,
  type SubscriptionConfirmationMessage,
} from './types.js';

/**
 * An SNS topic ARN: arn:<partition>:sns:<region>:<12-digit account>:<name>. Topic names are 1–256
 * letters, digits, "-" and "_", plus ".fifo" for FIFO topics
 * (https://docs.aws.amazon.com/sns/latest/api/API_CreateTopic.html). Being strict here means the
 * allow-list globs and the decoder's region/account split see only real ARN shapes.
 */
export const TOPIC_ARN_PATTERN = /^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}(\.fifo)?$/;

/** SNS MessageIds are UUIDs; anything much longer is not from SNS and would bloat the de-dup cache. */
const MAX_MESSAGE_ID_CHARS = 128;

export type EnvelopeResult = { ok: true; envelope: SnsEnvelope } | { ok: false; message: string };

/**
 * Checks that a parsed request body has the shape of an SNS HTTP(S) envelope: the fields its Type
 * needs, each a string. Signature fields may be absent here (their absence is a 403 later, not a
 * 400). Returns a fresh object holding only the fields pd-relay reads.
 */
export function parseEnvelope(body: unknown): EnvelopeResult {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) {
    return fail(`Expected a JSON object (an SNS message), got ${describeValue(body)}.`);
  }
  const raw = body as Record<string, unknown>;
  const type = raw.Type;
  if (typeof type !== 'string' || !(SNS_MESSAGE_TYPES as readonly string[]).includes(type)) {
    return fail(`Expected Type to be one of ${SNS_MESSAGE_TYPES.join(', ')}, got ${describeValue(type)}.`);
  }
  const problems: string[] = [];
  const required = (key: string): string => {
    const v = raw[key];
    if (typeof v === 'string') return v;
    problems.push(
      v === undefined
        ? `Expected a ${key} field.`
        : `Expected ${key} to be a string, got ${describeValue(v)}.`,
    );
    return '';
  };
  const optional = (key: string): string | undefined => {
    const v = raw[key];
    if (v === undefined || typeof v === 'string') return v;
    problems.push(`Expected ${key} to be a string, got ${describeValue(v)}.`);
    return undefined;
  };

  const base: Omit<NotificationMessage, 'Type'> = {
    MessageId: required('MessageId'),
    TopicArn: required('TopicArn'),
    Message: required('Message'),
    Timestamp: required('Timestamp'),
  };
  for (const key of ['SignatureVersion', 'Signature', 'SigningCertURL'] as const) {
    const v = optional(key);
    if (v !== undefined) base[key] = v;
  }
  if (
    typeof raw.MessageId === 'string' &&
    (base.MessageId.length === 0 || base.MessageId.length > MAX_MESSAGE_ID_CHARS)
  ) {
    problems.push(
      `Expected MessageId of 1 to ${MAX_MESSAGE_ID_CHARS} characters, got ${base.MessageId.length}.`,
    );
  }
  if (typeof raw.TopicArn === 'string' && !TOPIC_ARN_PATTERN.test(base.TopicArn)) {
    problems.push(`Expected TopicArn to be an SNS topic ARN, got ${describeValue(base.TopicArn)}.`);
  }

  let envelope: SnsEnvelope;
  if (type === 'Notification') {
    const n: NotificationMessage = { Type: 'Notification', ...base };
    // HTTP(S) deliveries leave Subject out when there is none; null (the Lambda spelling) means the same.
    if (raw.Subject !== null) {
      const subject = optional('Subject');
      if (subject !== undefined) n.Subject = subject;
    }
    const unsubscribe = optional('UnsubscribeURL');
    if (unsubscribe !== undefined) n.UnsubscribeURL = unsubscribe;
    const attributes = messageAttributes(raw.MessageAttributes, problems);
    if (attributes) n.MessageAttributes = attributes;
    envelope = n;
  } else {
    const c: SubscriptionConfirmationMessage = {
      ...base,
      Type: 'SubscriptionConfirmation',
      Token: required('Token'),
      SubscribeURL: required('SubscribeURL'),
    };
    envelope = { ...c, Type: type as Exclude<SnsMessageType, 'Notification'> };
  }
  return problems.length ? fail(problems.join(' ')) : { ok: true, envelope };
}

function messageAttributes(
  value: unknown,
  problems: string[],
): Record<string, { Type: string; Value: string }> | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'object' || Array.isArray(value)) {
    problems.push(`Expected MessageAttributes to be a mapping, got ${describeValue(value)}.`);
    return undefined;
  }
  // No prototype: an attribute named "__proto__" must stay an attribute.
  const out: Record<string, { Type: string; Value: string }> = Object.create(null);
  for (const [name, attr] of Object.entries(value)) {
    const a = attr as { Type?: unknown; Value?: unknown } | null;
    if (!a || typeof a !== 'object' || typeof a.Type !== 'string' || typeof a.Value !== 'string') {
      problems.push(
        `Expected MessageAttributes.${name} to be {Type, Value} strings, got ${describeValue(attr)}.`,
      );
      continue;
    }
    out[name] = { Type: a.Type, Value: a.Value };
  }
  return out;
}

function fail(message: string): EnvelopeResult {
  return { ok: false, message };
}
