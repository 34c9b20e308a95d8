// `npm run bench ingest`: signed SNS Notifications per second and latency through the relay's full
// live path (verify + de-duplicate + built-in rules + durable commit, then 200; delivery running
// against a FakePagerDuty), with the spool on SQLite (`relay`) and on PostgreSQL (`relay-pg`, a
// private server this benchmark starts, fsync on), beside a bare hono POST handler, in alternating
// rounds of the same run. Each server runs in its own process (bench/ingest-server.ts); autocannon
// drives it from this one with 50 connections, a warm-up first. Every request to a relay carries a
// unique MessageId: the cheap duplicate path is never what is measured.
//
//   BENCH_ROUNDS=3 BENCH_WARMUP_S=3 BENCH_DURATION_S=10 BENCH_MESSAGES=200000
//   BENCH_SERVERS=bare,relay,relay-pg   the servers to measure (relay-pg starts PostgreSQL)
//   BENCH_PROFILE=<dir>   write a V8 CPU profile of each relay child into <dir> (see bench/cpu-profile.ts)
import { type ChildProcess, fork } from 'node:child_process';
import { once } from 'node:events';
import { join, resolve } from 'node:path';
import autocannon from 'autocannon';
import { FakePagerDuty } from '../test/helpers/fake-pagerduty.js';
import { FakeSns } from '../test/helpers/fake-sns.js';
import { startPostgres, type TestPostgres } from '../test/helpers/postgres.js';
import {
  benchDatabase,
  describePostgres,
  type PostgresReading,
  postgresDelta,
  readPostgres,
} from './bench-postgres.js';
import type { Commits } from './ingest-server.js';
import { signedNotifications } from './signed-messages.js';

const CONNECTIONS = 50;
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const WARMUP_S = Number(process.env.BENCH_WARMUP_S ?? 3);
const DURATION_S = Number(process.env.BENCH_DURATION_S ?? 10);
const MESSAGES = Number(process.env.BENCH_MESSAGES ?? 200_000);
const PROFILE_DIR = process.env.BENCH_PROFILE ? resolve(process.env.BENCH_PROFILE) : undefined;
/** The issue's goal: the relay at ≥ 20 % of bare hono's requests/s, with p99 ≤ 25 ms. */
const GOAL_RATIO = 0.2;
const GOAL_P99_MS = 25;

const KINDS = ['bare', 'relay', 'relay-pg'] as const;
type Kind = (typeof KINDS)[number];
const SERVERS = (process.env.BENCH_SERVERS ?? KINDS.join(','))
  .split(',')
  .map((k) => k.trim())
  .filter(Boolean) as Kind[];
for (const k of SERVERS)
  if (!KINDS.includes(k)) throw new Error(`Expected BENCH_SERVERS among ${KINDS.join(', ')}, got ${k}.`);

/** What the PostgreSQL server did in the measured window, per request of the relay. */
interface DatabaseFigures {
  /** CPU time of the whole cluster (backends, WAL writer, checkpointer…), µs per request. */
  cpuUs: number;
  /** WAL written, bytes per request. */
  walBytes: number;
  /** WAL fsyncs in the window. */
  walSyncs: number;
  /** Transactions committed in the relay's database in the window (group commits, dispatch, leases). */
  transactions: number;
}

interface Figures {
  kind: Kind;
  reqPerSec: number;
  p50: number;
  p99: number;
  rssMb: number;
  /** Events committed to the spool and not yet delivered when the run ended. */
  pending: number;
  /** The relay's group commits over the whole run (warm-up included). */
  commits?: Commits | undefined;
  /** Server event-loop busy time per request in the measured window, µs (its capacity: 1e6 / this). */
  loopUs: number;
  /** Server CPU time (all threads) per request in the measured window, µs. */
  cpuUs: number;
  /** relay-pg: the database server's share. */
  db?: DatabaseFigures | undefined;
  non2xx: number;
  errors: number;
  requests: number;
}

