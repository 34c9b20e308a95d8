import { createHash } from 'node:crypto';

/**
 * Rendezvous (highest random weight) hashing: every candidate scores the item, the highest score
 * wins. Adding a candidate moves only the items the newcomer now wins (about 1/n of them) and
 * removing one moves only its own items; nothing else is reshuffled. That is what keeps most dedup
 * keys on the same routing key across pool changes, so that the open-alert map is a safety net
 * rather than the only thing standing between a resolve and a silently dropped event.
 */
export function rendezvousScore(candidate: string, item: string): bigint {
  return createHash('sha256').update(candidate).update('\0').update(item).digest().readBigUInt64BE(0);
}

/** The candidate with the highest score for `item` (ties by id), or undefined when there is none. */
export function rendezvousPick<T>(
  candidates: readonly T[],
  item: string,
  id: (c: T) => string,
): T | undefined {
  let best: T | undefined;
  let bestScore = -1n;
  let bestId = '';
  for (const c of candidates) {
    const cid = id(c);
    const score = rendezvousScore(cid, item);
    if (score > bestScore || (score === bestScore && cid > bestId)) {
      best = c;
      bestScore = score;
      bestId = cid;
    }
  }
  return best;
}
