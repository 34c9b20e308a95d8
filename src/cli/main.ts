import { UserError } from '../errors.js';
import { VERSION } from '../version.js';
import { checkCommand } from './check.js';
import { type Command, type Io, processIo, reportUserError, UsageError } from './command.js';
import { rulesCommand } from './rules.js';
import { serveCommand } from './serve.js';
import { spoolCommand } from './spool.js';

/** Every subcommand; each lives in its own file under src/cli/. */
const COMMANDS: Record<string, Command> = {
  serve: serveCommand,
  rules: rulesCommand,
  spool: spoolCommand,
  check: checkCommand,
};

function mainUsage(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((n) => n.length));
  return [
    'Usage: pd-relay <command> [options]',
    '',
    'Commands:',
    ...Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`),
    '',
    'Options:',
    '  --version  Print the version and exit',
    '  --help     Print this help and exit',
    '',
    "Run `pd-relay <command> --help` for a command's options.",
  ].join('\n');
}

/** Runs the CLI and returns the process exit code: 0 ok, 1 user error or failure, 2 usage error. */
export async function run(argv: string[], io: Io = processIo): Promise<number> {
  const [name, ...rest] = argv;
  if (name === '--version' || name === '-v') {
    io.out(VERSION);
    return 0;
  }
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    (name === undefined ? io.err : io.out)(mainUsage());
    return name === undefined ? 2 : 0;
  }
  const command = COMMANDS[name];
  if (!command) {
    io.err(`Unknown command "${name}".\n\n${mainUsage()}`);
    return 2;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    io.out(command.usage);
    return 0;
  }
  try {
    return await command.run(rest, io);
  } catch (err) {
    if (err instanceof UsageError) {
      io.err(`${err.message}\n\n${command.usage}`);
      return 2;
    }
    if (err instanceof UserError) return reportUserError(err, io);
    throw err;
  }
}
