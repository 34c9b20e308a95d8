import { readFileSync } from 'node:fs';
import type { ConnectionOptions } from 'node:tls';
import type { ClientConfig } from 'pg';
import type { PostgresConfig } from '../../config/load.js';

/** Where the spool lives, for messages: `postgres://user@host:port/database (schema pdrelay)`, never the password. */
export function spoolLocation(pg: PostgresConfig): string {
  return `${pg.display} (schema ${pg.schema})`;
}

/** What every connection of the spool is opened with: the pool's, the lease connection's, the CLI's. */
export function clientConfig(pg: PostgresConfig, applicationName: string): ClientConfig {
  return {
    host: pg.host,
    port: pg.port,
    database: pg.database,
    user: pg.user,
    password: pg.password.reveal(),
    ssl: sslOptions(pg),
    application_name: pg.applicationName ?? applicationName,
    connectionTimeoutMillis: pg.connectTimeoutMs,
    // The server cancels a statement that runs too long; the client stops waiting for an answer
    // a little later, which is how a database that went away without closing the connection (a
    // failover, a network partition) is noticed.
    statement_timeout: pg.statementTimeoutMs,
    query_timeout: pg.statementTimeoutMs + 1000,
    keepAlive: true,
    keepAliveInitialDelayMillis: 10_000,
    // Session settings in the startup packet, so that no statement runs before them:
    // - search_path: pd-relay's tables live in their own schema;
    // - synchronous_commit: a 200 to SNS means the events are on the server's disk (and on a
    //   synchronous standby where there is one), whatever the database's default says;
    // - idle_in_transaction_session_timeout: a replica that dies inside a transaction does not
    //   hold its locks until TCP notices.
    options: `-c search_path=${pg.schema} -c synchronous_commit=on -c idle_in_transaction_session_timeout=${Math.max(pg.statementTimeoutMs * 2, 10_000)}`,
  };
}

/**
 * libpq's sslmode in Node's TLS terms. `require` encrypts without checking the certificate (what
 * libpq does too without a root certificate); `verify-ca` checks the chain but not the host name;
 * `verify-full` checks both.
 */
function sslOptions(pg: PostgresConfig): false | ConnectionOptions {
  if (pg.sslmode === 'disable') return false;
  if (pg.sslmode === 'require') return { rejectUnauthorized: false };
  const ca = pg.caFile ? readFileSync(pg.caFile, 'utf8') : undefined;
  return {
    rejectUnauthorized: true,
    ...(ca ? { ca } : {}),
    ...(pg.sslmode === 'verify-ca' ? { checkServerIdentity: () => undefined } : { servername: pg.host }),
  };
}

/**
 * Whether an error means the database could not be reached or the connection broke (the
 * statement's fate is unknown), rather than an error about the statement itself.
 */
export function isConnectionError(err: unknown): boolean {
  const e = err as { code?: string; message?: string } | null;
  if (!e) return false;
  const code = e.code ?? '';
  // SQLSTATE class 08 (connection exception), 57P0x (admin/crash shutdown, cannot connect now),
  // 53300 (too many connections); Node's socket errors.
  if (/^08/.test(code) || /^57P0[1-4]$/.test(code) || code === '53300') return true;
  if (/^E[A-Z]+$/.test(code)) return true;
  const message = e.message ?? '';
  return /Connection terminated|timeout exceeded when trying to connect|Query read timeout|Client has encountered a connection error|Connection refused|connect ECONNREFUSED|not queryable/i.test(
    message,
  );
}

/** A database error in a sentence: SQLSTATE or errno code first, never the connection string. */
export function describePgError(err: unknown): string {
  const e = err as { code?: string; message?: string } | null;
  const message = e?.message ?? String(err);
  return e?.code && !message.includes(e.code) ? `${e.code}: ${message}` : message;
}

/**
 * Why a connection failed, with what usually fixes it: `pd-relay serve` refusing to start and
 * `pd-relay check` say the same. Never the URL (it holds the password).
 */
export function connectHint(err: unknown, config: PostgresConfig): string {
  const text = describePgError(err);
  if (/does not support SSL/i.test(text))
    return `${text} (set spool.postgres.sslmode: disable for a server without TLS)`;
  if (/self.signed|unable to verify|certificate/i.test(text) && config.sslmode !== 'require')
    return `${text} (check spool.postgres.caFile: for RDS, Amazon's global-bundle.pem)`;
  if (/no pg_hba.conf entry.*no encryption/i.test(text))
    return `${text} (the server requires TLS: set spool.postgres.sslmode: require or verify-full)`;
  if (/password authentication failed/i.test(text)) return `${text} (check the user and password in the URL)`;
  if (/ECONNREFUSED/.test(text))
    return `${text} (nothing listens there: check the host and port in the URL, and that the server runs)`;
  if (/ENOTFOUND|EAI_AGAIN/.test(text)) return `${text} (the host name does not resolve: check the URL)`;
  if (/timeout/i.test(text))
    return `${text} (no answer within spool.postgres.connectTimeoutMs: check the host in the URL, and the firewall, security group or NetworkPolicy on the way)`;
  if (/^3D000|database ".*" does not exist/.test(text))
    return `${text} (create it, or fix the database name in the URL)`;
  return text;
}
