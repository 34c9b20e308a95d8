import { generateKeyPairSync } from 'node:crypto';
import { request } from 'node:http';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createSnsApp } from '../../src/app.js';
import type { OutboundEvent } from '../../src/rules/types.js';
import { Secret } from '../../src/shared/secret.js';
import { DEFAULT_TOPIC, type Envelope, FakeSns, testTls } from '../helpers/fake-sns.js';
import {
  type IngressHarness,
  type IngressHarnessOptions,
  oneEventPerMessage,
  startIngress,
} from '../helpers/ingress.js';
import { captureLogger } from '../helpers/log.js';
import { MemorySink } from '../helpers/memory-sink.js';
import { serveApp } from '../helpers/serve.js';

let fake: FakeSns;
/** A second SNS-like host on `localhost`, which the relay's host pattern does not allow. */
let foreign: FakeSns;
beforeAll(async () => {
  [fake, foreign] = await Promise.all([FakeSns.start(), FakeSns.start()]);
});
afterAll(async () => {
  await Promise.all([fake?.close(), foreign?.close()]);
});

const harnesses: IngressHarness[] = [];
async function relayWith(opts: Omit<IngressHarnessOptions, 'fake'> = {}): Promise<IngressHarness> {
  const h = await startIngress({ fake, ...opts });
  harnesses.push(h);
  return h;
}
afterEach(async () => {
  await Promise.all(harnesses.splice(0).map((h) => h.close()));
});

/** A chunked POST (no Content-Length), which fetch cannot send. */
function postChunked(url: string, chunks: string[]): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      `${url}/sns`,
      { method: 'POST', headers: { 'content-type': 'text/plain' } },
      (res) => {
        let body = '';
        res.on('data', (c) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on('error', reject);
    for (const c of chunks) req.write(c);
    req.end();
  });
}

describe('accepting signed messages', () => {
  it.each([
    ['a v1 Notification', () => fake.notification({ signatureVersion: '1' })],
    ['a v2 Notification', () => fake.notification({ signatureVersion: '2' })],
    [
      'a Notification with Subject and attributes',
      () => fake.notification({ subject: 'ALARM', attributes: { env: { Type: 'String', Value: 'prod' } } }),
    ],
  ])('accepts %s and hands its events to the sink', async (_name, make) => {
    const relay = await relayWith();
    const env = make();
    const r = await relay.post(env);
    expect(r.status).toBe(200);
    expect(r.json).toEqual({ result: 'accepted' });
    expect(r.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/);
    expect(relay.sink.entries).toEqual([
      expect.objectContaining({
        messageId: env.MessageId,
        topic: DEFAULT_TOPIC,
        endpoint: 'default',
        events: [expect.objectContaining({ rule: 'test' })],
      }),
    ]);
  });

  it('passes the endpoint name of /sns/{endpoint} to the rules, and "default" for /sns', async () => {
    const seen: string[] = [];
    const relay = await relayWith({
      handleNotification: (e, endpoint) => {
        seen.push(endpoint);
        return oneEventPerMessage(e, endpoint);
      },
    });
    expect((await relay.post(fake.notification(), { path: '/sns/team-a_1' })).status).toBe(200);
    expect((await relay.post(fake.notification())).status).toBe(200);
    expect(seen).toEqual(['team-a_1', 'default']);
    expect(relay.sink.entries.map((e) => e.endpoint)).toEqual(['team-a_1', 'default']);
  });

  it('parses the body as JSON whatever the Content-Type', async () => {
    const relay = await relayWith();
    for (const type of ['text/plain; charset=UTF-8', 'application/json', 'application/octet-stream']) {
      expect((await relay.post(fake.notification(), { headers: { 'content-type': type } })).status).toBe(200);
    }
  });

  it('accepts a message without the x-amz-sns-message-type header', async () => {
    const relay = await relayWith();
    const res = await fetch(`${relay.url}/sns`, {
      method: 'POST',
      body: JSON.stringify(fake.notification()),
    });
    expect(res.status).toBe(200);
  });

  it('stores an accepted message that the rules dropped (no events), so that a redelivery stays a duplicate', async () => {
    const relay = await relayWith({ handleNotification: () => [] });
    const env = fake.notification();
    expect((await relay.post(env)).json).toEqual({ result: 'accepted' });
    expect(relay.sink.entries).toEqual([expect.objectContaining({ messageId: env.MessageId, events: [] })]);
  });

  it('fetches the signing certificate once for many messages, even concurrent ones on a cold cache', async () => {
    const url = fake.serveCertificate('SimpleNotificationService-5f5f5f.pem', testTls.signingCertPem);
    fake.fault(new URL(url).pathname, { delayMs: 50 });
    const relay = await relayWith();
    const results = await Promise.all(
      Array.from({ length: 50 }, () => relay.post(fake.notification({ signingCertUrl: url }))),
    );
    expect(results.map((r) => r.status)).toEqual(Array(50).fill(200));
    for (let i = 0; i < 10; i++)
      expect((await relay.post(fake.notification({ signingCertUrl: url }))).status).toBe(200);
    expect(fake.certFetches(url)).toHaveLength(1);
    expect(await relay.metric('pdrelay_sns_cert_fetches_total', { result: 'ok' })).toBe(1);
    fake.fault(new URL(url).pathname, undefined);
  });
});

