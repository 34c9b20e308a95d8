/** What kind of message arrived, as the decoder recognised it. Rules match on it. */
export type MessageKind = 'cloudwatch-alarm' | 'eventbridge' | 'cloudtrail-delivery' | 'json' | 'text';

/** An SNS `MessageAttributes` value as the rules see it (String, Number, String.Array, Binary). */
export type AttributeValue = string | number | unknown[];

/**
 * The rule input document: one verified SNS Notification, decoded. This is the contract between
 * ingress and the rules stage ("decoded message → events").
 */
export interface InputDocument {
  kind: MessageKind;
  /** The `{endpoint}` of `POST /sns/{endpoint}`; "default" for `POST /sns`. */
  endpoint: string;
  /** The SNS TopicArn. */
  topic: string;
  /** Region and account parsed from the TopicArn. */
  region: string;
  account: string;
  /** The SNS Subject, or null when the message had none. */
  subject: string | null;
  /** The SNS Timestamp (ISO 8601). */
  timestamp: string;
  messageId: string;
  attributes: Record<string, AttributeValue>;
  /** The Message parsed as JSON when it is JSON, else the string itself. */
  message: unknown;
}

/** The SNS envelope fields the decoder needs (a verified Notification). */
export interface NotificationEnvelope {
  MessageId: string;
  TopicArn: string;
  Subject?: string | null;
  Message: string;
  Timestamp: string;
  MessageAttributes?: Record<string, { Type: string; Value: string }>;
}
