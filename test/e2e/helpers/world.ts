import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, expect } from 'vitest';
import { FakePagerDuty, type FakePagerDutyOptions } from '../../helpers/fake-pagerduty.js';
import { type Envelope, FakeSns, type NotificationOptions, testTls } from '../../helpers/fake-sns.js';
import { RelayProcess } from '../../helpers/relay-process.js';
import { tempDir } from '../../helpers/temp.js';
import { randomSecret, SecretWatch } from './secrets.js';
import { SnsClient } from './sns-client.js';

const ROOT = new URL('../../../', import.meta.url).pathname;

/**
 * The suite runs the built relay (dist/), as users do: `npm test` builds it first. Running vitest
 * on its own after editing src/ would test the previous build, so say so.
 */
function checkBuild(): void {
  const entry = join(ROOT, 'dist/cli/main.js');
  if (!existsSync(entry))
    throw new Error('Expected a built relay in dist/: run `npm run build` (npm test does).');
  const built = statSync(entry).mtimeMs;
  const newer = (dir: string): boolean =>
    readdirSync(dir, { withFileTypes: true }).some((d) =>
      d.isDirectory() ? newer(join(dir, d.name)) : statSync(join(dir, d.name)).mtimeMs > built,
    );
  if (newer(join(ROOT, 'src')))
    console.warn('e2e: src/ changed after the last build; these tests run dist/ (run `npm run build`).');
}

/** The topic every e2e scenario publishes to (allowed by the relay's `sns.topics`). */
export const TOPIC = 'arn:aws:sns:eu-west-1:123456789012:e2e-alarms';
export const BASIC_AUTH_USER = 'sns';

const TLS_DIR = new URL('../../fixtures/tls/', import.meta.url).pathname;

/** A relay configuration, in the terms the scenarios vary. */
export interface RelayOptions {
  /** Route name → key aliases (each alias gets a random routing key, given to the relay as a keyFile). */
  routes?: Record<string, { aliases: string[]; ratePerMinute?: number }>;
  /** HTTPS on the SNS port with test/fixtures/tls/server.pem. */
  tls?: boolean;
  /** Basic auth on the SNS routes with the world's password (as a passwordFile). */
  basicAuth?: boolean;
  topics?: string[];
  certHostPattern?: string;
  autoConfirm?: boolean;
  logLevel?: 'trace' | 'debug' | 'info' | 'warn';
  /** Files to write under <dir>/rules (name → YAML); the directory is always in `rules.paths`. */
  rules?: Record<string, string>;
  /** Extra `rules.paths` entries (relative to the config file). */
  extraRulePaths?: string[];
  watch?: boolean;
  reloadDebounceMs?: number;
  delivery?: {
    minBackoffMs?: number;
    maxBackoffMs?: number;
    drainTimeoutMs?: number;
    rateWindowMs?: number;
    maxAgeSeconds?: number;
  };
  /** Spool directory (default <dir>/spool) and size cap. */
  spoolDir?: string;
  maxSizeMiB?: number;
  /** A PostgreSQL spool (several replicas) at this URL instead of the SQLite file. */
  postgresUrl?: string;
}

/**
 * The hooks of every e2e describe block: a world started before its tests (`set` receives it, then
 * the block may prepare it), finished after each test (no secret may have shown anywhere) and
 * closed after them all.
 */
export function useE2eWorld(set: (world: E2eWorld) => void, pd: FakePagerDutyOptions = {}): void {
  let world: E2eWorld | undefined;
  beforeAll(async () => {
    world = await E2eWorld.start(pd);
    set(world);
  });
  afterEach(async () => {
    expect(await world?.finish()).toEqual([]);
  });
  afterAll(async () => {
    await world?.close();
  });
}

/**
 * One end-to-end world: a FakeSns (HTTPS certificate host and SubscribeURL recorder), a
 * FakePagerDuty, the secrets the relays are given, and every relay process and client a
 * scenario started. `finish()` (after each test) stops the relays and greps everything the
 * scenario saw for the secrets.
 */
