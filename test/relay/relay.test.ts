import { mkdirSync, writeFileSync } from 'node:fs';
import { Agent, request as httpRequest, type IncomingMessage } from 'node:http';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type Config, loadConfig } from '../../src/config/load.js';
import { type Relay, startRelay } from '../../src/main.js';
import { FakePagerDuty, testRoutingKey } from '../helpers/fake-pagerduty.js';
import { type Envelope, FakeSns } from '../helpers/fake-sns.js';
import { captureLogger } from '../helpers/log.js';
import { tempDir, writeIn } from '../helpers/temp.js';

const TOPIC = 'arn:aws:sns:eu-west-1:123456789012:alarms';
const ALARM_ARN = 'arn:aws:cloudwatch:eu-west-1:123456789012:alarm:api-5xx';
const KEY = testRoutingKey(1);

function alarm(state: 'ALARM' | 'OK', stateChangeTime = '2026-11-20T10:00:00.000+0000'): string {
  return JSON.stringify({
    AlarmName: 'api-5xx',
    AlarmDescription: 'API errors. severity=critical',
    AWSAccountId: '123456789012',
    NewStateValue: state,
    NewStateReason:
      state === 'ALARM' ? 'Threshold Crossed: 1 datapoint [12.0] was >= 5.0.' : 'Back to normal.',
    StateChangeTime: stateChangeTime,
    Region: 'EU (Ireland)',
    AlarmArn: ALARM_ARN,
    OldStateValue: state === 'ALARM' ? 'OK' : 'ALARM',
    Trigger: {
      MetricName: '5XXError',
      Namespace: 'AWS/ApiGateway',
      StatisticType: 'Statistic',
      Statistic: 'SUM',
      Dimensions: [{ name: 'ApiName', value: 'shop' }],
      Period: 60,
      EvaluationPeriods: 1,
      ComparisonOperator: 'GreaterThanOrEqualToThreshold',
      Threshold: 5,
    },
  });
}

/**
 * The composition root, in-process: the real ingress, rules, spool and dispatcher wired by
 * startRelay, against FakeSns (certificates, SubscribeURL) and FakePagerDuty over real sockets.
 */
