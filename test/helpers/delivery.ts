import { type Config, parseConfig } from '../../src/config/load.js';
import { formatProblem } from '../../src/errors.js';
import type { EventTime, OutboundEvent } from '../../src/rules/types.js';
import type { SpoolEntry } from '../../src/spool/types.js';

export interface TestRoute {
  keys: Array<string | { alias: string; key: string }>;
  ratePerMinute?: number;
}

/** A validated Config for delivery tests (through the real loader, so defaults are the real ones). */
export function testConfig(opts: {
  dir: string;
  url?: string;
  routes?: Record<string, TestRoute>;
  delivery?: Record<string, number>;
  spool?: Record<string, unknown>;
  timeoutMs?: number;
}): Config {
  const routes = opts.routes ?? { default: { keys: [] } };
  const dryRun = Object.values(routes).every((r) => r.keys.length === 0);
  const doc = {
    ...(dryRun ? {} : { sns: { topics: ['arn:aws:sns:*:123456789012:*'] } }),
    pagerduty: { url: opts.url ?? 'http://127.0.0.1:9', timeoutMs: opts.timeoutMs ?? 2000 },
    routes,
    spool: { dir: opts.dir, ...opts.spool },
    delivery: { minBackoffMs: 5, maxBackoffMs: 50, ...opts.delivery },
  };
  const { config, problems } = parseConfig(JSON.stringify(doc), 'test-config.yaml', {
    env: {},
    baseDir: opts.dir,
  });
  if (!config) throw new Error(`Test config is invalid:\n${problems.map(formatProblem).join('\n')}`);
  return config;
}

/** An alarm trigger or resolve as the rules stage would produce it. */
export function alarmEvent(
  action: 'trigger' | 'resolve' | 'acknowledge',
  dedupKey: string | null,
  opts: { route?: string; summary?: string; details?: Record<string, unknown>; time?: EventTime } = {},
): OutboundEvent {
  const body =
    action === 'trigger'
      ? {
          event_action: action,
          ...(dedupKey === null ? {} : { dedup_key: dedupKey }),
          payload: {
            summary: opts.summary ?? `ALARM ${dedupKey ?? 'no-dedup'}`,
            source: 'cloudwatch',
            severity: 'critical' as const,
            ...(opts.details ? { custom_details: opts.details } : {}),
          },
        }
      : { event_action: action, ...(dedupKey === null ? {} : { dedup_key: dedupKey }) };
  const event: OutboundEvent = { route: opts.route ?? 'default', rule: 'test-rule', action, dedupKey, body };
  if (opts.time) event.time = opts.time;
  return event;
}

let seq = 0;
/** One SNS message carrying `events`. */
export function entry(
  events: OutboundEvent[],
  messageId = `msg-${process.pid}-${++seq}`,
  receivedAt = Date.now(),
): SpoolEntry {
  return {
    messageId,
    topic: 'arn:aws:sns:eu-west-1:123456789012:alarms',
    endpoint: 'default',
    receivedAt,
    events,
  };
}

export { tempDir } from './temp.js';
