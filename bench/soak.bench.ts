// `npm run bench soak`: 1,000 signed SNS messages per second for 60 s through the real relay
// process (`pd-relay serve`, the built dist/), with delivery to a local PagerDuty running. Paced,
// not flooding: message i leaves at t0 + i/rate on a pool of keep-alive connections. Every few
// seconds the relay's /metrics is sampled (RSS, heap, event-loop lag, queue depth). At the end
// every accepted message's event must be at PagerDuty or pending in the spool
// (`pd-relay spool stats --json`). The idle relay before the load is the baseline in the same run.
// Prints its figures and exits 1 when a criterion fails. Not in CI: it takes ~2 minutes.
//
// Env: SOAK_RATE (1000/s), SOAK_SECONDS (60), SOAK_SAMPLE_SECONDS (3), SOAK_KEYS (16),
// SOAK_RELAY_NODE_OPTIONS (NODE_OPTIONS of the relay process, e.g. to profile it).
import { execFileSync } from 'node:child_process';
import { createHash, createPrivateKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { availableParallelism, loadavg } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { Pool } from 'undici';
import { FakePagerDuty, testRoutingKey } from '../test/helpers/fake-pagerduty.js';
import { type Envelope, FakeSns, signEnvelope, testTls } from '../test/helpers/fake-sns.js';
import { forceGc, GC_ON_SIGNAL_NODE_OPTIONS } from '../test/helpers/gc.js';
import { RelayProcess } from '../test/helpers/relay-process.js';
import { tempDir } from '../test/helpers/temp.js';
import { alarmMessage, cachedSignatures } from './signed-messages.js';

const RATE = Number(process.env.SOAK_RATE ?? 1_000);
const SECONDS = Number(process.env.SOAK_SECONDS ?? 60);
const SAMPLE_S = Number(process.env.SOAK_SAMPLE_SECONDS ?? 3);
const KEY_COUNT = Number(process.env.SOAK_KEYS ?? 16);
/** Distinct alarms: each flips ALARM → OK → ALARM…, so triggers and resolves follow each other per alarm. */
const ALARMS = 2_000;
/** Enough that the client's pool never queues a request the relay is slow to answer (SNS delivers in parallel). */
const CONNECTIONS = 256;
const TOPIC = 'arn:aws:sns:us-east-1:123456789012:soak-alarms';
const ROOT = fileURLToPath(new URL('..', import.meta.url));

// ---- criteria --------------------------------------------------------------------------------
/** The load generator really paced RATE (else the run says nothing). */
const MIN_RATE_SHARE = 0.98;
/**
 * "Flat" memory, read after a forced full GC (test/helpers/gc-on-signal.mjs) every RETAIN_EVERY_S:
 * between the half and the end of the load, the retained heap may grow by this much. Expected:
 * the de-dup LRU gains ~30,000 MessageIds (~100 bytes each, 3 MB). A leak of 1 KB per message
 * would add 30 MB.
 */
const MAX_HEAP_GROWTH_SECOND_HALF = 16 * 1024 * 1024;
/**
 * And the RSS outside V8's heap (RSS − nodejs_heap_size_total_bytes, after the same GC): SQLite's
 * page cache (capped at 2 MB), socket buffers, allocator slack. The whole RSS is not compared: V8
 * keeps emptied heap pages committed as long as it likes (±60 MB between runs here).
 */
const MAX_RSS_GROWTH_SECOND_HALF = 32 * 1024 * 1024;
const RETAIN_EVERY_S = 15;
/**
 * "Flat" lag: prom-client's nodejs_eventloop_lag_p99_seconds over each sampling interval, at most
 * this all through the second half (it includes prom-client's 10 ms sampling interval; idle reads
 * ~12 ms). A backlog building up inside the relay shows here first.
 */
const MAX_LAG_P99_S = 0.1;
/** How long the backlog may take to drain once the load stops. */
const DRAIN_TIMEOUT_MS = 30_000;

// ---- pre-signed messages -----------------------------------------------------------------------

/** The Message of soak message i: a real CloudWatch alarm, one of ALARMS, in state ALARM or OK. */
const alarmArn = (i: number) => `arn:aws:cloudwatch:us-east-1:123456789012:alarm:soak-alarm-${i % ALARMS}`;

function soakMessage(template: Record<string, unknown>, i: number): string {
  return JSON.stringify({
    ...template,
    AlarmName: `soak-alarm-${i % ALARMS}`,
    AlarmArn: alarmArn(i),
    NewStateValue: Math.floor(i / ALARMS) % 2 === 0 ? 'ALARM' : 'OK',
    OldStateValue: Math.floor(i / ALARMS) % 2 === 0 ? 'OK' : 'ALARM',
    // Each state change its own time: no two events of a run are the same bytes.
    StateChangeTime: new Date(Date.UTC(2025, 0, 1) + i * 1000).toISOString().replace('Z', '+0000'),
  });
}

function soakEnvelope(template: Record<string, unknown>, i: number, certUrl: string): Envelope {
  return {
    Type: 'Notification',
    MessageId: `0000500a-0000-4000-8000-${i.toString(16).padStart(12, '0')}`,
    TopicArn: TOPIC,
    Subject: `Soak alarm ${i % ALARMS}`,
    Message: soakMessage(template, i),
    Timestamp: new Date(Date.UTC(2025, 0, 1) + i).toISOString(),
    SignatureVersion: '2',
    Signature: '',
    SigningCertURL: certUrl,
    UnsubscribeURL: 'https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn=x',
  };
}

/** Signatures of messages [0, count), signed in child processes and cached in .bench/. */
async function signatures(count: number, template: Record<string, unknown>): Promise<string[]> {
  const key = createHash('sha256')
    .update(`${testTls.signingKeyPem}\n${JSON.stringify(template)}\n${ALARMS}\n${TOPIC}\nv2`)
    .digest('hex')
    .slice(0, 16);
  return cachedSignatures(`soak-${key}.txt`, count, new URL(import.meta.url), (from, to) => [
    '--sign',
    String(from),
    String(to),
  ]);
}

/** Worker mode: sign [from, to) and send the signatures back. */
function signWorker(from: number, to: number): void {
  const template = JSON.parse(alarmMessage()) as Record<string, unknown>;
  const key = createPrivateKey(testTls.signingKeyPem);
  const out: string[] = [];
  for (let i = from; i < to; i++)
    out.push(String(signEnvelope(soakEnvelope(template, i, ''), key).Signature));
  process.send?.(out, () => process.exit(0));
}

// ---- measuring -----------------------------------------------------------------------------------

interface Sample {
  t: number;
  rss: number;
  heap: number;
  heapTotal: number;
  external: number;
  lagP99: number;
  lagMax: number;
  queue: number;
  delivered: number;
}

function parseMetrics(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(?:\{[^}]*\})? (\S+)$/.exec(line);
    if (m) out.set(m[1] as string, (out.get(m[1] as string) ?? 0) + Number(m[2]));
  }
  return out;
}

