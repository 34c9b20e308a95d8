import PQueue from 'p-queue';
import type { DeliveryMetrics, EventContext } from '../metrics/delivery.js';
import type { EventsApi, SendResult } from '../pagerduty/client.js';
import { backoffDelay } from './backoff.js';
import type { Clock } from './clock.js';
import { Fifo } from './fifo.js';
import type { KeyRing, RingKey } from './key-ring.js';
import type { RateWindow } from './rate-window.js';
import type { KeyAssigner, PendingEvent, Spool, StoredEvent } from './spool.js';

export interface DispatcherOptions {
  spool: Spool;
  api: EventsApi;
  ring: KeyRing;
  assigner: KeyAssigner;
  window: RateWindow;
  clock: Clock;
  random: () => number;
  metrics: DeliveryMetrics;
  delivery: { maxAgeSeconds: number; minBackoffMs: number; maxBackoffMs: number; rateWindowMs: number };
  /** How often to look for events queued by another process (retry-dead-letters). */
  pollIntervalMs?: number;
}

/** Requests per key that a killed process can have sent without recording them (see load()). */
const UNRECORDED_PER_KEY = 2;

/** Longest single timer: Node clamps anything over 2^31-1 ms to 1 ms; wake up and look again. */
const MAX_SLEEP_MS = 3_600_000;

/** One routing key: its FIFO of pending events (no bodies) and its one-request-in-flight queue. */
class Lane {
  readonly events = new Fifo<PendingEvent>();
  /** One request in flight per key: a resolve never overtakes its trigger. */
  readonly inFlight = new PQueue({ concurrency: 1 });
  busy = false;
  timer: NodeJS.Timeout | undefined;
  abort: AbortController | undefined;
  constructor(readonly key: RingKey) {}
}

export interface LaneStats {
  route: string;
  key: string;
  depth: number;
  oldestAgeSeconds: number;
  /** Epoch ms of the head event's next attempt (0: now or waiting for the rate window). */
  nextAttemptAt: number;
  attempts: number;
}

/**
 * Per-key FIFO dispatch: one lane per routing key, each sending its oldest event when the key's
 * sliding rate window has room, one request at a time. A failing event holds back the later events
 * of its own key only (they may belong to the same alert); other keys keep going.
 */
export class Dispatcher {
  readonly #o: DispatcherOptions;
  readonly #lanes = new Map<string, Lane>();
  #started = false;
  #stopping = false;
  #poll: NodeJS.Timeout | undefined;

  constructor(opts: DispatcherOptions) {
    this.#o = opts;
  }

  /** Queue depth of a key (the least-loaded assignment reads it). */
  depth(fp: string): number {
    return this.#lanes.get(fp)?.events.length ?? 0;
  }

  /**
   * Queues everything the spool holds, in order, without sending yet: queue depths (which the
   * least-loaded assignment reads) are right from the first commit.
   */
  load(): void {
    const { spool, window, clock, delivery } = this.#o;
    // The requests of the last window before a restart still count against it. The log keeps
    // whole milliseconds of wall time: a request recorded at T ended in [T, T + 1), so it counts
    // from the end of its millisecond (reading `now` truncates too, which this also covers).
    const now = clock.now();
    const mono = clock.monotonic();
    for (const [fp, ends] of spool.recentSends(now - delivery.rateWindowMs)) {
      window.seed(
        fp,
        ends.map((at) => mono - (now - at) + 1),
      );
    }
    this.place(spool.pending());
    // A process killed mid-flight leaves up to two requests per key out of that log: the one in
    // flight, and the last one that ended, whose record waits for the next group commit together
    // with its event's delete. Both events are still queued at the head of their key's queue (and
    // are sent again), but PagerDuty counted them: count them as sent just now. After a clean stop
    // this costs a key with a backlog at most two of its slots, for one window.
    for (const lane of this.#lanes.values()) {
      const unrecorded = Math.min(UNRECORDED_PER_KEY, lane.events.length);
      if (unrecorded) window.seed(lane.key.fp, new Array<number>(unrecorded).fill(mono));
    }
  }

