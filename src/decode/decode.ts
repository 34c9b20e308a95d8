import type { AttributeValue, InputDocument, MessageKind, NotificationEnvelope } from './types.js';

/**
 * Turns a verified SNS Notification into the rule input document (DESIGN.md "Decode"). Never
 * throws: whatever AWS (or anyone on an allowed topic) publishes becomes a document, at worst of
 * kind "text", so that the catch-all rule can still page on it.
 */
export function decodeNotification(envelope: NotificationEnvelope, endpoint: string): InputDocument {
  const topic = typeof envelope.TopicArn === 'string' ? envelope.TopicArn : '';
  const { region, account } = parseTopicArn(topic);
  const raw = typeof envelope.Message === 'string' ? envelope.Message : String(envelope.Message ?? '');
  const message = parseMessage(raw);
  return {
    kind: detectKind(message),
    endpoint,
    topic,
    region,
    account,
    subject: typeof envelope.Subject === 'string' ? envelope.Subject : null,
    timestamp: typeof envelope.Timestamp === 'string' ? envelope.Timestamp : '',
    messageId: typeof envelope.MessageId === 'string' ? envelope.MessageId : '',
    attributes: decodeAttributes(envelope.MessageAttributes),
    message,
  };
}

/** Region and account of an SNS topic ARN (`arn:<partition>:sns:<region>:<account>:<name>`). */
export function parseTopicArn(arn: string): { region: string; account: string } {
  const parts = arn.split(':');
  if (parts.length < 6 || parts[0] !== 'arn') return { region: '', account: '' };
  return { region: parts[3] ?? '', account: parts[4] ?? '' };
}

/**
 * The Message as JSON when it is a JSON object or array, else the string itself. A Message that is
 * a bare JSON scalar ("42", "true", "\"quoted\"") stays text: people publish plain words and
 * numbers, and a summary of "42" should read 42, not a parsed number.
 */
export function parseMessage(raw: string): unknown {
  const first = firstNonSpace(raw);
  if (first !== '{' && first !== '[') return raw;
  if (jsonNestingExceeds(raw, MAX_JSON_DEPTH)) return raw;
  try {
    return JSON.parse(raw);
  } catch {
    return raw;
  }
}

/**
 * JSON nested deeper than this stays text. JSON.parse copes with any depth, but what walks the
 * document afterwards — event patterns, Liquid, JSON.stringify of the event — recurses, and
 * overflows the stack from about 2,000 levels (measured on Node 20): that message would get a 500
 * on every retry and never page. AWS payloads nest about 10 levels deep.
 */
export const MAX_JSON_DEPTH = 128;

/** Whether brackets in `text` nest deeper than `max`, ignoring brackets inside strings. */
export function jsonNestingExceeds(text: string, max: number): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c)
        i++; // backslash: the next character is escaped
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x7b || c === 0x5b) {
      if (++depth > max) return true;
    } else if (c === 0x7d || c === 0x5d) depth--;
  }
  return false;
}

function firstNonSpace(s: string): string {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    // JSON whitespace: space, tab, LF, CR (RFC 8259 §2); a BOM is not valid JSON.
    if (c !== 0x20 && c !== 0x09 && c !== 0x0a && c !== 0x0d) return s[i] as string;
  }
  return '';
}

/**
 * Recognises the message formats AWS services publish to SNS:
 * - classic CloudWatch alarm notifications: every variant (single metric with `Trigger.MetricName`,
 *   metric math and anomaly detection with `Trigger.Metrics`, composite alarms without `Trigger`,
 *   CloudWatch Logs metric-filter alarms) carries `AlarmName` and `NewStateValue`;
 * - EventBridge events delivered by an EventBridge rule targeting the topic: `detail-type`,
 *   `source` and `detail` are the envelope every EventBridge event has;
 * - CloudTrail log-file delivery notices: `s3Bucket` and `s3ObjectKey` (a list of keys).
 */
export function detectKind(message: unknown): MessageKind {
  if (typeof message === 'string') return 'text';
  if (!isRecord(message)) return 'json';
  if (typeof message.AlarmName === 'string' && typeof message.NewStateValue === 'string') {
    return 'cloudwatch-alarm';
  }
  if (
    typeof message['detail-type'] === 'string' &&
    typeof message.source === 'string' &&
    'detail' in message
  ) {
    return 'eventbridge';
  }
  if (
    typeof message.s3Bucket === 'string' &&
    (Array.isArray(message.s3ObjectKey) || typeof message.s3ObjectKey === 'string')
  ) {
    return 'cloudtrail-delivery';
  }
  return 'json';
}

/**
 * SNS MessageAttributes as rules see them. SNS data types are String, Number, Binary and
 * String.Array, each optionally with a custom suffix (`Number.float`); see the SNS developer guide,
 * "Amazon SNS message attributes". A value that does not parse as its type stays a string rather
 * than disappearing.
 */
export function decodeAttributes(
  attrs: NotificationEnvelope['MessageAttributes'] | null | undefined,
): Record<string, AttributeValue> {
  const out: Record<string, AttributeValue> = {};
  if (!attrs || typeof attrs !== 'object') return out;
  for (const [name, attr] of Object.entries(attrs)) {
    if (!attr || typeof attr !== 'object') continue;
    const type = typeof attr.Type === 'string' ? attr.Type : 'String';
    const value = typeof attr.Value === 'string' ? attr.Value : String(attr.Value ?? '');
    if (type === 'Number' || type.startsWith('Number.')) {
      const n = value.trim() === '' ? Number.NaN : Number(value);
      out[name] = Number.isFinite(n) ? n : value;
    } else if (type === 'String.Array') {
      if (jsonNestingExceeds(value, MAX_JSON_DEPTH)) {
        out[name] = value;
        continue;
      }
      try {
        const parsed: unknown = JSON.parse(value);
        out[name] = Array.isArray(parsed) ? parsed : value;
      } catch {
        out[name] = value;
      }
    } else {
      // String, String.<custom>, and Binary (which SNS delivers base64-encoded) stay strings.
      out[name] = value;
    }
  }
  return out;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
