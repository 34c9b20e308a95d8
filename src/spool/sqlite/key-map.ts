import type { Database, Statement } from 'better-sqlite3';
import type { OpenAlert } from '../spool.js';
import { PRUNE_SLICE, pruneInSlices } from './prune.js';

/**
 * The dedup-key → routing-key map of open alerts (see decideKey): a table in the spool database, so
 * that remembering a trigger's key happens in the same transaction as queueing the trigger.
 */
export class SqliteOpenAlertMap {
  readonly #get: Statement<[string, string], { key_fp: string; trigger_id: number; sent: number }>;
  readonly #remember: Statement<[string, string, string, number, number]>;
  readonly #forget: Statement<[string, string, number]>;
  readonly #reopen: Statement<[string, string, number]>;
  readonly #sent: Statement<[string, string]>;
  readonly #count: Statement<[], { n: number }>;
  readonly #prune: Statement<[number]>;

  constructor(
    db: Database,
    private readonly now: () => number,
  ) {
    this.#get = db.prepare(
      'SELECT key_fp, trigger_id, sent FROM open_alerts WHERE route = ? AND dedup_key = ?',
    );
    this.#remember = db.prepare(
      `INSERT INTO open_alerts (route, dedup_key, key_fp, trigger_id, opened_at, sent) VALUES (?, ?, ?, ?, ?, 0)
       ON CONFLICT (route, dedup_key) DO UPDATE SET
         key_fp = excluded.key_fp, trigger_id = excluded.trigger_id, opened_at = excluded.opened_at`,
    );
    this.#forget = db.prepare('DELETE FROM open_alerts WHERE route = ? AND dedup_key = ? AND trigger_id < ?');
    this.#reopen = db.prepare(
      'UPDATE open_alerts SET sent = 0 WHERE route = ? AND dedup_key = ? AND trigger_id > ?',
    );
    this.#sent = db.prepare('UPDATE open_alerts SET sent = 1 WHERE route = ? AND dedup_key = ?');
    this.#count = db.prepare('SELECT count(*) AS n FROM open_alerts');
    this.#prune = db.prepare(
      `DELETE FROM open_alerts WHERE (route, dedup_key) IN
         (SELECT route, dedup_key FROM open_alerts WHERE opened_at < ? LIMIT ${PRUNE_SLICE})`,
    );
  }

  get(route: string, dedupKey: string): OpenAlert | undefined {
    const row = this.#get.get(route, dedupKey);
    return row ? { keyFp: row.key_fp, triggerId: row.trigger_id, sent: row.sent === 1 } : undefined;
  }

  remember(route: string, dedupKey: string, keyFp: string, triggerId: number): void {
    this.#remember.run(route, dedupKey, keyFp, triggerId, this.now());
  }

  /**
   * A resolve (spool id `resolveId`) was delivered: forget the alert, unless a later trigger
   * reopened it in the meantime (then that trigger is not at PagerDuty yet).
   */
  forget(route: string, dedupKey: string, resolveId: number): void {
    this.#forget.run(route, dedupKey, resolveId);
    this.#reopen.run(route, dedupKey, resolveId);
  }

  /** A trigger of the alert was delivered: it is open at PagerDuty on its key. */
  markSent(route: string, dedupKey: string): void {
    this.#sent.run(route, dedupKey);
  }

  count(): number {
    return this.#count.get()?.n ?? 0;
  }

  /**
   * Forgets alerts whose last trigger was queued before `before` (epoch ms), in slices; returns
   * how many. A resolve that comes later still goes through the rendezvous choice, which is the
   * trigger's key unless the pool changed since.
   */
  prune(before: number): number {
    return pruneInSlices(() => this.#prune.run(before).changes);
  }
}
