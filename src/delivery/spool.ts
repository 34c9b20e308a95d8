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
}

/**
 * The dedup-key → routing-key map of open alerts. PagerDuty scopes a dedup_key to the routing key
 * (https://developer.pagerduty.com/docs/events-api-v2/trigger-events/#alert-de-duplication: "acknowledge
 * or resolve events sent via a different routing_key from the original will be dropped"), so while an
 * alert is open every event for it must go through the key of its trigger, whatever the pool says now.
 */
export interface OpenAlertMap {
  get(route: string, dedupKey: string): OpenAlert | undefined;
  /** A trigger was queued through `keyFp`. */
  remember(route: string, dedupKey: string, keyFp: string, triggerId: number): void;
  /**
   * A resolve (spool id `resolveId`) was delivered: forget the alert, unless a later trigger
   * reopened it in the meantime.
   */
  forget(route: string, dedupKey: string, resolveId: number): void;
  count(): number;
}

/**
 * What the key assigner decided for one event. `orphaned`: an acknowledge or resolve whose open
 * alert's trigger went through a key that is no longer configured; it goes elsewhere and will
 * most likely be dropped by PagerDuty.
 */
export type Assignment =
  | { keyFp: string; orphaned?: boolean }
  | { deadLetter: DeadLetterReason; detail: string };

/**
 * Chooses the routing key of each event inside the commit transaction, so that per-key FIFO order
 * holds from the moment SNS gets its 200.
 */
export interface KeyAssigner {
  assign(event: Pick<OutboundEvent, 'route' | 'action' | 'dedupKey'>, alerts: OpenAlertMap): Assignment;
  /** The transaction ended (committed or rolled back): forget per-batch bookkeeping. */
  endBatch(): void;
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

/**
 * The durable queue between ingress and dispatch. The embedded implementation is SQLite
 * (sqlite-spool.ts); a shared one (Redis) can replace it for several replicas.
 *
 * Writes other than commit (delivered, reschedule, deadLetter, reassign) are queued and land in
 * the next group-commit transaction: losing one in a crash means an event is sent again, never lost.
 */
export interface Spool {
  /** Where it lives, for messages. */
  readonly location: string;
  /** The open-alert key map (read it outside commits only to re-route events). */
  readonly alerts: OpenAlertMap;
  /**
   * Durably records the message id and its events (keys assigned in the same transaction).
   * Concurrent commits share one transaction. Rejects with SpoolUnavailableError when it cannot.
   */
  commit(entry: SpoolEntry): Promise<CommitResult>;
  /** Whether a committed message had this SNS MessageId (the relay learns it from commit() itself). */
  hasMessage(messageId: string): boolean;
  /** Called synchronously after every commit transaction with the events it queued, in order. */
  onCommitted(listener: (events: PendingEvent[]) => void): void;
  /** Every undelivered event, in order (what a restart resumes). */
  pending(): PendingEvent[];
  /** Events another process queued since the last call (retry-dead-letters while the relay runs). */
  adopt(): PendingEvent[];
  load(id: number): StoredEvent | undefined;
  delivered(event: PendingEvent): void;
  /** Persists `event.attempts` and `event.nextAttemptAt` after a failed attempt. */
  reschedule(event: PendingEvent, lastError: string): void;
  deadLetter(event: PendingEvent, reason: DeadLetterReason, detail: string): void;
  /** Moves a pending event to another key (its key left the configuration). */
  reassign(event: PendingEvent, keyFp: string): void;
  /**
   * A request through this key ended at `endedAt` (epoch ms); entries of the key older than
   * `forgetBefore` go. Lets the rate window outlive a restart.
   */
  recordSend(keyFp: string, endedAt: number, forgetBefore: number): void;
  /** Ends of requests since `since` (epoch ms), per key fingerprint, ascending. */
  recentSends(since: number): Map<string, number[]>;
  deadLetters(opts?: { ids?: number[]; limit?: number }): DeadLetter[];
  /** Queues dead letters again (all, or those with the given ids); returns how many. */
  retryDeadLetters(ids?: number[]): number;
  /** Deletes dead letters for good (all, or those with the given ids); returns how many. */
  discardDeadLetters(ids?: number[]): number;
  pendingGroups(): PendingGroup[];
  counts(): SpoolCounts;
  /**
   * What the metrics gauges show, without the pending count: count(*) over the events walks every
   * row (~60 ms at 100,000 pending), and the dispatcher knows its queues anyway.
   */
  gaugeCounts(): { deadLetters: number; messageIds: number; openAlerts: number };
  /**
   * Forgets SNS MessageIds accepted before `before` (epoch ms), and the event times of dedup keys
   * last seen before it; returns how many MessageIds.
   */
  pruneMessageIds(before: number): number;
  /** Forgets open alerts whose last trigger was queued before `before` (epoch ms); returns how many. */
  pruneOpenAlerts(before: number): number;
  /** Why commits currently fail, or null. */
  problem(): string | null;
  /** Writes queued updates now. */
  flush(): void;
  close(): void;
}
