import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { formatPath, type Problem, UserError } from '../errors.js';
import { Secret } from '../shared/secret.js';
import { type PathSegment, YamlSource } from '../shared/yaml-source.js';
import { zodProblems } from '../shared/zod-problems.js';
import { substituteEnv } from './env.js';
import { type ParsedPostgresUrl, parsePostgresUrl } from './postgres-url.js';
import { configSchema, type PostgresSslMode, type RawConfig } from './schema.js';

/** PagerDuty Events API v2 integration keys are 32 characters (the integration's "Integration Key"). */
export const ROUTING_KEY_PATTERN = /^[A-Za-z0-9]{32}$/;

/** One integration key of a route's pool. `alias` is what logs and metrics show. */
export interface RoutingKey {
  alias: string;
  key: Secret;
}

export interface RouteConfig {
  name: string;
  keys: RoutingKey[];
  ratePerMinute: number;
}

/** The loaded configuration: defaults applied, paths absolute, secrets read and wrapped. */
export interface Config {
  /** The file it came from, or null for the zero-config defaults. */
  file: string | null;
  /** True when no route has a key: events are logged and listed, never sent. */
  dryRun: boolean;
  server: Omit<RawConfig['server'], 'basicAuth' | 'tls'> & {
    tls?: { certFile: string; keyFile: string };
    basicAuth?: { username: string; password: Secret };
  };
  metrics: RawConfig['metrics'];
  log: RawConfig['log'];
  sns: RawConfig['sns'];
  pagerduty: RawConfig['pagerduty'];
  routes: Record<string, RouteConfig>;
  rules: RawConfig['rules'];
  spool: Omit<RawConfig['spool'], 'postgres'> & { postgres?: PostgresConfig };
  delivery: RawConfig['delivery'];
}

/** `spool.postgres`, loaded: the URL's parts (password wrapped), TLS settled, paths absolute. */
export interface PostgresConfig {
  host: string;
  port: number;
  database: string;
  user: string;
  password: Secret;
  /** `postgres://user@host:port/database`, for messages: never the password. */
  display: string;
  applicationName?: string;
  schema: string;
  poolSize: number;
  statementTimeoutMs: number;
  connectTimeoutMs: number;
  sslmode: PostgresSslMode;
  /** CA certificates (PEM file) trusted for the server's certificate; else Node's trust store. */
  caFile?: string;
}

export interface LoadOptions {
  /** Config file path; when absent, the zero-config defaults. */
  file?: string | undefined;
  env?: NodeJS.ProcessEnv;
  /** Where relative paths resolve when there is no file (default: process.cwd()). */
  cwd?: string;
}

/** Loads and validates the configuration, or throws a UserError listing every problem. */
export function loadConfig(opts: LoadOptions = {}): Config {
  const cwd = opts.cwd ?? process.cwd();
  if (!opts.file) {
    const result = parseConfig('{}\n', '<defaults>', { env: opts.env ?? process.env, baseDir: cwd });
    if (!result.config) throw new UserError('The built-in defaults are invalid (a bug).', result.problems);
    return { ...result.config, file: null };
  }
  const file = resolve(cwd, opts.file);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new UserError(`Cannot read config file ${opts.file}: ${errnoText(err)}.`);
  }
  const result = parseConfig(text, opts.file, { env: opts.env ?? process.env, baseDir: dirname(file) });
  if (!result.config) {
    throw new UserError(
      `Invalid configuration in ${opts.file} (${result.problems.length} problem${result.problems.length === 1 ? '' : 's'}):`,
      result.problems,
    );
  }
  return { ...result.config, file };
}

/**
 * Parses config text. Collects every problem — YAML syntax, `${ENV}`, schema, cross-field rules,
 * unreadable `*File` secrets — rather than stopping at the first. Relative paths resolve against
 * `baseDir` (the config file's directory, as Prometheus does).
 */
