import type { EventAction, EventBody } from '../pagerduty/types.js';
import type { OutboundEvent } from '../rules/types.js';
import type { SpoolEntry } from './types.js';

/**
 * Why an event left the queue without being delivered. A short fixed list: it is a metric label.
 * `rejected`: PagerDuty answered 400; `bad_key`: the routing key is unknown or refused; `too_large`:
 * 413; `invalid`: fails PagerDuty's schema, never sent; `expired`: still failing after
 * `delivery.maxAgeSeconds`; `no_route`: its route has no keys in the configuration.
 */
export type DeadLetterReason = 'rejected' | 'bad_key' | 'too_large' | 'invalid' | 'expired' | 'no_route';
export const DEAD_LETTER_REASONS: readonly DeadLetterReason[] = [
  'rejected',
  'bad_key',
  'too_large',
  'invalid',
  'expired',
  'no_route',
];

/**
 * An undelivered event as the dispatcher holds it in memory: no body (bodies stay on disk until the
 * event is sent, so that 100,000 pending events fit in a small heap).
 */
export interface PendingEvent {
  /** Spool order: increasing, never reused. FIFO per key follows it. */
  id: number;
  route: string;
  action: EventAction;
  dedupKey: string | null;
  /** Secret.fingerprint() of the routing key it goes through (never the key itself). */
  keyFp: string;
  /** Epoch ms when ingress accepted it (or when an operator retried its dead letter). */
  receivedAt: number;
  /**
   * Epoch ms of the state it reports, at its source: the rule's payload.timestamp, else the SNS
   * Timestamp (OutboundEvent.time); 0 when neither was a date. Time to page is measured from it.
   */
  sourceAt: number;
  /** Failed attempts so far. */
  attempts: number;
  /** Epoch ms before which it must not be sent (backoff survives restarts); 0 for now. */
  nextAttemptAt: number;
}

/** A pending event with everything needed to send it. */
export interface StoredEvent extends PendingEvent {
  messageId: string;
  rule: string;
  body: EventBody;
  lastError: string | null;
}

/** An event that will not be delivered without an operator (`pd-relay spool retry-dead-letters`). */
export interface DeadLetter extends StoredEvent {
  reason: DeadLetterReason;
  /** PagerDuty's `errors` text, or what went wrong, in a sentence. */
  detail: string;
  deadAt: number;
}

export type CommitResult =
  | {
      status: 'committed';
      /** Events queued for delivery, in order. */
      events: PendingEvent[];
      /** Events that could not be queued (their route has no keys), already dead letters. */
      deadLettered: Array<{ event: PendingEvent; reason: DeadLetterReason; detail: string }>;
      /** Acknowledges and resolves that cannot follow their trigger (its key was removed). */
      orphaned: PendingEvent[];
      /**
       * Events not queued because they are older (OutboundEvent.time) than the newest event already
       * accepted for their route and dedup key (`newerAt`): a late SNS retry of an earlier state.
       */
      stale: Array<{ event: OutboundEvent; newerAt: number }>;
    }
  | { status: 'duplicate' };

/** Where an open alert's events go: the key its trigger used, and the trigger's spool id. */
export interface OpenAlert {
  keyFp: string;
  triggerId: number;
  /**
   * Whether a trigger of it reached PagerDuty (so the alert is open there, on `keyFp`) and no
   * resolve was delivered since: until then its queued events may still move to another key.
   */
  sent: boolean;
}

/**
 * Where the pool would send an event, before the open-alert map has its say: the route's keys and
 * the one chosen for it (the rendezvous key of its dedup key, or the least-loaded key when it has
 * none), or why it cannot be queued at all.
 */
export type Proposal =
  | { pool: readonly string[]; keyFp: string }
  | { deadLetter: DeadLetterReason; detail: string };

/**
 * What was decided for one event. `orphaned`: an acknowledge or resolve whose open alert's trigger
 * went through a key that is no longer in the pool; it goes elsewhere and PagerDuty will most likely
 * drop it.
 */
export type Assignment =
  | { keyFp: string; orphaned?: boolean }
  | { deadLetter: DeadLetterReason; detail: string };

/**
 * The fan-out policy's half that needs no state: proposes each event's key from the route's pool.
 * The spool completes it with the open-alert map inside its commit transaction (decideKey), so
 * that per-key FIFO order holds from the moment SNS gets its 200 and two concurrent commits can
 * never give one alert two keys.
 */
export interface KeyAssigner {
  propose(event: Pick<OutboundEvent, 'route' | 'action' | 'dedupKey'>): Proposal;
  /** The transaction ended (committed or rolled back): forget per-batch bookkeeping. */
  endBatch(): void;
}

/**
 * The one rule every spool applies inside its transaction. PagerDuty scopes a dedup_key to the
 * routing key (https://developer.pagerduty.com/docs/events-api-v2/trigger-events/#alert-de-duplication:
 * "acknowledge or resolve events sent via a different routing_key from the original will be
 * dropped"), so while an alert is open its events go through the key of its trigger as long as
 * that key is in the pool. The PostgreSQL spool applies the same rule in SQL (its commit_batch
 * function); the contract suite holds both to it.
 */
