import { join } from 'node:path';
import BetterSqlite3, { type Database } from 'better-sqlite3';

/** The file in `spool.dir` whose lock the relay serving that spool holds. */
export const LOCK_FILE = 'spool.lock';

/** Another process holds the lock: the message says which directory and what to do. */
export class SpoolLockedError extends Error {
  override readonly name = 'SpoolLockedError';
}

/**
 * An exclusive lock on `<dir>/spool.lock`, held for as long as the relay runs: a second
 * `pd-relay serve` on the same spool.dir would send every event twice and double each key's rate.
 * It is an SQLite lock in exclusive locking mode, that is the kernel's file lock (fcntl), so a
 * process that dies, even by kill -9, releases it at once. The `spool` CLI commands do not take
 * it: they are meant to run beside the relay. Like SQLite's own locking, it needs a local or block
 * file system (not NFS), which the spool needs anyway.
 */
export class SpoolLock {
  readonly #db: Database;

  /** Throws SpoolLockedError when another process (or another SpoolLock here) holds the lock. */
  constructor(dir: string) {
    const path = join(dir, LOCK_FILE);
    const db = new BetterSqlite3(path, { timeout: 0 });
    try {
      db.pragma('locking_mode = EXCLUSIVE');
      // A write inside: in exclusive locking mode the lock it takes is kept until close().
      db.exec('BEGIN EXCLUSIVE; PRAGMA user_version = 1; COMMIT');
    } catch (err) {
      db.close();
      if ((err as { code?: string }).code === 'SQLITE_BUSY') {
        throw new SpoolLockedError(
          `Another pd-relay process is serving the spool in ${dir} (it holds ${path}): stop it first, or give this one its own spool.dir`,
        );
      }
      throw err;
    }
    this.#db = db;
  }

  release(): void {
    if (this.#db.open) this.#db.close();
  }
}
