import type { NotificationEnvelope } from '../../decode/types.js';
import type { OutboundEvent } from '../../rules/types.js';

/**
 * The message types SNS posts to HTTP(S) endpoints (also the values of the
 * `x-amz-sns-message-type` header). https://docs.aws.amazon.com/sns/latest/dg/http-header.html
 */
export const SNS_MESSAGE_TYPES = [
  'Notification',
  'SubscriptionConfirmation',
  'UnsubscribeConfirmation',
] as const;
export type SnsMessageType = (typeof SNS_MESSAGE_TYPES)[number];

/** Fields every SNS HTTP(S) envelope carries, after shape checks. */
interface EnvelopeBase {
  MessageId: string;
  TopicArn: string;
  Message: string;
  Timestamp: string;
  /** Absent fields are checked later (403), not at the shape stage (400). */
  SignatureVersion?: string;
  Signature?: string;
  SigningCertURL?: string;
}

/** https://docs.aws.amazon.com/sns/latest/dg/http-notification-json.html */
export interface NotificationMessage extends EnvelopeBase {
  Type: 'Notification';
  Subject?: string;
  UnsubscribeURL?: string;
  MessageAttributes?: Record<string, { Type: string; Value: string }>;
}

/** https://docs.aws.amazon.com/sns/latest/dg/http-subscription-confirmation-json.html */
export interface SubscriptionConfirmationMessage extends EnvelopeBase {
  Type: 'SubscriptionConfirmation';
  Token: string;
  SubscribeURL: string;
}

/** https://docs.aws.amazon.com/sns/latest/dg/http-unsubscribe-confirmation-json.html */
export interface UnsubscribeConfirmationMessage extends EnvelopeBase {
  Type: 'UnsubscribeConfirmation';
  Token: string;
  SubscribeURL: string;
}

/** A well-formed (not yet verified) SNS envelope. */
export type SnsEnvelope =
  | NotificationMessage
  | SubscriptionConfirmationMessage
  | UnsubscribeConfirmationMessage;

/**
 * What ingress made of one request: a fixed list, used as the `result` label of
 * `pdrelay_sns_messages_total` and as the `result` field of the request log line.
 */
export const INGRESS_RESULTS = [
  'accepted',
  'duplicate',
  'confirmed',
  'confirm_logged',
  'confirm_failed',
  'unsubscribe_logged',
  'bad_request',
  'bad_signature',
  'bad_cert_url',
  'topic_not_allowed',
  'raw_delivery',
  'unauthorized',
  'not_found',
  'method_not_allowed',
  'too_large',
  'cert_unavailable',
  'spool_unavailable',
  'draining',
  'error',
] as const;
export type IngressResult = (typeof INGRESS_RESULTS)[number];

/**
 * decode → rules → limits for one verified Notification. The composition root builds it from the
 * rules stage; it is synchronous (rules are compiled and rendered synchronously) and throws only on
 * a bug, which ingress answers with 500 so that SNS retries.
 */
export type NotificationHandler = (envelope: NotificationEnvelope, endpoint: string) => OutboundEvent[];

/** Wall-clock time in epoch milliseconds; injected so that tests control it. */
export interface Clock {
  now(): number;
}

/** The real clock. */
export const systemClock: Clock = { now: () => Date.now() };
