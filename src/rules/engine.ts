import type { InputDocument } from '../decode/types.js';
import { type FallbackField, type RulesInstruments, silentRulesInstruments } from '../metrics/rules.js';
import { fitEvent, type TruncatedField } from '../pagerduty/limits.js';
import {
  type AlertEventBody,
  type AlertPayload,
  type ChangeEventBody,
  type EventAction,
  type EventBody,
  type Image,
  type Link,
  type RuleAction,
  SEVERITIES,
  type Severity,
} from '../pagerduty/types.js';
import { iso8601, toText } from './filters.js';
import { DEFAULT_ROUTE, type RuleSet } from './loader.js';
import { getPath } from './path.js';
import type { CompiledDetails, CompiledRule } from './rule.js';
import type { CompiledTemplate } from './templates.js';
import type { Evaluation, EventTime, OutboundEvent, RuleEngine, RuleMatch } from './types.js';

/** The rule name on the event pd-relay sends when every matching rule failed to render. */
export const EMERGENCY_RULE = 'pd-relay-emergency';

/** What a rule falls back to: never silently lose a page (action) and never send an invalid severity. */
export const FALLBACK_ACTION: EventAction = 'trigger';
export const FALLBACK_SEVERITY: Severity = 'error';

const ACTIONS: ReadonlySet<string> = new Set(['trigger', 'acknowledge', 'resolve', 'change', 'drop']);
const SEVERITY_SET: ReadonlySet<string> = new Set(SEVERITIES);
const DEFAULT_SUMMARY_CHARS = 1024;

export interface EngineOptions {
  instruments?: RulesInstruments;
  /**
   * Called with what fitEvent() changed to keep an event within PagerDuty's limits; the
   * composition root points it at delivery's `pdrelay_payload_truncations_total` instrument.
   */
  onTruncation?: (fields: readonly TruncatedField[], event: OutboundEvent) => void;
}

/** A rule failed for this message (bad data for its templates); the engine tries the next rule. */
export class RenderError extends Error {
  override readonly name = 'RenderError';
}

/**
 * Builds the engine for a rule set. evaluate() walks the rules in order: the first matching rule
 * decides unless it says `continue: true`; a rule that fails to render is logged, counted and
 * skipped, and if no matching rule could render, a fallback event still pages.
 */
export function createRuleEngine(ruleSet: RuleSet, opts: EngineOptions = {}): RuleEngine {
  const instruments = opts.instruments ?? silentRulesInstruments;
  const rules = ruleSet.rules;
  const routes = ruleSet.routes;
  const onTruncation = opts.onTruncation;

  const finish = (
    rule: string,
    route: string,
    body: EventBody,
    time: EventTime | undefined,
  ): OutboundEvent => {
    const fitted = fitEvent(body);
    const action: EventAction = 'event_action' in fitted.body ? fitted.body.event_action : 'change';
    const dedupKey = 'dedup_key' in fitted.body ? (fitted.body.dedup_key ?? null) : null;
    const event: OutboundEvent = { route, rule, action, dedupKey, body: fitted.body };
    if (time) event.time = time;
    if (fitted.truncations.length && onTruncation) onTruncation(fitted.truncations, event);
    return event;
  };

  const renderRule = (
    rule: CompiledRule,
    doc: InputDocument,
  ): { action: RuleAction; events: OutboundEvent[] } => {
    const fallback = (field: FallbackField, got: string, used: string) =>
      instruments.renderFallback(rule.name, field, got, used, doc);
    const info = { name: rule.name, description: rule.description ?? '' };
    let items: unknown[] = [undefined];
    if (rule.forEach) {
      const list = getPath(doc, rule.forEach);
      if (!Array.isArray(list) || list.length === 0)
        throw new RenderError(`for_each found ${Array.isArray(list) ? 'an empty list' : 'no list'}`);
      items = list;
    }
    const rendered: Array<[string, EventBody, EventTime | undefined]> = [];
    for (let i = 0; i < items.length; i++) {
      const scope: object = rule.forEach
        ? { ...doc, rule: info, item: items[i], item_index: i }
        : { ...doc, rule: info };
      const action = renderAction(rule.action, scope, fallback);
      if (action === 'drop') continue;
      const route = renderRoute(rule.route, scope, routes, fallback);
      const body = buildBody(rule, action, scope, doc, fallback);
      rendered.push([route, body, eventTime(rule, body, scope, doc)]);
    }
    // Limits only once every item rendered: a rule that fails halfway reports no truncations.
    const events = rendered.map(([route, body, time]) => finish(rule.name, route, body, time));
    return { action: overallAction(events), events };
  };

  return {
    evaluate(doc: InputDocument): Evaluation {
      const matches: RuleMatch[] = [];
      const events: OutboundEvent[] = [];
      const failed: string[] = [];
      let decided: string | null = null;
      let decidedAction: RuleAction = 'drop';
      let final = false;
      for (const rule of rules) {
        if (!rule.match(doc)) continue;
        let result: { action: RuleAction; events: OutboundEvent[] };
        try {
          result = renderRule(rule, doc);
        } catch (err) {
          failed.push(rule.name);
          instruments.renderFailed(rule.name, err, doc);
          continue;
        }
        instruments.ruleMatched(rule.name, result.action, doc);
        matches.push({ rule: rule.name, action: result.action });
        for (const e of result.events) events.push(e);
        decided = rule.name;
        decidedAction = result.action;
        if (!rule.continue) {
          final = true;
          break;
        }
      }
      if (!final && failed.length > 0) {
        // The rules that should have handled this message could not: page anyway.
        instruments.emergencyEvent(failed, doc);
        const event = finish(
          EMERGENCY_RULE,
          routes.has(DEFAULT_ROUTE) ? DEFAULT_ROUTE : firstRoute(routes),
          emergencyBody(doc, failed),
          snsTime(doc),
        );
        events.push(event);
        matches.push({ rule: EMERGENCY_RULE, action: 'trigger' });
        return { rule: EMERGENCY_RULE, action: 'trigger', matches, events };
      }
      if (decided === null) instruments.noRuleMatched(doc);
      return { rule: decided, action: decidedAction, matches, events };
    },
  };
}

