import { Agent, type Dispatcher, request } from 'undici';
import type { Secret } from '../shared/secret.js';
import { VERSION } from '../version.js';
import {
  type FittedEvent,
  fitEvent,
  MAX_DEDUP_KEY_CHARS,
  MAX_EVENT_BYTES,
  MAX_SUMMARY_CHARS,
  type TruncatedField,
} from './limits.js';
import {
  type AlertEventBody,
  type ChangeEventBody,
  type EventAction,
  type EventBody,
  SEVERITIES,
} from './types.js';

/** https://developer.pagerduty.com/docs/events-api-v2/trigger-events/ — alert events. */
export const ENQUEUE_PATH = '/v2/enqueue';
/** https://developer.pagerduty.com/docs/events-api-v2/send-change-events/ — change events. */
export const CHANGE_ENQUEUE_PATH = '/v2/change/enqueue';
/** Enough of a response body for PagerDuty's `errors`; anything longer is a proxy's error page. */
const MAX_RESPONSE_BYTES = 64 * 1024;

/** Why a request is worth repeating later. A short fixed list: it is a metric label. */
export type RetryReason = 'rate_limited' | 'server_error' | 'network' | 'timeout' | 'unexpected_status';
export const RETRY_REASONS: readonly RetryReason[] = [
  'rate_limited',
  'server_error',
  'network',
  'timeout',
  'unexpected_status',
];

/**
 * Why an event will never be accepted as it is. `rejected`: PagerDuty answered 400; `bad_key`: the
 * routing key is unknown or refused (400 "Invalid routing key", 401, 403, 404); `too_large`: 413;
 * `invalid`: it fails PagerDuty's documented schema, so it was not sent at all.
 */
export type FailureReason = 'rejected' | 'bad_key' | 'too_large' | 'invalid';

/** HTTP status class of a PagerDuty request, or how it failed without one (a metric label). */
export type CodeClass = '2xx' | '3xx' | '4xx' | '5xx' | 'network' | 'timeout';

interface Timing {
  /** Milliseconds the request took; 0 when nothing was sent. */
  durationMs: number;
  /** What limits.ts changed before sending (normally nothing: the rules stage fits events). */
  truncations: TruncatedField[];
}

/** What became of one request. Results, not exceptions: the dispatcher decides what to do. */
export type SendResult =
  | ({ outcome: 'delivered'; status: number; codeClass: CodeClass; dedupKey?: string } & Timing)
  | ({
      outcome: 'retry';
      reason: RetryReason;
      status?: number;
      codeClass: CodeClass;
      /** From a Retry-After header, when PagerDuty sent one. */
      retryAfterMs?: number;
      detail: string;
    } & Timing)
  | ({
      outcome: 'failed';
      reason: FailureReason;
      status?: number;
      codeClass?: CodeClass;
      detail: string;
    } & Timing)
  /** The caller's signal aborted the request (shutdown): nothing is known, nothing is concluded. */
  | ({ outcome: 'aborted'; codeClass: CodeClass } & Timing);

/** Sends one event with one routing key. The dispatcher's only view of PagerDuty. */
export interface EventsApi {
  send(
    routingKey: Secret,
    action: EventAction,
    body: EventBody,
    opts?: { signal?: AbortSignal },
  ): Promise<SendResult>;
}

export interface PagerDutyClientOptions {
  /** Base URL without a trailing slash: https://events.pagerduty.com, https://events.eu.pagerduty.com, or a local fake. */
  url: string;
  /** Whole-request timeout (connect, send, answer). */
  timeoutMs: number;
  /** An undici dispatcher; by default a keep-alive Agent owned (and closed) by the client. */
  dispatcher?: Dispatcher;
}

/**
 * The Events API v2 client: POST /v2/enqueue (or /v2/change/enqueue), keep-alive, per-request
 * timeout, and the outcome classes of
 * https://developer.pagerduty.com/docs/events-api-v2/overview/#response-codes--retry-logic.
 * Before anything goes out the event is fitted to PagerDuty's limits and checked against its
 * schema: an event PagerDuty would reject is never sent.
 */
export class PagerDutyClient implements EventsApi {
  readonly enqueueUrl: string;
  readonly changeUrl: string;
  readonly #timeoutMs: number;
  readonly #dispatcher: Dispatcher;
  readonly #ownsDispatcher: boolean;

  constructor(opts: PagerDutyClientOptions) {
    const base = opts.url.replace(/\/+$/, '');
    this.enqueueUrl = `${base}${ENQUEUE_PATH}`;
    this.changeUrl = `${base}${CHANGE_ENQUEUE_PATH}`;
    this.#timeoutMs = opts.timeoutMs;
    this.#ownsDispatcher = !opts.dispatcher;
    this.#dispatcher =
      opts.dispatcher ??
      new Agent({
        keepAliveTimeout: 30_000,
        keepAliveMaxTimeout: 120_000,
        connect: { timeout: opts.timeoutMs },
      });
  }

