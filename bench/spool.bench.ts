// Spool: commit throughput with group commit vs one transaction and one WAL sync per commit (what
// SQLite's synchronous=FULL does), same code, same durability (no answer before the WAL is synced),
// same concurrency, in the same run; then the memory of a relay holding 100,000 pending events
// (target: RSS ≤ 200 MB).
//
//   npm run bench spool               BENCH_COMMITS=20000 BENCH_CONCURRENCY=64 BENCH_PENDING=100000
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PoolKeyAssigner } from '../src/delivery/key-assigner.js';
import { KeyRing } from '../src/delivery/key-ring.js';
import { SqliteSpool } from '../src/spool/sqlite/spool.js';
import { WalFileSync, type WalSync } from '../src/spool/sqlite/wal-sync.js';
import { alarmEvent, entry, tempDir, testConfig } from '../test/helpers/delivery.js';
import { testRoutingKey } from '../test/helpers/fake-pagerduty.js';

const COMMITS = Number(process.env.BENCH_COMMITS ?? 20_000);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 64);
const PENDING = Number(process.env.BENCH_PENDING ?? 100_000);
const KEYS = Array.from({ length: 4 }, (_, i) => testRoutingKey(`spool${i + 1}`));

/** A CloudWatch-alarm-sized event: about 1.5 KB of JSON. */
function alarm(i: number) {
  return alarmEvent('trigger', `arn:aws:cloudwatch:eu-west-1:123456789012:alarm:bench-${i}`, {
    summary: `ALARM: "bench-${i}" in EU (Ireland): CPUUtilization > 80 for 3 datapoints`,
    details: {
      AlarmDescription: 'CPU of the API fleet is above 80% for 15 minutes; see the runbook.',
      NewStateReason:
        'Threshold Crossed: 3 out of the last 3 datapoints [91.2 (21/11/26 05:10:00), 88.0 (21/11/26 05:05:00), 85.7 (21/11/26 05:00:00)] were greater than the threshold (80.0).',
      Trigger: {
        MetricName: 'CPUUtilization',
        Namespace: 'AWS/EC2',
        Statistic: 'AVERAGE',
        Dimensions: [{ name: 'AutoScalingGroupName', value: 'api-prod' }],
        Period: 300,
        EvaluationPeriods: 3,
        ComparisonOperator: 'GreaterThanThreshold',
        Threshold: 80,
      },
      padding: 'x'.repeat(700),
    },
  });
}

function ring(): KeyRing {
  const { dir, cleanup } = tempDir();
  const config = testConfig({ dir, routes: { default: { keys: KEYS } } });
  cleanup();
  return new KeyRing(config.routes);
}

async function throughput(group: boolean): Promise<{ perSecond: number; transactions: number }> {
  const tmp = tempDir('pd-relay-bench-');
  let transactions = 0;
  // The baseline syncs each transaction at once, blocking, as SQLite's synchronous=FULL does in COMMIT.
  const wal = new WalFileSync(join(tmp.dir, 'spool.db-wal'));
  const eachAtOnce: WalSync = {
    sync: (done) => done(wal.syncNow()),
    syncNow: () => wal.syncNow(),
    close: () => wal.close(),
  };
  const spool = new SqliteSpool({
    dir: tmp.dir,
    assigner: new PoolKeyAssigner(ring()),
    ...(group ? {} : { walSync: eachAtOnce }),
    observer: {
      committed: () => transactions++,
      unavailable: () => {},
      recovered: () => {},
      listenerFailed: () => {},
    },
  });
  let next = 0;
  const started = performance.now();
  // CONCURRENCY requests in flight, each committing as soon as the previous one got its answer.
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < COMMITS) {
        const i = next++;
        const p = spool.commit(entry([alarm(i)], `m-${group ? 'g' : 's'}-${i}`));
        // Without group commit: every commit is its own transaction and sync, right away.
        if (!group) spool.flush();
        await p;
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  spool.closeNow();
  tmp.cleanup();
  return { perSecond: COMMITS / seconds, transactions };
}

function memoryConfig(dir: string, url: string) {
  return testConfig({
    dir,
    url,
    routes: { default: { keys: KEYS } },
    delivery: { minBackoffMs: 60_000, maxBackoffMs: 60_000 },
  });
}

/** Child 1: fills a spool with PENDING events (its own process, so its memory does not count). */
async function fillChild(dir: string): Promise<void> {
  const config = memoryConfig(dir, 'http://127.0.0.1:9');
  const spool = new SqliteSpool({ dir, assigner: new PoolKeyAssigner(new KeyRing(config.routes)) });
  for (let i = 0; i < PENDING; i += 500) {
    await Promise.all(Array.from({ length: 500 }, (_, j) => spool.commit(entry([alarm(i + j)]))));
  }
  spool.closeNow();
}

