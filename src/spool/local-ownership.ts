import type { KeyOwnership, OwnershipHandlers } from './spool.js';

/**
 * Key ownership of a spool that one process holds alone (SQLite: its file lock makes it so): every
 * configured key is this process's from the start, and keys with pending events that are not
 * configured are orphans to move to configured ones.
 */
export class LocalOwnership implements KeyOwnership {
  readonly #pendingKeys: () => readonly string[];
  #keys = new Set<string>();
  #running = false;
  #handlers: OwnershipHandlers | undefined;

  /** `pendingKeys`: the keys the spool holds pending events for. */
  constructor(pendingKeys: () => readonly string[]) {
    this.#pendingKeys = pendingKeys;
  }

  start(keyFps: readonly string[], handlers: OwnershipHandlers): void {
    this.#keys = new Set(keyFps);
    this.#running = true;
    this.#handlers = handlers;
    // Orphans first: their events are moved before the queues are loaded, in spool order with the rest.
    const orphans = this.#pendingKeys().filter((fp) => !this.#keys.has(fp));
    if (orphans.length) handlers.orphaned(orphans);
    handlers.acquired([...this.#keys]);
  }

  setKeys(keyFps: readonly string[]): void {
    const next = new Set(keyFps);
    const added = keyFps.filter((fp) => !this.#keys.has(fp));
    const removed = [...this.#keys].filter((fp) => !next.has(fp));
    this.#keys = next;
    const handlers = this.#handlers;
    if (!handlers || !this.#running) return;
    if (added.length) handlers.acquired(added);
    if (removed.length) {
      // Stopped first, then their events moved: nothing leaves through a removed key meanwhile.
      void handlers.release(removed).then(() => {
        const pending = new Set(this.#pendingKeys());
        const orphans = removed.filter((fp) => pending.has(fp));
        if (orphans.length) handlers.orphaned(orphans);
      });
    }
  }

  async registered(): Promise<void> {}

  holds(keyFp: string): boolean {
    return this.#running && this.#keys.has(keyFp);
  }

  depthElsewhere(): number {
    return 0;
  }

  reportDepths(): void {}

  unownedWithPending(): number {
    return 0;
  }

  async stop(): Promise<void> {
    this.#running = false;
  }
}
