import { createHash } from 'node:crypto';
import pg from 'pg';
import type { PostgresConfig } from '../../config/load.js';
import type { KeyOwnership, OwnershipHandlers, SpoolObserver } from '../spool.js';
import { clientConfig, describePgError, isConnectionError } from './connection.js';

/** How the replicas share the keys; the defaults give a failover well within 10 seconds. */
export interface LeaseTiming {
  /** How often a replica renews its lease and looks at the keys (ms). */
  tickMs: number;
  /** How long a lease lasts on the database's clock after its renewal began (ms). */
  leaseMs: number;
  /**
   * How long a replica keeps sending after the start of its last successful renewal (ms, its own
   * clock). Shorter than the lease: a replica cut off from the database stops before anyone may
   * take its keys, with `leaseMs - graceMs` for its in-flight requests to be aborted.
   */
  graceMs: number;
}

export const DEFAULT_LEASE_TIMING: LeaseTiming = { tickMs: 1000, leaseMs: 4000, graceMs: 3000 };

/** The longest a reconnection waits between attempts (ms). */
const MAX_RECONNECT_MS = 5000;

export interface LeaseOwnershipOptions {
  config: PostgresConfig;
  /** This replica's id: unique per process. */
  replica: string;
  /** What operators see for it (the host name: the pod's name on Kubernetes). */
  name: string;
  /** NOTIFY channels of this schema: new events, and ownership changes. */
  channels: { events: string; owners: string };
  observer?: SpoolObserver;
  timing?: Partial<LeaseTiming>;
  /** Another replica committed events for `keyFp` from `fromId` on. */
  onEvents(replica: string, keyFp: string, fromId: number): void;
}

interface KeyRow {
  key_fp: string;
  owner: string | null;
  depth: string;
  live: boolean;
}

interface ReplicaRow {
  id: string;
  keys: string[];
}

/**
 * Key ownership among replicas sharing one PostgreSQL spool: leases, not locks held by a
 * connection, because a replica must know by its own clock when to stop sending, whatever the
 * network does (an advisory lock dies with the server's view of the connection, which a partition
 * can leave alive for minutes while another replica could not tell).
 *
 * Each replica renews a lease on the database's clock every tick (`replicas.expires_at`) over a
 * connection of its own, which also LISTENs for new events and ownership changes. Keys belong to
 * replicas in `key_owners`; a key whose owner's lease expired is free. Every tick, under a row
 * lock on `key_owners` (the replicas take turns), free keys go to the live replica with the fewest
 * keys among those configured with them, and a replica with more than its share hands one over:
 * it stops the key's lane, lets its request end, writes what it sent, then names the new owner.
 *
 * A replica stops sending for its keys at once when its connection breaks or a renewal fails, and
 * at the latest `graceMs` after the start of its last successful renewal; nobody takes them before
 * `leaseMs` after that renewal on the database's clock. SIGTERM (stop()) gives them up at once.
 */
export class LeaseOwnership implements KeyOwnership {
  readonly #o: LeaseOwnershipOptions;
  readonly #t: LeaseTiming;
  #client: pg.Client | undefined;
  #handlers: OwnershipHandlers | undefined;
  #keys: string[] = [];
  /** Keys this replica dispatches (their lanes exist, loading or running). */
  readonly #owned = new Set<string>();
  /** Keys being handed over: no new request may start. */
  readonly #handing = new Set<string>();
  /**
   * Keys whose lanes are stopped and written out, with the replica to name as their owner (null:
   * whoever takes free keys): the next look writes it, in its own transaction, so that what it
   * reads of the table and what this replica believes it owns never disagree.
   */
  readonly #handoffs = new Map<string, string | null>();
  /** performance.now() until which this replica may send (its last renewal + graceMs). */
  #validUntil = 0;
  #validity: NodeJS.Timeout | undefined;
  #timer: NodeJS.Timeout | undefined;
  #ticking = false;
  #again = false;
  #stopped = false;
  #connected = false;
  #down: string | null = null;
  #reconnectMs = 250;
  #nextConnectAt = 0;
  #depths: () => ReadonlyMap<string, number> = () => new Map();
  #published = new Map<string, number>();
  #unowned = 0;
  /** Bumped when the configured keys change; the renewal that wrote a generation's keys records it. */
  #generation = 1;
  #registeredGeneration = 0;
  #registrationWaiters: Array<() => void> = [];
  /** Keys with pending events that nobody can own, when they were first seen so (performance.now()). */
  readonly #strays = new Map<string, number>();
  readonly #reported = new Map<string, number>();

