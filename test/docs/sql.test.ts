import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrate } from '../../src/spool/postgres/migrations.js';
import { testDatabase } from '../helpers/postgres.js';
import { codeBlocks, requireDoc } from './markdown.js';

/**
 * The SQL of docs/operations.md (what an operator runs against the PostgreSQL spool in an
 * incident) runs against the schema as the relay migrates it: a renamed table or column fails
 * here, not during an incident. The statements only read, and run in a read-only transaction.
 */

const SCHEMA = 'pdrelay';
const statements = codeBlocks(requireDoc('docs/operations.md'))
  .filter((b) => b.lang === 'sql')
  .flatMap((b) =>
    b.text
      .split(';')
      .map((s) => s.trim())
      .filter((s) => s !== '')
      .map((s) => ({ where: `${b.doc}:${b.line}`, sql: s })),
  );

let db: Awaited<ReturnType<typeof testDatabase>>;
let pool: pg.Pool;
beforeAll(async () => {
  db = await testDatabase('docs_sql');
  pool = new pg.Pool({ connectionString: db.url, max: 1 });
  const client = await pool.connect();
  try {
    await client.query(`SET search_path = ${SCHEMA}`);
    await migrate(client, SCHEMA);
    // One live replica owning a key; a key whose owner's lease ran out; one with no owner at all.
    await client.query(`
      INSERT INTO replicas (id, name, keys, heartbeat_at, expires_at) VALUES
        ('r1', 'pd-relay-7c9f8-a1', ARRAY['k1', 'k3'], now(), now() + interval '4 seconds'),
        ('r2', 'pd-relay-7c9f8-b2', ARRAY['k2'], now(), now() - interval '1 second');
      INSERT INTO key_owners (key_fp, owner, since) VALUES ('k1', 'r1', now()), ('k2', 'r2', now()), ('k3', NULL, NULL);
      INSERT INTO events (message_id, route, rule, action, dedup_key, key_fp, body, received_at) VALUES
        ('m1', 'default', 'cloudwatch-alarm', 'trigger', 'a', 'k2', '{}', 1700000000000);
    `);
  } finally {
    client.release();
  }
});
afterAll(async () => {
  await pool?.end();
  await db?.drop();
});

describe('SQL in docs/operations.md', () => {
  it('finds the statements (the test can fail)', () => {
    expect(statements.length).toBeGreaterThan(3);
  });

  it.each(statements.map((s) => [s.where, s] as const))('%s runs against the spool schema', async (_w, s) => {
    expect(s.sql).toMatch(/^SELECT\b/i);
    const client = await pool.connect();
    try {
      await client.query('BEGIN READ ONLY');
      const r = await client.query(s.sql);
      expect(r.command).toBe('SELECT');
    } finally {
      await client.query('ROLLBACK');
      client.release();
    }
  });
});
