import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startPostgres, type TestPostgres } from '../helpers/postgres.js';
import { expectReplicaGuarantees, Replicas, stormOfLives, waitForEveryStep } from './helpers/replicas.js';
import {
  type E2eWorld,
  e2eRule,
  metricValue,
  parseSummary,
  type RelayOptions,
  useE2eWorld,
} from './helpers/world.js';

/**
 * The remedy for an alarm storm is more integration keys: add them to the route's pool and reload.
 * A storm against 2 keys at PagerDuty's limit (scaled down: 20 per 1 s window), then 2 keys added
 * by SIGHUP mid-storm: the backlog already queued drains over 4 keys, nothing answered 429, and every
 * resolve goes through its trigger's key, after it.
 */
describe('e2e: key pools changed by a reload mid-storm', { timeout: 120_000 }, () => {
  let world: E2eWorld;
  const LIMIT = 20;
  useE2eWorld((w) => (world = w), { windowMs: 1000, limit: LIMIT });
  let server: TestPostgres;
  beforeAll(async () => {
    server = await startPostgres();
  });
  afterAll(() => server?.close());

  const shape = { prefix: 'grow', alerts: 100, steps: 2 };
  const before = ['grow-1', 'grow-2'];
  const after = ['grow-1', 'grow-2', 'grow-3', 'grow-4'];
  const options = (aliases: string[]): RelayOptions => ({
    routes: { default: { aliases, ratePerMinute: LIMIT } },
    rules: { 'e2e.yaml': e2eRule('v1') },
    delivery: { rateWindowMs: 1000, drainTimeoutMs: 3000 },
  });

  it('one relay (SQLite): SIGHUP adds 2 keys, the backlog spreads over them', async () => {
    // One relay: the SQLite spool (no postgresUrl).
    const r = new Replicas(world, { ...options(before), postgresUrl: '' });
    const relay = await r.startSlot(0);
    // The storm is posted at once; most of it waits for the two keys' windows.
    let reloadedAt = 0;
    const deliveries = await stormOfLives(world, r, {
      ...shape,
      startAfter: 100,
      during: async () => {
        const reloaded = relay.waitForLog((l) => l.msg === 'Rules and key pools reloaded.');
        r.reconfigure(0, options(after));
        expect(await reloaded).toMatchObject({ keysAdded: ['grow-3', 'grow-4'], keysRemoved: [] });
        reloadedAt = performance.now();
      },
    });
    await waitForEveryStep(world, shape);
    const { duplicates } = expectReplicaGuarantees(world, deliveries, {
      ...shape,
      limit: LIMIT,
      keys: after.map((a) => world.key(a)),
      maxDuplicates: 0,
    });
    // The added keys took part of what was queued before the reload.
    const added = new Set(['grow-3', 'grow-4'].map((a) => world.key(a)));
    // Triggers acknowledged (so queued) before the reload, told apart by the alert in their summary.
    const queuedBefore = new Set(
      deliveries
        .filter((d) => (d.final?.endedAt ?? Number.POSITIVE_INFINITY) < reloadedAt)
        .map((d) => JSON.parse(String(d.envelope.Message)) as { alert: string; seq: number })
        .filter((m) => m.seq === 0)
        .map((m) => m.alert),
    );
    const backlogOnAdded = world.pd.accepted.filter(
      (e) =>
        added.has(e.routingKey) && e.action === 'trigger' && queuedBefore.has(parseSummary(e.body).alert),
    ).length;
    expect(backlogOnAdded).toBeGreaterThan(10);
    const metrics = await world.metrics(relay);
    expect(metricValue(metrics, 'pdrelay_config_reloads_total', { result: 'success', keys: 'changed' })).toBe(
      1,
    );
    expect(metricValue(metrics, 'pdrelay_delivery_reroutes_total', { reason: 'rebalanced' })).toBeGreaterThan(
      10,
    );
    console.info(
      `reload mid-storm (SQLite): ${world.pd.accepted.length} delivered, ${backlogOnAdded} triggers through the added keys, duplicates ${duplicates}`,
    );
  });

  it('three replicas (PostgreSQL) reloaded one after the other: while their pools differ, an alert never gets two keys', async () => {
    const r = new Replicas(world, { ...options(before), postgresUrl: await server.createDatabase('pools') });
    await r.start(3);
    const deliveries = await stormOfLives(world, r, {
      ...shape,
      startAfter: 80,
      during: async () => {
        for (const i of [0, 1, 2]) {
          const relay = r.slots[i];
          const reloaded = relay?.waitForLog((l) => l.msg === 'Rules and key pools reloaded.');
          r.reconfigure(i, options(after));
          await reloaded;
          await new Promise((res) => setTimeout(res, 300));
        }
      },
    });
    await waitForEveryStep(world, shape);
    expectReplicaGuarantees(world, deliveries, {
      ...shape,
      limit: LIMIT,
      keys: after.map((a) => world.key(a)),
      maxDuplicates: 0,
    });
    const added = new Set(['grow-3', 'grow-4'].map((a) => world.key(a)));
    expect(world.pd.accepted.filter((e) => added.has(e.routingKey)).length).toBeGreaterThan(10);
  });
});
