import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A PagerDuty Events API v2 on 127.0.0.1 for tests and benchmarks, as strict as the real one where
 * it matters to pd-relay:
 * - a per-routing-key sliding window (length and limit configurable; PagerDuty's is ~120 per 60 s,
 *   https://developer.pagerduty.com/docs/events-api-v2/rate-limits/) answering 429 beyond it,
 *   measured in real time at arrival, like PagerDuty;
 * - the 512,000-byte request limit (400 by default, or 413);
 * - the schema: routing_key of 32 letters and digits, event_action, trigger payload summary ≤ 1024
 *   characters, source, severity, dedup_key ≤ 255 and required for acknowledge/resolve → 400 with
 *   `errors`, in PagerDuty's answer shape; unknown keys → 400 "Invalid routing key" (what PagerDuty
 *   answers for a well-formed key that has no integration);
 * - alert state per (routing key, dedup key): an acknowledge or resolve for an alert that is not
 *   open on that routing key is accepted with 202 and dropped, as PagerDuty does, and recorded in
 *   `droppedFollowUps()` so that tests can see it.
 * Switchable failure modes: a share of requests failing, all failing for a while, a 429 storm,
 * latency, invalid keys, rejecting chosen events, scripted answers.
 */
export interface FakePagerDutyOptions {
  /** Sliding window length in ms (default 60,000). */
  windowMs?: number;
  /** Requests per window and key (default 120). */
  limit?: number;
  /** Largest accepted request body in bytes (default 512,000). */
  maxBytes?: number;
  /** Status for a body over maxBytes (default 400). */
  oversizeStatus?: 400 | 413;
  /** When given, only these routing keys have an integration; others get 400 "Invalid routing key". */
  knownKeys?: Iterable<string>;
  /** Randomness of failPercent (default Math.random). */
  random?: () => number;
}

/** Every request that reached the fake. `at` is performance.now() at arrival. */
export interface ReceivedRequest {
  at: number;
  path: string;
  routingKey: string | null;
  status: number;
  bytes: number;
}

/** An event PagerDuty accepted (202). */
export interface AcceptedEvent {
  seq: number;
  at: number;
  path: string;
  routingKey: string;
  action: 'trigger' | 'acknowledge' | 'resolve' | 'change';
  dedupKey: string | null;
  body: Record<string, unknown>;
  bytes: number;
  /** The exact request text (duplicates are byte-identical). */
  raw: string;
}

interface Scripted {
  status: number;
  body?: string;
  headers?: Record<string, string>;
}

type AlertState = 'triggered' | 'acknowledged' | 'resolved';

const SEVERITIES = ['critical', 'error', 'warning', 'info'];

export class FakePagerDuty {
  readonly url: string;
  readonly windowMs: number;
  readonly limit: number;
  readonly requests: ReceivedRequest[] = [];
  readonly accepted: AcceptedEvent[] = [];
  /** Requests that arrived, answered or not yet (latency). */
  arrivals = 0;
  readonly #server: Server;
  readonly #maxBytes: number;
  readonly #oversizeStatus: number;
  readonly #random: () => number;
  #knownKeys: Set<string> | null;
  readonly #invalidKeys = new Set<string>();
  readonly #failingKeys = new Map<string, number>();
  /** Arrivals that count against each key's window. */
  readonly #windows = new Map<string, number[]>();
  readonly #alerts = new Map<string, AlertState>();
  readonly #dropped: AcceptedEvent[] = [];
  #failShare = 0;
  #failShareStatus = 503;
  #failAllUntil = 0;
  #failAllStatus = 503;
  #stormUntil = 0;
  #latencyMs = 0;
  #scripted: Scripted[] = [];
  #reject: ((body: Record<string, unknown>) => string[] | null) | null = null;
  #seq = 0;

  private constructor(server: Server, url: string, opts: FakePagerDutyOptions) {
    this.#server = server;
    this.url = url;
    this.windowMs = opts.windowMs ?? 60_000;
    this.limit = opts.limit ?? 120;
    this.#maxBytes = opts.maxBytes ?? 512_000;
    this.#oversizeStatus = opts.oversizeStatus ?? 400;
    this.#random = opts.random ?? Math.random;
    this.#knownKeys = opts.knownKeys ? new Set(opts.knownKeys) : null;
  }

