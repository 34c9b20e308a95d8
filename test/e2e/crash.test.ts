import { describe, expect, it } from 'vitest';
import type { Envelope } from '../helpers/fake-sns.js';
import type { RelayProcess } from '../helpers/relay-process.js';
import { Load } from './helpers/load.js';
import type { PostResult } from './helpers/sns-client.js';
import {
  type E2eWorld,
  e2eRule,
  metricValue,
  type RelayOptions,
  until,
  useE2eWorld,
} from './helpers/world.js';

/**
 * kill -9 of a real `pd-relay serve`, restarted on the same spool directory. The promise under
 * test: an event acknowledged to SNS (200) is never lost. Exactly-once is not promised — an event
 * in flight to PagerDuty, or delivered but not yet deleted from the spool, is sent again after the
 * restart — so duplicates are counted, reported, and bounded by what can be in that state: per
 * routing key one request in flight plus one delivered event whose delete awaits the next group
 * commit.
 */
describe('e2e: kill -9 and restart on the same spool', () => {
  let world: E2eWorld;
  useE2eWorld((w) => (world = w), { windowMs: 1000, limit: 1000 });

  /** Each message is its own alert: every event body is unique, so a byte-identical copy is a duplicate. */
  const messages = new Map<number, Envelope>();
  const message = (n: number): Envelope => {
    let env = messages.get(n);
    if (!env) {
      env = world.notification({ e2e: 1, alert: `m${n}`, seq: 0 });
      messages.set(n, env);
    }
    return env;
  };
  const alertOf = (r: { n: number }) => `e2e/m${r.n}`;

  async function killHard(relay: RelayProcess): Promise<void> {
    relay.signal('SIGKILL');
    expect(await relay.wait()).toEqual({ code: null, signal: 'SIGKILL' });
  }

  function report(what: string, figures: Record<string, number>): void {
    console.info(
      `${what}: ${Object.entries(figures)
        .map(([k, v]) => `${k} ${v}`)
        .join(', ')}`,
    );
  }

  it('mid-storm: every message answered 200 reaches PagerDuty after the restart; SNS retries of the unanswered ones are accepted or recognised', async () => {
    messages.clear();
    const dir = world.dir();
    const aliases = ['crash-1', 'crash-2', 'crash-3'];
    const opts: RelayOptions = {
      routes: { default: { aliases, ratePerMinute: 1000 } },
      rules: { 'e2e.yaml': e2eRule('v1') },
    };
    let relay = await world.startRelay(dir, opts);
    const sns = world.client(() => relay);
    world.pd.latency(5);

    const load = new Load(sns, message, { concurrency: 16 }).start();
    await until(
      () => load.ok().length >= 200 && world.pd.accepted.length >= 50,
      'a storm in full flow',
      20_000,
    );
    await killHard(relay);
    await load.stop();
    const before = load.results;
    // Before the kill every answer was a 200; the requests in flight when it hit got none.
    expect(before.filter((r) => r.status !== null && r.status !== 200)).toEqual([]);
    const acked = before.filter((r) => r.status === 200);
    const unanswered = before.filter((r) => r.status === null);
    expect(unanswered.length).toBeGreaterThan(0);

    relay = await world.startRelay(dir, opts);
    // SNS retries what it got no answer for. Some of those were committed before the kill (only the
    // answer was lost): the ledger in the spool recognises them.
    const retried: Array<PostResult & { n: number }> = [];
    for (const r of unanswered) retried.push({ ...(await sns.post(message(r.n))), n: r.n });
    expect(retried.map((r) => r.status)).toEqual(retried.map(() => 200));
    const recognised = retried.filter((r) => JSON.parse(r.body).result === 'duplicate').length;

    const wanted = new Set([...acked, ...retried].map(alertOf));
    const delivered = () => new Set(world.pd.accepted.map((e) => e.dedupKey));
    await until(() => [...wanted].every((k) => delivered().has(k)), 'every acknowledged event', 20_000);
    const missing = [...wanted].filter((k) => !delivered().has(k));
    expect(missing).toEqual([]);
    // Nothing that SNS never got a 200 for went out: every event belongs to a message posted.
    expect([...delivered()].filter((k) => !messages.has(Number(String(k).slice('e2e/m'.length))))).toEqual(
      [],
    );

    const duplicates = world.pd.duplicates().length;
    report('kill -9 mid-storm', {
      acknowledged: acked.length,
      'unanswered at the kill': unanswered.length,
      'of which already spooled': recognised,
      'events delivered': delivered().size,
      'duplicate deliveries': duplicates,
    });
    expect(duplicates).toBeLessThanOrEqual(2 * aliases.length);
  });

  it('with a backlog: every acknowledged event is delivered after the restart, the rate window still holds', async () => {
    messages.clear();
    const dir = world.dir();
    const aliases = ['backlog-1', 'backlog-2'];
    const limit = 20;
    const opts: RelayOptions = {
      routes: { default: { aliases, ratePerMinute: limit } },
      rules: { 'e2e.yaml': e2eRule('v1') },
      delivery: { rateWindowMs: 1000 },
    };
    let relay = await world.startRelay(dir, opts);
    const sns = world.client(() => relay);
    const total = 120;
    // PagerDuty slow while SNS posts, so that the backlog does not depend on how fast this machine
    // posts; then fast again, so that both keys fill their window just before the kill.
    world.pd.latency(1000);
    const load = new Load(sns, message, { concurrency: 16, total }).start();
    await load.done();
    expect(load.tally()).toEqual({ 200: total });
    world.pd.latency(0);
    await world.pd.waitFor((f) => f.accepted.length >= 30, 10_000, 'deliveries under way');
    const metrics = await world.metrics(relay);
    const queued = metricValue(metrics, 'pdrelay_queue_depth');
    // The window lets 20 per second and key through: most events are still queued.
    expect(queued).toBeGreaterThanOrEqual(total / 3);
    await killHard(relay);
    const deliveredBefore = new Set(world.pd.accepted.map((e) => e.dedupKey)).size;

    relay = await world.startRelay(dir, opts);
    const wanted = load.ok().map(alertOf);
    const delivered = () => new Set(world.pd.accepted.map((e) => e.dedupKey));
    await until(() => wanted.every((k) => delivered().has(k)), 'every acknowledged event', 30_000);
    expect(wanted.filter((k) => !delivered().has(k))).toEqual([]);
    expect(relay.logs.find((l) => l.msg.startsWith('Relay started'))).toBeDefined();

    const duplicates = world.pd.duplicates().length;
    report('kill -9 with a backlog', {
      acknowledged: wanted.length,
      'queued at the kill': queued,
      'delivered before the kill': deliveredBefore,
      'duplicate deliveries': duplicates,
      'most requests to one key in a window': Math.max(
        ...aliases.map((a) => world.pd.maxInWindow(world.key(a))),
      ),
    });
    expect(duplicates).toBeLessThanOrEqual(2 * aliases.length);
    for (const a of aliases) expect(world.pd.maxInWindow(world.key(a)), a).toBeLessThanOrEqual(limit);
  });
});
