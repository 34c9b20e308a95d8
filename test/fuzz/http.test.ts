import { generateKeyPairSync, type KeyObject, X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import { type AddressInfo, createServer } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeNotification } from '../../src/decode/decode.js';
import type { NotificationEnvelope } from '../../src/decode/types.js';
import { createRuleEngine } from '../../src/rules/engine.js';
import { loadRuleSet } from '../../src/rules/loader.js';
import { corpusDir, loadSignedCorpus, toHttpFormat } from '../helpers/corpus.js';
import { FakePagerDuty, testRoutingKey } from '../helpers/fake-pagerduty.js';
import { type Envelope, FakeSns, testTls } from '../helpers/fake-sns.js';
import { forceGc, GC_ON_SIGNAL_NODE_OPTIONS } from '../helpers/gc.js';
import { RelayProcess } from '../helpers/relay-process.js';
import { tempDir } from '../helpers/temp.js';
import { type RawOutcome, rawRequest } from './raw-http.js';
import { fuzzCount, fuzzSeed, Rng } from './rng.js';
import { type CaseContext, FAMILIES, type FuzzCase, notification, serialize } from './sns-cases.js';
import { type Outcome, SnsModel } from './sns-model.js';

// HTTP fuzz of the real relay process: ≥ 10,000 generated and mutated requests (sns-cases.ts),
// each with the answers its oracle allows (sns-model.ts). Checked for every request: an answer
// from the documented set in the documented shape, the exact one the oracle expects. Checked over
// the run: the process never dies; PagerDuty receives exactly one event per genuine Notification
// accepted and nothing else; SubscribeURLs are visited only for genuine confirmations; nothing
// but certificates and those URLs is fetched; replays are duplicates; the heap after a forced GC
// is back near its warmed-up baseline. A fixed seed by default, printed;
// PD_RELAY_FUZZ_SEED and PD_RELAY_FUZZ_REQUESTS change the run.

const SEED = fuzzSeed();
const REQUESTS = fuzzCount('PD_RELAY_FUZZ_REQUESTS', 10_000);
const WARMUP = Math.min(1_000, Math.ceil(REQUESTS / 10));
const CONCURRENCY = 16;
const MAX_BODY_BYTES = 1_048_576;
const REQUEST_TIMEOUT_MS = 5_000;
/** Longer than any answer can take (the relay's request timeout, a certificate timeout). */
const CLIENT_TIMEOUT_MS = REQUEST_TIMEOUT_MS + 5_000;
const USERNAME = 'fuzz';
const PASSWORD = 'pässwörd:with:colons-Zq8';
const KEYS = [1, 2, 3, 4].map((n) => testRoutingKey(`fuzz${n}`));
const TOPIC = 'arn:aws:sns:us-east-1:123456789012:alarms';
/**
 * How far the heap may stay above its warmed-up baseline after a forced GC. What the relay keeps on
 * purpose per request is bounded and small: a MessageId in the de-dup LRU (~200 bytes, ~1,500 new
 * ones here), a cached certificate key per URL (≤ 64), metric label sets (bounded). 8 MB is ten
 * times that, and far below a leak of what a request brings: the 10,000 bodies weigh ~60 MB, so
 * keeping even a tenth of each would show.
 */
const HEAP_TOLERANCE_BYTES = 8 * 1024 * 1024;
/**
 * RSS is not garbage-collected: glibc keeps what the 1 MiB bodies made it allocate, and SQLite its
 * page cache. Measured: +20 to +48 MB, the same after 12,000 and 47,000 requests (heap: +1.4 to
 * +2.8 MB). 128 MB still catches a native leak of 10 KB per request.
 */
const RSS_TOLERANCE_BYTES = 128 * 1024 * 1024;

const DOCUMENTED_APP_STATUSES = new Set([200, 400, 401, 403, 404, 405, 413, 503]);
/** The only reasons for a 503 (DESIGN.md: SNS retries them). */
const DOCUMENTED_503 = new Set(['cert_unavailable', 'not_ready', 'spool_unavailable', 'confirm_failed']);
const NODE_STATUSES = new Set([400, 408, 417, 431]);
const RESULTS = new Set(['accepted', 'duplicate', 'confirmed', 'confirm_logged', 'unsubscribe_logged']);
const FIRST = new Set(['accepted', 'confirmed', 'unsubscribe_logged']);

interface Answered {
  c: FuzzCase;
  outcome: RawOutcome;
  /** The parsed JSON answer (app layer). */
  body?: Record<string, unknown>;
}

