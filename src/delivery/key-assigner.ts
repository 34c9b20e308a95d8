import type { OutboundEvent } from '../rules/types.js';
import type { KeyRing, RingKey } from './key-ring.js';
import { rendezvousPick } from './rendezvous.js';
import type { Assignment, KeyAssigner, OpenAlertMap } from './spool.js';

/**
 * The fan-out policy. An event with a dedup key goes through the key its open alert's trigger used
 * (while that key is configured), else through the rendezvous choice over the route's pool, which
 * is what the trigger got too unless the pool changed. An event without a dedup key cannot be
 * followed by anything, so it goes to the least-loaded key of the pool (ties in turn): under a
 * backlog that keeps every key's queue equally long, which is what keeps the whole pool busy.
 */
export class PoolKeyAssigner implements KeyAssigner {
  readonly #ring: KeyRing;
  readonly #load: (fp: string) => number;
  /** Events assigned in the current transaction, not yet in the dispatcher's queues. */
  readonly #tally = new Map<string, number>();
  #turn = 0;

  constructor(ring: KeyRing, opts: { load?: (fp: string) => number } = {}) {
    this.#ring = ring;
    this.#load = opts.load ?? (() => 0);
  }

  assign(event: Pick<OutboundEvent, 'route' | 'action' | 'dedupKey'>, alerts: OpenAlertMap): Assignment {
    const keys = this.#ring.keysOf(event.route);
    if (keys.length === 0) {
      return {
        deadLetter: 'no_route',
        detail: this.#ring.hasRoute(event.route)
          ? `Route "${event.route}" has no keys`
          : `Expected a configured route, got "${event.route}"`,
      };
    }
    if (event.dedupKey !== null) {
      const open = alerts.get(event.route, event.dedupKey);
      if (open && keys.some((k) => k.fp === open.keyFp)) return { keyFp: open.keyFp };
      const chosen = pickForDedupKey(keys, event.dedupKey);
      return open && event.action !== 'trigger' ? { keyFp: chosen.fp, orphaned: true } : { keyFp: chosen.fp };
    }
    const chosen = this.#leastLoaded(keys);
    this.#tally.set(chosen.fp, (this.#tally.get(chosen.fp) ?? 0) + 1);
    return { keyFp: chosen.fp };
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