  constructor(opts: LeaseOwnershipOptions) {
    this.#o = opts;
    this.#t = { ...DEFAULT_LEASE_TIMING, ...opts.timing };
  }

  start(keyFps: readonly string[], handlers: OwnershipHandlers): void {
    this.#keys = [...new Set(keyFps)].sort();
    this.#handlers = handlers;
    this.#stopped = false;
    this.#kick();
  }

  setKeys(keyFps: readonly string[]): void {
    this.#keys = [...new Set(keyFps)].sort();
    this.#generation++;
    // The next look registers them, hands removed ones back and takes added ones.
    this.#kick();
  }

  /**
   * Resolves once the keys configured here are in this replica's row of `replicas` (its first
   * renewal, or the one after setKeys), or after the grace period if the database does not answer:
   * commits wait for it, so that another replica never sees an alert on a key it cannot know of.
   */
  registered(): Promise<void> {
    if (!this.#handlers || this.#stopped || this.#registeredGeneration === this.#generation)
      return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, this.#t.graceMs);
      this.#registrationWaiters.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  holds(keyFp: string): boolean {
    return (
      this.#owned.has(keyFp) &&
      !this.#handing.has(keyFp) &&
      performance.now() < this.#validUntil &&
      !this.#stopped
    );
  }

  /** Whether this replica dispatches `keyFp` now (its lane may still be loading). */
  owns(keyFp: string): boolean {
    return this.#owned.has(keyFp);
  }

  depthElsewhere(keyFp: string): number {
    return this.#published.get(keyFp) ?? 0;
  }

  reportDepths(depths: () => ReadonlyMap<string, number>): void {
    this.#depths = depths;
  }

  unownedWithPending(): number {
    return this.#unowned;
  }

  /** Why this replica holds no lease now, or null. */
  problem(): string | null {
    return this.#down;
  }

  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    for (const w of this.#registrationWaiters.splice(0)) w();
    if (this.#timer) clearTimeout(this.#timer);
    if (this.#validity) clearTimeout(this.#validity);
    while (this.#ticking) await new Promise((r) => setTimeout(r, 5));
    const client = this.#client;
    this.#owned.clear();
    if (!client || !this.#connected) {
      await this.#disconnect();
      return;
    }
    try {
      // Free the keys and the lease in one go: the others take the keys on the notification.
      await client.query('BEGIN');
      await client.query('UPDATE key_owners SET owner = NULL, since = now() WHERE owner = $1', [
        this.#o.replica,
      ]);
      await client.query('DELETE FROM replicas WHERE id = $1', [this.#o.replica]);
      await client.query('SELECT pg_notify($1, $2)', [
        this.#o.channels.owners,
        `released ${this.#o.replica}`,
      ]);
      await client.query('COMMIT');
    } catch (err) {
      // The lease runs out by itself: the keys move a few seconds later.
      this.#o.observer?.databaseError?.('ownership', err);
    }
    await this.#disconnect();
  }

  /** Runs a tick now (or right after the one running), then every tickMs. */
  #kick(): void {
    if (this.#stopped) return;
    if (this.#ticking) {
      this.#again = true;
      return;
    }
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#ticking = true;
    void this.#tick().finally(() => {
      this.#ticking = false;
      if (this.#stopped) return;
      if (this.#again) {
        this.#again = false;
        this.#kick();
        return;
      }
      this.#timer = setTimeout(() => this.#kick(), this.#t.tickMs);
      this.#timer.unref();
    });
  }

  async #tick(): Promise<void> {
    if (!this.#connected) {
      if (performance.now() < this.#nextConnectAt) return;
      if (!(await this.#connect())) return;
    }
    const client = this.#client as pg.Client;
    const started = performance.now();
    const generation = this.#generation;
    try {
      await client.query(
        `INSERT INTO replicas (id, name, keys, heartbeat_at, expires_at)
         VALUES ($1, $2, $3, clock_timestamp(), clock_timestamp() + $4 * interval '1 millisecond')
         ON CONFLICT (id) DO UPDATE SET keys = excluded.keys, heartbeat_at = excluded.heartbeat_at,
           expires_at = excluded.expires_at`,
        [this.#o.replica, this.#o.name, this.#keys, this.#t.leaseMs],
      );
      this.#renewed(started);
      this.#registeredGeneration = generation;
      if (generation === this.#generation) for (const w of this.#registrationWaiters.splice(0)) w();
      if (this.#down !== null) {
        this.#down = null;
        this.#o.observer?.databaseRecovered?.();
      }
    } catch (err) {
      if (this.#stopped) return;
      this.#o.observer?.databaseError?.('ownership', err);
      this.#lose(`Cannot renew the key lease: ${describePgError(err)}`);
      await this.#disconnect();
      return;
    }
    try {
      await this.#share(client);
    } catch (err) {
      if (this.#stopped) return;
      // The lease is renewed: a failed look at the keys (a lock timeout) only waits for the next tick.
      this.#o.observer?.databaseError?.('ownership', err);
      if (isConnectionError(err)) {
        this.#lose(`Lost the connection to the database: ${describePgError(err)}`);
        await this.#disconnect();
      }
    }
  }

  /** A renewal that began at `started` succeeded: sending is allowed until started + graceMs. */
  #renewed(started: number): void {
    this.#validUntil = started + this.#t.graceMs;
    if (this.#validity) clearTimeout(this.#validity);
    this.#validity = setTimeout(() => {
      if (performance.now() >= this.#validUntil)
        this.#lose(`No lease renewal for ${this.#t.graceMs} ms: the database is too slow or unreachable`);
    }, this.#validUntil - performance.now());
    this.#validity.unref();
  }

  /** One look at the keys, in a transaction that holds every key_owners row (the replicas take turns). */
  async #share(client: pg.Client): Promise<void> {
    const me = this.#o.replica;
    const depths = this.#depths();
    let notify = false;
    const handOver: Array<{ fp: string; to: string }> = [];
    await client.query('BEGIN');
    try {
      await client.query("SET LOCAL lock_timeout = '2s'");
      // The replicas take turns for the whole look (one lock, so no order of row locks can deadlock).
      await client.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', [
        `pd-relay owners ${this.#o.config.schema}`,
      ]);
      if (this.#keys.length)
        await client.query(
          'INSERT INTO key_owners (key_fp) SELECT unnest($1::text[]) ON CONFLICT DO NOTHING',
          [this.#keys],
        );
      // Handovers whose lanes are written out: the table names their new owners before it is read.
      const handed = [...this.#handoffs].filter(([fp]) => this.#owned.has(fp));
      if (handed.length) {
        await client.query(
          `UPDATE key_owners k SET owner = h.owner, since = now()
           FROM unnest($1::text[], $2::text[]) AS h(fp, owner) WHERE k.key_fp = h.fp AND k.owner = $3`,
          [handed.map(([fp]) => fp), handed.map(([, to]) => to), me],
        );
        notify = true;
      }
      const mine = [...this.#owned];
      if (mine.length)
        await client.query(
          `UPDATE key_owners k SET depth = d.depth FROM unnest($1::text[], $2::bigint[]) AS d(fp, depth)
           WHERE k.key_fp = d.fp AND k.owner = $3`,
          [mine, mine.map((fp) => depths.get(fp) ?? 0), me],
        );
      const keys = (
        await client.query<KeyRow>(
          `SELECT k.key_fp, k.owner, k.depth, (r.id IS NOT NULL) AS live
           FROM key_owners k LEFT JOIN replicas r ON r.id = k.owner AND r.expires_at > clock_timestamp()
           ORDER BY k.key_fp`,
        )
      ).rows;
      const replicas = (
        await client.query<ReplicaRow>(
          'SELECT id, keys FROM replicas WHERE expires_at > clock_timestamp() ORDER BY id',
        )
      ).rows;

      const owners = new Map<string, string | null>();
      const count = new Map<string, number>(replicas.map((r) => [r.id, 0]));
      for (const k of keys) {
        const owner = k.live ? k.owner : null;
        owners.set(k.key_fp, owner);
        if (owner) count.set(owner, (count.get(owner) ?? 0) + 1);
      }
      const serves = (r: ReplicaRow, fp: string) => r.keys.includes(fp);
      // Free keys go to the live replica configured with them that has the fewest keys.
      const assigned: Array<{ fp: string; owner: string }> = [];
      for (const k of keys) {
        if (owners.get(k.key_fp) !== null) continue;
        const candidates = replicas.filter((r) => serves(r, k.key_fp));
        if (!candidates.length) continue;
        const to = fewest(candidates, k.key_fp, count);
        owners.set(k.key_fp, to);
        count.set(to, (count.get(to) ?? 0) + 1);
        assigned.push({ fp: k.key_fp, owner: to });
      }
      if (assigned.length) {
        await client.query(
          `UPDATE key_owners k SET owner = a.owner, since = now()
           FROM unnest($1::text[], $2::text[]) AS a(fp, owner) WHERE k.key_fp = a.fp`,
          [assigned.map((a) => a.fp), assigned.map((a) => a.owner)],
        );
        notify = true;
      }
      // More than a fair share: hand one key over per tick to a replica with fewer (by two or more,
      // so that an odd key does not move back and forth).
      const mineNow = keys.filter((k) => owners.get(k.key_fp) === me && this.#owned.has(k.key_fp));
      for (const k of mineNow) {
        if (this.#handing.size || handOver.length) break;
        const candidates = replicas.filter((r) => r.id !== me && serves(r, k.key_fp));
        if (!candidates.length) continue;
        const to = fewest(candidates, k.key_fp, count);
        if ((count.get(me) ?? 0) - (count.get(to) ?? 0) < 2) continue;
        handOver.push({ fp: k.key_fp, to });
      }
      // Not configured here (another replica's configuration gave it to this one): give it back.
      const foreign = keys
        .filter(
          (k) => owners.get(k.key_fp) === me && !this.#keys.includes(k.key_fp) && !this.#owned.has(k.key_fp),
        )
        .map((k) => k.key_fp);
      if (foreign.length) {
        await client.query('UPDATE key_owners SET owner = NULL WHERE owner = $1 AND key_fp = ANY($2)', [
          me,
          foreign,
        ]);
        for (const fp of foreign) owners.set(fp, null);
        notify = true;
      }
      this.#published = new Map(keys.map((k) => [k.key_fp, Number(k.depth)]));
      // Rows of replicas long gone.
      await client.query("DELETE FROM replicas WHERE expires_at < clock_timestamp() - interval '1 hour'");
      if (notify) await client.query('SELECT pg_notify($1, $2)', [this.#o.channels.owners, `assigned ${me}`]);
      await client.query('COMMIT');

      for (const [fp] of handed) {
        this.#owned.delete(fp);
        this.#handing.delete(fp);
        this.#handoffs.delete(fp);
      }
      this.#reconcile(owners);
      await this.#strayKeys(client, owners, replicas);
    } catch (err) {
      await client.query('ROLLBACK').catch(() => {});
      throw err;
    }
    for (const { fp, to } of handOver) void this.#handOver(fp, to);
  }

  /** Brings the lanes in line with the table: keys given to this replica start, keys taken away stop. */
  #reconcile(owners: ReadonlyMap<string, string | null>): void {
    const me = this.#o.replica;
    const gained: string[] = [];
    const gone: string[] = [];
    for (const [fp, owner] of owners) {
      if (owner === me && !this.#owned.has(fp) && this.#keys.includes(fp)) gained.push(fp);
    }
    for (const fp of this.#owned) {
      if (owners.get(fp) !== me && !this.#handing.has(fp)) gone.push(fp);
      // No longer configured here (a reload removed it): stop its lane, then free it.
      else if (!this.#keys.includes(fp) && !this.#handing.has(fp)) void this.#handOver(fp, null);
    }
    if (gone.length) {
      for (const fp of gone) this.#owned.delete(fp);
      this.#handlers?.lost(gone);
    }
    if (gained.length) {
      for (const fp of gained) this.#owned.add(fp);
      this.#handlers?.acquired(gained);
    }
  }

  /**
   * Keys with pending events that no replica can dispatch: configured on no live replica (any
   * more), or never a key (a no_route dead letter retried). Seen so on two looks in a row, its
   * events are moved to configured keys (OwnershipHandlers.orphaned) by the replica that saw it.
   */
  async #strayKeys(
    client: pg.Client,
    owners: ReadonlyMap<string, string | null>,
    replicas: readonly ReplicaRow[],
  ): Promise<void> {
    // A loose index scan: one probe of events_key per distinct key, not a scan of the events.
    const pending = (
      await client.query<{ fp: string }>(
        `WITH RECURSIVE fps AS (
           (SELECT key_fp AS fp FROM events ORDER BY key_fp LIMIT 1)
           UNION ALL
           SELECT (SELECT key_fp FROM events WHERE key_fp > fps.fp ORDER BY key_fp LIMIT 1) FROM fps WHERE fps.fp IS NOT NULL
         ) SELECT fp FROM fps WHERE fp IS NOT NULL`,
      )
    ).rows.map((r) => r.fp);
    const now = performance.now();
    let unowned = 0;
    const orphans: string[] = [];
    for (const fp of pending) {
      if (owners.get(fp)) {
        this.#strays.delete(fp);
        continue;
      }
      unowned++;
      const servable = replicas.some((r) => r.keys.includes(fp));
      if (servable) continue;
      const since = this.#strays.get(fp) ?? now;
      this.#strays.set(fp, since);
      // Never a key, or no live replica configured with it on two looks in a row (one look could
      // be a replica's renewal that had not landed yet).
      if (fp !== '' && owners.has(fp) && now - since < this.#t.tickMs) continue;
      const reported = this.#reported.get(fp);
      if (reported !== undefined && now - reported < 30_000) continue;
      this.#reported.set(fp, now);
      orphans.push(fp);
    }
    for (const fp of this.#strays.keys()) if (!pending.includes(fp)) this.#strays.delete(fp);
    this.#unowned = unowned;
    if (orphans.length) this.#handlers?.orphaned(orphans);
  }

  /**
   * Hands `fp` to replica `to` (null: to whoever takes free keys): lane stopped and written out
   * first, then the next look names the new owner in the table. Not a statement of its own on
   * the lease connection: one running beside a look would change the table after the look read
   * it, and the look would take the key back while the new owner takes it too.
   */
  async #handOver(fp: string, to: string | null): Promise<void> {
    if (!this.#handlers || this.#handing.has(fp) || !this.#owned.has(fp)) return;
    this.#handing.add(fp);
    try {
      await this.#handlers.release([fp]);
    } catch (err) {
      this.#o.observer?.databaseError?.('ownership', err);
      // Its deliveries may not be written: still ours in the table, the next look takes it again
      // and reads its queue (or another replica does, once this lease lapses).
      this.#handing.delete(fp);
      if (this.#owned.delete(fp)) this.#handlers.lost([fp]);
      return;
    }
    if (this.#stopped || !this.#owned.has(fp)) {
      this.#handing.delete(fp);
      return;
    }
    this.#handoffs.set(fp, to);
    this.#kick();
  }

  async #connect(): Promise<boolean> {
    const client = new pg.Client({
      ...clientConfig(this.#o.config, 'pd-relay'),
      // A renewal slower than the grace period is as good as none.
      query_timeout: Math.min(this.#o.config.statementTimeoutMs, this.#t.graceMs),
      statement_timeout: Math.min(this.#o.config.statementTimeoutMs, this.#t.graceMs),
    });
    client.on('error', (err) => {
      if (this.#client !== client || this.#stopped) return;
      this.#o.observer?.databaseError?.('ownership', err);
      this.#lose(`Lost the connection to the database: ${describePgError(err)}`);
      void this.#disconnect();
    });
    client.on('end', () => {
      if (this.#client !== client || this.#stopped) return;
      this.#lose('The database closed the connection');
      void this.#disconnect();
    });
    client.on('notification', (msg) => this.#notified(msg.channel, msg.payload ?? ''));
    this.#client = client;
    try {
      await client.connect();
      await client.query(`LISTEN ${this.#o.channels.events}`);
      await client.query(`LISTEN ${this.#o.channels.owners}`);
      this.#connected = true;
      this.#reconnectMs = 250;
      return true;
    } catch (err) {
      this.#o.observer?.databaseError?.('connect', err);
      this.#lose(`Cannot connect to the database: ${describePgError(err)}`);
      await this.#disconnect();
      return false;
    }
  }

  async #disconnect(): Promise<void> {
    const client = this.#client;
    this.#client = undefined;
    this.#connected = false;
    if (!this.#stopped) {
      this.#nextConnectAt = performance.now() + this.#reconnectMs;
      this.#reconnectMs = Math.min(MAX_RECONNECT_MS, this.#reconnectMs * 2);
    }
    if (client) await client.end().catch(() => {});
  }

  /** Stops sending for every key at once: another replica may take them once the lease lapses. */
  #lose(problem: string): void {
    this.#validUntil = 0;
    // Handovers not written yet: the lease lapses instead, and the keys are free for anyone.
    for (const fp of this.#handoffs.keys()) this.#handing.delete(fp);
    this.#handoffs.clear();
    // What it last saw of the others is stale from now on.
    this.#unowned = 0;
    if (this.#owned.size) {
      const lost = [...this.#owned];
      this.#owned.clear();
      this.#handlers?.lost(lost);
    }
    if (this.#down === null && !this.#stopped) {
      this.#down = problem;
      this.#o.observer?.databaseLost?.(problem);
    }
  }

  #notified(channel: string, payload: string): void {
    if (channel === this.#o.channels.owners) {
      this.#kick();
      return;
    }
    if (channel !== this.#o.channels.events) return;
    const [replica, keyFp, from] = payload.split(' ');
    if (replica === undefined || keyFp === undefined || from === undefined) return;
    this.#o.onEvents(replica, keyFp, Number(from));
  }
}

/** The candidate with the fewest keys; ties broken by rendezvous hashing of the key, so all replicas agree. */
function fewest(candidates: readonly ReplicaRow[], fp: string, count: ReadonlyMap<string, number>): string {
  let best = '';
  let bestN = Number.POSITIVE_INFINITY;
  let bestScore = '';
  for (const r of candidates) {
    const n = count.get(r.id) ?? 0;
    const score = createHash('sha256').update(`${fp}\n${r.id}`).digest('hex');
    if (n < bestN || (n === bestN && score > bestScore)) {
      best = r.id;
      bestN = n;
      bestScore = score;
    }
  }
  return best;
}

/** NOTIFY channel names for a schema: identifiers of at most 63 bytes. */
export function channelsFor(schema: string): { events: string; owners: string } {
  const base =
    schema.length <= 48 ? schema : `s${createHash('sha256').update(schema).digest('hex').slice(0, 16)}`;
  return { events: `${base}_events`, owners: `${base}_owners` };
}
