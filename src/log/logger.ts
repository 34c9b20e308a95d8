import { type DestinationStream, type LevelWithSilent, type Logger, pino } from 'pino';

export type { Logger };

/**
 * Field names whose values never reach a log line, wherever they appear in a logged object (to
 * REDACT_DEPTH levels): a second line of defence behind `Secret`, which already serialises as
 * "[redacted]". Log calls pass aliases, never keys.
 */
const SECRET_FIELDS = new Set(['routing_key', 'routingKey', 'password', 'authorization', 'Authorization']);
const REDACT_DEPTH = 4;
const REDACTED = '[redacted]';

/**
 * `value` with every SECRET_FIELDS field of it and of its plain objects and arrays replaced by
 * "[redacted]"; copies only what changes (a log line without such a field costs one walk over its
 * keys). Not pino's `redact` option: its wildcard paths cost ~7 µs per line, half of what a request
 * log line costs (bench/README.md).
 */
export function redactSecrets<T>(value: T, depth = 0): T {
  if (depth >= REDACT_DEPTH || value === null || typeof value !== 'object') return value;
  if (Array.isArray(value)) {
    let out: unknown[] | undefined;
    for (let i = 0; i < value.length; i++) {
      const next = redactSecrets(value[i], depth + 1);
      if (next !== value[i]) {
        out ??= value.slice();
        out[i] = next;
      }
    }
    return (out ?? value) as T;
  }
  const proto = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== null) return value;
  const obj = value as Record<string, unknown>;
  let out: Record<string, unknown> | undefined;
  for (const key in obj) {
    const v = obj[key];
    const next = SECRET_FIELDS.has(key) && v !== undefined ? REDACTED : redactSecrets(v, depth + 1);
    if (next !== v) {
      out ??= { ...obj };
      out[key] = next;
    }
  }
  return (out ?? value) as T;
}

/**
 * Where the relay's JSON lines go: pino's asynchronous destination, written by libuv's pool; lines
 * still queued at exit are written by pino's exit handler. Buffering them (sonic-boom's
 * `minLength`) was measured in the ingest benchmark: no gain, since sonic-boom measures its whole
 * buffer for every line (bench/README.md).
 */
export function logDestination(dest: number | string = 1): DestinationStream {
  return pino.destination({ dest, sync: false });
}

/**
 * JSON lines on stdout (or `destination`, which tests use to read what was logged). Messages are
 * capitalised sentences; context goes in fields.
 */
export function createLogger(
  opts: { level?: LevelWithSilent; destination?: DestinationStream } = {},
): Logger {
  const logger = pino(
    {
      level: opts.level ?? 'info',
      base: { service: 'pd-relay' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: {
        level: (label) => ({ level: label }),
        log: (obj) => redactSecrets(obj),
      },
    },
    opts.destination ?? logDestination(),
  );
  // pino gives children's bindings no formatter; children inherit this from the root (their prototype).
  const child = logger.child;
  logger.child = function (this: Logger, bindings, options) {
    return child.call(this, redactSecrets(bindings), options);
  } as Logger['child'];
  return logger;
}
