/**
 * The two error families of pd-relay (see STYLE.md): user errors — bad config, bad rules, bad
 * arguments — carry locations and a hint and end the CLI with exit 1; anything else is a bug and
 * keeps its stack.
 */

/** A place in a user's file. `line` and `col` are 1-based. */
export interface SourceLocation {
  file: string;
  line: number;
  col: number;
}

/** One problem found in a user file: `file:line:col path: message`. */
export interface Problem {
  location: SourceLocation;
  /** Dotted path inside the document (`routes.default.keys[0]`), or '' for the document itself. */
  path: string;
  message: string;
}

/**
 * Formats a problem the way every pd-relay tool prints it: `file:line:col path: message`, on one
 * line. Messages quote the user's text (a key, a topic, a template), which may hold a line break
 * or another control character: those are shown escaped, so that a problem never spans lines.
 */
export function formatProblem(p: Problem): string {
  const where = `${p.location.file}:${p.location.line}:${p.location.col}`;
  const message = oneLine(p.message);
  return p.path ? `${where} ${oneLine(p.path)}: ${message}` : `${where} ${message}`;
}

function oneLine(s: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what it escapes.
  return s.replace(/[\u0000-\u0008\u000a-\u001f\u007f\u2028\u2029]/g, (c) => {
    const named: Record<string, string> = { '\n': '\\n', '\r': '\\r' };
    return named[c] ?? `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`;
  });
}

/** Renders a path array (`['routes', 'default', 'keys', 0]`) as `routes.default.keys[0]`. */
export function formatPath(path: ReadonlyArray<string | number>): string {
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else if (/^[A-Za-z_$][\w$-]*$/.test(seg)) out += out ? `.${seg}` : seg;
    else out += `[${JSON.stringify(seg)}]`;
  }
  return out;
}

/**
 * An error the user can fix: every problem is listed, nothing is a stack trace. The CLI prints
 * `message`, then each problem on its own line, and exits 1.
 */
export class UserError extends Error {
  override readonly name = 'UserError';
  constructor(
    message: string,
    readonly problems: readonly Problem[] = [],
  ) {
    super(message);
  }

  /** The whole report, one problem per line. */
  report(): string {
    return [this.message, ...this.problems.map(formatProblem)].join('\n');
  }
}

/** Describes a JavaScript value in an "Expected X, got Y" message without echoing long input. */
export function describeValue(value: unknown): string {
  if (value === null) return 'null';
  if (value === undefined) return 'nothing';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  if (typeof value === 'string') {
    const shown = value.length > 40 ? `${value.slice(0, 37)}...` : value;
    return `the string ${JSON.stringify(shown)}`;
  }
  return `${typeof value} ${String(value)}`;
}
