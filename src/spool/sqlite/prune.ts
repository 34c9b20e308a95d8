/**
 * Rows one pruning statement deletes at most (`DELETE … LIMIT PRUNE_SLICE`): one huge delete would
 * hold the write lock, and the event loop, for long.
 */
export const PRUNE_SLICE = 5000;

/** Runs `deleteSlice` until it deletes fewer than PRUNE_SLICE rows; returns how many in all. */
export function pruneInSlices(deleteSlice: () => number): number {
  let total = 0;
  for (;;) {
    const n = deleteSlice();
    total += n;
    if (n < PRUNE_SLICE) return total;
  }
}
