// `npm run bench failover`: how long the routing keys of a dead replica go unserved. Three
// `pd-relay serve` processes (the built dist/) share one PostgreSQL database (a private server
// started here, fsync on) and 4 routing keys, under a steady load of signed CloudWatch alarms
// posted to the live replicas (a failed POST is tried again on another one, as SNS does). Each run
// kills the replica that dispatches the most keys and measures kill → the first request PagerDuty
// receives through one of its keys from another replica; then the killed one is started again and
// the keys spread out before the next run. First FAILOVER_RUNS with kill -9 (a node lost: its keys
// wait for its lease to lapse), then HANDOVER_RUNS with SIGTERM (a rolling update: handed over at
// once). Each replica talks to a PagerDuty fake of its own, so every request says which replica
// sent it. At the end every acknowledged alarm must have been paged.
//
//   FAILOVER_RUNS=10 HANDOVER_RUNS=5 FAILOVER_RATE=40 (alarms per second)
//
// Exit 1 when the slowest kill -9 failover exceeds 10 s (the bound) or an alarm is lost.
import { Pool } from 'undici';
import { FakePagerDuty } from '../test/helpers/fake-pagerduty.js';
import { FakeSns } from '../test/helpers/fake-sns.js';
import { startPostgres } from '../test/helpers/postgres.js';
import { RelayProcess } from '../test/helpers/relay-process.js';
import { tempDir } from '../test/helpers/temp.js';
import { benchDatabase, describePostgres } from './bench-postgres.js';
import { benchKeys, benchRelayConfig, ensureBuilt, keysOwned } from './built-relay.js';
import { type SignedAlarm, signedDistinctAlarms } from './signed-messages.js';

const FAILOVER_RUNS = Number(process.env.FAILOVER_RUNS ?? 10);
const HANDOVER_RUNS = Number(process.env.HANDOVER_RUNS ?? 5);
const RATE = Number(process.env.FAILOVER_RATE ?? 40);
const REPLICAS = 3;
/** The bound: a dead replica's keys served again within this. */
const MAX_FAILOVER_MS = 10_000;
/** Far above RATE over 4 keys: the rate window never delays a first request. */
const LIMIT = 10_000;
/** Alarms signed for the run: RATE for an upper bound of its length (no alarm may be sent twice). */
const MESSAGES = RATE * (60 + 25 * FAILOVER_RUNS + 15 * HANDOVER_RUNS);

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** The key aliases a relay process dispatches now, from its own log lines. */
function ownedAliases(relay: RelayProcess): Set<string> {
  const owned = new Set<string>();
  for (const l of relay.logs) {
    const keys = Array.isArray(l.keys) ? (l.keys as string[]) : [];
    if (l.msg === 'Took on the dispatch of these keys.') for (const k of keys) owned.add(k);
    else if (l.msg.startsWith('Handing the dispatch') || l.msg.startsWith('Lost the dispatch'))
      for (const k of keys) owned.delete(k);
  }
  return owned;
}

/** One replica slot: its directory, its PagerDuty fake, the process running now. */
interface Slot {
  dir: string;
  cleanup: () => void;
  pagerduty: FakePagerDuty;
  relay: RelayProcess;
  /** Keep-alive connections to this process (a restarted one listens on a new port). */
  pool: Pool;
  /** Whether the load may post to it (false from the moment it is signalled). */
  live: boolean;
}

/**
 * The steady load: alarm i leaves at t0 + i / RATE for a live slot (in turn); an error or a 5xx is
 * tried again on another live slot 100 ms later, for up to a minute, as SNS retries.
 */
class Load {
  readonly acknowledged = new Set<string>();
  failed = 0;
  retries = 0;
  #next = 0;
  #turn = 0;
  #stopped = false;
  #timer: Promise<void> | undefined;
  readonly #inFlight = new Set<Promise<void>>();

  constructor(
    private readonly slots: Slot[],
    private readonly alarms: SignedAlarm[],
  ) {}

