import BetterSqlite3 from 'better-sqlite3';
import { Registry } from 'prom-client';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Config } from '../../src/config/load.js';
import { createDelivery, type Delivery } from '../../src/delivery/delivery.js';
import { PoolKeyAssigner, pickForDedupKey } from '../../src/delivery/key-assigner.js';
import { KeyRing } from '../../src/delivery/key-ring.js';
import { MAX_EVENT_BYTES } from '../../src/pagerduty/limits.js';
import type { OutboundEvent } from '../../src/rules/types.js';
import { openAdminSpool, openServingSpool } from '../../src/spool/open.js';
import { SpoolUnavailableError } from '../../src/spool/types.js';
import { alarmEvent, entry, type TestRoute, tempDir, testConfig } from '../helpers/delivery.js';
import { type AcceptedEvent, FakePagerDuty, testRoutingKey } from '../helpers/fake-pagerduty.js';
import { captureLogger } from '../helpers/log.js';
import { testDatabase } from '../helpers/postgres.js';
import { postgresSpoolConfig, silentObserver } from '../spool/backends.js';

const KEYS = [1, 2, 3, 4, 5].map((n) => testRoutingKey(`pool${n}`));
const keysOf = (...ns: number[]) => ns.map((n) => ({ alias: `key-${n}`, key: KEYS[n - 1] as string }));

/**
 * Dispatch runs the same on both spools: every scenario below runs on the SQLite file and on a
 * PostgreSQL database of its own (where this process owns every key after its first lease).
 */
