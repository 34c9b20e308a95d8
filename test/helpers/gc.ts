import { pathToFileURL } from 'node:url';
import type { RelayProcess } from './relay-process.js';

/**
 * NODE_OPTIONS for a relay child whose garbage collection a test or benchmark forces (SIGUSR2, see
 * gc-on-signal.mjs), to read what the relay retains rather than what the GC has not reclaimed yet.
 */
export const GC_ON_SIGNAL_NODE_OPTIONS = `--expose-gc --import=${pathToFileURL(new URL('./gc-on-signal.mjs', import.meta.url).pathname).href}`;

/** Runs a full collection in the relay child `times` times, leaving `settleMs` after each. */
export async function forceGc(relay: RelayProcess, times = 2, settleMs = 300): Promise<void> {
  for (let i = 0; i < times; i++) {
    relay.signal('SIGUSR2');
    await new Promise((r) => setTimeout(r, settleMs));
  }
}