async function startServer(
  kind: Kind,
  sns: FakeSns,
  pagerduty: FakePagerDuty,
  postgresUrl: string | undefined,
): Promise<{ child: ChildProcess; port: number }> {
  const profile = PROFILE_DIR && kind !== 'bare' ? ['--cpu-prof', `--cpu-prof-dir=${PROFILE_DIR}`] : [];
  const child = fork(
    new URL('./ingest-server.ts', import.meta.url),
    [kind, sns.certHostPattern, pagerduty.url, ...(postgresUrl ? [postgresUrl] : [])],
    {
      execArgv: ['--import', 'tsx', ...profile],
      env: { ...process.env, NODE_EXTRA_CA_CERTS: sns.caFile },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    },
  );
  const [msg] = (await Promise.race([
    once(child, 'message'),
    once(child, 'exit').then(([code]) => Promise.reject(new Error(`${kind} server exited with ${code}`))),
  ])) as [{ listening: number }];
  return { child, port: msg.listening };
}

interface ServerStats {
  rss: number;
  pending: number;
  commits?: Commits;
  loopMs: number;
  cpuMs: number;
}

async function ask<T>(child: ChildProcess, msg: string): Promise<T> {
  const answer = once(child, 'message');
  child.send(msg);
  return ((await answer) as [T])[0];
}

async function stop(child: ChildProcess): Promise<void> {
  const exited = once(child, 'exit');
  child.send('stop');
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(timer);
}

/**
 * Drives `port` for `seconds`. With `unique`, a body is never sent twice to one server: the run
 * stops early when they run out (the relay would answer duplicates from memory, a cheaper path).
 */
function drive(port: number, bodies: string[], next: { i: number }, seconds: number, unique: boolean) {
  let exhausted = false;
  const instance = autocannon({
    url: `http://127.0.0.1:${port}`,
    connections: CONNECTIONS,
    duration: seconds,
    requests: [
      {
        method: 'POST',
        path: '/sns',
        headers: { 'content-type': 'text/plain; charset=UTF-8', 'x-amz-sns-message-type': 'Notification' },
        setupRequest: (req) => {
          if (next.i >= bodies.length) {
            if (unique && !exhausted) {
              exhausted = true;
              instance.stop();
            }
            next.i = 0;
          }
          req.body = bodies[next.i++] as string;
          return req;
        },
      },
    ],
  });
  return new Promise<{ result: autocannon.Result; exhausted: boolean }>((resolve, reject) => {
    instance.on('done', (result) => resolve({ result, exhausted }));
    instance.on('error', reject);
  });
}

async function measure(
  kind: Kind,
  sns: FakeSns,
  pagerduty: FakePagerDuty,
  bodies: string[],
  postgres: TestPostgres | undefined,
): Promise<Figures> {
  const database = kind === 'relay-pg' && postgres ? await benchDatabase(postgres, 'ingest') : undefined;
  const readDb = () =>
    postgres && database
      ? readPostgres(postgres.url, join(postgres.dir, 'data'), database.name)
      : Promise.resolve(undefined);
  const { child, port } = await startServer(kind, sns, pagerduty, database?.url);
  try {
    const next = { i: 0 };
    const unique = kind !== 'bare';
    await drive(port, bodies, next, WARMUP_S, unique);
    await ask(child, 'mark');
    const dbBefore = await readDb();
    const { result, exhausted } = await drive(port, bodies, next, DURATION_S, unique);
    const stats = await ask<ServerStats>(child, 'stats');
    const dbAfter = await readDb();
    if (exhausted)
      console.warn(
        `  ${kind}: ran out of unique messages; raise BENCH_MESSAGES (figures cover a shorter run).`,
      );
    return {
      kind,
      reqPerSec: result.requests.average,
      p50: result.latency.p50,
      p99: result.latency.p99,
      rssMb: stats.rss / 1024 / 1024,
      pending: stats.pending,
      commits: stats.commits,
      loopUs: (stats.loopMs * 1000) / result.requests.total,
      cpuUs: (stats.cpuMs * 1000) / result.requests.total,
      db:
        dbBefore && dbAfter
          ? databaseFigures(postgresDelta(dbBefore, dbAfter), result.requests.total)
          : undefined,
      non2xx: result.non2xx,
      errors: result.errors + result.timeouts,
      requests: result.requests.total,
    };
  } finally {
    await stop(child);
    await database?.drop();
  }
}

