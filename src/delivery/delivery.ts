import type { Registry } from 'prom-client';
import type { Config, RouteConfig } from '../config/load.js';
import type { Logger } from '../log/logger.js';
import { createDeliveryMetrics, type DeliveryMetrics } from '../metrics/delivery.js';
import { type EventsApi, PagerDutyClient } from '../pagerduty/client.js';
import { openServingSpool } from '../spool/open.js';
import type { GaugeCounts, Spool, SpoolCounts } from '../spool/spool.js';
import { type EventSink, SpoolUnavailableError } from '../spool/types.js';
import { type Clock, systemClock } from './clock.js';
import { Dispatcher, type LaneStats } from './dispatcher.js';
import { createDryRunSink, DryRunRecorder } from './dry-run.js';
import { PoolKeyAssigner } from './key-assigner.js';
import { KeyRing } from './key-ring.js';
import { SlidingLogRateWindow } from './rate-window.js';

export interface DeliveryDeps {
  logger: Logger;
  registry: Registry;
  /** Share one instance with the rules stage (it reports fitEvent's truncations through it). */
  metrics?: DeliveryMetrics;
  clock?: Clock;
  /** Jitter source, [0, 1). */
  random?: () => number;
  /** The PagerDuty Events API; by default a PagerDutyClient for `pagerduty.url`. */
  api?: EventsApi;
  /** How often to look for dead letters retried by `pd-relay spool retry-dead-letters` (ms, SQLite). */
  pollIntervalMs?: number;
  /** How often to retry a failing spool while it is unavailable (ms). */
  spoolProbeIntervalMs?: number;
  /** Events kept for GET /-/events in dry-run. */
  recorderCapacity?: number;
}

export interface DeliveryStats {
  dryRun: boolean;
  lanes: LaneStats[];
  counts: SpoolCounts | undefined;
  spoolProblem: string | null;
}

/** The spool and dispatch stages, live. Built by createDelivery, wired by the composition root. */
export interface Delivery {
  /** What ingress commits accepted messages to. */
  readonly sink: EventSink;
  readonly dryRun: boolean;
  /** The latest events in dry-run (GET /-/events), else null. */
  readonly recorder: DryRunRecorder | null;
  readonly metrics: DeliveryMetrics;
  readonly spool: Spool;
  /**
   * Starts sending: the keys the spool's ownership gives this process, their backlogs, and
   * everything committed since.
   */
  start(): void;
  /**
   * Stops sending and closes the spool: in-flight requests get `drainTimeoutMs` (default
   * `delivery.drainTimeoutMs`), everything else stays in the spool for the next start or the
   * replicas that take the keys over. Commits fail from now on.
   */
  stop(drainTimeoutMs?: number): Promise<void>;
  /** Why the relay cannot take SNS traffic (spool not writable, stopped), or null. */
  readiness(): string | null;
  stats(): Promise<DeliveryStats>;
  /** Resolves once the key ownership changes and reroutes asked for so far are done (tests). */
  settled(): Promise<void>;
  /**
   * Applies new key pools and rates (a reload) at once: see Dispatcher.updateRing. Returns what
   * changed, by alias.
   */
  updateRoutes(routes: Record<string, RouteConfig>): PoolChanges;
  /** Events queued for `route` (on this replica's keys, and as other replicas last published theirs). */
  queuedOn(route: string): number;
}

/** What a reload changed in the key pools, by alias. */
export interface PoolChanges {
  added: string[];
  removed: string[];
  /** Keys whose rate (ratePerMinute) changed. */
  rates: string[];
  /** Routes whose pool gained keys: their backlog spreads over them. */
  grown: string[];
}

const PRUNE_EVERY_MS = 10 * 60 * 1000;

/**
 * Turns the configuration into the live delivery stages: the spool (SQLite in `spool.dir`, or
 * PostgreSQL), the key ring, the fan-out policy, the rate window and the dispatcher (or, without
 * keys, the dry-run sink). Throws a UserError when the spool cannot be opened.
 */
