// The server side of bench/ingest.bench.ts, run in its own process so that the load generator does
// not share its event loop. `node --import tsx bench/ingest-server.ts <kind> <certHostPattern>
// <pagerdutyUrl> [<postgresUrl>]`; talks to the parent over IPC: sends {listening: port}, answers
// 'stats' with {rss, pending}, exits on 'stop'. Trusts the parent's FakeSns through
// NODE_EXTRA_CA_CERTS, as a deployed relay trusts the system store.
//
// - `relay`: the whole relay as `pd-relay serve` runs it — startRelay() from the composition root
//   with a config file: real signature verification and MessageId de-duplication, the built-in
//   rules, PagerDuty's limits, the SQLite spool (WAL synced before each answer, group commit) in a
//   temp directory on the same disk as a deployment's, and delivery running with routing keys against
//   the parent's FakePagerDuty. The request log line goes to /dev/null through the production
//   destination (pino, asynchronous and buffered, as to stdout); metrics are on.
// - `relay-pg`: the same relay and config with `spool.postgres` on the database the parent names
//   (its own private server, fsync on): group commit in one round trip, synchronous commit, the
//   events reaching their key's owner (this process, the only replica) through NOTIFY.
// - `bare`: a hono app on @hono/node-server whose `POST /sns` only reads the body and answers 200:
//   the ceiling for any hono service on this machine.
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createAdaptorServer } from '@hono/node-server';
import { Hono } from 'hono';
import { loadConfig } from '../src/config/load.js';
import { createLogger, logDestination } from '../src/log/logger.js';
import { startRelay } from '../src/main.js';
import { testRoutingKey } from '../test/helpers/fake-pagerduty.js';
import { BENCH_TOPIC } from './signed-messages.js';

/** Routing keys of the bench route: a pool, as a production route has. */
export const BENCH_KEYS = Array.from({ length: 4 }, (_, i) => testRoutingKey(`bench${i + 1}`));

interface Running {
  port: number;
  /** Events committed and not yet delivered (the relay), else 0. */
  pending(): Promise<number>;
  /** Group commits so far (the relay's own metrics), else undefined. */
  commits(): Promise<Commits | undefined>;
  close(): Promise<void>;
}

export interface Commits {
  transactions: number;
  entries: number;
  seconds: number;
}

interface ServerOptions {
  certHostPattern: string;
  pagerdutyUrl: string;
  /** The database of `relay-pg`. */
  postgresUrl?: string | undefined;
}

/**
 * The whole relay with the config a deployment would have, the spool in a temp dir (SQLite) or in
 * the database at `postgresUrl`. Everything else is the same for both, so that their figures
 * differ by the spool only.
 */
async function relayServer({ certHostPattern, pagerdutyUrl, postgresUrl }: ServerOptions): Promise<Running> {
  // Not /dev/shm: the spool's fsyncs must cost what they cost on a deployment's volume.
  const dir = mkdtempSync(join(tmpdir(), 'pd-relay-bench-'));
  const file = join(dir, 'config.yaml');
  writeFileSync(
    file,
    JSON.stringify({
      server: { host: '127.0.0.1', port: 0 },
      metrics: { host: '127.0.0.1', port: 0 },
      sns: { topics: [BENCH_TOPIC], certHostPattern },
      pagerduty: { url: pagerdutyUrl },
      routes: { default: { keys: BENCH_KEYS.map((key, i) => ({ alias: `bench-${i + 1}`, key })) } },
      spool: {
        dir: join(dir, 'spool'),
        ...(postgresUrl ? { postgres: { url: postgresUrl, sslmode: 'disable' } } : {}),
      },
      rules: { watch: false },
      delivery: { drainTimeoutMs: 1000 },
    }),
  );
  const config = loadConfig({ file, env: {} });
  const relay = await startRelay(config, {
    logger: createLogger({ level: 'info', destination: logDestination('/dev/null') }),
  });
  return {
    port: relay.snsAddress.port,
    pending: async () => (await relay.delivery.stats()).counts?.pending ?? 0,
    async commits() {
      const { address, port } = relay.metricsAddress;
      const text = await (await fetch(`http://${address}:${port}/metrics`)).text();
      const value = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1] ?? 0);
      return {
        transactions: value('pdrelay_spool_commit_duration_seconds_count'),
        entries: value('pdrelay_spool_commit_batch_entries_sum'),
        seconds: value('pdrelay_spool_commit_duration_seconds_sum'),
      };
    },
    async close() {
      await relay.close('bench');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export const SERVERS: Record<string, (opts: ServerOptions) => Promise<Running>> = {
  relay: ({ certHostPattern, pagerdutyUrl }) => relayServer({ certHostPattern, pagerdutyUrl }),
  'relay-pg'(opts) {
    if (!opts.postgresUrl) throw new Error('Expected the URL of a database for relay-pg, got none.');
    return relayServer(opts);
  },
  async bare() {
    const app = new Hono();
    app.post('/sns', async (c) => {
      await c.req.text();
      return c.json({ result: 'accepted' });
    });
    const server = createAdaptorServer({ fetch: app.fetch });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    return {
      port: (server.address() as AddressInfo).port,
      pending: async () => 0,
      commits: async () => undefined,
      close: () => new Promise<void>((resolve) => server.close(() => resolve())),
    };
  },
};

const kind = process.argv[2] ?? 'relay';
const factory = SERVERS[kind];
if (!factory) throw new Error(`Expected a server kind of ${Object.keys(SERVERS).join(', ')}, got ${kind}.`);
const running = await factory({
  certHostPattern: process.argv[3] ?? '^127\\.0\\.0\\.1:\\d+$',
  pagerdutyUrl: process.argv[4] ?? 'http://127.0.0.1:9',
  postgresUrl: process.argv[5],
});
// The server's own cost between 'mark' and 'stats': event-loop busy time (the relay's bottleneck:
// one thread, blocking fsyncs included) and CPU time (all threads: libuv's pool, GC, the loop).
let elu = performance.eventLoopUtilization();
let cpu = process.cpuUsage();
process.on('message', (msg) => {
  if (msg === 'mark') {
    elu = performance.eventLoopUtilization();
    cpu = process.cpuUsage();
    process.send?.('marked');
  }
  if (msg === 'stats') {
    const loop = performance.eventLoopUtilization(elu);
    const used = process.cpuUsage(cpu);
    const rss = process.memoryUsage().rss;
    void Promise.all([running.commits(), running.pending()]).then(([commits, pending]) =>
      process.send?.({
        rss,
        pending,
        commits,
        loopMs: loop.active,
        cpuMs: (used.user + used.system) / 1000,
      }),
    );
  }
  if (msg === 'stop') {
    // A normal exit, so that --cpu-prof writes its profile.
    void running.close().finally(() => process.exit(0));
  }
});
process.send?.({ listening: running.port });
