// `npm run bench ingest`: signed SNS Notifications per second and latency through the relay's real
// HTTP server (verification on, logging on, in-memory sink), beside a bare hono POST handler
// measured in the same run. Each server runs in its own process; autocannon drives it with 50
// connections, a warm-up first. Every request carries a unique MessageId: duplicates (the cheap
// path) are never what is measured.
import { type ChildProcess, fork } from 'node:child_process';
import { once } from 'node:events';
import autocannon from 'autocannon';
import { FakeSns } from '../test/helpers/fake-sns.js';
import { signedNotifications } from './signed-messages.js';

const CONNECTIONS = 50;
const WARMUP_S = Number(process.env.BENCH_WARMUP_S ?? 3);
const DURATION_S = Number(process.env.BENCH_DURATION_S ?? 10);
const MESSAGES = Number(process.env.BENCH_MESSAGES ?? 200_000);

interface Figures {
  kind: string;
  reqPerSec: number;
  p50: number;
  p99: number;
  rssMb: number;
  non2xx: number;
  errors: number;
  requests: number;
}

async function startServer(kind: string, fake: FakeSns): Promise<{ child: ChildProcess; port: number }> {
  const child = fork(new URL('./ingest-server.ts', import.meta.url), [kind, fake.certHostPattern], {
    execArgv: ['--import', 'tsx'],
    env: { ...process.env, NODE_EXTRA_CA_CERTS: fake.caFile },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const [msg] = (await once(child, 'message')) as [{ listening: number }];
  return { child, port: msg.listening };
}

async function rssOf(child: ChildProcess): Promise<number> {
  child.send('rss');
  const [msg] = (await once(child, 'message')) as [{ rss: number }];
  return msg.rss;
}

async function stop(child: ChildProcess): Promise<void> {
  const exited = once(child, 'exit');
  child.send('stop');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
  await exited;
  clearTimeout(timer);
}

function drive(port: number, bodies: string[], next: { i: number }, seconds: number) {
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
            if (!exhausted) {
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

async function measure(kind: string, fake: FakeSns, bodies: string[]): Promise<Figures> {
  const { child, port } = await startServer(kind, fake);
  try {
    const next = { i: 0 };
    await drive(port, bodies, next, WARMUP_S);
    const { result, exhausted } = await drive(port, bodies, next, DURATION_S);
    if (exhausted)
      console.warn(
        `  ${kind}: ran out of unique messages; raise BENCH_MESSAGES (figures cover a shorter run).`,
      );
    return {
      kind,
      reqPerSec: result.requests.average,
      p50: result.latency.p50,
      p99: result.latency.p99,
      rssMb: (await rssOf(child)) / 1024 / 1024,
      non2xx: result.non2xx,
      errors: result.errors + result.timeouts,
      requests: result.requests.total,
    };
  } finally {
    await stop(child);
  }
}

const fake = await FakeSns.start();
try {
  const bodies = await signedNotifications(MESSAGES, fake.signingCertUrl);
  console.log(
    `Node ${process.version}, ${CONNECTIONS} connections, ${WARMUP_S} s warm-up + ${DURATION_S} s per server, ` +
      `${bodies.length} pre-signed v2 Notifications (${Buffer.byteLength(bodies[0] ?? '')} bytes each).`,
  );
  const bare = await measure('bare', fake, bodies);
  const relay = await measure('relay', fake, bodies);
  const row = (f: Figures) =>
    `${f.kind.padEnd(6)} ${f.reqPerSec.toFixed(0).padStart(8)} req/s   p50 ${f.p50.toFixed(1).padStart(5)} ms   p99 ${f.p99
      .toFixed(1)
      .padStart(5)} ms   RSS ${f.rssMb.toFixed(0).padStart(4)} MB   non-2xx ${f.non2xx}   errors ${f.errors}`;
  console.log('');
  console.log(row(bare));
  console.log(row(relay));
  console.log(
    `\nrelay / bare: ${((relay.reqPerSec / bare.reqPerSec) * 100).toFixed(0)}% of the throughput, p50 ×${(relay.p50 / Math.max(bare.p50, 0.01)).toFixed(1)}, p99 ×${(relay.p99 / Math.max(bare.p99, 0.01)).toFixed(1)}` +
      ` (cert fetches during the relay run: ${fake.certFetches().length})`,
  );
  if (relay.non2xx > 0 || relay.errors > 0) {
    console.error('The relay answered non-2xx or failed requests: the figures are not valid.');
    process.exitCode = 1;
  }
} finally {
  await fake.close();
}
