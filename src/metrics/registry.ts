import { collectDefaultMetrics, Gauge, Registry } from 'prom-client';
import { VERSION } from '../version.js';

/**
 * The relay's own registry (never prom-client's global one, so that several relays can live in one
 * test process). Served on the metrics port only. Stage instruments register on it; see
 * src/metrics/*.ts, one file per stage, each event one function writing the log line and the metric.
 */
export function createRegistry(): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  new Gauge({
    name: 'pdrelay_build_info',
    help: 'pd-relay build information; the value is always 1.',
    labelNames: ['version', 'node'],
    registers: [registry],
  }).set({ version: VERSION, node: process.versions.node }, 1);
  return registry;
}
