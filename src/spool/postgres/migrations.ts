import type { PoolClient } from 'pg';

/** The PostgreSQL spool schema this version of pd-relay writes. */
export const PG_SCHEMA_VERSION = 1;

interface Migration {
  version: number;
  description: string;
  sql: string;
}

/**
 * Every schema change, in order, forward only: never edit a released migration, add the next one.
 * Applied inside one transaction under an advisory lock (migrate()), so replicas that start
 * together migrate once. Tables are created in the connection's search_path, which is
 * `spool.postgres.schema` (connection.ts), and so are the functions' references to them.
 *
 * Times are epoch milliseconds (bigint) of the relay's clock, like the SQLite spool's; only the
 * leases (replicas.expires_at) are the database's own clock, which every replica shares.
 */
const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    description:
      'message-id ledger, events, open-alert key map, dead letters, request log, event times, replicas and key leases',
    sql: `
      -- SNS MessageIds already accepted (SNS redelivers with the same id, to any replica).
      CREATE TABLE messages (
        message_id text PRIMARY KEY,
        accepted_at bigint NOT NULL
      );
      CREATE INDEX messages_accepted_at ON messages (accepted_at);

      -- Ids are the delivery order per key and are never reused; dead letters keep theirs.
      CREATE SEQUENCE event_ids;

      -- Undelivered events; a key's owner reads its queue by (key_fp, id).
      CREATE TABLE events (
        id bigint PRIMARY KEY DEFAULT nextval('event_ids'),
        message_id text NOT NULL,
        route text NOT NULL,
        rule text NOT NULL,
        action text NOT NULL,
        dedup_key text,
        key_fp text NOT NULL,
        body text NOT NULL,
        received_at bigint NOT NULL,
        -- When the state it reports began at its source (OutboundEvent.time; 0: unknown).
        source_at bigint NOT NULL DEFAULT 0,
        attempts integer NOT NULL DEFAULT 0,
        next_attempt_at bigint NOT NULL DEFAULT 0,
        last_error text
      );
      CREATE INDEX events_key ON events (key_fp, id);

      -- Open alerts: which key a dedup key's trigger went through (fingerprint, never the key).
      CREATE TABLE open_alerts (
        route text NOT NULL,
        dedup_key text NOT NULL,
        key_fp text NOT NULL,
        trigger_id bigint NOT NULL,
        opened_at bigint NOT NULL,
        -- A trigger of it reached PagerDuty (open there on key_fp): its events stay on that key.
        sent boolean NOT NULL DEFAULT false,
        PRIMARY KEY (route, dedup_key)
      );
      CREATE INDEX open_alerts_opened_at ON open_alerts (opened_at);

      CREATE TABLE dead_letters (
        id bigint PRIMARY KEY,
        message_id text NOT NULL,
        route text NOT NULL,
        rule text NOT NULL,
        action text NOT NULL,
        dedup_key text,
        key_fp text NOT NULL,
        body text NOT NULL,
        received_at bigint NOT NULL,
        source_at bigint NOT NULL DEFAULT 0,
        attempts integer NOT NULL,
        last_error text,
        reason text NOT NULL,
        detail text NOT NULL,
        dead_at bigint NOT NULL
      );

      -- When requests to each key ended, the last window's worth: a replica taking a key over
      -- must not send a second window into the previous owner's.
      CREATE TABLE rate_log (
        key_fp text NOT NULL,
        ended_at bigint NOT NULL
      );
      CREATE INDEX rate_log_key_ended ON rate_log (key_fp, ended_at);

      -- The newest event time accepted per route and dedup key (a late SNS retry is not sent).
      CREATE TABLE alert_times (
        route text NOT NULL,
        dedup_key text NOT NULL,
        at bigint NOT NULL,
        clock text NOT NULL,
        seen_at bigint NOT NULL,
        PRIMARY KEY (route, dedup_key)
      );
      CREATE INDEX alert_times_seen_at ON alert_times (seen_at);

      -- Live replicas: a replica whose lease (the database's clock) has expired is dead. keys: the
      -- key fingerprints configured on it (replicas may briefly disagree during a config change).
      CREATE TABLE replicas (
        id text PRIMARY KEY,
        name text NOT NULL,
        keys text[] NOT NULL DEFAULT '{}',
        started_at timestamptz NOT NULL DEFAULT now(),
        heartbeat_at timestamptz NOT NULL,
        expires_at timestamptz NOT NULL
      );

      -- Which replica dispatches each routing key, and how deep its queue was at its last lease.
      CREATE TABLE key_owners (
        key_fp text PRIMARY KEY,
        owner text,
        since timestamptz,
        depth bigint NOT NULL DEFAULT 0
      );

      -- Serialises everything about one alert (stale check, sticky key, open-alert map) across
      -- replicas: a transaction-level advisory lock per route and dedup key, taken in one order
      -- (sorted) so that two batches wait for each other instead of deadlocking.
      CREATE FUNCTION lock_alerts(routes text[], dedup_keys text[]) RETURNS void
      LANGUAGE plpgsql AS $fn$
      DECLARE
        h bigint;
      BEGIN
        FOR h IN
          SELECT DISTINCT hashtextextended(r || chr(31) || d, 0)
          FROM unnest(routes, dedup_keys) AS t(r, d)
          WHERE d IS NOT NULL
          ORDER BY 1
        LOOP
          PERFORM pg_advisory_xact_lock(h);
        END LOOP;
      END
      $fn$;

      -- One group commit: every entry of the batch (SNS messages with their events) in one
      -- statement, so that a batch costs one round trip and one WAL flush. Mirrors the SQLite
      -- spool's insertEntry() and decideKey() (src/spool/spool.ts): the contract suite holds both
      -- to the same behaviour. Returns, per entry in input order, null for a duplicate MessageId
      -- or {ev: [[index, id, key_fp, orphaned]], dl: [[index, id]], st: [[index, newer_at]]}.
      CREATE FUNCTION commit_batch(batch jsonb, bodies text[]) RETURNS jsonb
      LANGUAGE plpgsql AS $fn$
      DECLARE
        entry record;
        ev record;
        known record;
        open_fp text;
        chosen text;
        orphan boolean;
        new_id bigint;
        r_ev jsonb;
        r_dl jsonb;
        r_st jsonb;
        results jsonb[] := array_fill(NULL::jsonb, ARRAY[jsonb_array_length(batch->'entries')]);
        firsts jsonb := '{}';
        k record;
      BEGIN
        PERFORM lock_alerts(array_agg(e->>'route'), array_agg(e->>'dedupKey'))
        FROM jsonb_array_elements(batch->'entries') AS en(x), jsonb_array_elements(en.x->'events') AS e;

        -- In MessageId order: two replicas committing the same two messages wait, never deadlock.
        FOR entry IN
          SELECT (ord - 1)::int AS i, x->>'messageId' AS message_id, (x->>'receivedAt')::bigint AS received_at,
                 x->'events' AS events
          FROM jsonb_array_elements(batch->'entries') WITH ORDINALITY AS t(x, ord)
          ORDER BY x->>'messageId', ord
        LOOP
          INSERT INTO messages (message_id, accepted_at) VALUES (entry.message_id, entry.received_at)
          ON CONFLICT DO NOTHING;
          IF NOT FOUND THEN
            CONTINUE;
          END IF;
          r_ev := '[]';
          r_dl := '[]';
          r_st := '[]';
          FOR ev IN
            SELECT (ord - 1)::int AS i, x->>'route' AS route, x->>'rule' AS rule, x->>'action' AS action,
                   x->>'dedupKey' AS dedup_key, (x->>'timeAt')::bigint AS time_at, x->>'timeFrom' AS time_from,
                   (x->>'body')::int AS body, x->'pool' AS pool, x->>'keyFp' AS key_fp,
                   coalesce((x->>'sourceAt')::bigint, 0) AS source_at,
                   x->>'dead' AS dead, x->>'detail' AS detail
            FROM jsonb_array_elements(entry.events) WITH ORDINALITY AS t(x, ord)
            ORDER BY ord
          LOOP
            IF ev.dedup_key IS NOT NULL AND ev.time_at IS NOT NULL THEN
              SELECT at, clock INTO known FROM alert_times WHERE route = ev.route AND dedup_key = ev.dedup_key;
              IF FOUND AND known.clock = ev.time_from AND known.at > ev.time_at THEN
                r_st := r_st || jsonb_build_array(jsonb_build_array(ev.i, known.at));
                CONTINUE;
              END IF;
              INSERT INTO alert_times AS a (route, dedup_key, at, clock, seen_at)
              VALUES (ev.route, ev.dedup_key, ev.time_at, ev.time_from, entry.received_at)
              ON CONFLICT (route, dedup_key) DO UPDATE SET
                at = CASE WHEN a.clock = excluded.clock THEN greatest(a.at, excluded.at) ELSE excluded.at END,
                clock = excluded.clock, seen_at = excluded.seen_at;
            END IF;
            IF ev.dead IS NOT NULL THEN
              INSERT INTO dead_letters (id, message_id, route, rule, action, dedup_key, key_fp, body, received_at,
                                        source_at, attempts, last_error, reason, detail, dead_at)
              VALUES (nextval('event_ids'), entry.message_id, ev.route, ev.rule, ev.action, ev.dedup_key, '',
                      bodies[ev.body], entry.received_at, ev.source_at, 0, NULL, ev.dead, ev.detail,
                      (batch->>'now')::bigint)
              RETURNING id INTO new_id;
              r_dl := r_dl || jsonb_build_array(jsonb_build_array(ev.i, new_id));
              CONTINUE;
            END IF;
            chosen := ev.key_fp;
            orphan := false;
            IF ev.dedup_key IS NOT NULL THEN
              SELECT key_fp INTO open_fp FROM open_alerts WHERE route = ev.route AND dedup_key = ev.dedup_key;
              IF FOUND THEN
                -- The open alert keeps its key while this replica's pool or any live replica's
                -- has it: replicas whose configurations briefly differ (a reload rolling out)
                -- never give one alert two keys.
                IF ev.pool ? open_fp OR EXISTS (
                  SELECT 1 FROM replicas WHERE expires_at > clock_timestamp() AND keys @> ARRAY[open_fp]
                ) THEN
                  chosen := open_fp;
                ELSIF ev.action <> 'trigger' THEN
                  orphan := true;
                END IF;
              END IF;
            END IF;
            INSERT INTO events (message_id, route, rule, action, dedup_key, key_fp, body, received_at, source_at)
            VALUES (entry.message_id, ev.route, ev.rule, ev.action, ev.dedup_key, chosen, bodies[ev.body],
                    entry.received_at, ev.source_at)
            RETURNING id INTO new_id;
            IF ev.action = 'trigger' AND ev.dedup_key IS NOT NULL THEN
              INSERT INTO open_alerts (route, dedup_key, key_fp, trigger_id, opened_at)
              VALUES (ev.route, ev.dedup_key, chosen, new_id, (batch->>'now')::bigint)
              ON CONFLICT (route, dedup_key) DO UPDATE SET
                key_fp = excluded.key_fp, trigger_id = excluded.trigger_id, opened_at = excluded.opened_at;
            END IF;
            r_ev := r_ev || jsonb_build_array(jsonb_build_array(ev.i, new_id, chosen, orphan));
            IF NOT firsts ? chosen THEN
              firsts := firsts || jsonb_build_object(chosen, new_id);
            END IF;
          END LOOP;
          results[entry.i + 1] := jsonb_build_object('ev', r_ev, 'dl', r_dl, 'st', r_st);
        END LOOP;

        -- Each key's owner hears of its new events at commit ("this key, from this id on").
        FOR k IN SELECT key, value FROM jsonb_each_text(firsts) LOOP
          PERFORM pg_notify(batch->>'channel', (batch->>'replica') || ' ' || k.key || ' ' || k.value);
        END LOOP;
        RETURN to_jsonb(results);
      END
      $fn$;
    `,
  },
];