export async function createDelivery(config: Config, deps: DeliveryDeps): Promise<Delivery> {
  const clock = deps.clock ?? systemClock;
  const metrics = deps.metrics ?? createDeliveryMetrics(deps.registry, deps.logger);
  let ring = new KeyRing(config.routes);
  let dispatcher: Dispatcher | undefined;
  const assigner = new PoolKeyAssigner(ring, { load: (fp) => dispatcher?.depth(fp) ?? 0 });

  const spool = await openServingSpool(config, {
    assigner,
    now: () => clock.now(),
    ...(deps.spoolProbeIntervalMs ? { probeIntervalMs: deps.spoolProbeIntervalMs } : {}),
    ...(deps.pollIntervalMs ? { adoptIntervalMs: deps.pollIntervalMs } : {}),
    observer: {
      committed: (info) => metrics.spoolCommitted(info),
      unavailable: (problem) => metrics.spoolUnavailable(problem),
      recovered: () => metrics.spoolRecovered(),
      listenerFailed: (err) => metrics.internalError(err, {}),
      adopted: (count) => metrics.adopted(count),
      databaseError: (operation, err) => metrics.databaseError(operation, err),
      databaseLost: (problem) => metrics.databaseLost(problem),
      databaseRecovered: () => metrics.databaseRecovered(),
    },
  });

  const api =
    deps.api ?? new PagerDutyClient({ url: config.pagerduty.url, timeoutMs: config.pagerduty.timeoutMs });
  const recorder = config.dryRun ? new DryRunRecorder(deps.recorderCapacity) : null;
  if (!config.dryRun) {
    dispatcher = new Dispatcher({
      spool,
      api,
      ring,
      assigner,
      window: new SlidingLogRateWindow({ windowMs: config.delivery.rateWindowMs }),
      clock,
      random: deps.random ?? Math.random,
      metrics,
      delivery: config.delivery,
    });
    dispatcher.open();
  }

  let state: 'new' | 'running' | 'stopped' = 'new';
  const retentionMs = config.spool.messageIdRetentionHours * 3600 * 1000;
  const openAlertRetentionMs = config.spool.openAlertRetentionDays * 86_400_000;
  const prune = async () => {
    try {
      const n = await spool.pruneMessageIds(clock.now() - retentionMs);
      if (n) metrics.messageIdsPruned(n);
      const alerts = await spool.pruneOpenAlerts(clock.now() - openAlertRetentionMs);
      if (alerts) metrics.openAlertsPruned(alerts, config.spool.openAlertRetentionDays);
    } catch (err) {
      if (!(err instanceof SpoolUnavailableError)) metrics.internalError(err, {});
    }
  };
  let pruneTimer: NodeJS.Timeout | undefined;
  let pruning: Promise<void> = Promise.resolve();

  const liveSink: EventSink = {
    async commit(entry) {
      if (state === 'stopped') throw new SpoolUnavailableError('The relay is shutting down.');
      const result = await spool.commit(entry);
      if (result.status === 'duplicate') return 'duplicate';
      for (const d of result.deadLettered) {
        metrics.deadLettered({
          route: d.event.route,
          key: null,
          action: d.event.action,
          id: d.event.id,
          dedupKey: d.event.dedupKey,
          reason: d.reason,
          detail: d.detail,
          attempts: 0,
        });
      }
      for (const { event: e, newerAt } of result.stale) {
        metrics.stale({
          route: e.route,
          rule: e.rule,
          action: e.action,
          dedupKey: e.dedupKey ?? '',
          at: e.time?.at ?? 0,
          newerAt,
        });
      }
      for (const o of result.orphaned) {
        metrics.rerouted({
          route: o.route,
          key: null,
          action: o.action,
          id: o.id,
          dedupKey: o.dedupKey,
          reason: 'trigger_key_removed',
          to: ring.aliasOf(o.keyFp),
        });
      }
      return 'committed';
    },
  };
  const sink = recorder ? createDryRunSink(spool, recorder, metrics, () => clock.now()) : liveSink;

  // One read of the spool per scrape, shared by the gauges that show it.
  let gauges: { at: number; counts: Promise<GaugeCounts | undefined> } | undefined;
  metrics.observe({
    lanes: () => dispatcher?.stats() ?? [],
    counts: () => {
      if (state === 'stopped') return undefined;
      const now = performance.now();
      if (!gauges || now - gauges.at > 1000)
        gauges = { at: now, counts: spool.gaugeCounts().catch(() => undefined) };
      return gauges.counts;
    },
    keysOwned: () => dispatcher?.ownedKeys() ?? 0,
    keysUnowned: () => spool.ownership.unownedWithPending?.(),
  });

  return {
    sink: {
      commit: (entry) =>
        state === 'stopped'
          ? Promise.reject(new SpoolUnavailableError('The relay is shutting down.'))
          : sink.commit(entry),
    },
    dryRun: config.dryRun,
    recorder,
    metrics,
    spool,
    start() {
      if (state !== 'new') return;
      state = 'running';
      pruning = prune();
      pruneTimer = setInterval(() => {
        pruning = pruning.then(prune);
      }, PRUNE_EVERY_MS);
      pruneTimer.unref();
      if (config.dryRun) {
        spool.counts().then(
          (c) => {
            if (c.pending) metrics.dryRunBacklog(c.pending);
          },
          () => {},
        );
      }
      dispatcher?.start();
    },
    async stop(drainTimeoutMs = config.delivery.drainTimeoutMs) {
      if (state === 'stopped') return;
      state = 'stopped';
      if (pruneTimer) clearInterval(pruneTimer);
      if (dispatcher) await dispatcher.stop(drainTimeoutMs);
      await pruning;
      await spool.close();
      if (!deps.api && api instanceof PagerDutyClient) await api.close();
    },
    readiness() {
      if (state === 'stopped') return 'delivery stopped';
      return spool.problem();
    },
    updateRoutes(routes) {
      const next = new KeyRing(routes);
      const changes = poolChanges(ring, next);
      ring = next;
      assigner.setRing(next);
      dispatcher?.updateRing(next, changes.grown);
      return changes;
    },
    settled() {
      return dispatcher?.settled() ?? Promise.resolve();
    },
    queuedOn(route) {
      return ring.keysOf(route).reduce((n, k) => n + (dispatcher?.depth(k.fp) ?? 0), 0);
    },
    async stats() {
      return {
        dryRun: config.dryRun,
        lanes: dispatcher?.stats() ?? [],
        counts: state === 'stopped' ? undefined : await spool.counts(),
        spoolProblem: state === 'stopped' ? null : spool.problem(),
      };
    },
  };
}

/** The differences between two rings, by alias (keys by their fingerprint: renaming is not adding). */
export function poolChanges(before: KeyRing, after: KeyRing): PoolChanges {
  const had = new Map(before.lanes().map((k) => [k.fp, k]));
  const has = new Map(after.lanes().map((k) => [k.fp, k]));
  const grown = new Set<string>();
  for (const k of after.lanes()) {
    for (const route of after.routesOf(k.fp))
      if (!before.fpsOf(route).includes(k.fp) && before.fpsOf(route).length) grown.add(route);
  }
  return {
    added: after
      .lanes()
      .filter((k) => !had.has(k.fp))
      .map((k) => k.alias),
    removed: before
      .lanes()
      .filter((k) => !has.has(k.fp))
      .map((k) => k.alias),
    rates: after
      .lanes()
      .filter((k) => had.has(k.fp) && had.get(k.fp)?.ratePerMinute !== k.ratePerMinute)
      .map((k) => k.alias),
    grown: [...grown].sort(),
  };
}
