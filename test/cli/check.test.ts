import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { run } from '../../src/cli/main.js';
import { loadConfig } from '../../src/config/load.js';
import { PoolKeyAssigner } from '../../src/delivery/key-assigner.js';
import { KeyRing } from '../../src/delivery/key-ring.js';
import { openServingSpool } from '../../src/spool/open.js';
import { PG_SCHEMA_VERSION } from '../../src/spool/postgres/migrations.js';
import type { PendingEvent, Spool } from '../../src/spool/spool.js';
import { alarmEvent, entry, tempDir } from '../helpers/delivery.js';
import { FakePagerDuty, testRoutingKey } from '../helpers/fake-pagerduty.js';
import { captureIo } from '../helpers/io.js';
import { testDatabase, testRole } from '../helpers/postgres.js';
import { silentObserver } from '../spool/backends.js';

const GOOD = testRoutingKey('good');
const BAD = testRoutingKey('revoked');

let tmp: ReturnType<typeof tempDir>;
let fake: FakePagerDuty;
beforeEach(async () => {
  tmp = tempDir();
  fake = await FakePagerDuty.start();
});
afterEach(async () => {
  await fake.close();
  tmp.cleanup();
});

function configFile(
  keys: Array<[string, string]>,
  spoolDir = './data',
  postgres?: Record<string, string>,
): string {
  const file = join(tmp.dir, 'pd-relay.yaml');
  writeFileSync(
    file,
    [
      ...(keys.length ? ['sns:', '  topics: ["arn:aws:sns:*:123456789012:*"]'] : []),
      'pagerduty:',
      `  url: ${fake.url}`,
      'routes:',
      '  default:',
      `    keys: [${keys.map(([alias, key]) => `{ alias: ${alias}, key: ${key} }`).join(', ')}]`,
      'spool:',
      `  dir: ${spoolDir}`,
      // JSON is YAML too.
      ...(postgres ? [`  postgres: ${JSON.stringify(postgres)}`] : []),
      '',
    ].join('\n'),
  );
  return file;
}

