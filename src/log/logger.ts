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

/** Log lines are written once this many bytes are buffered (a dozen request lines)… */
export const LOG_BUFFER_BYTES = 4096;
/** …or this often, whichever comes first, so that a quiet relay's lines are never late by more. */
export const LOG_FLUSH_MS = 100;

/**
 * Where the relay's JSON lines go: asynchronous and buffered. One write(2) per ~4 KB instead of
 * one per line: each write is a hand-off to libuv's pool, measured at ~7% of the event loop's time
 * per SNS request when every request line was written on its own (bench/README.md, ingest). Lines
 * still buffered at exit are written by pino's exit handler.
 */
export function logDestination(dest: number | string = 1): DestinationStream {
  return pino.destination({ dest, sync: false, minLength: LOG_BUFFER_BYTES, periodicFlush: LOG_FLUSH_MS });
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
