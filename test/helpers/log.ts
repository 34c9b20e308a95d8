import { createLogger, type Logger } from '../../src/log/logger.js';

/** A real pino logger whose JSON lines are kept in memory for assertions. */
export function captureLogger(level: 'trace' | 'debug' | 'info' = 'debug'): {
  logger: Logger;
  lines: () => Array<Record<string, unknown>>;
  text: () => string;
} {
  const raw: string[] = [];
  const logger = createLogger({ level, destination: { write: (s: string) => void raw.push(s) } });
  return {
    logger,
    lines: () => raw.map((l) => JSON.parse(l) as Record<string, unknown>),
    text: () => raw.join(''),
  };
}
