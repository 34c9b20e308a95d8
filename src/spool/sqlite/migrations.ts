import type { Database } from 'better-sqlite3';

/** The spool schema this version of pd-relay writes. */
export const SPOOL_SCHEMA_VERSION = 4;

interface Migration {
  version: number;
  description: string;
  sql: string;
}

/**
 * Every schema change, in order; applied on open inside one immediate transaction, recorded in
 * PRAGMA user_version. Never edit a released migration: add the next one.
 */
const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    description: 'message-id ledger, events, open-alert key map, dead letters',
    sql: `
      CREATE TABLE meta (
        key TEXT PRIMARY KEY,
        value
      ) WITHOUT ROWID;

      -- SNS MessageIds already accepted (SNS redelivers with the same id), pruned by age.
      CREATE TABLE messages (
        message_id TEXT PRIMARY KEY,
        accepted_at INTEGER NOT NULL
      ) WITHOUT ROWID;
      CREATE INDEX messages_accepted_at ON messages (accepted_at);

      -- Undelivered events. AUTOINCREMENT: ids are the delivery order and are never reused, not
      -- even after the newest row is deleted, so a dead letter keeps a unique id.
      CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        message_id TEXT NOT NULL,
        route TEXT NOT NULL,
        rule TEXT NOT NULL,
        action TEXT NOT NULL,
        dedup_key TEXT,
        key_fp TEXT NOT NULL,
        body TEXT NOT NULL,
        received_at INTEGER NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at INTEGER NOT NULL DEFAULT 0,
        last_error TEXT,
        -- 0 while queued by another process (the CLI) and not yet picked up by the relay.
        adopted INTEGER NOT NULL DEFAULT 1
      );
      CREATE INDEX events_unadopted ON events (id) WHERE adopted = 0;

      -- Open alerts: which key a dedup key's trigger went through (fingerprint, never the key).
      CREATE TABLE open_alerts (
        route TEXT NOT NULL,
        dedup_key TEXT NOT NULL,
        key_fp TEXT NOT NULL,
        trigger_id INTEGER NOT NULL,
        opened_at INTEGER NOT NULL,
        PRIMARY KEY (route, dedup_key)
      ) WITHOUT ROWID;

      CREATE TABLE dead_letters (
        id INTEGER PRIMARY KEY,
        message_id TEXT NOT NULL,
        route TEXT NOT NULL,
        rule TEXT NOT NULL,
        action TEXT NOT NULL,
        dedup_key TEXT,
        key_fp TEXT NOT NULL,
        body TEXT NOT NULL,
        received_at INTEGER NOT NULL,
        attempts INTEGER NOT NULL,
        last_error TEXT,
        reason TEXT NOT NULL,
        detail TEXT NOT NULL,
        dead_at INTEGER NOT NULL
      );
    `,
  },
  {
    version: 2,
    description: 'request log per key, so that the rate window outlives a restart',
    sql: `
      -- When requests to each key ended (epoch ms), the last window's worth: a relay that restarts
      -- right after a full window must not send a second one into it.
      CREATE TABLE rate_log (
        key_fp TEXT NOT NULL,
        ended_at INTEGER NOT NULL
      );
      CREATE INDEX rate_log_key_ended ON rate_log (key_fp, ended_at);
    `,
  },
  {
    version: 3,
    description:
      'the newest event time per dedup key, so that a late SNS retry is not sent; open alerts pruned by age',
    sql: `
      -- The newest OutboundEvent.time accepted per route and dedup key, open or resolved (epoch ms,
      -- and its clock: 'payload' or 'sns'): an event older than it on the same clock is not sent.
      -- Pruned with the MessageId ledger (seen_at).
      CREATE TABLE alert_times (
        route TEXT NOT NULL,
        dedup_key TEXT NOT NULL,
        at INTEGER NOT NULL,
        clock TEXT NOT NULL,
        seen_at INTEGER NOT NULL,
        PRIMARY KEY (route, dedup_key)
      ) WITHOUT ROWID;
      CREATE INDEX alert_times_seen_at ON alert_times (seen_at);

      -- Open alerts are forgotten spool.openAlertRetentionDays after their last trigger (opened_at).
      CREATE INDEX open_alerts_opened_at ON open_alerts (opened_at);
    `,
  },
  {
    version: 4,
    description:
      'whether an open alert reached PagerDuty, so that its queued events may move when keys are added; events keep their source time',
    sql: `
      -- 1 once a trigger of the alert was delivered (it is open at PagerDuty on key_fp), 0 while
      -- its trigger only waits in the queue: a reload that adds keys may move those. Alerts from
      -- before this version count as delivered: they never move.
      ALTER TABLE open_alerts ADD COLUMN sent INTEGER NOT NULL DEFAULT 1;

      -- When the state an event reports began at its source (OutboundEvent.time, epoch ms; 0:
      -- unknown), so that time to page can be measured from it.
      ALTER TABLE events ADD COLUMN source_at INTEGER NOT NULL DEFAULT 0;
      ALTER TABLE dead_letters ADD COLUMN source_at INTEGER NOT NULL DEFAULT 0;
    `,
  },
];

/** The spool was written by a newer pd-relay: refuse rather than corrupt it. */
export class SpoolVersionError extends Error {
  override readonly name = 'SpoolVersionError';
}

/** Brings the schema to SPOOL_SCHEMA_VERSION; returns the versions before and after. */
export function migrate(db: Database): { from: number; to: number } {
  const run = db.transaction(() => {
    const from = db.pragma('user_version', { simple: true }) as number;
    if (from > SPOOL_SCHEMA_VERSION) {
      throw new SpoolVersionError(
        `Expected spool schema version ${SPOOL_SCHEMA_VERSION} or older, got ${from}: it was written by a newer pd-relay`,
      );
    }
    for (const m of MIGRATIONS) {
      if (m.version <= from) continue;
      db.exec(m.sql);
      db.pragma(`user_version = ${m.version}`);
    }
    return { from, to: SPOOL_SCHEMA_VERSION };
  });
  // IMMEDIATE: two processes opening an old spool at once must not both migrate it.
  return run.immediate();
}

/** The schema version of an open database (read-only use). */
export function schemaVersion(db: Database): number {
  return db.pragma('user_version', { simple: true }) as number;
}
