import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startPostgres, type TestPostgres } from '../helpers/postgres.js';
import { Replicas, settleAndCheck, stormOfLives } from './helpers/replicas.js';
import {
  type E2eWorld,
  e2eRule,
  metricValue,
  type RelayOptions,
  sleep,
  useE2eWorld,
} from './helpers/world.js';

/**
 * Three `pd-relay serve` processes on one PostgreSQL database, SNS posting each message to any of
 * them (and retrying a 5xx or a dead replica on another, as SNS does), through faults: a replica
 * killed, the database stopped, every replica restarted in turn. What must hold every time is in
 * expectReplicaGuarantees(). PagerDuty's window is scaled down to 1 s with 20 requests per key, so
 * that a storm of a few hundred events builds a backlog that only the rate window drains.
 */
describe('e2e: several replicas on one PostgreSQL database', { timeout: 120_000 }, () => {
  let world: E2eWorld;
  const LIMIT = 20;
  useE2eWorld((w) => (world = w), { windowMs: 1000, limit: LIMIT });
  let server: TestPostgres;
  beforeAll(async () => {
    server = await startPostgres();
  });
  afterAll(() => server?.close());

  const aliases = ['ha-1', 'ha-2', 'ha-3', 'ha-4'];
  async function replicas(n = 3): Promise<Replicas> {
    const opts: RelayOptions & { postgresUrl: string } = {
      routes: { default: { aliases, ratePerMinute: LIMIT } },
      rules: { 'e2e.yaml': e2eRule('v1') },
      delivery: { rateWindowMs: 1000, drainTimeoutMs: 3000 },
      postgresUrl: await server.createDatabase('e2e'),
    };
    const r = new Replicas(world, opts);
    // All at once on an empty database: one migrates it, the others wait for it.
    await r.start(n);
    return r;
  }
  const keys = () => aliases.map((a) => world.key(a));
  const report = (what: string, figures: Record<string, number>) =>
    console.info(
      `${what}: ${Object.entries(figures)
        .map(([k, v]) => `${k} ${v}`)
        .join(', ')}`,
    );

  it('a storm across 4 keys, any message to any replica, SNS retries to another replica: every page once, in order, within the window', async () => {
    const r = await replicas();
    await expect
      .poll(async () => [...(await r.owned()).values()].reduce((a, b) => a + b, 0), { timeout: 15_000 })
      .toBe(4);
    const shape = { prefix: 'storm', alerts: 60, steps: 4 };
    const deliveries = await stormOfLives(world, r, shape);
    // SNS retries a delivery whose answer it lost: the same message, to whichever replica.
    const again = deliveries.slice(0, 40);
    const retried = await Promise.all(again.map((d) => r.deliver(d.envelope)));
    expect(retried.map((d) => JSON.parse(d.final?.body ?? '{}').result)).toEqual(
      again.map(() => 'duplicate'),
    );
    const { duplicates } = await settleAndCheck(world, deliveries, {
      ...shape,
      limit: LIMIT,
      keys: keys(),
      maxDuplicates: 0,
    });
    const owned = await r.owned();
    report('3 replicas, storm', {
      delivered: world.pd.accepted.length,
      duplicates,
      'replicas posted to': new Set(deliveries.flatMap((d) => d.attempts.map((a) => a.slot))).size,
      'keys per replica': Math.max(...owned.values()),
    });
    expect([...owned.values()].sort()).toEqual([1, 1, 2]);
  });

  it('kill -9 of the replica that owns most keys mid-storm: its keys move within 10 s, nothing acknowledged is lost', async () => {
    const r = await replicas();
    await expect
      .poll(async () => [...(await r.owned()).values()].sort().join(), { timeout: 15_000 })
      .toBe('1,1,2');
    const shape = { prefix: 'kill', alerts: 60, steps: 4 };
    let killedAt = 0;
    let victim = -1;
    let victimKeys: string[] = [];
    const deliveries = await stormOfLives(world, r, {
      ...shape,
      startAfter: 60,
      during: async () => {
        const owned = await r.owned();
        victim = [...owned.entries()].sort((a, b) => b[1] - a[1])[0]?.[0] ?? 0;
        const log = r.slots[victim]?.logs ?? [];
        victimKeys = log
          .filter((l) => l.msg === 'Took on the dispatch of these keys.')
          .flatMap((l) => l.keys as string[])
          .filter(
            (k) => !log.some((l2) => l2.msg.startsWith('Handing') && (l2.keys as string[]).includes(k)),
          );
        await r.kill(victim);
        killedAt = performance.now();
      },
    });
    const { duplicates } = await settleAndCheck(world, deliveries, {
      ...shape,
      limit: LIMIT,
      keys: keys(),
      // At most the request in flight per key of the dead replica (a delivery's delete is written
      // before its key's next request starts): what PagerDuty de-duplicates by dedup_key.
      maxDuplicates: victimKeys.length,
    });
    // The first request through one of the dead replica's keys after the kill: the new owner's.
    const victimRoutingKeys = victimKeys.map((alias) => world.key(alias));
    const firstAfter = world.pd.requests.find(
      (q) => q.at > killedAt && victimRoutingKeys.includes(q.routingKey ?? ''),
    );
    const failover = (firstAfter?.at ?? Number.POSITIVE_INFINITY) - killedAt;
    report('kill -9 of a replica mid-storm', {
      'keys of the killed replica': victimKeys.length,
      'failover ms (kill → first request by the new owner)': Math.round(failover),
      duplicates,
    });
    expect(victimKeys.length).toBeGreaterThanOrEqual(2);
    expect(failover).toBeLessThan(10_000);
  });

  it('the database stopped under load and started again: 503s meanwhile, then everything acknowledged is delivered', async () => {
    const r = await replicas();
    const shape = { prefix: 'dbdown', alerts: 40, steps: 4 };
    const deliveries = await stormOfLives(world, r, {
      ...shape,
      startAfter: 40,
      during: async () => {
        await server.stop();
        await sleep(3000);
        await server.start();
      },
    });
    const { duplicates } = await settleAndCheck(world, deliveries, {
      ...shape,
      limit: LIMIT,
      keys: keys(),
      maxDuplicates: 8,
    });
    const answered503 = deliveries.flatMap((d) => d.attempts).filter((a) => a.status === 503).length;
    report('database stopped 3 s under load', { 'answers 503': answered503, duplicates });
    expect(answered503).toBeGreaterThan(0);
    // No 4xx ever (SNS would have dropped the message), and nothing answered 200 was lost (above).
    expect(
      deliveries
        .flatMap((d) => d.attempts)
        .filter((a) => a.status !== null && a.status >= 400 && a.status < 500),
    ).toEqual([]);
    for (const i of r.live()) {
      const text = await world.metrics(r.slots[i] as NonNullable<(typeof r.slots)[number]>);
      expect(metricValue(text, 'pdrelay_spool_database_up')).toBe(1);
    }
  });

  it('a rolling restart of all three under load: keys handed over at each SIGTERM, nothing lost, nothing out of order', async () => {
    const r = await replicas();
    const shape = { prefix: 'roll', alerts: 50, steps: 4 };
    const deliveries = await stormOfLives(world, r, {
      ...shape,
      startAfter: 30,
      during: async () => {
        for (const i of [0, 1, 2]) {
          await r.stop(i);
          await r.startSlot(i);
          await sleep(500);
        }
      },
    });
    const { duplicates } = await settleAndCheck(world, deliveries, {
      ...shape,
      limit: LIMIT,
      keys: keys(),
      maxDuplicates: 0,
    });
    const handed = r.slots.flatMap((s) => s?.logs ?? []).filter((l) => l.msg.startsWith('Handing')).length;
    report('rolling restart under load', {
      delivered: world.pd.accepted.length,
      duplicates,
      handovers: handed,
    });
  });
});
