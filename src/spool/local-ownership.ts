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

  /** `pendingKeys`: the keys the spool holds pending events for. */
  constructor(pendingKeys: () => readonly string[]) {
    this.#pendingKeys = pendingKeys;
  }

  start(keyFps: readonly string[], handlers: OwnershipHandlers): void {
    this.#keys = new Set(keyFps);
    this.#running = true;
    // Orphans first: their events are moved before the queues are loaded, in spool order with the rest.
    const orphans = this.#pendingKeys().filter((fp) => !this.#keys.has(fp));
    if (orphans.length) handlers.orphaned(orphans);
    handlers.acquired([...this.#keys]);
  }

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