export function parseConfig(
  text: string,
  file: string,
  opts: { env: NodeJS.ProcessEnv; baseDir: string },
): { config?: Config; problems: Problem[] } {
  const { source, problems } = YamlSource.parse(text, file);
  if (problems.length) return { problems };
  const envProblems = substituteEnv(source, opts.env);
  problems.push(...envProblems);

  let input = source.toJS();
  if (input === null || input === undefined) input = {};
  // A file that is one string is often a secret saved where the config should be (a routing key,
  // a database URL): say what it is without repeating it.
  if (typeof input === 'string') {
    problems.push({
      location: source.locate([]),
      path: '',
      message: `Expected a mapping, got a value of ${input.length} characters (not shown)`,
    });
    return { problems };
  }
  const parsed = configSchema.safeParse(input, { reportInput: true });
  if (!parsed.success) {
    const unset = new Set(envProblems.map((p) => p.path));
    for (const p of zodProblems(parsed.error.issues, source, configSchema, isSecretPath))
      if (!unset.has(p.path)) problems.push(p);
    return { problems };
  }
  const raw = parsed.data;
  const at = (path: PathSegment[], key = false) => source.locate(path, { key });
  // A value left unset by the environment is reported once, not again by every check that reads it.
  const unset = new Set(envProblems.map((p) => p.path));
  const problem = (path: PathSegment[], message: string, key = false) => {
    const p = formatPath(path);
    if (![...unset].some((u) => p === u || p.startsWith(`${u}.`)))
      problems.push({ location: at(path, key), path: p, message });
  };
  const abs = (p: string) => resolve(opts.baseDir, p);
  const readSecret = (path: PathSegment[], fileName: string): Secret | undefined => {
    try {
      return new Secret(readFileSync(abs(fileName), 'utf8').trim());
    } catch (err) {
      problem(path, `Cannot read ${fileName}: ${errnoText(err)}`);
      return undefined;
    }
  };

  // server.tls and server.basicAuth
  let tls: Config['server']['tls'];
  if (raw.server.tls) {
    tls = { certFile: abs(raw.server.tls.certFile), keyFile: abs(raw.server.tls.keyFile) };
    for (const k of ['certFile', 'keyFile'] as const) {
      try {
        readFileSync(tls[k]);
      } catch (err) {
        problem(['server', 'tls', k], `Cannot read ${raw.server.tls[k]}: ${errnoText(err)}`);
      }
    }
  }
  let basicAuth: Config['server']['basicAuth'];
  const ba = raw.server.basicAuth;
  if (ba) {
    if ((ba.password === undefined) === (ba.passwordFile === undefined)) {
      problem(['server', 'basicAuth'], 'Expected exactly one of password or passwordFile');
    } else {
      const password =
        ba.password !== undefined
          ? new Secret(ba.password)
          : readSecret(['server', 'basicAuth', 'passwordFile'], ba.passwordFile as string);
      if (password && password.length === 0) problem(['server', 'basicAuth'], 'The password is empty');
      if (ba.username.includes(':'))
        problem(['server', 'basicAuth', 'username'], 'A username cannot contain ":"');
      if (password) basicAuth = { username: ba.username, password };
    }
  }

  // sns.certHostPattern must compile; sns.topics are globs.
  try {
    new RegExp(raw.sns.certHostPattern);
  } catch (err) {
    problem(['sns', 'certHostPattern'], `Not a valid regular expression: ${(err as Error).message}`);
  }
  raw.sns.topics.forEach((t, i) => {
    if (t !== '*' && !t.startsWith('arn:'))
      problem(
        ['sns', 'topics', i],
        `Expected a topic ARN or glob such as "arn:aws:sns:*:123456789012:*", got "${t}"`,
      );
  });

  // routes: keys, aliases, dry-run.
  const routes: Record<string, RouteConfig> = {};
  let keyCount = 0;
  for (const [routeName, r] of Object.entries(raw.routes)) {
    const keys: RoutingKey[] = [];
    const aliases = new Set<string>();
    r.keys.forEach((entry, i) => {
      const at: PathSegment[] = ['routes', routeName, 'keys', i];
      const alias = typeof entry === 'string' ? `${routeName}-${i + 1}` : entry.alias;
      if (aliases.has(alias)) {
        problem(
          typeof entry === 'string' ? at : [...at, 'alias'],
          `Duplicate alias "${alias}" in route "${routeName}"`,
        );
      }
      aliases.add(alias);

      let key: Secret | undefined;
      let keyPath = at;
      if (typeof entry === 'string') {
        key = new Secret(entry.trim());
      } else if ((entry.key === undefined) === (entry.keyFile === undefined)) {
        problem(at, 'Expected exactly one of key or keyFile');
      } else if (entry.key !== undefined) {
        key = new Secret(entry.key.trim());
        keyPath = [...at, 'key'];
      } else {
        keyPath = [...at, 'keyFile'];
        key = readSecret(keyPath, entry.keyFile as string);
      }
      if (!key) return;
      if (!ROUTING_KEY_PATTERN.test(key.reveal())) {
        problem(
          keyPath,
          `Expected a 32-character PagerDuty integration key (letters and digits), got a value of ${key.length} characters (not shown)`,
        );
        return;
      }
      keys.push({ alias, key });
    });
    keyCount += keys.length;
    routes[routeName] = { name: routeName, keys, ratePerMinute: r.ratePerMinute };
  }
  if (!routes.default) {
    problem(['routes'], 'Expected a route named "default": the built-in rules send to it');
  }
  const dryRun = keyCount === 0 && Object.values(raw.routes).every((r) => r.keys.length === 0);
  if (!dryRun) {
    for (const [routeName, r] of Object.entries(raw.routes)) {
      if (r.keys.length === 0)
        problem(
          ['routes', routeName],
          `Route "${routeName}" has no keys while other routes do: add keys or remove it`,
        );
    }
    if (raw.sns.topics.length === 0) {
      problem(
        ['sns', 'topics'],
        'Required when routes have keys: without a topic allow-list, anyone with an AWS ' +
          'account can subscribe this endpoint to their own topic and page you. Add e.g. ' +
          'topics: ["arn:aws:sns:*:123456789012:*"]',
      );
    }
  }
  // spool.postgres: the URL (a secret: it holds the password), TLS from the keys or the URL.
  let postgres: PostgresConfig | undefined;
  const pg = raw.spool.postgres;
  if (pg) {
    const at: PathSegment[] = ['spool', 'postgres'];
    let parsed: ParsedPostgresUrl | undefined;
    if ((pg.url === undefined) === (pg.urlFile === undefined)) {
      problem(at, 'Expected exactly one of url or urlFile');
    } else {
      const urlPath: PathSegment[] = [...at, pg.url !== undefined ? 'url' : 'urlFile'];
      const text = pg.url ?? readSecret(urlPath, pg.urlFile as string)?.reveal();
      if (text !== undefined) {
        const result = parsePostgresUrl(text);
        if ('problem' in result) problem(urlPath, result.problem);
        else parsed = result.ok;
      }
    }
    if (parsed) {
      if (pg.sslmode && parsed.sslmode && pg.sslmode !== parsed.sslmode)
        problem(
          [...at, 'sslmode'],
          `Expected one sslmode, got ${pg.sslmode} here and ${parsed.sslmode} in the URL: remove one`,
        );
      if (pg.caFile && parsed.sslrootcert)
        problem([...at, 'caFile'], 'Expected one CA file, got caFile and sslrootcert in the URL: remove one');
      const sslmode = pg.sslmode ?? parsed.sslmode ?? 'require';
      const caName = pg.caFile ?? parsed.sslrootcert;
      const caFile = caName === undefined ? undefined : abs(caName);
      if (caFile !== undefined) {
        try {
          readFileSync(caFile);
        } catch (err) {
          problem([...at, 'caFile'], `Cannot read ${caName}: ${errnoText(err)}`);
        }
        if (sslmode === 'disable' || sslmode === 'require')
          problem(
            [...at, pg.caFile ? 'caFile' : 'urlFile'],
            `A CA file is only checked with sslmode verify-ca or verify-full, got ${sslmode}: set sslmode: verify-full`,
          );
      }
      postgres = {
        host: parsed.host,
        port: parsed.port,
        database: parsed.database,
        user: parsed.user,
        password: new Secret(parsed.password),
        display: parsed.display,
        ...(parsed.applicationName ? { applicationName: parsed.applicationName } : {}),
        schema: pg.schema,
        poolSize: pg.poolSize,
        statementTimeoutMs: pg.statementTimeoutMs,
        connectTimeoutMs: pg.connectTimeoutMs,
        sslmode,
        ...(caFile ? { caFile } : {}),
      };
    }
    if (raw.spool.maxSizeMiB)
      problem(
        ['spool', 'maxSizeMiB'],
        'spool.maxSizeMiB caps the SQLite spool only: remove it, or size the PostgreSQL database instead',
      );
  }

  if (raw.delivery.minBackoffMs > raw.delivery.maxBackoffMs)
    problem(['delivery', 'minBackoffMs'], 'Expected minBackoffMs <= maxBackoffMs');
  // Node's HTTP server refuses a headers timeout longer than the whole-request timeout.
  if (raw.server.headersTimeoutMs > raw.server.requestTimeoutMs)
    problem(['server', 'headersTimeoutMs'], 'Expected headersTimeoutMs <= requestTimeoutMs');

  if (problems.length) return { problems };
  const config: Config = {
    file,
    dryRun,
    server: {
      host: raw.server.host,
      port: raw.server.port,
      maxBodyBytes: raw.server.maxBodyBytes,
      headersTimeoutMs: raw.server.headersTimeoutMs,
      requestTimeoutMs: raw.server.requestTimeoutMs,
      tls,
      basicAuth,
    },
    metrics: raw.metrics,
    log: raw.log,
    sns: raw.sns,
    pagerduty: { ...raw.pagerduty, url: raw.pagerduty.url.replace(/\/+$/, '') },
    routes,
    rules: { ...raw.rules, paths: raw.rules.paths.map(abs) },
    spool: {
      dir: abs(raw.spool.dir),
      messageIdRetentionHours: raw.spool.messageIdRetentionHours,
      openAlertRetentionDays: raw.spool.openAlertRetentionDays,
      maxSizeMiB: raw.spool.maxSizeMiB,
      ...(postgres ? { postgres } : {}),
    },
    delivery: raw.delivery,
  };
  return { config, problems };
}

/**
 * Paths whose values (and, inside a key entry, whose key names) may be credentials: never echoed
 * in a message. Beyond the key and password themselves, a value written where a route, a route's
 * key list or a key entry goes is usually a key typed in the wrong place (`default: <key>`,
 * `keys: <key>`), and a missing colon turns `{ key <key> }` into an unknown key named after it.
 */
function isSecretPath(path: readonly PathSegment[]): boolean {
  if (path[0] === 'routes') return path.length <= 2 || path[2] === 'keys';
  if (path[0] === 'server' && path[1] === 'basicAuth') return path.length === 2 || path[2] === 'password';
  // The URL holds the database password.
  if (path[0] === 'spool' && path[1] === 'postgres') return path.length === 2 || path[2] === 'url';
  return false;
}

function errnoText(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  switch (e.code) {
    case 'ENOENT':
      return 'no such file';
    case 'EACCES':
      return 'permission denied';
    case 'EISDIR':
      return 'it is a directory';
    default:
      return e.code ?? e.message;
  }
}