/**
 * Child 2, plain node on the compiled dist/ (as the relay runs in production, without tsx's own
 * ~40 MB), with --expose-gc: RSS of a fresh process before and after a relay loads the spool.
 * PagerDuty is unreachable, so every event stays pending.
 */
const MEASURE = `
import { Registry } from 'prom-client';
import { loadConfig } from './dist/config/load.js';
import { createDelivery } from './dist/delivery/delivery.js';
import { createLogger } from './dist/log/logger.js';
const config = loadConfig({ file: process.argv[1] });
globalThis.gc();
const before = process.memoryUsage();
const delivery = await createDelivery(config, { logger: createLogger({ level: 'silent' }), registry: new Registry() });
delivery.start();
await new Promise((r) => setTimeout(r, 1000));
globalThis.gc();
const after = process.memoryUsage();
const stats = await delivery.stats();
await delivery.stop(0);
console.log(JSON.stringify({
  pending: stats.counts?.pending,
  queued: stats.lanes.reduce((n, l) => n + l.depth, 0),
  rssBefore: before.rss, rssAfter: after.rss, heapBefore: before.heapUsed, heapAfter: after.heapUsed,
}));
`;

function child(args: string[]): string {
  const r = spawnSync(process.execPath, [...args], {
    encoding: 'utf8',
    env: process.env,
    maxBuffer: 1 << 20,
  });
  if (r.status !== 0) {
    console.error(r.stderr);
    process.exit(1);
  }
  return r.stdout;
}

const mode = process.argv[2];
if (mode === '--fill') {
  await fillChild(process.argv[3] as string);
} else {
  const mb = (n: number) => `${(n / 1024 / 1024).toFixed(1)} MB`;
  const single = await throughput(false);
  const grouped = await throughput(true);
  console.log(
    `Commit throughput: ${COMMITS} SNS messages (1 event, ~1.5 KB each), ${CONCURRENCY} in flight, each answered once its WAL sync is done`,
  );
  console.log(
    `  one transaction + sync per commit      ${single.perSecond.toFixed(0).padStart(7)} commits/s  ${single.transactions} transactions`,
  );
  console.log(
    `  group commit (pd-relay)                ${grouped.perSecond.toFixed(0).padStart(7)} commits/s  ${grouped.transactions} transactions (${(COMMITS / grouped.transactions).toFixed(1)} commits each)`,
  );
  console.log(
    `  ratio                                  ${(grouped.perSecond / single.perSecond).toFixed(1)}×`,
  );

  const self = fileURLToPath(import.meta.url);
  const tmp = tempDir('pd-relay-bench-');
  child(['--import', 'tsx', self, '--fill', tmp.dir]);
  child([
    fileURLToPath(new URL('../node_modules/typescript/bin/tsc', import.meta.url)),
    '-p',
    'tsconfig.build.json',
  ]);
  const configFile = join(tmp.dir, 'pd-relay.yaml');
  writeFileSync(
    configFile,
    JSON.stringify({
      sns: { topics: ['arn:aws:sns:*:123456789012:*'] },
      pagerduty: { url: 'http://127.0.0.1:9', timeoutMs: 1000 },
      routes: { default: { keys: KEYS } },
      spool: { dir: tmp.dir },
      delivery: { minBackoffMs: 60_000, maxBackoffMs: 60_000 },
    }),
  );
  const out = child(['--expose-gc', '--input-type=module', '--eval', MEASURE, configFile]);
  tmp.cleanup();
  const m = JSON.parse(out.trim().split('\n').at(-1) as string) as Record<string, number>;
  console.log(
    `\nMemory with ${m.pending} events pending, ${m.queued} queued in memory (compiled relay, PagerDuty unreachable, after GC)`,
  );
  console.log(
    `  fresh process, relay code loaded       RSS ${mb(m.rssBefore as number)}  heap ${mb(m.heapBefore as number)}`,
  );
  console.log(
    `  with every pending event queued        RSS ${mb(m.rssAfter as number)}  heap ${mb(m.heapAfter as number)}`,
  );
  const ok = (m.rssAfter as number) <= 200 * 1024 * 1024 && m.pending === PENDING;
  console.log(`  target RSS ≤ 200 MB: ${ok ? 'met' : 'NOT MET'}`);
  process.exitCode = ok ? 0 : 1;
}