async function sample(relay: RelayProcess, pd: FakePagerDuty, t: number): Promise<Sample> {
  const m = parseMetrics(await (await fetch(`${relay.metricsUrl}/metrics`)).text());
  return {
    t,
    rss: m.get('process_resident_memory_bytes') ?? Number.NaN,
    heap: m.get('nodejs_heap_size_used_bytes') ?? Number.NaN,
    heapTotal: m.get('nodejs_heap_size_total_bytes') ?? Number.NaN,
    external: m.get('nodejs_external_memory_bytes') ?? Number.NaN,
    lagP99: m.get('nodejs_eventloop_lag_p99_seconds') ?? Number.NaN,
    lagMax: m.get('nodejs_eventloop_lag_max_seconds') ?? Number.NaN,
    queue: m.get('pdrelay_queue_depth') ?? Number.NaN,
    delivered: pd.accepted.length,
  };
}

/** The cumulative buckets of a Prometheus histogram: `le` → count. */
async function buckets(relay: RelayProcess, name: string): Promise<Map<number, number>> {
  const text = await (await fetch(`${relay.metricsUrl}/metrics`)).text();
  const out = new Map<number, number>();
  for (const line of text.split('\n')) {
    const m = new RegExp(`^${name}_bucket\\{.*le="([^"]+)".*\\} (\\S+)$`).exec(line);
    if (m) out.set(m[1] === '+Inf' ? Number.POSITIVE_INFINITY : Number(m[1]), Number(m[2]));
  }
  return out;
}

/** The bucket bound under which a share q of the observations between two scrapes fall. */
function bucketQuantile(before: Map<number, number>, after: Map<number, number>, q: number): number {
  const bounds = [...after.keys()].sort((a, b) => a - b);
  const total = (after.get(Number.POSITIVE_INFINITY) ?? 0) - (before.get(Number.POSITIVE_INFINITY) ?? 0);
  for (const le of bounds) {
    if ((after.get(le) ?? 0) - (before.get(le) ?? 0) >= q * total) return le;
  }
  return Number.POSITIVE_INFINITY;
}

