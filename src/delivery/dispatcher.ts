import PQueue from 'p-queue';
import type { DeliveryMetrics, EventContext } from '../metrics/delivery.js';
import type { EventsApi, SendResult } from '../pagerduty/client.js';
import {
  decideKey,
  type KeyAssigner,
  type OwnershipHandlers,
  type PendingEvent,
  type Spool,
  type StoredEvent,
} from '../spool/spool.js';
import { SpoolUnavailableError } from '../spool/types.js';
import { backoffDelay } from './backoff.js';
import type { Clock } from './clock.js';
import { Fifo } from './fifo.js';
import type { KeyRing, RingKey } from './key-ring.js';
import type { RateWindow } from './rate-window.js';

export interface DispatcherOptions {
  spool: Spool;
  api: EventsApi;
  ring: KeyRing;
  /** Proposes keys for events whose key left the configuration (the same policy as ingest). */
  assigner: KeyAssigner;
  window: RateWindow;
  clock: Clock;
  random: () => number;
  metrics: DeliveryMetrics;
  delivery: { maxAgeSeconds: number; minBackoffMs: number; maxBackoffMs: number; rateWindowMs: number };
}

/**
 * Requests per key that the previous owner may have sent without recording them: the one in
 * flight when it died, and the last one that ended, whose record waits for the next group write
 * together with its event's delete (see #load()).
 */
const UNRECORDED_PER_KEY = 2;

/**
 * How long an event's id stays known after its delete was written: longer than any read of the
 * spool (a statement times out before) that began before the delete and returns after it.
 */
const KNOWN_AFTER_DELETE_MS = 30_000;

/** Longest single timer: Node clamps anything over 2^31-1 ms to 1 ms; wake up and look again. */
const MAX_SLEEP_MS = 3_600_000;

/**
 * One routing key this process owns: its FIFO of pending events (no bodies) and its
 * one-request-in-flight queue.
 */
class Lane {
  events = new Fifo<PendingEvent>();
  /**
   * Ids queued here, in flight, or delivered and not yet deleted from the spool: a shared spool
   * announces events by "this key, from this id on", and an announcement may repeat what is known.
   */
  readonly known = new Set<number>();
  /**
   * Ids that left the lane, with when they may leave `known` (performance.now()): a read of the
   * shared spool that began before an event's delete committed can still return it.
   */
  readonly leaving = new Fifo<{ id: number; at: number }>();
  /** One request in flight per key: a resolve never overtakes its trigger. */
  readonly inFlight = new PQueue({ concurrency: 1 });
  /** `loading`: its queue is being read from the spool; what arrives meanwhile waits in `early`. */
  state: 'loading' | 'running' | 'releasing' = 'loading';
  early: PendingEvent[] = [];
  /** Held while a reload moves part of its backlog to added keys: nothing is sent meanwhile. */
  paused = false;
  busy = false;
  timer: NodeJS.Timeout | undefined;
  abort: AbortController | undefined;
  constructor(public key: RingKey) {}
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
 * Per-key FIFO dispatch: one lane per routing key this process owns (all of them on SQLite; those
 * whose lease this replica holds on PostgreSQL), each sending its oldest event when the key's
 * sliding rate window has room, one request at a time. A failing event holds back the later events
 * of its own key only (they may belong to the same alert); other keys keep going.
 *
 * Ownership changes come from the spool (KeyOwnership) and are handled one at a time, in order:
 * a key is loaded from the spool (its queue, and its rate window from the send times recorded by
 * whoever owned it before) when acquired, drained and written out when handed over, dropped at
 * once when lost.
 */
export class Dispatcher {
  readonly #o: DispatcherOptions;
  /** The lanes of the keys this process owns now. */
  readonly #lanes = new Map<string, Lane>();
  /** Ownership changes and reroutes, one at a time. */
  #control: Promise<void> = Promise.resolve();
  #opened = false;
  #started = false;
  #stopping = false;

  constructor(opts: DispatcherOptions) {
    this.#o = { ...opts };
  }

  /**
   * Queue depth of a key, wherever it is dispatched: here, or as its owner last published it (the
   * least-loaded assignment reads it).
   */
  depth(fp: string): number {
    const lane = this.#lanes.get(fp);
    return lane ? lane.events.length + lane.early.length : this.#o.spool.ownership.depthElsewhere(fp);
  }

