import type { Registry } from 'prom-client';
import { createSnsApp } from '../../src/app.js';
import { type Config, loadConfig } from '../../src/config/load.js';
import { createIngressFromConfig } from '../../src/ingress/sns/from-config.js';
import type { Clock, NotificationHandler } from '../../src/ingress/sns/types.js';
import { createRegistry } from '../../src/metrics/registry.js';
import type { OutboundEvent } from '../../src/rules/types.js';
import type { ReadinessProbe } from '../../src/server/readiness.js';
import type { Envelope, FakeSns } from './fake-sns.js';
import { captureLogger } from './log.js';
import { MemorySink } from './memory-sink.js';
import { serveApp } from './serve.js';

/** A trivial decode → rules stand-in: one trigger per Notification, dedup key = MessageId. */
export const oneEventPerMessage: NotificationHandler = (envelope, endpoint) => [
  {
    route: 'default',
    rule: 'test',
    action: 'trigger',
    dedupKey: envelope.MessageId,
    body: {
      event_action: 'trigger',
      dedup_key: envelope.MessageId,
      payload: {
        summary: envelope.Subject ?? envelope.Message.slice(0, 100),
        source: endpoint,
        severity: 'error',
      },
    },
  } satisfies OutboundEvent,
];

export interface IngressHarnessOptions {
  fake: FakeSns;
  sns?: Partial<Config['sns']>;
  server?: Partial<Config['server']>;
  handleNotification?: NotificationHandler;
  sink?: MemorySink;
  readiness?: ReadinessProbe;
  clock?: Clock;
  /** Trust the fake's CA (default). False: the system store only. */
  trustFake?: boolean;
}

export interface PostOptions {
  path?: string;
  method?: string;
  headers?: Record<string, string>;
}

/** The relay's SNS app (real verifier, fetcher, confirmer) on a real socket, wired to a FakeSns. */
export interface IngressHarness {
  url: string;
  sink: MemorySink;
  registry: Registry;
  logs: ReturnType<typeof captureLogger>;
  /** POSTs an envelope (JSON-encoded) or a raw string body, like SNS does (text/plain). */
  post(
    body: Envelope | string | Uint8Array,
    opts?: PostOptions,
  ): Promise<{ status: number; headers: Headers; json: Record<string, unknown> }>;
  /** The value of a counter/gauge sample, 0 when absent. */
  metric(name: string, labels?: Record<string, string>): Promise<number>;
  close(): Promise<void>;
}

export async function startIngress(opts: IngressHarnessOptions): Promise<IngressHarness> {
  const base = loadConfig({ env: {} });
  const config = {
    sns: {
      ...base.sns,
      certHostPattern: opts.fake.certHostPattern,
      topics: ['arn:aws:sns:*:123456789012:*'],
      ...opts.sns,
    },
    server: { ...base.server, ...opts.server },
  };
  const logs = captureLogger();
  const registry = createRegistry();
  const sink = opts.sink ?? new MemorySink();
  const readiness = opts.readiness ?? (() => null);
  const ingress = createIngressFromConfig(config, {
    handleNotification: opts.handleNotification ?? oneEventPerMessage,
    sink,
    logger: logs.logger,
    registry,
    readiness,
    ...(opts.clock ? { clock: opts.clock } : {}),
    ...(opts.trustFake === false ? {} : { ca: opts.fake.caPem }),
  });
  const served = await serveApp(createSnsApp({ logger: logs.logger, readiness, ingress }));
  return {
    url: served.url,
    sink,
    registry,
    logs,
    async post(body, o = {}) {
      const res = await fetch(`${served.url}${o.path ?? '/sns'}`, {
        method: o.method ?? 'POST',
        headers: {
          'content-type': 'text/plain; charset=UTF-8',
          ...(isEnvelope(body) ? { 'x-amz-sns-message-type': String(body.Type) } : {}),
          ...o.headers,
        },
        ...((o.method ?? 'POST') === 'POST' ? { body: bodyOf(body) } : {}),
      });
      const text = await res.text();
      let json: Record<string, unknown> = {};
      try {
        json = JSON.parse(text) as Record<string, unknown>;
      } catch {
        json = { text };
      }
      return { status: res.status, headers: res.headers, json };
    },
    async metric(name, labels = {}) {
      // Histograms are registered under their base name; their samples are <name>_count, _sum, _bucket.
      const metric =
        registry.getSingleMetric(name) ?? registry.getSingleMetric(name.replace(/_(count|sum|bucket)$/, ''));
      if (!metric) return 0;
      const { values } = await metric.get();
      const sample = values.find(
        (v) =>
          ((v as { metricName?: string }).metricName ?? name) === name &&
          Object.entries(labels).every(
            ([k, val]) => String((v.labels as Record<string, unknown>)[k]) === val,
          ),
      );
      return sample?.value ?? 0;
    },
    close: served.close,
  };
}

function isEnvelope(body: Envelope | string | Uint8Array): body is Envelope {
  return typeof body === 'object' && !(body instanceof Uint8Array);
}

function bodyOf(body: Envelope | string | Uint8Array): string | Uint8Array {
  return isEnvelope(body) ? JSON.stringify(body) : body;
}
