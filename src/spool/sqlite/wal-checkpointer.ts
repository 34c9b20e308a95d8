import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';

/** How often the checkpointer copies the WAL into the database file. */
const DEFAULT_INTERVAL_MS = 100;
/** How long close() waits for a checkpoint in progress to finish and the connection to close. */
const CLOSE_WAIT_MS = 5_000;

/**
 * The worker's code, plain CommonJS (workers do not inherit a TypeScript loader). It opens its own
 * connection and checkpoints PASSIVE-ly: never waiting for, nor blocking, the relay's writes.
 * State word: 0 running, 1 closed (or failed to open: close() must not wait for it).
 */
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const state = new Int32Array(workerData.state);
const done = () => { Atomics.store(state, 0, 1); Atomics.notify(state, 0); };
let db;
try {
  const Database = require(workerData.driver);
  db = new Database(workerData.file, { fileMustExist: true, timeout: 0 });
} catch (err) {
  done();
  throw err;
}
const timer = setInterval(() => {
  try { db.pragma('wal_checkpoint(PASSIVE)'); } catch {}
}, workerData.intervalMs);
parentPort.on('message', (msg) => {
  if (msg !== 'close') return;
  clearInterval(timer);
  try { db.close(); } finally { done(); parentPort.close(); }
});
`;

/**
 * Checkpoints the spool's WAL on a thread of its own. SQLite's automatic checkpoint runs inside
 * the COMMIT that crosses `wal_autocheckpoint` pages: on the event loop, writing every page the
 * WAL holds to the database file and syncing both files (measured in the ingest benchmark: the
 * commits at the p99 of commit time, 10–35 ms stalls of every request in flight). Here that work
 * happens beside the loop. The relay's connection keeps a higher automatic threshold as a backstop
 * (SpoolOptions): if this thread falls behind, or cannot run, SQLite still bounds the WAL.
 */
export class WalCheckpointer {
  readonly #worker: Worker;
  readonly #state: Int32Array;
  #closed = false;

  constructor(file: string, opts: { intervalMs?: number; onError?: (err: Error) => void } = {}) {
    const shared = new SharedArrayBuffer(4);
    this.#state = new Int32Array(shared);
    this.#worker = new Worker(WORKER_SOURCE, {
      eval: true,
      workerData: {
        driver: createRequire(import.meta.url).resolve('better-sqlite3'),
        file,
        intervalMs: opts.intervalMs ?? DEFAULT_INTERVAL_MS,
        state: shared,
      },
    });
    // Never what keeps the process alive; an error only costs the backstop's checkpoints.
    this.#worker.unref();
    this.#worker.on('error', (err) => opts.onError?.(err));
  }

  /**
   * Stops checkpointing and closes the thread's connection before returning, so that the spool's
   * own close() is the last connection and leaves a checkpointed database without a WAL.
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#worker.postMessage('close');
    Atomics.wait(this.#state, 0, 0, CLOSE_WAIT_MS);
    void this.#worker.terminate();
  }
}