export function decideKey(
  proposal: Proposal,
  action: OutboundEvent['action'],
  open: OpenAlert | undefined,
): Assignment {
  if ('deadLetter' in proposal) return proposal;
  if (!open) return { keyFp: proposal.keyFp };
  if (proposal.pool.includes(open.keyFp)) return { keyFp: open.keyFp };
  return action === 'trigger' ? { keyFp: proposal.keyFp } : { keyFp: proposal.keyFp, orphaned: true };
}

/**
 * The triggers a reroute moved, by route and dedup key: where from, where to, and the trigger's id
 * (the events after it follow).
 */
export function followMoves(
  results: ReadonlyArray<{ event: PendingEvent; assignment: Assignment }>,
): Map<string, { from: string; to: string; after: number }> {
  const moves = new Map<string, { from: string; to: string; after: number }>();
  for (const { event, assignment } of results) {
    if (event.action !== 'trigger' || event.dedupKey === null || !('keyFp' in assignment)) continue;
    if (assignment.keyFp === event.keyFp) continue;
    moves.set(`${event.route}\n${event.dedupKey}`, {
      from: event.keyFp,
      to: assignment.keyFp,
      after: event.id,
    });
  }
  return moves;
}

/** Pending events per route and key, for `spool stats` and the queue gauges. */
export interface PendingGroup {
  route: string;
  keyFp: string;
  count: number;
  oldestReceivedAt: number;
  /** Next try of the queue's head (the event holding the others back); 0 for now. */
  nextAttemptAt: number;
  /** Failed attempts of the queue's head. */
  headAttempts: number;
}

export interface SpoolCounts {
  pending: number;
  deadLetters: number;
  deadLettersByReason: Partial<Record<DeadLetterReason, number>>;
  messageIds: number;
  openAlerts: number;
}

/** What the metrics gauges show: cheap to read at every scrape (no count over the events). */
export type GaugeCounts = Pick<SpoolCounts, 'deadLetters' | 'messageIds' | 'openAlerts'>;

/** What a spool reports about itself (src/metrics/delivery.ts turns it into logs and metrics). */
export interface SpoolObserver {
  committed(info: { durationMs: number; entries: number; events: number }): void;
  unavailable(problem: string): void;
  recovered(): void;
  /** The onQueued listener threw (a bug); the events are committed and resume on restart. */
  listenerFailed(err: unknown): void;
  /** Events another process queued (retried dead letters) were picked up. */
  adopted?(count: number): void;
  /** A statement against a database server failed (PostgreSQL), by what it was for. */
  databaseError?(operation: DatabaseOperation, err: unknown): void;
  /** The database cannot be reached: this process holds no key until it can again. */
  databaseLost?(problem: string): void;
  databaseRecovered?(): void;
}

/** What a failed database statement was for: a short fixed list, a metric label. */
export type DatabaseOperation = 'connect' | 'commit' | 'dispatch' | 'ownership' | 'admin';

/**
 * What the dispatcher is told about the keys it may send for. Exactly one process sends for a
 * key at a time: with SQLite that is the process holding the spool (its file lock says so), with
 * PostgreSQL the replica holding the key's lease (src/spool/postgres/ownership.ts).
 */
export interface OwnershipHandlers {
  /** These keys are this process's to send for now: load their queues and start. */
  acquired(keyFps: readonly string[]): void;
  /**
   * Hand these keys over: start nothing new for them, let in-flight requests end, make the
   * writes about them durable (deliveries, send times), then resolve. The next owner starts
   * from what the spool holds.
   */
  release(keyFps: readonly string[]): Promise<void>;
  /**
   * These keys are no longer this process's (its lease could not be renewed: the database is
   * unreachable): stop at once, abort what is in flight. Events stay queued for the next owner.
   */
  lost(keyFps: readonly string[]): void;
  /**
   * Keys with pending events that no process can send for (not configured anywhere any more):
   * their events must be moved to configured keys (Spool.reroute).
   */
  orphaned(keyFps: readonly string[]): void;
}

/** Key ownership, as the spool arranges it. */
export interface KeyOwnership {
  /** Starts taking part with `keyFps`, the keys configured here; reports through `handlers`. */
  start(keyFps: readonly string[], handlers: OwnershipHandlers): void;
  /**
   * The configured keys changed (a reload): added ones may become this process's, removed ones
   * are handed back (OwnershipHandlers.release) and, once no process is configured with them,
   * reported as orphaned.
   */
  setKeys(keyFps: readonly string[]): void;
  /**
   * Resolves once the other processes can know the keys configured here (a shared spool keeps an
   * open alert on a key any live process is configured with): before events move to new keys.
   */
  registered(): Promise<void>;
  /** Whether this process may start a request for `keyFp` now (checked before every send). */
  holds(keyFp: string): boolean;
  /** Queue depths of the keys other processes own, as they last published them (least-loaded). */
  depthElsewhere(keyFp: string): number;
  /** Publishes this process's queue depths (read at each lease renewal). */
  reportDepths(depths: () => ReadonlyMap<string, number>): void;
  /**
   * Keys with pending events that no live process owns, as last seen (a shared spool's health);
   * undefined where one process owns every key.
   */
  unownedWithPending?(): number | undefined;
  /**
   * Gives every key up for good (SIGTERM): call after the dispatcher stopped and its writes are
   * durable; resolves once the other processes may take them.
   */
  stop(): Promise<void>;
}