  /** Starts sending, and watching for events requeued by another process. */
  start(): void {
    if (this.#started || this.#stopping) return;
    this.#started = true;
    const every = this.#o.pollIntervalMs ?? 1000;
    this.#poll = setInterval(() => this.#adopt(), every);
    this.#poll.unref();
    for (const lane of this.#lanes.values()) this.#pump(lane);
  }

  /** Queues events that are already in the spool (just committed, resumed, or adopted). */
  place(events: readonly PendingEvent[]): void {
    const touched = new Set<Lane>();
    try {
      for (const ev of events) {
        const lane = this.#laneFor(ev);
        if (!lane) continue;
        lane.events.push(ev);
        touched.add(lane);
      }
    } finally {
      this.#o.assigner.endBatch();
    }
    for (const lane of touched) this.#pump(lane);
  }

  /**
   * Stops sending: no new request starts, in-flight ones get `drainTimeoutMs` to finish and are
   * then aborted (their events stay queued; one may reach PagerDuty twice). Everything not
   * delivered stays in the spool for the next start.
   */
  async stop(drainTimeoutMs: number): Promise<{ drained: boolean }> {
    this.#stopping = true;
    if (this.#poll) clearInterval(this.#poll);
    for (const lane of this.#lanes.values()) {
      if (lane.timer) clearTimeout(lane.timer);
      lane.timer = undefined;
    }
    const idle = Promise.all([...this.#lanes.values()].map((l) => l.inFlight.onIdle()));
    let timer: NodeJS.Timeout | undefined;
    const drained = await Promise.race([
      idle.then(() => true),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(false), drainTimeoutMs);
      }),
    ]);
    clearTimeout(timer);
    if (!drained) {
      for (const lane of this.#lanes.values()) lane.abort?.abort();
      await idle;
    }
    return { drained };
  }

  stats(): LaneStats[] {
    const now = this.#o.clock.now();
    return [...this.#lanes.values()].map((lane) => {
      const head = lane.events.peek();
      return {
        route: lane.key.route,
        key: lane.key.alias,
        depth: lane.events.length,
        oldestAgeSeconds: head ? Math.max(0, (now - head.receivedAt) / 1000) : 0,
        nextAttemptAt: head?.nextAttemptAt ?? 0,
        attempts: head?.attempts ?? 0,
      };
    });
  }

  #lane(key: RingKey): Lane {
    let lane = this.#lanes.get(key.fp);
    if (!lane) {
      lane = new Lane(key);
      this.#lanes.set(key.fp, lane);
    }
    return lane;
  }

  /** The lane of an event's key; an event whose key left the configuration is moved first. */
  #laneFor(ev: PendingEvent): Lane | undefined {
    const known = this.#o.ring.byFp(ev.keyFp);
    if (known) return this.#lane(known);
    const { spool, assigner, ring, metrics } = this.#o;
    const assignment = assigner.assign(ev, spool.alerts);
    if ('deadLetter' in assignment) {
      spool.deadLetter(ev, assignment.deadLetter, assignment.detail);
      metrics.deadLettered({
        ...this.#ctx(ev, null),
        reason: assignment.deadLetter,
        detail: assignment.detail,
        attempts: ev.attempts,
      });
      return undefined;
    }
    const to = ring.byFp(assignment.keyFp) as RingKey;
    if (ev.keyFp === '') {
      // Never had a key (a no_route dead letter, retried after the route got keys): nothing moved.
      spool.reassign(ev, to.fp);
      ev.keyFp = to.fp;
      return this.#lane(to);
    }
    // An acknowledge or resolve queued through the removed key belongs to an alert opened through
    // it (the open-alert map put it there): it cannot reach that alert any more.
    const orphan =
      assignment.orphaned === true || (ev.action !== 'trigger' && ev.dedupKey !== null && ev.keyFp !== '');
    metrics.rerouted({
      ...this.#ctx(ev, ring.aliasOf(ev.keyFp)),
      reason: orphan ? 'trigger_key_removed' : 'key_removed',
      to: to.alias,
    });
    spool.reassign(ev, to.fp);
    ev.keyFp = to.fp;
    return this.#lane(to);
  }