describe('startRelay wiring', () => {
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

  async function start(
    extraYaml = '',
    opts: { keys?: boolean } = {},
  ): Promise<{ relay: Relay; dir: string; log: ReturnType<typeof captureLogger> }> {
    const t = tempDir();
    cleanup = t.cleanup;
    mkdirSync(join(t.dir, 'rules'));
    const file = writeIn(
      t.dir,
      'config.yaml',
      [
        'server: { host: 127.0.0.1, port: 0 }',
        'metrics: { host: 127.0.0.1, port: 0 }',
        'sns:',
        `  topics: ["${TOPIC}"]`,
        `  certHostPattern: '${sns.certHostPattern}'`,
        `pagerduty: { url: "${pd.url}" }`,
        opts.keys === false ? '' : `routes: { default: { keys: ["${KEY}"] } }`,
        'rules: { paths: [rules], watch: false }',
        'delivery: { minBackoffMs: 10, maxBackoffMs: 50 }',
        extraYaml,
      ].join('\n'),
    );
    const log = captureLogger('debug');
    const config: Config = loadConfig({ file, env: {} });
    relay = await startRelay(config, { logger: log.logger, snsCa: sns.caPem });
    return { relay, dir: t.dir, log };
  }

  const post = (r: Relay, envelope: Envelope, path = '/sns') =>
    fetch(`http://127.0.0.1:${r.snsAddress.port}${path}`, {
      method: 'POST',
      headers: {
        'content-type': 'text/plain; charset=UTF-8',
        'x-amz-sns-message-type': String(envelope.Type),
      },
      body: JSON.stringify(envelope),
    });

  it('confirms the subscription, then triggers and resolves one alert on the same key', async () => {
    const { relay } = await start();
    const confirm = await post(relay, sns.subscriptionConfirmation({ topic: TOPIC }));
    expect(confirm.status).toBe(200);
    expect(sns.confirmations()).toHaveLength(1);

    const trigger = await post(
      relay,
      sns.notification({ topic: TOPIC, subject: 'ALARM: "api-5xx"', message: alarm('ALARM') }),
    );
    expect(trigger.status).toBe(200);
    const resolve = await post(
      relay,
      sns.notification({ topic: TOPIC, subject: 'OK: "api-5xx"', message: alarm('OK') }),
    );
    expect(resolve.status).toBe(200);

    await pd.waitFor((f) => f.accepted.length === 2, 10_000, 'trigger and resolve');
    const [t, r] = pd.accepted;
    expect(t).toMatchObject({ routingKey: KEY, action: 'trigger', dedupKey: ALARM_ARN });
    expect(t?.body).toMatchObject({ payload: { severity: 'critical' } });
    expect(r).toMatchObject({ routingKey: KEY, action: 'resolve', dedupKey: ALARM_ARN });
  });

  it('answers a redelivered MessageId 200 without a second event', async () => {
    const { relay } = await start();
    const envelope = sns.notification({ topic: TOPIC, message: alarm('ALARM') });
    expect((await post(relay, envelope)).status).toBe(200);
    const again = await post(relay, envelope);
    expect(again.status).toBe(200);
    expect(await again.json()).toEqual({ result: 'duplicate' });
    await pd.waitFor((f) => f.accepted.length === 1);
    await new Promise((r) => setTimeout(r, 200));
    expect(pd.accepted).toHaveLength(1);
  });

  it('does not send an ALARM that SNS delivers after the OK that followed it (a retry of a 5xx)', async () => {
    const { relay, log } = await start();
    // The ALARM's first delivery failed (503 from the relay); SNS delivered the OK, then retried.
    const fired = sns.notification({ topic: TOPIC, message: alarm('ALARM', '2026-11-20T10:00:00.000+0000') });
    const cleared = sns.notification({ topic: TOPIC, message: alarm('OK', '2026-11-20T10:07:00.000+0000') });
    expect((await post(relay, cleared)).status).toBe(200);
    const late = await post(relay, fired);
    expect(late.status).toBe(200);
    expect(await late.json()).toEqual({ result: 'accepted' });

    await pd.waitFor((f) => f.accepted.length === 1, 10_000, 'the resolve');
    await new Promise((r) => setTimeout(r, 200));
    expect(pd.accepted.map((e) => [e.action, e.dedupKey])).toEqual([['resolve', ALARM_ARN]]);
    expect(log.lines()).toContainEqual(
      expect.objectContaining({
        level: 'warn',
        msg: 'Event not sent: a newer event for its dedup key was already accepted (SNS delivered this one late).',
        action: 'trigger',
        dedupKey: ALARM_ARN,
        eventTime: '2026-11-20T10:00:00.000Z',
        newerTime: '2026-11-20T10:07:00.000Z',
      }),
    );
    const metrics = await (await fetch(`http://127.0.0.1:${relay.metricsAddress.port}/metrics`)).text();
    expect(metrics).toContain('pdrelay_events_total{route="default",action="trigger",outcome="stale"} 1');
    // The next state change pages again.
    const again = sns.notification({ topic: TOPIC, message: alarm('ALARM', '2026-11-20T10:20:00.000+0000') });
    expect((await post(relay, again)).status).toBe(200);
    await pd.waitFor((f) => f.accepted.length === 2, 10_000, 'the next trigger');
    expect(pd.accepted[1]).toMatchObject({ action: 'trigger', dedupKey: ALARM_ARN });
  });

  it('in dry-run lists the events at /-/events on the metrics port and sends nothing', async () => {
    const { relay } = await start('', { keys: false });
    expect(relay.config.dryRun).toBe(true);
    expect((await post(relay, sns.notification({ topic: TOPIC, message: alarm('ALARM') }))).status).toBe(200);
    const res = await fetch(`http://127.0.0.1:${relay.metricsAddress.port}/-/events`);
    const { events } = (await res.json()) as {
      events: Array<{ route: string; action: string; event: { dedup_key: string } }>;
    };
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({ route: 'default', action: 'trigger', event: { dedup_key: ALARM_ARN } });
    expect(pd.requests).toHaveLength(0);
  });

  it('closes keep-alive connections on shutdown: close() does not wait for their idle timeout', async () => {
    const { relay } = await start();
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    const body = JSON.stringify(sns.notification({ topic: TOPIC, message: alarm('ALARM') }));
    // A request in progress when the relay starts closing: its headers read ("100 Continue"), its
    // body still to come, on a keep-alive connection that would stay open after the answer.
    let closing: Promise<void> | undefined;
    const res = await new Promise<IncomingMessage>((resolve, reject) => {
      const req = httpRequest(
        {
          host: '127.0.0.1',
          port: relay.snsAddress.port,
          path: '/sns',
          method: 'POST',
          agent,
          headers: {
            'content-type': 'text/plain',
            'content-length': Buffer.byteLength(body),
            expect: '100-continue',
          },
        },
        resolve,
      );
      req.on('error', reject);
      req.on('continue', () => {
        closing = relay.close();
        req.end(body);
      });
      req.flushHeaders();
    });
    res.resume();
    // Answered, and the connection (idle now, kept alive by the client) does not hold close() up.
    expect(res.statusCode).toBe(200);
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      closing,
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error('close() waited for the keep-alive connection')), 10_000);
      }),
    ]);
    clearTimeout(timer);
    agent.destroy();
  });

  it('reload applies new rules and the topic allow-list; a broken rule file keeps the running rules', async () => {
    const { relay, dir, log } = await start();
    const custom = JSON.stringify({ team: 'payments', text: 'card declines up' });
    writeFileSync(
      join(dir, 'rules/payments.yaml'),
      [
        '- name: payments',
        '  match: { kind: [json], message: { team: [payments] } }',
        '  dedup_key: "payments/{{ message.text }}"',
        '  payload: { summary: "Payments: {{ message.text }}", severity: warning }',
      ].join('\n'),
    );
    expect(relay.reload().ok).toBe(true);
    expect((await post(relay, sns.notification({ topic: TOPIC, message: custom }))).status).toBe(200);
    await pd.waitFor((f) => f.accepted.length === 1);
    expect(pd.accepted[0]?.body).toMatchObject({
      dedup_key: 'payments/card declines up',
      payload: { severity: 'warning' },
    });

    writeFileSync(
      join(dir, 'rules/payments.yaml'),
      '- name: payments\n  match: { kind: [json] }\n  payload: { summary: "{{ x | nope }}" }\n',
    );
    const failed = relay.reload();
    expect(failed.ok).toBe(false);
    expect(log.text()).toContain('undefined filter: nope');
    expect(
      (
        await post(
          relay,
          sns.notification({ topic: TOPIC, message: JSON.stringify({ team: 'payments', text: 'again' }) }),
        )
      ).status,
    ).toBe(200);
    await pd.waitFor((f) => f.accepted.length === 2);
    expect(pd.accepted[1]?.dedupKey).toBe('payments/again');

    // A narrower allow-list applies at once, and so does a changed key pool (a storm's remedy).
    const configFile = relay.config.file as string;
    writeFileSync(
      configFile,
      (await import('node:fs'))
        .readFileSync(configFile, 'utf8')
        .replace(`topics: ["${TOPIC}"]`, 'topics: ["arn:aws:sns:*:999999999999:*"]')
        .replace(KEY, testRoutingKey(2)),
    );
    writeFileSync(join(dir, 'rules/payments.yaml'), '');
    expect(relay.reload('signal').ok).toBe(true);
    expect((await post(relay, sns.notification({ topic: TOPIC, message: alarm('ALARM') }))).status).toBe(403);
    expect(log.lines().find((l) => l.msg === 'Rules and key pools reloaded.')).toMatchObject({
      trigger: 'signal',
      keysAdded: ['default-1'],
      keysRemoved: ['default-1'],
    });
    expect(log.lines().some((l) => Array.isArray(l.sections) && l.sections.includes('routes'))).toBe(false);
    expect(log.text()).not.toContain(testRoutingKey(2));
  });
});

