import { type ParseArgsConfig, parseArgs } from 'node:util';
import type { UserError } from '../errors.js';

/** Console output a command writes to: stdout/stderr in production, buffers in tests. */
export interface Io {
  out(line: string): void;
  err(line: string): void;
}

export const processIo: Io = {
  out: (line) => process.stdout.write(`${line}\n`),
  err: (line) => process.stderr.write(`${line}\n`),
};

/** A subcommand: parses its own arguments, returns the exit code. */
export interface Command {
  /** One line for `pd-relay --help`. */
  summary: string;
  /** Full usage text printed on a usage error. */
  usage: string;
  run(args: string[], io: Io): Promise<number>;
}

/** Wrong arguments: the CLI prints the message and the command's usage, and exits 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

/**
 * node:util parseArgs with strict checking, turning its errors into UsageErrors that read
 * "Unknown option --foo" rather than a Node error code.
 */
export function parseCommandArgs<T extends NonNullable<ParseArgsConfig['options']>>(
  args: string[],
  options: T,
  opts: { positionals?: boolean } = {},
) {
  try {
    return parseArgs({ args, options, strict: true, allowPositionals: opts.positionals ?? false });
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (typeof e.code === 'string' && e.code.startsWith('ERR_PARSE_ARGS')) {
      throw new UsageError(e.message.replace(/\. To specify a positional argument.*$/s, '.'));
    }
    throw err;
  }
}

/** The config file from --config, else $PD_RELAY_CONFIG, else none (zero config). */
export function configPath(
  flag: string | undefined,
  env: NodeJS.ProcessEnv = process.env,
): string | undefined {
  return flag ?? (env.PD_RELAY_CONFIG || undefined);
}

/** Prints a user error the standard way and returns exit code 1. */
export function reportUserError(err: UserError, io: Io): number {
  io.err(err.report());
  return 1;
}
