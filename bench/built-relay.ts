// The built relay (`pd-relay serve` from dist/, as users run it) for the benchmarks that start it
// as a process: a build when dist/ is missing or older than src/, and the config they share.
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { testRoutingKey } from '../test/helpers/fake-pagerduty.js';
import { BENCH_TOPIC } from './signed-messages.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

/**
 * Runs `npm run build`'s compiler when dist/ is missing or a file under src/ is newer than it (the
 * check test/e2e/helpers/world.ts makes): a benchmark of the relay process measures this tree.
 */
export function ensureBuilt(): void {
  const entry = join(ROOT, 'dist/cli/main.js');
  const built = existsSync(entry) ? statSync(entry).mtimeMs : 0;
  const newer = (dir: string): boolean =>
    readdirSync(dir, { withFileTypes: true }).some((d) =>
      d.isDirectory() ? newer(join(dir, d.name)) : statSync(join(dir, d.name)).mtimeMs > built,
    );
  if (built && !newer(join(ROOT, 'src'))) return;
  console.log(built ? 'src/ changed since the last build: building dist/…' : 'Building dist/…');
  execFileSync(
    process.execPath,
    [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', join(ROOT, 'tsconfig.build.json')],
    { stdio: 'inherit' },
  );
}

/** The routing keys of these benchmarks' route, by alias (`bench-1`…): a pool, as a production route has. */
export function benchKeys(count = 4): Map<string, string> {
  return new Map(
    Array.from({ length: count }, (_, i) => [`bench-${i + 1}`, testRoutingKey(`bench${i + 1}`)]),
  );
}

export interface BenchRelayConfig {
  /** FakeSns's `certHostPattern`. */
  certHostPattern: string;
  pagerdutyUrl: string;
  /** alias → routing key (benchKeys()). */
  keys: Map<string, string>;
  /** Relay-side limit per key and minute: raise it with the fake's, or the relay waits in its window. */
  ratePerMinute: number;
  /** `spool.postgres.url` (several replicas share it); without it, SQLite in `./data` of the relay's dir. */
  postgresUrl?: string;
}

/**
 * A relay config as a deployment writes it (ports 0, built-in rules, request log at info), for
 * RelayProcess.start(). BENCH_TOPIC is the only topic allowed.
 */
export function benchRelayConfig(c: BenchRelayConfig): string {
  return [
    'server: { host: 127.0.0.1, port: 0 }',
    'metrics: { host: 127.0.0.1, port: 0 }',
    'log: { level: info }',
    `sns: { topics: ["${BENCH_TOPIC}"], certHostPattern: '${c.certHostPattern}' }`,
    `pagerduty: { url: '${c.pagerdutyUrl}' }`,
    'routes:',
    '  default:',
    `    ratePerMinute: ${c.ratePerMinute}`,
    '    keys:',
    ...[...c.keys].map(([alias, key]) => `      - { alias: ${alias}, key: "${key}" }`),
    'spool:',
    '  dir: ./data',
    ...(c.postgresUrl ? ['  postgres:', `    url: "${c.postgresUrl}"`, '    sslmode: disable'] : []),
    '',
  ].join('\n');
}

/** Sum of the samples of `name` in Prometheus text (every label set). */
export function metricSum(text: string, name: string): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(?:\{[^}]*\})? (\S+)$/.exec(line);
    if (m && m[1] === name) sum += Number(m[2]);
  }
  return sum;
}

/** `pdrelay_delivery_keys_owned` of the relay whose metrics listen at `metricsUrl`. */
export async function keysOwned(metricsUrl: string): Promise<number> {
  const text = await (await fetch(`${metricsUrl}/metrics`)).text();
  return metricSum(text, 'pdrelay_delivery_keys_owned');
}