describe('attacks: each answered 4xx, producing no event and no fetch', () => {
  let relay: IngressHarness;
  beforeAll(async () => {
    relay = await startIngress({ fake, server: { maxBodyBytes: 64 * 1024 } });
    // Warm the certificate cache so that "no fetch" holds for the tampered messages too.
    expect((await relay.post(fake.notification())).status).toBe(200);
  });
  afterAll(() => relay?.close());

  const resign = (env: Envelope, change: (e: Envelope) => void) => {
    change(env);
    return fake.sign(env);
  };
  const foreignUrl = () => {
    const u = new URL(foreign.signingCertUrl);
    u.hostname = 'localhost';
    return u.href;
  };
  const sameHost = (path: string) => `${fake.origin}${path}`;
  const certPath = () => new URL(fake.signingCertUrl).pathname;
  const attacker = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;

  type Attack = [
    string,
    () => { body: Envelope | string | Uint8Array; headers?: Record<string, string> },
    number,
    string,
  ];
  const attacks: Attack[] = [
    [
      'tampered Message',
      () => ({ body: { ...fake.notification(), Message: '{"AlarmName":"forged"}' } }),
      403,
      'bad_signature',
    ],
    [
      'tampered MessageId',
      () => ({ body: { ...fake.notification(), MessageId: 'a8b1c2d3-0000-4000-8000-000000000000' } }),
      403,
      'bad_signature',
    ],
    [
      'tampered Subject',
      () => ({ body: { ...fake.notification({ subject: 'OK' }), Subject: 'ALARM' } }),
      403,
      'bad_signature',
    ],
    ['Subject added', () => ({ body: { ...fake.notification(), Subject: 'ALARM' } }), 403, 'bad_signature'],
    [
      'TopicArn moved to another allowed topic',
      () => ({ body: { ...fake.notification(), TopicArn: 'arn:aws:sns:us-east-1:123456789012:other' } }),
      403,
      'bad_signature',
    ],
    [
      'Type changed to UnsubscribeConfirmation',
      () => ({ body: { ...fake.subscriptionConfirmation(), Type: 'UnsubscribeConfirmation' } }),
      403,
      'bad_signature',
    ],
    [
      'signed by another key',
      () => ({ body: fake.sign({ ...fake.notification(), Message: 'forged' }, attacker) }),
      403,
      'bad_signature',
    ],
    [
      'cert URL on a foreign host',
      () => ({ body: fake.sign({ ...fake.notification(), SigningCertURL: foreignUrl() }) }),
      403,
      'bad_cert_url',
    ],
    [
      'cert URL over http',
      () => ({
        body: { ...fake.notification(), SigningCertURL: fake.signingCertUrl.replace('https:', 'http:') },
      }),
      403,
      'bad_cert_url',
    ],
    [
      'cert URL with a query',
      () => ({ body: { ...fake.notification(), SigningCertURL: `${fake.signingCertUrl}?x=1` } }),
      403,
      'bad_cert_url',
    ],
    [
      'cert URL with a non-SNS path',
      () => ({ body: { ...fake.notification(), SigningCertURL: sameHost('/cert.pem') } }),
      403,
      'bad_cert_url',
    ],
    [
      'cert URL with a path prefix',
      () => ({ body: { ...fake.notification(), SigningCertURL: sameHost(`/x${certPath()}`) } }),
      403,
      'bad_cert_url',
    ],
    [
      'cert URL with userinfo',
      () => ({
        body: {
          ...fake.notification(),
          SigningCertURL: fake.signingCertUrl.replace('https://', 'https://u:p@'),
        },
      }),
      403,
      'bad_cert_url',
    ],
    [
      'cert URL missing',
      () => ({ body: { ...fake.notification(), SigningCertURL: undefined } }),
      403,
      'bad_cert_url',
    ],
    [
      'topic not allowed',
      () => ({ body: fake.notification({ topic: 'arn:aws:sns:us-east-1:999999999999:attacker' }) }),
      403,
      'topic_not_allowed',
    ],
    [
      'SubscriptionConfirmation for a foreign topic',
      () => ({
        body: fake.subscriptionConfirmation({ topic: 'arn:aws:sns:us-east-1:999999999999:attacker' }),
      }),
      403,
      'topic_not_allowed',
    ],
    [
      'SubscriptionConfirmation whose SubscribeURL is on a foreign host',
      () => ({
        body: fake.subscriptionConfirmation({
          subscribeUrl: 'https://localhost:1/?Action=ConfirmSubscription&Token=t',
        }),
      }),
      403,
      'bad_subscribe_url',
    ],
    [
      'SubscriptionConfirmation whose SubscribeURL is http',
      () => ({
        body: fake.subscriptionConfirmation({
          subscribeUrl: `${fake.origin.replace('https', 'http')}/?Action=ConfirmSubscription`,
        }),
      }),
      403,
      'bad_subscribe_url',
    ],
    [
      'unknown SignatureVersion',
      () => ({
        body: resign(fake.notification(), (e) => {
          e.SignatureVersion = '3';
        }),
      }),
      403,
      'bad_signature',
    ],
    [
      'missing SignatureVersion',
      () => ({ body: { ...fake.notification(), SignatureVersion: undefined } }),
      403,
      'bad_signature',
    ],
    [
      'missing Signature',
      () => ({ body: { ...fake.notification(), Signature: undefined } }),
      403,
      'bad_signature',
    ],
    [
      'raw delivery of a plain message',
      () => ({
        body: '{"AlarmName":"x","NewStateValue":"ALARM"}',
        headers: { 'x-amz-sns-rawdelivery': 'true' },
      }),
      403,
      'raw_delivery',
    ],
    [
      'raw delivery of text',
      () => ({ body: 'just text', headers: { 'x-amz-sns-rawdelivery': 'true' } }),
      403,
      'raw_delivery',
    ],
    [
      'raw-delivery header on an envelope',
      () => ({ body: fake.notification(), headers: { 'x-amz-sns-rawdelivery': 'True' } }),
      403,
      'raw_delivery',
    ],
    ['malformed JSON', () => ({ body: '{"Type": "Notification",' }), 400, 'bad_request'],
    ['an empty body', () => ({ body: '' }), 400, 'bad_request'],
    ['a JSON array', () => ({ body: '[]' }), 400, 'bad_request'],
    ['invalid UTF-8', () => ({ body: new Uint8Array([0x7b, 0xff, 0xfe, 0x7d]) }), 400, 'bad_request'],
    [
      'MessageId of the wrong type',
      () => ({ body: { ...fake.notification(), MessageId: 42 } }),
      400,
      'bad_request',
    ],
    [
      'Message of the wrong type',
      () => ({ body: { ...fake.notification(), Message: { AlarmName: 'x' } } }),
      400,
      'bad_request',
    ],
    [
      'SignatureVersion of the wrong type',
      () => ({ body: { ...fake.notification(), SignatureVersion: 1 } }),
      400,
      'bad_request',
    ],
    [
      'an unknown Type',
      () => ({
        body: { ...fake.notification(), Type: 'Bogus' },
        headers: { 'x-amz-sns-message-type': 'Bogus' },
      }),
      400,
      'bad_request',
    ],
    [
      'a message-type header that contradicts Type',
      () => ({
        body: fake.notification(),
        headers: { 'x-amz-sns-message-type': 'SubscriptionConfirmation' },
      }),
      400,
      'bad_request',
    ],
    [
      'an oversized body',
      () => ({ body: fake.notification({ message: 'x'.repeat(70 * 1024) }) }),
      413,
      'too_large',
    ],
  ];

  it.each(attacks)('%s → %i %s', async (_name, make, status, error) => {
    const { body, headers } = make();
    const before = {
      fake: fake.requests.length,
      foreign: foreign.requests.length,
      commits: relay.sink.commits,
    };
    const r = await relay.post(body, { ...(headers ? { headers } : {}) });
    expect(r.status).toBe(status);
    expect(r.json).toEqual({ error: error, message: expect.any(String) });
    expect(r.json.message).not.toMatch(/\n\s+at /);
    expect(relay.sink.commits).toBe(before.commits);
    expect(fake.requests.length).toBe(before.fake);
    expect(foreign.requests.length).toBe(before.foreign);
  });

  it('refuses an oversized chunked body (no Content-Length) while it streams', async () => {
    const chunk = 'x'.repeat(16 * 1024);
    const r = await postChunked(relay.url, Array(8).fill(chunk));
    expect(r.status).toBe(413);
    expect(JSON.parse(r.body)).toMatchObject({ error: 'too_large' });
  });

  it('verifies before de-duplicating: a tampered copy of an accepted message is refused, not "duplicate"', async () => {
    const env = fake.notification();
    expect((await relay.post(env)).json).toEqual({ result: 'accepted' });
    const r = await relay.post({ ...env, Message: 'forged' });
    expect(r.status).toBe(403);
  });

  it('counts every refusal by type and result', async () => {
    expect(
      await relay.metric('pdrelay_sns_messages_total', { type: 'Notification', result: 'bad_signature' }),
    ).toBeGreaterThanOrEqual(5);
    expect(
      await relay.metric('pdrelay_sns_messages_total', { type: 'unknown', result: 'raw_delivery' }),
    ).toBe(2);
    expect(
      await relay.metric('pdrelay_sns_messages_total', {
        type: 'SubscriptionConfirmation',
        result: 'topic_not_allowed',
      }),
    ).toBe(1);
  });
});

