import type { PostgresSslMode } from './schema.js';
import { POSTGRES_SSL_MODES } from './schema.js';

/** A PostgreSQL URL taken apart: what the client connects with, and what messages may show. */
export interface ParsedPostgresUrl {
  host: string;
  port: number;
  database: string;
  user: string;
  password: string;
  /** libpq's `sslmode` and `sslrootcert` URL parameters, when the URL has them. */
  sslmode?: PostgresSslMode;
  sslrootcert?: string;
  applicationName?: string;
  /** `postgres://user@host:port/database`: never the password. */
  display: string;
}

/**
 * URL parameters pd-relay understands. Others (`options`, `sslcert`, `target_session_attrs`, …)
 * are refused rather than ignored: the client would apply some of them over pd-relay's own
 * session settings (search_path, timeouts), and silently ignoring one changes what the operator
 * asked for.
 */
const KNOWN_PARAMS = new Set(['sslmode', 'sslrootcert', 'application_name']);

/**
 * Parses `postgres://user:password@host:port/database?sslmode=…` (also `postgresql://`). Returns
 * a problem in a sentence that never repeats the URL, which holds a password.
 */
export function parsePostgresUrl(text: string): { ok: ParsedPostgresUrl } | { problem: string } {
  let url: URL;
  try {
    url = new URL(text.trim());
  } catch {
    return {
      problem: 'Expected a URL such as postgres://user:password@host:5432/database (value not shown)',
    };
  }
  if (url.protocol !== 'postgres:' && url.protocol !== 'postgresql:')
    return { problem: `Expected a postgres:// or postgresql:// URL, got a ${url.protocol}// URL` };
  if (!url.hostname)
    return { problem: 'Expected a host in the URL (postgres://user:password@host:5432/database)' };
  const port = url.port ? Number(url.port) : 5432;
  const database = decodeURIComponent(url.pathname.replace(/^\//, ''));
  if (!database || database.includes('/'))
    return { problem: 'Expected a database name in the URL path (postgres://…@host:5432/database)' };
  const user = decodeURIComponent(url.username);
  if (!user) return { problem: 'Expected a user name in the URL (postgres://user:password@host/…)' };
  const parsed: ParsedPostgresUrl = {
    host: url.hostname.replace(/^\[(.*)\]$/, '$1'),
    port,
    database,
    user,
    password: decodeURIComponent(url.password),
    display: `postgres://${user}@${url.host}/${database}`,
  };
  for (const [name, value] of url.searchParams) {
    if (!KNOWN_PARAMS.has(name))
      return {
        problem: `Unsupported URL parameter "${name}": use the spool.postgres keys (sslmode, caFile, statementTimeoutMs, …) instead`,
      };
    if (name === 'sslmode') {
      if (!(POSTGRES_SSL_MODES as readonly string[]).includes(value))
        return {
          problem: `Expected sslmode in the URL to be one of ${POSTGRES_SSL_MODES.join(', ')}, got "${value}"`,
        };
      parsed.sslmode = value as PostgresSslMode;
    } else if (name === 'sslrootcert') {
      parsed.sslrootcert = value;
    } else {
      parsed.applicationName = value;
    }
  }
  return { ok: parsed };
}
