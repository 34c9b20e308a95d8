import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { Logger } from '../log/logger.js';
import type { CodeClass, RetryReason } from '../pagerduty/client.js';
import type { TruncatedField } from '../pagerduty/limits.js';
import type { EventAction } from '../pagerduty/types.js';
import type { DatabaseOperation, DeadLetterReason } from '../spool/spool.js';

/** Which event a log line is about. Never a routing key: `key` is the alias. */
export interface EventContext {
  route: string;
  /** Key alias, or null in dry-run. */
  key: string | null;
  action: EventAction;
  /** Spool id. */
  id?: number;
  dedupKey?: string | null;
}

/** Why a pending event moved to another key. */
export type RerouteReason = 'key_removed' | 'trigger_key_removed' | 'rebalanced';

/** Why a key's dispatch moved: taken on, handed over (SIGTERM, rebalancing), or lost (lease lapsed). */
export type OwnershipChange = 'acquired' | 'released' | 'lost';

/** Gauges read at scrape time from the live objects. */
export interface DeliveryGaugeSource {
  lanes(): Array<{ route: string; key: string; depth: number; oldestAgeSeconds: number }>;
  counts():
    | { deadLetters: number; messageIds: number; openAlerts: number }
    | undefined
    | Promise<{ deadLetters: number; messageIds: number; openAlerts: number } | undefined>;
  /** Keys this process dispatches now. */
  keysOwned(): number;
  /** Keys with pending events that no live replica owns (shared spools only; else undefined). */
  keysUnowned(): number | undefined;
}

/**
 * Instrumentation of the spool and dispatch stages. Each method is one instrumented event that
 * writes its log line and its metric together, so the two cannot drift. Label values come only
 * from bounded sets: route names and key aliases from the configuration, fixed reason lists.
 */
export interface DeliveryMetrics {
  spoolCommitted(info: { durationMs: number; entries: number; events: number }): void;
  spoolUnavailable(problem: string): void;
  spoolRecovered(): void;
  /**
   * PagerDuty took the event: `ageMs` since the relay accepted it (SNS request), `sourceDelayMs`
   * since its source's own time (undefined when unknown).
   */
  delivered(
    ctx: EventContext & { attempts: number; status: number; ageMs: number; sourceDelayMs?: number },
  ): void;
  deadLettered(ctx: EventContext & { reason: DeadLetterReason; detail: string; attempts: number }): void;
  dryRun(ctx: EventContext): void;
  request(ctx: {
    route: string;
    key: string;
    codeClass: CodeClass;
    status?: number;
    durationMs: number;
  }): void;
  retry(ctx: EventContext & { reason: RetryReason; attempts: number; delayMs: number; detail: string }): void;
  rateLimitWait(ctx: { route: string; key: string; waitMs: number }): void;
  /** Count what limits.ts cut; the rules stage calls this with fitEvent's truncations too. */
  truncated(
    fields: readonly TruncatedField[],
    ctx: { route: string; rule?: string; action?: EventAction },
  ): void;
  rerouted(ctx: EventContext & { reason: RerouteReason; to: string }): void;
  /** A reload added keys to `route`: `count` queued events moved to spread over its pool `keys`. */
  rebalanced(info: { route: string; count: number; keys: readonly string[] }): void;
  /** An event older than the newest accepted for its dedup key: not queued (a late SNS retry). */
  stale(ctx: {
    route: string;
    rule: string;
    action: EventAction;
    dedupKey: string;
    at: number;
    newerAt: number;
  }): void;
  adopted(count: number): void;
  /** This process took on, handed over or lost the dispatch of these keys (aliases). */
  keysOwnership(change: OwnershipChange, keys: readonly string[]): void;
  /** A statement against the database failed. */
  databaseError(operation: DatabaseOperation, err: unknown): void;
  /** The database cannot be reached (its connection for leases and notifications is down). */
  databaseLost(problem: string): void;
  databaseRecovered(): void;
  /** Dry-run started on a spool that still holds events from a run with keys: they wait, unsent. */
  dryRunBacklog(pending: number): void;
  messageIdsPruned(count: number): void;
  /** Open alerts forgotten after `days` without a trigger (spool.openAlertRetentionDays). */
  openAlertsPruned(count: number, days: number): void;
  /** A bug in the dispatcher: logged with its stack, the event stays queued. */
  internalError(err: unknown, ctx: Partial<EventContext>): void;
  /** Registers the gauges that read live state at scrape time. */
  observe(source: DeliveryGaugeSource): void;
}

