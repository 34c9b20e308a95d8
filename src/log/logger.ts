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
    opts.destination ?? pino.destination({ dest: 1, sync: false }),
  );
}
