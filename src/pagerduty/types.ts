/**
 * PagerDuty Events API v2 request bodies, without `routing_key` (delivery adds it per key).
 * https://developer.pagerduty.com/docs/events-api-v2-overview
 */

export type Severity = 'critical' | 'error' | 'warning' | 'info';
export const SEVERITIES: readonly Severity[] = ['critical', 'error', 'warning', 'info'];

export type AlertAction = 'trigger' | 'acknowledge' | 'resolve';
/** What a rule can make of a message: an alert action, a change event, or nothing. */
export type EventAction = AlertAction | 'change';
export type RuleAction = EventAction | 'drop';
export const EVENT_ACTIONS: readonly EventAction[] = ['trigger', 'acknowledge', 'resolve', 'change'];

export interface Link {
  href: string;
  text?: string;
}

export interface Image {
  src: string;
  href?: string;
  alt?: string;
}

export interface AlertPayload {
  summary: string;
  source: string;
  severity: Severity;
  timestamp?: string;
  component?: string;
  group?: string;
  class?: string;
  custom_details?: Record<string, unknown>;
}

/** Body of POST /v2/enqueue (routing_key omitted). acknowledge/resolve carry only the dedup key. */
export interface AlertEventBody {
  event_action: AlertAction;
  dedup_key?: string;
  payload?: AlertPayload;
  links?: Link[];
  images?: Image[];
  client?: string;
  client_url?: string;
}

/** Body of POST /v2/change/enqueue (routing_key omitted). */
export interface ChangeEventBody {
  payload: {
    summary: string;
    source?: string;
    timestamp?: string;
    custom_details?: Record<string, unknown>;
  };
  links?: Link[];
}

export type EventBody = AlertEventBody | ChangeEventBody;