  static async start(opts: FakePagerDutyOptions = {}): Promise<FakePagerDuty> {
    let fake: FakePagerDuty | undefined;
    const server = createServer((req, res) => {
      void fake?.handle(req, res);
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const { port } = server.address() as AddressInfo;
    fake = new FakePagerDuty(server, `http://127.0.0.1:${port}`, opts);
    return fake;
  }

  // ---- failure modes -------------------------------------------------------------------------

  /** Answers `share` (0..1) of requests with `status` (default 503). 0 turns it off. */
  failPercent(share: number, status = 503): void {
    this.#failShare = share;
    this.#failShareStatus = status;
  }

  /** Answers every request with `status` for `forMs` (an outage). */
  failAll(forMs: number, status = 503): void {
    this.#failAllUntil = performance.now() + forMs;
    this.#failAllStatus = status;
  }

  /** Answers every request with 429 for `forMs`, whatever the window says. */
  storm429(forMs: number): void {
    this.#stormUntil = performance.now() + forMs;
  }

  /** Delays every answer by `ms`. */
  latency(ms: number): void {
    this.#latencyMs = ms;
  }

  /** Makes PagerDuty answer 400 "Invalid routing key" for this key (or accept it again). */
  invalidateKey(key: string, invalid = true): void {
    if (invalid) this.#invalidKeys.add(key);
    else this.#invalidKeys.delete(key);
  }

  /** Answers every request for this key with `status` (null: stop). Other keys are unaffected. */
  failKey(key: string, status: number | null = 503): void {
    if (status === null) this.#failingKeys.delete(key);
    else this.#failingKeys.set(key, status);
  }

  /** Only these keys exist from now on (null: every well-formed key). */
  setKnownKeys(keys: Iterable<string> | null): void {
    this.#knownKeys = keys ? new Set(keys) : null;
  }

  /** Answers 400 with the returned `errors` for events the predicate picks (null: no rejection). */
  rejectWhen(predicate: ((body: Record<string, unknown>) => string[] | null) | null): void {
    this.#reject = predicate;
  }

  /** The next requests get these answers, in order, whatever else is configured. */
  script(...answers: Scripted[]): void {
    this.#scripted.push(...answers);
  }

  /** Back to a healthy PagerDuty (records are kept). */
  heal(): void {
    this.#failShare = 0;
    this.#failAllUntil = 0;
    this.#stormUntil = 0;
    this.#latencyMs = 0;
    this.#scripted = [];
    this.#reject = null;
    this.#invalidKeys.clear();
    this.#failingKeys.clear();
  }

  /**
   * Forgets what happened (requests, accepted events, dropped follow-ups) but not the state
   * PagerDuty keeps: open alerts and each key's window stay.
   */
  clearRecords(): void {
    this.requests.length = 0;
    this.accepted.length = 0;
    this.#dropped.length = 0;
    this.arrivals = 0;
  }

  // ---- what happened ---------------------------------------------------------------------------

  /** Requests answered with `status`. */
  count(status: number): number {
    return this.requests.filter((r) => r.status === status).length;
  }

  /**
   * The most requests one key received in any window (all answers counted), optionally only among
   * requests that arrived at or after `since` (performance.now() time).
   */
  maxInWindow(routingKey?: string, opts: { since?: number; windowMs?: number } = {}): number {
    const w = opts.windowMs ?? this.windowMs;
    const byKey = new Map<string, number[]>();
    for (const r of this.requests) {
      if (r.routingKey === null || (routingKey && r.routingKey !== routingKey)) continue;
      if (opts.since !== undefined && r.at < opts.since) continue;
      const list = byKey.get(r.routingKey) ?? [];
      list.push(r.at);
      byKey.set(r.routingKey, list);
    }
    let max = 0;
    for (const times of byKey.values()) {
      times.sort((a, b) => a - b);
      let lo = 0;
      for (let hi = 0; hi < times.length; hi++) {
        while ((times[hi] as number) - (times[lo] as number) >= w) lo++;
        max = Math.max(max, hi - lo + 1);
      }
    }
    return max;
  }

  /** Accepted requests whose exact body was accepted before (what a redelivery after a crash produces). */
  duplicates(): AcceptedEvent[] {
    const seen = new Set<string>();
    const dups: AcceptedEvent[] = [];
    for (const e of this.accepted) {
      if (seen.has(e.raw)) dups.push(e);
      else seen.add(e.raw);
    }
    return dups;
  }

  /** Acknowledges and resolves PagerDuty accepted but dropped: no open alert on their routing key. */
  droppedFollowUps(): AcceptedEvent[] {
    return [...this.#dropped];
  }

  /** The state of an alert on a routing key, if it ever opened. */
  alertState(routingKey: string, dedupKey: string): AlertState | undefined {
    return this.#alerts.get(`${routingKey}\n${dedupKey}`);
  }

  /** Resolves once `predicate` holds (checked every 10 ms), or rejects after `timeoutMs`. */
  async waitFor(predicate: (fake: this) => boolean, timeoutMs = 10_000, what = 'condition'): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    while (!predicate(this)) {
      if (performance.now() > deadline)
        throw new Error(`Fake PagerDuty: timed out after ${timeoutMs} ms waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  async close(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  // ---- the API ---------------------------------------------------------------------------------

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const at = performance.now();
    this.arrivals++;
    const path = (req.url ?? '/').split('?')[0] as string;
    const chunks: Buffer[] = [];
    let bytes = 0;
    for await (const chunk of req) {
      bytes += (chunk as Buffer).length;
      if (bytes <= this.#maxBytes) chunks.push(chunk as Buffer);
    }
    if (this.#latencyMs) await new Promise((r) => setTimeout(r, this.#latencyMs));
    const record = (status: number, routingKey: string | null) =>
      this.requests.push({ at, path, routingKey, status, bytes });

    if (req.method !== 'POST' || (path !== '/v2/enqueue' && path !== '/v2/change/enqueue')) {
      record(404, null);
      return send(res, 404, { status: 'not found', message: `No route for ${req.method} ${path}` });
    }
    if (bytes > this.#maxBytes) {
      record(this.#oversizeStatus, null);
      return invalid(res, this.#oversizeStatus, [
        `Event object is too large (${bytes} bytes; the limit is ${this.#maxBytes})`,
      ]);
    }
    const raw = Buffer.concat(chunks).toString('utf8');
    let body: Record<string, unknown>;
    try {
      const parsed: unknown = JSON.parse(raw);
      if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error('not an object');
      body = parsed as Record<string, unknown>;
    } catch {
      record(400, null);
      return invalid(res, 400, ['Malformed JSON']);
    }

    const key = typeof body.routing_key === 'string' ? body.routing_key : null;
    const keyErrors: string[] = [];
    if (key === null || key.length !== 32)
      keyErrors.push("Length of 'routing_key' is incorrect (should be 32 characters)");
    if (key !== null && !/^[A-Za-z0-9]*$/.test(key))
      keyErrors.push("'routing_key' cannot contain non-alphanumeric characters.");
    if (keyErrors.length) {
      record(400, key);
      return invalid(res, 400, keyErrors);
    }
    const routingKey = key as string;
    if (this.#invalidKeys.has(routingKey) || (this.#knownKeys && !this.#knownKeys.has(routingKey))) {
      record(400, routingKey);
      return invalid(res, 400, ['Invalid routing key']);
    }

    const scripted = this.#scripted.shift();
    if (scripted) {
      this.#count(routingKey, at);
      record(scripted.status, routingKey);
      res.writeHead(scripted.status, { 'content-type': 'application/json', ...scripted.headers });
      res.end(scripted.body ?? '');
      return;
    }
    if (at < this.#stormUntil) {
      record(429, routingKey);
      return throttled(res);
    }
    if (!this.#allow(routingKey, at)) {
      record(429, routingKey);
      return throttled(res);
    }
    const keyFailure = this.#failingKeys.get(routingKey);
    if (keyFailure !== undefined) {
      record(keyFailure, routingKey);
      return send(res, keyFailure, { status: 'unavailable', message: 'Service unavailable' });
    }
    if (at < this.#failAllUntil) {
      record(this.#failAllStatus, routingKey);
      return send(res, this.#failAllStatus, { status: 'unavailable', message: 'Service unavailable' });
    }
    if (this.#failShare > 0 && this.#random() < this.#failShare) {
      record(this.#failShareStatus, routingKey);
      return send(res, this.#failShareStatus, { status: 'unavailable', message: 'Service unavailable' });
    }

    const change = path === '/v2/change/enqueue';
    const errors = change ? changeErrors(body) : alertErrors(body);
    if (!errors.length && this.#reject) errors.push(...(this.#reject(body) ?? []));
    if (errors.length) {
      record(400, routingKey);
      return invalid(res, 400, errors);
    }

    const action = change ? 'change' : (body.event_action as AcceptedEvent['action']);
    let dedupKey = typeof body.dedup_key === 'string' ? body.dedup_key : null;
    if (action === 'trigger' && dedupKey === null) dedupKey = randomUUID();
    const event: AcceptedEvent = {
      seq: ++this.#seq,
      at,
      path,
      routingKey,
      action,
      dedupKey,
      body,
      bytes,
      raw,
    };
    this.accepted.push(event);
    this.#applyToAlert(event);
    record(202, routingKey);
    send(res, 202, {
      status: 'success',
      message: 'Event processed',
      ...(change ? {} : { dedup_key: dedupKey }),
    });
  }

  /** Sliding window: a request counts if it arrived less than windowMs ago. */
  #allow(routingKey: string, at: number): boolean {
    const times = this.#windows.get(routingKey) ?? [];
    let n = 0;
    while (n < times.length && at - (times[n] as number) >= this.windowMs) n++;
    if (n) times.splice(0, n);
    this.#windows.set(routingKey, times);
    if (times.length >= this.limit) return false;
    times.push(at);
    return true;
  }

  #count(routingKey: string, at: number): void {
    const times = this.#windows.get(routingKey) ?? [];
    times.push(at);
    this.#windows.set(routingKey, times);
  }

  #applyToAlert(e: AcceptedEvent): void {
    if (e.action === 'change' || e.dedupKey === null) return;
    const id = `${e.routingKey}\n${e.dedupKey}`;
    const state = this.#alerts.get(id);
    const open = state === 'triggered' || state === 'acknowledged';
    if (e.action === 'trigger') {
      if (!open) this.#alerts.set(id, 'triggered');
      return;
    }
    if (!open) {
      this.#dropped.push(e);
      return;
    }
    this.#alerts.set(id, e.action === 'resolve' ? 'resolved' : 'acknowledged');
  }
}

function alertErrors(body: Record<string, unknown>): string[] {
  const errors: string[] = [];
  const action = body.event_action;
  if (action !== 'trigger' && action !== 'acknowledge' && action !== 'resolve') {
    errors.push("'event_action' is invalid (must be one of trigger, acknowledge, resolve)");
    return errors;
  }
  const dedup = body.dedup_key;
  if (dedup !== undefined && (typeof dedup !== 'string' || dedup.length > 255))
    errors.push("'dedup_key' is too long (maximum is 255 characters)");
  if (action !== 'trigger') {
    if (typeof dedup !== 'string' || dedup === '') errors.push("'dedup_key' is missing or blank");
    return errors;
  }
  const p = body.payload as Record<string, unknown> | undefined;
  if (!p || typeof p !== 'object') {
    errors.push("'payload' is missing or blank");
    return errors;
  }
  if (typeof p.summary !== 'string' || p.summary === '') errors.push("'payload.summary' is missing or blank");
  else if (p.summary.length > 1024) errors.push("'summary' is too long (maximum is 1024 characters)");
  if (typeof p.source !== 'string' || p.source === '') errors.push("'payload.source' is missing or blank");
  if (!SEVERITIES.includes(p.severity as string))
    errors.push("'payload.severity' is invalid (must be one of critical, error, warning, info)");
  return errors;
}

function changeErrors(body: Record<string, unknown>): string[] {
  const p = body.payload as Record<string, unknown> | undefined;
  if (!p || typeof p !== 'object') return ["'payload' is missing or blank"];
  if (typeof p.summary !== 'string' || p.summary === '') return ["'payload.summary' is missing or blank"];
  if (p.summary.length > 1024) return ["'summary' is too long (maximum is 1024 characters)"];
  return [];
}

function send(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

function invalid(res: ServerResponse, status: number, errors: string[]): void {
  send(res, status, { status: 'invalid event', message: 'Event object is invalid', errors });
}

function throttled(res: ServerResponse): void {
  send(res, 429, {
    status: 'throttle event',
    message: 'Requests for this service are arriving too quickly. Please retry later.',
  });
}

/** A well-formed routing key for tests: 32 letters and digits derived from `n`. */
export function testRoutingKey(n: number | string): string {
  const base = `k${String(n).replace(/[^A-Za-z0-9]/g, '')}`;
  return (base + 'x'.repeat(32)).slice(0, 32);
}
