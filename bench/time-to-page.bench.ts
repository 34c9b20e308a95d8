// `npm run bench time-to-page`: SNS POST → PagerDuty 202 per alarm at a steady rate, through the
// real relay process (`pd-relay serve`, the built dist/) with its spool on SQLite and on
// PostgreSQL (a private server started here, fsync on), in the same run. Each message is a signed
// CloudWatch ALARM of its own alarm (its own dedup key), sent open-loop at a fixed rate; the fake
// PagerDuty's limit (10,000 per minute and key, 4 keys) and the route's `ratePerMinute` never make
// the relay wait, so what is measured is intake + commit + dispatch + the request to PagerDuty.
// A fresh relay (and database) per measurement, warmed up at the same rate first (reported apart:
// what a just-started relay does), then measured once it has caught up; the spools alternate which
// goes first.
//
//   TTP_RATES=50,200 TTP_SECONDS=20 TTP_WARMUP_S=5 TTP_ROUNDS=1 TTP_SPOOLS=sqlite,postgresql
//
// The measuring itself is measureTimeToPage() in bench/time-to-page.ts.
import { FakePagerDuty } from '../test/helpers/fake-pagerduty.js';
import { FakeSns } from '../test/helpers/fake-sns.js';
import { startPostgres, type TestPostgres } from '../test/helpers/postgres.js';
import { RelayProcess } from '../test/helpers/relay-process.js';
import { tempDir } from '../test/helpers/temp.js';
import { benchDatabase, describePostgres } from './bench-postgres.js';
import { benchKeys, benchRelayConfig, ensureBuilt, keysOwned } from './built-relay.js';
import { type SignedAlarm, signedDistinctAlarms } from './signed-messages.js';
import { measureTimeToPage, quantile, type TimeToPage } from './time-to-page.js';

const RATES = (process.env.TTP_RATES ?? '50,200').split(',').map(Number);
const SECONDS = Number(process.env.TTP_SECONDS ?? 20);
const WARMUP_S = Number(process.env.TTP_WARMUP_S ?? 5);
const ROUNDS = Number(process.env.TTP_ROUNDS ?? 1);
const SPOOLS = (process.env.TTP_SPOOLS ?? 'sqlite,postgresql').split(',') as Spool[];
/** Per key and minute, at the fake and on the route: far above 200/s over 4 keys (3,000 per key and minute). */
const LIMIT = 10_000;

type Spool = 'sqlite' | 'postgresql';

async function measure(
  spool: Spool,
  rate: number,
  sns: FakeSns,
  postgres: TestPostgres | undefined,
  alarms: SignedAlarm[],
): Promise<TimeToPage> {
  const keys = benchKeys(4);
  const pagerduty = await FakePagerDuty.start({ windowMs: 60_000, limit: LIMIT, knownKeys: keys.values() });
  const { dir, cleanup } = tempDir('pd-relay-ttp-');
  const database = spool === 'postgresql' && postgres ? await benchDatabase(postgres, 'ttp') : undefined;
  let relay: RelayProcess | undefined;
  try {
    relay = await RelayProcess.start({
      dir,
      configYaml: benchRelayConfig({
        certHostPattern: sns.certHostPattern,
        pagerdutyUrl: pagerduty.url,
        keys,
        ratePerMinute: LIMIT,
        ...(database ? { postgresUrl: database.url } : {}),
      }),
      env: { NODE_EXTRA_CA_CERTS: sns.caFile },
    });
    // On PostgreSQL the replica takes its keys at its first lease tick: measure from then on.
    const deadline = performance.now() + 15_000;
    while ((await keysOwned(relay.metricsUrl)) < keys.size) {
      if (performance.now() > deadline)
        throw new Error(`Expected the relay to own ${keys.size} keys within 15 s`);
      await new Promise((r) => setTimeout(r, 100));
    }
    return await measureTimeToPage({
      snsUrl: relay.snsUrl,
      pagerduty,
      alarms,
      rate,
      seconds: SECONDS,
      warmupS: WARMUP_S,
    });
  } finally {
    await relay?.stop();
    await pagerduty.close();
    await database?.drop();
    cleanup();
  }
}