function databaseFigures(d: PostgresReading, requests: number): DatabaseFigures {
  return {
    cpuUs: (d.cpuMs * 1000) / requests,
    walBytes: d.walBytes / requests,
    walSyncs: d.walSyncs,
    transactions: d.commits,
  };
}

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

const num = (n: number, digits: number, width: number) => n.toFixed(digits).padStart(width);
const row = (label: string, f: Omit<Figures, 'kind' | 'requests'>) =>
  [
    label.padEnd(10),
    `${num(f.reqPerSec, 0, 7)} req/s`,
    `p50 ${num(f.p50, 1, 5)} ms`,
    `p99 ${num(f.p99, 1, 5)} ms`,
    `loop ${num(f.loopUs, 0, 4)} µs/req`,
    `CPU ${num(f.cpuUs, 0, 4)} µs/req`,
    `RSS ${num(f.rssMb, 0, 4)} MB`,
    `pending ${num(f.pending, 0, 6)}`,
    `non-2xx ${f.non2xx}`,
    `errors ${f.errors}`,
    // relay-pg only: the database server's CPU per request, beside the relay's own.
    ...(f.db ? [`db CPU ${num(f.db.cpuUs, 0, 4)} µs/req`] : []),
  ].join('   ');

function printCommits(kind: Kind, f: Figures): void {
  const c = f.commits;
  if (c?.transactions) {
    const each = `${((c.seconds / c.transactions) * 1000).toFixed(2)} ms each`;
    console.log(
      `             group commits: ${c.transactions} transactions of ${(c.entries / c.transactions).toFixed(1)} messages, ` +
        (kind === 'relay'
          ? `${each} from first write to WAL synced (pdrelay_spool_commit_duration_seconds)`
          : `${each} from the batch's start to commit_batch answered, WAL flushed (pdrelay_spool_commit_duration_seconds)`),
    );
  }
  if (f.db) {
    const d = f.db;
    const perReq = (n: number) => n / f.requests;
    console.log(
      `             database, measured window: CPU ${d.cpuUs.toFixed(0)} µs/req (relay + database ${(f.cpuUs + d.cpuUs).toFixed(0)} µs/req), ` +
        `WAL ${(d.walBytes / 1024).toFixed(1)} KB/req, ${d.walSyncs} WAL fsyncs (${perReq(d.walSyncs * 1000).toFixed(2)} per 1,000 req), ` +
        `${d.transactions} transactions in the relay's database (≈, pg_stat counters lag ≤ 1 s)`,
    );
  }
}