describe('startRelay failing at start', () => {
  it('releases the spool when the rules are broken, so that a fixed start can take it at once', async () => {
    const { dir, cleanup } = tempDir();
    try {
      mkdirSync(join(dir, 'rules'));
      writeIn(dir, 'rules/broken.yaml', '- name: broken\n  match: { kind: [json] }\n  action: "{{ oops"\n');
      const yaml = (paths: string[]) =>
        [
          'server: { host: 127.0.0.1, port: 0 }',
          'metrics: { host: 127.0.0.1, port: 0 }',
          `sns: { topics: ["${TOPIC}"] }`,
          `routes: { default: { keys: ["${KEY}"] } }`,
          `rules: { paths: ${JSON.stringify(paths)}, watch: false }`,
          'spool: { dir: spool }',
          '',
        ].join('\n');
      const broken = loadConfig({ file: writeIn(dir, 'broken.yaml', yaml(['rules'])), env: {} });
      await expect(startRelay(broken, { logger: captureLogger().logger })).rejects.toThrow(
        /^The rules have 1 problem/,
      );
      // Without the release the spool's file lock would still be held by this process.
      const fixed = loadConfig({ file: writeIn(dir, 'fixed.yaml', yaml([])), env: {} });
      const relay = await startRelay(fixed, { logger: captureLogger().logger });
      await relay.close();
    } finally {
      cleanup();
    }
  });
});