describe('pd-relay check', () => {
  it('fails on rules that serve would refuse, each problem located', async () => {
    const file = configFile([]);
    writeFileSync(file, `${readFileSync(file, 'utf8')}rules:\n  paths: [team.yaml]\n`);
    writeFileSync(
      join(tmp.dir, 'team.yaml'),
      '- name: team\n  match: { kind: [json] }\n  route: nowhere\n  payload: { summary: "x" }\n',
    );
    const io = captureIo();
    expect(await run(['check', '--config', file], io)).toBe(1);
    expect(io.stderr.join('\n')).toMatch(
      /^FAIL {2}rules {3}.*team\.yaml:3:10 \[0\]\.route: Unknown route "nowhere"; configured routes: default$/m,
    );
    expect(io.stderr.at(-1)).toBe('1 check failed.');
  });

  it('passes a valid config whose spool does not exist yet, without creating it', async () => {
    const io = captureIo();
    expect(await run(['check', '--config', configFile([['main', GOOD]])], io)).toBe(0);
    expect(io.stdout).toEqual([
      expect.stringMatching(/^ok {4}config {2}.*pd-relay\.yaml: 1 route, 1 key$/),
      expect.stringMatching(/^ok {4}rules {3}\d+ rules from \d+ files; (\d+)\/\1 rule tests pass$/),
      expect.stringMatching(/^ok {4}spool {3}.*spool\.db does not exist yet; serve will create it$/),
      'All checks passed.',
    ]);
    expect(fake.arrivals).toBe(0);
  });

  it('--send-test proves each key with a resolve for a random dedup key, and fails for a refused key', async () => {
    fake.invalidateKey(BAD);
    const io = captureIo();
    expect(
      await run(
        [
          'check',
          '--config',
          configFile([
            ['main', GOOD],
            ['old', BAD],
          ]),
          '--send-test',
        ],
        io,
      ),
    ).toBe(1);
    expect(io.stdout).toContainEqual(
      expect.stringMatching(/^ok {4}send-test {2}default\/main: accepted \(202, \d+ ms\)$/),
    );
    expect(io.stderr).toEqual([
      'FAIL  send-test  default/old: key refused (400: Invalid routing key)',
      '1 check failed.',
    ]);
    // What PagerDuty received pages nobody: resolves of alerts that do not exist.
    expect(fake.accepted).toHaveLength(1);
    expect(fake.accepted[0]).toMatchObject({
      action: 'resolve',
      dedupKey: expect.stringMatching(/^pd-relay-check-/),
    });
    expect(fake.droppedFollowUps()).toHaveLength(1);
    expect(io.text()).not.toContain(GOOD);
    expect(io.text()).not.toContain(BAD);
  });

  it('--send-test reports an unreachable PagerDuty per key', async () => {
    const file = configFile([['main', GOOD]]);
    await fake.close();
    const io = captureIo();
    expect(await run(['check', '--config', file, '--send-test'], io)).toBe(1);
    expect(io.stderr[0]).toMatch(
      /^FAIL {2}send-test {2}default\/main: no answer from http:\/\/127\.0\.0\.1:\d+ \(network: .*ECONNREFUSED/,
    );
    fake = await FakePagerDuty.start();
  });

  it('reports an existing spool, and skips the send test in dry-run', async () => {
    const file = configFile([]);
    const serve = captureIo();
    expect(await run(['spool', 'stats', '--config', file], serve)).toBe(1);
    // Make a spool as serve would.
    const { SqliteSpool } = await import('../../src/spool/sqlite/spool.js');
    new SqliteSpool({ dir: join(tmp.dir, 'data') }).close();
    const io = captureIo();
    expect(await run(['check', '--config', file, '--send-test'], io)).toBe(0);
    expect(io.stdout).toEqual([
      expect.stringMatching(/1 route, 0 keys \(dry-run: nothing will be sent\)$/),
      expect.stringMatching(/^ok {4}rules {6}\d+ rules from \d+ files; (\d+)\/\1 rule tests pass$/),
      expect.stringMatching(
        /^ok {4}spool {6}.*spool\.db: writable, 0 pending, 0 dead letters, 0 open alerts$/,
      ),
      'skip  send-test  dry-run: no routing keys to test',
      'All checks passed.',
    ]);
  });

  it('fails when the spool cannot be created', async () => {
    writeFileSync(join(tmp.dir, 'a-file'), '');
    const io = captureIo();
    expect(await run(['check', '--config', configFile([['main', GOOD]], './a-file/data')], io)).toBe(1);
    expect(io.stderr[0]).toMatch(/^FAIL {2}spool {3}.*a-file\/data\/spool\.db cannot be created/);
  });

  it('exits 1 with located problems for a broken config', async () => {
    const io = captureIo();
    expect(await run(['check', '--config', 'test/fixtures/config/unknown-key.yaml'], io)).toBe(1);
    expect(io.stderr.join('\n')).toContain('server.prot: Unknown key "prot"');
  });
});

describe('pd-relay check on PostgreSQL (spool.postgres)', () => {
  // In every URL: check must never show it. The test servers trust 127.0.0.1 and never ask for it.
  const SECRET = `pw-${randomBytes(12).toString('hex')}`;
  let db: Awaited<ReturnType<typeof testDatabase>>;
  let schemas = 0;
  beforeAll(async () => {
    db = await testDatabase('check');
  });
  afterAll(async () => {
    await db?.drop();
  });

  interface Place {
    /** The test database's URL as `user`, SECRET as its password. */
    url: string;
    /** A schema no other case uses. */
    schema: string;
    /** How messages name it: postgres://user@127.0.0.1:PORT/db (schema …). */
    where: string;
  }

  function place(url: string, schema = `s${++schemas}`): Place {
    const u = new URL(url);
    u.password = SECRET;
    return {
      url: u.href,
      schema,
      where: `postgres://${u.username}@${u.host}${u.pathname} (schema ${schema})`,
    };
  }

  /**
   * A config on PostgreSQL whose spool.dir is below a regular file: the SQLite branch of check
   * would FAIL on it ("cannot be created"), so a passing check proves it was never looked at.
   */
  function pgConfig(p: Place, extra: Record<string, string> = {}): string {
    writeFileSync(join(tmp.dir, 'a-file'), '');
    return configFile([['main', GOOD]], './a-file/data', {
      url: p.url,
      sslmode: 'disable',
      schema: p.schema,
      ...extra,
    });
  }

  /** The spool as `serve` opens it (migrating), `use`d, then closed. */
  async function served(file: string, use: (spool: Spool) => Promise<void> = async () => {}) {
    const config = loadConfig({ file });
    const spool = await openServingSpool(config, {
      assigner: new PoolKeyAssigner(new KeyRing(config.routes)),
      observer: silentObserver(),
      now: Date.now,
    });
    try {
      await use(spool);
    } finally {
      await spool.close();
    }
  }

  async function check(file: string) {
    const io = captureIo();
    const code = await run(['check', '--config', file], io);
    expect(io.text()).not.toContain(SECRET);
    return { code, io, spool: [...io.stdout, ...io.stderr].find((l) => /^\S+ +spool /.test(l)) };
  }

  async function schemaExists(schema: string): Promise<boolean> {
    return (await sql(db.url, 'SELECT 1 FROM pg_namespace WHERE nspname = $1', [schema])).length === 1;
  }

  const ROUTE = { route: 'default' };
  const cases: Array<{
    name: string;
    /** Prepares the database; returns the config file and what to undo afterwards. */
    setup(): Promise<{ file: string; where: string; undo?: () => Promise<void> }>;
    line(where: string): string;
    /** check says serve will create the schema: it must not exist yet, and serve must manage. */
    serveCreates?: boolean;
  }> = [
    {
      name: 'a migrated database, nothing pending',
      async setup() {
        const p = place(db.url);
        const file = pgConfig(p);
        await served(file);
        return { file, where: p.where };
      },
      line: (where) =>
        `ok    spool   ${where}: reachable, schema version ${PG_SCHEMA_VERSION}, 0 pending, 0 dead letters, 0 open alerts`,
    },
    {
      name: 'events and a dead letter',
      async setup() {
        const p = place(db.url);
        const file = pgConfig(p);
        await served(file, async (spool) => {
          await spool.commit(entry([alarmEvent('trigger', 'a', ROUTE), alarmEvent('trigger', 'b', ROUTE)]));
          await spool.commit(entry([alarmEvent('trigger', 'c', ROUTE)]));
          const c = (await spool.pending()).find((e) => e.dedupKey === 'c') as PendingEvent;
          spool.deadLetter(c, 'rejected', '400: Event object is invalid');
          await spool.flush();
        });
        return { file, where: p.where };
      },
      line: (where) =>
        `warn  spool   ${where}: reachable, schema version ${PG_SCHEMA_VERSION}, 2 pending, 1 dead letter, 3 open alerts (see pd-relay spool dead-letters)`,
    },
    {
      name: 'an empty database',
      async setup() {
        const p = place(db.url);
        return { file: pgConfig(p), where: p.where };
      },
      line: (where) => `ok    spool   ${where}: reachable; no pd-relay schema yet: serve will create it`,
      serveCreates: true,
    },
    {
      name: 'a schema written by a newer pd-relay',
      async setup() {
        const p = place(db.url);
        const file = pgConfig(p);
        await served(file);
        await sql(db.url, `UPDATE ${p.schema}.schema_version SET version = $1`, [PG_SCHEMA_VERSION + 1]);
        return { file, where: p.where };
      },
      line: (where) =>
        `FAIL  spool   ${where}: Expected spool schema version ${PG_SCHEMA_VERSION} or older in schema "${where.match(/schema (\w+)\)$/)?.[1]}", got ${PG_SCHEMA_VERSION + 1}: it was written by a newer pd-relay; run that version, or give this one another spool.postgres.schema`,
    },
    {
      name: 'nothing listening (port 1)',
      async setup() {
        const p = place('postgres://relay@127.0.0.1:1/nowhere', 'pdrelay');
        return { file: pgConfig(p), where: p.where };
      },
      line: (where) =>
        `FAIL  spool   ${where}: cannot connect: connect ECONNREFUSED 127.0.0.1:1 (nothing listens there: check the host and port in the URL, and that the server runs)`,
    },
    {
      name: 'TLS asked of a server without it',
      async setup() {
        const p = place(db.url);
        return { file: pgConfig(p, { sslmode: 'require' }), where: p.where };
      },
      line: (where) =>
        `FAIL  spool   ${where}: cannot connect: The server does not support SSL connections (set spool.postgres.sslmode: disable for a server without TLS)`,
    },
    {
      name: 'a database that does not exist',
      async setup() {
        const u = new URL(db.url);
        u.pathname = '/not_there';
        const p = place(u.href);
        return { file: pgConfig(p), where: p.where };
      },
      line: (where) =>
        `FAIL  spool   ${where}: cannot connect: 3D000: database "not_there" does not exist (create it, or fix the database name in the URL)`,
    },
    {
      name: 'a user that may not create the schema',
      async setup() {
        const role = await testRole(db.url, SECRET);
        const p = place(role.url);
        return { file: pgConfig(p), where: p.where, undo: role.drop };
      },
      line: (where) => {
        const [, user, database, schema] =
          where.match(/^postgres:\/\/(\w+)@[^/]+\/(\w+) \(schema (\w+)\)$/) ?? [];
        return `FAIL  spool   ${where}: reachable; no pd-relay schema yet, and user "${user}" may not create it (no CREATE on database "${database}"): create the schema for it (CREATE SCHEMA ${schema} AUTHORIZATION "${user}"), or GRANT CREATE ON DATABASE "${database}" TO "${user}"`;
      },
    },
    {
      name: 'a user with a schema it may not create tables in',
      async setup() {
        const role = await testRole(db.url, SECRET);
        const p = place(role.url);
        await sql(db.url, `CREATE SCHEMA ${p.schema}`);
        await sql(db.url, `GRANT USAGE ON SCHEMA ${p.schema} TO ${role.name}`);
        return { file: pgConfig(p), where: p.where, undo: role.drop };
      },
      line: (where) => {
        const [, user, schema] = where.match(/^postgres:\/\/(\w+)@.* \(schema (\w+)\)$/) ?? [];
        return `FAIL  spool   ${where}: reachable; no pd-relay schema yet, and user "${user}" may not create tables in schema ${schema}: GRANT CREATE ON SCHEMA ${schema} TO "${user}"`;
      },
    },
    {
      name: 'a user with a schema it may not use',
      async setup() {
        const role = await testRole(db.url, SECRET);
        const p = place(role.url);
        await sql(db.url, `CREATE SCHEMA ${p.schema}`);
        return { file: pgConfig(p), where: p.where, undo: role.drop };
      },
      line: (where) => {
        const [, user, schema] = where.match(/^postgres:\/\/(\w+)@.* \(schema (\w+)\)$/) ?? [];
        return `FAIL  spool   ${where}: reachable, but user "${user}" may not use schema ${schema}: GRANT USAGE, CREATE ON SCHEMA ${schema} TO "${user}"`;
      },
    },
    {
      // What a DBA does on RDS: a schema for the relay's user, nothing on the database.
      name: 'a user given a schema of its own, nothing on the database',
      async setup() {
        const role = await testRole(db.url, SECRET);
        const p = place(role.url);
        await sql(db.url, `CREATE SCHEMA ${p.schema} AUTHORIZATION ${role.name}`);
        return { file: pgConfig(p), where: p.where, undo: role.drop };
      },
      line: (where) => `ok    spool   ${where}: reachable; no pd-relay schema yet: serve will create it`,
      serveCreates: true,
    },
  ];

  it.each(cases)('$name', async (c) => {
    const { file, where, undo } = await c.setup();
    try {
      const first = await check(file);
      expect(first.spool).toBe(c.line(where));
      const failed = c.line(where).startsWith('FAIL');
      expect(first.code).toBe(failed ? 1 : 0);
      expect(failed ? first.io.stderr.at(-1) : first.io.stdout.at(-1)).toBe(
        failed ? '1 check failed.' : 'All checks passed.',
      );
      if (!c.serveCreates) return;
      // check changed nothing, and what it promised holds: serve creates the schema.
      const schema = where.match(/schema (\w+)\)$/)?.[1] as string;
      const tables = await sql(
        db.url,
        "SELECT 1 FROM pg_tables WHERE schemaname = $1 AND tablename = 'schema_version'",
        [schema],
      );
      expect(tables).toEqual([]);
      await served(file);
      expect(await schemaExists(schema)).toBe(true);
      expect((await check(file)).spool).toBe(
        `ok    spool   ${where}: reachable, schema version ${PG_SCHEMA_VERSION}, 0 pending, 0 dead letters, 0 open alerts`,
      );
    } finally {
      await undo?.();
    }
  });

  it('says so in its usage', async () => {
    const io = captureIo();
    expect(await run(['check', '--help'], io)).toBe(0);
    expect(io.text()).toContain('spool.postgres');
  });
});

/** Runs one statement on `url` and returns its rows. */
async function sql(url: string, text: string, params: unknown[] = []): Promise<unknown[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query(text, params)).rows;
  } finally {
    await client.end();
  }
}