export function createDeliveryMetrics(registry: Registry, logger: Logger): DeliveryMetrics {
  const log = logger.child({ stage: 'delivery' });
  const registers = [registry];
  const events = new Counter({
    name: 'pdrelay_events_total',
    help: 'Events that left the queue or never entered it, by route, action and outcome (delivered, dead_lettered, dry_run, stale).',
    labelNames: ['route', 'action', 'outcome'],
    registers,
  });
  const requests = new Counter({
    name: 'pdrelay_pagerduty_requests_total',
    help: 'Requests to the PagerDuty Events API by route, key alias and status class (2xx, 3xx, 4xx, 5xx, network, timeout).',
    labelNames: ['route', 'key', 'code_class'],
    registers,
  });
  const requestDuration = new Histogram({
    name: 'pdrelay_pagerduty_request_duration_seconds',
    help: 'Duration of requests to the PagerDuty Events API.',
    buckets: [0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers,
  });
  const retries = new Counter({
    name: 'pdrelay_delivery_retries_total',
    help: 'Failed deliveries that will be retried, by reason (rate_limited, server_error, network, timeout, unexpected_status).',
    labelNames: ['reason'],
    registers,
  });
  const deadLetters = new Counter({
    name: 'pdrelay_dead_letters_total',
    help: 'Events moved to the dead letters, by reason (rejected, bad_key, too_large, invalid, expired, no_route).',
    labelNames: ['reason'],
    registers,
  });
  const truncations = new Counter({
    name: 'pdrelay_payload_truncations_total',
    help: "Events changed to fit PagerDuty's limits, by the field that was cut or replaced.",
    labelNames: ['field'],
    registers,
  });
  const reroutes = new Counter({
    name: 'pdrelay_delivery_reroutes_total',
    help: 'Pending events moved to another key because theirs left the configuration, by route and reason.',
    labelNames: ['route', 'reason'],
    registers,
  });
  const rateWait = new Histogram({
    name: 'pdrelay_rate_limit_wait_seconds',
    help: "Waits for a free slot in a key's sliding rate window.",
    buckets: [0.01, 0.1, 0.5, 1, 5, 15, 30, 60],
    registers,
  });
  // Time to page, from 5 ms (the relay's own path) to an hour (a long PagerDuty outage, a backlog).
  const pageBuckets = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600,
  ];
  const deliverySeconds = new Histogram({
    name: 'pdrelay_event_delivery_seconds',
    help: "Time from the relay's acceptance of an SNS request to PagerDuty's 2xx for its event, by route and action.",
    labelNames: ['route', 'action'],
    buckets: pageBuckets,
    registers,
  });
  const sourceDelay = new Histogram({
    name: 'pdrelay_event_source_delay_seconds',
    help: "Time from the source's own time of an event (its payload.timestamp, else the SNS Timestamp) to PagerDuty's 2xx, by route and action: SNS's and EventBridge's delays included.",
    labelNames: ['route', 'action'],
    buckets: pageBuckets,
    registers,
  });
  const commitDuration = new Histogram({
    name: 'pdrelay_spool_commit_duration_seconds',
    help: 'Duration of spool group-commit transactions (fsync included).',
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
    registers,
  });
  const commitBatch = new Histogram({
    name: 'pdrelay_spool_commit_batch_entries',
    help: 'SNS messages committed together in one spool transaction (group commit).',
    buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256],
    registers,
  });
  const writable = new Gauge({
    name: 'pdrelay_spool_writable',
    help: 'Whether the spool accepts commits (0: SNS gets 503 and readiness fails).',
    registers,
  });
  writable.set(1);
  const ownershipChanges = new Counter({
    name: 'pdrelay_delivery_key_ownership_changes_total',
    help: 'Routing keys whose dispatch this replica took on (acquired), handed over (released) or lost when its lease lapsed (lost).',
    labelNames: ['change'],
    registers,
  });
  for (const change of ['acquired', 'released', 'lost']) ownershipChanges.inc({ change }, 0);
  const databaseErrors = new Counter({
    name: 'pdrelay_spool_database_errors_total',
    help: 'Failed statements against the PostgreSQL spool, by what they were for (connect, commit, dispatch, ownership, admin).',
    labelNames: ['operation'],
    registers,
  });
  const databaseUp = new Gauge({
    name: 'pdrelay_spool_database_up',
    help: "Whether this replica reaches its spool's database: the PostgreSQL server (spool.postgres); always 1 for the embedded SQLite file, whose state pdrelay_spool_writable shows.",
    registers,
  });
  databaseUp.set(1);

  return {
    spoolCommitted({ durationMs, entries, events: n }) {
      commitDuration.observe(durationMs / 1000);
      commitBatch.observe(entries);
      log.trace({ durationMs, entries, events: n }, 'Spool commit.');
    },
    spoolUnavailable(problem) {
      writable.set(0);
      log.error({ problem }, 'The spool cannot be written: SNS deliveries get 503 until it can.');
    },
    spoolRecovered() {
      writable.set(1);
      log.info('The spool is writable again.');
    },
    delivered(ctx) {
      events.inc({ route: ctx.route, action: ctx.action, outcome: 'delivered' });
      deliverySeconds.observe({ route: ctx.route, action: ctx.action }, Math.max(0, ctx.ageMs) / 1000);
      // A source clock ahead of ours would give a negative delay: counted as none.
      if (ctx.sourceDelayMs !== undefined)
        sourceDelay.observe({ route: ctx.route, action: ctx.action }, Math.max(0, ctx.sourceDelayMs) / 1000);
      log.info(
        {
          ...fields(ctx),
          attempts: ctx.attempts,
          status: ctx.status,
          ageMs: ctx.ageMs,
          ...(ctx.sourceDelayMs !== undefined ? { sourceDelayMs: ctx.sourceDelayMs } : {}),
        },
        'Event delivered to PagerDuty.',
      );
    },
    deadLettered(ctx) {
      events.inc({ route: ctx.route, action: ctx.action, outcome: 'dead_lettered' });
      deadLetters.inc({ reason: ctx.reason });
      const f = { ...fields(ctx), reason: ctx.reason, detail: ctx.detail, attempts: ctx.attempts };
      if (ctx.reason === 'bad_key') {
        log.error(
          f,
          'PagerDuty refused the routing key: events for this key go to the dead letters until the key is fixed in the configuration.',
        );
      } else if (ctx.reason === 'no_route') {
        log.error(f, 'Event has no route with keys: moved to the dead letters.');
      } else {
        log.warn(f, 'Event moved to the dead letters.');
      }
    },
    dryRun(ctx) {
      events.inc({ route: ctx.route, action: ctx.action, outcome: 'dry_run' });
      log.info(fields(ctx), 'Dry run: event not sent.');
    },
    request(ctx) {
      requests.inc({ route: ctx.route, key: ctx.key, code_class: ctx.codeClass });
      requestDuration.observe(ctx.durationMs / 1000);
      log.debug(
        {
          route: ctx.route,
          key: ctx.key,
          codeClass: ctx.codeClass,
          status: ctx.status,
          durationMs: ctx.durationMs,
        },
        'PagerDuty request.',
      );
    },
    retry(ctx) {
      retries.inc({ reason: ctx.reason });
      log.warn(
        {
          ...fields(ctx),
          reason: ctx.reason,
          attempts: ctx.attempts,
          delayMs: ctx.delayMs,
          detail: ctx.detail,
        },
        'Delivery failed; will retry.',
      );
    },
    rateLimitWait(ctx) {
      rateWait.observe(ctx.waitMs / 1000);
      log.debug(
        { route: ctx.route, key: ctx.key, waitMs: Math.round(ctx.waitMs) },
        'Rate window full; waiting.',
      );
    },
    truncated(list, ctx) {
      if (!list.length) return;
      for (const field of list) truncations.inc({ field });
      log.info(
        { route: ctx.route, rule: ctx.rule, action: ctx.action, fields: list },
        "Event cut to fit PagerDuty's limits.",
      );
    },
    rerouted(ctx) {
      reroutes.inc({ route: ctx.route, reason: ctx.reason });
      if (ctx.reason === 'trigger_key_removed') {
        log.error(
          { ...fields(ctx), to: ctx.to },
          "The key this alert's trigger went through is no longer configured: sending through another key, where PagerDuty will drop it unless that key has the alert. Resolve the incident by hand if it stays open.",
        );
      } else {
        log.warn(
          { ...fields(ctx), to: ctx.to },
          'Pending event moved to another key: its key is no longer configured.',
        );
      }
    },
    rebalanced({ route, count, keys }) {
      reroutes.inc({ route, reason: 'rebalanced' }, count);
      log.info({ route, count, keys }, 'Moved queued events to the keys the reload added to their route.');
    },
    stale(ctx) {
      events.inc({ route: ctx.route, action: ctx.action, outcome: 'stale' });
      log.warn(
        {
          route: ctx.route,
          rule: ctx.rule,
          action: ctx.action,
          dedupKey: ctx.dedupKey,
          eventTime: new Date(ctx.at).toISOString(),
          newerTime: new Date(ctx.newerAt).toISOString(),
        },
        'Event not sent: a newer event for its dedup key was already accepted (SNS delivered this one late).',
      );
    },
    adopted(count) {
      log.info({ count }, 'Picked up events queued by another process (retried dead letters).');
    },
    keysOwnership(change, keys) {
      ownershipChanges.inc({ change }, keys.length);
      const message = {
        acquired: 'Took on the dispatch of these keys.',
        released: 'Handing the dispatch of these keys over.',
        lost: 'Lost the dispatch of these keys (lease not renewed): stopped sending for them at once.',
      }[change];
      (change === 'lost' ? log.warn : log.info).call(log, { keys }, message);
    },
    databaseError(operation, err) {
      databaseErrors.inc({ operation });
      log.debug({ operation, err: describeDatabaseError(err) }, 'A database statement failed.');
    },
    databaseLost(problem) {
      databaseUp.set(0);
      log.error(
        { problem },
        'The PostgreSQL spool cannot be reached: this replica stopped sending, SNS gets 503, reconnecting.',
      );
    },
    databaseRecovered() {
      databaseUp.set(1);
      log.info('The PostgreSQL spool is reachable again.');
    },
    dryRunBacklog(pending) {
      log.warn(
        { pending },
        'Dry-run: the spool holds events from a run with routing keys; they stay queued until keys are configured again.',
      );
    },
    messageIdsPruned(count) {
      log.debug({ count }, 'Forgot old SNS MessageIds.');
    },
    openAlertsPruned(count, days) {
      log.info(
        { count, days },
        'Forgot the keys of open alerts not triggered for the retention period: their resolves, if any come, take the rendezvous key.',
      );
    },
    internalError(err, ctx) {
      log.error({ err, ...ctx }, 'Internal error in delivery; the event stays queued.');
    },
    observe(source) {
      new Gauge({
        name: 'pdrelay_queue_depth',
        help: 'Events waiting for delivery, by route and key alias.',
        labelNames: ['route', 'key'],
        registers,
        collect() {
          this.reset();
          for (const l of source.lanes()) this.set({ route: l.route, key: l.key }, l.depth);
        },
      });
      new Gauge({
        name: 'pdrelay_queue_oldest_age_seconds',
        help: 'Age of the oldest event waiting for delivery, by route and key alias (0 when empty).',
        labelNames: ['route', 'key'],
        registers,
        collect() {
          this.reset();
          for (const l of source.lanes()) this.set({ route: l.route, key: l.key }, l.oldestAgeSeconds);
        },
      });
      const count = (
        name: string,
        help: string,
        pick: (c: { deadLetters: number; messageIds: number; openAlerts: number }) => number,
      ) =>
        new Gauge({
          name,
          help,
          registers,
          async collect() {
            const c = await source.counts();
            if (c) this.set(pick(c));
          },
        });
      new Gauge({
        name: 'pdrelay_delivery_keys_owned',
        help: 'Routing keys this replica dispatches now (one replica: every configured key; several: they add up to the pool).',
        registers,
        collect() {
          this.set(source.keysOwned());
        },
      });
      new Gauge({
        name: 'pdrelay_delivery_keys_unowned',
        help: 'Routing keys with pending events that no live replica dispatches, as this replica last saw them (PostgreSQL spool only).',
        registers,
        collect() {
          const n = source.keysUnowned();
          if (n !== undefined) this.set(n);
        },
      });
      count('pdrelay_dead_letters', 'Dead letters in the spool now.', (c) => c.deadLetters);
      count(
        'pdrelay_spool_message_ids',
        'SNS MessageIds remembered for de-duplication.',
        (c) => c.messageIds,
      );
      count(
        'pdrelay_open_alerts',
        'Open alerts whose routing key is remembered (sticky fan-out).',
        (c) => c.openAlerts,
      );
    },
  };
}

/** A database error in a line: its SQLSTATE or errno code and message (never a connection string). */
export function describeDatabaseError(err: unknown): string {
  const e = err as { code?: string; message?: string };
  const message = e?.message ?? String(err);
  return e?.code && !message.includes(e.code) ? `${e.code}: ${message}` : message;
}

function fields(ctx: EventContext): Record<string, unknown> {
  return {
    route: ctx.route,
    key: ctx.key,
    action: ctx.action,
    id: ctx.id,
    dedupKey: ctx.dedupKey ?? undefined,
  };
}
