import { describe, expect, it } from 'vitest';
import { parseEnvelope } from '../../src/ingress/sns/envelope.js';

const notification = {
  Type: 'Notification',
  MessageId: '22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324',
  TopicArn: 'arn:aws:sns:us-west-2:123456789012:MyTopic',
  Subject: 'My First Message',
  Message: 'Hello world!',
  Timestamp: '2012-05-02T00:54:06.655Z',
  SignatureVersion: '1',
  Signature: 'EXAMPLE',
  SigningCertURL:
    'https://sns.us-west-2.amazonaws.com/SimpleNotificationService-f3ecfb7224c7233fe7bb5f59f96de52f.pem',
  UnsubscribeURL: 'https://sns.us-west-2.amazonaws.com/?Action=Unsubscribe&SubscriptionArn=x',
};
const confirmation = {
  Type: 'SubscriptionConfirmation',
  MessageId: '165545c9-2a5c-472c-8df2-7ff2be2b3b1b',
  Token: '2336412f37',
  TopicArn: 'arn:aws:sns:us-west-2:123456789012:MyTopic',
  Message: 'You have chosen to subscribe to the topic.',
  SubscribeURL: 'https://sns.us-west-2.amazonaws.com/?Action=ConfirmSubscription&Token=2336412f37',
  Timestamp: '2012-04-26T20:45:04.751Z',
  SignatureVersion: '1',
  Signature: 'EXAMPLE',
  SigningCertURL:
    'https://sns.us-west-2.amazonaws.com/SimpleNotificationService-f3ecfb7224c7233fe7bb5f59f96de52f.pem',
};

describe('parseEnvelope', () => {
  it.each([
    ['a Notification', notification],
    ['a Notification without Subject', { ...notification, Subject: undefined }],
    ['a Notification with Subject null (Lambda spelling)', { ...notification, Subject: null }],
    [
      'a Notification with MessageAttributes',
      { ...notification, MessageAttributes: { a: { Type: 'String', Value: 'x' } } },
    ],
    ['a SubscriptionConfirmation', confirmation],
    ['an UnsubscribeConfirmation', { ...confirmation, Type: 'UnsubscribeConfirmation' }],
    ['a FIFO topic', { ...notification, TopicArn: 'arn:aws:sns:us-east-1:123456789012:orders.fifo' }],
    ['a China-partition topic', { ...notification, TopicArn: 'arn:aws-cn:sns:cn-north-1:123456789012:t' }],
    [
      'a message without signature fields (refused later with 403)',
      { ...notification, Signature: undefined, SignatureVersion: undefined },
    ],
  ])('accepts %s', (_name, body) => {
    const r = parseEnvelope(JSON.parse(JSON.stringify(body)));
    expect(r).toMatchObject({ ok: true, envelope: { Type: body.Type, MessageId: body.MessageId } });
  });

  it('keeps only the fields it knows, and drops Subject null', () => {
    const r = parseEnvelope({ ...notification, Subject: null, Extra: 'x' });
    if (!r.ok) throw new Error(r.message);
    expect(r.envelope).not.toHaveProperty('Extra');
    expect(r.envelope).not.toHaveProperty('Subject');
  });

  it('keeps an attribute named __proto__ as an attribute', () => {
    const r = parseEnvelope(
      JSON.parse(
        `{"MessageAttributes":{"__proto__":{"Type":"String","Value":"x"}},${JSON.stringify(notification).slice(1)}`,
      ),
    );
    if (!r.ok || r.envelope.Type !== 'Notification') throw new Error('expected a notification');
    expect(Object.keys(r.envelope.MessageAttributes ?? {})).toEqual(['__proto__']);
    expect(Object.getPrototypeOf(r.envelope.MessageAttributes)).toBeNull();
  });

  it.each([
    ['an array', [notification], /Expected a JSON object/],
    ['null', null, /Expected a JSON object/],
    ['a string', 'hello', /Expected a JSON object/],
    [
      'an unknown Type',
      { ...notification, Type: 'Bogus' },
      /Expected Type to be one of .*got the string "Bogus"/,
    ],
    ['a missing Type', { ...notification, Type: undefined }, /Expected Type/],
    [
      'a numeric MessageId',
      { ...notification, MessageId: 12 },
      /Expected MessageId to be a string, got number 12/,
    ],
    ['a missing MessageId', { ...notification, MessageId: undefined }, /Expected a MessageId field/],
    ['an empty MessageId', { ...notification, MessageId: '' }, /Expected MessageId of 1 to 128 characters/],
    ['a huge MessageId', { ...notification, MessageId: 'x'.repeat(500) }, /Expected MessageId of 1 to 128/],
    [
      'a Message object',
      { ...notification, Message: { a: 1 } },
      /Expected Message to be a string, got a mapping/,
    ],
    ['a missing Timestamp', { ...notification, Timestamp: undefined }, /Expected a Timestamp field/],
    [
      'a TopicArn that is not an SNS ARN',
      { ...notification, TopicArn: 'arn:aws:sqs:us-east-1:123456789012:q' },
      /Expected TopicArn to be an SNS topic ARN/,
    ],
    [
      'a TopicArn with a colon in the name',
      { ...notification, TopicArn: 'arn:aws:sns:us-east-1:123456789012:a:b' },
      /TopicArn/,
    ],
    [
      'a numeric SignatureVersion',
      { ...notification, SignatureVersion: 1 },
      /Expected SignatureVersion to be a string, got number 1/,
    ],
    [
      'a Signature list',
      { ...notification, Signature: ['x'] },
      /Expected Signature to be a string, got a list/,
    ],
    [
      'a SigningCertURL object',
      { ...notification, SigningCertURL: {} },
      /Expected SigningCertURL to be a string/,
    ],
    ['a numeric Subject', { ...notification, Subject: 5 }, /Expected Subject to be a string/],
    [
      'MessageAttributes as a list',
      { ...notification, MessageAttributes: [] },
      /Expected MessageAttributes to be a mapping/,
    ],
    [
      'a MessageAttribute without Value',
      { ...notification, MessageAttributes: { a: { Type: 'String' } } },
      /MessageAttributes\.a/,
    ],
    ['a confirmation without Token', { ...confirmation, Token: undefined }, /Expected a Token field/],
    [
      'a confirmation without SubscribeURL',
      { ...confirmation, SubscribeURL: undefined },
      /Expected a SubscribeURL field/,
    ],
    [
      'an unsubscribe with a numeric Token',
      { ...confirmation, Type: 'UnsubscribeConfirmation', Token: 1 },
      /Expected Token to be a string/,
    ],
  ])('refuses %s', (_name, body, message) => {
    const r = parseEnvelope(body === undefined ? undefined : JSON.parse(JSON.stringify(body)));
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.message).toMatch(message);
  });

  it('lists every problem, not just the first', () => {
    const r = parseEnvelope({ ...notification, MessageId: 1, Timestamp: 2 });
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.message).toMatch(/MessageId.*Timestamp/);
  });
});
