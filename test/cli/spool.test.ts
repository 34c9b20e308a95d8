import { randomBytes } from 'node:crypto';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { Registry } from 'prom-client';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { run } from '../../src/cli/main.js';
import { formatDuration } from '../../src/cli/spool.js';
import { loadConfig } from '../../src/config/load.js';
import { createDelivery, type Delivery } from '../../src/delivery/delivery.js';
import { PoolKeyAssigner } from '../../src/delivery/key-assigner.js';
import { KeyRing } from '../../src/delivery/key-ring.js';
import { openServingSpool } from '../../src/spool/open.js';
import { PG_SCHEMA_VERSION } from '../../src/spool/postgres/migrations.js';
import type { PendingEvent } from '../../src/spool/spool.js';
import { SPOOL_SCHEMA_VERSION } from '../../src/spool/sqlite/migrations.js';
import { alarmEvent, entry, tempDir } from '../helpers/delivery.js';
import { FakePagerDuty, testRoutingKey } from '../helpers/fake-pagerduty.js';
import { captureIo } from '../helpers/io.js';
import { captureLogger } from '../helpers/log.js';
import { testDatabase } from '../helpers/postgres.js';
import { silentObserver } from '../spool/backends.js';

const K1 = testRoutingKey('cli1');
const K2 = testRoutingKey('cli2');
// In the PostgreSQL URL: no output may show it. The test servers trust 127.0.0.1 and never ask for it.
const SECRET = `pw-${randomBytes(12).toString('hex')}`;

let db: Awaited<ReturnType<typeof testDatabase>> | undefined;
let schemas = 0;
afterAll(async () => {
  await db?.drop();
});

/** A spool for the commands to work on, as the config file's `spool:` section says. */
interface Backend {
  name: string;
  /** The `spool:` section for one test (a place of its own). */
  spool(): Promise<Record<string, unknown>>;
  /** The first line of `spool stats`. */
  header: RegExp;
  /** Where `spool stats --json` says the spool is. */
  location: RegExp;
  schemaVersion: number;
  /** What the commands say before any relay ran with it. */
  none: RegExp;
  /** Whether the spool of the current test exists (the commands must never create one). */
  exists(): Promise<boolean>;
}

const backends: Backend[] = [
  {
    name: 'SQLite',
    spool: async () => ({ dir: './data' }),
    header: new RegExp(`^Spool: .*/data/spool\\.db, schema version ${SPOOL_SCHEMA_VERSION}$`),
    location: /\/data\/spool\.db$/,
    schemaVersion: SPOOL_SCHEMA_VERSION,
    none: /^No spool at .*spool\.db: the relay has not run with this spool\.dir yet\.$/,
    exists: async () => existsSync(join(tmp.dir, 'data')),
  },
  {
    name: 'PostgreSQL',
    async spool() {
      db ??= await testDatabase('cli_spool');
      const url = new URL(db.url);
      url.password = SECRET;
      // spool.dir below a regular file: a command that looked there would fail.
      writeFileSync(join(tmp.dir, 'a-file'), '');
      return {
        dir: './a-file/data',
        postgres: { url: url.href, sslmode: 'disable', schema: `s${++schemas}` },
      };
    },
    header: new RegExp(
      `^Spool: postgres://postgres@127\\.0\\.0\\.1:\\d+/cli_spool_[0-9a-f]+ \\(schema s\\d+\\), schema version ${PG_SCHEMA_VERSION}$`,
    ),
    location: /^postgres:\/\/postgres@127\.0\.0\.1:\d+\/cli_spool_[0-9a-f]+ \(schema s\d+\)$/,
    schemaVersion: PG_SCHEMA_VERSION,
    async exists() {
      const client = new pg.Client({ connectionString: db?.url });
      await client.connect();
      try {
        const found = await client.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [`s${schemas}`]);
        return found.rowCount === 1;
      } finally {
        await client.end();
      }
    },
    none: /^postgres:\/\/postgres@127\.0\.0\.1:\d+\/cli_spool_[0-9a-f]+ \(schema s\d+\): No pd-relay spool in schema "s\d+" yet: the relay has not run with this database$/,
  },
];

let tmp: ReturnType<typeof tempDir>;
let file: string;
let fake: FakePagerDuty;
beforeEach(async () => {
  tmp = tempDir();
  fake = await FakePagerDuty.start();
  file = join(tmp.dir, 'pd-relay.yaml');
});
afterEach(async () => {
  await fake.close();
  tmp.cleanup();
});

/** Writes the test config with this `spool:` section (JSON is YAML too). */
function writeConfig(spool: Record<string, unknown>): void {
  writeFileSync(
    file,
    [
      'sns:',
      '  topics: ["arn:aws:sns:*:123456789012:*"]',
      'pagerduty:',
      `  url: ${fake.url}`,
      'routes:',
      '  default:',
      '    keys:',
      `      - { alias: primary, key: ${K1} }`,
      `      - { alias: secondary, key: ${K2} }`,
      `spool: ${JSON.stringify(spool)}`,
      'delivery:',
      '  minBackoffMs: 5',
      '  maxBackoffMs: 50',
      '',
    ].join('\n'),
  );
}