describe('paths and methods', () => {
  it.each(['/sns/UPPER', '/sns/-lead', '/sns/a.b', `/sns/${'a'.repeat(65)}`, '/sns/a%20b', '/sns/a%2Fb'])(
    'answers 404 for %s',
    async (path) => {
      const relay = await relayWith();
      const r = await relay.post(fake.notification(), { path });
      expect(r.status).toBe(404);
      expect(r.json).toMatchObject({ error: 'not_found' });
      expect(relay.sink.commits).toBe(0);
    },
  );

  it.each(['/sns/a/b', '/sns/', '/other'])('answers 404 in the one error shape for %s', async (path) => {
    const relay = await relayWith();
    const r = await relay.post(fake.notification(), { path });
    expect(r.status).toBe(404);
    expect(r.json).toMatchObject({ error: 'not_found', message: expect.any(String) });
  });

  it('accepts a 64-character endpoint name', async () => {
    const relay = await relayWith();
    expect((await relay.post(fake.notification(), { path: `/sns/${'a'.repeat(64)}` })).status).toBe(200);
  });

  it.each([
    ['GET', '/sns'],
    ['PUT', '/sns'],
    ['DELETE', '/sns/prod'],
    ['PATCH', '/sns/prod'],
  ])('answers 405 with Allow: POST to %s %s', async (method, path) => {
    const relay = await relayWith();
    const r = await relay.post('', { method, path });
    expect(r.status).toBe(405);
    expect(r.headers.get('allow')).toBe('POST');
    expect(r.json).toMatchObject({ error: 'method_not_allowed' });
  });

  it('serves /healthz and /readyz but not /metrics on the SNS port', async () => {
    const relay = await relayWith();
    expect((await fetch(`${relay.url}/healthz`)).status).toBe(200);
    expect((await fetch(`${relay.url}/readyz`)).status).toBe(200);
    const metrics = await fetch(`${relay.url}/metrics`);
    expect(metrics.status).toBe(404);
    expect(await metrics.text()).not.toContain('pdrelay_');
  });

  it('without an ingress, /sns is an unknown path', async () => {
    const { logger } = captureLogger();
    const served = await serveApp(createSnsApp({ logger, readiness: () => null }));
    try {
      expect((await fetch(`${served.url}/sns`, { method: 'POST', body: '{}' })).status).toBe(404);
    } finally {
      await served.close();
    }
  });
});

