import { describe, expect, it } from 'vitest';
import { SNS_MAX_ENVELOPE_BYTES, SNS_MAX_MESSAGE_BYTES } from '../../src/ingress/sns/limits.js';
import { MAX_EVENT_BYTES } from '../../src/pagerduty/limits.js';
import { escapedEnvelopeJson, ONE_BYTE_MESSAGE_CHARS, oneByteText } from '../helpers/fake-sns.js';
import { type E2eWorld, TOPIC, useE2eWorld } from './helpers/world.js';

/**
 * No legitimate SNS delivery is answered 4xx: the largest envelope SNS can send — a 256 KiB
 * Message of one-byte characters, each written `\uXXXX` — reaches PagerDuty through the built
 * relay with the default `server.maxBodyBytes`, over HTTPS.
 */
describe('e2e: the largest envelope SNS can send', () => {
  let world: E2eWorld;
  useE2eWorld((w) => (world = w));

  it('is answered 200 with the default body limit and its event reaches PagerDuty', async () => {
    const relay = await world.startRelay(world.dir(), { tls: true });
    const client = world.client(() => relay);
    const message = oneByteText(SNS_MAX_MESSAGE_BYTES);
    const subject = oneByteText(100, ONE_BYTE_MESSAGE_CHARS.slice(4, -1)); // printable, no space first
    const envelope = world.notification(message, { subject });
    const body = escapedEnvelopeJson(envelope);
    expect(Buffer.byteLength(body)).toBeGreaterThan(6 * SNS_MAX_MESSAGE_BYTES);
    expect(Buffer.byteLength(body)).toBeLessThanOrEqual(SNS_MAX_ENVELOPE_BYTES);

    const result = await client.post(envelope, { body });
    expect({ status: result.status, body: result.body }).toEqual({
      status: 200,
      body: '{"result":"accepted"}',
    });
    await world.pd.waitFor((pd) => pd.accepted.length === 1, 15_000, 'the event');
    const [event] = world.pd.accepted;
    expect(event).toMatchObject({
      routingKey: world.key('pd-1'),
      action: 'trigger',
      dedupKey: `sns/${envelope.MessageId}`,
    });
    expect(event?.bytes).toBeLessThanOrEqual(MAX_EVENT_BYTES);
    const payload = event?.body.payload as {
      summary: string;
      source: string;
      custom_details: Record<string, unknown>;
    };
    expect(payload).toMatchObject({ summary: subject, source: TOPIC });
    expect(payload.custom_details.message).toBe(message);
    // The default limit takes it: no start-up warning about server.maxBodyBytes.
    expect(relay.output).not.toContain('server.maxBodyBytes');
  });
});