const sns = await FakeSns.start();
// Delivery runs against it at PagerDuty's own pace (120 per key per minute): the bench measures
// intake, so almost everything accepted is still pending at the end, as in an alert storm.
const pagerduty = await FakePagerDuty.start();
// Started here, not by the relay-pg child: one server for every round, a new database each round.
const postgres = SERVERS.includes('relay-pg') ? await startPostgres() : undefined;
try {
  const bodies = await signedNotifications(MESSAGES, sns.signingCertUrl);
  console.log(
    `Node ${process.version}, ${CONNECTIONS} connections, ${ROUNDS} alternating rounds of ${WARMUP_S} s warm-up + ${DURATION_S} s per server, ` +
      `${bodies.length} pre-signed v2 Notifications (${Buffer.byteLength(bodies[0] ?? '')} bytes each).`,
  );
  if (postgres)
    console.log(
      `relay-pg: ${await describePostgres(postgres)}, private server on 127.0.0.1 (data in ${postgres.dir}, the same disk as relay's SQLite), a new database each round.`,
    );
  const results: Record<Kind, Figures[]> = { bare: [], relay: [], 'relay-pg': [] };
  let invalid = false;
  for (let round = 1; round <= ROUNDS; round++) {
    // Rotate which goes first, so that none always runs on a machine warmed (or loaded) by another.
    const shift = (round - 1) % SERVERS.length;
    const order = [...SERVERS.slice(shift), ...SERVERS.slice(0, shift)];
    for (const kind of order) {
      const f = await measure(kind, sns, pagerduty, bodies, postgres);
      results[kind].push(f);
      console.log(row(`${round}  ${kind}`, f));
      printCommits(kind, f);
      if (kind !== 'bare' && (f.non2xx > 0 || f.errors > 0)) invalid = true;
    }
  }
  const summary = (kind: Kind) => {
    const fs = results[kind];
    const db = fs.flatMap((f) => (f.db ? [f.db] : []));
    return {
      reqPerSec: median(fs.map((f) => f.reqPerSec)),
      p50: median(fs.map((f) => f.p50)),
      p99: median(fs.map((f) => f.p99)),
      rssMb: Math.max(...fs.map((f) => f.rssMb)),
      loopUs: median(fs.map((f) => f.loopUs)),
      cpuUs: median(fs.map((f) => f.cpuUs)),
      db: db.length
        ? {
            cpuUs: median(db.map((d) => d.cpuUs)),
            walBytes: median(db.map((d) => d.walBytes)),
            walSyncs: median(db.map((d) => d.walSyncs)),
            transactions: median(db.map((d) => d.transactions)),
          }
        : undefined,
      pending: Math.max(...fs.map((f) => f.pending)),
      non2xx: fs.reduce((n, f) => n + f.non2xx, 0),
      errors: fs.reduce((n, f) => n + f.errors, 0),
    };
  };
  console.log('\nmedian of the rounds (RSS and pending: the largest)');
  for (const kind of SERVERS) console.log(row(kind, summary(kind)));
  if (SERVERS.includes('bare')) {
    const bare = summary('bare');
    for (const kind of SERVERS.filter((k) => k !== 'bare')) {
      const relay = summary(kind);
      const ratios = results[kind].map((r, i) => r.reqPerSec / (results.bare[i] as Figures).reqPerSec);
      const ratio = median(ratios);
      console.log(
        `\n${kind} / bare: ${(ratio * 100).toFixed(0)}% of the throughput (rounds: ${ratios.map((r) => `${(r * 100).toFixed(0)}%`).join(', ')}), ` +
          `p50 ×${(relay.p50 / Math.max(bare.p50, 0.01)).toFixed(1)}, p99 ×${(relay.p99 / Math.max(bare.p99, 0.01)).toFixed(1)}`,
      );
      console.log(
        `server cost per request: event loop ${relay.loopUs.toFixed(0)} µs vs ${bare.loopUs.toFixed(0)} µs (×${(relay.loopUs / bare.loopUs).toFixed(1)}; ` +
          `the relay's loop saturates near ${(1e6 / relay.loopUs).toFixed(0)} req/s), CPU ${relay.cpuUs.toFixed(0)} µs vs ${bare.cpuUs.toFixed(0)} µs` +
          (relay.db
            ? `; the database ${relay.db.cpuUs.toFixed(0)} µs more (relay + database ${(relay.cpuUs + relay.db.cpuUs).toFixed(0)} µs)`
            : ''),
      );
      console.log(
        `goal (≥ ${GOAL_RATIO * 100}% of bare, p99 ≤ ${GOAL_P99_MS} ms): ${ratio >= GOAL_RATIO && relay.p99 <= GOAL_P99_MS ? 'met' : 'NOT met'}`,
      );
    }
    if (SERVERS.includes('relay') && SERVERS.includes('relay-pg')) {
      const ratios = results['relay-pg'].map((r, i) => r.reqPerSec / (results.relay[i] as Figures).reqPerSec);
      console.log(
        `\nrelay-pg / relay (same round): ${ratios.map((r) => `${(r * 100).toFixed(0)}%`).join(', ')} of SQLite's req/s, median ${(median(ratios) * 100).toFixed(0)}%`,
      );
    }
  }
  console.log(
    `signing-certificate fetches: ${sns.certFetches().length} (one per relay process); events delivered to the fake PagerDuty: ${pagerduty.accepted.length}`,
  );
  if (invalid) {
    console.error('A relay answered non-2xx or failed requests: the figures are not valid.');
    process.exitCode = 1;
  }
} finally {
  await postgres?.close();
  await pagerduty.close();
  await sns.close();
}