describe('de-duplication on MessageId', () => {
  it('answers a redelivery 200 "duplicate" without a second event', async () => {
    const relay = await relayWith();
    const env = fake.notification();
    expect((await relay.post(env)).json).toEqual({ result: 'accepted' });
    const again = await relay.post(env);
    expect(again.status).toBe(200);
    expect(again.json).toEqual({ result: 'duplicate' });
    expect(relay.sink.commits).toBe(1);
    expect(
      await relay.metric('pdrelay_sns_messages_total', { type: 'Notification', result: 'duplicate' }),
    ).toBe(1);
  });

  it('commits once for concurrent deliveries of one MessageId', async () => {
    const relay = await relayWith();
    const env = fake.notification();
    const release = relay.sink.hold();
    const pending = Array.from({ length: 10 }, () => relay.post(env));
    await new Promise((r) => setTimeout(r, 50));
    release();
    const results = await Promise.all(pending);
    expect(results.map((r) => r.status)).toEqual(Array(10).fill(200));
    expect(results.filter((r) => r.json.result === 'accepted')).toHaveLength(1);
    expect(relay.sink.commits).toBe(1);
    expect(relay.sink.entries).toHaveLength(1);
  });

  it("answers 'duplicate' for an id accepted before a restart: the sink's commit says so and stores nothing", async () => {
    const sink = new MemorySink();
    const env = fake.notification();
    sink.remember(String(env.MessageId));
    const relay = await relayWith({ sink });
    expect((await relay.post(env)).json).toEqual({ result: 'duplicate' });
    expect(sink.commits).toBe(1);
    expect(sink.entries).toHaveLength(0);
    // From then on this process knows it: no second commit.
    expect((await relay.post(env)).json).toEqual({ result: 'duplicate' });
    expect(sink.commits).toBe(1);
  });

  it('does not remember a message that failed (503), so that the retry is processed', async () => {
    const relay = await relayWith();
    const env = fake.notification();
    relay.sink.unavailable = true;
    const failed = await relay.post(env);
    expect(failed.status).toBe(503);
    expect(failed.json).toMatchObject({ error: 'spool_unavailable' });
    relay.sink.unavailable = false;
    expect((await relay.post(env)).json).toEqual({ result: 'accepted' });
    expect(relay.sink.entries).toHaveLength(1);
  });

  it('keeps at most sns.messageIdCacheSize ids in memory (the spool remembers the rest)', async () => {
    const sink = new MemorySink();
    const relay = await relayWith({ sink, sns: { messageIdCacheSize: 2 } });
    const sub = [
      fake.subscriptionConfirmation(),
      fake.subscriptionConfirmation(),
      fake.subscriptionConfirmation(),
    ];
    for (const s of sub) expect((await relay.post(s)).json).toEqual({ result: 'confirmed' });
    // Confirmations are not spooled: the first id fell out of the 2-entry cache, so it is confirmed again.
    expect((await relay.post(sub[2] as Envelope)).json).toEqual({ result: 'duplicate' });
    expect((await relay.post(sub[0] as Envelope)).json).toEqual({ result: 'confirmed' });
  });
});

