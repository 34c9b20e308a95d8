import type { OutboundEvent } from '../rules/types.js';
import type { KeyAssigner, Proposal } from '../spool/spool.js';
import type { KeyRing, RingKey } from './key-ring.js';
import { rendezvousPick } from './rendezvous.js';

/**
 * The fan-out policy. An event with a dedup key is proposed the rendezvous choice over the route's
 * pool (what its trigger got too unless the pool changed; the spool keeps an open alert on its
 * trigger's key, decideKey). An event without a dedup key cannot be followed by anything, so it
 * goes to the least-loaded key of the pool (ties in turn): under a backlog that keeps every key's
 * queue equally long, which is what keeps the whole pool busy.
 */
export class PoolKeyAssigner implements KeyAssigner {
  #ring: KeyRing;
  readonly #load: (fp: string) => number;
  /** Events assigned in the current transaction, not yet in the dispatcher's queues. */
  readonly #tally = new Map<string, number>();
  #turn = 0;

  /** `load`: a key's queue depth, wherever it is dispatched (this process or another replica). */
  constructor(ring: KeyRing, opts: { load?: (fp: string) => number } = {}) {
    this.#ring = ring;
    this.#load = opts.load ?? (() => 0);
  }

  /** The key pools changed (a reload): proposals follow the new ones. */
  setRing(ring: KeyRing): void {
    this.#ring = ring;
  }

  propose(event: Pick<OutboundEvent, 'route' | 'action' | 'dedupKey'>): Proposal {
    const keys = this.#ring.keysOf(event.route);
    if (keys.length === 0) {
      return {
        deadLetter: 'no_route',
        detail: this.#ring.hasRoute(event.route)
          ? `Route "${event.route}" has no keys`
          : `Expected a configured route, got "${event.route}"`,
      };
    }
    const pool = this.#ring.fpsOf(event.route);
    if (event.dedupKey !== null) return { pool, keyFp: pickForDedupKey(keys, event.dedupKey).fp };
    const chosen = this.#leastLoaded(keys);
    this.#tally.set(chosen.fp, (this.#tally.get(chosen.fp) ?? 0) + 1);
    return { pool, keyFp: chosen.fp };
  }

  endBatch(): void {
    this.#tally.clear();
  }

  #leastLoaded(keys: readonly RingKey[]): RingKey {
    const n = keys.length;
    const start = this.#turn++ % n;
    let best = keys[start] as RingKey;
    let bestLoad = Number.POSITIVE_INFINITY;
    for (let i = 0; i < n; i++) {
      const k = keys[(start + i) % n] as RingKey;
      const load = this.#load(k.fp) + (this.#tally.get(k.fp) ?? 0);
      if (load < bestLoad) {
        best = k;
        bestLoad = load;
      }
    }
    return best;
  }
}

/** The rendezvous choice for a dedup key over a pool (by key fingerprint, so aliases can be renamed). */
export function pickForDedupKey(keys: readonly RingKey[], dedupKey: string): RingKey {
  return rendezvousPick(keys, dedupKey, (k) => k.fp) as RingKey;
}
