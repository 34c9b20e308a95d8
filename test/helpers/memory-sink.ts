import { type EventSink, type SpoolEntry, SpoolUnavailableError } from '../../src/spool/types.js';

/**
 * An in-memory EventSink for tests and benchmarks (the real one is the SQLite spool). It keeps
 * every committed entry, answers 'duplicate' for a MessageId it already holds, can be made
 * unavailable (SpoolUnavailableError, as the spool throws when it cannot persist), and can hold
 * commits open to let tests overlap requests.
 */
export class MemorySink implements EventSink {
  readonly entries: SpoolEntry[] = [];
  /** Number of commit() calls, duplicates included. */
  commits = 0;
  /** When set, commit() throws SpoolUnavailableError. */
  unavailable = false;
  readonly #ids = new Set<string>();
  readonly #keepEntries: boolean;
  #gate: Promise<void> | undefined;

  /** `keepEntries: false` remembers ids only (benchmarks: no memory growth from stored events). */
  constructor(opts: { keepEntries?: boolean } = {}) {
    this.#keepEntries = opts.keepEntries ?? true;
  }

  async commit(entry: SpoolEntry): Promise<'committed' | 'duplicate'> {
    this.commits++;
    if (this.#gate) await this.#gate;
    if (this.unavailable) throw new SpoolUnavailableError('The test sink is unavailable');
    if (this.#ids.has(entry.messageId)) return 'duplicate';
    this.#ids.add(entry.messageId);
    if (this.#keepEntries) this.entries.push(entry);
    return 'committed';
  }

  /** Pretends `messageId` was accepted before (e.g. before a restart). */
  remember(messageId: string): void {
    this.#ids.add(messageId);
  }

  /** Holds every commit until the returned function is called. */
  hold(): () => void {
    let release!: () => void;
    this.#gate = new Promise<void>((resolve) => (release = resolve));
    return () => {
      this.#gate = undefined;
      release();
    };
  }
}