  start(): void {
    const t0 = performance.now();
    this.#timer = (async () => {
      while (!this.#stopped) {
        while (!this.#stopped && t0 + (this.#next * 1000) / RATE <= performance.now()) {
          if (this.#next >= this.alarms.length) {
            console.warn(
              'Out of pre-signed alarms: the load stops (raise MESSAGES in bench/failover.bench.ts).',
            );
            this.#stopped = true;
            break;
          }
          const p = this.#deliver(this.alarms[this.#next++] as SignedAlarm).finally(() =>
            this.#inFlight.delete(p),
          );
          this.#inFlight.add(p);
        }
        await sleep(Math.max(1, t0 + (this.#next * 1000) / RATE - performance.now()));
      }
    })();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    await this.#timer;
    await Promise.all(this.#inFlight);
  }

  async #deliver(alarm: SignedAlarm): Promise<void> {
    const giveUp = performance.now() + 60_000;
    for (;;) {
      const live = this.slots.filter((s) => s.live);
      const slot = live[this.#turn++ % Math.max(1, live.length)];
      if (slot) {
        try {
          const res = await slot.pool.request({
            method: 'POST',
            path: '/sns',
            body: alarm.body,
            headers: {
              'content-type': 'text/plain; charset=UTF-8',
              'x-amz-sns-message-type': 'Notification',
            },
          });
          const text = await res.body.text();
          if (res.statusCode === 200) {
            // "duplicate": a retry of one a killed replica had committed before dying.
            this.acknowledged.add(alarm.dedupKey);
            return;
          }
          if (res.statusCode < 500) {
            this.failed++;
            console.warn(`An alarm got ${res.statusCode}: ${text.slice(0, 200)}`);
            return;
          }
        } catch {
          // The replica died under the request: SNS tries again.
        }
      }
      if (performance.now() > giveUp) {
        this.failed++;
        return;
      }
      this.retries++;
      await sleep(100);
    }
  }
}

interface Run {
  signal: 'SIGKILL' | 'SIGTERM';
  /** performance.now() when the signal was sent. */
  at: number;
  victim: number;
  keys: string[];
  /** Signal → the victim's keys taken on by another replica (its log line: ms, wall clock, ±1 ms). */
  takenOnMs: number;
  /** Signal → PagerDuty's first request through one of the victim's keys from another replica. */
  firstMs: number;
  /** … through the last of its keys. */
  allMs: number;
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
};
const sec = (ms: number) => `${(ms / 1000).toFixed(2)} s`;

async function main(): Promise<void> {
  ensureBuilt();
  const keys = benchKeys(4);
  const sns = await FakeSns.start();
  const postgres = await startPostgres();
  const slots: Slot[] = [];
  let load: Load | undefined;
  let ok = true;
  try {
    const database = await benchDatabase(postgres, 'failover');
    const alarms = await signedDistinctAlarms(MESSAGES, sns.signingCertUrl);
    console.log(
      `Node ${process.version}; ${REPLICAS} replicas of the built relay, ${keys.size} keys, ${RATE} alarms/s posted to the live ones; ${await describePostgres(postgres)}.`,
    );
    const start = async (dir: string, pagerduty: FakePagerDuty) => {
      const relay = await RelayProcess.start({
        dir,
        configYaml: benchRelayConfig({
          certHostPattern: sns.certHostPattern,
          pagerdutyUrl: pagerduty.url,
          keys,
          ratePerMinute: LIMIT,
          postgresUrl: database.url,
        }),
        env: { NODE_EXTRA_CA_CERTS: sns.caFile },
      });
      return { relay, pool: new Pool(relay.snsUrl, { connections: 16 }) };
    };
    // All at once on the empty database, as a Deployment starts: one migrates, the others wait.
    await Promise.all(
      Array.from({ length: REPLICAS }, async (_, i) => {
        const { dir, cleanup } = tempDir(`pd-relay-failover-${i}-`);
        const pagerduty = await FakePagerDuty.start({
          windowMs: 60_000,
          limit: LIMIT,
          knownKeys: keys.values(),
        });
        slots[i] = { dir, cleanup, pagerduty, live: true, ...(await start(dir, pagerduty)) };
      }),
    );
    load = new Load(slots, alarms);
    load.start();

    /** Waits until the 3 replicas dispatch 1, 1 and 2 keys, by their metrics and their logs, twice in a row. */
    const spread = async (): Promise<void> => {
      const deadline = performance.now() + 30_000;
      let stable = 0;
      while (stable < 2) {
        if (performance.now() > deadline) throw new Error('Expected the keys spread 1/1/2 within 30 s');
        await sleep(250);
        const owned = await Promise.all(slots.map((s) => keysOwned(s.relay.metricsUrl).catch(() => -1)));
        const fromLogs = slots.map((s) => ownedAliases(s.relay).size);
        const even = owned.join() === fromLogs.join() && [...owned].sort().join() === '1,1,2';
        stable = even ? stable + 1 : 0;
      }
    };

    const runs: Run[] = [];
    const plan = [
      ...Array.from({ length: FAILOVER_RUNS }, () => 'SIGKILL' as const),
      ...Array.from({ length: HANDOVER_RUNS }, () => 'SIGTERM' as const),
    ];
    for (const [n, signal] of plan.entries()) {
      await spread();
      // Let every key serve a little load first: the run starts from a steady state.
      await sleep(1000);
      const victim = slots.findIndex((s) => ownedAliases(s.relay).size === 2);
      const slot = slots[victim] as Slot;
      const aliases = [...ownedAliases(slot.relay)];
      const routingKeys = new Set(aliases.map((a) => keys.get(a) as string));
      slot.live = false;
      const wallAt = Date.now();
      const at = performance.now();
      slot.relay.signal(signal);
      // Kubernetes takes a signalled pod out of the Service at once: no new POST goes to it.
      const firsts = new Map<string, number>();
      const deadline = at + 30_000;
      while (firsts.size < routingKeys.size && performance.now() < deadline) {
        for (const [i, other] of slots.entries()) {
          if (i === victim) continue;
          for (const q of other.pagerduty.requests) {
            if (q.at <= at || !q.routingKey || !routingKeys.has(q.routingKey)) continue;
            if (q.at < (firsts.get(q.routingKey) ?? Number.POSITIVE_INFINITY)) firsts.set(q.routingKey, q.at);
          }
        }
        await sleep(20);
      }
      const takenOn = slots
        .filter((_, i) => i !== victim)
        .flatMap((s) => s.relay.logs)
        .filter(
          (l) =>
            l.msg === 'Took on the dispatch of these keys.' &&
            Date.parse(String(l.time)) >= wallAt &&
            (l.keys as string[]).some((k) => aliases.includes(k)),
        )
        .map((l) => Date.parse(String(l.time)) - wallAt);
      const times = [...firsts.values()].map((t) => t - at);
      const run: Run = {
        signal,
        at,
        victim,
        keys: aliases,
        takenOnMs: takenOn.length ? Math.min(...takenOn) : Number.NaN,
        firstMs: firsts.size ? Math.min(...times) : Number.POSITIVE_INFINITY,
        allMs: firsts.size === routingKeys.size ? Math.max(...times) : Number.POSITIVE_INFINITY,
      };
      runs.push(run);
      console.log(
        `run ${String(n + 1).padStart(2)}  ${signal === 'SIGKILL' ? 'kill -9' : 'SIGTERM'} replica #${victim + 1} (keys ${aliases.join(', ')}):` +
          `  taken on after ${sec(run.takenOnMs)} (its log),  first request by the new owner after ${sec(run.firstMs)},  all its keys after ${sec(run.allMs)}`,
      );
      await slot.relay.wait();
      await slot.pool.close();
      Object.assign(slot, await start(slot.dir, slot.pagerduty), { live: true });
    }
    await load.stop();

    // Every acknowledged alarm paged, by whichever replica: nothing lost to the kills.
    const paged = () => {
      const seen = new Map<string, number>();
      for (const s of slots)
        for (const e of s.pagerduty.accepted)
          if (e.dedupKey) seen.set(e.dedupKey, (seen.get(e.dedupKey) ?? 0) + 1);
      return seen;
    };
    const deadline = performance.now() + 30_000;
    while ([...load.acknowledged].some((k) => !paged().has(k)) && performance.now() < deadline)
      await sleep(100);
    const seen = paged();
    const lost = [...load.acknowledged].filter((k) => !seen.has(k)).length;
    // A page sent again goes to the run whose signal came last before it: the new owner resending
    // what the old one had sent but not yet recorded as sent.
    const resent = runs.map(() => 0);
    const times = new Map<string, number[]>();
    for (const s of slots)
      for (const e of s.pagerduty.accepted)
        if (e.dedupKey) times.set(e.dedupKey, [...(times.get(e.dedupKey) ?? []), e.at]);
    for (const ts of times.values()) {
      for (const t of ts.sort((a, b) => a - b).slice(1)) {
        const run = runs.findLastIndex((r) => r.at <= t);
        if (run >= 0) resent[run] = (resent[run] ?? 0) + 1;
      }
    }
    const duplicates = resent.reduce((a, b) => a + b, 0);
    console.log(
      `\nLoad: ${load.acknowledged.size} alarms acknowledged (${load.retries} POSTs tried again on another replica, ${load.failed} given up), ` +
        `${lost} not paged, ${duplicates} paged twice, by run: ${resent.join(' ')} (what the old owner had sent but not yet written as sent: PagerDuty de-duplicates it by dedup_key).`,
    );
    for (const signal of ['SIGKILL', 'SIGTERM'] as const) {
      const rs = runs.filter((r) => r.signal === signal);
      if (!rs.length) continue;
      const first = rs.map((r) => r.firstMs);
      const all = rs.map((r) => r.allMs);
      console.log(
        `${signal === 'SIGKILL' ? 'kill -9' : 'SIGTERM'}, ${rs.length} runs: signal → first request by the new owner ` +
          `min ${sec(Math.min(...first))}, median ${sec(median(first))}, max ${sec(Math.max(...first))}; ` +
          `→ all its keys served: median ${sec(median(all))}, max ${sec(Math.max(...all))}`,
      );
    }
    const kills = runs.filter((r) => r.signal === 'SIGKILL');
    if (kills.length) {
      // The figure is the first delivery by the new owner; every key of the dead replica
      // must be served again within the same bound.
      const first = Math.max(...kills.map((r) => r.firstMs));
      const all = Math.max(...kills.map((r) => r.allMs));
      const met = first <= MAX_FAILOVER_MS && all <= MAX_FAILOVER_MS;
      console.log(
        `kill -9 failover max ≤ ${MAX_FAILOVER_MS / 1000} s: ${met ? 'met' : 'NOT met'} (first delivery by the new owner ${sec(first)}, every key of the dead replica ${sec(all)})`,
      );
      if (!met) ok = false;
    }
    if (lost > 0 || load.failed > 0) ok = false;
  } finally {
    await load?.stop();
    for (const s of slots) {
      if (!s) continue;
      await s.relay.stop();
      await s.pool.close();
      await s.pagerduty.close();
      s.cleanup();
    }
    await postgres.close();
    await sns.close();
  }
  if (!ok) process.exitCode = 1;
}

await main();