describe('subscription confirmation', () => {
  it('visits the SubscribeURL of an allowed topic once, counts and logs it', async () => {
    const relay = await relayWith();
    const before = fake.confirmations().length;
    const env = fake.subscriptionConfirmation();
    const r = await relay.post(env);
    expect(r.status).toBe(200);
    expect(r.json).toEqual({ result: 'confirmed' });
    expect(fake.confirmations().slice(before)).toEqual([expect.objectContaining({ method: 'GET' })]);
    expect(fake.confirmations().at(-1)?.query.get('Token')).toBe(env.Token);
    expect(await relay.metric('pdrelay_sns_subscriptions_confirmed_total')).toBe(1);
    expect(relay.logs.lines()).toContainEqual(
      expect.objectContaining({
        msg: expect.stringMatching(/confirmed/),
        topic: DEFAULT_TOPIC,
        subscriptionArn: expect.stringMatching(/^arn:aws:sns:/),
      }),
    );
    // A redelivery of the same confirmation does not visit again.
    expect((await relay.post(env)).json).toEqual({ result: 'duplicate' });
    expect(fake.confirmations().length).toBe(before + 1);
    expect(relay.sink.commits).toBe(0);
  });

  it('with autoConfirm: false, logs the URL for a human and fetches nothing', async () => {
    const relay = await relayWith({ sns: { autoConfirm: false } });
    // Warm the certificate first so that the only possible request would be the confirmation.
    await relay.post(fake.notification());
    const before = fake.requests.length;
    const env = fake.subscriptionConfirmation();
    const r = await relay.post(env);
    expect(r.json).toEqual({ result: 'confirm_logged' });
    expect(fake.requests.length).toBe(before);
    expect(relay.logs.lines()).toContainEqual(
      expect.objectContaining({ level: 'warn', subscribeUrl: env.SubscribeURL }),
    );
    expect(await relay.metric('pdrelay_sns_subscriptions_confirmed_total')).toBe(0);
    expect(
      await relay.metric('pdrelay_sns_messages_total', {
        type: 'SubscriptionConfirmation',
        result: 'confirm_logged',
      }),
    ).toBe(1);
  });

  it('answers 503 when the SubscribeURL fails, so that SNS retries; the retry confirms', async () => {
    const relay = await relayWith();
    fake.fault('/', { status: 500 });
    const env = fake.subscriptionConfirmation();
    try {
      const r = await relay.post(env);
      expect(r.status).toBe(503);
      expect(r.json).toMatchObject({ error: 'confirm_failed' });
    } finally {
      fake.fault('/', undefined);
    }
    expect((await relay.post(env)).json).toEqual({ result: 'confirmed' });
  });

  it('answers 503 when the SubscribeURL does not answer within confirmTimeoutMs', async () => {
    const relay = await relayWith({ sns: { confirmTimeoutMs: 200 } });
    fake.fault('/', { hang: true });
    try {
      const r = await relay.post(fake.subscriptionConfirmation());
      expect(r.status).toBe(503);
      expect(r.json.message).toMatch(/timeout/);
    } finally {
      fake.fault('/', undefined);
    }
  });
});