  async send(
    routingKey: Secret,
    action: EventAction,
    body: EventBody,
    opts: { signal?: AbortSignal } = {},
  ): Promise<SendResult> {
    let fitted: FittedEvent;
    try {
      fitted = fitEvent(body);
    } catch (err) {
      return notSent('invalid', `Cannot serialise the event: ${(err as Error).message}`, []);
    }
    const truncations = fitted.truncations;
    const problems = eventProblems(action, fitted.body);
    if (problems.length) return notSent('invalid', problems.join('; '), truncations);

    const wire =
      action === 'change'
        ? changeWireBody(routingKey, fitted.body as ChangeEventBody)
        : JSON.stringify({
            routing_key: routingKey.reveal(),
            ...(fitted.body as AlertEventBody),
            event_action: action,
          });
    const bytes = Buffer.byteLength(wire, 'utf8');
    if (bytes > MAX_EVENT_BYTES) {
      return notSent(
        'too_large',
        `Expected at most ${MAX_EVENT_BYTES} bytes, got ${bytes} after fitting`,
        truncations,
      );
    }

    const timeout = AbortSignal.timeout(this.#timeoutMs);
    const signal = opts.signal ? AbortSignal.any([timeout, opts.signal]) : timeout;
    const started = performance.now();
    const elapsed = () => Math.round((performance.now() - started) * 1000) / 1000;
    try {
      const res = await request(action === 'change' ? this.changeUrl : this.enqueueUrl, {
        method: 'POST',
        dispatcher: this.#dispatcher,
        signal,
        headers: {
          'content-type': 'application/json',
          accept: 'application/json',
          'user-agent': `pd-relay/${VERSION}`,
        },
        body: wire,
      });
      const text = await readBounded(res.body);
      const durationMs = elapsed();
      const retryAfter = header(res.headers, 'retry-after');
      return classify(res.statusCode, text, retryAfter, routingKey, { durationMs, truncations });
    } catch (err) {
      const durationMs = elapsed();
      if (opts.signal?.aborted && !timeout.aborted)
        return { outcome: 'aborted', codeClass: 'network', durationMs, truncations };
      if (timeout.aborted || isTimeout(err)) {
        return {
          outcome: 'retry',
          reason: 'timeout',
          codeClass: 'timeout',
          detail: `No answer within ${this.#timeoutMs} ms`,
          durationMs,
          truncations,
        };
      }
      return {
        outcome: 'retry',
        reason: 'network',
        codeClass: 'network',
        detail: redact(networkText(err), routingKey),
        durationMs,
        truncations,
      };
    }
  }

  /** Closes idle keep-alive connections (only those of the client's own Agent). */
  async close(): Promise<void> {
    if (this.#ownsDispatcher) await this.#dispatcher.close();
  }
}

function notSent(reason: FailureReason, detail: string, truncations: TruncatedField[]): SendResult {
  return { outcome: 'failed', reason, detail, durationMs: 0, truncations };
}

function changeWireBody(routingKey: Secret, body: ChangeEventBody): string {
  const out: Record<string, unknown> = { routing_key: routingKey.reveal(), payload: body.payload };
  if (body.links) out.links = body.links;
  return JSON.stringify(out);
}

/**
 * What PagerDuty's documented schema would refuse, as "Expected X, got Y" sentences. Run after
 * fitEvent, so only what fitting cannot repair is left: a resolve without a dedup key, a change
 * event without a summary, an unknown action.
 */
export function eventProblems(action: EventAction, body: EventBody): string[] {
  const problems: string[] = [];
  if (action === 'change') {
    const p = (body as ChangeEventBody).payload;
    if (!p || typeof p !== 'object') problems.push('Expected a payload in a change event, got nothing');
    else if (typeof p.summary !== 'string' || p.summary.length === 0)
      problems.push('Expected payload.summary in a change event, got nothing');
    else if (p.summary.length > MAX_SUMMARY_CHARS)
      problems.push(
        `Expected payload.summary of at most ${MAX_SUMMARY_CHARS} characters, got ${p.summary.length}`,
      );
    return problems;
  }
  if (action !== 'trigger' && action !== 'acknowledge' && action !== 'resolve') {
    return [`Expected event_action trigger, acknowledge, resolve or change, got ${JSON.stringify(action)}`];
  }
  const alert = body as AlertEventBody;
  const dedup = alert.dedup_key;
  if (
    dedup !== undefined &&
    (typeof dedup !== 'string' || dedup.length === 0 || dedup.length > MAX_DEDUP_KEY_CHARS)
  )
    problems.push(`Expected dedup_key of 1 to ${MAX_DEDUP_KEY_CHARS} characters`);
  if (action !== 'trigger') {
    if (typeof dedup !== 'string' || dedup.length === 0)
      problems.push(`Expected a dedup_key in a ${action} event (it names the alert), got nothing`);
    return problems;
  }
  const p = alert.payload;
  if (!p || typeof p !== 'object') return [...problems, 'Expected a payload in a trigger event, got nothing'];
  if (typeof p.summary !== 'string' || p.summary.length === 0)
    problems.push('Expected payload.summary, got nothing');
  if (typeof p.source !== 'string' || p.source.length === 0)
    problems.push('Expected payload.source, got nothing');
  if (!SEVERITIES.includes(p.severity))
    problems.push(`Expected payload.severity ${SEVERITIES.join(', ')}, got ${JSON.stringify(p.severity)}`);
  return problems;
}

function classify(
  status: number,
  text: string,
  retryAfter: string | undefined,
  routingKey: Secret,
  timing: Timing,
): SendResult {
  const codeClass = statusClass(status);
  if (status >= 200 && status < 300) {
    const dedupKey = parseJson(text)?.dedup_key;
    return {
      outcome: 'delivered',
      status,
      codeClass,
      ...(typeof dedupKey === 'string' ? { dedupKey } : {}),
      ...timing,
    };
  }
  const detail = redact(errorText(status, text), routingKey);
  if (status === 429) {
    const retryAfterMs = parseRetryAfter(retryAfter, Date.now());
    return {
      outcome: 'retry',
      reason: 'rate_limited',
      status,
      codeClass,
      detail,
      ...(retryAfterMs === undefined ? {} : { retryAfterMs }),
      ...timing,
    };
  }
  if (status >= 500)
    return { outcome: 'retry', reason: 'server_error', status, codeClass, detail, ...timing };
  if (status === 401 || status === 403 || status === 404) {
    return { outcome: 'failed', reason: 'bad_key', status, codeClass, detail, ...timing };
  }
  if (status === 413) return { outcome: 'failed', reason: 'too_large', status, codeClass, detail, ...timing };
  if (status === 400) {
    // PagerDuty answers an unknown or malformed key with 400 and errors such as "Invalid routing
    // key" or "Length of 'routing_key' is incorrect": that is a configuration problem, not the event's.
    const reason: FailureReason = /routing[ _]?key|integration key|service key/i.test(detail)
      ? 'bad_key'
      : 'rejected';
    return { outcome: 'failed', reason, status, codeClass, detail, ...timing };
  }
  if (status === 408) return { outcome: 'retry', reason: 'timeout', status, codeClass, detail, ...timing };
  // Redirects and other statuses are not in PagerDuty's contract: a proxy or outage page. Keep the
  // event and retry rather than lose a page over an unknown answer.
  return { outcome: 'retry', reason: 'unexpected_status', status, codeClass, detail, ...timing };
}

/**
 * A Retry-After header (RFC 9110 §10.2.3: delay-seconds or an HTTP-date) as milliseconds from
 * `now`, or undefined when absent or unreadable.
 */
export function parseRetryAfter(value: string | undefined, now: number): number | undefined {
  if (value === undefined) return undefined;
  const text = value.trim();
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  const at = Date.parse(text);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

function statusClass(status: number): CodeClass {
  if (status < 300) return '2xx';
  if (status < 400) return '3xx';
  if (status < 500) return '4xx';
  return '5xx';
}

/** PagerDuty's `errors` (400) or `message`, else the start of the body. */
function errorText(status: number, text: string): string {
  const json = parseJson(text);
  if (json) {
    const errors = Array.isArray(json.errors) ? json.errors.filter((e) => typeof e === 'string') : [];
    if (errors.length) return `${status}: ${errors.join('; ')}`;
    if (typeof json.message === 'string') return `${status}: ${json.message}`;
  }
  const flat = text.replace(/\s+/g, ' ').trim();
  return flat ? `${status}: ${flat.length > 300 ? `${flat.slice(0, 297)}...` : flat}` : `${status}`;
}

function parseJson(text: string): Record<string, unknown> | undefined {
  try {
    const v: unknown = JSON.parse(text);
    return v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** A key must never reach a log line or a dead letter, even if an answer echoed it. */
function redact(text: string, routingKey: Secret): string {
  const key = routingKey.reveal();
  return key ? text.split(key).join('[redacted]') : text;
}

function header(headers: Record<string, string | string[] | undefined>, name: string): string | undefined {
  const v = headers[name];
  return Array.isArray(v) ? v[0] : v;
}

async function readBounded(body: Dispatcher.ResponseData['body']): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    const buf = chunk as Buffer;
    if (size + buf.length > MAX_RESPONSE_BYTES) {
      chunks.push(buf.subarray(0, MAX_RESPONSE_BYTES - size));
      body.destroy();
      break;
    }
    chunks.push(buf);
    size += buf.length;
  }
  return Buffer.concat(chunks).toString('utf8');
}

function isTimeout(err: unknown): boolean {
  const e = err as { name?: string; code?: string };
  return (
    e?.name === 'TimeoutError' ||
    e?.code === 'UND_ERR_CONNECT_TIMEOUT' ||
    e?.code === 'UND_ERR_HEADERS_TIMEOUT' ||
    e?.code === 'UND_ERR_BODY_TIMEOUT'
  );
}

function networkText(err: unknown): string {
  const e = err as { code?: string; message?: string; cause?: { code?: string; message?: string } };
  const code = e?.code ?? e?.cause?.code;
  const message = e?.cause?.message ?? e?.message ?? String(err);
  return code ? `${code}: ${message}` : message;
}