/**
 * The durable queue between ingress and dispatch: a contract with two implementations, the
 * embedded SQLite file (src/spool/sqlite) for one replica and a PostgreSQL database
 * (src/spool/postgres) shared by several. test/spool/contract.ts holds both to it.
 *
 * Writes other than commit (delivered, reschedule, deadLetter, recordSend) are queued and land in
 * the next group transaction: losing one in a crash means an event is sent again, never lost.
 */
export interface Spool {
  /** Where it lives, for messages (never a password). */
  readonly location: string;
  /** The version of its schema (`pd-relay spool stats`, `check`). */
  readonly schemaVersion: number;
  /** Whether other processes share it (PostgreSQL): their commits reach onQueued too. */
  readonly shared: boolean;
  readonly ownership: KeyOwnership;
  /**
   * Durably records the message id and its events (keys assigned in the same transaction).
   * Concurrent commits share one transaction. Rejects with SpoolUnavailableError when it cannot.
   */
  commit(entry: SpoolEntry): Promise<CommitResult>;
  /**
   * Called with events as they become pending, in spool order per key, the listener keeping what
   * it owns. One process's spool (SQLite): the events it committed (before its commit resolves)
   * and those another process queued (retried dead letters). A shared spool (PostgreSQL): the
   * events of the keys this process owns, whoever committed them, in commit order (a replica's own
   * commits included: only so does a trigger accepted by one replica stay ahead of the resolve
   * that SNS delivered to another).
   */
  onQueued(listener: (events: PendingEvent[]) => void): void;
  /** Every undelivered event of these keys (all keys when omitted) with id ≥ `fromId`, in order. */
  pending(keyFps?: readonly string[], fromId?: number): Promise<PendingEvent[]>;
  load(id: number): Promise<StoredEvent | undefined>;
  delivered(event: PendingEvent): void;
  /** Persists `event.attempts` and `event.nextAttemptAt` after a failed attempt. */
  reschedule(event: PendingEvent, lastError: string): void;
  deadLetter(event: PendingEvent, reason: DeadLetterReason, detail: string): void;
  /**
   * A request through this key ended at `endedAt` (epoch ms); entries of the key older than
   * `forgetBefore` go. Lets the rate window outlive a restart and a failover.
   */
  recordSend(keyFp: string, endedAt: number, forgetBefore: number): void;
  /** Resolves once every write queued before the call is durable. */
  flush(): Promise<void>;
  /**
   * Moves pending events to the keys `decide` picks (their key left the configuration, or a
   * reload added keys), reading and updating the open-alert map in one transaction; an event that
   * is no longer pending on the key the caller saw it on is left alone, and with `fromOwned` one
   * on a key this process no longer owns. The later events of a moved trigger's alert follow it. Returns the decision for each event that was
   * still pending; moved events reach their new key's owner through onQueued.
   */
  reroute(
    events: readonly PendingEvent[],
    decide: (event: PendingEvent, open: OpenAlert | undefined) => Assignment,
    opts?: { fromOwned?: boolean },
  ): Promise<Array<{ event: PendingEvent; assignment: Assignment }>>;
  /** Ends of requests since `since` (epoch ms), per key fingerprint, ascending. */
  recentSends(since: number, keyFps?: readonly string[]): Promise<Map<string, number[]>>;
  deadLetters(opts?: { ids?: number[]; limit?: number }): Promise<DeadLetter[]>;
  /** Queues dead letters again (all, or those with the given ids); returns how many. */
  retryDeadLetters(ids?: number[]): Promise<number>;
  /** Deletes dead letters for good (all, or those with the given ids); returns how many. */
  discardDeadLetters(ids?: number[]): Promise<number>;
  pendingGroups(): Promise<PendingGroup[]>;
  counts(): Promise<SpoolCounts>;
  gaugeCounts(): Promise<GaugeCounts>;
  /**
   * Forgets SNS MessageIds accepted before `before` (epoch ms), and the event times of dedup keys
   * last seen before it; returns how many MessageIds.
   */
  pruneMessageIds(before: number): Promise<number>;
  /** Forgets open alerts whose last trigger was queued before `before` (epoch ms); returns how many. */
  pruneOpenAlerts(before: number): Promise<number>;
  /** The open alert of a route and dedup key, if any (for tests and the CLI). */
  openAlert(route: string, dedupKey: string): Promise<OpenAlert | undefined>;
  /** Whether a committed message had this SNS MessageId. */
  hasMessage(messageId: string): Promise<boolean>;
  /** Why commits currently fail, or null. */
  problem(): string | null;
  /** Writes what is queued, stops, releases what it holds (locks, connections). */
  close(): Promise<void>;
}
