import { createHash } from 'node:crypto';
import {
  type AlertEventBody,
  type ChangeEventBody,
  type EventBody,
  SEVERITIES,
  type Severity,
} from './types.js';

// PagerDuty's documented limits. Every event leaves pd-relay within them: an event PagerDuty would
// reject with 400 is an alert nobody sees.

/** https://developer.pagerduty.com/docs/events-api-v2/trigger-events/ — "maximum permitted length … 1024 characters" */
export const MAX_SUMMARY_CHARS = 1024;
/** https://developer.pagerduty.com/docs/events-api-v2/trigger-events/ — dedup_key "maximum … 255 characters" */
export const MAX_DEDUP_KEY_CHARS = 255;
/** https://developer.pagerduty.com/docs/events-api-v2/overview/#size-limits — "payloads are limited to 512 KB" */
export const MAX_EVENT_BYTES = 512_000;
/** Room left in MAX_EVENT_BYTES for `"routing_key":"<32 chars>",` which delivery adds. */
const ROUTING_KEY_ALLOWANCE = 64;
/** Fallback for an empty `payload.source` (required by PagerDuty). */
export const DEFAULT_SOURCE = 'aws';
/** Fallback for a severity PagerDuty does not know. */
export const DEFAULT_SEVERITY: Severity = 'error';
/** The key under which custom_details says what the size limit cut. */
export const TRUNCATION_MARKER = 'pd_relay_truncated';

/** Which part of an event a limit changed: a bounded set, used as a metric label. */
export type TruncatedField =
  | 'summary'
  | 'dedup_key'
  | 'severity'
  | 'source'
  | 'custom_details'
  | 'links'
  | 'images'
  | 'text_fields';

export interface FittedEvent<T extends EventBody = EventBody> {
  body: T;
  /** Serialised size without routing_key. */
  bytes: number;
  /** What was changed to fit, each field once. Empty when the event was already within limits. */
  truncations: TruncatedField[];
}

/**
 * Returns a body that PagerDuty will accept: summary cut with "…", long dedup keys hashed,
 * severity and source made valid, and the whole request (routing key included) within 512,000
 * bytes by shrinking custom_details largest field first, then replacing it with a marker.
 * An event already within the limits (nearly all of them) is returned as it is, not copied; one
 * that needs changing is copied first, so `input` is never modified. Either way the result is
 * treated as immutable from here on: its JSON text is kept for serialisedBody().
 */
export function fitEvent<T extends EventBody>(input: T): FittedEvent<T> {
  // One JSON.stringify measures the event and is reused by the spool; no copy unless a limit applies.
  if (fieldsWithinLimits(input)) {
    const json = JSON.stringify(input);
    const bytes = Buffer.byteLength(json, 'utf8');
    if (bytes <= BODY_BUDGET) {
      serialised.set(input, json);
      return { body: input, bytes, truncations: [] };
    }
  }
  return fitCopy(input);
}

/**
 * The JSON text of `body`: the one fitEvent() measured when `body` is its result, else a fresh
 * JSON.stringify. Saves serialising every event twice on its way into the spool.
 */
export function serialisedBody(body: EventBody): string {
  return serialised.get(body) ?? JSON.stringify(body);
}

/** JSON of bodies fitEvent() returned unchanged, until they are garbage. */
const serialised = new WeakMap<object, string>();

/** Room for the body in MAX_EVENT_BYTES once delivery adds the routing key. */
const BODY_BUDGET = MAX_EVENT_BYTES - ROUTING_KEY_ALLOWANCE;

/** Whether every per-field limit fitCopy() enforces already holds (the size is checked apart). */
function fieldsWithinLimits(body: EventBody): boolean {
  const b = body as Partial<AlertEventBody> & Partial<ChangeEventBody>;
  if (typeof b.dedup_key === 'string' && b.dedup_key.length > MAX_DEDUP_KEY_CHARS) return false;
  const payload = b.payload as Partial<AlertEventBody['payload']> | undefined;
  if (!payload) return true;
  if (typeof payload.summary !== 'string' || payload.summary.length > MAX_SUMMARY_CHARS) return false;
  if ('event_action' in b) {
    if (!SEVERITIES.includes(payload.severity as Severity)) return false;
    if (typeof payload.source !== 'string' || payload.source.trim() === '') return false;
  }
  return true;
}