let sns: FakeSns;
let pd: FakePagerDuty;
let relay: RelayProcess;
let port: number;
let ctx: CaseContext;
const topics = ['arn:aws:sns:*:123456789012:*'];
const corpus: Array<{ name: string; env: Envelope }> = [];
const CORPUS_NOTE =
  'AWS corpus not found at ../shared/corpus (PD_RELAY_CORPUS): fuzzing without AWS-signed messages.';
const dirs: Array<() => void> = [];

beforeAll(async () => {
  console.log(
    `HTTP fuzz: seed ${SEED} (PD_RELAY_FUZZ_SEED), ${REQUESTS} requests (PD_RELAY_FUZZ_REQUESTS) after ${WARMUP} to warm up.`,
  );
  sns = await FakeSns.start();
  pd = await FakePagerDuty.start({ windowMs: 1_000, limit: 10_000, knownKeys: KEYS });
  const otherCertUrl = sns.serveCertificate('SimpleNotificationService-0ddba11.pem', testTls.caPem);
  const garbageCertUrl = sns.serveCertificate('SimpleNotificationService-bad.pem', 'not a certificate');
  const hangCertUrl = `${sns.origin}/SimpleNotificationService-a4a4.pem`;
  sns.fault('/SimpleNotificationService-a4a4.pem', { hang: true });
  const served = new Map<string, KeyObject | 'garbage'>([
    [sns.signingCertUrl, new X509Certificate(testTls.signingCertPem).publicKey],
    [otherCertUrl, new X509Certificate(testTls.caPem).publicKey],
    [garbageCertUrl, 'garbage'],
  ]);
  // The real AWS corpus, when present: its certificates served by the fake SNS host, its topics allowed.
  const corpusAt = corpusDir();
  const signed = corpusAt ? loadSignedCorpus(corpusAt) : [];
  for (const m of signed) {
    const url = sns.serveCertificate(m.certName, m.certPem);
    served.set(url, new X509Certificate(m.certPem).publicKey);
    const env: Envelope = { ...(m.http ? m.raw : toHttpFormat(m.raw)), SigningCertURL: url };
    corpus.push({ name: m.name, env });
  }
  topics.push(...new Set(corpus.map((c) => String(c.env.TopicArn))));
  console.log(
    corpusAt
      ? `AWS corpus: ${corpus.length} messages signed by AWS (${signed.filter((m) => m.negative).length} tampered upstream).`
      : CORPUS_NOTE,
  );

  const spare = createServer().listen(0, '127.0.0.1');
  await once(spare, 'listening');
  const closedPort = (spare.address() as AddressInfo).port;
  spare.close();

  const { dir, cleanup } = tempDir('pd-relay-fuzz-http-');
  dirs.push(cleanup);
  relay = await RelayProcess.start({
    dir,
    configYaml: [
      'server:',
      '  host: 127.0.0.1',
      '  port: 0',
      `  maxBodyBytes: ${MAX_BODY_BYTES}`,
      `  requestTimeoutMs: ${REQUEST_TIMEOUT_MS}`,
      '  headersTimeoutMs: 3000',
      `  basicAuth: { username: ${USERNAME}, password: ${JSON.stringify(PASSWORD)} }`,
      'metrics: { host: 127.0.0.1, port: 0 }',
      'log: { level: info }',
      'sns:',
      `  topics: [${topics.map((t) => JSON.stringify(t)).join(', ')}]`,
      `  certHostPattern: '${sns.certHostPattern}'`,
      '  certTimeoutMs: 1000',
      '  confirmTimeoutMs: 3000',
      `pagerduty: { url: '${pd.url}', timeoutMs: 5000 }`,
      `routes: { default: { keys: [${KEYS.map((k) => `"${k}"`).join(', ')}], ratePerMinute: 10000 } }`,
      'delivery: { rateWindowMs: 1000, minBackoffMs: 50, maxBackoffMs: 500, drainTimeoutMs: 5000 }',
      'spool: { dir: ./data }',
      '',
    ].join('\n'),
    env: {
      NODE_EXTRA_CA_CERTS: sns.caFile,
      NODE_OPTIONS: GC_ON_SIGNAL_NODE_OPTIONS,
    },
  });
  port = Number(new URL(relay.snsUrl).port);
  const rng = new Rng(SEED);
  const model = new SnsModel({ topics, certHostPattern: sns.certHostPattern, served });
  ctx = {
    rng,
    sns,
    model,
    authorization: `Basic ${Buffer.from(`${USERNAME}:${PASSWORD}`).toString('base64')}`,
    username: USERNAME,
    password: PASSWORD,
    maxBodyBytes: MAX_BODY_BYTES,
    topic: TOPIC,
    foreignTopic: 'arn:aws:sns:us-east-1:999999999999:alarms',
    foreignKey: generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey,
    otherCertUrl,
    garbageCertUrl,
    missingCertUrl: `${sns.origin}/SimpleNotificationService-b0b0.pem`,
    hangCertUrl,
    closedPort,
    corpus,
  };
});