/** Linux: what the RSS is made of (anonymous memory, mapped files, shared memory). */
function rssParts(pid: number | undefined): string {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (k: string) =>
      Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? Number.NaN) * 1024;
    return `anon ${mb(kb('RssAnon'))}, file ${mb(kb('RssFile'))}, shmem ${mb(kb('RssShmem'))}`;
  } catch {
    return 'no /proc';
  }
}

function quantile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] as number;
}

const mb = (n: number) => `${(n / 1024 / 1024).toFixed(1)} MB`;
const sign = (n: number) => `${n >= 0 ? '+' : '−'}${mb(Math.abs(n))}`;
const ms = (s: number) => `${(s * 1000).toFixed(1)} ms`;

async function main(): Promise<void> {
  const total = RATE * SECONDS;
  console.log(`Building dist/ for the relay process…`);
  execFileSync(
    process.execPath,
    [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', join(ROOT, 'tsconfig.build.json')],
    {
      stdio: 'inherit',
    },
  );
  const template = JSON.parse(alarmMessage()) as Record<string, unknown>;
  const sigs = await signatures(total, template);

  const sns = await FakeSns.start();
  const keys = Array.from({ length: KEY_COUNT }, (_, i) => testRoutingKey(`soak${i}`));
  // PagerDuty's real window (60 s); the limit is raised so that RATE spread over the keys fits.
  const pd = await FakePagerDuty.start({ windowMs: 60_000, limit: 10_000, knownKeys: keys });
  const { dir, cleanup } = tempDir('pd-relay-soak-');
  const configFile = join(dir, 'config.yaml');
  const relay = await RelayProcess.start({
    dir,
    configYaml: [
      'server: { host: 127.0.0.1, port: 0 }',
      'metrics: { host: 127.0.0.1, port: 0 }',
      'log: { level: info }',
      `sns: { topics: ["${TOPIC}"], certHostPattern: '${sns.certHostPattern}' }`,
      `pagerduty: { url: '${pd.url}' }`,
      `routes: { default: { keys: [${keys.map((k) => `"${k}"`).join(', ')}], ratePerMinute: 10000 } }`,
      'spool: { dir: ./data }',
      '',
    ].join('\n'),
    env: {
      NODE_EXTRA_CA_CERTS: sns.caFile,
      // SIGUSR2 forces a GC (to read retained memory); SOAK_RELAY_NODE_OPTIONS adds e.g. a profiler.
      NODE_OPTIONS: [GC_ON_SIGNAL_NODE_OPTIONS, process.env.SOAK_RELAY_NODE_OPTIONS ?? ''].join(' ').trim(),
    },
  });
  // The relay's log lines are kept by RelayProcess; at ~2,000 lines/s that is memory of this
  // process only, not of the relay's.
  const pool = new Pool(relay.snsUrl, { connections: CONNECTIONS, pipelining: 1 });
  let failed = false;
  const fail = (why: string) => {
    failed = true;
    console.log(`FAIL: ${why}`);
  };

  try {
    // Baseline: the idle relay, one request to load the certificate.
    const warm = JSON.stringify({ ...soakEnvelope(template, 0, sns.signingCertUrl), Signature: sigs[0] });
    const first = await pool.request({
      method: 'POST',
      path: '/sns',
      body: warm,
      headers: { 'content-type': 'text/plain; charset=UTF-8' },
    });
    await first.body.dump();
    if (first.statusCode !== 200) throw new Error(`The warm-up message got ${first.statusCode}`);
    // Open every connection of the pool before the clock starts (SNS keeps its connections alive):
    // the same message again, a duplicate each time.
    await Promise.all(
      Array.from({ length: CONNECTIONS }, async () => {
        const res = await pool.request({
          method: 'POST',
          path: '/sns',
          body: warm,
          headers: { 'content-type': 'text/plain; charset=UTF-8' },
        });
        await res.body.dump();
      }),
    );
    await new Promise((r) => setTimeout(r, 2_000));
    await sample(relay, pd, 0); // resets the lag histogram
    await new Promise((r) => setTimeout(r, SAMPLE_S * 1000));
    const idle = await sample(relay, pd, 0);
    const retained: Sample[] = [];
    const retain = async (t: number) => {
      await forceGc(relay, 1);
      const s = await sample(relay, pd, t);
      retained.push(s);
      console.log(
        `  t=${t.toFixed(0).padStart(3)} s  after a forced GC: RSS ${mb(s.rss)} (${rssParts(relay.child.pid)}), heap ${mb(s.heap)} of ${mb(s.heapTotal)}, external ${mb(s.external)}`,
      );
    };
    await retain(0);
    const histogramBefore = await buckets(relay, 'pdrelay_ingest_request_duration_seconds');
    // This process's own event loop: a late client inflates the latencies it measures.
    const clientLag = monitorEventLoopDelay({ resolution: 10 });
    clientLag.enable();

    // The load: message i (from 1; 0 warmed up) leaves at t0 + (i - 1) / RATE.
    const latencies = new Float64Array(total);
    /** When each answered request was sent (ms after t0), to split the run into halves. */
    const sentAt = new Float64Array(total);
    const statuses = new Map<string, number>();
    let answered = 0;
    let accepted = 0;
    let sent = 1;
    let maxSendLagMs = 0;
    const samples: Sample[] = [];
    const t0 = performance.now();
    const pending = new Set<Promise<void>>();
    const sendOne = (i: number) => {
      const body = JSON.stringify({ ...soakEnvelope(template, i, sns.signingCertUrl), Signature: sigs[i] });
      const started = performance.now();
      const p = pool
        .request({
          method: 'POST',
          path: '/sns',
          body,
          headers: { 'content-type': 'text/plain; charset=UTF-8', 'x-amz-sns-message-type': 'Notification' },
        })
        .then(async (res) => {
          const text = await res.body.text();
          sentAt[answered] = started - t0;
          latencies[answered++] = performance.now() - started;
          const key = `${res.statusCode} ${text.slice(0, 40)}`;
          statuses.set(key, (statuses.get(key) ?? 0) + 1);
          if (res.statusCode === 200 && text.includes('"accepted"')) accepted++;
        })
        .catch((err: Error) => {
          sentAt[answered] = started - t0;
          latencies[answered++] = performance.now() - started;
          statuses.set(`error ${err.message}`, (statuses.get(`error ${err.message}`) ?? 0) + 1);
        })
        .finally(() => pending.delete(p));
      pending.add(p);
    };
    const sampler = setInterval(() => {
      void sample(relay, pd, (performance.now() - t0) / 1000).then((s) => {
        samples.push(s);
        console.log(
          `  t=${s.t.toFixed(0).padStart(3)} s  sent ${String(sent).padStart(6)}  RSS ${mb(s.rss).padStart(9)}  heap ${mb(s.heap).padStart(8)}  lag p99 ${ms(s.lagP99).padStart(8)}  max ${ms(s.lagMax).padStart(8)}  queue ${String(s.queue).padStart(5)}  at PagerDuty ${s.delivered}`,
        );
      });
    }, SAMPLE_S * 1000);
    const gcTimer = setInterval(() => void retain((performance.now() - t0) / 1000), RETAIN_EVERY_S * 1000);
    await new Promise<void>((resolve) => {
      const tick = () => {
        const now = performance.now();
        const due = Math.min(total, 1 + Math.floor(((now - t0) / 1000) * RATE));
        if (due > sent) maxSendLagMs = Math.max(maxSendLagMs, now - (t0 + ((sent - 1) / RATE) * 1000));
        while (sent < due) sendOne(sent++);
        if (sent >= total) resolve();
        else setTimeout(tick, 2);
      };
      tick();
    });
    const sendSeconds = (performance.now() - t0) / 1000;
    await Promise.all(pending);
    clearInterval(sampler);
    clearInterval(gcTimer);
    const loadEnd = performance.now();
    clientLag.disable();
    const histogramAfter = await buckets(relay, 'pdrelay_ingest_request_duration_seconds');
    const last = await sample(relay, pd, (loadEnd - t0) / 1000);
    samples.push(last);
    await retain((performance.now() - t0) / 1000);

    // Drain: every accepted message's event delivered or still pending in the spool.
    const expectedEvents = accepted + 1;
    while (pd.accepted.length < expectedEvents && performance.now() - loadEnd < DRAIN_TIMEOUT_MS)
      await new Promise((r) => setTimeout(r, 200));
    const drainMs = performance.now() - loadEnd;
    const stats = JSON.parse(
      execFileSync(
        process.execPath,
        [join(ROOT, 'bin/pd-relay.js'), 'spool', 'stats', '--json', '--config', configFile],
        {
          encoding: 'utf8',
        },
      ),
    ) as { pending: { total: number }; deadLetters: { total: number }; messageIds: number };

    // Figures: the idle relay is the baseline; the first half of the load is the baseline of the second.
    const lat = latencies.subarray(0, answered).slice().sort();
    const steady = latencies
      .subarray(0, answered)
      .filter((_, i) => (sentAt[i] as number) >= (SECONDS / 2) * 1000)
      .sort();
    const half = SECONDS / 2;
    const firstHalf = samples.filter((s) => s.t < half);
    const secondHalf = samples.filter((s) => s.t >= half);
    const peak = (list: Sample[], f: (s: Sample) => number) => Math.max(...list.map(f));
    const mean = (list: Sample[], f: (s: Sample) => number) =>
      list.reduce((sum, s) => sum + f(s), 0) / list.length;
    // What the relay retains (after a forced GC) at the half and at the end of the load.
    const retainedAt = (t: number) =>
      retained.reduce(
        (best, r) => (Math.abs(r.t - t) < Math.abs(best.t - t) ? r : best),
        retained[0] as Sample,
      );
    const mid = retainedAt(half);
    const end = retained[retained.length - 1] as Sample;
    const heapGrowth = end.heap - mid.heap;
    const rssGrowth = end.rss - mid.rss;
    // RSS outside V8's heap (native: SQLite, sockets, buffers, the allocator): V8 gives its emptied
    // pages back when it likes, so the whole RSS says little about what is retained.
    const native = (r: Sample) => r.rss - r.heapTotal;
    const nativeGrowth = native(end) - native(mid);
    const worstLag = peak(secondHalf, (s) => s.lagP99);
    const rate = (sent - 1) / sendSeconds;
    const row = (name: string, list: Sample[]) =>
      `  ${name.padEnd(12)} RSS peak ${mb(peak(list, (s) => s.rss)).padStart(9)}  mean ${mb(mean(list, (s) => s.rss)).padStart(9)}   lag p99 mean ${ms(mean(list, (s) => s.lagP99)).padStart(8)}  worst ${ms(peak(list, (s) => s.lagP99)).padStart(8)}   queue peak ${peak(list, (s) => s.queue)}`;
    console.log('');
    console.log(
      `Load average (1/5 min; ${availableParallelism()} CPUs shared by the relay, the load generator, PagerDuty's fake and anything else running): ${loadavg()
        .slice(0, 2)
        .map((l) => l.toFixed(2))
        .join(' / ')}.`,
    );
    console.log(
      `Node ${process.version}; ${RATE}/s for ${SECONDS} s, ${CONNECTIONS} connections, ${KEY_COUNT} keys, ${ALARMS} alarms; ${Buffer.byteLength(warm)} bytes per message.`,
    );
    console.log(
      `Sent ${sent - 1} in ${sendSeconds.toFixed(1)} s: ${rate.toFixed(0)}/s (worst pacing lag ${maxSendLagMs.toFixed(0)} ms).`,
    );
    console.log(`Answers: ${JSON.stringify(Object.fromEntries(statuses))}`);
    const figures = (l: Float64Array) =>
      `p50 ${quantile(l, 0.5).toFixed(1)} ms, p90 ${quantile(l, 0.9).toFixed(1)} ms, p99 ${quantile(l, 0.99).toFixed(1)} ms, p99.9 ${quantile(l, 0.999).toFixed(1)} ms, max ${(l[l.length - 1] ?? Number.NaN).toFixed(1)} ms`;
    console.log(
      `Ingest latency (client side, request to answer): ${figures(lat)}; second half only: ${figures(steady)}.`,
    );
    const server = (q: number) => {
      const le = bucketQuantile(histogramBefore, histogramAfter, q);
      return Number.isFinite(le) ? `≤ ${(le * 1000).toFixed(0)} ms` : '> 15 s';
    };
    console.log(
      `Ingest latency (relay side, pdrelay_ingest_request_duration_seconds buckets): p50 ${server(0.5)}, p90 ${server(0.9)}, p99 ${server(0.99)}, p99.9 ${server(0.999)}.` +
        ` Load generator's own event-loop delay: p99 ${(clientLag.percentile(99) / 1e6).toFixed(0)} ms, max ${(clientLag.max / 1e6).toFixed(0)} ms.`,
    );
    console.log(row('idle', [idle]));
    console.log(row('first half', firstHalf));
    console.log(row('second half', secondHalf));
    console.log(
      `After forced GCs: heap ${retained.map((r) => `${mb(r.heap)} at ${r.t.toFixed(0)} s`).join(', ')}; RSS ${retained.map((r) => mb(r.rss)).join(', ')}.` +
        ` Second half: heap ${sign(heapGrowth)}, RSS ${sign(rssGrowth)}, RSS outside the V8 heap ${sign(nativeGrowth)} (${mb(native(mid))} → ${mb(native(end))}); end of load RSS ×${(end.rss / (retained[0] as Sample).rss).toFixed(2)} the idle one.` +
        ` Worst lag p99 of the second half ×${(worstLag / Math.max(idle.lagP99, 1e-4)).toFixed(1)} idle (prom-client's figure includes its 10 ms sampling interval).`,
    );
    console.log(
      `Events: ${expectedEvents} accepted, ${pd.accepted.length} at PagerDuty, ${stats.pending.total} pending in the spool, ${stats.deadLetters.total} dead letters; drained in ${(drainMs / 1000).toFixed(1)} s after the load. MessageIds in the spool: ${stats.messageIds}.`,
    );

    // Criteria.
    if (rate < RATE * MIN_RATE_SHARE) fail(`the load generator reached ${rate.toFixed(0)}/s, not ${RATE}/s`);
    if (accepted !== sent - 1) fail(`${sent - 1 - accepted} messages were not accepted`);
    if (heapGrowth > MAX_HEAP_GROWTH_SECOND_HALF)
      fail(
        `the retained heap grew ${mb(heapGrowth)} in the second half (limit ${mb(MAX_HEAP_GROWTH_SECOND_HALF)})`,
      );
    if (nativeGrowth > MAX_RSS_GROWTH_SECOND_HALF)
      fail(
        `RSS outside the V8 heap grew ${mb(nativeGrowth)} in the second half (limit ${mb(MAX_RSS_GROWTH_SECOND_HALF)})`,
      );
    if (!(worstLag <= MAX_LAG_P99_S))
      fail(`event-loop lag p99 reached ${ms(worstLag)} in the second half (limit ${ms(MAX_LAG_P99_S)})`);
    if (pd.accepted.length + stats.pending.total !== expectedEvents)
      fail(
        `${expectedEvents} events accepted, but ${pd.accepted.length} delivered + ${stats.pending.total} pending`,
      );
    if (stats.deadLetters.total > 0) fail(`${stats.deadLetters.total} dead letters`);
    // Exactly the events the messages make: per alarm, a trigger per ALARM and a resolve per OK.
    // (Two resolves of one alarm are the same bytes, so PagerDuty's fake cannot tell a redelivery
    // from the next resolve: count them instead.)
    const want = new Map<string, number>();
    for (let i = 0; i < sent; i++) {
      const id = `${alarmArn(i)} ${Math.floor(i / ALARMS) % 2 === 0 ? 'trigger' : 'resolve'}`;
      want.set(id, (want.get(id) ?? 0) + 1);
    }
    const got = new Map<string, number>();
    for (const e of pd.accepted)
      got.set(`${e.dedupKey} ${e.action}`, (got.get(`${e.dedupKey} ${e.action}`) ?? 0) + 1);
    const extra = [...got].filter(([id, n]) => n > (want.get(id) ?? 0));
    if (extra.length) fail(`events PagerDuty got more often than the messages say, e.g. ${extra[0]?.[0]}`);
    const short = [...want]
      .filter(([id, n]) => n > (got.get(id) ?? 0))
      .reduce((sum, [id, n]) => sum + n - (got.get(id) ?? 0), 0);
    if (short !== stats.pending.total)
      fail(`${short} events missing at PagerDuty, ${stats.pending.total} pending in the spool`);
    console.log(
      failed
        ? 'Soak FAILED.'
        : `Soak passed: rate ≥ ${MIN_RATE_SHARE * 100}% of ${RATE}/s, every message accepted, second-half growth of the retained heap ≤ ${mb(MAX_HEAP_GROWTH_SECOND_HALF)} and of RSS outside it ≤ ${mb(MAX_RSS_GROWTH_SECOND_HALF)}, lag p99 ≤ ${ms(MAX_LAG_P99_S)} all through the second half, every event delivered or pending, exactly the events the messages make, no dead letter.`,
    );
  } finally {
    await pool.close();
    await relay.stop();
    await pd.close();
    await sns.close();
    cleanup();
  }
  process.exitCode = failed ? 1 : 0;
}

if (process.argv[2] === '--sign') signWorker(Number(process.argv[3]), Number(process.argv[4]));
else await main();