/** for_each may produce several actions: trigger wins (a page is never hidden), then the first event's. */
function overallAction(events: OutboundEvent[]): RuleAction {
  if (events.length === 0) return 'drop';
  if (events.some((e) => e.action === 'trigger')) return 'trigger';
  return (events[0] as OutboundEvent).action;
}

type Fallback = (field: FallbackField, got: string, used: string) => void;

function renderAction(t: CompiledTemplate | null, scope: object, fallback: Fallback): RuleAction {
  if (!t) return 'trigger';
  const got = t.render(scope);
  const action = got.toLowerCase();
  if (ACTIONS.has(action)) return action as RuleAction;
  fallback('action', got, FALLBACK_ACTION);
  return FALLBACK_ACTION;
}

function renderRoute(
  t: CompiledTemplate | null,
  scope: object,
  routes: ReadonlySet<string>,
  fallback: Fallback,
): string {
  if (!t) return DEFAULT_ROUTE;
  const route = t.render(scope);
  if (routes.has(route)) return route;
  fallback('route', route, DEFAULT_ROUTE);
  return DEFAULT_ROUTE;
}

function buildBody(
  rule: CompiledRule,
  action: EventAction,
  scope: object,
  doc: InputDocument,
  fallback: Fallback,
): EventBody {
  const opt = (t: CompiledTemplate | null): string | undefined => {
    if (!t) return undefined;
    const v = t.render(scope);
    return v === '' ? undefined : v;
  };
  if (action === 'acknowledge' || action === 'resolve') {
    // PagerDuty reads only the dedup key of acknowledge and resolve events.
    const key = opt(rule.dedupKey);
    if (key === undefined) throw new RenderError(`${action} needs a dedup_key, and it rendered empty`);
    return { event_action: action, dedup_key: key };
  }
  const p = rule.payload;
  let summary = opt(p.summary);
  if (summary === undefined) {
    summary = defaultSummary(doc);
    if (p.summary) fallback('summary', '', summary.slice(0, 60));
  }
  const source = p.source ? p.source.render(scope) : defaultSource(doc);
  let timestamp = opt(p.timestamp);
  if (timestamp !== undefined) {
    const iso = iso8601(timestamp);
    if (iso === '') {
      fallback('timestamp', timestamp, '(left out)');
      timestamp = undefined;
    } else timestamp = iso;
  }
  const details = renderDetails(p.details, scope);
  const links = renderLinks(rule, scope);

  if (action === 'change') {
    const body: ChangeEventBody = {
      payload: {
        summary,
        ...(source ? { source } : {}),
        ...(timestamp ? { timestamp } : {}),
        ...(details ? { custom_details: details } : {}),
      },
    };
    if (links.length) body.links = links;
    return body;
  }

  let severity: Severity = FALLBACK_SEVERITY;
  if (p.severity) {
    const got = p.severity.render(scope);
    const s = got.toLowerCase();
    if (SEVERITY_SET.has(s)) severity = s as Severity;
    else fallback('severity', got, FALLBACK_SEVERITY);
  }
  const payload: AlertPayload = { summary, source, severity };
  if (timestamp) payload.timestamp = timestamp;
  const component = opt(p.component);
  if (component) payload.component = component;
  const group = opt(p.group);
  if (group) payload.group = group;
  const cls = opt(p.class);
  if (cls) payload.class = cls;
  if (details) payload.custom_details = details;

  const body: AlertEventBody = { event_action: 'trigger' };
  const key = opt(rule.dedupKey);
  if (key !== undefined) body.dedup_key = key;
  body.payload = payload;
  if (links.length) body.links = links;
  const images = renderImages(rule, scope);
  if (images.length) body.images = images;
  const client = opt(rule.client);
  if (client) body.client = client;
  const clientUrl = opt(rule.clientUrl);
  if (clientUrl) body.client_url = clientUrl;
  return body;
}

