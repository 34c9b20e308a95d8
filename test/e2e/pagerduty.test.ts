import { describe, expect, it } from 'vitest';
import { expectLivesDelivered, postLives } from './helpers/sequences.js';
import { type E2eWorld, e2eRule, metricValue, until, useE2eWorld } from './helpers/world.js';

/**
 * PagerDuty misbehaving, seen from the built relay: a long outage (every request 503) and a 429
 * storm. SNS never notices (every message is answered 200 once spooled), and PagerDuty ends up
 * with every event, in order per dedup key, never more than its window allows.
 */
describe('e2e: PagerDuty outage, then recovery', () => {
  let world: E2eWorld;
  useE2eWorld((w) => (world = w), { windowMs: 1000, limit: 100 });

  it('keeps every event through an outage of 503s and delivers them all, in order per dedup key, once PagerDuty is back', async () => {
    const relay = await world.startRelay(world.dir(), {
      routes: { default: { aliases: ['outage-1', 'outage-2'], ratePerMinute: 100 } },
      rules: { 'e2e.yaml': e2eRule('v1') },
      delivery: { minBackoffMs: 50, maxBackoffMs: 400 },
    });
    const sns = world.client(() => relay);
    world.pd.failAll(600_000, 503);

    const lives = { prefix: 'outage-', alerts: 12, steps: 6 };
    const results = await postLives(world, sns, lives);
    expect(results.map((r) => r.status)).toEqual(results.map(() => 200));
    // The outage is real: PagerDuty refused requests for both keys, the relay retried, and nothing got through.
    await world.pd.waitFor(
      (f) =>
        new Set(f.requests.filter((r) => r.status === 503).map((r) => r.routingKey)).size === 2 &&
        f.count(503) >= 10,
      10_000,
      '503s on both keys',
    );
    expect(world.pd.accepted).toEqual([]);
    const during = await world.metrics(relay);
    expect(metricValue(during, 'pdrelay_delivery_retries_total', { reason: 'server_error' })).toBeGreaterThan(
      0,
    );
    expect(metricValue(during, 'pdrelay_queue_depth')).toBe(lives.alerts * lives.steps);
    expect((await sns.get('/readyz')).status).toBe(200);

    world.pd.heal();
    await world.pd.waitFor(
      (f) => f.accepted.length >= lives.alerts * lives.steps,
      20_000,
      'every event after the outage',
    );
    expectLivesDelivered(world.pd, lives);
    // PagerDuty records an event before its answer reaches the relay: poll what the relay counts.
    await expect
      .poll(
        async () => metricValue(await world.metrics(relay), 'pdrelay_events_total', { outcome: 'delivered' }),
        {
          timeout: 5000,
        },
      )
      .toBe(lives.alerts * lives.steps);
    expect(metricValue(await world.metrics(relay), 'pdrelay_dead_letters')).toBe(0);
  });
});

describe('e2e: a 429 storm', () => {
  const windowMs = 1000;
  const limit = 10;
  let world: E2eWorld;
  useE2eWorld((w) => (world = w), { windowMs, limit });

  it('backs off while PagerDuty answers 429, then delivers everything without ever exceeding the window', async () => {
    const minBackoffMs = 100;
    const maxBackoffMs = 1000;
    const aliases = ['storm-1', 'storm-2'];
    const relay = await world.startRelay(world.dir(), {
      routes: { default: { aliases, ratePerMinute: limit } },
      rules: { 'e2e.yaml': e2eRule('v1') },
      delivery: { minBackoffMs, maxBackoffMs, rateWindowMs: windowMs },
      logLevel: 'debug',
    });
    const sns = world.client(() => relay);
    world.pd.storm429(600_000);

    const lives = { prefix: 'storm-', alerts: 20, steps: 2 };
    const results = await postLives(world, sns, lives);
    expect(results.every((r) => r.status === 200)).toBe(true);
    const keys = aliases.map((a) => world.key(a));
    const throttled = (key: string) =>
      world.pd.requests.filter((r) => r.routingKey === key && r.status === 429);
    await world.pd.waitFor(
      () => keys.every((k) => throttled(k).length >= 4),
      15_000,
      'four throttled attempts on each key',
    );
    world.pd.heal();
    const stormEnded = performance.now();

    // Backoff: after a 429 a key waits at least minBackoffMs before its next request.
    for (const key of keys) {
      const at = throttled(key)
        .filter((r) => r.at < stormEnded)
        .map((r) => r.at);
      for (let i = 1; i < at.length; i++)
        expect((at[i] as number) - (at[i - 1] as number)).toBeGreaterThanOrEqual(minBackoffMs - 5);
    }
    // …growing exponentially, with full jitter, within [min, min(max, min × 2^attempt)].
    const retryLines = () =>
      relay.logs.filter((l) => l.msg === 'Delivery failed; will retry.' && l.reason === 'rate_limited');
    await until(() => retryLines().length >= 8, 'the retry log lines');
    for (const r of retryLines()) {
      const ceiling = Math.min(maxBackoffMs, minBackoffMs * 2 ** Number(r.attempts));
      expect(Number(r.delayMs)).toBeGreaterThanOrEqual(minBackoffMs);
      expect(Number(r.delayMs)).toBeLessThanOrEqual(ceiling);
    }

    await world.pd.waitFor(
      (f) => f.accepted.length >= lives.alerts * lives.steps,
      20_000,
      'every event after the storm',
    );
    expectLivesDelivered(world.pd, lives);
    // Never above the window, storm included; and after the storm PagerDuty never had to throttle.
    for (const key of keys) expect(world.pd.maxInWindow(key)).toBeLessThanOrEqual(limit);
    expect(world.pd.requests.filter((r) => r.at >= stormEnded && r.status === 429)).toEqual([]);
    const metrics = await world.metrics(relay);
    const counted = metricValue(metrics, 'pdrelay_delivery_retries_total', { reason: 'rate_limited' });
    expect(counted).toBeGreaterThanOrEqual(8);
    await until(() => retryLines().length === counted, 'one retry log line per counted retry');
  });
});
