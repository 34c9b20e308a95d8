import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import pg from 'pg';
import type { PostgresConfig } from '../../config/load.js';
import { serialisedBody } from '../../pagerduty/limits.js';
import type { EventAction, EventBody } from '../../pagerduty/types.js';
import type { OutboundEvent } from '../../rules/types.js';
import {
  type Assignment,
  type CommitResult,
  type DeadLetter,
  type DeadLetterReason,
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
import {
  clientConfig,
  connectHint,
  describePgError,
  isConnectionError,
  spoolLocation,
} from './connection.js';
import { migrate, PgSchemaVersionError, schemaVersionOf, schemaVersionProblem } from './migrations.js';
import { channelsFor, LeaseOwnership, type LeaseTiming } from './ownership.js';

export interface PostgresSpoolOptions {
  config: PostgresConfig;
  /** `serve`: migrates, takes part in key ownership. `admin`: the CLI beside running relays. */
  mode: 'serve' | 'admin';
  /** Proposes each event's key inside the commit; required to commit events. */
  assigner?: KeyAssigner;
  observer?: SpoolObserver;
  now?: () => number;
  /** How often to check whether a failing database works again (readiness recovers by itself). */
  probeIntervalMs?: number;
  /** Lease timing (tests shorten it). */
  timing?: Partial<LeaseTiming>;
}

/** The PostgreSQL spool could not be opened: the message says what to fix. */
export class PgSpoolOpenError extends Error {
  override readonly name = 'PgSpoolOpenError';
}

/** Group-commit transactions of one replica in flight at once; PostgreSQL groups their WAL flushes. */
const MAX_COMMITS_IN_FLIGHT = 4;
/** Rows read per round trip when a key's queue is loaded (keyset pages, not one huge result). */
const PAGE = 10_000;
/** Rows one pruning statement deletes at most (a huge delete would hold its locks for long). */
const PRUNE_SLICE = 5000;

/** What commit_batch answers per entry: null for a duplicate MessageId. */
type EntryResult = {
  ev: Array<[number, string, string, boolean]>;
  dl: Array<[number, string]>;
  st: Array<[number, string]>;
} | null;

interface PendingCommit {
  entry: SpoolEntry;
  resolve: (r: CommitResult) => void;
  reject: (e: Error) => void;
}

interface EventRow {
  id: string;
  message_id: string;
  route: string;
  rule: string;
  action: string;
  dedup_key: string | null;
  key_fp: string;
  body: string;
  received_at: string;
  source_at: string;
  attempts: number;
  next_attempt_at: string;
  last_error: string | null;
}

interface DeadRow extends EventRow {
  reason: string;
  detail: string;
  dead_at: string;
}

/** Writes other than commits, gathered for the next write transaction. */
interface Writes {
  delivered: PendingEvent[];
  rescheduled: Array<{ id: number; attempts: number; nextAttemptAt: number; lastError: string }>;
  dead: Array<{ id: number; attempts: number; reason: DeadLetterReason; detail: string; at: number }>;
  sends: Array<{ keyFp: string; endedAt: number; forgetBefore: number }>;
  done: Array<{ resolve: () => void; reject: (err: Error) => void }>;
}

const PENDING_COLUMNS =
  'id, route, action, dedup_key, key_fp, received_at, source_at, attempts, next_attempt_at';

/**
 * The spool shared by several replicas: one PostgreSQL database (RDS or Aurora Multi-AZ on AWS).
 *
 * Ingest: concurrent commits share one transaction, a single call of the schema's commit_batch
 * function (one round trip; synchronous_commit on, so the answer means the WAL is flushed), and a
 * replica keeps up to MAX_COMMITS_IN_FLIGHT of them going; the SNS requests get their 200 once
 * theirs returned. Within it, the stale check, the MessageId ledger and the open-alert key of each
 * event happen under a per-alert advisory lock, so replicas never give one alert two keys.
 *
 * Dispatch: keys belong to one replica at a time (ownership.ts); the owner of a key hears of new
 * events through NOTIFY at commit and reads them by (key, id). Writes about deliveries are
 * gathered like SQLite's and land in one transaction per loop turn.
 */
export class PostgresSpool implements Spool {
  readonly location: string;
  readonly shared = true;
  readonly schemaVersion: number;
  readonly ownership: LeaseOwnership;
  readonly #pool: pg.Pool;
  readonly #o: PostgresSpoolOptions;
  readonly #now: () => number;
  readonly #replica: string;
  readonly #channels: { events: string; owners: string };
  #listener: (events: PendingEvent[]) => void = () => {};
  #batch: PendingCommit[] = [];
  #commitScheduled = false;
  #commitsInFlight = 0;
  #writes: Writes = emptyWrites();
  #writeScheduled = false;
  #writing: Promise<void> | undefined;
  #closed = false;
  #problem: string | null = null;
  #probe: NodeJS.Timeout | undefined;
  /** Per key: the lowest id announced and not fetched yet, and whether a fetch runs. */
  readonly #announced = new Map<string, { from: number; running: boolean }>();

  private constructor(opts: PostgresSpoolOptions, pool: pg.Pool, version: number) {
    this.#o = opts;
    this.#pool = pool;
    this.#now = opts.now ?? Date.now;
    this.schemaVersion = version;
    this.location = spoolLocation(opts.config);
    this.#replica = randomUUID();
    this.#channels = channelsFor(opts.config.schema);
    this.ownership = new LeaseOwnership({
      config: opts.config,
      replica: this.#replica,
      name: hostname(),
      channels: this.#channels,
      ...(opts.observer ? { observer: opts.observer } : {}),
      ...(opts.timing ? { timing: opts.timing } : {}),
      // Every commit's events reach their key's owner this way, this replica's own included:
      // PostgreSQL delivers notifications in commit order, so a key's events arrive in the order
      // they were committed whichever replica committed them (a trigger accepted by one replica
      // is queued before the resolve that SNS then delivered to another).
      onEvents: (_replica, keyFp, fromId) => this.#announce(keyFp, fromId),
    });
  }

  /**
   * Connects and checks the schema: `serve` creates or migrates it (one replica at a time),
   * `admin` refuses a schema that is missing, older or newer. Throws PgSpoolOpenError saying why.
   */
  static async open(opts: PostgresSpoolOptions): Promise<PostgresSpool> {
    const pool = new pg.Pool({
      ...clientConfig(opts.config, 'pd-relay'),
      max: opts.mode === 'serve' ? opts.config.poolSize : 2,
      idleTimeoutMillis: 30_000,
    });
    // Every connection the pool opens keeps a listener for its whole life: a connection the server
    // ends (a restart, a failover) reports it as an 'error' event, which unheard would end the
    // process, and can report it while checked out between statements, or twice. What failed is
    // seen by the statement that used it.
    pool.on('connect', (c) => c.on('error', () => {}));
    pool.on('error', (err) => opts.observer?.databaseError?.('connect', err));
    const where = spoolLocation(opts.config);
    let client: pg.PoolClient;
    try {
      client = await pool.connect();
    } catch (err) {
      await pool.end().catch(() => {});
      throw new PgSpoolOpenError(
        `Cannot connect to the spool database ${where}: ${connectHint(err, opts.config)}`,
      );
    }
    let version: number;
    try {
      if (opts.mode === 'serve') {
        version = (await migrate(client, opts.config.schema)).to;
      } else {
        version = await schemaVersionOf(client);
        const problem = schemaVersionProblem(opts.config.schema, version);
        if (problem !== null) throw new PgSchemaVersionError(problem);
      }
    } catch (err) {
      client.release();
      await pool.end().catch(() => {});
      if (err instanceof PgSchemaVersionError) throw new PgSpoolOpenError(`${where}: ${err.message}`);
      throw new PgSpoolOpenError(`Cannot use the spool database ${where}: ${describePgError(err)}`);
    }
    client.release();
    return new PostgresSpool(opts, pool, version);
  }

  commit(entry: SpoolEntry): Promise<CommitResult> {
    if (this.#closed)
      return Promise.reject(new SpoolUnavailableError('The spool is closed (shutting down).'));
    return new Promise((resolve, reject) => {
      this.#batch.push({ entry, resolve, reject });
      this.#scheduleCommit();
    });
  }

  onQueued(listener: (events: PendingEvent[]) => void): void {
    this.#listener = listener;
  }

  async pending(keyFps?: readonly string[], fromId = 0): Promise<PendingEvent[]> {
    const out: PendingEvent[] = [];
    // Route, action and key strings shared: a backlog of 500,000 events must not hold 500,000
    // copies of "default" and "trigger".
    const intern = new Map<string, string>();
    const shared = (s: string) => {
      const known = intern.get(s);
      if (known !== undefined) return known;
      intern.set(s, s);
      return s;
    };
    let from = fromId;
    for (;;) {
      const rows = await this.#read(
        'dispatch',
        `SELECT ${PENDING_COLUMNS} FROM events
         WHERE id >= $1 AND ($2::text[] IS NULL OR key_fp = ANY($2)) ORDER BY id LIMIT ${PAGE}`,
        [from, keyFps ? [...keyFps] : null],
      );
      for (const r of rows as EventRow[]) {
        out.push({
          id: Number(r.id),
          route: shared(r.route),
          action: shared(r.action) as EventAction,
          dedupKey: r.dedup_key,
          keyFp: shared(r.key_fp),
          receivedAt: Number(r.received_at),
          sourceAt: Number(r.source_at),
          attempts: r.attempts,
          nextAttemptAt: Number(r.next_attempt_at),
        });
      }
      if (rows.length < PAGE) return out;
      from = Number((rows.at(-1) as EventRow).id) + 1;
    }
  }

  async load(id: number): Promise<StoredEvent | undefined> {
    const [row] = await this.#read('dispatch', 'SELECT * FROM events WHERE id = $1', [id]);
    return row ? toStored(row as EventRow) : undefined;
  }

  delivered(event: PendingEvent): void {
    this.#queueWrite((w) => w.delivered.push({ ...event }));
  }

  reschedule(event: PendingEvent, lastError: string): void {
    const { id, attempts, nextAttemptAt } = event;
    this.#queueWrite((w) => w.rescheduled.push({ id, attempts, nextAttemptAt, lastError }));
  }

  deadLetter(event: PendingEvent, reason: DeadLetterReason, detail: string): void {
    const { id, attempts } = event;
    this.#queueWrite((w) => w.dead.push({ id, attempts, reason, detail, at: this.#now() }));
  }

  recordSend(keyFp: string, endedAt: number, forgetBefore: number): void {
    this.#queueWrite((w) => w.sends.push({ keyFp, endedAt, forgetBefore }));
  }

  flush(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    return new Promise((resolve, reject) => {
      this.#writes.done.push({ resolve, reject });
      this.#scheduleWrite();
    });
  }

  async reroute(
    events: readonly PendingEvent[],
    decide: (event: PendingEvent, open: OpenAlert | undefined) => Assignment,
    opts: { fromOwned?: boolean } = {},
  ): Promise<Array<{ event: PendingEvent; assignment: Assignment }>> {
    if (!events.length) return [];
    await this.flush();
    return this.#transaction('dispatch', async (c) => {
      await c.query('SELECT lock_alerts($1::text[], $2::text[])', [
        events.map((e) => e.route),
        events.map((e) => e.dedupKey),
      ]);
      // Only events still pending on the key the caller saw them on; with fromOwned, only on keys
      // this replica still owns (a key handed over meanwhile is its new owner's to rearrange: the
      // row lock makes the hand-over wait for this transaction, or this one see it done).
      let owned: Set<string> | undefined;
      if (opts.fromOwned)
        owned = new Set(
          (
            await c.query<{ key_fp: string }>(
              'SELECT key_fp FROM key_owners WHERE key_fp = ANY($1::text[]) AND owner = $2 FOR SHARE',
              [[...new Set(events.map((e) => e.keyFp))], this.#replica],
            )
          ).rows.map((r) => r.key_fp),
        );
      const seen = new Map(events.map((e) => [e.id, e.keyFp]));
      const still = new Set(
        (
          await c.query<{ id: string; key_fp: string }>(
            'SELECT id, key_fp FROM events WHERE id = ANY($1::bigint[]) FOR UPDATE',
            [events.map((e) => e.id)],
          )
        ).rows
          .filter((r) => r.key_fp === seen.get(Number(r.id)))
          .filter((r) => owned === undefined || owned.has(r.key_fp))
          .map((r) => Number(r.id)),
      );
      const open = await openAlertsOf(c, events);
      const out: Array<{ event: PendingEvent; assignment: Assignment }> = [];
      const firsts = new Map<string, number>();
      for (const event of events) {
        if (!still.has(event.id)) continue;
        const alertKey = `${event.route}\n${event.dedupKey}`;
        const assignment = decide(event, event.dedupKey === null ? undefined : open.get(alertKey));
        if ('deadLetter' in assignment) {
          await moveToDeadLetters(c, [
            {
              id: event.id,
              attempts: event.attempts,
              reason: assignment.deadLetter,
              detail: assignment.detail,
              at: this.#now(),
            },
          ]);
        } else {
          await c.query('UPDATE events SET key_fp = $1 WHERE id = $2', [assignment.keyFp, event.id]);
          if (event.action === 'trigger' && event.dedupKey !== null) {
            await rememberAlert(c, event.route, event.dedupKey, assignment.keyFp, event.id, this.#now());
            open.set(alertKey, {
              keyFp: assignment.keyFp,
              triggerId: event.id,
              sent: open.get(alertKey)?.sent ?? false,
            });
          }
          firsts.set(assignment.keyFp, Math.min(firsts.get(assignment.keyFp) ?? event.id, event.id));
        }
        out.push({ event, assignment });
      }
      // The later events of a moved trigger's alert follow it, wherever they were in the queue.
      const moves = followMoves(out);
      if (moves.size) {
        const inBatch = new Set(events.map((e) => e.id));
        const rows = (
          await c.query<EventRow>(
            `SELECT ${PENDING_COLUMNS} FROM events WHERE key_fp = ANY($1::text[]) AND id > $2 ORDER BY id FOR UPDATE`,
            [
              [...new Set([...moves.values()].map((m) => m.from))],
              Math.min(...[...moves.values()].map((m) => m.after)),
            ],
          )
        ).rows;
        for (const r of rows) {
          const id = Number(r.id);
          const m = r.dedup_key === null ? undefined : moves.get(`${r.route}\n${r.dedup_key}`);
          if (!m || inBatch.has(id) || id <= m.after || r.key_fp !== m.from) continue;
          await c.query('UPDATE events SET key_fp = $1 WHERE id = $2', [m.to, id]);
          firsts.set(m.to, Math.min(firsts.get(m.to) ?? id, id));
          out.push({
            event: pendingOf(r),
            assignment: { keyFp: m.to },
          });
        }
      }
      await this.#notifyEvents(c, firsts);
      return out;
    });
  }

  async recentSends(since: number, keyFps?: readonly string[]): Promise<Map<string, number[]>> {
    const rows = await this.#read(
      'dispatch',
      `SELECT key_fp, ended_at FROM rate_log WHERE ended_at >= $1 AND ($2::text[] IS NULL OR key_fp = ANY($2))
       ORDER BY key_fp, ended_at`,
      [since, keyFps ? [...keyFps] : null],
    );
    const out = new Map<string, number[]>();
    for (const r of rows as Array<{ key_fp: string; ended_at: string }>) {
      const list = out.get(r.key_fp) ?? [];
      list.push(Number(r.ended_at));
      out.set(r.key_fp, list);
    }
    return out;
  }

  async deadLetters(opts: { ids?: number[]; limit?: number } = {}): Promise<DeadLetter[]> {
    const rows = opts.ids
      ? await this.#read('admin', 'SELECT * FROM dead_letters WHERE id = ANY($1::bigint[]) ORDER BY id', [
          opts.ids,
        ])
      : await this.#read('admin', 'SELECT * FROM dead_letters ORDER BY id LIMIT $1', [opts.limit ?? null]);
    return (rows as DeadRow[]).map((r) => ({
      ...toStored(r),
      reason: r.reason as DeadLetterReason,
      detail: r.detail,
      deadAt: Number(r.dead_at),
    }));
  }

  retryDeadLetters(ids?: number[]): Promise<number> {
    return this.#transaction('admin', async (c) => {
      const rows = (
        await c.query<DeadRow>(
          `DELETE FROM dead_letters WHERE ($1::bigint[] IS NULL OR id = ANY($1)) RETURNING *`,
          [ids ?? null],
        )
      ).rows.sort((a, b) => Number(a.id) - Number(b.id));
      if (!rows.length) return 0;
      await c.query('SELECT lock_alerts($1::text[], $2::text[])', [
        rows.map((r) => r.route),
        rows.map((r) => r.dedup_key),
      ]);
      const now = this.#now();
      const firsts = new Map<string, number>();
      for (const r of rows) {
        // A retried dead letter starts a new life: full maxAge, no backoff.
        const inserted = await c.query<{ id: string }>(
          `INSERT INTO events (message_id, route, rule, action, dedup_key, key_fp, body, received_at, source_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id`,
          [r.message_id, r.route, r.rule, r.action, r.dedup_key, r.key_fp, r.body, now, r.source_at],
        );
        const id = Number(inserted.rows[0]?.id);
        if (r.action === 'trigger' && r.dedup_key !== null)
          await rememberAlert(c, r.route, r.dedup_key, r.key_fp, id, now);
        firsts.set(r.key_fp, Math.min(firsts.get(r.key_fp) ?? id, id));
      }
      await this.#notifyEvents(c, firsts);
      return rows.length;
    });
  }

  async discardDeadLetters(ids?: number[]): Promise<number> {
    const result = await this.#run('admin', (c) =>
      c.query('DELETE FROM dead_letters WHERE ($1::bigint[] IS NULL OR id = ANY($1))', [ids ?? null]),
    );
    return result.rowCount ?? 0;
  }

  async pendingGroups(): Promise<PendingGroup[]> {
    const rows = await this.#read(
      'admin',
      // The head (lowest id) of each queue is the event holding it up: its attempts and next try.
      `SELECT g.route, g.key_fp, g.n, g.oldest, head.next_attempt_at AS next_attempt, head.attempts AS head_attempts
       FROM (SELECT route, key_fp, count(*) AS n, min(received_at) AS oldest, min(id) AS head_id
             FROM events GROUP BY route, key_fp) AS g
       JOIN events AS head ON head.id = g.head_id
       ORDER BY g.route, g.key_fp`,
    );
    return (
      rows as Array<{
        route: string;
        key_fp: string;
        n: string;
        oldest: string;
        next_attempt: string;
        head_attempts: number;
      }>
    ).map((g) => ({
      route: g.route,
      keyFp: g.key_fp,
      count: Number(g.n),
      oldestReceivedAt: Number(g.oldest),
      nextAttemptAt: Number(g.next_attempt),
      headAttempts: g.head_attempts,
    }));
  }

  async counts(): Promise<SpoolCounts> {
    const [row] = await this.#read(
      'admin',
      `SELECT (SELECT count(*) FROM events) AS pending, (SELECT count(*) FROM messages) AS messages,
              (SELECT count(*) FROM open_alerts) AS open_alerts`,
    );
    const byReason = await this.#read(
      'admin',
      'SELECT reason, count(*) AS n FROM dead_letters GROUP BY reason ORDER BY reason',
    );
    const deadLettersByReason: SpoolCounts['deadLettersByReason'] = {};
    let deadLetters = 0;
    for (const r of byReason as Array<{ reason: string; n: string }>) {
      deadLettersByReason[r.reason as DeadLetterReason] = Number(r.n);
      deadLetters += Number(r.n);
    }
    const c = row as { pending: string; messages: string; open_alerts: string };
    return {
      pending: Number(c.pending),
      deadLetters,
      deadLettersByReason,
      messageIds: Number(c.messages),
      openAlerts: Number(c.open_alerts),
    };
  }

  async gaugeCounts(): Promise<GaugeCounts> {
    // The ledger holds days of MessageIds (millions in a storm): past 100,000 rows, the planner's
    // estimate stands in for a count that would scan them all at every scrape.
    const [row] = await this.#read(
      'admin',
      `SELECT (SELECT count(*) FROM dead_letters) AS dead,
              (SELECT count(*) FROM open_alerts) AS open_alerts,
              (SELECT CASE WHEN reltuples > 100000 THEN reltuples::bigint
                           ELSE (SELECT count(*) FROM messages) END
               FROM pg_class WHERE oid = 'messages'::regclass) AS messages`,
    );
    const c = row as { dead: string; open_alerts: string; messages: string };
    return { deadLetters: Number(c.dead), messageIds: Number(c.messages), openAlerts: Number(c.open_alerts) };
  }

  async pruneMessageIds(before: number): Promise<number> {
    await this.#slices(
      `DELETE FROM alert_times WHERE ctid IN (SELECT ctid FROM alert_times WHERE seen_at < $1 LIMIT ${PRUNE_SLICE})`,
      before,
    );
    return this.#slices(
      `DELETE FROM messages WHERE ctid IN (SELECT ctid FROM messages WHERE accepted_at < $1 LIMIT ${PRUNE_SLICE})`,
      before,
    );
  }

  pruneOpenAlerts(before: number): Promise<number> {
    return this.#slices(
      `DELETE FROM open_alerts WHERE ctid IN (SELECT ctid FROM open_alerts WHERE opened_at < $1 LIMIT ${PRUNE_SLICE})`,
      before,
    );
  }

  async openAlert(route: string, dedupKey: string): Promise<OpenAlert | undefined> {
    const [row] = await this.#read(
      'admin',
      'SELECT key_fp, trigger_id, sent FROM open_alerts WHERE route = $1 AND dedup_key = $2',
      [route, dedupKey],
    );
    const r = row as { key_fp: string; trigger_id: string; sent: boolean } | undefined;
    return r ? { keyFp: r.key_fp, triggerId: Number(r.trigger_id), sent: r.sent } : undefined;
  }

  async hasMessage(messageId: string): Promise<boolean> {
    return (
      (await this.#read('admin', 'SELECT 1 FROM messages WHERE message_id = $1', [messageId])).length > 0
    );
  }

  problem(): string | null {
    return this.#problem ?? this.ownership.problem();
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    try {
      await this.flush();
    } catch {
      // What was not written is sent again by the next owner.
    }
    this.#closed = true;
    if (this.#probe) clearInterval(this.#probe);
    for (const p of this.#batch.splice(0))
      p.reject(new SpoolUnavailableError('The spool is closed (shutting down).'));
    await this.ownership.stop();
    // Commits in flight get their answers before the connections go.
    while (this.#commitsInFlight || this.#writing)
      await (this.#writing ?? new Promise((r) => setTimeout(r, 5)));
    await this.#pool.end().catch(() => {});
  }

  #scheduleCommit(): void {
    if (this.#commitScheduled) return;
    this.#commitScheduled = true;
    // setImmediate, not a microtask: every request whose I/O completed in this loop turn gets to
    // add its commit to the batch.
    setImmediate(() => {
      this.#commitScheduled = false;
      this.#startCommits();
    });
  }

  #startCommits(): void {
    // While MAX_COMMITS_IN_FLIGHT run, commits gather for the next batch (bigger batches, fewer flushes).
    if (this.#closed || !this.#batch.length || this.#commitsInFlight >= MAX_COMMITS_IN_FLIGHT) return;
    const batch = this.#batch;
    this.#batch = [];
    this.#commitsInFlight++;
    void this.#commitBatch(batch).finally(() => {
      this.#commitsInFlight--;
      this.#startCommits();
    });
  }

  async #commitBatch(batch: PendingCommit[]): Promise<void> {
    const started = performance.now();
    const { assigner } = this.#o;
    // Build each entry on its own: a bug in one (an unserialisable body) fails only that one.
    const bodies: string[] = [];
    const entries: unknown[] = [];
    const live: Array<{ p: PendingCommit; events: OutboundEvent[] }> = [];
    try {
      for (const p of batch) {
        try {
          if (p.entry.events.length && !assigner)
            throw new Error('A spool without a key assigner cannot commit events.');
          const events: unknown[] = [];
          const texts: string[] = [];
          for (const ev of p.entry.events) {
            const proposal = (assigner as KeyAssigner).propose(ev);
            texts.push(serialisedBody(ev.body));
            events.push({
              route: ev.route,
              rule: ev.rule,
              action: ev.action,
              dedupKey: ev.dedupKey,
              timeAt: ev.dedupKey !== null && ev.time ? ev.time.at : null,
              timeFrom: ev.dedupKey !== null && ev.time ? ev.time.from : null,
              sourceAt: ev.time?.at ?? 0,
              body: bodies.length + texts.length,
              ...('deadLetter' in proposal
                ? { dead: proposal.deadLetter, detail: proposal.detail, pool: [], keyFp: '' }
                : { pool: proposal.pool, keyFp: proposal.keyFp }),
            });
          }
          bodies.push(...texts);
          entries.push({ messageId: p.entry.messageId, receivedAt: p.entry.receivedAt, events });
          live.push({ p, events: p.entry.events });
        } catch (err) {
          p.reject(err instanceof Error ? err : new Error(String(err)));
        }
      }
    } finally {
      assigner?.endBatch();
    }
    if (!live.length) return;

    let results: EntryResult[];
    try {
      // The keys this replica commits with must be known to the others first (commit_batch keeps
      // an open alert on a key any live replica is configured with).
      await this.ownership.registered();
      const batchJson = JSON.stringify({
        replica: this.#replica,
        channel: this.#channels.events,
        now: this.#now(),
        entries,
      });
      results = await this.#commitQuery(batchJson, bodies);
    } catch (err) {
      const problem = `Spool not writable: ${describePgError(err)}`;
      this.#o.observer?.databaseError?.('commit', err);
      if (isConnectionError(err) || isTimeout(err))
        this.#setProblem(`Database unreachable (${this.location}): ${describePgError(err)}`);
      for (const { p } of live) p.reject(new SpoolUnavailableError(problem));
      return;
    }
    this.#clearProblem();

    let eventCount = 0;
    const answers: Array<() => void> = [];
    live.forEach(({ p, events }, i) => {
      const r = results[i];
      if (!r) {
        answers.push(() => p.resolve({ status: 'duplicate' }));
        return;
      }
      const pending = (index: number, id: string, keyFp: string): PendingEvent => {
        const ev = events[index] as OutboundEvent;
        return {
          id: Number(id),
          route: ev.route,
          action: ev.action,
          dedupKey: ev.dedupKey,
          keyFp,
          receivedAt: p.entry.receivedAt,
          sourceAt: ev.time?.at ?? 0,
          attempts: 0,
          nextAttemptAt: 0,
        };
      };
      const queuedHere = r.ev.map(([index, id, keyFp]) => pending(index, id, keyFp));
      const orphaned = r.ev
        .filter(([, , , orphan]) => orphan)
        .map(([index, id, keyFp]) => pending(index, id, keyFp));
      const sent = (entries[i] as { events: Array<{ dead?: DeadLetterReason; detail?: string }> }).events;
      const deadLettered = r.dl.map(([index, id]) => ({
        event: pending(index, id, ''),
        reason: sent[index]?.dead ?? ('no_route' as DeadLetterReason),
        detail: sent[index]?.detail ?? '',
      }));
      const stale = r.st.map(([index, newerAt]) => ({
        event: events[index] as OutboundEvent,
        newerAt: Number(newerAt),
      }));
      eventCount += queuedHere.length + deadLettered.length;
      answers.push(() =>
        p.resolve({
          status: 'committed',
          events: queuedHere,
          deadLettered,
          orphaned,
          stale,
        }),
      );
    });
    this.#o.observer?.committed({
      durationMs: performance.now() - started,
      entries: live.length,
      events: eventCount,
    });
    for (const answer of answers) answer();
  }

  /** One call of commit_batch; a deadlock or serialization failure (rolled back) is tried again once. */
  async #commitQuery(batchJson: string, bodies: string[]): Promise<EntryResult[]> {
    for (let attempt = 1; ; attempt++) {
      try {
        const res = await this.#query<{ r: unknown }>('SELECT commit_batch($1::jsonb, $2::text[]) AS r', [
          batchJson,
          bodies,
        ]);
        return res.rows[0]?.r as EntryResult[];
      } catch (err) {
        const code = (err as { code?: string }).code;
        if (attempt === 1 && (code === '40P01' || code === '40001')) continue;
        throw err;
      }
    }
  }

  #emit(events: PendingEvent[]): void {
    try {
      this.#listener(events);
    } catch (err) {
      this.#o.observer?.listenerFailed(err);
    }
  }

  /** Events were committed for `keyFp` from `fromId` on (by any replica): read them if this replica owns the key. */
  #announce(keyFp: string, fromId: number): void {
    if (!this.ownership.owns(keyFp) || this.#closed) return;
    const known = this.#announced.get(keyFp);
    if (known) {
      known.from = Math.min(known.from, fromId);
      if (known.running) return;
    }
    const state = known ?? { from: fromId, running: false };
    this.#announced.set(keyFp, state);
    state.running = true;
    void (async () => {
      while (this.#announced.get(keyFp) === state && state.from !== Number.POSITIVE_INFINITY) {
        const from = state.from;
        state.from = Number.POSITIVE_INFINITY;
        try {
          const events = await this.pending([keyFp], from);
          if (events.length && this.ownership.owns(keyFp)) this.#emit(events);
        } catch (err) {
          // Lost with the database: the key's next owner (this replica again, after it reconnects)
          // reads its whole queue.
          this.#o.observer?.databaseError?.('dispatch', err);
        }
      }
      state.running = false;
      if (this.#announced.get(keyFp) === state) this.#announced.delete(keyFp);
    })();
  }

  async #notifyEvents(c: pg.PoolClient, firsts: ReadonlyMap<string, number>): Promise<void> {
    for (const [fp, id] of firsts)
      await c.query('SELECT pg_notify($1, $2)', [this.#channels.events, `${this.#replica} ${fp} ${id}`]);
  }

  #queueWrite(add: (w: Writes) => void): void {
    if (this.#closed) return;
    add(this.#writes);
    this.#scheduleWrite();
  }

  #scheduleWrite(): void {
    if (this.#writeScheduled) return;
    this.#writeScheduled = true;
    setImmediate(() => {
      this.#writeScheduled = false;
      void this.#startWrite();
    });
  }

  async #startWrite(): Promise<void> {
    // One write transaction at a time, in order: a later round never overtakes an earlier one.
    while (this.#writing) await this.#writing;
    const w = this.#writes;
    if (!w.delivered.length && !w.rescheduled.length && !w.dead.length && !w.sends.length && !w.done.length)
      return;
    this.#writes = emptyWrites();
    this.#writing = this.#applyWrites(w).finally(() => {
      this.#writing = undefined;
    });
    await this.#writing;
  }

  async #applyWrites(w: Writes): Promise<void> {
    try {
      if (w.delivered.length || w.rescheduled.length || w.dead.length || w.sends.length) {
        await this.#transaction('dispatch', async (c) => {
          const resolves = w.delivered.filter((e) => e.action === 'resolve' && e.dedupKey !== null);
          const alerts = w.delivered.filter(
            (e) => e.dedupKey !== null && (e.action === 'resolve' || e.action === 'trigger'),
          );
          if (alerts.length)
            await c.query('SELECT lock_alerts($1::text[], $2::text[])', [
              alerts.map((e) => e.route),
              alerts.map((e) => e.dedupKey),
            ]);
          if (resolves.length) {
            // Forget the alert, unless a later trigger reopened it in the meantime (that trigger
            // is not at PagerDuty yet).
            const args = [
              resolves.map((e) => e.route),
              resolves.map((e) => e.dedupKey),
              resolves.map((e) => e.id),
            ];
            await c.query(
              `DELETE FROM open_alerts o USING unnest($1::text[], $2::text[], $3::bigint[]) AS f(route, dedup_key, id)
               WHERE o.route = f.route AND o.dedup_key = f.dedup_key AND o.trigger_id < f.id`,
              args,
            );
            await c.query(
              `UPDATE open_alerts o SET sent = false FROM unnest($1::text[], $2::text[], $3::bigint[]) AS f(route, dedup_key, id)
               WHERE o.route = f.route AND o.dedup_key = f.dedup_key AND o.trigger_id > f.id`,
              args,
            );
          }
          const triggers = w.delivered.filter((e) => e.action === 'trigger' && e.dedupKey !== null);
          if (triggers.length)
            await c.query(
              `UPDATE open_alerts o SET sent = true FROM unnest($1::text[], $2::text[]) AS f(route, dedup_key)
               WHERE o.route = f.route AND o.dedup_key = f.dedup_key`,
              [triggers.map((e) => e.route), triggers.map((e) => e.dedupKey)],
            );
          if (w.rescheduled.length)
            await c.query(
              `UPDATE events e SET attempts = u.attempts, next_attempt_at = u.next_at, last_error = u.err
               FROM unnest($1::bigint[], $2::int[], $3::bigint[], $4::text[]) AS u(id, attempts, next_at, err)
               WHERE e.id = u.id`,
              [
                w.rescheduled.map((r) => r.id),
                w.rescheduled.map((r) => r.attempts),
                w.rescheduled.map((r) => r.nextAttemptAt),
                w.rescheduled.map((r) => r.lastError),
              ],
            );
          if (w.dead.length) await moveToDeadLetters(c, w.dead);
          if (w.delivered.length)
            await c.query('DELETE FROM events WHERE id = ANY($1::bigint[])', [w.delivered.map((e) => e.id)]);
          if (w.sends.length) {
            await c.query(
              'INSERT INTO rate_log (key_fp, ended_at) SELECT * FROM unnest($1::text[], $2::bigint[])',
              [w.sends.map((s) => s.keyFp), w.sends.map((s) => s.endedAt)],
            );
            const forget = new Map<string, number>();
            for (const s of w.sends) forget.set(s.keyFp, Math.max(forget.get(s.keyFp) ?? 0, s.forgetBefore));
            await c.query(
              `DELETE FROM rate_log r USING unnest($1::text[], $2::bigint[]) AS f(key_fp, before)
               WHERE r.key_fp = f.key_fp AND r.ended_at < f.before`,
              [[...forget.keys()], [...forget.values()]],
            );
          }
        });
      }
      for (const d of w.done) d.resolve();
    } catch (err) {
      // Kept for the next round, before anything queued since: a delivery written twice costs a
      // duplicate at worst, never a loss.
      const next = this.#writes;
      this.#writes = {
        delivered: [...w.delivered, ...next.delivered],
        rescheduled: [...w.rescheduled, ...next.rescheduled],
        dead: [...w.dead, ...next.dead],
        sends: [...w.sends, ...next.sends],
        done: next.done,
      };
      const error =
        err instanceof SpoolUnavailableError ? err : new SpoolUnavailableError(describePgError(err));
      for (const d of w.done) d.reject(error);
    }
  }

  /** Runs `work` in a transaction on one pooled connection; errors become SpoolUnavailableError. */
  async #transaction<T>(operation: 'dispatch' | 'admin', work: (c: pg.PoolClient) => Promise<T>): Promise<T> {
    return this.#run(operation, async (c) => {
      await c.query('BEGIN');
      try {
        const result = await work(c);
        await c.query('COMMIT');
        return result;
      } catch (err) {
        await c.query('ROLLBACK').catch(() => {});
        throw err;
      }
    });
  }

  async #run<T>(operation: 'dispatch' | 'admin', work: (c: pg.PoolClient) => Promise<T>): Promise<T> {
    let client: pg.PoolClient;
    try {
      client = await this.#pool.connect();
    } catch (err) {
      this.#o.observer?.databaseError?.('connect', err);
      throw new SpoolUnavailableError(`Database unreachable (${this.location}): ${describePgError(err)}`);
    }
    // A checked-out connection that breaks between two statements emits 'error' on itself, not on
    // the pool: unheard, it would end the process. The statement in progress, if any, fails anyway.
    let broken: unknown;
    const onError = (err: unknown) => {
      broken = err;
    };
    client.on('error', onError);
    try {
      return await work(client);
    } catch (err) {
      this.#o.observer?.databaseError?.(operation, err);
      if (isConnectionError(err)) broken ??= err;
      if (isConnectionError(err) || isTimeout(err))
        throw new SpoolUnavailableError(`Database unreachable (${this.location}): ${describePgError(err)}`);
      throw err;
    } finally {
      // A broken connection goes, not back to the pool, and keeps a listener while it is ended.
      if (!broken) client.off('error', onError);
      client.release(broken instanceof Error ? broken : undefined);
    }
  }

  /**
   * One statement on a pooled connection. Not pg's Pool.query: it listens for a connection error
   * only once, and a connection the server ends (a failover) can emit two — the second, unheard,
   * would end the process.
   */
  async #query<R extends pg.QueryResultRow>(sql: string, params: unknown[] = []): Promise<pg.QueryResult<R>> {
    const client = await this.#pool.connect();
    let broken: unknown;
    const onError = (err: unknown) => {
      broken = err;
    };
    client.on('error', onError);
    try {
      return await client.query<R>(sql, params);
    } catch (err) {
      broken ??= isConnectionError(err) ? err : undefined;
      throw err;
    } finally {
      // A broken connection keeps a listener while the pool ends it: ending can report again.
      if (!broken) client.off('error', onError);
      client.release(broken instanceof Error ? broken : undefined);
    }
  }

  async #read(operation: 'dispatch' | 'admin', sql: string, params: unknown[] = []): Promise<unknown[]> {
    return this.#run(operation, async (c) => (await c.query(sql, params)).rows);
  }

  async #slices(sql: string, before: number): Promise<number> {
    let total = 0;
    for (;;) {
      const r = await this.#run('admin', (c) => c.query(sql, [before]));
      const n = r.rowCount ?? 0;
      total += n;
      if (n < PRUNE_SLICE) return total;
    }
  }

  #setProblem(problem: string): void {
    const first = this.#problem === null;
    this.#problem = problem;
    if (first) this.#o.observer?.unavailable(problem);
    if (!this.#probe) {
      // Without traffic (readiness false keeps SNS away) nothing else would find out that the
      // database works again.
      this.#probe = setInterval(() => {
        this.#query('SELECT 1').then(
          () => this.#clearProblem(),
          () => {},
        );
      }, this.#o.probeIntervalMs ?? 1000);
      this.#probe.unref();
    }
  }

  #clearProblem(): void {
    if (this.#probe) {
      clearInterval(this.#probe);
      this.#probe = undefined;
    }
    if (this.#problem !== null) {
      this.#problem = null;
      this.#o.observer?.recovered();
    }
  }
}

