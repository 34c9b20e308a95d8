import { z } from 'zod';
import { DEFAULT_MAX_BODY_BYTES } from '../ingress/sns/limits.js';

/**
 * The configuration file's shape. These keys are pd-relay's public interface: keep them stable,
 * document every one in docs/configuration.md. Defaults here make the zero-config relay: dry-run,
 * HTTP on 0.0.0.0:8080, built-in rules, spool in ./data.
 */

/** The default pattern SNS signing-certificate and SubscribeURL hosts must match (host[:port]). */
export const DEFAULT_CERT_HOST_PATTERN = '^sns\\.[a-z0-9-]+\\.amazonaws\\.com(\\.cn)?$';

/** A PostgreSQL schema name pd-relay creates and uses unquoted. */
export const POSTGRES_SCHEMA_PATTERN = /^[a-z_][a-z0-9_]{0,62}$/;
/**
 * TLS to PostgreSQL, as libpq names it (https://www.postgresql.org/docs/current/libpq-ssl.html):
 * `require` encrypts without checking the certificate, `verify-ca` checks it was signed by the CA,
 * `verify-full` checks that and the host name too. (libpq's `prefer` and `allow`, which fall back
 * to plain text, are not offered.)
 */
export const POSTGRES_SSL_MODES = ['disable', 'require', 'verify-ca', 'verify-full'] as const;
export type PostgresSslMode = (typeof POSTGRES_SSL_MODES)[number];

/** Numbers and booleans may arrive as strings from `${ENV}` substitution. */
const fromString = (v: unknown): unknown => {
  if (typeof v !== 'string') return v;
  const t = v.trim();
  if (/^-?\d+(\.\d+)?$/.test(t)) return Number(t);
  if (t === 'true' || t === 'false') return t === 'true';
  return v;
};
const bool = () => z.preprocess(fromString, z.boolean());
const port = z.preprocess(fromString, z.number().int().min(0).max(65535));
const positiveInt = z.preprocess(fromString, z.number().int().min(1));
const boundedInt = (min: number, max: number) => z.preprocess(fromString, z.number().int().min(min).max(max));
const nonEmpty = z.string().min(1);

/** A route or alias name: it becomes a metric label value, so keep it short and plain. */
export const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;
const name = z.string().regex(NAME_PATTERN, {
  message:
    'Expected a name of letters, digits, "_", "." or "-" (at most 63, starting with a letter or digit)',
});

const routingKeyEntry = z.union([
  z.string(),
  z.strictObject({
    alias: name,
    key: z.string().optional(),
    keyFile: nonEmpty.optional(),
  }),
]);

const route = z.strictObject({
  keys: z.array(routingKeyEntry).default([]),
  ratePerMinute: boundedInt(1, 10_000).default(120),
});

export const configSchema = z.strictObject({
  server: z
    .strictObject({
      host: nonEmpty.default('0.0.0.0'),
      port: port.default(8080),
      /** Admits the largest envelope SNS can send (see src/ingress/sns/limits.ts): a 413 loses it. */
      maxBodyBytes: boundedInt(1024, 64 * 1024 * 1024).default(DEFAULT_MAX_BODY_BYTES),
      /** A client that has not sent its complete headers after this long gets 408 and is cut off. */
      headersTimeoutMs: boundedInt(100, 600_000).default(10_000),
      /**
       * A client that has not sent its whole request (headers and body) after this long gets 408.
       * SNS gives up on a request after 15 s: nothing legitimate takes longer to send.
       */
      requestTimeoutMs: boundedInt(100, 600_000).default(20_000),
      tls: z.strictObject({ certFile: nonEmpty, keyFile: nonEmpty }).optional(),
      basicAuth: z
        .strictObject({
          username: nonEmpty,
          password: z.string().optional(),
          passwordFile: nonEmpty.optional(),
        })
        .optional(),
    })
    .prefault({}),
  metrics: z
    .strictObject({
      host: nonEmpty.default('0.0.0.0'),
      port: port.default(9464),
    })
    .prefault({}),
  log: z
    .strictObject({
      level: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info'),
    })
    .prefault({}),
  sns: z
    .strictObject({
      topics: z.array(nonEmpty).default([]),
      autoConfirm: bool().default(true),
      certHostPattern: nonEmpty.default(DEFAULT_CERT_HOST_PATTERN),
      certTimeoutMs: boundedInt(1, 60_000).default(5_000),
      confirmTimeoutMs: boundedInt(1, 60_000).default(5_000),
      messageIdCacheSize: positiveInt.default(100_000),
    })
    .prefault({}),
  pagerduty: z
    .strictObject({
      url: z
        .url({ protocol: /^https?$/, message: 'Expected an http(s) URL' })
        .default('https://events.pagerduty.com'),
      timeoutMs: boundedInt(1, 120_000).default(10_000),
    })
    .prefault({}),
  routes: z.record(name, route).default({ default: { keys: [], ratePerMinute: 120 } }),
  rules: z
    .strictObject({
      paths: z.array(nonEmpty).default([]),
      watch: bool().default(true),
      reloadDebounceMs: boundedInt(0, 60_000).default(500),
    })
    .prefault({}),
  spool: z
    .strictObject({
      dir: nonEmpty.default('./data'),
      messageIdRetentionHours: boundedInt(1, 24 * 90).default(72),
      /**
       * How long the key an alert's last trigger went through is remembered without a resolve:
       * catch-all and CloudTrail alerts are never resolved by a message, and would pile up.
       */
      openAlertRetentionDays: boundedInt(1, 3650).default(30),
      /**
       * Cap on the spool database in MiB (0: none). When reached, new SNS deliveries get 503 (SNS
       * retries) instead of the volume filling up: an emptyDir over its sizeLimit evicts the pod.
       */
      maxSizeMiB: boundedInt(0, 1024 * 1024).default(0),
      /**
       * A PostgreSQL database shared by every replica, instead of the SQLite file in `dir`
       * (src/spool/postgres). Exactly one of url and urlFile.
       */
      postgres: z
        .strictObject({
          url: z.string().optional(),
          urlFile: nonEmpty.optional(),
          /** The schema pd-relay's tables live in; several relays can share a database with one each. */
          schema: z
            .string()
            .regex(POSTGRES_SCHEMA_PATTERN, {
              message:
                'Expected a schema name of lowercase letters, digits and "_" (at most 63, not starting with a digit)',
            })
            .default('pdrelay'),
          poolSize: boundedInt(2, 100).default(8),
          statementTimeoutMs: boundedInt(100, 120_000).default(5_000),
          connectTimeoutMs: boundedInt(100, 120_000).default(5_000),
          /** libpq's names; default `require` (RDS refuses unencrypted connections by default). */
          sslmode: z.enum(POSTGRES_SSL_MODES).optional(),
          caFile: nonEmpty.optional(),
        })
        .optional(),
    })
    .prefault({}),
  delivery: z
    .strictObject({
      maxAgeSeconds: positiveInt.default(86_400),
      minBackoffMs: positiveInt.default(1_000),
      maxBackoffMs: positiveInt.default(300_000),
      drainTimeoutMs: boundedInt(0, 600_000).default(10_000),
      /**
       * Length of the per-key sliding rate window (PagerDuty's is 60 s). For tests and benchmarks,
       * which scale it down; `routes.<name>.ratePerMinute` is the limit per window.
       */
      rateWindowMs: boundedInt(100, 3_600_000).default(60_000),
    })
    .prefault({}),
});

/** The file as written (after `${ENV}` substitution), defaults applied, before secrets are read. */
export type RawConfig = z.output<typeof configSchema>;