export class E2eWorld {
  readonly secrets = new SecretWatch();
  /** The basic-auth password of every relay in this world. */
  readonly password = randomSecret(24);
  #keys = new Map<string, string>();
  #relays: RelayProcess[] = [];
  #clients: SnsClient[] = [];
  #cleanups: Array<() => void> = [];

  private constructor(
    readonly sns: FakeSns,
    readonly pd: FakePagerDuty,
  ) {
    this.secrets.add('the basic-auth password', this.password);
    this.secrets.add(
      'the basic-auth Authorization header',
      Buffer.from(`${BASIC_AUTH_USER}:${this.password}`).toString('base64'),
    );
  }

  static async start(pd: FakePagerDutyOptions = {}): Promise<E2eWorld> {
    checkBuild();
    const [sns, fake] = await Promise.all([FakeSns.start(), FakePagerDuty.start(pd)]);
    return new E2eWorld(sns, fake);
  }

  /** Every relay process this scenario started, stopped ones included. */
  get relays(): readonly RelayProcess[] {
    return this.#relays;
  }

  /** The routing key of `alias` in the current scenario (random, registered as a secret). */
  key(alias: string): string {
    let key = this.#keys.get(alias);
    if (!key) {
      key = randomSecret(32);
      this.#keys.set(alias, key);
      this.secrets.add(`the routing key of ${alias}`, key);
    }
    return key;
  }

  /** A temporary directory removed after the scenario. */
  dir(prefix = 'pd-relay-e2e-'): string {
    const t = tempDir(prefix);
    this.#cleanups.push(t.cleanup);
    return t.dir;
  }

  /** Runs `fn` during cleanup, before the directories are removed (unmount, chattr -i, …). */
  onCleanup(fn: () => void): void {
    this.#cleanups.unshift(fn);
  }

  /** The config file for `opts`, with its secrets and rule files written into `dir`. */
  writeConfig(dir: string, opts: RelayOptions = {}): string {
    mkdirSync(join(dir, 'secrets'), { recursive: true });
    mkdirSync(join(dir, 'rules'), { recursive: true });
    for (const [name, text] of Object.entries(opts.rules ?? {}))
      writeFileSync(join(dir, 'rules', name), text);
    const routes = opts.routes ?? { default: { aliases: ['pd-1'] } };
    const routeYaml = Object.entries(routes).flatMap(([name, r]) => [
      `  ${name}:`,
      ...(r.ratePerMinute !== undefined ? [`    ratePerMinute: ${r.ratePerMinute}`] : []),
      '    keys:',
      ...r.aliases.map((alias) => {
        writeFileSync(join(dir, 'secrets', alias), `${this.key(alias)}\n`);
        return `      - { alias: ${alias}, keyFile: secrets/${alias} }`;
      }),
    ]);
    if (opts.basicAuth) writeFileSync(join(dir, 'secrets', 'basic-auth'), `${this.password}\n`);
    const d = opts.delivery ?? {};
    const lines = [
      'server:',
      '  host: 127.0.0.1',
      '  port: 0',
      ...(opts.tls ? [`  tls: { certFile: "${TLS_DIR}server.pem", keyFile: "${TLS_DIR}server.key" }`] : []),
      ...(opts.basicAuth
        ? [`  basicAuth: { username: ${BASIC_AUTH_USER}, passwordFile: secrets/basic-auth }`]
        : []),
      'metrics: { host: 127.0.0.1, port: 0 }',
      `log: { level: ${opts.logLevel ?? 'info'} }`,
      'sns:',
      `  topics: ${JSON.stringify(opts.topics ?? [TOPIC])}`,
      `  certHostPattern: '${opts.certHostPattern ?? this.sns.certHostPattern}'`,
      `  autoConfirm: ${opts.autoConfirm ?? true}`,
      `pagerduty: { url: "${this.pd.url}", timeoutMs: 5000 }`,
      'routes:',
      ...routeYaml,
      'rules:',
      `  paths: ${JSON.stringify(['rules', ...(opts.extraRulePaths ?? [])])}`,
      `  watch: ${opts.watch ?? false}`,
      `  reloadDebounceMs: ${opts.reloadDebounceMs ?? 100}`,
      'spool:',
      `  dir: "${opts.spoolDir ?? 'spool'}"`,
      ...(opts.postgresUrl ? ['  postgres:', `    url: "${opts.postgresUrl}"`, '    sslmode: disable'] : []),
      ...(opts.maxSizeMiB !== undefined ? [`  maxSizeMiB: ${opts.maxSizeMiB}`] : []),
      'delivery:',
      `  minBackoffMs: ${d.minBackoffMs ?? 50}`,
      `  maxBackoffMs: ${d.maxBackoffMs ?? 500}`,
      `  drainTimeoutMs: ${d.drainTimeoutMs ?? 5000}`,
      `  rateWindowMs: ${d.rateWindowMs ?? this.pd.windowMs}`,
      ...(d.maxAgeSeconds !== undefined ? [`  maxAgeSeconds: ${d.maxAgeSeconds}`] : []),
      '',
    ];
    return lines.join('\n');
  }

