import { collectDefaultMetrics, Gauge, Registry } from 'prom-client';
import { VERSION } from '../version.js';

/**
 * prom-client's default metrics that break the Prometheus naming rules: gauges named `_total`,
 * which `promtool check metrics` rejects ("non-counter metrics should not have _total suffix",
 * prometheus/client_js#283). Each is the sum of its by-type sibling (`nodejs_active_handles`,
 * `nodejs_active_requests`, `nodejs_active_resources`), which stays: `sum(nodejs_active_handles)`.
 */
export const DROPPED_DEFAULT_METRICS: readonly string[] = [
  'nodejs_active_handles_total',
  'nodejs_active_requests_total',
  'nodejs_active_resources_total',
];

/**
 * The relay's own registry (never prom-client's global one, so that several relays can live in one
 * test process). Served on the metrics port only. Stage instruments register on it; see
 * src/metrics/*.ts, one file per stage, each event one function writing the log line and the metric.
 */
export function createRegistry(): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  for (const name of DROPPED_DEFAULT_METRICS) registry.removeSingleMetric(name);
  new Gauge({
    name: 'pdrelay_build_info',
    help: 'pd-relay build information; the value is always 1.',
    labelNames: ['version', 'node'],
    registers: [registry],
  }).set({ version: VERSION, node: process.versions.node }, 1);
  return registry;
}
