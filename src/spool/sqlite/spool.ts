import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import BetterSqlite3, { type Database, type Statement } from 'better-sqlite3';
import { serialisedBody } from '../../pagerduty/limits.js';
import type { EventAction, EventBody } from '../../pagerduty/types.js';
import type { OutboundEvent } from '../../rules/types.js';
import { LocalOwnership } from '../local-ownership.js';
import {
  type Assignment,
  type CommitResult,
  type DeadLetter,
  type DeadLetterReason,
  decideKey,
  followMoves,
  type GaugeCounts,
  type KeyAssigner,
  type OpenAlert,
  type PendingEvent,
  type PendingGroup,
  type Spool,
  type SpoolCounts,
  type SpoolObserver,
  type StoredEvent,
} from '../spool.js';
import { type SpoolEntry, SpoolUnavailableError } from '../types.js';
import { SqliteOpenAlertMap } from './key-map.js';
import { SpoolLock, SpoolLockedError } from './lock.js';
import { migrate, SPOOL_SCHEMA_VERSION, SpoolVersionError, schemaVersion } from './migrations.js';
import { PRUNE_SLICE, pruneInSlices } from './prune.js';
import { WalCheckpointer } from './wal-checkpointer.js';
import { WalFileSync, type WalSync } from './wal-sync.js';

/** The database file inside `spool.dir`. */
export const SPOOL_FILE = 'spool.db';

export interface SqliteSpoolOptions {
  dir: string;
  /** Decides each event's key inside the commit transaction. Required unless read-only. */
  assigner?: KeyAssigner;
  now?: () => number;
  observer?: SpoolObserver;
  /** Cap on the database size (0: none); beyond it commits fail and SNS gets 503. */
  maxSizeMiB?: number;
  /**
   * How long a write waits for another process's lock (the CLI) before giving up. Short: the wait
   * blocks the event loop, and a failed commit is only a 503 that SNS retries.
   */
  busyTimeoutMs?: number;
  /** For `spool stats` / `dead-letters`: no migrations, no writes. */
  readonly?: boolean;
  /** How often to retry writing while the spool is unavailable (readiness recovers by itself). */
  probeIntervalMs?: number;
  /** Syncs the WAL before commits are acknowledged; by default fdatasync on `spool.db-wal`. */
  walSync?: WalSync;
  /**
   * Checkpoint the WAL on a thread of its own (wal-checkpointer.ts) instead of inside the commit
   * that crosses SQLite's threshold, on the event loop. The relay's spool does; the CLI's need not.
   */
  backgroundCheckpoint?: boolean;
  /** Hold `<dir>/spool.lock` while open (lock.ts): the relay does, the CLI does not. */
  lock?: boolean;
  /**
   * How often to look for events another process queued (`pd-relay spool retry-dead-letters`
   * while the relay runs); they reach onQueued. 0: never (the CLI).
   */
  adoptIntervalMs?: number;
}

/**
 * SQLite's own checkpoint threshold, in pages, when a background thread checkpoints: a backstop
 * (≈ 40 MiB of WAL with 4 KiB pages) in case that thread falls behind.
 */
const BACKSTOP_CHECKPOINT_PAGES = 10_000;
/** SQLite's default `wal_autocheckpoint`. */
const DEFAULT_CHECKPOINT_PAGES = 1000;

interface EventRow {
  id: number;
  message_id: string;
  route: string;
  rule: string;
  action: string;
  dedup_key: string | null;
  key_fp: string;
  body: string;
  received_at: number;
  source_at: number;
  attempts: number;
  next_attempt_at: number;
  last_error: string | null;
}

interface DeadRow extends EventRow {
  reason: string;
  detail: string;
  dead_at: number;
}

interface PendingCommit {
  entry: SpoolEntry;
  resolve: (r: CommitResult) => void;
  reject: (e: Error) => void;
}

/** A queued write other than a commit. */
type Op = () => void;

const PENDING_COLUMNS =
  'id, route, action, dedup_key, key_fp, received_at, source_at, attempts, next_attempt_at';

/**
 * The embedded spool: better-sqlite3 in WAL mode, and no commit acknowledged before the WAL is
 * synced, because an acknowledged page must survive a power cut, not only a crash (in WAL mode,
 * SQLite's synchronous=NORMAL alone may lose the last transactions on power loss:
 * https://www.sqlite.org/pragma.html#pragma_synchronous). Group commit makes that affordable:
 * every commit and queued write of one event-loop turn shares one transaction, and every
 * transaction written while a sync runs shares the next sync.
 *
 * The sync is synchronous=FULL's, moved off the event loop: SQLite runs with NORMAL (commits
 * write the WAL, without fsync) and the spool fdatasyncs the WAL on libuv's thread pool, then
 * answers the transaction's commits and hands its events to the dispatcher. Meanwhile the loop
 * goes on verifying and evaluating the next requests (bench/README.md, ingest).
 *
 * With `backgroundCheckpoint`, a thread of its own copies the WAL into the database file. Under a
 * sustained storm its checkpoints rarely catch up with the very last commit, so the WAL is not
 * rewound from its start until SQLite's own checkpoint at BACKSTOP_CHECKPOINT_PAGES does it
 * (cheaply: the pages are copied by then): the `-wal` file then stays up to ~40 MiB.
 */