const ms = (n: number) => `${n.toFixed(1).padStart(6)} ms`;
const row = (label: string, r: TimeToPage) =>
  [
    label.padEnd(22),
    `${r.achievedRate.toFixed(0).padStart(4)}/s`,
    `200: p50 ${ms(quantile(r.ackMs, 0.5))}  p99 ${ms(quantile(r.ackMs, 0.99))}`,
    `page: p50 ${ms(quantile(r.pageMs, 0.5))}  p99 ${ms(quantile(r.pageMs, 0.99))}  max ${ms(quantile(r.pageMs, 1))}`,
    `paged ${r.paged}/${r.sent}`,
    `send lag ≤ ${r.maxSendLagMs.toFixed(0)} ms`,
    ...(r.warmup
      ? [
          `(warm-up, fresh relay: page p50 ${ms(quantile(r.warmup.pageMs, 0.5))}  p99 ${ms(quantile(r.warmup.pageMs, 0.99))}  max ${ms(quantile(r.warmup.pageMs, 1))})`,
        ]
      : []),
  ].join('   ');

ensureBuilt();
const sns = await FakeSns.start();
const postgres = SPOOLS.includes('postgresql') ? await startPostgres() : undefined;
let failed = false;
try {
  const alarms = await signedDistinctAlarms(
    Math.max(...RATES.map((r) => Math.round(r * WARMUP_S) + Math.round(r * SECONDS))),
    sns.signingCertUrl,
  );
  console.log(
    `Node ${process.version}; the built relay process, 4 keys; ${WARMUP_S} s warm-up, then ${SECONDS} s measured at each rate, open loop; ` +
      `distinct signed CloudWatch ALARMs (${Buffer.byteLength(alarms[0]?.body ?? '')} bytes).`,
  );
  if (postgres)
    console.log(`postgresql: ${await describePostgres(postgres)}, a new database each measurement.`);
  const results: Array<{ spool: Spool; rate: number; r: TimeToPage }> = [];
  let turn = 0;
  for (let round = 1; round <= ROUNDS; round++) {
    for (const rate of RATES) {
      const order = turn++ % 2 ? [...SPOOLS].reverse() : SPOOLS;
      for (const spool of order) {
        const r = await measure(spool, rate, sns, postgres, alarms);
        results.push({ spool, rate, r });
        console.log(row(`${round}  ${spool} ${rate}/s`, r));
        if (r.acknowledged < r.sent || r.paged < r.acknowledged) failed = true;
      }
    }
  }
  if (ROUNDS > 1) {
    console.log('\nall rounds together');
    for (const rate of RATES)
      for (const spool of SPOOLS) {
        const rs = results.filter((x) => x.spool === spool && x.rate === rate).map((x) => x.r);
        const merge = (pick: (r: TimeToPage) => Float64Array) =>
          Float64Array.from(rs.flatMap((r) => [...pick(r)])).sort();
        const all: TimeToPage = {
          rate,
          achievedRate: rs.reduce((s, r) => s + r.achievedRate, 0) / rs.length,
          sent: rs.reduce((s, r) => s + r.sent, 0),
          acknowledged: rs.reduce((s, r) => s + r.acknowledged, 0),
          paged: rs.reduce((s, r) => s + r.paged, 0),
          pageMs: merge((r) => r.pageMs),
          ackMs: merge((r) => r.ackMs),
          maxSendLagMs: Math.max(...rs.map((r) => r.maxSendLagMs)),
        };
        console.log(row(`${spool} ${rate}/s`, all));
      }
  }
  if (failed) {
    console.error('Some messages were not acknowledged or not paged: the figures are not valid.');
    process.exitCode = 1;
  }
} finally {
  await postgres?.close();
  await sns.close();
}