/** Runs the CLI; whatever it prints names no routing key and no password. */
async function cli(args: string[]) {
  const io = captureIo();
  const code = await run(args, io);
  for (const secret of [K1, K2, SECRET]) expect(io.text()).not.toContain(secret);
  return { code, io };
}

/**
 * Puts two pending events and two dead letters in the spool of the test config, through the spool
 * contract as `serve` opens it.
 */
async function seed() {
  const config = loadConfig({ file });
  const spool = await openServingSpool(config, {
    assigner: new PoolKeyAssigner(new KeyRing(config.routes)),
    observer: silentObserver(),
    now: Date.now,
  });
  try {
    await spool.commit(entry([alarmEvent('trigger', 'a'), alarmEvent('trigger', 'b')]));
    await spool.commit(
      entry([alarmEvent('trigger', 'c', { summary: 'Disk full' }), alarmEvent('resolve', 'd')]),
    );
    const [, , c, d] = (await spool.pending()) as PendingEvent[];
    spool.deadLetter({ ...(c as PendingEvent), attempts: 2 }, 'rejected', "400: 'payload.summary' is weird");
    spool.deadLetter(d as PendingEvent, 'bad_key', '400: Invalid routing key');
    await spool.flush();
    return { c: c as PendingEvent, d: d as PendingEvent };
  } finally {
    await spool.close();
  }
}

describe.each(backends)('pd-relay spool on $name', (backend) => {
  beforeEach(async () => {
    writeConfig(await backend.spool());
  });

  it('stats: pending per route and key alias, dead letters by reason; never a key', async () => {
    await seed();
    const { code, io } = await cli(['spool', 'stats', '--config', file]);
    expect(code).toBe(0);
    const text = io.text();
    expect(io.stdout[0]).toMatch(backend.header);
    expect(text).toMatch(/^Pending: 2 events, oldest \d+s$/m);
    expect(text).toMatch(/ROUTE\s+KEY\s+PENDING\s+OLDEST\s+HEAD ATTEMPTS\s+NEXT ATTEMPT/);
    expect(text).toMatch(/default\s+(primary|secondary)\s+\d\s+\d+s\s+0\s+now/);
    expect(text).toContain('Dead letters: 2 (bad_key 1, rejected 1)');

    const json = await cli(['spool', 'stats', '--config', file, '--json']);
    expect(json.code).toBe(0);
    expect(JSON.parse(json.io.stdout.join('\n'))).toMatchObject({
      spool: expect.stringMatching(backend.location),
      schema: backend.schemaVersion,
      pending: { total: 2 },
      deadLetters: { total: 2, byReason: { rejected: 1, bad_key: 1 } },
      openAlerts: 3,
    });
  });

  it('dead-letters: each with its reason and PagerDuty’s words, as text or JSON', async () => {
    const { c } = await seed();
    const { code, io } = await cli(['spool', 'dead-letters', '--config', file]);
    expect(code).toBe(0);
    expect(io.stdout[0]).toMatch(
      new RegExp(
        `^#${c.id}  \\S+Z  rejected  default/(primary|secondary)  trigger  dedup_key=c  attempts=2$`,
      ),
    );
    expect(io.stdout[1]).toBe("    400: 'payload.summary' is weird");
    expect(io.stdout[2]).toBe('    summary: Disk full');
    expect(io.stdout.at(-1)).toMatch(/^2 dead letters; retry with/);

    const json = await cli(['spool', 'dead-letters', '--config', file, '--json', '--limit', '1']);
    expect(json.code).toBe(0);
    const parsed = JSON.parse(json.io.stdout.join('\n')) as { deadLetters: Array<Record<string, unknown>> };
    expect(parsed.deadLetters).toHaveLength(1);
    expect(parsed.deadLetters[0]).toMatchObject({
      id: c.id,
      reason: 'rejected',
      action: 'trigger',
      attempts: 2,
    });
  });

  it('retry-dead-letters: queues the chosen ones again and says which ids do not exist', async () => {
    const { c } = await seed();
    const some = await cli([
      'spool',
      'retry-dead-letters',
      '--config',
      file,
      '--id',
      String(c.id),
      '--id',
      '999',
    ]);
    expect(some.code).toBe(1);
    expect(some.io.stdout).toEqual([expect.stringMatching(/^Queued 1 dead letter again/)]);
    expect(some.io.stderr).toEqual(['No dead letter with id 999.']);
    const all = await cli(['spool', 'retry-dead-letters', '--config', file]);
    expect(all.code).toBe(0);
    expect(all.io.stdout[0]).toMatch(/^Queued 1 dead letter again/);
    const none = await cli(['spool', 'retry-dead-letters', '--config', file]);
    expect(none.code).toBe(0);
    expect(none.io.stdout).toEqual(['No dead letters to retry.']);
    const stats = await cli(['spool', 'stats', '--config', file]);
    expect(stats.io.text()).toContain('Pending: 4 events');
    expect(stats.io.text()).toContain('Dead letters: 0');
  });

  it('discard-dead-letters: deletes the chosen ones, or all with --all, and never by default', async () => {
    const { c, d } = await seed();
    const some = await cli([
      'spool',
      'discard-dead-letters',
      '--config',
      file,
      '--id',
      String(c.id),
      '--id',
      '999',
    ]);
    expect(some.code).toBe(1);
    expect(some.io.stdout).toEqual(['Discarded 1 dead letter for good.']);
    expect(some.io.stderr).toEqual(['No dead letter with id 999.']);
    const left = await cli(['spool', 'dead-letters', '--config', file, '--json']);
    expect(left.code).toBe(0);
    const letters = (JSON.parse(left.io.stdout.join('\n')) as { deadLetters: Array<{ id: number }> })
      .deadLetters;
    expect(letters.map((l) => l.id)).toEqual([d.id]);

    const bare = await cli(['spool', 'discard-dead-letters', '--config', file]);
    expect(bare.code).toBe(2);
    expect(bare.io.stderr.join('\n')).toMatch(/Expected --id ID \(repeatable\) or --all/);

    const all = await cli(['spool', 'discard-dead-letters', '--config', file, '--all']);
    expect(all.code).toBe(0);
    expect(all.io.stdout).toEqual(['Discarded 1 dead letter for good.']);
    const none = await cli(['spool', 'discard-dead-letters', '--config', file, '--all']);
    expect(none.code).toBe(0);
    expect(none.io.stdout).toEqual(['No dead letters to discard.']);
    const stats = await cli(['spool', 'stats', '--config', file]);
    expect(stats.code).toBe(0);
    expect(stats.io.text()).toContain('Dead letters: 0');
    expect(stats.io.text()).toContain('Pending: 2 events');
  });

  it('retry-dead-letters while the relay runs: the relay picks them up within a second and delivers them', async () => {
    const config = loadConfig({ file });
    const delivery: Delivery = await createDelivery(config, {
      logger: captureLogger().logger,
      registry: new Registry(),
      pollIntervalMs: 20,
    });
    delivery.start();
    try {
      fake.rejectWhen(() => ['Event object is invalid because of reasons']);
      await delivery.sink.commit(entry([alarmEvent('trigger', 'fixme')]));
      await fake.waitFor((f) => f.count(400) === 1, 10_000, 'the refusal');
      await expect
        .poll(async () => (await cli(['spool', 'dead-letters', '--config', file])).io.stdout[1])
        .toBe('    400: Event object is invalid because of reasons');

      fake.rejectWhen(null);
      const retried = await cli(['spool', 'retry-dead-letters', '--config', file]);
      expect(retried.code).toBe(0);
      const at = performance.now();
      await fake.waitFor((f) => f.accepted.length === 1, 5000, 'the retried event');
      // What the usage promises; the PostgreSQL relay hears of it at once (NOTIFY).
      expect(performance.now() - at).toBeLessThan(1000);
      expect(fake.accepted[0]?.dedupKey).toBe('fixme');
    } finally {
      await delivery.stop(0);
    }
  });

  it('says so when there is no spool yet, and creates none', async () => {
    for (const sub of ['stats', 'dead-letters', 'retry-dead-letters']) {
      const { code, io } = await cli(['spool', sub, '--config', file]);
      expect(code).toBe(1);
      expect(io.stderr.join('\n')).toMatch(backend.none);
    }
    expect(await backend.exists()).toBe(false);
    await seed();
    expect(await backend.exists()).toBe(true);
  });
});