describe('UnsubscribeConfirmation', () => {
  it('verifies it (Token included), logs and counts it, answers 200, and acts on nothing', async () => {
    const relay = await relayWith();
    await relay.post(fake.notification());
    const before = fake.requests.length;
    const env = fake.unsubscribeConfirmation();
    const r = await relay.post(env);
    expect(r.json).toEqual({ result: 'unsubscribe_logged' });
    expect(fake.requests.length).toBe(before);
    expect(relay.sink.commits).toBe(1);
    expect(relay.logs.lines()).toContainEqual(
      expect.objectContaining({ msg: expect.stringMatching(/unsubscribed/), topic: DEFAULT_TOPIC }),
    );
    expect(
      await relay.metric('pdrelay_sns_messages_total', {
        type: 'UnsubscribeConfirmation',
        result: 'unsubscribe_logged',
      }),
    ).toBe(1);
  });

  it('refuses one whose Token was changed', async () => {
    const relay = await relayWith();
    expect((await relay.post({ ...fake.unsubscribeConfirmation(), Token: 'other' })).status).toBe(403);
  });
});

describe('basic auth', () => {
  const auth = (user: string, pass: string) => ({
    authorization: `Basic ${Buffer.from(`${user}:${pass}`).toString('base64')}`,
  });
  const withAuth = () =>
    relayWith({ server: { basicAuth: { username: 'sns', password: new Secret('hunter2-hunter2') } } });

  it('challenges a request without credentials with 401 and WWW-Authenticate, as SNS expects', async () => {
    const relay = await withAuth();
    const r = await relay.post(fake.notification());
    expect(r.status).toBe(401);
    expect(r.headers.get('www-authenticate')).toBe('Basic realm="pd-relay", charset="UTF-8"');
    expect(r.json).toMatchObject({ error: 'unauthorized' });
    expect(relay.sink.commits).toBe(0);
  });

  it.each([
    ['a wrong password', auth('sns', 'hunter2-hunter3')],
    ['a wrong user', auth('admin', 'hunter2-hunter2')],
  ])('refuses %s with 401', async (_name, headers) => {
    const relay = await withAuth();
    const r = await relay.post(fake.notification(), { headers });
    expect(r.status).toBe(401);
    expect(r.headers.get('www-authenticate')).toMatch(/^Basic /);
  });

  it('accepts the right credentials', async () => {
    const relay = await withAuth();
    expect((await relay.post(fake.notification(), { headers: auth('sns', 'hunter2-hunter2') })).status).toBe(
      200,
    );
  });

  it('checks credentials before anything else on /sns paths, but not on the health endpoints', async () => {
    const relay = await withAuth();
    expect((await relay.post('', { method: 'GET' })).status).toBe(401);
    expect((await relay.post(fake.notification(), { path: '/sns/NOT-VALID' })).status).toBe(401);
    expect((await fetch(`${relay.url}/healthz`)).status).toBe(200);
  });
});

