import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { PostgresConfig } from '../../src/config/load.js';
import { PoolKeyAssigner } from '../../src/delivery/key-assigner.js';
import { KeyRing } from '../../src/delivery/key-ring.js';
import type { OutboundEvent } from '../../src/rules/types.js';
import { PG_SCHEMA_VERSION } from '../../src/spool/postgres/migrations.js';
import type { LeaseTiming } from '../../src/spool/postgres/ownership.js';
import { PgSpoolOpenError, PostgresSpool } from '../../src/spool/postgres/spool.js';
import type { CommitResult, PendingEvent } from '../../src/spool/spool.js';
import { SpoolUnavailableError } from '../../src/spool/types.js';
import { alarmEvent, entry, tempDir } from '../helpers/delivery.js';
import { startPostgres, type TestPostgres, testDatabase, testRole } from '../helpers/postgres.js';
import { baseConfig, type OwnershipLog, own, postgresSpoolConfig, waitFor } from './backends.js';

/** Leases short enough for tests: a dead replica's keys move within ~1.2 s. */
const FAST: LeaseTiming = { tickMs: 100, leaseMs: 900, graceMs: 600 };

const tmp = tempDir('pd-relay-pg-');
afterAll(() => tmp.cleanup());

function configFor(url: string, keys: number[], app?: string) {
  const withApp = app ? `${url}${url.includes('?') ? '&' : '?'}application_name=${app}` : url;
  return baseConfig(keys, {}, tmp.dir, { postgres: postgresSpoolConfig(withApp) });
}

const open: PostgresSpool[] = [];
afterEach(async () => {
  for (const s of open.splice(0).reverse()) await s.close();
});

/** A replica: a serving PostgreSQL spool on `url` with the keys `keys` (testRoutingKey numbers). */
async function replica(
  url: string,
  keys: number[] = [1, 2, 3, 4],
  opts: { app?: string; timing?: Partial<LeaseTiming> } = {},
): Promise<{ spool: PostgresSpool; ring: KeyRing; pgConfig: PostgresConfig }> {
  const config = configFor(url, keys, opts.app);
  const ring = new KeyRing(config.routes);
  const pgConfig = config.spool.postgres as PostgresConfig;
  const spool = await PostgresSpool.open({
    config: pgConfig,
    mode: 'serve',
    assigner: new PoolKeyAssigner(ring),
    probeIntervalMs: 50,
    timing: opts.timing ?? FAST,
  });
  open.push(spool);
  return { spool, ring, pgConfig };
}

async function sql<T extends pg.QueryResultRow>(
  url: string,
  text: string,
  params: unknown[] = [],
): Promise<T[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query<T>(text, params)).rows;
  } finally {
    await client.end();
  }
}

function committed(r: CommitResult) {
  if (r.status !== 'committed') throw new Error(`Expected a commit, got ${r.status}`);
  return r;
}

