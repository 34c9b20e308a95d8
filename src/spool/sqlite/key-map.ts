import type { Database, Statement } from 'better-sqlite3';
import type { OpenAlert } from '../spool.js';
import { PRUNE_SLICE, pruneInSlices } from './prune.js';

/**
 * The dedup-key → routing-key map of open alerts (see decideKey): a table in the spool database, so
 * that remembering a trigger's key happens in the same transaction as queueing the trigger.
 */
export class SqliteOpenAlertMap {
  readonly #get: Statement<[string, string], { key_fp: string; trigger_id: number }>;
  readonly #remember: Statement<[string, string, string, number, number]>;
  readonly #forget: Statement<[string, string, number]>;
  readonly #count: Statement<[], { n: number }>;
  readonly #prune: Statement<[number]>;

  constructor(
    db: Database,
    private readonly now: () => number,
  ) {
    this.#get = db.prepare('SELECT key_fp, trigger_id FROM open_alerts WHERE route = ? AND dedup_key = ?');
    this.#remember = db.prepare(
      `INSERT INTO open_alerts (route, dedup_key, key_fp, trigger_id, opened_at) VALUES (?, ?, ?, ?, ?)
       ON CONFLICT (route, dedup_key) DO UPDATE SET
         key_fp = excluded.key_fp, trigger_id = excluded.trigger_id, opened_at = excluded.opened_at`,
    );
    this.#forget = db.prepare('DELETE FROM open_alerts WHERE route = ? AND dedup_key = ? AND trigger_id < ?');
    this.#count = db.prepare('SELECT count(*) AS n FROM open_alerts');
    this.#prune = db.prepare(
      `DELETE FROM open_alerts WHERE (route, dedup_key) IN
         (SELECT route, dedup_key FROM open_alerts WHERE opened_at < ? LIMIT ${PRUNE_SLICE})`,
    );
  }

  get(route: string, dedupKey: string): OpenAlert | undefined {
    const row = this.#get.get(route, dedupKey);
    return row ? { keyFp: row.key_fp, triggerId: row.trigger_id } : undefined;
  }

  remember(route: string, dedupKey: string, keyFp: string, triggerId: number): void {
    this.#remember.run(route, dedupKey, keyFp, triggerId, this.now());
  }

  forget(route: string, dedupKey: string, resolveId: number): void {
    this.#forget.run(route, dedupKey, resolveId);
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
