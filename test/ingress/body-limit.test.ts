import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/load.js';
import {
  bodyLimitWarning,
  DEFAULT_MAX_BODY_BYTES,
  SNS_ENVELOPE_OTHER_FIELDS_BYTES,
  SNS_MAX_ENVELOPE_BYTES,
  SNS_MAX_MESSAGE_BYTES,
} from '../../src/ingress/sns/limits.js';
import { escapedEnvelopeJson, FakeSns, ONE_BYTE_MESSAGE_CHARS, oneByteText } from '../helpers/fake-sns.js';
import { type IngressHarness, oneEventPerMessage, startIngress } from '../helpers/ingress.js';

/** Printable ASCII but space: a Subject starts with a letter, digit or punctuation and holds no control character. */
const SUBJECT_CHARS = ONE_BYTE_MESSAGE_CHARS.slice(4, -1);

/**
 * No legitimate SNS delivery is answered 413 (SNS counts any 4xx as delivered): the default
 * `server.maxBodyBytes` takes the largest envelope SNS can send, and a configured limit below it
 * is named at start with what it would drop.
 */

let fake: FakeSns;
beforeAll(async () => {
  fake = await FakeSns.start();
});
afterAll(() => fake.close());

/** The longest topic name SNS allows (256), in the allowed account of startIngress. */
const LONG_TOPIC = `arn:aws:sns:us-east-1:123456789012:${'t'.repeat(256)}`;

/**
 * The biggest envelope SNS may send, as far as the documented limits go: a Message of 256 KiB of
 * one-byte characters, a 100-character Subject, the longest topic name, every character of every
 * value written `\uXXXX`.
 */
function largestEnvelope(): { json: string; message: string; subject: string } {
  const message = oneByteText(SNS_MAX_MESSAGE_BYTES);
  const subject = oneByteText(100, SUBJECT_CHARS);
  const envelope = fake.notification({ topic: LONG_TOPIC, message, subject });
  return { json: escapedEnvelopeJson(envelope), message, subject };
}

describe('the largest envelope SNS can send', () => {
  it('is 256 KiB of Message at 6 bytes a byte, plus 16 KiB for the other fields: 1,589,248 bytes', () => {
    expect(SNS_MAX_ENVELOPE_BYTES).toBe(6 * 262_144 + 16_384);
    expect(SNS_MAX_ENVELOPE_BYTES).toBe(1_589_248);
  });

  it('bounds a real one, and the default body limit takes it with a margin', () => {
    const { json, message } = largestEnvelope();
    const bytes = Buffer.byteLength(json);
    expect(Buffer.byteLength(message)).toBe(SNS_MAX_MESSAGE_BYTES);
    // The Message alone is 6 bytes per byte; everything else fits the allowance.
    expect(bytes).toBeGreaterThan(6 * SNS_MAX_MESSAGE_BYTES);
    expect(bytes - 6 * SNS_MAX_MESSAGE_BYTES).toBeLessThan(SNS_ENVELOPE_OTHER_FIELDS_BYTES);
    expect(bytes).toBeLessThanOrEqual(SNS_MAX_ENVELOPE_BYTES);
    expect(loadConfig({ env: {} }).server.maxBodyBytes).toBe(DEFAULT_MAX_BODY_BYTES);
    expect(DEFAULT_MAX_BODY_BYTES - SNS_MAX_ENVELOPE_BYTES).toBeGreaterThan(SNS_MAX_ENVELOPE_BYTES / 4);
  });
});

describe('bodyLimitWarning', () => {
  const warning = (limit: number, kib: string) =>
    `The configured server.maxBodyBytes (${limit}) is below the largest envelope SNS can send (1589248 bytes): ` +
    `${kib} made of characters SNS may write as \\uXXXX (6 bytes each) would get 413, which SNS counts as ` +
    'delivered, and be lost. Raise it to at least 1589248, or leave it out for the default (2097152).';

  it.each<[string, number, string | null]>([
    ['the default', 2_097_152, null],
    ['exactly the largest envelope', 1_589_248, null],
    ['64 MiB', 67_108_864, null],
    ['one byte short', 1_589_247, warning(1_589_247, 'a Message over ~255 KiB')],
    ['the old default, 1 MiB', 1_048_576, warning(1_048_576, 'a Message over ~168 KiB')],
    ['64 KiB', 65_536, warning(65_536, 'a Message over ~8 KiB')],
    ['the smallest allowed, 1 KiB', 1_024, warning(1_024, 'even a small Message')],
  ])('%s', (_name, limit, expected) => {
    expect(bodyLimitWarning(limit)).toBe(expected);
  });
});

describe('posting the largest envelope', () => {
  let relay: IngressHarness | undefined;
  afterAll(() => relay?.close());

  it('with the default limit: 200, and the Message reaches the rules whole', async () => {
    const seen: Array<{ message: string; subject: string | null | undefined }> = [];
    relay = await startIngress({
      fake,
      handleNotification: (envelope, endpoint) => {
        seen.push({ message: envelope.Message, subject: envelope.Subject });
        return oneEventPerMessage(envelope, endpoint);
      },
    });
    const { json, message, subject } = largestEnvelope();
    const res = await relay.post(json);
    expect(res.status).toBe(200);
    expect(res.json).toEqual({ result: 'accepted' });
    // Decoded from the escapes, signature verified over exactly these characters, committed.
    expect(seen).toEqual([{ message, subject }]);
    expect(relay.sink.entries).toHaveLength(1);
    await relay.close();
    relay = undefined;
  });

  it('with the old default of 1 MiB: 413, as the start-up warning says', async () => {
    relay = await startIngress({ fake, server: { maxBodyBytes: 1_048_576 } });
    const res = await relay.post(largestEnvelope().json);
    expect(res.status).toBe(413);
    expect(bodyLimitWarning(1_048_576)).toContain('would get 413');
    await relay.close();
    relay = undefined;
  });
});
