// The server side of bench/ingest.bench.ts, run in its own process so that the load generator does
// not share its event loop. `node --import tsx bench/ingest-server.ts <kind>`; talks to the parent
// over IPC: sends {listening: port}, answers {rss} to 'rss'. Trusts the parent's FakeSns through
// NODE_EXTRA_CA_CERTS, as a deployed relay trusts the system store.
//
// The server is swappable: SERVERS maps a kind to a factory. `relay` is the SNS intake with real
// verification, a realistic stand-in for decode → rules (JSON parse of the alarm + one fitted
// event) and an in-memory sink; `bare` is a hono POST handler that only reads the body. Re-point
// `relay` at the full relay (real rules, real spool) once those stages are merged.
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { createAdaptorServer } from '@hono/node-server';
import { Hono } from 'hono';
import { pino } from 'pino';
import { createSnsApp } from '../src/app.js';
import { loadConfig } from '../src/config/load.js';
import { createIngressFromConfig } from '../src/ingress/sns/from-config.js';
import type { NotificationHandler } from '../src/ingress/sns/types.js';
import { createLogger } from '../src/log/logger.js';
import { createRegistry } from '../src/metrics/registry.js';
import { fitEvent } from '../src/pagerduty/limits.js';
import type { AlertEventBody } from '../src/pagerduty/types.js';
import { MemorySink } from '../test/helpers/memory-sink.js';

type Fetch = (request: Request) => Response | Promise<Response>;

/** What the rules will do at least: parse the alarm, build one event, fit it to PagerDuty's limits. */
const alarmToEvent: NotificationHandler = (envelope) => {
  const alarm = JSON.parse(envelope.Message) as Record<string, unknown>;
  const state = String(alarm.NewStateValue);
  const body: AlertEventBody = {
    event_action: state === 'OK' ? 'resolve' : 'trigger',
    dedup_key: String(alarm.AlarmArn ?? alarm.AlarmName),
    payload: {
      summary: `${state}: ${String(alarm.AlarmName)} — ${String(alarm.NewStateReason ?? '')}`,
      source: String(alarm.AWSAccountId ?? 'aws'),
      severity: 'critical',
      timestamp: envelope.Timestamp,
      custom_details: alarm,
    },
  };
  const fitted = fitEvent(body);
  return [
    {
      route: 'default',
      rule: 'bench',
      action: body.event_action,
      dedupKey: fitted.body.dedup_key ?? null,
      body: fitted.body,
    },
  ];
};

export const SERVERS: Record<string, (opts: { certHostPattern: string }) => Fetch> = {
  relay({ certHostPattern }) {
    const base = loadConfig({ env: {} });
    const config = {
      ...base,
      sns: { ...base.sns, certHostPattern, topics: ['arn:aws:sns:*:123456789012:*'] },
    };
    // Logging stays on (one JSON line per request, as in production), written to /dev/null.
    const logger = createLogger({
      level: 'info',
      destination: pino.destination({ dest: '/dev/null', sync: false }),
    });
    const readiness = () => null;
    const ingress = createIngressFromConfig(config, {
      handleNotification: alarmToEvent,
      sink: new MemorySink({ keepEntries: false }),
      logger,
      registry: createRegistry(),
      readiness,
    });
    return createSnsApp({ logger, readiness, ingress }).fetch;
  },
  bare() {
    const app = new Hono();
    app.post('/sns', async (c) => {
      await c.req.text();
      return c.json({ result: 'accepted' });
    });
    return app.fetch;
  },
};

const kind = process.argv[2] ?? 'relay';
const factory = SERVERS[kind];
if (!factory)
  throw new Error(`Unknown server kind ${kind}; expected one of ${Object.keys(SERVERS).join(', ')}`);
const server = createAdaptorServer({
  fetch: factory({ certHostPattern: process.argv[3] ?? '^127\\.0\\.0\\.1:\\d+$' }),
});
server.listen(0, '127.0.0.1');
await once(server, 'listening');
process.on('message', (msg) => {
  if (msg === 'rss') process.send?.({ rss: process.memoryUsage().rss });
  if (msg === 'stop') server.close(() => process.exit(0));
});
process.send?.({ listening: (server.address() as AddressInfo).port });
