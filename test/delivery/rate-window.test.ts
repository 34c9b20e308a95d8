import { describe, expect, it } from 'vitest';
import { SlidingLogRateWindow } from '../../src/delivery/rate-window.js';

/** Sends as fast as the window allows, one in flight, each taking `latency` ms; returns send ends. */
function drive(window: SlidingLogRateWindow, limit: number, count: number, latency: (i: number) => number) {
  let now = 0;
  const spans: Array<{ start: number; end: number }> = [];
  while (spans.length < count) {
    const slot = window.acquire('k', limit, now);
    if (!slot.ok) {
      expect(slot.retryAt).toBeGreaterThan(now);
      now = slot.retryAt;
      continue;
    }
    const start = now;
    now += latency(spans.length);
    window.release('k', now);
    spans.push({ start, end: now });
  }
  return spans;
}

describe('SlidingLogRateWindow', () => {
  it('lets a burst up to the limit out at once, then waits a window after the first one ended', () => {
    const w = new SlidingLogRateWindow({ windowMs: 60_000 });
    for (let i = 0; i < 120; i++) {
      expect(w.acquire('k', 120, 1000)).toEqual({ ok: true });
      w.release('k', 1000);
    }
    expect(w.acquire('k', 120, 1000)).toEqual({ ok: false, retryAt: 61_000 });
    expect(w.acquire('k', 120, 60_999)).toEqual({ ok: false, retryAt: 61_000 });
    expect(w.acquire('k', 120, 61_000)).toEqual({ ok: true });
  });

  it('counts requests seeded from before a restart', () => {
    const w = new SlidingLogRateWindow({ windowMs: 1000 });
    w.seed('k', [500, 100]);
    expect(w.acquire('k', 3, 600)).toEqual({ ok: true });
    w.release('k', 600);
    expect(w.acquire('k', 3, 700)).toEqual({ ok: false, retryAt: 1100 });
    expect(w.usage('k', 1100)).toEqual({ used: 2, pausedUntil: 0 });
  });

  it('keeps keys independent', () => {
    const w = new SlidingLogRateWindow({ windowMs: 1000 });
    expect(w.acquire('a', 1, 0)).toEqual({ ok: true });
    w.release('a', 0);
    expect(w.acquire('a', 1, 10).ok).toBe(false);
    expect(w.acquire('b', 1, 10)).toEqual({ ok: true });
  });

  it('holds a slot while a request is in flight', () => {
    const w = new SlidingLogRateWindow({ windowMs: 1000 });
    expect(w.acquire('k', 1, 0)).toEqual({ ok: true });
    expect(w.acquire('k', 1, 5000)).toEqual({ ok: false, retryAt: Number.POSITIVE_INFINITY });
    w.release('k', 5000);
    expect(w.acquire('k', 1, 5999).ok).toBe(false);
    expect(w.acquire('k', 1, 6000)).toEqual({ ok: true });
  });

  it('does not count a cancelled slot', () => {
    const w = new SlidingLogRateWindow({ windowMs: 1000 });
    expect(w.acquire('k', 1, 0).ok).toBe(true);
    w.cancel('k');
    expect(w.acquire('k', 1, 1).ok).toBe(true);
  });

  it('pauses a key until the given time, and a pause never shortens', () => {
    const w = new SlidingLogRateWindow({ windowMs: 1000 });
    w.pause('k', 500);
    w.pause('k', 200);
    expect(w.acquire('k', 10, 100)).toEqual({ ok: false, retryAt: 500 });
    expect(w.acquire('k', 10, 500)).toEqual({ ok: true });
    expect(w.usage('k', 500)).toEqual({ used: 1, pausedUntil: 500 });
  });

  it.each([
    ['constant latency', () => 7],
    ['jittery latency', (i: number) => ((i * 7919) % 97) + 1],
    ['zero latency', () => 0],
  ])('never lets two arrivals a window apart or less exceed the limit (%s)', (_name, latency) => {
    const windowMs = 1000;
    const limit = 10;
    const spans = drive(new SlidingLogRateWindow({ windowMs }), limit, 200, latency);
    // Arrival at PagerDuty is somewhere in [start, end]: take the worst case for every pair, the
    // earliest arrival for the later request and the latest for the earlier one.
    for (let i = limit; i < spans.length; i++) {
      const later = spans[i] as { start: number };
      const earlier = spans[i - limit] as { end: number };
      expect(later.start - earlier.end).toBeGreaterThanOrEqual(windowMs);
    }
    // And it is not slower than it must be: each window's worth goes out one window after the
    // previous one ended.
    const last = spans[spans.length - 1] as { end: number };
    const windows = spans.length / limit - 1;
    const ideal = windows * windowMs;
    expect(last.end).toBeLessThan(ideal + windows * 100 + 100);
  });
});
