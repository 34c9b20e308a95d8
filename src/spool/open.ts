import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Config } from '../config/load.js';
import { UserError } from '../errors.js';
import { PgSpoolOpenError, PostgresSpool } from './postgres/spool.js';
import type { KeyAssigner, Spool, SpoolObserver } from './spool.js';
import { SPOOL_FILE, SpoolOpenError, SqliteSpool } from './sqlite/spool.js';

/** What the relay's spool is built with, besides the configuration. */
export interface ServingSpoolDeps {
  assigner: KeyAssigner;
  observer: SpoolObserver;
  now: () => number;
  /** How often a failing spool is probed (readiness recovers by itself). */
  probeIntervalMs?: number;
  /** How often the SQLite spool looks for events another process queued. */
  adoptIntervalMs?: number;
}

/**
 * The spool `pd-relay serve` runs on: the SQLite file in `spool.dir` (holding its lock), or the
 * PostgreSQL database of `spool.postgres`. Throws a UserError saying what to fix when it cannot be
 * opened.
 */
export async function openServingSpool(config: Config, deps: ServingSpoolDeps): Promise<Spool> {
  const pg = config.spool.postgres;
  if (pg) {
    try {
      return await PostgresSpool.open({
        config: pg,
        mode: 'serve',
        assigner: deps.assigner,
        observer: deps.observer,
        now: deps.now,
        ...(deps.probeIntervalMs ? { probeIntervalMs: deps.probeIntervalMs } : {}),
      });
    } catch (err) {
      if (err instanceof PgSpoolOpenError) throw new UserError(`${err.message}. Check spool.postgres.`);
      throw err;
    }
  }
  try {
    return new SqliteSpool({
      dir: config.spool.dir,
      assigner: deps.assigner,
      now: deps.now,
      maxSizeMiB: config.spool.maxSizeMiB,
      backgroundCheckpoint: true,
      lock: true,
      adoptIntervalMs: deps.adoptIntervalMs ?? 1000,
      observer: deps.observer,
      ...(deps.probeIntervalMs ? { probeIntervalMs: deps.probeIntervalMs } : {}),
    });
  } catch (err) {
    if (err instanceof SpoolOpenError)
      throw new UserError(err.locked ? `${err.message}.` : `${err.message}. Check spool.dir.`);
    throw err;
  }
}

/**
 * The spool as the `spool` and `check` commands use it, beside a running relay: never created
 * here, never migrated by a reader. `write`: retry or discard dead letters.
 */
export async function openAdminSpool(config: Config, opts: { write: boolean }): Promise<Spool> {
  if (config.spool.postgres) {
    try {
      return await PostgresSpool.open({ config: config.spool.postgres, mode: 'admin' });
    } catch (err) {
      if (err instanceof PgSpoolOpenError) throw new UserError(err.message);
      throw err;
    }
  }
  const file = join(config.spool.dir, SPOOL_FILE);
  if (!existsSync(file)) {
    throw new UserError(`No spool at ${file}: the relay has not run with this spool.dir yet.`);
  }
  try {
    // Read-only first: a spool of another schema version is refused before anything writes to it.
    const reader = new SqliteSpool({ dir: config.spool.dir, readonly: true });
    if (!opts.write) return reader;
    reader.closeNow();
    return new SqliteSpool({ dir: config.spool.dir, busyTimeoutMs: 5000 });
  } catch (err) {
    if (err instanceof SpoolOpenError) throw new UserError(err.message);
    throw err;
  }
}