describe.each(['SQLite', 'PostgreSQL'] as const)('delivery to PagerDuty on %s', (backend) => {
  let tmp: ReturnType<typeof tempDir>;
  let fake: FakePagerDuty;
  let running: Delivery[] = [];
  /** The spool section of every config of the test (the SQLite file in tmp.dir, or a database). */
  let spoolSection: Record<string, unknown> = {};
  let dropDatabase: (() => Promise<void>) | undefined;
  beforeEach(async () => {
    tmp = tempDir();
    fake = await FakePagerDuty.start({ windowMs: 500, limit: 20 });
    spoolSection = {};
    dropDatabase = undefined;
    if (backend === 'PostgreSQL') {
      const db = await testDatabase('dispatch');
      spoolSection = { postgres: postgresSpoolConfig(db.url) };
      dropDatabase = db.drop;
    }
  });
  afterEach(async () => {
    for (const d of running) await d.stop(0);
    running = [];
    await fake.close();
    await dropDatabase?.();
    tmp.cleanup();
  });

  function config(routes: Record<string, TestRoute>, delivery: Record<string, number> = {}): Config {
    return testConfig({
      dir: tmp.dir,
      url: fake.url,
      routes,
      delivery: { rateWindowMs: fake.windowMs, minBackoffMs: 5, maxBackoffMs: 100, ...delivery },
      spool: spoolSection,
    });
  }

  /** The spool of `cfg` as `serve` opens it, to prepare what a test starts from. */
  async function serving(cfg: Config, now: () => number = Date.now) {
    return openServingSpool(cfg, {
      assigner: new PoolKeyAssigner(new KeyRing(cfg.routes)),
      observer: silentObserver(),
      now,
    });
  }

  /** Waits until the delivery owns (and has loaded) the lanes of `n` keys: at once on SQLite, after the first lease on PostgreSQL. */
  async function owning(delivery: Delivery, n: number): Promise<void> {
    await expect.poll(async () => (await delivery.stats()).lanes.length, { timeout: 10_000 }).toBe(n);
    await delivery.settled();
  }

  async function start(cfg: Config) {
    const log = captureLogger('debug');
    const registry = new Registry();
    const delivery = await createDelivery(cfg, {
      logger: log.logger,
      registry,
      pollIntervalMs: 25,
      spoolProbeIntervalMs: 25,
    });
    delivery.start();
    running.push(delivery);
    return { delivery, registry, log };
  }

  async function stop(delivery: Delivery): Promise<void> {
    await delivery.stop(1000);
    running = running.filter((d) => d !== delivery);
  }

  async function metric(
    registry: Registry,
    name: string,
    labels: Record<string, string> = {},
  ): Promise<number> {
    const m = registry.getSingleMetric(name);
    if (!m) return 0;
    const { values } = await m.get();
    return values
      .filter((v) => Object.entries(labels).every(([k, want]) => v.labels[k] === want))
      .reduce((sum, v) => sum + v.value, 0);
  }

  /** Commits each event as its own SNS message, concurrently. */
  /**
   * Waits until the relay has recorded `n` delivered events. FakePagerDuty counts an event when it
   * answers 202; the relay counts it when the answer arrives, a moment later.
   */
  async function deliveredCount(registry: Registry, n: number): Promise<number> {
    const deadline = Date.now() + 5_000;
    let seen = await metric(registry, 'pdrelay_events_total', { outcome: 'delivered' });
    while (seen < n && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
      seen = await metric(registry, 'pdrelay_events_total', { outcome: 'delivered' });
    }
    return seen;
  }

  function commitAll(delivery: Delivery, events: OutboundEvent[]) {
    return Promise.all(events.map((e) => delivery.sink.commit(entry([e]))));
  }

  function byDedup(events: readonly AcceptedEvent[]) {
    const map = new Map<string, AcceptedEvent[]>();
    for (const e of events) map.set(e.dedupKey as string, [...(map.get(e.dedupKey as string) ?? []), e]);
    return map;
  }

  it('delivers 100 alarms that fire and clear across 4 keys through 30% of 503s: resolves follow their triggers, keys spread, no 429', async () => {
    fake.failPercent(0.3);
    const { delivery, registry } = await start(
      config({ default: { keys: keysOf(1, 2, 3, 4), ratePerMinute: 20 } }),
    );
    const alarms = Array.from(
      { length: 100 },
      (_, i) => `arn:aws:cloudwatch:eu-west-1:123456789012:alarm:storm-${i}`,
    );
    await commitAll(
      delivery,
      alarms.map((a) => alarmEvent('trigger', a)),
    );
    // The resolves arrive while most triggers still wait for their key's window or a retry.
    await commitAll(
      delivery,
      alarms.map((a) => alarmEvent('resolve', a)),
    );
    await fake.waitFor((f) => f.accepted.length >= 200, 20_000, '200 accepted events');
    // The fake counts an event before its 202 reaches the relay: wait for the relay's side too.
    await expect
      .poll(() => metric(registry, 'pdrelay_events_total', { outcome: 'delivered' }), { timeout: 5000 })
      .toBe(200);

    expect(fake.accepted).toHaveLength(200);
    expect(fake.duplicates()).toEqual([]);
    const groups = byDedup(fake.accepted);
    expect(groups.size).toBe(100);
    for (const [, [trigger, resolve, ...rest]] of groups) {
      expect(rest).toEqual([]);
      expect(trigger?.action).toBe('trigger');
      expect(resolve?.action).toBe('resolve');
      expect(resolve?.routingKey).toBe(trigger?.routingKey);
    }
    expect(fake.droppedFollowUps()).toEqual([]);
    const perKey = new Map<string, number>();
    for (const e of fake.accepted) perKey.set(e.routingKey, (perKey.get(e.routingKey) ?? 0) + 1);
    expect(perKey.size).toBe(4);
    for (const n of perKey.values()) expect(n).toBeGreaterThanOrEqual(20);

    expect(fake.count(503)).toBeGreaterThan(20);
    expect(fake.count(429)).toBe(0);
    expect(fake.maxInWindow()).toBeLessThanOrEqual(20);
    expect(await deliveredCount(registry, 200)).toBe(200);
    expect(await metric(registry, 'pdrelay_delivery_retries_total', { reason: 'server_error' })).toBe(
      fake.count(503),
    );
    expect(await metric(registry, 'pdrelay_pagerduty_requests_total', { code_class: '5xx' })).toBe(
      fake.count(503),
    );
    await expect.poll(async () => (await delivery.stats()).counts?.pending, { timeout: 5000 }).toBe(0);
  });

  it('delivers an alarm with a 200 KB description of control characters (6× when JSON-escaped) within 512,000 bytes', async () => {
    const { delivery, registry } = await start(config({ default: { keys: keysOf(1) } }));
    const control = Array.from({ length: 200_000 }, (_, i) => String.fromCharCode(1 + (i % 31))).join('');
    const event = alarmEvent('trigger', 'big-alarm', {
      details: { AlarmDescription: control, NewStateReason: 'Threshold crossed', Region: 'EU (Ireland)' },
    });
    expect(Buffer.byteLength(JSON.stringify(event.body))).toBeGreaterThan(1_000_000);
    await delivery.sink.commit(entry([event]));
    await fake.waitFor((f) => f.accepted.length === 1, 5000, 'the big alarm');

    const got = fake.accepted[0] as AcceptedEvent;
    expect(got.bytes).toBeLessThanOrEqual(MAX_EVENT_BYTES);
    expect(fake.count(400)).toBe(0);
    const details = (got.body.payload as { custom_details: Record<string, unknown> }).custom_details;
    expect(details.NewStateReason).toBe('Threshold crossed');
    expect(String(details.AlarmDescription).startsWith(control.slice(0, 1000))).toBe(true);
    expect(details.pd_relay_truncated).toMatchObject({ cut: ['AlarmDescription'] });
    // Counted once the relay has PagerDuty's answer, which may be just after the fake recorded the event.
    await expect
      .poll(() => metric(registry, 'pdrelay_payload_truncations_total', { field: 'custom_details' }))
      .toBe(1);
  });

  it('keeps resolves on their triggers’ keys when the pool grows from 4 to 5 keys between trigger and resolve', async () => {
    const four = config({ default: { keys: keysOf(1, 2, 3, 4), ratePerMinute: 50 } });
    const five = config({ default: { keys: keysOf(1, 2, 3, 4, 5), ratePerMinute: 50 } });
    const alarms = Array.from({ length: 100 }, (_, i) => `grow-${i}`);
    const fiveRing = new KeyRing(five.routes).keysOf('default');
    const fourRing = new KeyRing(four.routes).keysOf('default');
    const wouldMove = alarms.filter(
      (a) => pickForDedupKey(fiveRing, a).fp !== pickForDedupKey(fourRing, a).fp,
    );
    expect(wouldMove.length).toBeGreaterThan(5);

    const first = await start(four);
    await commitAll(
      first.delivery,
      alarms.slice(0, 80).map((a) => alarmEvent('trigger', a)),
    );
    await fake.waitFor((f) => f.accepted.length === 80, 10_000, '80 triggers');
    // The last 20 triggers are still queued (PagerDuty down) when the relay restarts with 5 keys.
    fake.failAll(60_000);
    await commitAll(
      first.delivery,
      alarms.slice(80).map((a) => alarmEvent('trigger', a)),
    );
    await fake.waitFor((f) => f.count(503) >= 4, 5000, 'failed attempts');
    await stop(first.delivery);
    fake.heal();

    const second = await start(five);
    await commitAll(
      second.delivery,
      alarms.map((a) => alarmEvent('resolve', a)),
    );
    await commitAll(second.delivery, [alarmEvent('trigger', 'new-0'), alarmEvent('trigger', 'new-1')]);
    const newOnFive = Array.from({ length: 50 }, (_, i) => `new-${i}`).filter(
      (a) => pickForDedupKey(fiveRing, a).alias === 'key-5',
    );
    await commitAll(
      second.delivery,
      newOnFive.slice(0, 3).map((a) => alarmEvent('trigger', a)),
    );
    await fake.waitFor((f) => f.accepted.length >= 200 + 2 + 3, 10_000, 'everything');

    const groups = byDedup(fake.accepted);
    for (const a of alarms) {
      const [trigger, resolve] = groups.get(a) as AcceptedEvent[];
      expect(resolve?.action).toBe('resolve');
      expect(resolve?.routingKey).toBe(trigger?.routingKey);
      expect((resolve as AcceptedEvent).seq).toBeGreaterThan((trigger as AcceptedEvent).seq);
    }
    expect(fake.droppedFollowUps()).toEqual([]);
    // New alerts do use the new key.
    for (const a of newOnFive.slice(0, 3)) expect(groups.get(a)?.[0]?.routingKey).toBe(KEYS[4]);
  });

  it('spreads a backlog over 2 keys added to a pool of 2 at once (a reload mid-storm), resolves following their triggers', async () => {
    const two = config({ default: { keys: keysOf(1, 2), ratePerMinute: 20 } });
    const four = config({ default: { keys: keysOf(1, 2, 3, 4), ratePerMinute: 20 } });
    const { delivery, registry } = await start(two);
    await owning(delivery, 2);
    const alarms = Array.from({ length: 160 }, (_, i) => `pool-${i}`);
    await commitAll(
      delivery,
      alarms.map((a) => alarmEvent('trigger', a)),
    );
    // Two keys at 20 per 500 ms: after one window, most of the backlog still waits.
    await fake.waitFor((f) => f.accepted.length >= 20, 5000, 'the first window');
    const changes = delivery.updateRoutes(four.routes);
    expect(changes).toMatchObject({ added: ['key-3', 'key-4'], removed: [], grown: ['default'] });
    await commitAll(
      delivery,
      alarms.map((a) => alarmEvent('resolve', a)),
    );
    await fake.waitFor((f) => f.accepted.length >= 320, 20_000, 'every trigger and resolve');

    const groups = byDedup(fake.accepted);
    for (const a of alarms) {
      const [trigger, resolve, ...rest] = groups.get(a) as AcceptedEvent[];
      expect(rest, a).toEqual([]);
      expect(trigger?.action, a).toBe('trigger');
      expect(resolve?.routingKey, a).toBe(trigger?.routingKey);
    }
    expect(fake.droppedFollowUps()).toEqual([]);
    // The added keys took part of the backlog queued before the reload, not only what came after.
    const backlogOnNew = fake.accepted.filter(
      (e) => e.action === 'trigger' && (e.routingKey === KEYS[2] || e.routingKey === KEYS[3]),
    );
    expect(backlogOnNew.length).toBeGreaterThan(30);
    expect(fake.count(429)).toBe(0);
    for (const k of KEYS.slice(0, 4)) expect(fake.maxInWindow(k)).toBeLessThanOrEqual(20);
    expect(
      await metric(registry, 'pdrelay_delivery_reroutes_total', { reason: 'rebalanced' }),
    ).toBeGreaterThan(30);
    expect(fake.duplicates()).toEqual([]);
  });

  it('applies a lowered ratePerMinute to the requests that follow, keeping the window of a kept key', async () => {
    const { delivery } = await start(config({ default: { keys: keysOf(1), ratePerMinute: 20 } }));
    await owning(delivery, 1);
    await commitAll(
      delivery,
      Array.from({ length: 20 }, (_, i) => alarmEvent('trigger', `rate-a-${i}`)),
    );
    await fake.waitFor((f) => f.accepted.length === 20, 5000, 'a full window');
    const changedAt = performance.now();
    expect(
      delivery.updateRoutes(config({ default: { keys: keysOf(1), ratePerMinute: 5 } }).routes),
    ).toMatchObject({
      added: [],
      removed: [],
      rates: ['key-1'],
    });
    await commitAll(
      delivery,
      Array.from({ length: 10 }, (_, i) => alarmEvent('trigger', `rate-b-${i}`)),
    );
    await fake.waitFor((f) => f.accepted.length === 30, 10_000, 'the rest at the lower rate');
    // The window kept its history: nothing went out until the full window had passed, then 5 per window.
    const after = fake.requests.filter((r) => r.at > changedAt);
    expect((after[0]?.at ?? 0) - changedAt).toBeGreaterThan(100);
    expect(fake.maxInWindow(undefined, { since: changedAt + 500 })).toBeLessThanOrEqual(5);
    expect(fake.count(429)).toBe(0);
  });

  it('moves the queue of a key a reload removed to the keys left, and keeps the resolve of an alert open on it loud', async () => {
    const four = config({ default: { keys: keysOf(1, 2, 3, 4), ratePerMinute: 50 } });
    const ring = new KeyRing(four.routes).keysOf('default');
    const onFour = Array.from({ length: 200 }, (_, i) => `cut-${i}`)
      .filter((a) => pickForDedupKey(ring, a).alias === 'key-4')
      .slice(0, 3);
    const { delivery, registry } = await start(four);
    await owning(delivery, 4);
    await commitAll(delivery, [alarmEvent('trigger', onFour[0] as string)]);
    await fake.waitFor((f) => f.accepted.length === 1, 5000, 'a trigger through key-4');
    fake.failKey(KEYS[3] as string);
    await commitAll(
      delivery,
      onFour.slice(1).map((a) => alarmEvent('trigger', a)),
    );
    await fake.waitFor((f) => f.count(503) >= 1, 5000, 'key-4 failing');
    delivery.updateRoutes(config({ default: { keys: keysOf(1, 2, 3), ratePerMinute: 50 } }).routes);
    await commitAll(delivery, [alarmEvent('resolve', onFour[0] as string)]);
    await fake.waitFor((f) => f.accepted.length === 4, 5000, 'the moved triggers and the resolve');
    for (const e of fake.accepted.slice(1)) expect(e.routingKey).not.toBe(KEYS[3]);
    expect(fake.droppedFollowUps().map((e) => e.dedupKey)).toEqual([onFour[0]]);
    await expect
      .poll(() => metric(registry, 'pdrelay_delivery_reroutes_total', { reason: 'key_removed' }))
      .toBe(2);
    expect(await metric(registry, 'pdrelay_delivery_reroutes_total', { reason: 'trigger_key_removed' })).toBe(
      1,
    );
  });

  it('moves pending events off a removed key, and says loudly that a resolve cannot follow its trigger', async () => {
    const four = config({ default: { keys: keysOf(1, 2, 3, 4), ratePerMinute: 50 } });
    const ring = new KeyRing(four.routes).keysOf('default');
    const onFour = Array.from({ length: 200 }, (_, i) => `shrink-${i}`)
      .filter((a) => pickForDedupKey(ring, a).alias === 'key-4')
      .slice(0, 4);
    const first = await start(four);
    await commitAll(
      first.delivery,
      onFour.slice(0, 2).map((a) => alarmEvent('trigger', a)),
    );
    await fake.waitFor((f) => f.accepted.length === 2, 5000, 'two triggers');
    fake.failKey(KEYS[3] as string);
    await commitAll(
      first.delivery,
      onFour.slice(2).map((a) => alarmEvent('trigger', a)),
    );
    await commitAll(
      first.delivery,
      onFour.slice(0, 1).map((a) => alarmEvent('resolve', a)),
    );
    await fake.waitFor((f) => f.count(503) >= 1, 5000, 'a failed attempt');
    await stop(first.delivery);
    fake.heal();

    const { delivery, registry, log } = await start(
      config({ default: { keys: keysOf(1, 2, 3), ratePerMinute: 50 } }),
    );
    await commitAll(delivery, [alarmEvent('resolve', onFour[1] as string)]);
    await fake.waitFor((f) => f.accepted.length === 2 + 2 + 2, 5000, 'the moved events');
    const moved = fake.accepted.slice(2);
    for (const e of moved) expect(e.routingKey).not.toBe(KEYS[3]);
    // The two resolves reach keys that never saw their triggers: PagerDuty drops them.
    expect(
      fake
        .droppedFollowUps()
        .map((e) => e.dedupKey)
        .sort(),
    ).toEqual(onFour.slice(0, 2).sort());
    expect(await metric(registry, 'pdrelay_delivery_reroutes_total', { reason: 'key_removed' })).toBe(2);
    expect(await metric(registry, 'pdrelay_delivery_reroutes_total', { reason: 'trigger_key_removed' })).toBe(
      2,
    );
    const loud = log.lines().filter((l) => l.level === 'error' && /no longer configured/.test(String(l.msg)));
    expect(loud.map((l) => l.dedupKey).sort()).toEqual(onFour.slice(0, 2).sort());
  });

  it('backs off through a 429 storm and never exceeds the window afterwards', async () => {
    const { delivery, registry } = await start(
      config({ default: { keys: keysOf(1, 2), ratePerMinute: 20 } }, { minBackoffMs: 20, maxBackoffMs: 400 }),
    );
    fake.storm429(1500);
    const stormEnds = performance.now() + 1500;
    await commitAll(
      delivery,
      Array.from({ length: 80 }, (_, i) => alarmEvent('trigger', `s-${i}`)),
    );
    await fake.waitFor((f) => f.accepted.length === 80, 15_000, '80 events after the storm');

    const during = fake.requests.filter((r) => r.status === 429);
    // Backing off exponentially, two keys knock a handful of times in 1.5 s, not hundreds.
    expect(during.length).toBeGreaterThan(2);
    expect(during.length).toBeLessThan(40);
    expect(fake.maxInWindow(undefined, { since: stormEnds })).toBeLessThanOrEqual(20);
    expect(fake.maxInWindow()).toBeLessThanOrEqual(20);
    expect(await metric(registry, 'pdrelay_delivery_retries_total', { reason: 'rate_limited' })).toBe(
      during.length,
    );
    expect(fake.duplicates()).toEqual([]);
  });

  it('does not send a second window’s worth into the window of the previous run after a restart', async () => {
    const cfg = config({ default: { keys: keysOf(1), ratePerMinute: 10 } }, { rateWindowMs: 2000 });
    const slow = await FakePagerDuty.start({ windowMs: 2000, limit: 10 });
    const at = (c: Config): Config => ({ ...c, pagerduty: { ...c.pagerduty, url: slow.url } });
    try {
      const first = await start(at(cfg));
      await commitAll(
        first.delivery,
        Array.from({ length: 10 }, (_, i) => alarmEvent('trigger', `w-${i}`)),
      );
      await slow.waitFor((f) => f.accepted.length === 10, 5000, 'a full window');
      await stop(first.delivery);
      await start(at(cfg));
      await commitAll(
        running[0] as Delivery,
        Array.from({ length: 5 }, (_, i) => alarmEvent('trigger', `w2-${i}`)),
      );
      await slow.waitFor((f) => f.accepted.length === 15, 10_000, 'the next window');
      expect(slow.count(429)).toBe(0);
      expect(slow.maxInWindow()).toBeLessThanOrEqual(10);
    } finally {
      await slow.close();
    }
  });

  it('forgets at start open alerts not triggered for spool.openAlertRetentionDays (it prunes every 10 minutes too)', async () => {
    const T = 1_700_000_000_000;
    const cfg = testConfig({
      dir: tmp.dir,
      url: fake.url,
      routes: { default: { keys: keysOf(1) } },
      spool: { ...spoolSection, openAlertRetentionDays: 2 },
    });
    const spool = await serving(cfg, () => T);
    await spool.commit(entry([alarmEvent('trigger', 'never-resolved')]));
    // Delivered already (what the relay's dispatcher would have done), the alert still open.
    for (const p of await spool.pending()) spool.delivered(p);
    await spool.close();

    let now = T + 2 * 86_400_000 - 1;
    const log = captureLogger('debug');
    const delivery = await createDelivery(cfg, {
      logger: log.logger,
      registry: new Registry(),
      clock: { now: () => now, monotonic: () => performance.now() },
    });
    running.push(delivery);
    delivery.start();
    expect((await delivery.stats()).counts?.openAlerts).toBe(1);
    await stop(delivery);

    now = T + 2 * 86_400_000 + 1;
    const again = await createDelivery(cfg, {
      logger: log.logger,
      registry: new Registry(),
      clock: { now: () => now, monotonic: () => performance.now() },
    });
    running.push(again);
    again.start();
    await expect.poll(async () => (await again.stats()).counts?.openAlerts, { timeout: 2000 }).toBe(0);
    expect(log.lines()).toContainEqual(
      expect.objectContaining({
        level: 'info',
        count: 1,
        days: 2,
        msg: expect.stringMatching(/^Forgot the keys of open alerts/),
      }),
    );
  });

  it('counts a request recorded in millisecond T until a whole window after the end of T', async () => {
    // The request log keeps whole milliseconds (Date.now()): a request recorded at T ended somewhere
    // in [T, T + 1). At wall time T + windowMs it may not be a window old yet, so after a restart it
    // still holds its slot. Both clocks stand still here, so that the boundary is exact.
    const windowMs = 2000;
    const cfg = config({ default: { keys: keysOf(1), ratePerMinute: 1 } }, { rateWindowMs: windowMs });
    const T = 1_700_000_000_000;
    const ring = new KeyRing(cfg.routes);
    const spool = await serving(cfg);
    spool.recordSend(ring.keysOf('default')[0]?.fp as string, T, 0);
    await spool.close();

    const log = captureLogger('debug');
    const delivery = await createDelivery(cfg, {
      logger: log.logger,
      registry: new Registry(),
      clock: { now: () => T + windowMs, monotonic: () => 5_000_000 },
    });
    running.push(delivery);
    delivery.start();
    // The key's queue loaded (empty) before the event comes: it is not a backlog of a dead process.
    await owning(delivery, 1);
    await delivery.sink.commit(entry([alarmEvent('trigger', 'after-restart')]));
    await expect
      .poll(() => log.lines().find((l) => l.msg === 'Rate window full; waiting.'))
      .toMatchObject({ waitMs: 1 });
    expect(fake.requests).toEqual([]);
  });

  it('after a kill -9, counts the requests the dead process sent without recording them', async () => {
    // The state a process killed mid-flight leaves: its last requests reached PagerDuty, but their
    // records (and their events' deletes) were still waiting for the next group commit. Here: two
    // requests PagerDuty counted, a backlog in the spool, an empty request log.
    const limit = 10;
    const cfg = config({ default: { keys: keysOf(1), ratePerMinute: limit } }, { rateWindowMs: 2000 });
    const slow = await FakePagerDuty.start({ windowMs: 2000, limit });
    const at = (c: Config): Config => ({ ...c, pagerduty: { ...c.pagerduty, url: slow.url } });
    try {
      const spool = await serving(cfg);
      const backlog = Array.from({ length: limit + 4 }, (_, i) => alarmEvent('trigger', `crash-${i}`));
      await Promise.all(backlog.map((e) => spool.commit(entry([e]))));
      await spool.close();
      for (const e of backlog.slice(0, 2)) {
        const res = await fetch(`${slow.url}/v2/enqueue`, {
          method: 'POST',
          body: JSON.stringify({ ...e.body, routing_key: KEYS[0] }),
        });
        expect(res.status).toBe(202);
      }

      await start(at(cfg));
      await slow.waitFor((f) => f.accepted.length === backlog.length + 2, 10_000, 'the backlog');
      expect(slow.count(429)).toBe(0);
      expect(slow.maxInWindow()).toBeLessThanOrEqual(limit);
    } finally {
      await slow.close();
    }
  });

  it('measures time to page: from acceptance, and from the source’s own time (SNS and EventBridge delays included)', async () => {
    const { delivery, registry, log } = await start(config({ default: { keys: keysOf(1) } }));
    const now = Date.now();
    await commitAll(delivery, [
      alarmEvent('trigger', 'ttp-1', { time: { at: now - 5000, from: 'payload' } }),
      alarmEvent('trigger', 'ttp-2'),
    ]);
    await fake.waitFor((f) => f.accepted.length === 2, 5000, 'both events');
    const sample = async (name: string) => {
      const m = new RegExp(`^${name}\\{[^}]*route="default"[^}]*\\} (\\S+)$`, 'm').exec(
        await registry.metrics(),
      );
      return Number(m?.[1] ?? 0);
    };
    await expect.poll(() => sample('pdrelay_event_delivery_seconds_count')).toBe(2);
    expect(await sample('pdrelay_event_delivery_seconds_sum')).toBeLessThan(4);
    // Only the event with a source time has a source delay: at least the 5 s it was old when it came.
    expect(await sample('pdrelay_event_source_delay_seconds_count')).toBe(1);
    expect(await sample('pdrelay_event_source_delay_seconds_sum')).toBeGreaterThanOrEqual(5);
    const line = log.lines().find((l) => l.msg === 'Event delivered to PagerDuty.' && l.dedupKey === 'ttp-1');
    expect(Number(line?.sourceDelayMs)).toBeGreaterThanOrEqual(5000);
  });

  it('waits as long as Retry-After says (within maxBackoffMs)', async () => {
    const { delivery } = await start(
      config({ default: { keys: keysOf(1) } }, { minBackoffMs: 5, maxBackoffMs: 5000 }),
    );
    fake.script({ status: 429, body: '{}', headers: { 'retry-after': '1' } });
    await delivery.sink.commit(entry([alarmEvent('trigger', 'ra')]));
    await fake.waitFor((f) => f.accepted.length === 1, 5000, 'the retried event');
    const [first, second] = fake.requests;
    expect((second?.at ?? 0) - (first?.at ?? 0)).toBeGreaterThanOrEqual(990);
  });

  it('dead-letters a 400 with PagerDuty’s reason, and delivers it once retried after the cause is fixed', async () => {
    const { delivery, registry, log } = await start(config({ default: { keys: keysOf(1, 2) } }));
    fake.rejectWhen((body) =>
      String((body.payload as { summary?: string } | undefined)?.summary).includes('poison')
        ? ["'payload.custom_details' cannot be parsed"]
        : null,
    );
    await commitAll(delivery, [
      alarmEvent('trigger', 'p1', { summary: 'poison pill' }),
      alarmEvent('trigger', 'ok1'),
      alarmEvent('trigger', 'ok2'),
    ]);
    await fake.waitFor(
      (f) => f.accepted.length === 2 && f.count(400) === 1,
      5000,
      'two accepted, one refused',
    );
    await expect.poll(async () => (await delivery.stats()).counts?.deadLetters).toBe(1);
    expect(fake.count(400)).toBe(1);
    expect(await metric(registry, 'pdrelay_dead_letters_total', { reason: 'rejected' })).toBe(1);
    expect(await metric(registry, 'pdrelay_dead_letters')).toBe(1);
    expect(log.lines().find((l) => l.msg === 'Event moved to the dead letters.')).toMatchObject({
      reason: 'rejected',
      detail: "400: 'payload.custom_details' cannot be parsed",
      dedupKey: 'p1',
    });

    fake.rejectWhen(null);
    const cli = await openAdminSpool(config({ default: { keys: [] } }), { write: false });
    expect(await cli.deadLetters()).toMatchObject([
      { reason: 'rejected', detail: "400: 'payload.custom_details' cannot be parsed" },
    ]);
    await cli.close();
    const writer = await openAdminSpool(config({ default: { keys: [] } }), { write: true });
    expect(await writer.retryDeadLetters()).toBe(1);
    await writer.close();
    await fake.waitFor((f) => f.accepted.length === 3, 5000, 'the retried dead letter');
    expect(fake.accepted[2]?.dedupKey).toBe('p1');
    expect(fake.count(400)).toBe(1);
    await expect.poll(() => metric(registry, 'pdrelay_dead_letters')).toBe(0);
  });

  it('dead-letters events for a key PagerDuty refuses, loudly, while the other keys keep delivering', async () => {
    fake.invalidateKey(KEYS[1] as string);
    const { delivery, log } = await start(config({ default: { keys: keysOf(1, 2) } }));
    await commitAll(
      delivery,
      Array.from({ length: 6 }, () => alarmEvent('trigger', null)),
    );
    await expect.poll(async () => (await delivery.stats()).counts?.deadLetters, { timeout: 5000 }).toBe(3);
    await fake.waitFor((f) => f.accepted.length === 3, 5000, 'the other key’s three events');
    const errors = log
      .lines()
      .filter((l) => l.level === 'error' && String(l.msg).startsWith('PagerDuty refused the routing key'));
    expect(errors).toHaveLength(3);
    expect(errors[0]).toMatchObject({ key: 'key-2', reason: 'bad_key', detail: '400: Invalid routing key' });
  });

  it('holds back the later events of a failing key only', async () => {
    const cfg = config({ default: { keys: keysOf(1, 2) } });
    const ring = new KeyRing(cfg.routes).keysOf('default');
    const alarms = Array.from({ length: 100 }, (_, i) => `hold-${i}`);
    const on1 = alarms.filter((a) => pickForDedupKey(ring, a).alias === 'key-1').slice(0, 3);
    const on2 = alarms.filter((a) => pickForDedupKey(ring, a).alias === 'key-2').slice(0, 3);
    fake.failKey(KEYS[0] as string);
    const { delivery } = await start(cfg);
    for (const a of [...on1, ...on2]) await delivery.sink.commit(entry([alarmEvent('trigger', a)]));
    for (const a of [...on1, ...on2]) await delivery.sink.commit(entry([alarmEvent('resolve', a)]));
    await fake.waitFor((f) => f.accepted.length === 6, 5000, 'key-2’s events');
    expect(fake.accepted.every((e) => e.routingKey === KEYS[1])).toBe(true);
    // key-1 retried only its first event: nothing behind it was tried.
    const tried = new Set(fake.requests.filter((r) => r.routingKey === KEYS[0]).map((r) => r.status));
    expect([...tried]).toEqual([503]);
    fake.failKey(KEYS[0] as string, null);
    await fake.waitFor((f) => f.accepted.length === 12, 5000, 'key-1’s events');
    const key1 = fake.accepted
      .filter((e) => e.routingKey === KEYS[0])
      .map((e) => `${e.action}:${e.dedupKey}`);
    expect(key1).toEqual([...on1.map((a) => `trigger:${a}`), ...on1.map((a) => `resolve:${a}`)]);
  });

  it('dead-letters an event still failing after delivery.maxAgeSeconds', async () => {
    fake.failAll(60_000);
    const { delivery, registry } = await start(
      config({ default: { keys: keysOf(1) } }, { maxAgeSeconds: 1 }),
    );
    await delivery.sink.commit(entry([alarmEvent('trigger', 'old')]));
    await expect.poll(async () => (await delivery.stats()).counts?.deadLetters, { timeout: 5000 }).toBe(1);
    const spool = await openAdminSpool(config({ default: { keys: [] } }), { write: false });
    const [letter] = await spool.deadLetters();
    await spool.close();
    expect(letter?.reason).toBe('expired');
    expect(letter?.detail).toMatch(
      /^Still failing after \d+ attempts over 1s \(delivery.maxAgeSeconds 1\): 503: Service unavailable$/,
    );
    expect(await metric(registry, 'pdrelay_dead_letters_total', { reason: 'expired' })).toBe(1);
  });

  it('stops within the drain timeout, leaving an unanswered event in the spool for the next start', async () => {
    fake.latency(10_000);
    const first = await start(config({ default: { keys: keysOf(1) } }));
    await first.delivery.sink.commit(entry([alarmEvent('trigger', 'slow')]));
    await fake.waitFor((f) => f.arrivals === 1, 5000, 'the request');
    await stop(first.delivery);
    expect(first.delivery.readiness()).toBe('delivery stopped');
    await expect(first.delivery.sink.commit(entry([]))).rejects.toBeInstanceOf(SpoolUnavailableError);
    fake.heal();
    await start(config({ default: { keys: keysOf(1) } }));
    await fake.waitFor((f) => f.accepted.length === 1, 5000, 'the event after restart');
    expect(fake.accepted[0]?.dedupKey).toBe('slow');
  });

  it.runIf(backend === 'SQLite')(
    'reports the spool as not ready while it cannot be written, and recovers',
    async () => {
      const { delivery } = await start(config({ default: { keys: keysOf(1) } }));
      const other = new BetterSqlite3(`${tmp.dir}/spool.db`);
      other.exec('BEGIN IMMEDIATE');
      await expect(delivery.sink.commit(entry([alarmEvent('trigger', 'x')]))).rejects.toBeInstanceOf(
        SpoolUnavailableError,
      );
      expect(delivery.readiness()).toMatch(/^Spool not writable: SQLITE_BUSY/);
      other.exec('COMMIT');
      other.close();
      await expect.poll(() => delivery.readiness(), { timeout: 5000 }).toBeNull();
    },
  );

  it('spreads events without a dedup key over the least-loaded keys, also for a backlog committed before start', async () => {
    const log = captureLogger();
    const delivery = await createDelivery(config({ default: { keys: keysOf(1, 2, 3, 4) } }), {
      logger: log.logger,
      registry: new Registry(),
    });
    running.push(delivery);
    await owning(delivery, 4);
    // One at a time: each commit is its own transaction, so only the queue depths can spread them.
    for (let i = 0; i < 12; i++) await delivery.sink.commit(entry([alarmEvent('trigger', null)]));
    // (On PostgreSQL an event reaches its lane through a notification, a moment after its commit.)
    await expect.poll(async () => (await delivery.stats()).lanes.map((l) => l.depth)).toEqual([3, 3, 3, 3]);
    expect(fake.arrivals).toBe(0);
    delivery.start();
    await fake.waitFor((f) => f.accepted.length === 12, 5000, 'the backlog');
    expect(new Set(fake.accepted.map((e) => e.routingKey)).size).toBe(4);
  });

  it('delivers a no_route dead letter once its route has keys and the dead letter is retried', async () => {
    const first = await start(config({ default: { keys: keysOf(1) } }));
    await first.delivery.sink.commit(entry([alarmEvent('trigger', 'ops-1', { route: 'ops' })]));
    expect((await first.delivery.stats()).counts?.deadLetters).toBe(1);
    await stop(first.delivery);
    const writer = await openAdminSpool(config({ default: { keys: [] } }), { write: true });
    expect(await writer.retryDeadLetters()).toBe(1);
    await writer.close();
    const { registry } = await start(config({ default: { keys: keysOf(1) }, ops: { keys: keysOf(2) } }));
    await fake.waitFor((f) => f.accepted.length === 1, 5000, 'the retried event');
    expect(fake.accepted[0]).toMatchObject({ routingKey: KEYS[1], dedupKey: 'ops-1' });
    expect(await metric(registry, 'pdrelay_delivery_reroutes_total')).toBe(0);
  });

  it('survives a bug in the PagerDuty client: logged, retried, and the rate window is not leaked', async () => {
    const log = captureLogger();
    let calls = 0;
    const delivery = await createDelivery(config({ default: { keys: keysOf(1), ratePerMinute: 1 } }), {
      logger: log.logger,
      registry: new Registry(),
      api: {
        async send() {
          calls++;
          if (calls === 1) throw new Error('client bug');
          return { outcome: 'delivered', status: 202, codeClass: '2xx', durationMs: 1, truncations: [] };
        },
      },
    });
    running.push(delivery);
    delivery.start();
    await commitAll(delivery, [alarmEvent('trigger', 'b1'), alarmEvent('trigger', 'b2')]);
    // One slot per window: a slot leaked by the thrown attempt would block the key for good.
    await expect.poll(async () => (await delivery.stats()).counts?.pending, { timeout: 5000 }).toBe(0);
    expect(calls).toBe(3);
    expect(
      log.lines().find((l) => l.msg === 'Internal error in delivery; the event stays queued.'),
    ).toMatchObject({
      dedupKey: 'b1',
      err: { message: 'client bug' },
    });
  });

  it('never shows a routing key in logs or metrics', async () => {
    fake.invalidateKey(KEYS[1] as string);
    fake.failPercent(0.5);
    const { delivery, registry, log } = await start(config({ default: { keys: keysOf(1, 2) } }));
    await commitAll(
      delivery,
      Array.from({ length: 10 }, (_, i) => alarmEvent('trigger', `sec-${i}`)),
    );
    await expect.poll(async () => (await delivery.stats()).counts?.pending, { timeout: 5000 }).toBe(0);
    const text = `${log.text()}\n${await registry.metrics()}`;
    expect(text).toContain('key-2');
    for (const key of KEYS) expect(text).not.toContain(key);
  });
});
