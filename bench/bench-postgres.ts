// The benchmarks' private PostgreSQL server (test/helpers/postgres.ts, fsync on): a database of its
// own for each measurement, and what the server spent between two readings — CPU time of the whole
// cluster (the postmaster, its backends and background workers, exited backends included) from
// /proc, WAL written and synced from the server's own counters. Linux only (/proc); elsewhere the
// CPU reads as NaN.
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import type { TestPostgres } from '../test/helpers/postgres.js';

/** A new empty database on `server` (as SQLite gets a new directory) and its drop(). */
export async function benchDatabase(
  server: TestPostgres,
  prefix: string,
): Promise<{ url: string; name: string; drop(): Promise<void> }> {
  const url = await server.createDatabase(prefix);
  const name = new URL(url).pathname.slice(1);
  return {
    url,
    name,
    async drop() {
      // WITH (FORCE): a relay killed with -9 may leave a backend behind for a moment.
      await withClient(server.url, (client) =>
        client.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(name)} WITH (FORCE)`),
      );
    },
  };
}

async function withClient<T>(url: string, use: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  // A server that drops the connection reports it as an event: the query rejects anyway.
  client.on('error', () => {});
  await client.connect();
  try {
    return await use(client);
  } finally {
    await client.end();
  }
}

/** The server's version and the settings that make a commit durable, as they are. */
export function describePostgres(server: TestPostgres): Promise<string> {
  return withClient(server.url, async (client) => {
    const show = async (name: string) =>
      ((await client.query(`SHOW ${name}`)).rows[0] as Record<string, string>)[name];
    return `PostgreSQL ${await show('server_version')} (fsync ${await show('fsync')}, synchronous_commit ${await show('synchronous_commit')}, wal_sync_method ${await show('wal_sync_method')}, shared_buffers ${await show('shared_buffers')})`;
  });
}

export interface PostgresReading {
  /** CPU time of every process of the cluster so far, ms (NaN without /proc). */
  cpuMs: number;
  /** WAL position, bytes from the start. */
  walBytes: number;
  /** WAL fsyncs so far (pg_stat_wal.wal_sync; the counters reach the view within ~1 s). */
  walSyncs: number;
  /** Transactions committed in `database` so far (pg_stat_database.xact_commit, same delay). */
  commits: number;
}

let ticksPerSecond: number | undefined;

/** CPU time (user + system) of the postmaster of `dataDir`, its live children and its reaped ones, ms. */
export function clusterCpuMs(dataDir: string): number {
  try {
    ticksPerSecond ??= Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    const postmaster = Number(readFileSync(join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
    let ticks = 0;
    for (const name of readdirSync('/proc')) {
      if (!/^\d+$/.test(name)) continue;
      const fields = statFields(name);
      if (!fields) continue;
      const pid = Number(name);
      const ppid = Number(fields[1]);
      if (pid === postmaster) {
        // utime, stime, and cutime, cstime: the backends that ended and were waited for.
        ticks += Number(fields[11]) + Number(fields[12]) + Number(fields[13]) + Number(fields[14]);
      } else if (ppid === postmaster) {
        ticks += Number(fields[11]) + Number(fields[12]);
      }
    }
    return (ticks * 1000) / ticksPerSecond;
  } catch {
    return Number.NaN;
  }
}

/** Fields of /proc/<pid>/stat from the third (state) on; undefined when the process is gone. */
function statFields(pid: string): string[] | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
}

/** Reads the cluster's counters: `url` is any database of the server, `database` the relay's. */
export function readPostgres(url: string, dataDir: string, database: string): Promise<PostgresReading> {
  return withClient(url, async (client) => {
    const { rows } = await client.query<{ lsn: string; syncs: string; commits: string | null }>(
      `SELECT pg_current_wal_lsn()::text AS lsn, (SELECT wal_sync FROM pg_stat_wal)::text AS syncs,
              (SELECT xact_commit FROM pg_stat_database WHERE datname = $1)::text AS commits`,
      [database],
    );
    const row = rows[0] as { lsn: string; syncs: string; commits: string | null };
    const [hi = '0', lo = '0'] = row.lsn.split('/');
    return {
      cpuMs: clusterCpuMs(dataDir),
      walBytes: Number.parseInt(hi, 16) * 2 ** 32 + Number.parseInt(lo, 16),
      walSyncs: Number(row.syncs),
      commits: Number(row.commits ?? 0),
    };
  });
}

/** `after` − `before`, field by field. */
export function postgresDelta(before: PostgresReading, after: PostgresReading): PostgresReading {
  return {
    cpuMs: after.cpuMs - before.cpuMs,
    walBytes: after.walBytes - before.walBytes,
    walSyncs: after.walSyncs - before.walSyncs,
    commits: after.commits - before.commits,
  };
}