function fitCopy<T extends EventBody>(input: T): FittedEvent<T> {
  const truncations = new Set<TruncatedField>();
  const body = structuredClone(input) as T & Partial<AlertEventBody> & Partial<ChangeEventBody>;

  if (typeof body.dedup_key === 'string' && body.dedup_key.length > MAX_DEDUP_KEY_CHARS) {
    body.dedup_key = hashDedupKey(body.dedup_key);
    truncations.add('dedup_key');
  }
  const payload = body.payload as (Partial<AlertEventBody['payload']> & Record<string, unknown>) | undefined;
  if (payload) {
    if (typeof payload.summary !== 'string') payload.summary = String(payload.summary ?? '');
    if (payload.summary.length > MAX_SUMMARY_CHARS) {
      payload.summary = cutChars(payload.summary, MAX_SUMMARY_CHARS);
      truncations.add('summary');
    }
    const isAlert = 'event_action' in body;
    if (isAlert) {
      if (!SEVERITIES.includes(payload.severity as Severity)) {
        payload.severity = DEFAULT_SEVERITY;
        truncations.add('severity');
      }
      if (typeof payload.source !== 'string' || payload.source.trim() === '') {
        payload.source = DEFAULT_SOURCE;
        truncations.add('source');
      }
    }
  }

  const budget = BODY_BUDGET;
  let bytes = jsonBytes(body);
  if (bytes > budget && payload?.custom_details !== undefined && payload.custom_details !== null) {
    const details: unknown = payload.custom_details;
    // PagerDuty documents custom_details as an object; a template that rendered a string or a list
    // is shrunk as one field rather than sent over the limit.
    if (typeof details !== 'object' || Array.isArray(details)) payload.custom_details = { details };
    bytes = shrinkDetails(body, payload as { custom_details: Record<string, unknown> }, budget, bytes);
    truncations.add('custom_details');
  }
  // Still too big without details: the other free-text parts go, largest first.
  if (bytes > budget) {
    for (const field of ['links', 'images'] as const) {
      if (bytes <= budget) break;
      if (Array.isArray(body[field]) && (body[field] as unknown[]).length) {
        delete body[field];
        truncations.add(field);
        bytes = jsonBytes(body);
      }
    }
  }
  if (bytes > budget) {
    for (const target of [payload, body] as Array<Record<string, unknown> | undefined>) {
      if (!target) continue;
      for (const key of ['component', 'group', 'class', 'source', 'client', 'client_url']) {
        const v = target[key];
        if (typeof v === 'string' && v.length > 256) {
          target[key] = cutChars(v, 256);
          truncations.add('text_fields');
        }
      }
    }
    bytes = jsonBytes(body);
  }
  return { body, bytes, truncations: [...truncations] };
}

/** A stable replacement for a dedup key over 255 characters: its SHA-256 in hex (64 characters). */
export function hashDedupKey(key: string): string {
  return createHash('sha256').update(key).digest('hex');
}

/** Cuts `s` to at most `max` UTF-16 units ending in "…", never splitting a surrogate pair. */
export function cutChars(s: string, max: number): string {
  if (s.length <= max) return s;
  let end = max - 1;
  const code = s.charCodeAt(end - 1);
  if (code >= 0xd800 && code <= 0xdbff) end -= 1;
  return `${s.slice(0, end)}…`;
}

function jsonBytes(value: unknown): number {
  return Buffer.byteLength(JSON.stringify(value), 'utf8');
}

/**
 * Shrinks custom_details until the body fits: the largest field is cut to what still fits (a
 * string, or the JSON text of an object), or removed when too little would remain; when nothing
 * is left to cut, details are replaced by the marker alone. The marker lists what was cut.
 */
function shrinkDetails(
  body: unknown,
  payload: { custom_details: Record<string, unknown> },
  budget: number,
  startBytes: number,
): number {
  const details = { ...payload.custom_details };
  delete details[TRUNCATION_MARKER];
  const cut: string[] = [];
  const removed: string[] = [];
  const marker = () => ({
    reason: `Event exceeded PagerDuty's ${MAX_EVENT_BYTES}-byte limit (${startBytes} bytes); largest fields cut first`,
    ...(cut.length ? { cut } : {}),
    ...(removed.length ? { removed } : {}),
  });
  const measure = () => {
    payload.custom_details = { ...details, [TRUNCATION_MARKER]: marker() };
    return jsonBytes(body);
  };

  let bytes = measure();
  const MIN_USEFUL = 256;
  const tried = new Set<string>();
  while (bytes > budget) {
    let largest: string | undefined;
    let largestSize = -1;
    for (const [k, v] of Object.entries(details)) {
      if (tried.has(k)) continue;
      const size = jsonBytes(v ?? null);
      if (size > largestSize) {
        largest = k;
        largestSize = size;
      }
    }
    if (largest === undefined) break;
    tried.add(largest);
    const excess = bytes - budget;
    // Leave room for the marker growing by this field's name.
    const room = largestSize - excess - Buffer.byteLength(JSON.stringify(largest)) - 16;
    if (room >= MIN_USEFUL) {
      const v = details[largest];
      const text = typeof v === 'string' ? v : JSON.stringify(v);
      details[largest] = prefixWithinJsonBytes(text, room);
      cut.push(largest);
    } else {
      delete details[largest];
      removed.push(largest);
    }
    bytes = measure();
  }
  if (bytes > budget) {
    payload.custom_details = { [TRUNCATION_MARKER]: marker() };
    bytes = jsonBytes(body);
  }
  return bytes;
}

/** The longest prefix of `s` (ending in "…") whose JSON encoding takes at most `maxBytes`. */
function prefixWithinJsonBytes(s: string, maxBytes: number): string {
  let lo = 0;
  let hi = s.length;
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    if (jsonBytes(`${s.slice(0, mid)}…`) <= maxBytes) lo = mid;
    else hi = mid - 1;
  }
  let end = lo;
  const code = s.charCodeAt(end - 1);
  if (end > 0 && code >= 0xd800 && code <= 0xdbff) end -= 1;
  return `${s.slice(0, end)}…`;
}
