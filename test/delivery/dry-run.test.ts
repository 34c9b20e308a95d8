import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { createAdminApp } from '../../src/app.js';
import { createDelivery, type Delivery } from '../../src/delivery/delivery.js';
import { DryRunRecorder, type RecordedEvent } from '../../src/delivery/dry-run.js';
import { alarmEvent, entry, tempDir, testConfig } from '../helpers/delivery.js';
import { FakePagerDuty } from '../helpers/fake-pagerduty.js';
import { captureLogger } from '../helpers/log.js';

let cleanup: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanup.reverse()) await c();
  cleanup = [];
});

describe('dry-run', () => {
  it('sends nothing, fits each event to PagerDuty’s limits and lists it at GET /-/events', async () => {
    const tmp = tempDir();
    const fake = await FakePagerDuty.start();
    const config = testConfig({ dir: tmp.dir, url: fake.url });
    expect(config.dryRun).toBe(true);
    const { logger, lines } = captureLogger();
    const registry = new Registry();
    const delivery: Delivery = await createDelivery(config, { logger, registry });
    delivery.start();
    cleanup.push(
      tmp.cleanup,
      () => fake.close(),
      () => delivery.stop(0),
    );

    expect(
      await delivery.sink.commit(
        entry([alarmEvent('trigger', 'dry-1', { summary: 's'.repeat(2000) })], 'm1'),
      ),
    ).toBe('committed');
    expect(await delivery.sink.commit(entry([alarmEvent('resolve', null)], 'm2'))).toBe('committed');
    expect(await delivery.sink.commit(entry([alarmEvent('trigger', 'dry-1')], 'm1'))).toBe('duplicate');
    expect(await delivery.sink.commit(entry([], 'm2'))).toBe('duplicate');

    const app = createAdminApp({ registry, logger, recentEvents: () => delivery.recorder?.list() ?? [] });
    const res = await app.request('/-/events');
    expect(res.status).toBe(200);
    const { events } = (await res.json()) as { events: RecordedEvent[] };
    expect(events).toHaveLength(2);
    expect(events[0]).toMatchObject({
      route: 'default',
      key: null,
      action: 'trigger',
      event: { dedup_key: 'dry-1' },
    });
    expect(
      (events[0]?.event as { payload?: { summary?: string } } | undefined)?.payload?.summary,
    ).toHaveLength(1024);
    expect(events[1]).toMatchObject({
      action: 'resolve',
      problems: ['Expected a dedup_key in a resolve event (it names the alert), got nothing'],
    });
    expect(Date.parse(events[0]?.at ?? '')).not.toBeNaN();

    expect(fake.arrivals).toBe(0);
    expect(await delivery.stats()).toMatchObject({
      dryRun: true,
      lanes: [],
      counts: { pending: 0, messageIds: 2 },
    });
    expect(lines().filter((l) => l.msg === 'Dry run: event not sent.')).toHaveLength(2);
    const metrics = await registry.metrics();
    expect(metrics).toContain('pdrelay_events_total{route="default",action="trigger",outcome="dry_run"} 1');
    expect(metrics).toContain('pdrelay_payload_truncations_total{field="summary"} 1');
  });

  it('warns that events queued by an earlier run with keys wait unsent', async () => {
    const tmp = tempDir();
    cleanup.push(tmp.cleanup);
    const live = await createDelivery(
      testConfig({ dir: tmp.dir, routes: { default: { keys: ['k'.repeat(32)] } } }),
      { logger: captureLogger().logger, registry: new Registry() },
    );
    await live.sink.commit(entry([alarmEvent('trigger', 'queued')]));
    await live.stop(0);
    const { logger, lines } = captureLogger();
    const dry = await createDelivery(testConfig({ dir: tmp.dir }), { logger, registry: new Registry() });
    dry.start();
    cleanup.push(() => dry.stop(0));
    await expect
      .poll(() => lines().find((l) => l.level === 'warn'))
      .toMatchObject({
        pending: 1,
        msg: expect.stringMatching(/^Dry-run: the spool holds events from a run with routing keys/),
      });
  });

  it('answers 404 at /-/events when the relay has keys', async () => {
    const app = createAdminApp({ registry: new Registry(), logger: captureLogger().logger });
    const res = await app.request('/-/events');
    expect(res.status).toBe(404);
    expect(await res.json()).toMatchObject({ error: 'not_dry_run' });
  });

  it('keeps the latest events only, oldest first', () => {
    const r = new DryRunRecorder(3);
    for (let i = 0; i < 5; i++)
      r.record({
        at: String(i),
        route: 'r',
        key: null,
        action: 'trigger',
        event: { event_action: 'trigger' },
      });
    expect(r.list().map((e) => e.at)).toEqual(['2', '3', '4']);
  });
});
