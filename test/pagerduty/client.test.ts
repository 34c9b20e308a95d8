import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { PagerDutyClient } from '../../src/pagerduty/client.js';
import { MAX_EVENT_BYTES } from '../../src/pagerduty/limits.js';
import type { AlertEventBody } from '../../src/pagerduty/types.js';
import { Secret } from '../../src/shared/secret.js';
import { FakePagerDuty, testRoutingKey } from '../helpers/fake-pagerduty.js';

const KEY = testRoutingKey('client');
const trigger: AlertEventBody = {
  event_action: 'trigger',
  dedup_key: 'arn:aws:cloudwatch:eu-west-1:123456789012:alarm:cpu',
  payload: { summary: 'CPU high', source: 'cloudwatch', severity: 'critical' },
};

let fake: FakePagerDuty;
let client: PagerDutyClient;
beforeAll(async () => {
  fake = await FakePagerDuty.start();
  client = new PagerDutyClient({ url: fake.url, timeoutMs: 500 });
});
afterAll(async () => {
  await client.close();
  await fake.close();
});
beforeEach(() => fake.heal());

describe('PagerDutyClient', () => {
  it('posts alert events to /v2/enqueue with the routing key and answers delivered on 202', async () => {
    const r = await client.send(new Secret(KEY), 'trigger', trigger);
    expect(r).toMatchObject({
      outcome: 'delivered',
      status: 202,
      codeClass: '2xx',
      dedupKey: trigger.dedup_key,
    });
    const got = fake.accepted.at(-1);
    expect(got).toMatchObject({ path: '/v2/enqueue', routingKey: KEY, action: 'trigger' });
  });

  it('posts change events to /v2/change/enqueue', async () => {
    const r = await client.send(new Secret(KEY), 'change', {
      payload: { summary: 'Deployed v2', source: 'codedeploy' },
      links: [{ href: 'https://example.com' }],
    });
    expect(r.outcome).toBe('delivered');
    expect(fake.accepted.at(-1)).toMatchObject({ path: '/v2/change/enqueue', action: 'change' });
    expect(fake.accepted.at(-1)?.body.event_action).toBeUndefined();
  });

  it('builds the EU and trailing-slash URLs', () => {
    const eu = new PagerDutyClient({ url: 'https://events.eu.pagerduty.com/', timeoutMs: 1000 });
    expect(eu.enqueueUrl).toBe('https://events.eu.pagerduty.com/v2/enqueue');
    expect(eu.changeUrl).toBe('https://events.eu.pagerduty.com/v2/change/enqueue');
    void eu.close();
  });

  it.each([
    [
      400,
      '{"status":"invalid event","message":"Event object is invalid","errors":["Bad thing","Other"]}',
      'failed',
      'rejected',
      '400: Bad thing; Other',
    ],
    [
      400,
      '{"status":"invalid event","message":"Event object is invalid","errors":["Invalid routing key"]}',
      'failed',
      'bad_key',
      '400: Invalid routing key',
    ],
    [401, '{"message":"Unauthorized"}', 'failed', 'bad_key', '401: Unauthorized'],
    [403, '', 'failed', 'bad_key', '403'],
    [404, 'not found', 'failed', 'bad_key', '404: not found'],
    [413, '<html>too large</html>', 'failed', 'too_large', '413: <html>too large</html>'],
    [429, '{"status":"throttle event"}', 'retry', 'rate_limited', '429: {"status":"throttle event"}'],
    [500, '', 'retry', 'server_error', '500'],
    [502, '<html>\n bad gateway \n</html>', 'retry', 'server_error', '502: <html> bad gateway </html>'],
    [503, '{"message":"Service unavailable"}', 'retry', 'server_error', '503: Service unavailable'],
    [408, '', 'retry', 'timeout', '408'],
    [302, '', 'retry', 'unexpected_status', '302'],
    [418, '', 'retry', 'unexpected_status', '418'],
  ])('classifies %i as %s (%s)', async (status, body, outcome, reason, detail) => {
    fake.script({ status, body });
    const r = await client.send(new Secret(KEY), 'trigger', trigger);
    expect(r).toMatchObject({ outcome, reason, status, detail });
  });

  it('reads Retry-After on 429', async () => {
    fake.script({ status: 429, body: '{}', headers: { 'retry-after': '7' } });
    expect(await client.send(new Secret(KEY), 'trigger', trigger)).toMatchObject({
      outcome: 'retry',
      reason: 'rate_limited',
      retryAfterMs: 7000,
    });
  });

  it('answers the fake’s real schema errors with their text', async () => {
    fake.rejectWhen(() => ["'payload.custom_details' is weird"]);
    expect(await client.send(new Secret(KEY), 'trigger', trigger)).toMatchObject({
      outcome: 'failed',
      reason: 'rejected',
      detail: "400: 'payload.custom_details' is weird",
    });
  });

  it('answers an unknown key as bad_key, never echoing the key', async () => {
    const other = testRoutingKey('unknown');
    fake.invalidateKey(other);
    const r = await client.send(new Secret(other), 'trigger', trigger);
    expect(r).toMatchObject({ outcome: 'failed', reason: 'bad_key' });
    expect(JSON.stringify(r)).not.toContain(other);
  });

  it('redacts the key if an answer echoes it', async () => {
    fake.script({ status: 400, body: JSON.stringify({ errors: [`Key ${KEY} is disabled`] }) });
    const r = await client.send(new Secret(KEY), 'trigger', trigger);
    expect(r).toMatchObject({ detail: '400: Key [redacted] is disabled' });
  });

  it('times out a slow answer and retries it', async () => {
    fake.latency(2000);
    const r = await client.send(new Secret(KEY), 'trigger', trigger);
    expect(r).toMatchObject({ outcome: 'retry', reason: 'timeout', codeClass: 'timeout' });
  });

  it('answers aborted when the caller aborts (shutdown), not a retry', async () => {
    fake.latency(2000);
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 20);
    const r = await client.send(new Secret(KEY), 'trigger', trigger, { signal: ac.signal });
    expect(r.outcome).toBe('aborted');
  });

  it('retries network errors (connection refused)', async () => {
    const server = createServer();
    server.listen(0, '127.0.0.1');
    await new Promise((r) => server.once('listening', r));
    const { port } = server.address() as AddressInfo;
    await new Promise((r) => server.close(r));
    const dead = new PagerDutyClient({ url: `http://127.0.0.1:${port}`, timeoutMs: 1000 });
    const r = await dead.send(new Secret(KEY), 'trigger', trigger);
    await dead.close();
    expect(r).toMatchObject({ outcome: 'retry', reason: 'network', codeClass: 'network' });
    expect(r.outcome === 'retry' && r.detail).toMatch(/ECONNREFUSED/);
  });

  it.each([
    [
      'resolve without dedup_key',
      'resolve' as const,
      { event_action: 'resolve' },
      /dedup_key in a resolve event/,
    ],
    [
      'change without summary',
      'change' as const,
      { payload: { summary: '' } },
      /payload.summary in a change event/,
    ],
    [
      'trigger without payload',
      'trigger' as const,
      { event_action: 'trigger' },
      /payload in a trigger event/,
    ],
  ])('never sends an event PagerDuty would refuse: %s', async (_name, action, body, message) => {
    const before = fake.requests.length;
    const r = await client.send(new Secret(KEY), action, body as AlertEventBody);
    expect(r).toMatchObject({ outcome: 'failed', reason: 'invalid' });
    expect(r.outcome === 'failed' && r.detail).toMatch(message);
    expect(fake.requests.length).toBe(before);
  });

  it('fits what the rules stage did not: long summary, bad severity, 700 KB of details', async () => {
    const r = await client.send(new Secret(KEY), 'trigger', {
      event_action: 'trigger',
      dedup_key: 'd'.repeat(300),
      payload: {
        summary: 's'.repeat(5000),
        source: '',
        severity: 'major' as 'error',
        custom_details: { big: 'x'.repeat(700_000), small: 'kept' },
      },
    });
    expect(r.outcome).toBe('delivered');
    expect(r.truncations.sort()).toEqual(['custom_details', 'dedup_key', 'severity', 'source', 'summary']);
    const got = fake.accepted.at(-1);
    expect(got?.bytes).toBeLessThanOrEqual(MAX_EVENT_BYTES);
    expect(got?.dedupKey).toHaveLength(64);
  });
});