describe('pd-relay spool', () => {
  it.each([
    [['spool'], /Expected a subcommand/],
    [
      ['spool', 'purge'],
      /Expected stats, dead-letters, retry-dead-letters or discard-dead-letters, got "purge"/,
    ],
    [['spool', 'stats', '--id', '3'], /--id goes with retry-dead-letters and discard-dead-letters/],
    [['spool', 'retry-dead-letters', '--all'], /--all goes with discard-dead-letters/],
    [['spool', 'discard-dead-letters', '--all', '--id', '3'], /Expected --id ID \(repeatable\) or --all/],
    [['spool', 'retry-dead-letters', '--id', 'x'], /Expected --id to be a positive integer, got "x"/],
    [['spool', 'dead-letters', '--limit', '0'], /Expected --limit to be a positive integer, got "0"/],
  ])('answers %j with usage and exit 2', async (argv, message) => {
    const io = captureIo();
    expect(await run(argv, io)).toBe(2);
    expect(io.stderr.join('\n')).toMatch(message);
  });

  it('names both spools in its usage', async () => {
    const io = captureIo();
    expect(await run(['spool', '--help'], io)).toBe(0);
    expect(io.text()).toMatch(/spool\.dir/);
    expect(io.text()).toMatch(/spool\.postgres/);
  });

  it.each([
    [5, '5s'],
    [75, '1m 15s'],
    [3 * 3600 + 120, '3h 2m'],
    [2 * 86_400 + 3600, '2d 1h'],
  ])('formats %i seconds as %s', (s, text) => {
    expect(formatDuration(s)).toBe(text);
  });
});
