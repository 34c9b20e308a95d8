/**
 * Time as delivery sees it, passed in so that tests can drive it. Two clocks because they answer
 * different questions: wall time is persisted (when an event arrived, when to retry it, surviving a
 * restart); monotonic time measures rate windows, which must not jump when NTP steps the wall clock.
 */
export interface Clock {
  /** Epoch milliseconds. */
  now(): number;
  /** Milliseconds from an arbitrary origin; only differences mean anything. */
  monotonic(): number;
}

/** The process clocks. */
export const systemClock: Clock = {
  now: () => Date.now(),
  monotonic: () => performance.now(),
};
