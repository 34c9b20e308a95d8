// Time to page: how long an alarm takes from SNS's POST to PagerDuty's 202, per message, at a
// steady rate. The measuring function of bench/time-to-page.bench.ts, for any benchmark to reuse
// with any relay (in-process or a `pd-relay serve` process, either spool): give it the relay's SNS
// endpoint, the FakePagerDuty it delivers to (in this process), pre-signed distinct alarms
// (signedDistinctAlarms() in bench/signed-messages.ts) and a rate.
import { Pool } from 'undici';
import type { FakePagerDuty } from '../test/helpers/fake-pagerduty.js';
import type { SignedAlarm } from './signed-messages.js';

export interface TimeToPageOptions {
  /** The relay's SNS origin, e.g. `http://127.0.0.1:8080` (messages go to `POST /sns`). */
  snsUrl: string;
  /**
   * The fake PagerDuty the relay delivers to, running in this process: its `accepted[].at` and our
   * send times are both performance.now(). Its limit must not make the relay wait (e.g. 10,000 per
   * minute and key, and the route's `ratePerMinute` as high), or the rate window is what is measured.
   */
  pagerduty: FakePagerDuty;
  /**
   * Pre-signed alarms, each its own dedup key, none sent to this relay before (a duplicate
   * MessageId is answered from the ledger and pages nothing): ⌈rate × (warmupS + seconds)⌉ are sent,
   * in order.
   */
  alarms: readonly SignedAlarm[];
  /** Messages per second: message i leaves at t0 + i / rate, whatever the answers do (an open loop, as SNS). */
  rate: number;
  /** Measured seconds. */
  seconds: number;
  /**
   * Seconds sent first at the same rate, reported apart (`warmup`): a fresh relay's JIT, connections
   * and caches, a fresh database's. The measured part starts once every warm-up page has arrived,
   * so that it shows the steady state, not the catching up. Default 5; 0 for none.
   */
  warmupS?: number;
  /** Keep-alive connections to the relay (SNS delivers in parallel). Default 64. */
  connections?: number;
  /** How long to wait after the last send for the last pages, per phase. Default 30 s. */
  drainTimeoutMs?: number;
}

/** The figures of one phase (the warm-up, or the measured part). */
export interface PhaseFigures {
  /** Messages sent / the seconds their sending took. */
  achievedRate: number;
  sent: number;
  /** …answered 200 `accepted` by the relay. */
  acknowledged: number;
  /** …whose event reached PagerDuty (202) before the drain timeout. */
  paged: number;
  /** POST started → PagerDuty received the event, ms, ascending (one per paged message). */
  pageMs: Float64Array;
  /** POST started → the relay's 200 read, ms, ascending (one per acknowledged message). */
  ackMs: Float64Array;
  /** The latest any message left after its scheduled time, ms (the load generator's own lag). */
  maxSendLagMs: number;
}

export interface TimeToPage extends PhaseFigures {
  rate: number;
  /** The warm-up phase (a fresh relay at the same rate), when there was one. */
  warmup?: PhaseFigures;
}

/**
 * Sends `alarms` to the relay at `rate` per second (after a warm-up at the same rate, reported
 * apart) and measures, for each message, the time from the start of its POST to PagerDuty's
 * receipt of its event, matched by dedup key (each alarm is its own alert; a redelivery would be a
 * later receipt and is ignored). Each phase ends once every acknowledged message is paged, or after
 * `drainTimeoutMs` (the rest count as not paged).
 */
export async function measureTimeToPage(opts: TimeToPageOptions): Promise<TimeToPage> {
  const warm = Math.round(opts.rate * (opts.warmupS ?? 5));
  const total = warm + Math.round(opts.rate * opts.seconds);
  if (opts.alarms.length < total)
    throw new Error(`Expected ${total} pre-signed alarms for ${opts.rate}/s, got ${opts.alarms.length}.`);
  const pool = new Pool(opts.snsUrl, { connections: opts.connections ?? 64, pipelining: 1 });
  try {
    const phase = (from: number, to: number) =>
      sendPaced(pool, opts.pagerduty, opts.alarms.slice(from, to), opts.rate, opts.drainTimeoutMs ?? 30_000);
    const warmup = warm ? await phase(0, warm) : undefined;
    const measured = await phase(warm, total);
    return { rate: opts.rate, ...measured, ...(warmup ? { warmup } : {}) };
  } finally {
    await pool.close();
  }
}

/** Sends `alarms` open-loop at `rate`, then waits for their pages. */
async function sendPaced(
  pool: Pool,
  pagerduty: FakePagerDuty,
  alarms: readonly SignedAlarm[],
  rate: number,
  drainTimeoutMs: number,
): Promise<PhaseFigures> {
  const fromAccepted = pagerduty.accepted.length;
  /** performance.now() at the start of each acknowledged message's POST, by dedup key. */
  const sentAt = new Map<string, number>();
  const ack: number[] = [];
  const inFlight = new Set<Promise<void>>();
  const send = (alarm: SignedAlarm) => {
    const started = performance.now();
    sentAt.set(alarm.dedupKey, started);
    const p = pool
      .request({
        method: 'POST',
        path: '/sns',
        body: alarm.body,
        headers: { 'content-type': 'text/plain; charset=UTF-8', 'x-amz-sns-message-type': 'Notification' },
      })
      .then(async (res) => {
        const text = await res.body.text();
        if (res.statusCode === 200 && text.includes('"accepted"')) ack.push(performance.now() - started);
        else sentAt.delete(alarm.dedupKey);
      })
      .catch(() => {
        sentAt.delete(alarm.dedupKey);
      })
      .finally(() => {
        inFlight.delete(p);
      });
    inFlight.add(p);
  };

  let maxSendLagMs = 0;
  const t0 = performance.now();
  let last = t0;
  for (let i = 0; i < alarms.length; ) {
    const now = performance.now();
    // Everything due by now leaves now: a late timer does not lower the rate.
    while (i < alarms.length && t0 + (i * 1000) / rate <= now) {
      maxSendLagMs = Math.max(maxSendLagMs, now - (t0 + (i * 1000) / rate));
      last = now;
      send(alarms[i++] as SignedAlarm);
    }
    const next = t0 + (i * 1000) / rate;
    await new Promise((r) => setTimeout(r, Math.max(0, next - performance.now())));
  }
  await Promise.all(inFlight);

  const pageMs: number[] = [];
  const paged = new Set<string>();
  const deadline = performance.now() + drainTimeoutMs;
  let scanned = fromAccepted;
  for (;;) {
    for (; scanned < pagerduty.accepted.length; scanned++) {
      const e = pagerduty.accepted[scanned];
      const at = e?.dedupKey ? sentAt.get(e.dedupKey) : undefined;
      if (e?.dedupKey && at !== undefined && !paged.has(e.dedupKey)) {
        paged.add(e.dedupKey);
        pageMs.push(e.at - at);
      }
    }
    if (paged.size >= sentAt.size || performance.now() > deadline) break;
    await new Promise((r) => setTimeout(r, 20));
  }
  return {
    achievedRate: alarms.length > 1 ? ((alarms.length - 1) * 1000) / (last - t0) : Number.NaN,
    sent: alarms.length,
    acknowledged: ack.length,
    paged: pageMs.length,
    pageMs: Float64Array.from(pageMs).sort(),
    ackMs: Float64Array.from(ack).sort(),
    maxSendLagMs,
  };
}

/** The value under which a share `q` of the ascending `sorted` falls (nearest rank); NaN when empty. */
export function quantile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))] as number;
}
