import pg from 'pg';
import type { PostgresConfig } from '../../config/load.js';
import type { SpoolCounts } from '../spool.js';
import { SpoolUnavailableError } from '../types.js';
import { clientConfig, connectHint, describePgError, spoolLocation } from './connection.js';
import { PG_SCHEMA_VERSION, schemaVersionProblem } from './migrations.js';
import { PgSpoolOpenError, PostgresSpool } from './spool.js';

/**
 * What `pd-relay check` says about a PostgreSQL spool. `schemaVersion` 0: no pd-relay schema yet,
 * and this user may create it (serve will). `counts` when the schema is this version's. `problem`:
 * a sentence that names the location.
 */
export type PostgresInspection =
  | { location: string; reachable: true; schemaVersion: number; counts?: SpoolCounts }
  | { location: string; reachable: boolean; problem: string };

interface Facts {
  user: string;
  database: string;
  schema_exists: boolean;
  create_schema: boolean;
  use_schema: boolean | null;
  create_in_schema: boolean | null;
  versioned: boolean;
}

/**
 * Connects to `spool.postgres` and reads, without changing anything (no migration, no schema
 * created), whether the database is reachable, which spool schema version it holds, and whether
 * `pd-relay serve` could create the schema when there is none. Never throws for a database
 * problem: it is the answer. Messages name the server, never the password.
 */
export async function inspectPostgres(config: PostgresConfig): Promise<PostgresInspection> {
  const location = spoolLocation(config);
  const client = new pg.Client(clientConfig(config, 'pd-relay check'));
  // A connection the server drops between statements rejects the next statement anyway.
  client.on('error', () => {});
  try {
    await client.connect();
  } catch (err) {
    await client.end().catch(() => {});
    return {
      location,
      reachable: false,
      problem: `${location}: cannot connect: ${connectHint(err, config)}`,
    };
  }
  let facts: Facts;
  let version = 0;
  try {
    const found = await client.query<Facts>(
      `SELECT current_user AS user, current_database() AS database, n.oid IS NOT NULL AS schema_exists,
              has_database_privilege(current_database(), 'CREATE') AS create_schema,
              CASE WHEN n.oid IS NOT NULL THEN has_schema_privilege(n.oid, 'USAGE') END AS use_schema,
              CASE WHEN n.oid IS NOT NULL THEN has_schema_privilege(n.oid, 'CREATE') END AS create_in_schema,
              -- to_regclass raises for a schema the user may not use, rather than answering null.
              CASE WHEN has_schema_privilege(n.oid, 'USAGE')
                   THEN to_regclass(format('%I.schema_version', q.name)) IS NOT NULL
                   ELSE false END AS versioned
       FROM (SELECT $1::text AS name) AS q LEFT JOIN pg_namespace AS n ON n.nspname = q.name`,
      [config.schema],
    );
    facts = found.rows[0] as Facts;
    if (facts.schema_exists && !facts.use_schema) {
      const user = pg.escapeIdentifier(facts.user);
      return {
        location,
        reachable: true,
        problem: `${location}: reachable, but user ${user} may not use schema ${config.schema}: GRANT USAGE, CREATE ON SCHEMA ${config.schema} TO ${user}`,
      };
    }
    if (facts.versioned) {
      // The name is checked (POSTGRES_SCHEMA_PATTERN): safe to write unquoted.
      const row = await client.query<{ version: number }>(
        `SELECT version FROM ${config.schema}.schema_version`,
      );
      version = row.rows[0]?.version ?? 0;
    }
  } catch (err) {
    return {
      location,
      reachable: true,
      problem: `${location}: reachable, but the spool schema cannot be read: ${describePgError(err)}`,
    };
  } finally {
    await client.end().catch(() => {});
  }
  if (version === 0) {
    const cannot = cannotCreate(facts, config.schema);
    return cannot
      ? {
          location,
          reachable: true,
          problem: `${location}: reachable; no pd-relay schema yet, and ${cannot}`,
        }
      : { location, reachable: true, schemaVersion: 0 };
  }
  if (version !== PG_SCHEMA_VERSION)
    return {
      location,
      reachable: true,
      problem: `${location}: ${schemaVersionProblem(config.schema, version)}`,
    };
  // The schema is this version's: the counts as `pd-relay spool stats` reads them.
  let spool: PostgresSpool;
  try {
    spool = await PostgresSpool.open({ config, mode: 'admin' });
  } catch (err) {
    if (err instanceof PgSpoolOpenError) return { location, reachable: true, problem: err.message };
    throw err;
  }
  try {
    return { location, reachable: true, schemaVersion: version, counts: await spool.counts() };
  } catch (err) {
    // SpoolUnavailableError names the location already; a statement's own error does not.
    const problem =
      err instanceof SpoolUnavailableError ? err.message : `${location}: ${describePgError(err)}`;
    return { location, reachable: !(err instanceof SpoolUnavailableError), problem };
  } finally {
    await spool.close();
  }
}

/**
 * Why `serve`, migrating, could not create the spool (src/spool/postgres/migrations.ts): a missing
 * schema takes CREATE on the database, an existing one (made for the relay by a DBA) CREATE in it.
 */
function cannotCreate(facts: Facts, schema: string): string | null {
  const user = pg.escapeIdentifier(facts.user);
  if (!facts.schema_exists && !facts.create_schema)
    return `user ${user} may not create it (no CREATE on database ${pg.escapeIdentifier(facts.database)}): create the schema for it (CREATE SCHEMA ${schema} AUTHORIZATION ${user}), or GRANT CREATE ON DATABASE ${pg.escapeIdentifier(facts.database)} TO ${user}`;
  if (facts.schema_exists && !facts.create_in_schema)
    return `user ${user} may not create tables in schema ${schema}: GRANT CREATE ON SCHEMA ${schema} TO ${user}`;
  return null;
}