afterAll(async () => {
  await relay?.stop();
  await sns?.close();
  await pd?.close();
  for (const cleanup of dirs) cleanup();
});

/** Runs cases from `next` on CONCURRENCY connections until it returns undefined or `count` ran. */
async function run(count: number, next: () => FuzzCase[], health: () => Promise<void>): Promise<Answered[]> {
  const answered: Answered[] = [];
  const queue: FuzzCase[] = [];
  let started = 0;
  const worker = async () => {
    for (;;) {
      if (started >= count) return;
      if (queue.length === 0) queue.push(...next());
      const c = queue.shift() as FuzzCase;
      started++;
      if (started % 1_000 === 0) await health();
      const outcome = await rawRequest(port, c.pieces, {
        timeoutMs: CLIENT_TIMEOUT_MS,
        head: c.head ?? false,
      });
      answered.push({ c, outcome, ...(outcome.kind === 'response' ? { body: parseJson(outcome) } : {}) });
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  return answered;
}

function parseJson(outcome: RawOutcome): Record<string, unknown> | undefined {
  if (outcome.kind !== 'response' || outcome.response.body.length === 0) return undefined;
  try {
    return JSON.parse(outcome.response.body.toString('utf8')) as Record<string, unknown>;
  } catch {
    return undefined;
  }
}

/** The relay is alive and answers its health check. */
async function healthy(): Promise<void> {
  if (relay.child.exitCode !== null || relay.child.signalCode !== null)
    throw new Error(`The relay died (seed ${SEED}):\n${relay.output.slice(-3000)}`);
  const res = await fetch(`${relay.snsUrl}/healthz`);
  if (res.status !== 200) throw new Error(`/healthz answered ${res.status} (seed ${SEED})`);
  await res.arrayBuffer();
}

/** What is wrong with one answer: the documented set and shape, then the case's own oracle. */
function defects(a: Answered): string[] {
  const { c, outcome } = a;
  const out: string[] = [];
  if (outcome.kind === 'timeout') return [`no answer within ${CLIENT_TIMEOUT_MS} ms`];
  if (outcome.kind === 'closed') {
    if (c.outcomes.length && !c.outcomes.some((o) => o.layer === 'closed'))
      out.push(`connection closed without an answer (${outcome.error ?? 'EOF'})`);
    return out;
  }
  const { status, headers, body } = outcome.response;
  const json = /^application\/json/.test(headers['content-type'] ?? '');
  let got: Outcome;
  if (json) {
    if (!DOCUMENTED_APP_STATUSES.has(status)) out.push(`undocumented status ${status}`);
    const parsed = a.body;
    if (c.head) {
      if (body.length) out.push('a body on a HEAD answer');
    } else if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) out.push('not a JSON object');
    else if (status === 200) {
      if ('result' in parsed && (Object.keys(parsed).length !== 1 || !RESULTS.has(String(parsed.result))))
        out.push(`unknown result ${JSON.stringify(parsed)}`);
    } else {
      const keys = Object.keys(parsed).sort().join(',');
      if (keys !== 'error,message' || typeof parsed.error !== 'string' || typeof parsed.message !== 'string')
        out.push(`not the error shape: ${JSON.stringify(parsed).slice(0, 200)}`);
    }
    if (status === 503 && !DOCUMENTED_503.has(String(parsed?.error)))
      out.push(`503 for ${String(parsed?.error)}`);
    if (status === 401 && headers['www-authenticate'] !== 'Basic realm="pd-relay", charset="UTF-8"')
      out.push('401 without the basic-auth challenge');
    if (status === 405 && headers.allow !== 'POST') out.push('405 without Allow: POST');
    got =
      status === 200
        ? { layer: 'app', status, ...(parsed?.result ? { result: String(parsed.result) } : {}) }
        : { layer: 'app', status, ...(parsed?.error ? { error: String(parsed.error) } : {}) };
  } else {
    // Answered by Node's HTTP parser (or the adapter) before the relay saw a request.
    if (!NODE_STATUSES.has(status)) out.push(`status ${status} without a JSON body`);
    if (body.length) out.push(`a non-JSON body: ${JSON.stringify(body.toString('latin1').slice(0, 80))}`);
    got = { layer: 'node', status };
  }
  if (c.outcomes.length && !c.outcomes.some((o) => matches(o, got)))
    out.push(`got ${show(got)}, expected ${c.outcomes.map(show).join(' or ')}`);
  // The security oracle: an acceptance only ever for a message the model verified.
  if (got.layer === 'app' && got.status === 200 && 'result' in got && got.result && !c.genuine)
    out.push(`answered ${got.result} for a message that is not genuine`);
  return out;
}

function matches(want: Outcome, got: Outcome): boolean {
  if (want.layer !== got.layer) return false;
  if (want.layer === 'closed' || got.layer === 'closed') return true;
  if (want.status !== got.status) return false;
  if (want.layer === 'app' && got.layer === 'app') {
    if (want.error !== undefined && want.error !== got.error) return false;
    if (want.result !== undefined && want.result !== got.result) return false;
  }
  return true;
}

function show(o: Outcome): string {
  if (o.layer === 'closed') return 'a closed connection';
  if (o.layer === 'node') return `${o.status} from Node`;
  return `${o.status}${o.error ? ` ${o.error}` : ''}${o.result ? ` ${o.result}` : ''}`;
}

function describeFailures(kind: string, failed: Array<{ a: Answered; why: string[] }>): string {
  return failed
    .slice(0, 8)
    .map(({ a, why }) => {
      const head = Buffer.concat(a.c.pieces).subarray(0, 300).toString('latin1');
      return `${kind} [${a.c.family}] ${a.c.why}: ${why.join('; ')}\n    request starts: ${JSON.stringify(head)}`;
    })
    .join('\n');
}

/** A Prometheus sample's value (summed over label sets that contain `labels`). */
async function metric(name: string, labels: Record<string, string> = {}): Promise<number> {
  const text = await (await fetch(`${relay.metricsUrl}/metrics`)).text();
  let sum = 0;
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(\{[^}]*\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const set = m[2] ?? '';
    if (Object.entries(labels).every(([k, v]) => set.includes(`${k}="${v}"`))) sum += Number(m[3]);
  }
  return sum;
}

/** Heap, external and resident memory after two forced collections. */
async function memory(): Promise<{ heap: number; external: number; rss: number }> {
  await forceGc(relay);
  return {
    heap: await metric('nodejs_heap_size_used_bytes'),
    external: await metric('nodejs_external_memory_bytes'),
    rss: await metric('process_resident_memory_bytes'),
  };
}

/** Waits until the relay has nothing queued for PagerDuty and PagerDuty has `events` events. */
async function deliveryIdle(events: number): Promise<void> {
  await pd.waitFor((f) => f.accepted.length >= events, 60_000, `${events} events at PagerDuty`);
  const deadline = Date.now() + 30_000;
  while ((await metric('pdrelay_queue_depth')) > 0) {
    if (Date.now() > deadline) throw new Error('The relay still has events queued after 30 s');
    await new Promise((r) => setTimeout(r, 100));
  }
}

const mb = (n: number) => `${(n / 1024 / 1024).toFixed(1)} MB`;

describe(`HTTP fuzz of the relay process (seed ${SEED})`, () => {
  // ~25 s on 2 cores; the limit leaves room for a loaded CI machine (and PD_RELAY_FUZZ_REQUESTS).
  it(`answers ${REQUESTS} hostile requests as documented, pages only for genuine messages, and keeps its memory`, {
    timeout: 180_000 + REQUESTS * 10,
  }, async () => {
    const all: Answered[] = [];
    const nextCase = (rng: Rng) => () => {
      ctx.rng = rng;
      return ctx.rng.weighted(FAMILIES)(ctx);
    };

    // Warm-up: the same mix, so that caches, JIT and pools are filled before the baseline.
    all.push(...(await run(WARMUP, nextCase(new Rng(SEED).fork('warm-up')), healthy)));
    const firstDefects = all.flatMap((a) => (defects(a).length ? [{ a, why: defects(a) }] : []));
    expect(firstDefects.length, describeFailures('warm-up', firstDefects)).toBe(0);
    await deliveryIdle(acceptedNotifications(all).flatMap((id) => expectedEvents(id)).length);
    const baseline = await memory();

    const started = performance.now();
    const main = await run(REQUESTS, nextCase(new Rng(SEED).fork('main')), healthy);
    all.push(...main);

    // Replays: every genuine message accepted so far, once more, byte for byte; and bursts of
    // one fresh message five times at once (one acceptance, four duplicates).
    const replayRng = new Rng(SEED).fork('replay');
    const replays = all
      .filter((a) => a.c.genuine && a.body?.result && FIRST.has(String(a.body.result)))
      .filter((a) => Buffer.concat(a.c.pieces).length < 100_000)
      .map(
        (a): FuzzCase => ({
          ...a.c,
          family: 'replay',
          outcomes: [{ layer: 'app', status: 200, result: 'duplicate' }],
          why: `replay of ${a.c.genuine?.messageId}`,
        }),
      );
    const replayed = await run(replays.length, () => [replays.shift() as FuzzCase], healthy);
    all.push(...replayed);
    for (let b = 0; b < 20; b++) {
      ctx.rng = replayRng;
      const env = notification(ctx);
      const bytes = serialize(replayRng, {
        body: Buffer.from(JSON.stringify(env)),
        headers: [['Authorization', ctx.authorization]],
      });
      const copy: FuzzCase = {
        family: 'burst',
        pieces: [bytes],
        outcomes: [
          { layer: 'app', status: 200, result: 'accepted' },
          { layer: 'app', status: 200, result: 'duplicate' },
        ],
        genuine: { type: 'Notification', messageId: String(env.MessageId) },
        why: `burst of ${env.MessageId}`,
      };
      const answers = await Promise.all(
        Array.from({ length: 5 }, () => rawRequest(port, copy.pieces, { timeoutMs: CLIENT_TIMEOUT_MS })),
      );
      all.push(
        ...answers.map((outcome) => ({
          c: copy,
          outcome,
          ...(outcome.kind === 'response' ? { body: parseJson(outcome) } : {}),
        })),
      );
    }
    const seconds = (performance.now() - started) / 1000;
    const sent = main.length + replayed.length + 100;

    // Every answer on its own.
    const failed = all.flatMap((a) => {
      const why = defects(a);
      return why.length ? [{ a, why }] : [];
    });
    expect(failed.length, describeFailures('request', failed)).toBe(0);

    // Per MessageId: at most one acceptance, and exactly one wherever a duplicate was answered.
    const byId = new Map<string, string[]>();
    for (const a of all) {
      const id = a.c.genuine?.messageId;
      const result = a.body?.result;
      if (!id || typeof result !== 'string') continue;
      byId.set(id, [...(byId.get(id) ?? []), result]);
    }
    const badIds = [...byId].filter(([, results]) => results.filter((r) => FIRST.has(r)).length !== 1);
    expect(
      badIds.slice(0, 5),
      'MessageIds accepted more than once, or duplicates without an acceptance',
    ).toEqual([]);

    // PagerDuty: the events of the accepted Notifications and nothing else — one each, with the
    // catch-all's dedup key, for the generated ones; what the built-in rules make of the AWS ones.
    const accepted = acceptedNotifications(all);
    const expected = accepted.flatMap((id) => expectedEvents(id)).sort();
    await deliveryIdle(expected.length);
    await new Promise((r) => setTimeout(r, 500));
    const delivered = pd.accepted.map((e) => String(e.dedupKey)).sort();
    expect(delivered.length).toBe(expected.length);
    expect(delivered).toEqual(expected);
    expect(pd.duplicates()).toEqual([]);
    expect(pd.requests.filter((r) => r.status !== 202)).toEqual([]);

    // The SNS host: certificates (by their SNS path) and the SubscribeURLs of genuine confirmations, once each.
    const confirmedTokens = all
      .filter((a) => a.body?.result === 'confirmed')
      .map((a) => String(a.c.genuine?.token))
      .sort();
    expect(
      sns
        .confirmations()
        .map((r) => String(r.query.get('Token')))
        .sort(),
    ).toEqual(confirmedTokens);
    const stray = sns.requests.filter(
      (r) =>
        r.method !== 'GET' ||
        !(
          /^\/SimpleNotificationService-[0-9a-f]{1,64}\.pem$/.test(r.pathname) ||
          r.query.get('Action') === 'ConfirmSubscription'
        ),
    );
    expect(stray.map((r) => r.path)).toEqual([]);

    // The relay's own account of it: no internal error, no rendering fallback, nothing dead.
    expect(await metric('pdrelay_sns_messages_total', { result: 'error' })).toBe(0);
    expect(await metric('pdrelay_dead_letters_total')).toBe(0);
    expect(await metric('pdrelay_rule_emergency_events_total')).toBe(0);
    expect(await metric('pdrelay_rule_render_failures_total')).toBe(0);
    expect(relay.logs.filter((l) => l.level === 'error' || l.level === 'fatal').slice(0, 3)).toEqual([]);
    for (const secret of [PASSWORD, ...KEYS])
      expect(relay.output.includes(secret), 'a secret in the log').toBe(false);

    // The AWS-signed messages were not all refused (the model verifies real AWS signatures too).
    const awsAccepted = accepted.filter((id) => corpus.some((c) => c.env.MessageId === id));
    if (corpus.length) expect(awsAccepted.length).toBeGreaterThan(0);

    // Memory: back near the warmed-up baseline once the garbage is collected.
    const after = await memory();
    const families = new Map<string, number>();
    for (const a of all) families.set(a.c.family, (families.get(a.c.family) ?? 0) + 1);
    console.log(
      [
        `Sent ${sent} requests in ${seconds.toFixed(1)} s after the warm-up (${WARMUP}); by family: ${JSON.stringify(Object.fromEntries(families))}.`,
        `Answers: ${JSON.stringify(tally(all))}.`,
        `Events at PagerDuty: ${delivered.length}; subscriptions confirmed: ${confirmedTokens.length}; certificate fetches: ${sns.certFetches().length}; AWS-signed messages accepted: ${awsAccepted.length} of ${new Set(corpus.map((c) => c.env.MessageId)).size}.`,
        `Memory after GC: heap ${mb(baseline.heap)} → ${mb(after.heap)}, external ${mb(baseline.external)} → ${mb(after.external)}, RSS ${mb(baseline.rss)} → ${mb(after.rss)}.`,
      ].join('\n'),
    );
    expect(sent).toBeGreaterThanOrEqual(REQUESTS);
    expect(
      after.heap - baseline.heap,
      `heap grew from ${mb(baseline.heap)} to ${mb(after.heap)}`,
    ).toBeLessThan(HEAP_TOLERANCE_BYTES);
    expect(
      after.external - baseline.external,
      `external memory grew from ${mb(baseline.external)} to ${mb(after.external)}`,
    ).toBeLessThan(HEAP_TOLERANCE_BYTES);
    expect(after.rss - baseline.rss, `RSS grew from ${mb(baseline.rss)} to ${mb(after.rss)}`).toBeLessThan(
      RSS_TOLERANCE_BYTES,
    );

    // And it still stops cleanly.
    await healthy();
    relay.signal('SIGTERM');
    expect(await relay.wait(20_000)).toEqual({ code: 0, signal: null });
  });
});

/**
 * The dedup keys PagerDuty must receive for an accepted Notification: the catch-all's for the
 * generated ones; for an AWS-signed one from the corpus, whatever the built-in rules make of it.
 */
function expectedEvents(messageId: string): string[] {
  const aws = corpus.find((c) => c.env.MessageId === messageId);
  if (!aws) return [`sns/${messageId}`];
  engine ??= (() => {
    const loaded = loadRuleSet();
    if (!loaded.ok) throw new Error('The built-in rules do not load');
    return createRuleEngine(loaded.ruleSet);
  })();
  const doc = decodeNotification(aws.env as unknown as NotificationEnvelope, 'default');
  return engine.evaluate(doc).events.map((e) => String(e.dedupKey));
}
let engine: ReturnType<typeof createRuleEngine> | undefined;

/** MessageIds of the Notifications the relay accepted (each must page once). */
function acceptedNotifications(all: Answered[]): string[] {
  return all
    .filter((a) => a.body?.result === 'accepted' && a.c.genuine?.type === 'Notification')
    .map((a) => String(a.c.genuine?.messageId));
}

function tally(all: Answered[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const a of all) {
    const o = a.outcome;
    const key =
      o.kind !== 'response'
        ? o.kind
        : `${o.response.status}${a.body?.error ? ` ${a.body.error}` : a.body?.result ? ` ${a.body.result}` : ''}`;
    out[key] = (out[key] ?? 0) + 1;
  }
  return out;
}
