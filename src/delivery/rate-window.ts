/**
 * Per-key request budget over a sliding window. PagerDuty counts about 120 events per integration
 * key over "a 60 second window looking back from the current time"
 * (https://developer.pagerduty.com/docs/events-api-v2/rate-limits/) and answers 429 beyond it.
 *
 * One process sends for a key at a time (KeyOwnership), so the window lives in that process; a
 * process taking a key over seeds it from the send times the spool recorded.
 */
export interface RateWindow {
  /**
   * Takes a send slot for `key` at monotonic time `now` if one is free (the caller must then call
   * `release` or `cancel`), or says when the next one frees (`Infinity` while only requests still
   * in flight hold the window).
   */
  acquire(key: string, limit: number, now: number): { ok: true } | { ok: false; retryAt: number };
  /** The request of an acquired slot ended at `now` (response, error or timeout). */
  release(key: string, now: number): void;
  /** An acquired slot was not used: nothing was sent. */
  cancel(key: string): void;
  /** No slot for `key` before `until` (after a 429). Extends, never shortens, a pause. */
  pause(key: string, until: number): void;
  /** Requests to `key` that ended at these times, sent before this process owned it (from the spool). */
  seed(key: string, ends: readonly number[]): void;
  /** Forgets what is known of `key` (before seeding it again from the spool). */
  reset(key: string): void;
  /** Requests counted in the window ending at `now` (in flight included), and the pause end. */
  usage(key: string, now: number): { used: number; pausedUntil: number };
}

interface KeyLog {
  /** End times of finished requests still inside the window, ascending. */
  ends: number[];
  inFlight: number;
  pausedUntil: number;
}

/**
 * The embedded RateWindow: a sliding log of request end times per key.
 *
 * Why end times: PagerDuty counts arrivals, which happen somewhere between our send and its answer.
 * Recording the send time would let latency jitter put `limit + 1` arrivals inside one window (an
 * earlier request arriving late, the next one arriving early); recording the end and allowing the
 * next slot only `windowMs` after it guarantees at least `windowMs` between the two arrivals. An
 * in-flight request holds its slot until it ends. The price is one round-trip per window: with a
 * 60 s window and 100 ms latency, 0.998 of the nominal rate. A burst up to the limit goes at once.
 */
export class SlidingLogRateWindow implements RateWindow {
  readonly #windowMs: number;
  readonly #logs = new Map<string, KeyLog>();

  constructor(opts: { windowMs: number }) {
    this.#windowMs = opts.windowMs;
  }

  acquire(key: string, limit: number, now: number): { ok: true } | { ok: false; retryAt: number } {
    const log = this.#log(key);
    if (now < log.pausedUntil) return { ok: false, retryAt: log.pausedUntil };
    this.#prune(log, now);
    const used = log.ends.length + log.inFlight;
    if (used < limit) {
      log.inFlight++;
      return { ok: true };
    }
    // The oldest (used - limit + 1) finished requests must leave the window first.
    const index = used - limit;
    if (index >= log.ends.length) return { ok: false, retryAt: Number.POSITIVE_INFINITY };
    return { ok: false, retryAt: (log.ends[index] as number) + this.#windowMs };
  }

  release(key: string, now: number): void {
    const log = this.#log(key);
    if (log.inFlight > 0) log.inFlight--;
    const ends = log.ends;
    let i = ends.length;
    while (i > 0 && (ends[i - 1] as number) > now) i--;
    ends.splice(i, 0, now);
  }

  cancel(key: string): void {
    const log = this.#log(key);
    if (log.inFlight > 0) log.inFlight--;
  }

  seed(key: string, ends: readonly number[]): void {
    const log = this.#log(key);
    log.ends = [...log.ends, ...ends].sort((a, b) => a - b);
  }

  reset(key: string): void {
    const log = this.#logs.get(key);
    if (!log) return;
    // Requests still in flight keep their slots: they release them when they end.
    this.#logs.set(key, { ends: [], inFlight: log.inFlight, pausedUntil: log.pausedUntil });
  }

  pause(key: string, until: number): void {
    const log = this.#log(key);
    log.pausedUntil = Math.max(log.pausedUntil, until);
  }

  usage(key: string, now: number): { used: number; pausedUntil: number } {
    const log = this.#log(key);
    this.#prune(log, now);
    return { used: log.ends.length + log.inFlight, pausedUntil: log.pausedUntil };
  }

  #log(key: string): KeyLog {
    let log = this.#logs.get(key);
    if (!log) {
      log = { ends: [], inFlight: 0, pausedUntil: 0 };
      this.#logs.set(key, log);
    }
    return log;
  }

  /** Drops ends that left the window: an end at t counts while now - t < windowMs. */
  #prune(log: KeyLog, now: number): void {
    const cutoff = now - this.#windowMs;
    let n = 0;
    while (n < log.ends.length && (log.ends[n] as number) <= cutoff) n++;
    if (n) log.ends.splice(0, n);
  }
}
