import type { OutboundEvent } from '../rules/types.js';

/** Everything one accepted SNS message produced: committed atomically with its MessageId. */
export interface SpoolEntry {
  messageId: string;
  topic: string;
  endpoint: string;
  /** Epoch milliseconds when ingress accepted it. */
  receivedAt: number;
  events: OutboundEvent[];
}

/** The spool could not durably commit: ingress answers 503 so that SNS retries. */
export class SpoolUnavailableError extends Error {
  override readonly name = 'SpoolUnavailableError';
}

/**
 * Where ingress hands accepted messages ("events → spool"). commit() resolves only once the entry
 * is durable; concurrent commits may share one transaction (group commit).
 */
export interface EventSink {
  /**
   * Durably records the message id and its events. Resolves 'duplicate' (and stores nothing) when
   * the message id was accepted before; rejects with SpoolUnavailableError when it cannot persist.
   */
  commit(entry: SpoolEntry): Promise<'committed' | 'duplicate'>;
}
