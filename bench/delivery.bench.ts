// Delivery efficiency: a backlog of 5,000 events over 4 keys against the fake PagerDuty at a
// scaled-down window (default 100 requests per 1 s instead of 120 per 60 s), through the real
// spool and dispatcher. Baseline in the same run: the same backlog through a fixed-window limiter
// (p-queue's interval/intervalCap), which is what DESIGN.md warns about.
//
//   npm run bench delivery            BENCH_EVENTS=5000 BENCH_WINDOW_MS=1000 BENCH_LIMIT=100
import PQueue from 'p-queue';
import { Registry } from 'prom-client';
import { createDelivery } from '../src/delivery/delivery.js';
import { createLogger } from '../src/log/logger.js';
import { PagerDutyClient } from '../src/pagerduty/client.js';
import { Secret } from '../src/shared/secret.js';
import { alarmEvent, entry, tempDir, testConfig } from '../test/helpers/delivery.js';
import { type AcceptedEvent, FakePagerDuty, testRoutingKey } from '../test/helpers/fake-pagerduty.js';

const EVENTS = Number(process.env.BENCH_EVENTS ?? 5000);
const WINDOW_MS = Number(process.env.BENCH_WINDOW_MS ?? 1000);
const LIMIT = Number(process.env.BENCH_LIMIT ?? 100);
const KEYS = Array.from({ length: 4 }, (_, i) => testRoutingKey(`bench${i + 1}`));

interface Figures {
  name: string;
  delivered: number;
  seconds: number;
  /** W ÷ mean time between a request and the one `limit` requests later on the same key (1 = the full rate). */
  steadyRate: number;
  /** Minimum drain time for this per-key split ÷ actual drain time. */
  drainVsIdeal: number;
  /** Minimum drain time with a perfectly even split ÷ actual. */
  drainVsBalanced: number;
  tooMany: number;
  maxInWindow: number;
  perKey: number[];
}

function measure(name: string, fake: FakePagerDuty, started: number): Figures {
  const accepted = fake.accepted;
  const last = Math.max(...accepted.map((e) => e.at));
  const seconds = (last - started) / 1000;
  const byKey = new Map<string, AcceptedEvent[]>();
  for (const e of accepted) byKey.set(e.routingKey, [...(byKey.get(e.routingKey) ?? []), e]);
  let gapSum = 0;
  let gaps = 0;
  let idealMs = 0;
  for (const list of byKey.values()) {
    const times = list.map((e) => e.at).sort((a, b) => a - b);
    for (let i = LIMIT; i < times.length; i++) {
      gapSum += (times[i] as number) - (times[i - LIMIT] as number);
      gaps++;
    }
    idealMs = Math.max(idealMs, (Math.ceil(times.length / LIMIT) - 1) * WINDOW_MS);
  }
  const balancedMs = (Math.ceil(accepted.length / (LIMIT * KEYS.length)) - 1) * WINDOW_MS;
  return {
    name,
    delivered: accepted.length,
    seconds,
    steadyRate: WINDOW_MS / (gapSum / gaps),
    drainVsIdeal: idealMs / (last - started),
    drainVsBalanced: balancedMs / (last - started),
    tooMany: fake.count(429),
    maxInWindow: fake.maxInWindow(),
    perKey: KEYS.map((k) => byKey.get(k)?.length ?? 0),
  };
}

/** pd-relay: spool + dispatcher, backlog committed before start. */
async function relay(name: string, events: ReturnType<typeof alarmEvent>[]): Promise<Figures> {
  const fake = await FakePagerDuty.start({ windowMs: WINDOW_MS, limit: LIMIT });
  const tmp = tempDir('pd-relay-bench-');
  const config = testConfig({
    dir: tmp.dir,
    url: fake.url,
    routes: {
      default: { keys: KEYS.map((key, i) => ({ alias: `key-${i + 1}`, key })), ratePerMinute: LIMIT },
    },
    delivery: { rateWindowMs: WINDOW_MS, minBackoffMs: 50, maxBackoffMs: WINDOW_MS },
    timeoutMs: 5000,
  });
  const delivery = await createDelivery(config, {
    logger: createLogger({ level: 'silent' }),
    registry: new Registry(),
  });
  // One SNS message per event, 50 concurrent requests at a time, like an alarm storm.
  for (let i = 0; i < events.length; i += 50) {
    await Promise.all(events.slice(i, i + 50).map((e) => delivery.sink.commit(entry([e]))));
  }
  const started = performance.now();
  delivery.start();
  await fake.waitFor((f) => f.accepted.length >= events.length, 600_000, 'the backlog');
  const figures = measure(name, fake, started);
  await delivery.stop(1000);
  await fake.close();
  tmp.cleanup();
  return figures;
}

