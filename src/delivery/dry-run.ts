import type { DeliveryMetrics } from '../metrics/delivery.js';
import { eventProblems } from '../pagerduty/client.js';
import { fitEvent } from '../pagerduty/limits.js';
import type { EventAction, EventBody } from '../pagerduty/types.js';
import type { Spool } from '../spool/spool.js';
import type { EventSink, SpoolEntry } from '../spool/types.js';

/** One event as dry-run shows it at GET /-/events. */
export interface RecordedEvent {
  /** ISO 8601 time it was accepted. */
  at: string;
  route: string;
  /** Key alias; null in dry-run, where there are no keys. */
  key: string | null;
  action: EventAction;
  /** The body as it would be sent (limits applied), without routing_key. */
  event: EventBody;
  /** Why PagerDuty would refuse it, when it would. */
  problems?: string[];
}

/** A bounded ring buffer of the latest events, oldest first, newest last. */
export class DryRunRecorder {
  readonly #capacity: number;
  readonly #items: RecordedEvent[] = [];
  #start = 0;

  constructor(capacity = 500) {
    this.#capacity = Math.max(1, capacity);
  }

  record(event: RecordedEvent): void {
    if (this.#items.length < this.#capacity) {
      this.#items.push(event);
      return;
    }
    this.#items[this.#start] = event;
    this.#start = (this.#start + 1) % this.#capacity;
  }

  list(): RecordedEvent[] {
    return [...this.#items.slice(this.#start), ...this.#items.slice(0, this.#start)];
  }
}

/**
 * The sink of a relay without routing keys: the MessageId still goes into the spool's ledger (so
 * redeliveries stay duplicates across restarts), each event goes through PagerDuty's limits and is
 * logged and recorded, and nothing is queued or sent.
 */
export function createDryRunSink(
  spool: Spool,
  recorder: DryRunRecorder,
  metrics: DeliveryMetrics,
  now: () => number = Date.now,
): EventSink {
  return {
    async commit(entry: SpoolEntry) {
      const result = await spool.commit({ ...entry, events: [] });
      if (result.status === 'duplicate') return 'duplicate';
      const at = new Date(now()).toISOString();
      for (const ev of entry.events) {
        const fitted = fitEvent(ev.body);
        metrics.truncated(fitted.truncations, { route: ev.route, rule: ev.rule, action: ev.action });
        const problems = eventProblems(ev.action, fitted.body);
        recorder.record({
          at,
          route: ev.route,
          key: null,
          action: ev.action,
          event: fitted.body,
          ...(problems.length ? { problems } : {}),
        });
        metrics.dryRun({ route: ev.route, key: null, action: ev.action, dedupKey: ev.dedupKey });
      }
      return 'committed';
    },
  };
}
