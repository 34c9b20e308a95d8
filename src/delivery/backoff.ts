/**
 * Capped exponential backoff with full jitter: the delay before retry number `attempt` (1 for the
 * first retry) is uniform between `minMs` and min(`maxMs`, `minMs` × 2^attempt). Jitter spreads the
 * retries of many events that failed together (a PagerDuty outage) instead of synchronising them.
 */
export function backoffDelay(attempt: number, minMs: number, maxMs: number, random: () => number): number {
  const ceiling = Math.min(maxMs, minMs * 2 ** Math.min(Math.max(attempt, 1), 40));
  return Math.round(minMs + random() * (ceiling - minMs));
}