/** The database was written by a newer pd-relay: refuse rather than misuse it. */
export class PgSchemaVersionError extends Error {
  override readonly name = 'PgSchemaVersionError';
}

/**
 * Brings `schema` to PG_SCHEMA_VERSION on `client` (its search_path is that schema). Replicas
 * that start at once take turns on an advisory lock: the first migrates, the others wait, then
 * find nothing to do. Returns the versions before and after.
 */
export async function migrate(client: PoolClient, schema: string): Promise<{ from: number; to: number }> {
  await client.query('BEGIN');
  try {
    await client.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', [
      `pd-relay migrate ${schema}`,
    ]);
    // Only when it is missing: CREATE SCHEMA takes CREATE on the database even with IF NOT EXISTS
    // and the schema there (PostgreSQL checks the privilege first), and a user that a DBA gave a
    // schema of its own, and nothing on the database, must be able to start.
    const exists = await client.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [schema]);
    // The name is checked (POSTGRES_SCHEMA_PATTERN): safe to write unquoted.
    if (!exists.rowCount) await client.query(`CREATE SCHEMA ${schema}`);
    await client.query('CREATE TABLE IF NOT EXISTS schema_version (version integer NOT NULL)');
    const row = (await client.query<{ version: number }>('SELECT version FROM schema_version')).rows[0];
    const from = row?.version ?? 0;
    if (from > PG_SCHEMA_VERSION) throw new PgSchemaVersionError(schemaVersionProblem(schema, from) ?? '');
    for (const m of MIGRATIONS) {
      if (m.version <= from) continue;
      await client.query(m.sql);
    }
    if (from === 0)
      await client.query('INSERT INTO schema_version (version) VALUES ($1)', [PG_SCHEMA_VERSION]);
    else if (from < PG_SCHEMA_VERSION)
      await client.query('UPDATE schema_version SET version = $1', [PG_SCHEMA_VERSION]);
    await client.query('COMMIT');
    return { from, to: PG_SCHEMA_VERSION };
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  }
}