export class SqliteSpool implements Spool {
  readonly location: string;
  readonly shared = false;
  readonly schemaVersion = SPOOL_SCHEMA_VERSION;
  readonly ownership: LocalOwnership;
  readonly #db: Database;
  readonly #now: () => number;
  readonly #assigner: KeyAssigner | undefined;
  readonly #observer: SpoolObserver | undefined;
  readonly #alerts: SqliteOpenAlertMap;
  readonly #probeIntervalMs: number;
  readonly #readonly: boolean;
  #batch: PendingCommit[] = [];
  #ops: Op[] = [];
  #scheduled = false;
  #closed = false;
  #problem: string | null = null;
  #probe: NodeJS.Timeout | undefined;
  #listener: (events: PendingEvent[]) => void = () => {};
  #dataVersion = 0;
  #adoptTimer: NodeJS.Timeout | undefined;
  /** count(*) of the ledger, kept up to date: a scrape must not scan millions of MessageIds. */
  #messageIds: number | undefined;
  readonly #s: ReturnType<typeof prepare>;
  /** One entry in its own savepoint; built once (better-sqlite3 wraps a new function per transaction() call). */
  readonly #entryTx: (entry: SpoolEntry) => CommitResult;
  readonly #wal: WalSync;
  /** Transactions written since the running sync started: they wait for the next one. */
  #unsynced: Array<(err: Error | null) => void> = [];
  /** Transactions the running sync covers; undefined when no sync runs. */
  #syncing: Array<(err: Error | null) => void> | undefined;
  #probing = false;
  readonly #checkpointer: WalCheckpointer | undefined;
  readonly #lock: SpoolLock | undefined;

  /**
   * Opens (creating if needed, migrating if old) `<dir>/spool.db`. Throws SpoolOpenError when the
   * directory or file cannot be used.
   */
  constructor(opts: SqliteSpoolOptions) {
    this.#now = opts.now ?? Date.now;
    this.#assigner = opts.assigner;
    this.#observer = opts.observer;
    this.#probeIntervalMs = opts.probeIntervalMs ?? 1000;
    this.#readonly = opts.readonly ?? false;
    this.location = join(opts.dir, SPOOL_FILE);
    this.ownership = new LocalOwnership(() => this.#s.keyFps.all().map((r) => r.key_fp));
    try {
      if (!this.#readonly) mkdirSync(opts.dir, { recursive: true });
      this.#lock = opts.lock && !this.#readonly ? new SpoolLock(opts.dir) : undefined;
    } catch (err) {
      if (err instanceof SpoolLockedError) throw new SpoolOpenError(err.message, { locked: true });
      throw new SpoolOpenError(`Cannot open the spool ${this.location}: ${describeError(err)}`);
    }
    try {
      this.#db = new BetterSqlite3(this.location, {
        readonly: this.#readonly,
        fileMustExist: this.#readonly,
        timeout: opts.busyTimeoutMs ?? 250,
      });
    } catch (err) {
      this.#lock?.release();
      throw new SpoolOpenError(`Cannot open the spool ${this.location}: ${describeError(err)}`);
    }
    try {
      if (this.#readonly) {
        const v = schemaVersion(this.#db);
        if (v !== SPOOL_SCHEMA_VERSION)
          throw new SpoolVersionError(
            `Expected spool schema version ${SPOOL_SCHEMA_VERSION}, got ${v}: run \`pd-relay serve\` (or a matching pd-relay) once to migrate it`,
          );
      } else {
        this.#db.pragma('journal_mode = WAL');
        // Not FULL: every write that acknowledges anything syncs the WAL itself (#afterSync, syncNow).
        this.#db.pragma('synchronous = NORMAL');
        migrate(this.#db);
        if (opts.maxSizeMiB) {
          const pageSize = this.#db.pragma('page_size', { simple: true }) as number;
          this.#db.pragma(
            `max_page_count = ${Math.max(16, Math.floor((opts.maxSizeMiB * 1024 * 1024) / pageSize))}`,
          );
        }
      }
      this.#alerts = new SqliteOpenAlertMap(this.#db, this.#now);
      this.#s = prepare(this.#db, this.#readonly);
      this.#entryTx = this.#db.transaction((entry: SpoolEntry) => this.#insertEntry(entry));
      this.#wal = opts.walSync ?? new WalFileSync(`${this.location}-wal`);
      if (opts.backgroundCheckpoint && !this.#readonly) {
        this.#checkpointer = new WalCheckpointer(this.location, {
          // Without the thread, SQLite checkpoints on the loop again, as often as by default.
          onError: () => {
            if (!this.#closed) this.#db.pragma(`wal_autocheckpoint = ${DEFAULT_CHECKPOINT_PAGES}`);
          },
        });
        this.#db.pragma(`wal_autocheckpoint = ${BACKSTOP_CHECKPOINT_PAGES}`);
      }
      this.#dataVersion = this.#db.pragma('data_version', { simple: true }) as number;
      if (opts.adoptIntervalMs && !this.#readonly) {
        this.#adoptTimer = setInterval(() => this.#adopt(), opts.adoptIntervalMs);
        this.#adoptTimer.unref();
      }
    } catch (err) {
      this.#checkpointer?.close();
      this.#db.close();
      this.#lock?.release();
      if (err instanceof SpoolVersionError) throw new SpoolOpenError(`${this.location}: ${err.message}`);
      throw new SpoolOpenError(`Cannot use the spool ${this.location}: ${describeError(err)}`);
    }
  }