  /** Keys this process sends for now. */
  ownedKeys(): number {
    return this.#lanes.size;
  }

  /**
   * Takes part without sending yet: the spool's ownership says which keys are this process's, and
   * their queues are loaded (queue depths, which the least-loaded assignment reads, are right from
   * the first commit).
   */
  open(): void {
    if (this.#opened || this.#stopping) return;
    this.#opened = true;
    const { spool, ring } = this.#o;
    spool.onQueued((events) => this.#onQueued(events));
    spool.ownership.reportDepths(() => {
      const depths = new Map<string, number>();
      for (const [fp, lane] of this.#lanes) depths.set(fp, lane.events.length);
      return depths;
    });
    const handlers: OwnershipHandlers = {
      acquired: (fps) => this.#acquired(fps),
      release: (fps) => this.#release(fps),
      lost: (fps) => this.#lost(fps),
      orphaned: (fps) => this.#orphaned(fps),
    };
    spool.ownership.start(
      ring.lanes().map((k) => k.fp),
      handlers,
    );
  }

  /** Starts sending. */
  start(): void {
    if (this.#started || this.#stopping) return;
    this.open();
    this.#started = true;
    for (const lane of this.#lanes.values()) this.#pump(lane);
  }

  /**
   * The key pools changed (a reload): `ring` is the new configuration. Kept keys take their new
   * alias and rate for the requests that follow (their window keeps its history); added keys
   * start with an empty window once this process owns them; removed keys are handed back and
   * their events moved like a restart moves them. In `rebalance` routes (those that gained keys),
   * queued events that the new pool gives to another key move there: triggers not yet at
   * PagerDuty with the later events of their dedup key, and events without a dedup key beyond
   * their fair share, so that the added keys drain the backlog already queued.
   */
  updateRing(ring: KeyRing, rebalance: readonly string[]): void {
    this.#o.ring = ring;
    for (const lane of this.#lanes.values()) {
      const key = ring.byFp(lane.key.fp);
      if (key) lane.key = key;
    }
    this.#o.spool.ownership.setKeys(ring.lanes().map((k) => k.fp));
    if (rebalance.length) this.#enqueue(() => this.#rebalance(new Set(rebalance)));
  }

  /** Resolves once the ownership changes and reroutes asked for so far are done (tests). */
  settled(): Promise<void> {
    return this.#control;
  }

  /**
   * Stops sending: no new request starts, in-flight ones get `drainTimeoutMs` to finish and are
   * then aborted (their events stay queued; one may reach PagerDuty twice). The spool's queued
   * writes are made durable, then the keys are given up for the other replicas. Everything not
   * delivered stays in the spool.
   */
  async stop(drainTimeoutMs: number): Promise<{ drained: boolean }> {
    this.#stopping = true;
    const lanes = [...this.#lanes.values()];
    if (lanes.length)
      this.#o.metrics.keysOwnership(
        'released',
        lanes.map((l) => l.key.alias),
      );
    for (const lane of lanes) {
      if (lane.timer) clearTimeout(lane.timer);
      lane.timer = undefined;
    }
    const idle = Promise.all(lanes.map((l) => l.inFlight.onIdle()));
    let timer: NodeJS.Timeout | undefined;
    const drained = await Promise.race([
      idle.then(() => true),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(false), drainTimeoutMs);
      }),
    ]);
    clearTimeout(timer);
    if (!drained) {
      for (const lane of lanes) lane.abort?.abort();
      await idle;
    }
    await this.#control.catch(() => {});
    try {
      await this.#o.spool.flush();
    } catch (err) {
      // Lost writes only mean events sent again by the next owner.
      this.#o.metrics.internalError(err, {});
    }
    this.#lanes.clear();
    await this.#o.spool.ownership.stop();
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

  /** Runs `task` after the ownership changes before it. */
  #enqueue(task: () => Promise<void>): void {
    this.#control = this.#control.then(task).catch((err: unknown) => this.#o.metrics.internalError(err, {}));
  }

  #acquired(fps: readonly string[]): void {
    const lanes: Lane[] = [];
    for (const fp of fps) {
      const key = this.#o.ring.byFp(fp);
      if (!key || this.#lanes.has(fp)) continue;
      const lane = new Lane(key);
      this.#lanes.set(fp, lane);
      lanes.push(lane);
    }
    if (lanes.length)
      this.#o.metrics.keysOwnership(
        'acquired',
        lanes.map((l) => l.key.alias),
      );
    if (lanes.length) this.#enqueue(() => this.#load(lanes));
  }

  /**
   * Reads newly acquired lanes from the spool: the send times of their last window (whoever sent
   * them), then their queues. Retries while the spool cannot be read, as long as the lanes are
   * still this process's.
   */
  async #load(lanes: Lane[]): Promise<void> {
    const { spool, window, clock, delivery } = this.#o;
    for (let attempt = 1; ; attempt++) {
      const live = lanes.filter((l) => this.#lanes.get(l.key.fp) === l && l.state === 'loading');
      if (!live.length || this.#stopping) return;
      const fps = live.map((l) => l.key.fp);
      try {
        // The requests of the last window before this process took the key still count against
        // it. The log keeps whole milliseconds of wall time: a request recorded at T ended in
        // [T, T + 1), so it counts from the end of its millisecond (reading `now` truncates too).
        const now = clock.now();
        const mono = clock.monotonic();
        const sends = await spool.recentSends(now - delivery.rateWindowMs, fps);
        const events = await spool.pending(fps);
        for (const lane of live) {
          if (this.#lanes.get(lane.key.fp) !== lane) continue;
          window.reset(lane.key.fp);
          const ends = sends.get(lane.key.fp) ?? [];
          window.seed(
            lane.key.fp,
            ends.map((at) => mono - (now - at) + 1),
          );
        }
        // A commit written before the load read the queue may reach the lane (early) after it.
        const loaded = new Set<number>();
        for (const ev of events) {
          const lane = this.#lanes.get(ev.keyFp);
          if (lane && live.includes(lane) && this.#push(lane, ev)) loaded.add(ev.id);
        }
        const monoNow = clock.monotonic();
        for (const lane of live) {
          if (this.#lanes.get(lane.key.fp) !== lane) continue;
          for (const ev of lane.early) if (!loaded.has(ev.id)) this.#push(lane, ev);
          lane.early = [];
          // A process killed mid-flight leaves up to two requests per key out of that log (see
          // UNRECORDED_PER_KEY); their events are still queued at the head and are sent again, but
          // PagerDuty counted them: count them as sent just now. After a clean handover this costs
          // a key with a backlog at most two of its slots, for one window.
          const unrecorded = Math.min(UNRECORDED_PER_KEY, lane.events.length);
          if (unrecorded) window.seed(lane.key.fp, new Array<number>(unrecorded).fill(monoNow));
          lane.state = 'running';
          this.#pump(lane);
        }
        return;
      } catch (err) {
        if (!(err instanceof SpoolUnavailableError)) this.#o.metrics.internalError(err, {});
        await sleep(Math.min(delivery.maxBackoffMs, delivery.minBackoffMs * 2 ** Math.min(attempt, 10)));
      }
    }
  }

  /** Hands lanes over: nothing new starts, in-flight requests end, their writes become durable. */
  #release(fps: readonly string[]): Promise<void> {
    const lanes = fps.map((fp) => this.#lanes.get(fp)).filter((l): l is Lane => l !== undefined);
    for (const lane of lanes) {
      lane.state = 'releasing';
      if (lane.timer) clearTimeout(lane.timer);
      lane.timer = undefined;
    }
    if (lanes.length)
      this.#o.metrics.keysOwnership(
        'released',
        lanes.map((l) => l.key.alias),
      );
    return (async () => {
      await Promise.all(lanes.map((l) => l.inFlight.onIdle()));
      for (const lane of lanes) if (this.#lanes.get(lane.key.fp) === lane) this.#lanes.delete(lane.key.fp);
      await this.#o.spool.flush();
    })();
  }

  /** Drops lanes at once: another process may send for them any moment now. */
  #lost(fps: readonly string[]): void {
    const lost: string[] = [];
    for (const fp of fps) {
      const lane = this.#lanes.get(fp);
      if (!lane) continue;
      this.#lanes.delete(fp);
      lane.state = 'releasing';
      if (lane.timer) clearTimeout(lane.timer);
      lane.timer = undefined;
      lane.abort?.abort();
      lost.push(lane.key.alias);
    }
    if (lost.length) this.#o.metrics.keysOwnership('lost', lost);
  }

  /** Moves the backlog of `routes` towards the keys their pools gained (see updateRing). */
  async #rebalance(routes: ReadonlySet<string>): Promise<void> {
    const { spool, ring, assigner, metrics } = this.#o;
    const lanes = [...this.#lanes.values()].filter((l) => l.state === 'running' && routes.has(l.key.route));
    if (!lanes.length) return;
    // Nothing is sent from these lanes while their queues are rearranged: an event must not leave
    // through its old key while the spool moves it to a new one.
    for (const lane of lanes) lane.paused = true;
    try {
      // The other replicas must know the added keys before alerts move to them.
      await Promise.all([spool.ownership.registered(), ...lanes.map((l) => l.inFlight.onIdle())]);
      // A lane handed over while this waited is its new owner's to rearrange.
      const still = lanes.filter((l) => this.#lanes.get(l.key.fp) === l && l.state === 'running');
      const targets = new Map<number, string>();
      const candidates: PendingEvent[] = [];
      for (const route of routes) {
        const pool = ring.keysOf(route);
        if (!pool.length) continue;
        const routeLanes = still.filter((l) => l.key.route === route);
        // Events without a dedup key: each key of the pool should hold its share.
        const loose = routeLanes.flatMap((l) =>
          [...l.events].filter((e) => e.dedupKey === null && e.route === route),
        );
        const share = Math.ceil(loose.length / pool.length);
        const fill = new Map<string, number>(pool.map((k) => [k.fp, 0]));
        for (const l of routeLanes)
          fill.set(l.key.fp, [...l.events].filter((e) => e.dedupKey === null).length);
        for (const l of routeLanes) {
          let excess = (fill.get(l.key.fp) ?? 0) - share;
          // The newest go: the oldest keep their place at the head.
          for (const e of [...l.events].reverse()) {
            if (excess <= 0) break;
            if (e.dedupKey !== null || e.route !== route) continue;
            const to = pool.find((k) => (fill.get(k.fp) ?? 0) < share);
            if (!to) break;
            fill.set(to.fp, (fill.get(to.fp) ?? 0) + 1);
            fill.set(l.key.fp, (fill.get(l.key.fp) ?? 0) - 1);
            excess--;
            targets.set(e.id, to.fp);
            candidates.push(e);
          }
          // Events of an alert: where the new pool's rendezvous puts it, unless already at PagerDuty.
          for (const e of l.events) {
            if (e.dedupKey === null || e.route !== route) continue;
            const proposal = assigner.propose(e);
            if ('deadLetter' in proposal || proposal.keyFp === e.keyFp) continue;
            targets.set(e.id, proposal.keyFp);
            candidates.push(e);
          }
        }
      }
      assigner.endBatch();
      if (!candidates.length) return;
      candidates.sort((a, b) => a.id - b.id);
      const results = await spool.reroute(
        candidates,
        (ev, open) => {
          const to = targets.get(ev.id) as string;
          // Open at PagerDuty on a key still configured: the alert's events stay on it.
          if (open?.sent && ring.byFp(open.keyFp)) return { keyFp: open.keyFp };
          // A trigger moved before it: follow it.
          if (open && ev.action !== 'trigger' && ring.byFp(open.keyFp)) return { keyFp: open.keyFp };
          return { keyFp: to };
        },
        { fromOwned: true },
      );
      const moved = new Map<number, string>();
      for (const { event, assignment } of results)
        if ('keyFp' in assignment && assignment.keyFp !== event.keyFp) moved.set(event.id, assignment.keyFp);
      if (!moved.size) return;
      const arrivals = new Map<Lane, PendingEvent[]>();
      for (const lane of lanes) {
        const kept = new Fifo<PendingEvent>();
        for (const e of lane.events) {
          const to = moved.get(e.id);
          if (to === undefined) {
            kept.push(e);
            continue;
          }
          lane.known.delete(e.id);
          e.keyFp = to;
          const target = this.#lanes.get(to);
          if (target) arrivals.set(target, [...(arrivals.get(target) ?? []), e]);
        }
        lane.events = kept;
      }
      for (const [target, events] of arrivals) for (const e of events) this.#accept(target, e);
      const byRoute = new Map<string, number>();
      for (const c of candidates) if (moved.has(c.id)) byRoute.set(c.route, (byRoute.get(c.route) ?? 0) + 1);
      for (const [route, count] of byRoute)
        metrics.rebalanced({ route, count, keys: ring.keysOf(route).map((k) => k.alias) });
    } finally {
      for (const lane of lanes) {
        lane.paused = false;
        this.#pump(lane);
      }
      for (const lane of this.#lanes.values()) this.#pump(lane);
    }
  }

  /** Events of keys no process can send for: move them to configured keys. */
  #orphaned(fps: readonly string[]): void {
    this.#enqueue(async () => {
      const events = await this.#o.spool.pending(fps);
      await this.#reroute(events);
    });
  }

  /**
   * Moves events whose key is not configured to the key the pool gives them now (an open alert's
   * acknowledges and resolves are orphaned: the alert is on a key that is gone), and queues those
   * that land on keys owned here.
   */
  async #reroute(events: readonly PendingEvent[]): Promise<void> {
    if (!events.length) return;
    const { spool, assigner, ring, metrics } = this.#o;
    let results: Awaited<ReturnType<Spool['reroute']>>;
    try {
      results = await spool.reroute(events, (ev, open) => decideKey(assigner.propose(ev), ev.action, open));
    } finally {
      assigner.endBatch();
    }
    const touched = new Set<Lane>();
    for (const { event: ev, assignment } of results) {
      if ('deadLetter' in assignment) {
        metrics.deadLettered({
          ...this.#ctx(ev, null),
          reason: assignment.deadLetter,
          detail: assignment.detail,
          attempts: ev.attempts,
        });
        continue;
      }
      const from = ev.keyFp;
      ev.keyFp = assignment.keyFp;
      // Never had a key (a no_route dead letter, retried after the route got keys): nothing moved.
      if (from !== '') {
        // An acknowledge or resolve queued through the removed key belongs to an alert opened
        // through it (the open-alert map put it there): it cannot reach that alert any more.
        const orphan = assignment.orphaned === true || (ev.action !== 'trigger' && ev.dedupKey !== null);
        metrics.rerouted({
          ...this.#ctx(ev, ring.aliasOf(from)),
          reason: orphan ? 'trigger_key_removed' : 'key_removed',
          to: ring.aliasOf(assignment.keyFp),
        });
      }
      const lane = this.#lanes.get(assignment.keyFp);
      if (lane && this.#accept(lane, ev)) touched.add(lane);
    }
    for (const lane of touched) this.#pump(lane);
  }

  /** Events the spool says became pending: queued on the lanes owned here. */
  #onQueued(events: readonly PendingEvent[]): void {
    const touched = new Set<Lane>();
    const strays: PendingEvent[] = [];
    for (const ev of events) {
      const lane = this.#lanes.get(ev.keyFp);
      if (lane) {
        if (this.#accept(lane, ev)) touched.add(lane);
      } else if (!this.#o.spool.shared && !this.#o.ring.byFp(ev.keyFp)) {
        // A spool of its own: nobody else will ever send for a key that is not configured here.
        strays.push(ev);
      }
    }
    for (const lane of touched) this.#pump(lane);
    if (strays.length) this.#enqueue(() => this.#reroute(strays));
  }

  /** Queues an event on its lane unless known there; true when it can be sent now. */
  #accept(lane: Lane, ev: PendingEvent): boolean {
    if (lane.state === 'loading') {
      lane.early.push(ev);
      return false;
    }
    // A lane being handed over takes nothing new: the next owner reads it from the spool.
    if (lane.state !== 'running') return false;
    return this.#push(lane, ev);
  }

  #push(lane: Lane, ev: PendingEvent): boolean {
    const now = performance.now();
    for (let head = lane.leaving.peek(); head && head.at <= now; head = lane.leaving.peek()) {
      lane.known.delete(head.id);
      lane.leaving.shift();
    }
    // One process's spool hands every event over once (its loads and commits never overlap but
    // at a lane's load, below): no set of 500,000 ids to keep for a backlog.
    if (this.#o.spool.shared) {
      if (lane.known.has(ev.id)) return false;
      lane.known.add(ev.id);
    }
    lane.events.push(ev);
    return true;
  }

  /** The event left the lane: forget its id once the spool no longer lists it. */
  #forget(lane: Lane, id: number): void {
    if (!this.#o.spool.shared) {
      lane.known.delete(id);
      return;
    }
    const leave = () => lane.leaving.push({ id, at: performance.now() + KNOWN_AFTER_DELETE_MS });
    this.#o.spool.flush().then(leave, leave);
  }