  #pump(lane: Lane): void {
    if (!this.#started || this.#stopping || lane.busy || lane.timer || lane.events.length === 0) return;
    lane.busy = true;
    lane.inFlight
      .add(() => this.#step(lane))
      .catch((err: unknown) => {
        const head = lane.events.peek();
        this.#o.metrics.internalError(err, head ? this.#ctx(head, lane.key.alias) : {});
        this.#sleep(lane, this.#o.delivery.minBackoffMs);
      })
      .finally(() => {
        lane.busy = false;
        this.#pump(lane);
      });
  }

  /** One attempt at the lane's oldest event, or a wait for its backoff or the rate window. */
  async #step(lane: Lane): Promise<void> {
    const head = lane.events.peek();
    if (!head) return;
    const { clock, window, spool, api, metrics } = this.#o;
    const now = clock.now();
    if (head.nextAttemptAt > now) return this.#sleep(lane, head.nextAttemptAt - now);

    const fp = lane.key.fp;
    const mono = clock.monotonic();
    const slot = window.acquire(fp, lane.key.ratePerMinute, mono);
    if (!slot.ok) {
      const wait = slot.retryAt - mono;
      metrics.rateLimitWait({ route: lane.key.route, key: lane.key.alias, waitMs: wait });
      return this.#sleep(lane, wait);
    }

    let ev: StoredEvent | undefined;
    try {
      ev = spool.load(head.id);
    } catch (err) {
      window.cancel(fp);
      throw err;
    }
    if (!ev) {
      // Gone from the spool behind our back: nothing to send.
      window.cancel(fp);
      lane.events.shift();
      return;
    }

    lane.abort = new AbortController();
    let result: SendResult;
    try {
      result = await api.send(lane.key.key, ev.action, ev.body, { signal: lane.abort.signal });
    } catch (err) {
      // A bug, not an answer: whether anything reached PagerDuty is unknown, so the slot counts.
      window.release(fp, clock.monotonic());
      spool.recordSend(fp, clock.now(), clock.now() - this.#o.delivery.rateWindowMs);
      throw err;
    } finally {
      lane.abort = undefined;
    }
    const sent = !(result.outcome === 'failed' && result.codeClass === undefined);
    if (sent) {
      window.release(fp, clock.monotonic());
      const endedAt = clock.now();
      spool.recordSend(fp, endedAt, endedAt - this.#o.delivery.rateWindowMs);
    } else {
      window.cancel(fp);
    }

    const ctx = this.#ctx(head, lane.key.alias);
    if (result.truncations.length)
      metrics.truncated(result.truncations, { route: ev.route, rule: ev.rule, action: ev.action });
    if (sent && result.codeClass !== undefined) {
      metrics.request({
        route: lane.key.route,
        key: lane.key.alias,
        codeClass: result.codeClass,
        ...('status' in result && result.status !== undefined ? { status: result.status } : {}),
        durationMs: result.durationMs,
      });
    }

    switch (result.outcome) {
      case 'delivered':
        lane.events.shift();
        spool.delivered(head);
        metrics.delivered({
          ...ctx,
          attempts: head.attempts + 1,
          status: result.status,
          ageMs: clock.now() - head.receivedAt,
        });
        return;
      case 'failed':
        lane.events.shift();
        head.attempts++;
        spool.deadLetter(head, result.reason, result.detail);
        metrics.deadLettered({
          ...ctx,
          reason: result.reason,
          detail: result.detail,
          attempts: head.attempts,
        });
        return;
      case 'aborted':
        // Shutdown: the event stays as it was, for the next start.
        return;
      case 'retry':
        return this.#retry(lane, head, result);
    }
  }

  #retry(lane: Lane, head: PendingEvent, result: Extract<SendResult, { outcome: 'retry' }>): void {
    const { clock, delivery, spool, metrics, window, random } = this.#o;
    head.attempts++;
    const now = clock.now();
    const deadline = head.receivedAt + delivery.maxAgeSeconds * 1000;
    const ctx = this.#ctx(head, lane.key.alias);
    if (now >= deadline) {
      lane.events.shift();
      const detail = `Still failing after ${head.attempts} attempts over ${formatAge(now - head.receivedAt)} (delivery.maxAgeSeconds ${delivery.maxAgeSeconds}): ${result.detail}`;
      spool.deadLetter(head, 'expired', detail);
      metrics.deadLettered({ ...ctx, reason: 'expired', detail, attempts: head.attempts });
      return;
    }
    let delay = backoffDelay(head.attempts, delivery.minBackoffMs, delivery.maxBackoffMs, random);
    if (result.reason === 'rate_limited') {
      // Retry-After is honoured within our own bounds: a proxy's "Retry-After: 86400" must not park a key for a day.
      if (result.retryAfterMs !== undefined)
        delay = Math.min(Math.max(result.retryAfterMs, delivery.minBackoffMs), delivery.maxBackoffMs);
      window.pause(lane.key.fp, clock.monotonic() + delay);
    }
    head.nextAttemptAt = Math.min(now + delay, deadline);
    spool.reschedule(head, result.detail);
    metrics.retry({
      ...ctx,
      reason: result.reason,
      attempts: head.attempts,
      delayMs: head.nextAttemptAt - now,
      detail: result.detail,
    });
    this.#sleep(lane, head.nextAttemptAt - now);
  }

  #sleep(lane: Lane, ms: number): void {
    if (this.#stopping) return;
    if (lane.timer) clearTimeout(lane.timer);
    const wait = Number.isFinite(ms) ? Math.min(Math.max(0, Math.ceil(ms)), MAX_SLEEP_MS) : MAX_SLEEP_MS;
    lane.timer = setTimeout(() => {
      lane.timer = undefined;
      this.#pump(lane);
    }, wait);
    lane.timer.unref();
  }

  #adopt(): void {
    if (this.#stopping) return;
    try {
      const events = this.#o.spool.adopt();
      if (events.length) {
        this.#o.metrics.adopted(events.length);
        this.place(events);
      }
    } catch (err) {
      this.#o.metrics.internalError(err, {});
    }
  }

  #ctx(ev: PendingEvent, key: string | null): EventContext {
    return { route: ev.route, key, action: ev.action, id: ev.id, dedupKey: ev.dedupKey };
  }
}

function formatAge(ms: number): string {
  const s = Math.round(ms / 1000);
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.round(s / 60)}m`;
  return `${Math.round(s / 3600)}h`;
}