function emptyWrites(): Writes {
  return { delivered: [], rescheduled: [], dead: [], sends: [], done: [] };
}

function isTimeout(err: unknown): boolean {
  const e = err as { code?: string; message?: string } | null;
  return e?.code === '57014' || /timeout/i.test(e?.message ?? '');
}

async function moveToDeadLetters(
  c: pg.PoolClient,
  dead: ReadonlyArray<{ id: number; attempts: number; reason: DeadLetterReason; detail: string; at: number }>,
): Promise<void> {
  await c.query(
    `INSERT INTO dead_letters (id, message_id, route, rule, action, dedup_key, key_fp, body, received_at, source_at,
                               attempts, last_error, reason, detail, dead_at)
     SELECT e.id, e.message_id, e.route, e.rule, e.action, e.dedup_key, e.key_fp, e.body, e.received_at, e.source_at,
            greatest(e.attempts, u.attempts), e.last_error, u.reason, u.detail, u.at
     FROM events e JOIN unnest($1::bigint[], $2::int[], $3::text[], $4::text[], $5::bigint[])
       AS u(id, attempts, reason, detail, at) ON e.id = u.id
     ON CONFLICT (id) DO UPDATE SET reason = excluded.reason, detail = excluded.detail, dead_at = excluded.dead_at,
       attempts = excluded.attempts`,
    [
      dead.map((d) => d.id),
      dead.map((d) => d.attempts),
      dead.map((d) => d.reason),
      dead.map((d) => d.detail),
      dead.map((d) => d.at),
    ],
  );
  await c.query('DELETE FROM events WHERE id = ANY($1::bigint[])', [dead.map((d) => d.id)]);
}

