import { describe, expect, it } from 'vitest';
import { createIngressInstruments, MAX_ENDPOINT_LABELS } from '../../src/metrics/ingress.js';
import { createRegistry } from '../../src/metrics/registry.js';
import { captureLogger } from '../helpers/log.js';

describe('ingress instruments', () => {
  it('caps the endpoint label: after 100 names, new ones count as "other"', async () => {
    const registry = createRegistry();
    const { logger } = captureLogger();
    const instruments = createIngressInstruments({ registry, logger, clock: { now: () => 42_000 } });
    for (let i = 0; i < MAX_ENDPOINT_LABELS + 5; i++) {
      instruments.requestCompleted({
        reqId: `r${i}`,
        type: 'Notification',
        result: 'accepted',
        status: 200,
        durationMs: 1,
        endpoint: `e${i}`,
        verified: true,
      });
    }
    instruments.requestCompleted({
      reqId: 'again',
      type: 'Notification',
      result: 'accepted',
      status: 200,
      durationMs: 1,
      endpoint: 'e0',
      verified: true,
    });
    const { values } = await (registry.getSingleMetric('pdrelay_last_message_timestamp_seconds')?.get() ??
      Promise.reject(new Error('missing')));
    const labels = values.map((v) => v.labels.endpoint);
    expect(labels).toHaveLength(MAX_ENDPOINT_LABELS + 1);
    expect(labels).toContain('e0');
    expect(labels).toContain('other');
    expect(labels).not.toContain(`e${MAX_ENDPOINT_LABELS}`);
    expect(values.every((v) => v.value === 42)).toBe(true);
  });

  it('writes the log line and the metric in one event, at a level that follows the status', async () => {
    const registry = createRegistry();
    const logs = captureLogger();
    const instruments = createIngressInstruments({ registry, logger: logs.logger, clock: { now: () => 0 } });
    instruments.requestCompleted({
      reqId: 'a',
      type: 'unknown',
      result: 'bad_request',
      status: 400,
      durationMs: 2,
    });
    instruments.requestCompleted({
      reqId: 'b',
      type: 'Notification',
      result: 'error',
      status: 500,
      durationMs: 2,
      err: new Error('bug'),
    });
    instruments.certFetched({ url: 'https://x/y.pem', result: 'timeout', durationMs: 5, message: 'slow' });
    expect(logs.lines().map((l) => [l.level, l.result])).toEqual([
      ['warn', 'bad_request'],
      ['error', 'error'],
      ['warn', 'timeout'],
    ]);
    const text = await registry.metrics();
    expect(text).toContain('pdrelay_sns_messages_total{type="unknown",result="bad_request"} 1');
    expect(text).toContain('pdrelay_sns_messages_total{type="Notification",result="error"} 1');
    expect(text).toContain('pdrelay_sns_cert_fetches_total{result="timeout"} 1');
    expect(text).toContain('pdrelay_ingest_request_duration_seconds_count 2');
  });
});