  /**
   * Starts `pd-relay serve` (the built bin/pd-relay.js) in `dir` with the config for `opts`,
   * trusting the test CA for its SNS certificate downloads and SubscribeURL visits.
   */
  async startRelay(dir: string, opts: RelayOptions = {}): Promise<RelayProcess> {
    const configYaml = this.writeConfig(dir, opts);
    const relay = await RelayProcess.start({
      configYaml,
      dir,
      env: { NODE_EXTRA_CA_CERTS: this.sns.caFile },
    });
    this.#relays.push(relay);
    return relay;
  }

  /** An SNS-like client of `relay` (a function: follows restarts), recording every response. */
  client(relay: () => RelayProcess, opts: { credentials?: boolean; password?: string } = {}): SnsClient {
    const client = new SnsClient({
      origin: () => relay().snsUrl,
      ca: testTls.caPem,
      ...(opts.credentials
        ? { credentials: { username: BASIC_AUTH_USER, password: opts.password ?? this.password } }
        : {}),
      record: (where, text) => this.secrets.record(where, text),
    });
    this.#clients.push(client);
    return client;
  }

  /** A signed Notification on TOPIC carrying `message` (JSON-encoded when not a string). */
  notification(message: unknown, opts: NotificationOptions = {}): Envelope {
    return this.sns.notification({
      topic: TOPIC,
      message: typeof message === 'string' ? message : JSON.stringify(message),
      ...opts,
    });
  }

  /**
   * Runs `pd-relay <args> --config <dir>/config.yaml` (the built CLI, as an operator would beside
   * the running relay) and records its output for the grep. Asynchronous: the fakes it may talk to
   * (`check --send-test`) live in this process.
   */
  cli(dir: string, args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
    return new Promise((resolve) => {
      execFile(
        process.execPath,
        [join(ROOT, 'bin/pd-relay.js'), ...args, '--config', join(dir, 'config.yaml')],
        {
          encoding: 'utf8',
          env: { PATH: process.env.PATH ?? '', NODE_EXTRA_CA_CERTS: this.sns.caFile },
          timeout: 30_000,
        },
        (err, stdout, stderr) => {
          this.secrets.record(`the output of pd-relay ${args.join(' ')}`, `${stdout}\n${stderr}`);
          const code = err ? (typeof err.code === 'number' ? err.code : null) : 0;
          resolve({ status: code, stdout, stderr });
        },
      );
    });
  }

  /** Scrapes the relay's /metrics (recorded for the grep). */
  async metrics(relay: RelayProcess): Promise<string> {
    const res = await fetch(`${relay.metricsUrl}/metrics`);
    const text = await res.text();
    this.secrets.record('/metrics', text);
    return text;
  }

