import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/load.js';
import { bodyLimitWarning, SNS_MAX_MESSAGE_BYTES } from '../../src/ingress/sns/limits.js';
import { type Relay, startRelay } from '../../src/main.js';
import { MAX_EVENT_BYTES } from '../../src/pagerduty/limits.js';
import { FakePagerDuty, testRoutingKey } from '../helpers/fake-pagerduty.js';
import { escapedEnvelopeJson, FakeSns, ONE_BYTE_MESSAGE_CHARS, oneByteText } from '../helpers/fake-sns.js';
import { captureLogger } from '../helpers/log.js';
import { tempDir, writeIn } from '../helpers/temp.js';

/** Printable ASCII but space: a Subject starts with a letter, digit or punctuation and holds no control character. */
const SUBJECT_CHARS = ONE_BYTE_MESSAGE_CHARS.slice(4, -1);

const TOPIC = 'arn:aws:sns:eu-west-1:123456789012:alarms';

/**
 * server.maxBodyBytes through the composition root: the largest envelope SNS can send, signed and
 * written with every character `\uXXXX`, goes from the SNS POST to PagerDuty on the default limit;
 * a configured limit below it is named in a warning at start.
 */
describe('the largest SNS envelope, through the relay', () => {
  let sns: FakeSns;
  let pd: FakePagerDuty;
  let relay: Relay | undefined;
  let cleanup: (() => void) | undefined;
  beforeAll(async () => {
    sns = await FakeSns.start();
    pd = await FakePagerDuty.start();
  });
  afterAll(async () => {
    await sns.close();
    await pd.close();
  });
  afterEach(async () => {
    await relay?.close();
    relay = undefined;
    cleanup?.();
    pd.clearRecords();
  });

  async function start(server = '') {
    const t = tempDir();
    cleanup = t.cleanup;
    mkdirSync(join(t.dir, 'rules'));
    const file = writeIn(
      t.dir,
      'config.yaml',
      [
        `server: { host: 127.0.0.1, port: 0${server} }`,
        'metrics: { host: 127.0.0.1, port: 0 }',
        'sns:',
        `  topics: ["${TOPIC}"]`,
        `  certHostPattern: '${sns.certHostPattern}'`,
        `pagerduty: { url: "${pd.url}" }`,
        `routes: { default: { keys: ["${testRoutingKey(1)}"] } }`,
        'rules: { paths: [rules], watch: false }',
        '',
      ].join('\n'),
    );
    const log = captureLogger('info');
    relay = await startRelay(loadConfig({ file, env: {} }), { logger: log.logger, snsCa: sns.caPem });
    return { relay, log };
  }

  const warnings = (log: ReturnType<typeof captureLogger>) =>
    log.lines().filter((l) => l.level === 'warn' && String(l.msg).includes('server.maxBodyBytes'));

  it('with the default limit: 200, and the event reaches PagerDuty with the whole Message', async () => {
    const { relay, log } = await start();
    expect(relay.config.server.maxBodyBytes).toBe(2_097_152);
    const message = oneByteText(SNS_MAX_MESSAGE_BYTES);
    const subject = oneByteText(100, SUBJECT_CHARS);
    const envelope = sns.notification({ topic: TOPIC, message, subject });
    const body = escapedEnvelopeJson(envelope);
    expect(Buffer.byteLength(body)).toBeGreaterThan(6 * SNS_MAX_MESSAGE_BYTES);

    const res = await fetch(`http://127.0.0.1:${relay.snsAddress.port}/sns`, {
      method: 'POST',
      headers: { 'content-type': 'text/plain; charset=UTF-8', 'x-amz-sns-message-type': 'Notification' },
      body,
    });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ result: 'accepted' });

    await pd.waitFor((f) => f.accepted.length === 1, 10_000, 'the event');
    const [event] = pd.accepted;
    // The built-in catch-all: the Subject as summary, the Message whole in custom_details (it fits
    // PagerDuty's 512,000 bytes once written as plain JSON; fitEvent would shrink it otherwise).
    expect(event).toMatchObject({ action: 'trigger', dedupKey: `sns/${envelope.MessageId}` });
    expect(event?.bytes).toBeLessThanOrEqual(MAX_EVENT_BYTES);
    const payload = event?.body.payload as { summary: string; custom_details: Record<string, unknown> };
    expect(payload.summary).toBe(subject);
    expect(payload.custom_details.message).toBe(message);
    expect(warnings(log)).toEqual([]);
  });

  it('warns at start when server.maxBodyBytes is below the largest envelope, saying what it drops', async () => {
    const { log } = await start(', maxBodyBytes: 1048576');
    expect(warnings(log)).toEqual([
      expect.objectContaining({ maxBodyBytes: 1_048_576, msg: bodyLimitWarning(1_048_576) }),
    ]);
    expect(warnings(log)[0]?.msg).toMatch(
      /^The configured server\.maxBodyBytes \(1048576\) is below .* ~168 KiB /,
    );
  });
});
