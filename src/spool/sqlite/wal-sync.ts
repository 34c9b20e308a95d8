import { closeSync, fdatasync, fdatasyncSync, openSync } from 'node:fs';

/**
 * Makes what SQLite has written to the spool's write-ahead log durable. With
 * `synchronous=NORMAL`, SQLite writes a committed transaction to the WAL without syncing it;
 * syncing the WAL before acknowledging is what `synchronous=FULL` would do inside COMMIT
 * (https://www.sqlite.org/pragma.html#pragma_synchronous), here done without blocking the event
 * loop.
 */
export interface WalSync {
  /**
   * Syncs on libuv's thread pool; `done` gets null once everything written to the WAL before the
   * call is on stable storage, or the error.
   */
  sync(done: (err: Error | null) => void): void;
  /** The same, blocking (shutdown, the CLI). */
  syncNow(): Error | null;
  close(): void;
}

/**
 * fdatasync(2) on the `-wal` file, through one descriptor opened at the first sync (the file
 * exists once a transaction was written, and SQLite keeps it while the database is open).
 */
export class WalFileSync implements WalSync {
  readonly #path: string;
  #fd: number | undefined;
  /** Syncs running on the pool: the descriptor is closed only once they are done with it. */
  #running = 0;
  #closing = false;

  constructor(path: string) {
    this.#path = path;
  }

  sync(done: (err: Error | null) => void): void {
    let fd: number;
    try {
      fd = this.#open();
    } catch (err) {
      queueMicrotask(() => done(err as Error));
      return;
    }
    this.#running++;
    fdatasync(fd, (err) => {
      this.#running--;
      if (this.#closing && this.#running === 0) this.#closeFd();
      done(err);
    });
  }

  syncNow(): Error | null {
    try {
      fdatasyncSync(this.#open());
      return null;
    } catch (err) {
      return err as Error;
    }
  }

  close(): void {
    this.#closing = true;
    if (this.#running === 0) this.#closeFd();
  }

  #open(): number {
    if (this.#closing) throw new Error('The spool is closed.');
    this.#fd ??= openSync(this.#path, 'r+');
    return this.#fd;
  }

  #closeFd(): void {
    if (this.#fd === undefined) return;
    closeSync(this.#fd);
    this.#fd = undefined;
  }
}
