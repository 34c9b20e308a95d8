import { type DestinationStream, type LevelWithSilent, type Logger, pino } from 'pino';

export type { Logger };

/**
 * Field paths pino blanks out wherever they appear: a second line of defence behind `Secret`
 * (which already serialises as "[redacted]"). Log calls pass aliases, never keys.
 */
const REDACT = [
  'routing_key',
  '*.routing_key',
  'password',
  '*.password',
  'authorization',
  '*.authorization',
  'headers.authorization',
  'req.headers.authorization',
];

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
  return pino(
    {
      level: opts.level ?? 'info',
      base: { service: 'pd-relay' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      redact: { paths: REDACT, censor: '[redacted]' },
    },
    opts.destination ?? logDestination(),
  );
}