describe('503 when a retry can succeed', () => {
  it('answers 503 when the signing certificate cannot be fetched, and fetches again on the retry', async () => {
    const url = fake.serveCertificate('SimpleNotificationService-503503.pem', testTls.signingCertPem);
    const path = new URL(url).pathname;
    let now = Date.now();
    const relay = await relayWith({ clock: { now: () => now } });
    fake.fault(path, { status: 500 });
    const env = fake.notification({ signingCertUrl: url });
    const r = await relay.post(env);
    expect(r.status).toBe(503);
    expect(r.json).toMatchObject({ error: 'cert_unavailable' });
    expect(relay.sink.commits).toBe(0);
    fake.fault(path, undefined);
    now += 5_000;
    expect((await relay.post(env)).json).toEqual({ result: 'accepted' });
    expect(await relay.metric('pdrelay_sns_cert_fetches_total', { result: 'http_status' })).toBe(1);
  });

  it('answers 503 when the certificate host does not answer within certTimeoutMs', async () => {
    const url = fake.serveCertificate('SimpleNotificationService-7e7e.pem', testTls.signingCertPem);
    fake.fault(new URL(url).pathname, { hang: true });
    const relay = await relayWith({ sns: { certTimeoutMs: 200 } });
    const r = await relay.post(fake.notification({ signingCertUrl: url }));
    expect(r.status).toBe(503);
    expect(r.json).toMatchObject({ error: 'cert_unavailable', message: expect.stringMatching(/timeout/) });
    expect(await relay.metric('pdrelay_sns_cert_fetches_total', { result: 'timeout' })).toBe(1);
  });

  it('answers 503 while draining (and /readyz says why), 200 again when ready', async () => {
    let draining = true;
    const relay = await relayWith({ readiness: () => (draining ? 'draining' : null) });
    const env = fake.notification();
    const r = await relay.post(env);
    expect(r.status).toBe(503);
    expect(r.json).toMatchObject({ error: 'not_ready', message: expect.stringMatching(/draining/) });
    expect((await fetch(`${relay.url}/readyz`)).status).toBe(503);
    draining = false;
    expect((await relay.post(env)).json).toEqual({ result: 'accepted' });
  });

  it('answers 500 (SNS retries) when decode/rules throw, logs the stack, and keeps serving', async () => {
    let broken = true;
    const relay = await relayWith({
      handleNotification: (e, endpoint): OutboundEvent[] => {
        if (broken) throw new TypeError('rules bug');
        return oneEventPerMessage(e, endpoint);
      },
    });
    const env = fake.notification();
    const r = await relay.post(env);
    expect(r.status).toBe(500);
    expect(r.json).toEqual({ error: 'internal', message: expect.not.stringMatching(/rules bug|TypeError/) });
    const line = relay.logs.lines().find((l) => l.result === 'error');
    expect(line).toMatchObject({
      level: 'error',
      err: { type: 'TypeError', message: 'rules bug', stack: expect.any(String) },
    });
    broken = false;
    expect((await relay.post(env)).json).toEqual({ result: 'accepted' });
  });
});