  /**
   * Ends a scenario: scrapes /metrics of every relay still running, stops them, records their
   * whole output, and returns where any secret showed up (empty when none did). Then resets
   * PagerDuty's failure modes and records, and removes the scenario's directories.
   */
  async finish(): Promise<string[]> {
    try {
      for (const relay of this.#relays) {
        if (relay.child.exitCode === null && relay.child.signalCode === null) {
          await this.metrics(relay).catch(() => {});
        }
      }
      await Promise.all(this.#relays.map((r) => r.stop()));
      for (const c of this.#clients) c.close();
      const outputs = this.#relays.map((r, i) => ({
        where: `the output of relay process #${i + 1}`,
        text: r.output,
      }));
      const leaks = this.secrets.leaks(outputs);
      for (const [i, r] of this.#relays.entries())
        leaks.push(...logFormatProblems(r.output, `relay process #${i + 1}`));
      if (this.secrets.recorded === 0 && outputs.every((o) => !o.text)) leaks.push('nothing was recorded');
      return leaks;
    } finally {
      this.#relays = [];
      this.#clients = [];
      this.#keys = new Map();
      this.secrets.clearTexts();
      this.pd.heal();
      this.pd.clearRecords();
      this.sns.requests.length = 0;
      for (const c of this.#cleanups.splice(0)) {
        try {
          c();
        } catch (err) {
          console.warn(`e2e cleanup failed: ${(err as Error).message}`);
        }
      }
    }
  }

  async close(): Promise<void> {
    await Promise.all([this.sns.close(), this.pd.close()]);
  }
}

/**
 * What the operations issue asks of the logs: every line of output is a JSON object with a level
 * and a capitalised sentence as its message. Problems name the line number only: the line itself
 * might hold what the grep is looking for.
 */
export function logFormatProblems(output: string, who: string): string[] {
  const problems: string[] = [];
  output.split('\n').forEach((line, i) => {
    if (!line) return;
    let parsed: { level?: unknown; msg?: unknown };
    try {
      parsed = JSON.parse(line) as typeof parsed;
    } catch {
      problems.push(`line ${i + 1} of ${who} is not JSON`);
      return;
    }
    if (typeof parsed.level !== 'string') problems.push(`line ${i + 1} of ${who} has no level`);
    if (typeof parsed.msg !== 'string' || !/^[A-Z].*[.:)]$/s.test(parsed.msg))
      problems.push(`line ${i + 1} of ${who} is not a capitalised sentence`);
  });
  return problems;
}

/**
 * The e2e rule, version `v`: a JSON message `{ e2e, alert, seq, action? }` becomes one event with
 * dedup key `e2e/<alert>`, the action it names (default trigger) and a summary that says which
 * rule version rendered it. Scenarios that reload rules change `v`.
 */
export function e2eRule(v: string, extra: { severity?: string } = {}): string {
  return [
    `- name: e2e-${v}`,
    '  match:',
    '    kind: [json]',
    '    message:',
    '      e2e: [{ exists: true }]',
    `  action: '{{ message.action | default: "trigger" }}'`,
    `  dedup_key: 'e2e/{{ message.alert }}'`,
    '  payload:',
    `    summary: '${v} {{ message.alert }} #{{ message.seq }}'`,
    '    source: e2e',
    `    severity: ${extra.severity ?? 'warning'}`,
    '    custom_details: message',
    '',
  ].join('\n');
}

/** The rule version, alert and sequence number an accepted e2e event's summary carries. */
export function parseSummary(body: Record<string, unknown>): { v: string; alert: string; seq: number } {
  const summary = String((body.payload as { summary?: string } | undefined)?.summary ?? '');
  const m = /^(\S+) (\S+) #(\d+)$/.exec(summary);
  if (!m) throw new Error(`Expected an e2e summary "<v> <alert> #<seq>", got ${JSON.stringify(summary)}`);
  return { v: m[1] as string, alert: m[2] as string, seq: Number(m[3]) };
}

/** Sum of the samples of `name` whose labels include `labels` (Prometheus text format). */
export function metricValue(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const got = m[2] ?? '';
    if (Object.entries(labels).every(([k, v]) => got.includes(`${k}="${v}"`))) sum += Number(m[3]);
  }
  return sum;
}

/** Resolves after `ms`. */
export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Waits until `predicate` holds (checked every 20 ms) or fails after `timeoutMs` saying `what`. */
export async function until(predicate: () => boolean, what: string, timeoutMs = 15_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!predicate()) {
    if (performance.now() > deadline) throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(20);
  }
}