/**
 * What stands between a spool schema at version `found` (0: none yet) and this pd-relay, in a
 * sentence; null when it is PG_SCHEMA_VERSION. One wording for `serve`, the `spool` commands and
 * `check`.
 */
export function schemaVersionProblem(schema: string, found: number): string | null {
  if (found === PG_SCHEMA_VERSION) return null;
  if (found === 0)
    return `No pd-relay spool in schema "${schema}" yet: the relay has not run with this database`;
  if (found > PG_SCHEMA_VERSION)
    return `Expected spool schema version ${PG_SCHEMA_VERSION} or older in schema "${schema}", got ${found}: it was written by a newer pd-relay; run that version, or give this one another spool.postgres.schema`;
  return `Expected spool schema version ${PG_SCHEMA_VERSION} in schema "${schema}", got ${found}: it was written by an older pd-relay; run \`pd-relay serve\` of this version once to migrate it`;
}

/** The schema version found, without changing anything (0: none yet). For the CLI. */
export async function schemaVersionOf(client: PoolClient): Promise<number> {
  const exists = await client.query<{ t: string | null }>("SELECT to_regclass('schema_version')::text AS t");
  if (!exists.rows[0]?.t) return 0;
  return (
    (await client.query<{ version: number }>('SELECT version FROM schema_version')).rows[0]?.version ?? 0
  );
}