describe('request log line and metrics', () => {
  it('writes one JSON line per request with reqId, type, topic, messageId, endpoint, result, status, duration', async () => {
    const relay = await relayWith();
    const env = fake.notification();
    const r = await relay.post(env, { path: '/sns/prod' });
    const lines = relay.logs.lines().filter((l) => 'reqId' in l && 'status' in l);
    expect(lines).toEqual([
      expect.objectContaining({
        level: 'info',
        reqId: r.headers.get('x-request-id'),
        type: 'Notification',
        topic: DEFAULT_TOPIC,
        messageId: env.MessageId,
        endpoint: 'prod',
        result: 'accepted',
        status: 200,
        durationMs: expect.any(Number),
        events: 1,
      }),
    ]);
  });

  it('sets the last-message time per endpoint only for verified messages', async () => {
    let now = 1_700_000_000_000;
    const relay = await relayWith({ clock: { now: () => now } });
    await relay.post({ ...fake.notification(), Message: 'tampered' }, { path: '/sns/forged' });
    expect(await relay.metric('pdrelay_last_message_timestamp_seconds', { endpoint: 'forged' })).toBe(0);
    now += 1_000;
    await relay.post(fake.notification(), { path: '/sns/prod' });
    expect(await relay.metric('pdrelay_last_message_timestamp_seconds', { endpoint: 'prod' })).toBe(
      1_700_000_001,
    );
    expect(await relay.metric('pdrelay_ingest_request_duration_seconds_count')).toBe(2);
  });
});