/**
 * The naive way: one p-queue per key with intervalCap = limit per interval = window (a fixed
 * window), round-robin keys, and a fixed pause before retrying a 429 in place.
 */
async function fixedWindow(name: string, count: number): Promise<Figures> {
  const fake = await FakePagerDuty.start({ windowMs: WINDOW_MS, limit: LIMIT });
  const client = new PagerDutyClient({ url: fake.url, timeoutMs: 5000 });
  const queues = KEYS.map(() => new PQueue({ concurrency: 1, intervalCap: LIMIT, interval: WINDOW_MS }));
  const started = performance.now();
  for (let i = 0; i < count; i++) {
    const k = i % KEYS.length;
    const key = new Secret(KEYS[k] as string);
    const ev = alarmEvent('trigger', null);
    void (queues[k] as PQueue).add(async () => {
      for (;;) {
        const r = await client.send(key, 'trigger', ev.body);
        if (r.outcome !== 'retry') return;
        await new Promise((res) => setTimeout(res, WINDOW_MS / 4));
      }
    });
  }
  await Promise.all(queues.map((q) => q.onIdle()));
  const figures = measure(name, fake, started);
  await client.close();
  await fake.close();
  return figures;
}

function print(rows: Figures[]): void {
  const f2 = (n: number) => n.toFixed(3);
  console.log(
    `${EVENTS} events, ${KEYS.length} keys, limit ${LIMIT} per ${WINDOW_MS} ms sliding window (fake PagerDuty on 127.0.0.1)\n`,
  );
  const header = [
    '',
    'delivered',
    'seconds',
    'steady rate ÷ limit',
    'drain vs ideal',
    'vs balanced',
    '429s',
    'max/window/key',
    'per key',
  ];
  const table = [
    header,
    ...rows.map((r) => [
      r.name,
      String(r.delivered),
      r.seconds.toFixed(1),
      f2(r.steadyRate),
      f2(r.drainVsIdeal),
      f2(r.drainVsBalanced),
      String(r.tooMany),
      `${r.maxInWindow} (limit ${LIMIT})`,
      r.perKey.join('/'),
    ]),
  ];
  const widths = header.map((_, i) => Math.max(...table.map((row) => (row[i] ?? '').length)));
  for (const row of table) console.log(row.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  '));
  console.log(
    '\nsteady rate ÷ limit: delivered per window ÷ limit, per key while it has a backlog (W ÷ mean time between request i and i+limit).',
  );
  console.log(
    'drain vs ideal: shortest possible drain for the same per-key split ÷ actual; vs balanced: for an even split.',
  );
}

const alarms = Array.from(
  { length: EVENTS / 2 },
  (_, i) => `arn:aws:cloudwatch:eu-west-1:123456789012:alarm:bench-${i}`,
);
const rows: Figures[] = [];
rows.push(
  await relay('pd-relay, alarms (dedup keys: sticky rendezvous)', [
    ...alarms.map((a) => alarmEvent('trigger', a)),
    ...alarms.map((a) => alarmEvent('resolve', a)),
  ]),
);
rows.push(
  await relay(
    'pd-relay, no dedup keys (least loaded)',
    Array.from({ length: EVENTS }, () => alarmEvent('trigger', null)),
  ),
);
rows.push(await fixedWindow('baseline: p-queue fixed window', EVENTS));
print(rows);
const ok = rows.slice(0, 2).every((r) => r.steadyRate >= 0.97 && r.tooMany === 0 && r.maxInWindow <= LIMIT);
console.log(
  `\npd-relay target (steady rate ÷ limit ≥ 0.97, zero 429s, ≤ limit per window): ${ok ? 'met' : 'NOT MET'}`,
);
process.exitCode = ok ? 0 : 1;