/**
 * OutboundEvent.time: the payload's timestamp for triggers and changes (already rendered and
 * checked), the rule's timestamp template rendered for acknowledges and resolves, else the SNS
 * Timestamp.
 */
function eventTime(
  rule: CompiledRule,
  body: EventBody,
  scope: object,
  doc: InputDocument,
): EventTime | undefined {
  let iso = 'payload' in body ? body.payload?.timestamp : undefined;
  if (iso === undefined && !('payload' in body) && rule.payload.timestamp) {
    try {
      iso = iso8601(rule.payload.timestamp.render(scope)) || undefined;
    } catch {
      // The SNS Timestamp below: a resolve is never lost over its time.
    }
  }
  const at = iso === undefined ? Number.NaN : Date.parse(iso);
  return Number.isFinite(at) ? { at, from: 'payload' } : snsTime(doc);
}

function snsTime(doc: InputDocument): EventTime | undefined {
  const at = doc.timestamp ? Date.parse(doc.timestamp) : Number.NaN;
  return Number.isFinite(at) ? { at, from: 'sns' } : undefined;
}

function renderDetails(spec: CompiledDetails | null, scope: object): Record<string, unknown> | undefined {
  if (!spec) return undefined;
  if (spec.kind === 'path') {
    const v = getPath(scope, spec.path);
    if (v === undefined) return undefined;
    return isRecord(v) ? v : { value: v };
  }
  const out: Record<string, unknown> = {};
  let any = false;
  for (const [key, entry] of spec.entries) {
    const v = 'render' in entry ? entry.render(scope) : getPath(scope, entry.path);
    // A field AWS left out is left out here too, rather than shown as "".
    if (v === undefined || v === '') continue;
    out[key] = v;
    any = true;
  }
  return any ? out : undefined;
}

function renderLinks(rule: CompiledRule, scope: object): Link[] {
  const out: Link[] = [];
  for (const l of rule.links) {
    const href = l.href.render(scope);
    if (!href) continue;
    const text = l.text?.render(scope);
    out.push(text ? { href, text } : { href });
  }
  return out;
}

function renderImages(rule: CompiledRule, scope: object): Image[] {
  const out: Image[] = [];
  for (const img of rule.images) {
    const src = img.src.render(scope);
    if (!src) continue;
    const image: Image = { src };
    const href = img.href?.render(scope);
    if (href) image.href = href;
    const alt = img.alt?.render(scope);
    if (alt) image.alt = alt;
    out.push(image);
  }
  return out;
}

/** A summary when a rule gives none (or it renders empty): the Subject, else the message's start. */
export function defaultSummary(doc: InputDocument): string {
  if (doc.subject?.trim()) return doc.subject.trim();
  const text = toText(doc.message).trim();
  if (text) return text.length > DEFAULT_SUMMARY_CHARS ? text.slice(0, DEFAULT_SUMMARY_CHARS) : text;
  return `Empty message ${doc.messageId} on ${doc.topic || 'an unknown topic'}`;
}

function defaultSource(doc: InputDocument): string {
  return doc.topic || 'aws';
}

function emergencyBody(doc: InputDocument, failedRules: readonly string[]): AlertEventBody {
  return {
    event_action: 'trigger',
    ...(doc.messageId ? { dedup_key: `pd-relay:${doc.messageId}` } : {}),
    payload: {
      summary: defaultSummary(doc),
      source: defaultSource(doc),
      severity: 'warning',
      custom_details: {
        pd_relay: `No rule could render this message (failed: ${failedRules.join(', ')}); see the relay's log.`,
        topic: doc.topic,
        subject: doc.subject,
        message: doc.message,
      },
    },
  };
}

function firstRoute(routes: ReadonlySet<string>): string {
  for (const r of routes) return r;
  return DEFAULT_ROUTE;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