  #pump(lane: Lane): void {
    if (
      !this.#started ||
      this.#stopping ||
      lane.state !== 'running' ||
      lane.paused ||
      lane.busy ||
      lane.timer ||
      lane.events.length === 0
    )
      return;
    lane.busy = true;
    lane.inFlight
      .add(() => this.#step(lane))
      .catch((err: unknown) => {
        if (!(err instanceof SpoolUnavailableError)) {
          const head = lane.events.peek();
          this.#o.metrics.internalError(err, head ? this.#ctx(head, lane.key.alias) : {});
        }
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
    if (!head || lane.state !== 'running' || lane.paused) return;
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
      ev = await spool.load(head.id);
    } catch (err) {
      window.cancel(fp);
      throw err;
    }
    if (!ev) {
      // Gone from the spool behind our back: nothing to send.
      window.cancel(fp);
      lane.events.shift();
      this.#forget(lane, head.id);
      return;
    }
    if (ev.keyFp !== fp) {
      // Moved to another key since it was queued here (a reload spread its alert elsewhere, after
      // this event's commit but before it reached this lane): it leaves through that key, after
      // the events of its alert that went there before it.
      window.cancel(fp);
      lane.events.shift();
      lane.known.delete(head.id);
      head.keyFp = ev.keyFp;
      const target = this.#lanes.get(ev.keyFp);
      if (target && this.#accept(target, head)) this.#pump(target);
      return;
    }
    // The last word before a request leaves: a lease that lapsed while loading the body must not
    // let two replicas send for one key.
    if (this.#lanes.get(fp) !== lane || lane.state !== 'running' || !spool.ownership.holds(fp)) {
      window.cancel(fp);
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
    // An aborted request may have reached PagerDuty: it counts.
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
        this.#forget(lane, head.id);
        metrics.delivered({
          ...ctx,
          attempts: head.attempts + 1,
          status: result.status,
          ageMs: clock.now() - head.receivedAt,
          ...(head.sourceAt > 0 ? { sourceDelayMs: clock.now() - head.sourceAt } : {}),
        });
        // With several replicas, the next request of this key waits until this delivery is
        // written: a replica that dies then leaves at most its one request in flight to be sent
        // again by the next owner, not every delivery of the last write round.
        if (spool.shared) await spool.flush().catch(() => {});
        return;
      case 'failed':
        lane.events.shift();
        head.attempts++;
        spool.deadLetter(head, result.reason, result.detail);
        this.#forget(lane, head.id);
        metrics.deadLettered({
          ...ctx,
          reason: result.reason,
          detail: result.detail,
          attempts: head.attempts,
        });
        return;
      case 'aborted':
        // Shutdown or a lost lease: the event stays as it was, for the next start or owner.
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
      this.#forget(lane, head.id);
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
    if (this.#stopping || lane.state !== 'running') return;
    if (lane.timer) clearTimeout(lane.timer);
    const wait = Number.isFinite(ms) ? Math.min(Math.max(0, Math.ceil(ms)), MAX_SLEEP_MS) : MAX_SLEEP_MS;
    lane.timer = setTimeout(() => {
      lane.timer = undefined;
      this.#pump(lane);
    }, wait);
    lane.timer.unref();
  }

  #ctx(ev: PendingEvent, key: string | null): EventContext {
    return { route: ev.route, key, action: ev.action, id: ev.id, dedupKey: ev.dedupKey };
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}

function formatAge(ms: number): string {
  const s = Math.round(ms / 1000);
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.round(s / 60)}m`;
  return `${Math.round(s / 3600)}h`;
}