  commit(entry: SpoolEntry): Promise<CommitResult> {
    if (this.#closed)
      return Promise.reject(new SpoolUnavailableError('The spool is closed (shutting down).'));
    return new Promise((resolve, reject) => {
      this.#batch.push({ entry, resolve, reject });
      this.#schedule();
    });
  }

  async hasMessage(messageId: string): Promise<boolean> {
    return this.#s.hasMessage.get(messageId) !== undefined;
  }

  onQueued(listener: (events: PendingEvent[]) => void): void {
    this.#listener = listener;
  }

  async pending(keyFps?: readonly string[], fromId = 0): Promise<PendingEvent[]> {
    const wanted = keyFps ? new Set(keyFps) : undefined;
    if (!this.#readonly) {
      // What another process queued (retried dead letters) and this read hands over is not for
      // the adoption poll any more: it would hand it over a second time.
      const unadopted = this.#s.unadopted
        .all()
        .filter((r) => r.id >= fromId && (!wanted || wanted.has(r.key_fp)))
        .map((r) => r.id);
      if (unadopted.length)
        this.#db.transaction(() => {
          for (const id of unadopted) this.#s.adoptOne.run(id);
        })();
    }
    // Streamed, with route, action and key strings shared: a backlog of 100,000 events must not
    // cost 100,000 copies of "default" and "trigger" (see bench/spool.bench.ts).
    const intern = new Map<string, string>();
    const shared = (s: string) => {
      const known = intern.get(s);
      if (known !== undefined) return known;
      intern.set(s, s);
      return s;
    };
    const out: PendingEvent[] = [];
    for (const r of this.#s.pending.iterate(fromId)) {
      if (wanted && !wanted.has(r.key_fp)) continue;
      out.push({
        id: r.id,
        route: shared(r.route),
        action: shared(r.action) as EventAction,
        dedupKey: r.dedup_key,
        keyFp: shared(r.key_fp),
        receivedAt: r.received_at,
        sourceAt: r.source_at,
        attempts: r.attempts,
        nextAttemptAt: r.next_attempt_at,
      });
    }
    return out;
  }

  /**
   * Events another process queued since the last look (retry-dead-letters while the relay runs),
   * handed to the onQueued listener.
   */
  #adopt(): void {
    if (this.#closed) return;
    let events: PendingEvent[];
    try {
      // data_version changes only when another connection committed: the common case costs one pragma.
      const version = this.#db.pragma('data_version', { simple: true }) as number;
      if (version === this.#dataVersion) return;
      this.#dataVersion = version;
      const rows = this.#s.unadopted.all();
      if (!rows.length) return;
      const mark = this.#db.transaction((ids: number[]) => {
        for (const id of ids) this.#s.adoptOne.run(id);
      });
      mark(rows.map((r) => r.id));
      events = rows.map(toPending);
    } catch (err) {
      // The next look tries again; a failing spool shows through commits and the probe.
      this.#observer?.listenerFailed(err);
      return;
    }
    this.#observer?.adopted?.(events.length);
    this.#emit(events);
  }

  #emit(events: PendingEvent[]): void {
    // Whatever the listener does, the caller goes on (every commit gets its answer).
    try {
      this.#listener(events);
    } catch (err) {
      this.#observer?.listenerFailed(err);
    }
  }

  async load(id: number): Promise<StoredEvent | undefined> {
    const row = this.#s.load.get(id);
    return row ? toStored(row) : undefined;
  }

  delivered(event: PendingEvent): void {
    const { id, route, dedupKey, action } = event;
    this.#queue(() => {
      this.#s.deleteEvent.run(id);
      if (action === 'resolve' && dedupKey !== null) this.#alerts.forget(route, dedupKey, id);
      if (action === 'trigger' && dedupKey !== null) this.#alerts.markSent(route, dedupKey);
    });
  }

  reschedule(event: PendingEvent, lastError: string): void {
    const { id, attempts, nextAttemptAt } = event;
    this.#queue(() => this.#s.reschedule.run(attempts, nextAttemptAt, lastError, id));
  }

  deadLetter(event: PendingEvent, reason: DeadLetterReason, detail: string): void {
    const { id, attempts } = event;
    this.#queue(() => this.#moveToDeadLetters(id, attempts, reason, detail));
  }

  async reroute(
    events: readonly PendingEvent[],
    decide: (event: PendingEvent, open: OpenAlert | undefined) => Assignment,
  ): Promise<Array<{ event: PendingEvent; assignment: Assignment }>> {
    this.#writable();
    const run = this.#db.transaction(() => {
      const out: Array<{ event: PendingEvent; assignment: Assignment }> = [];
      for (const event of events) {
        // Only an event still pending on the key the caller saw it on.
        if (this.#s.keyOf.get(event.id)?.key_fp !== event.keyFp) continue;
        const open = event.dedupKey === null ? undefined : this.#alerts.get(event.route, event.dedupKey);
        const assignment = decide(event, open);
        if ('deadLetter' in assignment) {
          this.#moveToDeadLetters(event.id, event.attempts, assignment.deadLetter, assignment.detail);
        } else {
          this.#s.reassign.run(assignment.keyFp, event.id);
          if (event.action === 'trigger' && event.dedupKey !== null)
            this.#alerts.remember(event.route, event.dedupKey, assignment.keyFp, event.id);
        }
        out.push({ event, assignment });
      }
      // The later events of a moved trigger's alert follow it, wherever they were in the queue
      // (committed meanwhile, not yet in the caller's view).
      const moves = followMoves(out);
      if (moves.size) {
        const inBatch = new Set(events.map((e) => e.id));
        const from = Math.min(...[...moves.values()].map((m) => m.after));
        for (const r of this.#s.pending.all(from)) {
          const m = r.dedup_key === null ? undefined : moves.get(`${r.route}\n${r.dedup_key}`);
          if (!m || inBatch.has(r.id) || r.id <= m.after || r.key_fp !== m.from) continue;
          this.#s.reassign.run(m.to, r.id);
          out.push({ event: toPending(r), assignment: { keyFp: m.to } });
        }
      }
      return out;
    });
    // After the writes queued before it, as they were decided first.
    this.#flush();
    return run.immediate();
  }

  flush(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    this.#flush();
    return new Promise((resolve) => this.#afterSync(() => resolve()));
  }

  recordSend(keyFp: string, endedAt: number, forgetBefore: number): void {
    this.#queue(() => {
      this.#s.forgetSends.run(keyFp, forgetBefore);
      this.#s.recordSend.run(keyFp, endedAt);
    });
  }

  async recentSends(since: number, keyFps?: readonly string[]): Promise<Map<string, number[]>> {
    const wanted = keyFps ? new Set(keyFps) : undefined;
    const out = new Map<string, number[]>();
    for (const r of this.#s.recentSends.iterate(since)) {
      if (wanted && !wanted.has(r.key_fp)) continue;
      const list = out.get(r.key_fp) ?? [];
      list.push(r.ended_at);
      out.set(r.key_fp, list);
    }
    return out;
  }

  async deadLetters(opts: { ids?: number[]; limit?: number } = {}): Promise<DeadLetter[]> {
    const rows = opts.ids
      ? opts.ids.map((id) => this.#s.deadLetter.get(id)).filter((r): r is DeadRow => r !== undefined)
      : this.#s.deadLetters.all(opts.limit ?? -1);
    return rows.map((r) => ({
      ...toStored(r),
      reason: r.reason as DeadLetterReason,
      detail: r.detail,
      deadAt: r.dead_at,
    }));
  }

  async retryDeadLetters(ids?: number[]): Promise<number> {
    this.#writable();
    const run = this.#db.transaction(() => {
      const rows = ids
        ? ids.map((id) => this.#s.deadLetter.get(id)).filter((r): r is DeadRow => r !== undefined)
        : this.#s.deadLetters.all(-1);
      const now = this.#now();
      for (const r of rows) {
        // A retried dead letter starts a new life: full maxAge, no backoff, picked up by the relay.
        const info = this.#s.insertEvent.run(
          r.message_id,
          r.route,
          r.rule,
          r.action,
          r.dedup_key,
          r.key_fp,
          r.body,
          now,
          0,
          r.source_at,
        );
        const id = Number(info.lastInsertRowid);
        if (r.action === 'trigger' && r.dedup_key !== null)
          this.#alerts.remember(r.route, r.dedup_key, r.key_fp, id);
        this.#s.deleteDeadLetter.run(r.id);
      }
      return rows.length;
    });
    const n = run.immediate();
    // The CLI reports success once the retried events are durable.
    const err = n ? this.#wal.syncNow() : null;
    if (err) throw new SpoolUnavailableError(`Spool not durable: ${describeError(err)}`);
    return n;
  }

  async discardDeadLetters(ids?: number[]): Promise<number> {
    this.#writable();
    const run = this.#db.transaction(() => {
      if (!ids) return this.#s.deleteAllDeadLetters.run().changes;
      let n = 0;
      for (const id of ids) n += this.#s.deleteDeadLetter.run(id).changes;
      return n;
    });
    return run.immediate();
  }

  async pendingGroups(): Promise<PendingGroup[]> {
    return this.#s.groups.all().map((g) => ({
      route: g.route,
      keyFp: g.key_fp,
      count: g.n,
      oldestReceivedAt: g.oldest,
      nextAttemptAt: g.next_attempt,
      headAttempts: g.head_attempts,
    }));
  }

  async gaugeCounts(): Promise<GaugeCounts> {
    return {
      deadLetters: this.#s.countDeadLetters.get()?.n ?? 0,
      messageIds: this.#messageCount(),
      openAlerts: this.#alerts.count(),
    };
  }

  async counts(): Promise<SpoolCounts> {
    const byReason: SpoolCounts['deadLettersByReason'] = {};
    let deadLetters = 0;
    for (const r of this.#s.deadByReason.all()) {
      byReason[r.reason as DeadLetterReason] = r.n;
      deadLetters += r.n;
    }
    return {
      pending: this.#s.countEvents.get()?.n ?? 0,
      deadLetters,
      deadLettersByReason: byReason,
      messageIds: this.#messageCount(),
      openAlerts: this.#alerts.count(),
    };
  }

  async pruneMessageIds(before: number): Promise<number> {
    this.#writable();
    pruneInSlices(() => this.#s.pruneAlertTimes.run(before).changes);
    const total = pruneInSlices(() => this.#s.pruneMessages.run(before).changes);
    if (this.#messageIds !== undefined) this.#messageIds -= total;
    return total;
  }

  async pruneOpenAlerts(before: number): Promise<number> {
    this.#writable();
    return this.#alerts.prune(before);
  }

  async openAlert(route: string, dedupKey: string): Promise<OpenAlert | undefined> {
    return this.#alerts.get(route, dedupKey);
  }

  #messageCount(): number {
    // Read-only users (the CLI) see other processes' writes: always count there.
    if (this.#readonly) return this.#s.countMessages.get()?.n ?? 0;
    this.#messageIds ??= this.#s.countMessages.get()?.n ?? 0;
    return this.#messageIds;
  }

  problem(): string | null {
    return this.#problem;
  }

  async close(): Promise<void> {
    this.closeNow();
  }

  /** close(), synchronously (the CLI, tests). */
  closeNow(): void {
    if (this.#closed) return;
    this.#flush();
    this.#closed = true;
    if (this.#probe) clearInterval(this.#probe);
    if (this.#adoptTimer) clearInterval(this.#adoptTimer);
    for (const p of this.#batch) p.reject(new SpoolUnavailableError('The spool is closed (shutting down).'));
    this.#batch = [];
    // Commits still waiting for a sync get their answer now, from a blocking one.
    const waiting = [...(this.#syncing ?? []), ...this.#unsynced];
    this.#syncing = undefined;
    this.#unsynced = [];
    if (waiting.length) {
      const err = this.#wal.syncNow();
      for (const done of waiting) done(err);
    }
    this.#checkpointer?.close();
    this.#db.close();
    this.#wal.close();
    this.#lock?.release();
  }

  #writable(): void {
    if (this.#readonly) throw new Error('This spool was opened read-only.');
  }

  #queue(op: Op): void {
    this.#writable();
    if (this.#closed) return;
    this.#ops.push(op);
    this.#schedule();
  }

  #schedule(): void {
    if (this.#scheduled) return;
    this.#scheduled = true;
    // While a sync runs, commits gather for one transaction when it ends (#startSync): it could not
    // be acknowledged before the next sync anyway, and fewer, larger transactions write fewer pages.
    if (!this.#syncing) this.#flushSoon();
  }

  #flushSoon(): void {
    // setImmediate, not a microtask: every request whose I/O completed in this loop turn gets to
    // add its commit before the transaction runs.
    setImmediate(() => this.#flush());
  }

  #flush(): void {
    this.#scheduled = false;
    if (this.#closed) return;
    const batch = this.#batch;
    const ops = this.#ops;
    this.#batch = [];
    this.#ops = [];
    if (!batch.length && !ops.length) return;

    const started = performance.now();
    let results: Array<CommitResult | Error> = [];
    const run = (isolated: boolean) =>
      this.#db.transaction(() => {
        results = [];
        for (const op of ops) op();
        for (const p of batch) results.push(isolated ? this.#commitOne(p.entry) : this.#insertEntry(p.entry));
      })();
    try {
      try {
        run(false);
      } catch (err) {
        if (err instanceof BetterSqlite3.SqliteError) throw err;
        // A bug while building one entry (not the database): the transaction rolled back; run it
        // again with each entry in a savepoint of its own, so that only that one fails. Not the
        // common path: a savepoint per entry is two more statements per SNS message.
        this.#messageIds = undefined;
        this.#assigner?.endBatch();
        run(true);
      }
    } catch (err) {
      this.#assigner?.endBatch();
      // The batch rolled back: count the ledger again when asked.
      this.#messageIds = undefined;
      const problem = `Spool not writable: ${describeError(err)}`;
      // Queued writes are mostly deletes of delivered events: let them through on their own, since
      // they free the space a full spool needs, then keep whatever failed for the next try.
      this.#ops = [...this.#applyEach(ops), ...this.#ops];
      this.#setProblem(problem);
      for (const p of batch) p.reject(new SpoolUnavailableError(problem));
      return;
    }
    this.#assigner?.endBatch();
    // Queued writes alone acknowledge nothing: losing them to a power cut resends an event at worst.
    if (!batch.length) return;
    this.#afterSync((syncErr) => {
      let events = 0;
      const queued: PendingEvent[] = [];
      for (const r of results) {
        if (!(r instanceof Error) && r.status === 'committed') {
          events += r.events.length + r.deadLettered.length;
          queued.push(...r.events);
        }
      }
      if (syncErr) {
        this.#setProblem(`Spool not durable: ${describeError(syncErr)}`);
      } else {
        this.#clearProblem();
        this.#observer?.committed({ durationMs: performance.now() - started, entries: batch.length, events });
      }
      // Queued even when the sync failed: the transaction is in the database, and a redelivery
      // will be answered "duplicate"; its events must not wait for a restart.
      if (queued.length) this.#emit(queued);
      const unavailable = syncErr ? new SpoolUnavailableError(this.#problem ?? String(syncErr)) : undefined;
      batch.forEach((p, i) => {
        const r = results[i] as CommitResult | Error;
        if (r instanceof Error) p.reject(r);
        else if (unavailable) p.reject(unavailable);
        else p.resolve(r);
      });
    });
  }

  /**
   * Runs `done` once a sync that started after this call completes. One sync at a time: the
   * transactions written while it runs share the next one.
   */
  #afterSync(done: (err: Error | null) => void): void {
    this.#unsynced.push(done);
    if (!this.#syncing) this.#startSync();
  }

  #startSync(): void {
    const covered = this.#unsynced;
    this.#unsynced = [];
    this.#syncing = covered;
    this.#wal.sync((err) => {
      // close() answered them already.
      if (this.#syncing !== covered) return;
      this.#syncing = undefined;
      for (const done of covered) done(err);
      if (this.#closed) return;
      // The commits that gathered meanwhile; their transaction's sync covers any other write too.
      if (this.#scheduled) this.#flushSoon();
      else if (this.#unsynced.length) this.#startSync();
    });
  }

  /** One entry inside the group transaction, in its own savepoint so that a bug in one entry fails only that one. */
  #commitOne(entry: SpoolEntry): CommitResult | Error {
    try {
      return this.#entryTx(entry);
    } catch (err) {
      if (err instanceof BetterSqlite3.SqliteError) throw err;
      this.#messageIds = undefined;
      return err instanceof Error ? err : new Error(String(err));
    }
  }

  #insertEntry(entry: SpoolEntry): CommitResult {
    if (this.#s.insertMessage.run(entry.messageId, entry.receivedAt).changes === 0)
      return { status: 'duplicate' };
    if (this.#messageIds !== undefined) this.#messageIds++;
    const events: PendingEvent[] = [];
    const deadLettered: Array<{ event: PendingEvent; reason: DeadLetterReason; detail: string }> = [];
    const orphaned: PendingEvent[] = [];
    const stale: Array<{ event: OutboundEvent; newerAt: number }> = [];
    for (const ev of entry.events) {
      if (!this.#assigner) throw new Error('A spool without a key assigner cannot commit events.');
      if (ev.dedupKey !== null && ev.time) {
        // Strictly older on the same clock only: two paths reporting one state (an alarm's SNS and
        // EventBridge notifications) both go through, which PagerDuty de-duplicates; a time from
        // another clock (another rule without payload.timestamp) is never compared.
        const known = this.#s.alertTime.get(ev.route, ev.dedupKey);
        if (known !== undefined && known.clock === ev.time.from && known.at > ev.time.at) {
          stale.push({ event: ev, newerAt: known.at });
          continue;
        }
        this.#s.setAlertTime.run(ev.route, ev.dedupKey, ev.time.at, ev.time.from, entry.receivedAt);
      }
      const open = ev.dedupKey === null ? undefined : this.#alerts.get(ev.route, ev.dedupKey);
      const assignment = decideKey(this.#assigner.propose(ev), ev.action, open);
      const keyFp = 'keyFp' in assignment ? assignment.keyFp : '';
      const info = this.#s.insertEvent.run(
        entry.messageId,
        ev.route,
        ev.rule,
        ev.action,
        ev.dedupKey,
        keyFp,
        serialisedBody(ev.body),
        entry.receivedAt,
        1,
        ev.time?.at ?? 0,
      );
      const pending: PendingEvent = {
        id: Number(info.lastInsertRowid),
        route: ev.route,
        action: ev.action,
        dedupKey: ev.dedupKey,
        keyFp,
        receivedAt: entry.receivedAt,
        sourceAt: ev.time?.at ?? 0,
        attempts: 0,
        nextAttemptAt: 0,
      };
      if ('deadLetter' in assignment) {
        this.#moveToDeadLetters(pending.id, 0, assignment.deadLetter, assignment.detail);
        deadLettered.push({ event: pending, reason: assignment.deadLetter, detail: assignment.detail });
        continue;
      }
      if (ev.action === 'trigger' && ev.dedupKey !== null)
        this.#alerts.remember(ev.route, ev.dedupKey, keyFp, pending.id);
      if ('orphaned' in assignment && assignment.orphaned) orphaned.push(pending);
      events.push(pending);
    }
    return { status: 'committed', events, deadLettered, orphaned, stale };
  }

  #moveToDeadLetters(id: number, attempts: number, reason: DeadLetterReason, detail: string): void {
    this.#s.toDeadLetters.run({ attempts, reason, detail, now: this.#now(), id });
    this.#s.deleteEvent.run(id);
  }

  /**
   * Runs queued writes one transaction each, in order, and again while a pass makes progress: on a
   * full spool an insert (a send record, a longer last_error) can fail where the deletes queued
   * after it succeed and make room for it. Returns the writes that still fail, in order.
   */
  #applyEach(ops: Op[]): Op[] {
    let left = ops;
    for (;;) {
      const failed = left.filter((op) => {
        try {
          this.#db.transaction(op)();
          return false;
        } catch {
          return true;
        }
      });
      if (failed.length === 0 || failed.length === left.length) return failed;
      left = failed;
    }
  }

  #setProblem(problem: string): void {
    const first = this.#problem === null;
    this.#problem = problem;
    if (first) this.#observer?.unavailable(problem);
    if (!this.#probe) {
      // Without traffic (readiness false keeps SNS away) nothing else would find out that the disk
      // is writable again: probe with a write the size of a typical entry.
      this.#probe = setInterval(() => this.#runProbe(), this.#probeIntervalMs);
      this.#probe.unref();
    }
  }

  #runProbe(): void {
    if (this.#closed || this.#probing) return;
    // Without this, writes queued after the last failed flush (the deletes that free a full
    // spool) would wait for a next write that may never come.
    if (this.#ops.length) this.#ops = this.#applyEach(this.#ops);
    try {
      this.#db.transaction(() => {
        this.#s.probeWrite.run();
        this.#s.probeDelete.run();
      })();
    } catch {
      return;
    }
    this.#probing = true;
    this.#afterSync((err) => {
      this.#probing = false;
      if (err || this.#closed) return;
      this.#clearProblem();
      if (this.#ops.length) this.#schedule();
    });
  }

  #clearProblem(): void {
    if (this.#probe) {
      clearInterval(this.#probe);
      this.#probe = undefined;
    }
    if (this.#problem !== null) {
      this.#problem = null;
      this.#observer?.recovered();
    }
  }
}

/** The spool cannot be opened or used at all (startup error). */
export class SpoolOpenError extends Error {
  override readonly name = 'SpoolOpenError';
  /** Another relay serves this spool (the message says what to do), rather than a bad spool.dir. */
  readonly locked: boolean;

  constructor(message: string, opts: { locked?: boolean } = {}) {
    super(message);
    this.locked = opts.locked ?? false;
  }
}

function prepare(db: Database, readonly: boolean) {
  const w = <P extends unknown[], R = unknown>(sql: string): Statement<P, R> =>
    (readonly ? undefined : db.prepare(sql)) as Statement<P, R>;
  return {
    hasMessage: db.prepare<[string], { x: number }>('SELECT 1 AS x FROM messages WHERE message_id = ?'),
    pending: db.prepare<[number], EventRow>(
      `SELECT ${PENDING_COLUMNS} FROM events WHERE id >= ? ORDER BY id`,
    ),
    keyOf: db.prepare<[number], { key_fp: string }>('SELECT key_fp FROM events WHERE id = ?'),
    keyFps: db.prepare<[], { key_fp: string }>('SELECT DISTINCT key_fp FROM events'),
    unadopted: db.prepare<[], EventRow>(
      `SELECT ${PENDING_COLUMNS} FROM events WHERE adopted = 0 ORDER BY id`,
    ),
    load: db.prepare<[number], EventRow>('SELECT * FROM events WHERE id = ?'),
    deadLetter: db.prepare<[number], DeadRow>('SELECT * FROM dead_letters WHERE id = ?'),
    deadLetters: db.prepare<[number], DeadRow>('SELECT * FROM dead_letters ORDER BY id LIMIT ?'),
    groups: db.prepare<
      [],
      {
        route: string;
        key_fp: string;
        n: number;
        oldest: number;
        next_attempt: number;
        head_attempts: number;
      }
    >(
      // The head (lowest id) of each queue is the event holding it up: its attempts and next try.
      `SELECT g.route, g.key_fp, g.n, g.oldest, head.next_attempt_at AS next_attempt, head.attempts AS head_attempts
       FROM (SELECT route, key_fp, count(*) AS n, min(received_at) AS oldest, min(id) AS head_id
             FROM events GROUP BY route, key_fp) AS g
       JOIN events AS head ON head.id = g.head_id
       ORDER BY g.route, g.key_fp`,
    ),
    countEvents: db.prepare<[], { n: number }>('SELECT count(*) AS n FROM events'),
    countDeadLetters: db.prepare<[], { n: number }>('SELECT count(*) AS n FROM dead_letters'),
    countMessages: db.prepare<[], { n: number }>('SELECT count(*) AS n FROM messages'),
    deadByReason: db.prepare<[], { reason: string; n: number }>(
      'SELECT reason, count(*) AS n FROM dead_letters GROUP BY reason ORDER BY reason',
    ),
    adoptOne: w<[number]>('UPDATE events SET adopted = 1 WHERE id = ?'),
    insertMessage: w<[string, number]>(
      'INSERT OR IGNORE INTO messages (message_id, accepted_at) VALUES (?, ?)',
    ),
    insertEvent: w<[string, string, string, string, string | null, string, string, number, number, number]>(
      `INSERT INTO events (message_id, route, rule, action, dedup_key, key_fp, body, received_at, adopted, source_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    ),
    deleteEvent: w<[number]>('DELETE FROM events WHERE id = ?'),
    reschedule: w<[number, number, string, number]>(
      'UPDATE events SET attempts = ?, next_attempt_at = ?, last_error = ? WHERE id = ?',
    ),
    reassign: w<[string, number]>('UPDATE events SET key_fp = ? WHERE id = ?'),
    toDeadLetters: w<[{ attempts: number; reason: string; detail: string; now: number; id: number }]>(
      `INSERT OR REPLACE INTO dead_letters
         (id, message_id, route, rule, action, dedup_key, key_fp, body, received_at, source_at, attempts, last_error, reason, detail, dead_at)
       SELECT id, message_id, route, rule, action, dedup_key, key_fp, body, received_at, source_at, max(attempts, @attempts), last_error,
              @reason, @detail, @now
       FROM events WHERE id = @id`,
    ),
    deleteDeadLetter: w<[number]>('DELETE FROM dead_letters WHERE id = ?'),
    deleteAllDeadLetters: w<[]>('DELETE FROM dead_letters'),
    pruneMessages: w<[number]>(
      `DELETE FROM messages WHERE message_id IN
         (SELECT message_id FROM messages WHERE accepted_at < ? LIMIT ${PRUNE_SLICE})`,
    ),
    alertTime: db.prepare<[string, string], { at: number; clock: string }>(
      'SELECT at, clock FROM alert_times WHERE route = ? AND dedup_key = ?',
    ),
    setAlertTime: w<[string, string, number, string, number]>(
      `INSERT INTO alert_times (route, dedup_key, at, clock, seen_at) VALUES (?, ?, ?, ?, ?)
       ON CONFLICT (route, dedup_key) DO UPDATE SET
         at = CASE WHEN clock = excluded.clock THEN max(at, excluded.at) ELSE excluded.at END,
         clock = excluded.clock, seen_at = excluded.seen_at`,
    ),
    pruneAlertTimes: w<[number]>(
      `DELETE FROM alert_times WHERE (route, dedup_key) IN
         (SELECT route, dedup_key FROM alert_times WHERE seen_at < ? LIMIT ${PRUNE_SLICE})`,
    ),
    recentSends: db.prepare<[number], { key_fp: string; ended_at: number }>(
      'SELECT key_fp, ended_at FROM rate_log WHERE ended_at >= ? ORDER BY key_fp, ended_at',
    ),
    recordSend: w<[string, number]>('INSERT INTO rate_log (key_fp, ended_at) VALUES (?, ?)'),
    forgetSends: w<[string, number]>('DELETE FROM rate_log WHERE key_fp = ? AND ended_at < ?'),
    probeWrite: w<[]>("INSERT OR REPLACE INTO meta (key, value) VALUES ('probe', zeroblob(65536))"),
    probeDelete: w<[]>("DELETE FROM meta WHERE key = 'probe'"),
  };
}

function toPending(
  r: Pick<
    EventRow,
    | 'id'
    | 'route'
    | 'action'
    | 'dedup_key'
    | 'key_fp'
    | 'received_at'
    | 'source_at'
    | 'attempts'
    | 'next_attempt_at'
  >,
): PendingEvent {
  return {
    id: r.id,
    route: r.route,
    action: r.action as EventAction,
    dedupKey: r.dedup_key,
    keyFp: r.key_fp,
    receivedAt: r.received_at,
    sourceAt: r.source_at,
    attempts: r.attempts,
    nextAttemptAt: r.next_attempt_at,
  };
}

function toStored(r: EventRow): StoredEvent {
  return {
    ...toPending(r),
    messageId: r.message_id,
    rule: r.rule,
    body: JSON.parse(r.body) as EventBody,
    lastError: r.last_error,
  };
}

/** An SQLite or file-system error in a sentence: code first (SQLITE_FULL, SQLITE_BUSY, EACCES). */
function describeError(err: unknown): string {
  const e = err as { code?: string; message?: string };
  if (e?.code && e.message && !e.message.includes(e.code)) return `${e.code}: ${e.message}`;
  return e?.message ?? String(err);
}