async function rememberAlert(
  c: pg.PoolClient,
  route: string,
  dedupKey: string,
  keyFp: string,
  triggerId: number,
  now: number,
): Promise<void> {
  await c.query(
    `INSERT INTO open_alerts (route, dedup_key, key_fp, trigger_id, opened_at) VALUES ($1, $2, $3, $4, $5)
     ON CONFLICT (route, dedup_key) DO UPDATE SET
       key_fp = excluded.key_fp, trigger_id = excluded.trigger_id, opened_at = excluded.opened_at`,
    [route, dedupKey, keyFp, triggerId, now],
  );
}

async function openAlertsOf(
  c: pg.PoolClient,
  events: readonly PendingEvent[],
): Promise<Map<string, OpenAlert>> {
  const withKey = events.filter((e) => e.dedupKey !== null);
  const out = new Map<string, OpenAlert>();
  if (!withKey.length) return out;
  const rows = await c.query<{
    route: string;
    dedup_key: string;
    key_fp: string;
    trigger_id: string;
    sent: boolean;
  }>(
    `SELECT o.route, o.dedup_key, o.key_fp, o.trigger_id, o.sent FROM open_alerts o
     JOIN unnest($1::text[], $2::text[]) AS q(route, dedup_key) ON o.route = q.route AND o.dedup_key = q.dedup_key`,
    [withKey.map((e) => e.route), withKey.map((e) => e.dedupKey)],
  );
  for (const r of rows.rows)
    out.set(`${r.route}\n${r.dedup_key}`, { keyFp: r.key_fp, triggerId: Number(r.trigger_id), sent: r.sent });
  return out;
}

/** A row of `events` as the dispatcher holds it (bigint columns arrive as strings). */
function pendingOf(r: Omit<EventRow, 'message_id' | 'rule' | 'body' | 'last_error'>): PendingEvent {
  return {
    id: Number(r.id),
    route: r.route,
    action: r.action as EventAction,
    dedupKey: r.dedup_key,
    keyFp: r.key_fp,
    receivedAt: Number(r.received_at),
    sourceAt: Number(r.source_at),
    attempts: r.attempts,
    nextAttemptAt: Number(r.next_attempt_at),
  };
}

function toStored(r: EventRow): StoredEvent {
  return {
    ...pendingOf(r),
    messageId: r.message_id,
    rule: r.rule,
    body: JSON.parse(r.body) as EventBody,
    lastError: r.last_error,
  };
}