describe('FakePagerDuty', () => {
  it('drops a resolve sent through another key than its trigger, as PagerDuty does, and says so', async () => {
    const other = testRoutingKey('other');
    fake.clearRecords();
    await client.send(new Secret(KEY), 'trigger', { ...trigger, dedup_key: 'sticky' });
    await client.send(new Secret(other), 'resolve', { event_action: 'resolve', dedup_key: 'sticky' });
    expect(fake.accepted).toHaveLength(2);
    expect(fake.droppedFollowUps()).toMatchObject([{ routingKey: other, dedupKey: 'sticky' }]);
    expect(fake.alertState(KEY, 'sticky')).toBe('triggered');
    await client.send(new Secret(KEY), 'resolve', { event_action: 'resolve', dedup_key: 'sticky' });
    expect(fake.alertState(KEY, 'sticky')).toBe('resolved');
  });

  it('answers 429 beyond its sliding window, per key, and reports the most requests seen in one window', async () => {
    const small = await FakePagerDuty.start({ windowMs: 60_000, limit: 3 });
    const c = new PagerDutyClient({ url: small.url, timeoutMs: 1000 });
    try {
      const outcomes: string[] = [];
      for (let i = 0; i < 4; i++) outcomes.push((await c.send(new Secret(KEY), 'trigger', trigger)).outcome);
      outcomes.push((await c.send(new Secret(testRoutingKey('b')), 'trigger', trigger)).outcome);
      expect(outcomes).toEqual(['delivered', 'delivered', 'delivered', 'retry', 'delivered']);
      expect(small.count(429)).toBe(1);
      expect(small.maxInWindow(KEY)).toBe(4);
      expect(small.maxInWindow(testRoutingKey('b'))).toBe(1);
    } finally {
      await c.close();
      await small.close();
    }
  });

  it.each([
    [400, 'Event object is too large'],
    [413, 'Event object is too large'],
  ] as const)('answers %i to a request over 512,000 bytes', async (status, error) => {
    const small = await FakePagerDuty.start({ oversizeStatus: status });
    try {
      const res = await fetch(`${small.url}/v2/enqueue`, {
        method: 'POST',
        body: JSON.stringify({ routing_key: KEY, event_action: 'trigger', pad: 'x'.repeat(512_000) }),
      });
      expect(res.status).toBe(status);
      expect(JSON.stringify(await res.json())).toContain(error);
    } finally {
      await small.close();
    }
  });
});
