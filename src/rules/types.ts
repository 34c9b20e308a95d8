import type { InputDocument } from '../decode/types.js';
import type { EventAction, EventBody, RuleAction } from '../pagerduty/types.js';

/**
 * One event a rule produced for one route: what the spool stores and delivery sends. This is the
 * contract between the rules stage and the spool ("events → spool").
 */
export interface OutboundEvent {
  /** Route name from the config (`routes.<name>`). */
  route: string;
  /** The rule that produced it (for logs and metrics). */
  rule: string;
  action: EventAction;
  /** The dedup key after limits (≤ 255 characters), or null (PagerDuty assigns one; events spread). */
  dedupKey: string | null;
  /** The Events API v2 body, limits applied (see pagerduty/limits.ts), without routing_key. */
  body: EventBody;
  /**
   * When the state this event reports began: the rule's `payload.timestamp` (rendered for
   * acknowledges and resolves too, though PagerDuty does not read it there), else the SNS
   * Timestamp; undefined when neither is a date. The spool does not send an event older than the
   * newest one it accepted for the same route and dedup key from the same kind of clock: SNS
   * retried it after a later state.
   */
  time?: EventTime;
}

/** An event's time, epoch ms, and which clock it comes from (only like is compared with like). */
export interface EventTime {
  at: number;
  /** `payload`: the rule's payload.timestamp (the source's own time); `sns`: the SNS Timestamp. */
  from: 'payload' | 'sns';
}

/** A rule that matched, and what it decided. */
export interface RuleMatch {
  rule: string;
  action: RuleAction;
}

/** What the rules made of one input document. */
export interface Evaluation {
  /** The deciding (last matching) rule's name, or null when nothing matched. */
  rule: string | null;
  action: RuleAction;
  /** Every rule that matched, in order (several with `continue: true`). */
  matches: RuleMatch[];
  /** Events to spool; empty for drop. */
  events: OutboundEvent[];
}

/** A compiled rule set. Compiled once per (re)load and swapped atomically; evaluate() never parses. */
export interface RuleEngine {
  evaluate(doc: InputDocument): Evaluation;
}