describe('PostgreSQL spool: schema', () => {
  let db: Awaited<ReturnType<typeof testDatabase>>;
  beforeAll(async () => {
    db = await testDatabase('schema');
  });
  afterAll(() => db.drop());

  it('lets replicas start together on an empty database: one migrates, the others wait, all work', async () => {
    const started = await Promise.all([1, 2, 3, 4].map(() => replica(db.url)));
    expect(started.map((r) => r.spool.schemaVersion)).toEqual([1, 1, 1, 1].map(() => PG_SCHEMA_VERSION));
    expect(await sql(db.url, 'SELECT version FROM pdrelay.schema_version')).toEqual([
      { version: PG_SCHEMA_VERSION },
    ]);
    // Each one commits, and sees the others' messages as duplicates.
    const results = await Promise.all(
      started.map((r, i) => r.spool.commit(entry([alarmEvent('trigger', `m${i}`)], `msg-${i}`))),
    );
    expect(results.map((r) => r.status)).toEqual(['committed', 'committed', 'committed', 'committed']);
    expect(await started[3]?.spool.commit(entry([alarmEvent('trigger', 'm0')], 'msg-0'))).toEqual({
      status: 'duplicate',
    });
  });

  it('refuses a schema written by a newer pd-relay, saying what to do, and the CLI one not yet created', async () => {
    const other = await testDatabase('newer');
    try {
      const { spool } = await replica(other.url);
      await spool.close();
      await sql(other.url, 'UPDATE pdrelay.schema_version SET version = $1', [PG_SCHEMA_VERSION + 1]);
      const config = configFor(other.url, [1]).spool.postgres as PostgresConfig;
      await expect(PostgresSpool.open({ config, mode: 'serve' })).rejects.toThrow(
        new PgSpoolOpenError(
          `${config.display} (schema pdrelay): Expected spool schema version ${PG_SCHEMA_VERSION} or older in schema "pdrelay", got ${PG_SCHEMA_VERSION + 1}: it was written by a newer pd-relay; run that version, or give this one another spool.postgres.schema`,
        ),
      );
      const fresh = { ...config, schema: 'not_yet' };
      await expect(PostgresSpool.open({ config: fresh, mode: 'admin' })).rejects.toThrow(
        /No pd-relay spool in schema "not_yet" yet: the relay has not run with this database/,
      );
    } finally {
      await other.drop();
    }
  });

  it('starts as a user given a schema of its own and no CREATE on the database, as a DBA sets it up', async () => {
    const other = await testDatabase('owned');
    const role = await testRole(other.url, 'not-asked');
    try {
      await sql(other.url, `CREATE SCHEMA pdrelay AUTHORIZATION ${role.name}`);
      // CREATE SCHEMA IF NOT EXISTS would be refused here: PostgreSQL checks CREATE on the
      // database before it looks whether the schema exists.
      const { spool } = await replica(role.url);
      committed(await spool.commit(entry([alarmEvent('trigger', 'owned')], 'owned-1')));
      expect(spool.schemaVersion).toBe(PG_SCHEMA_VERSION);
      await spool.close();
      // And again at the next start, the schema migrated.
      const again = await replica(role.url);
      expect(await again.spool.hasMessage('owned-1')).toBe(true);
      await again.spool.close();
    } finally {
      await role.drop();
      await other.drop();
    }
  });

  it('keeps relays with different schemas apart in one database', async () => {
    const a = await replica(db.url);
    const config = configFor(db.url, [1, 2, 3, 4]);
    const pgB = { ...(config.spool.postgres as PostgresConfig), schema: 'team_b' };
    const b = await PostgresSpool.open({
      config: pgB,
      mode: 'serve',
      assigner: new PoolKeyAssigner(new KeyRing(config.routes)),
    });
    open.push(b);
    committed(await a.spool.commit(entry([alarmEvent('trigger', 'x')], 'same-id')));
    committed(await b.commit(entry([alarmEvent('trigger', 'x')], 'same-id')));
    expect(await b.hasMessage('msg-0')).toBe(false);
  });

  it('names the server, never the password, when it cannot connect', async () => {
    const config = configFor('postgres://relay:hunter2-secret@127.0.0.1:1/nowhere', [1]).spool
      .postgres as PostgresConfig;
    const err = await PostgresSpool.open({ config, mode: 'serve' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PgSpoolOpenError);
    expect(String((err as Error).message)).toMatch(
      /^Cannot connect to the spool database postgres:\/\/relay@127\.0\.0\.1:1\/nowhere \(schema pdrelay\): .*ECONNREFUSED/,
    );
    expect(String((err as Error).message)).not.toContain('hunter2');
  });
});

describe('PostgreSQL spool: replicas committing at once', () => {
  let db: Awaited<ReturnType<typeof testDatabase>>;
  beforeAll(async () => {
    db = await testDatabase('replicas');
  });
  afterAll(() => db.drop());

  it('accepts a MessageId once across replicas, whichever gets SNS’s retries', async () => {
    const [a, b, c] = await Promise.all([replica(db.url), replica(db.url), replica(db.url)]);
    const spools = [a, b, c].map((r) => r?.spool as PostgresSpool);
    const ids = Array.from({ length: 60 }, (_, i) => `retry-${i}`);
    // Every message posted to all three at once, as SNS retries of an answer that was lost.
    const results = await Promise.all(
      ids.flatMap((id) => spools.map((s) => s.commit(entry([alarmEvent('trigger', id)], id)))),
    );
    const committedIds = results.filter((r) => r.status === 'committed').length;
    expect(committedIds).toBe(ids.length);
    expect((await spools[0]?.pending())?.length).toBe(ids.length);
  });

  it('orders the events of one alarm by their state, whichever replica commits first (late retries not sent)', async () => {
    const [a, b] = await Promise.all([replica(db.url), replica(db.url)]);
    const t = (at: number) => ({ time: { at, from: 'payload' as const } });
    const rounds = 40;
    for (let i = 0; i < rounds; i++) {
      const alarm = `race-${i}`;
      // ALARM at i, OK a second later, delivered to two replicas at the same time in either order.
      const trigger = alarmEvent('trigger', alarm, t(1000 * i));
      const resolve = alarmEvent('resolve', alarm, t(1000 * i + 1000));
      const [ra, rb] = await Promise.all(
        i % 2 === 0
          ? [a?.spool.commit(entry([trigger])), b?.spool.commit(entry([resolve]))]
          : [b?.spool.commit(entry([resolve])), a?.spool.commit(entry([trigger]))],
      );
      expect(ra?.status).toBe('committed');
      expect(rb?.status).toBe('committed');
    }
    const pending = (await a?.spool.pending()) as PendingEvent[];
    for (let i = 0; i < rounds; i++) {
      const events = pending.filter((e) => e.dedupKey === `race-${i}`);
      // Either the trigger came first (both queued, trigger before resolve, same key) or it came
      // late and was not queued: never a resolve that PagerDuty would see before its trigger.
      if (events.length === 2) {
        expect(events.map((e) => e.action)).toEqual(['trigger', 'resolve']);
        expect(events[0]?.keyFp).toBe(events[1]?.keyFp);
      } else {
        expect(events.map((e) => e.action)).toEqual(['resolve']);
      }
    }
  });
});

describe('PostgreSQL spool: key ownership', () => {
  let db: Awaited<ReturnType<typeof testDatabase>>;
  beforeAll(async () => {
    db = await testDatabase('owners');
  });
  afterAll(() => db.drop());

  const union = (logs: OwnershipLog[]) => logs.flatMap((l) => [...l.owned]);

  it('splits the keys among replicas, each key to exactly one, and moves a stopped replica’s keys at once', async () => {
    const a = await replica(db.url, [1, 2, 3, 4]);
    const b = await replica(db.url, [1, 2, 3, 4]);
    const logA = await own(a.spool, a.ring, { expectAll: false });
    const logB = await own(b.spool, b.ring, { expectAll: false });
    const all = a.ring.lanes().map((k) => k.fp);
    await waitFor(
      () => logA.owned.size === 2 && logB.owned.size === 2,
      'two keys each (a rebalance hands keys to the second replica)',
    );
    expect(new Set(union([logA, logB]))).toEqual(new Set(all));
    expect(union([logA, logB])).toHaveLength(4);

    const stoppedAt = performance.now();
    await a.spool.ownership.stop();
    await waitFor(() => logB.owned.size === 4, 'the survivor to take every key', 5000);
    // A clean stop hands over at once, well before a lease would run out.
    expect(performance.now() - stoppedAt).toBeLessThan(FAST.leaseMs);
  });

  it('takes the keys of a replica cut off from the database once its lease lapsed; the cut-off one stopped first', async () => {
    // Its own role, so that the database can refuse it from now on (a partition, as the server sees it).
    await sql(db.url, 'DROP ROLE IF EXISTS cut_off');
    await sql(db.url, 'CREATE ROLE cut_off LOGIN SUPERUSER');
    const url = new URL(db.url);
    url.username = 'cut_off';
    const a = await replica(url.toString(), [1, 2, 3, 4], { app: 'dies' });
    const logA = await own(a.spool, a.ring);
    const b = await replica(db.url, [1, 2, 3, 4], { app: 'survives' });
    const logB = await own(b.spool, b.ring, { expectAll: false });
    await waitFor(() => logB.owned.size === 2, 'a balanced pair');
    // The database drops the first replica's sessions (as a network partition or a killed pod
    // looks from the server): it must stop sending at once, and the other must wait for the lease.
    let aLostAt: number | undefined;
    const watch = setInterval(() => {
      if (logA.lost.length && aLostAt === undefined) aLostAt = performance.now();
    }, 2);
    const t0 = performance.now();
    await sql(db.url, 'ALTER ROLE cut_off NOLOGIN');
    await sql(db.url, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'cut_off'");
    await waitFor(() => logB.owned.size === 4, 'the survivor to take every key', 10_000);
    const bAt = performance.now();
    const tookOver = bAt - t0;
    clearInterval(watch);
    expect(aLostAt).toBeDefined();
    expect(aLostAt as number).toBeLessThan(bAt);
    expect(tookOver).toBeGreaterThan(FAST.leaseMs - FAST.graceMs);
    expect(tookOver).toBeLessThan(FAST.leaseMs + 5 * FAST.tickMs + 1000);
    expect(a.spool.ownership.holds(a.ring.lanes()[0]?.fp as string)).toBe(false);
    // Let it reconnect, so that it can close (and the role can go with the database).
    await sql(db.url, 'ALTER ROLE cut_off LOGIN');
  });

  it('gives a new replica its share by handing keys over, never two owners at a time', async () => {
    const a = await replica(db.url, [1, 2, 3, 4, 5, 6]);
    const logA = await own(a.spool, a.ring);
    const b = await replica(db.url, [1, 2, 3, 4, 5, 6]);
    const logB = await own(b.spool, b.ring, { expectAll: false });
    const c = await replica(db.url, [1, 2, 3, 4, 5, 6]);
    const logC = await own(c.spool, c.ring, { expectAll: false });
    // What matters is whether two replicas may start a request for one key at the same instant
    // (holds() is what the dispatcher asks right before each request).
    const spools = [a.spool, b.spool, c.spool];
    let overlap = 0;
    const watch = setInterval(() => {
      for (const k of a.ring.lanes()) if (spools.filter((s) => s.ownership.holds(k.fp)).length > 1) overlap++;
    }, 2);
    await waitFor(
      () => logA.owned.size === 2 && logB.owned.size === 2 && logC.owned.size === 2,
      'two keys each',
      10_000,
    );
    clearInterval(watch);
    expect(overlap).toBe(0);
    // Handed over, not lost: no replica dropped a key for want of a lease.
    expect([...logA.lost, ...logB.lost, ...logC.lost]).toEqual([]);
    expect(new Set(union([logA, logB, logC])).size).toBe(6);
  });

  it('never gives a handed-over key back to the replica that handed it, whatever its looks do meanwhile', async () => {
    // Looks every 10 ms and handovers that take a while to write out: a look runs while a key is
    // handed over, the race that once let the giver take the key back beside its new owner.
    const timing = { tickMs: 10, leaseMs: 900, graceMs: 600 };
    const keys = [1, 2, 3, 4, 5, 6, 7, 8];
    let seed = 7;
    const releaseMs = () => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return 5 + (seed % 40);
    };
    const logs: OwnershipLog[] = [];
    let overlaps = 0;
    const watch = setInterval(() => {
      for (const fp of new Set(union(logs))) if (logs.filter((l) => l.owned.has(fp)).length > 1) overlaps++;
    }, 1);
    try {
      const first = await replica(db.url, keys, { timing });
      logs.push(await own(first.spool, first.ring, { releaseMs }));
      // Each newcomer takes its share by handovers.
      for (let round = 0; round < 3; round++) {
        const next = await replica(db.url, keys, { timing });
        const log = await own(next.spool, next.ring, { expectAll: false, releaseMs });
        logs.push(log);
        await waitFor(() => log.owned.size >= 2, `round ${round}: the newcomer's share`, 10_000);
        await new Promise((r) => setTimeout(r, 100));
      }
      await waitFor(() => logs.every((l) => l.owned.size === 2), 'two keys each, the handovers done', 10_000);
    } finally {
      clearInterval(watch);
    }
    expect(logs.flatMap((l) => l.lost)).toEqual([]);
    expect(overlaps).toBe(0);
    expect(new Set(union(logs)).size).toBe(keys.length);
    expect(union(logs)).toHaveLength(keys.length);
  });

  it('tells the owner of a key about events another replica committed for it, without polling', async () => {
    const a = await replica(db.url, [1, 2]);
    const logA = await own(a.spool, a.ring);
    const b = await replica(db.url, [1, 2]);
    const queued: PendingEvent[] = [];
    a.spool.onQueued((events) => queued.push(...events));
    expect(logA.owned.size).toBe(2);
    const started = performance.now();
    const r = committed(
      await b.spool.commit(entry([alarmEvent('trigger', 'via-b'), alarmEvent('trigger', 'also')])),
    );
    await waitFor(() => queued.length === 2, 'the owner to hear of both events', 2000);
    expect(performance.now() - started).toBeLessThan(FAST.tickMs * 5);
    expect(queued.map((e) => e.id).sort()).toEqual(r.events.map((e) => e.id).sort());
  });

  it('moves the events of a key configured nowhere any more to the keys that are', async () => {
    const old = await replica(db.url, [1, 2, 3]);
    const r = committed(
      await old.spool.commit(entry(Array.from({ length: 9 }, (_, i) => alarmEvent('trigger', `o${i}`)))),
    );
    const gone = old.ring.lanes()[2]?.fp as string;
    expect(r.events.some((e) => e.keyFp === gone)).toBe(true);
    await old.spool.close();
    const now = await replica(db.url, [1, 2]);
    const log = await own(now.spool, now.ring);
    await waitFor(() => log.orphaned.includes(gone), 'the removed key reported as orphaned', 5000);
  });
});

describe('PostgreSQL spool: the database goes away', () => {
  let server: TestPostgres;
  let url: string;
  beforeAll(async () => {
    server = await startPostgres();
    url = await server.createDatabase('outage');
  });
  afterAll(() => server.close());

  it('answers 503 (SpoolUnavailableError) and stops dispatching while the database is down, then recovers by itself', async () => {
    const problems: string[] = [];
    const config = configFor(url, [1, 2]);
    const ring = new KeyRing(config.routes);
    const spool = await PostgresSpool.open({
      config: config.spool.postgres as PostgresConfig,
      mode: 'serve',
      assigner: new PoolKeyAssigner(ring),
      probeIntervalMs: 50,
      timing: FAST,
      observer: {
        committed() {},
        unavailable: (p) => problems.push(`unavailable: ${p}`),
        recovered: () => problems.push('recovered'),
        listenerFailed() {},
        databaseLost: (p) => problems.push(`lost: ${p}`),
        databaseRecovered: () => problems.push('database recovered'),
      },
    });
    open.push(spool);
    const log = await own(spool, ring);
    committed(await spool.commit(entry([alarmEvent('trigger', 'before')])));

    await server.stop();
    const t0 = performance.now();
    await expect(spool.commit(entry([alarmEvent('trigger', 'during')]))).rejects.toBeInstanceOf(
      SpoolUnavailableError,
    );
    await waitFor(() => log.owned.size === 0, 'every key dropped', 5000);
    expect(performance.now() - t0).toBeLessThan(FAST.graceMs + 2000);
    expect(spool.problem()).toMatch(/unreachable|connect|terminat/i);
    for (const k of ring.lanes()) expect(spool.ownership.holds(k.fp)).toBe(false);

    await server.start();
    await waitFor(() => log.owned.size === 2, 'the keys back after the database returned', 15_000);
    await expect.poll(() => spool.problem(), { timeout: 10_000 }).toBeNull();
    committed(await spool.commit(entry([alarmEvent('trigger', 'after')])));
    expect((await spool.pending()).map((e) => e.dedupKey)).toEqual(['before', 'after']);
    expect(problems.some((p) => p.startsWith('lost: '))).toBe(true);
    expect(problems).toContain('database recovered');
  });
});

describe('PostgreSQL spool: large batches', () => {
  let db: Awaited<ReturnType<typeof testDatabase>>;
  beforeAll(async () => {
    db = await testDatabase('large');
  });
  afterAll(() => db.drop());

  it('commits 2,000 concurrent messages in a few group commits, and loads a 20,000-event queue in pages', async () => {
    const config = configFor(db.url, [1, 2]);
    const ring = new KeyRing(config.routes);
    const batches: number[] = [];
    const spool = await PostgresSpool.open({
      config: config.spool.postgres as PostgresConfig,
      mode: 'serve',
      assigner: new PoolKeyAssigner(ring),
      observer: {
        committed: (info) => batches.push(info.entries),
        unavailable() {},
        recovered() {},
        listenerFailed() {},
      },
    });
    open.push(spool);
    const messages = Array.from({ length: 2000 }, (_, i) =>
      entry([alarmEvent('trigger', `b${i}`)], `big-${i}`),
    );
    const results = await Promise.all(messages.map((m) => spool.commit(m)));
    expect(results.every((r) => r.status === 'committed')).toBe(true);
    // Group commit: far fewer transactions than messages (up to 4 run at once, the rest gather).
    expect(batches.reduce((a, b) => a + b, 0)).toBe(2000);
    expect(batches.length).toBeLessThan(100);
    const many: OutboundEvent[] = Array.from({ length: 20 }, () => alarmEvent('trigger', null));
    await Promise.all(Array.from({ length: 900 }, (_, i) => spool.commit(entry(many, `many-${i}`))));
    const fp = ring.lanes()[0]?.fp as string;
    const one = await spool.pending([fp]);
    const all = await spool.pending();
    expect(all.length).toBe(2000 + 18_000);
    expect(one.length).toBeGreaterThan(8000);
    const ids = all.map((e) => e.id);
    expect([...ids].sort((x, y) => x - y)).toEqual(ids);
  });
});
