import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { decodeNotification } from '../../src/decode/decode.js';
import { wrapMessage } from '../../src/decode/sample.js';
import type { InputDocument } from '../../src/decode/types.js';
import { formatProblem } from '../../src/errors.js';
import { createLogger } from '../../src/log/logger.js';
import { createRulesInstruments } from '../../src/metrics/rules.js';
import { hashDedupKey, type TruncatedField } from '../../src/pagerduty/limits.js';
import { createRuleEngine, EMERGENCY_RULE } from '../../src/rules/engine.js';
import { buildRuleSet, type RuleSet } from '../../src/rules/loader.js';
import type { OutboundEvent } from '../../src/rules/types.js';

function ruleSet(yaml: string, routes = ['default', 'team-a']): RuleSet {
  const result = buildRuleSet(
    [{ path: '/t/rules.yaml', display: 'rules.yaml', text: yaml, builtin: false }],
    {
      routes,
    },
  );
  if (!result.ok) throw new Error(result.problems.map(formatProblem).join('\n'));
  return result.ruleSet;
}

function doc(message: unknown, over: { subject?: string; messageId?: string } = {}): InputDocument {
  const raw = typeof message === 'string' ? message : JSON.stringify(message);
  return decodeNotification(
    wrapMessage(raw, undefined, {
      TopicArn: 'arn:aws:sns:us-east-1:123456789012:events',
      ...(over.subject ? { Subject: over.subject } : {}),
      ...(over.messageId ? { MessageId: over.messageId } : {}),
    }),
    'default',
  );
}

/** An engine with real instruments on a fresh registry, and the JSON log lines it wrote. */
function instrumented(set: RuleSet, onTruncation?: (f: readonly TruncatedField[], e: OutboundEvent) => void) {
  const registry = new Registry();
  const logs: Array<Record<string, unknown>> = [];
  const logger = createLogger({
    level: 'debug',
    destination: { write: (s: string) => logs.push(JSON.parse(s)) },
  });
  const engine = createRuleEngine(set, {
    instruments: createRulesInstruments(registry, logger),
    ...(onTruncation ? { onTruncation } : {}),
  });
  const metric = async (name: string) => (await registry.getSingleMetric(name)?.get())?.values ?? [];
  return { engine, logs, metric };
}

describe('rule order', () => {
  const set = ruleSet(`
- name: first
  match: { message: { n: [1, 2] } }
  continue: true
  action: change
  payload: { summary: 'audit {{ message.n }}' }
- name: second
  match: { message: { n: [1] } }
  dedup_key: 'k{{ message.n }}'
  payload: { summary: 'page {{ message.n }}' }
- name: third
  match: { message: { n: [1, 2, 3] } }
  action: drop
`);

  it('the first match decides unless it says continue', () => {
    const ev = createRuleEngine(set).evaluate(doc({ n: 1 }));
    expect(ev.rule).toBe('second');
    expect(ev.action).toBe('trigger');
    expect(ev.matches).toEqual([
      { rule: 'first', action: 'change' },
      { rule: 'second', action: 'trigger' },
    ]);
    expect(ev.events.map((e) => [e.rule, e.action])).toEqual([
      ['first', 'change'],
      ['second', 'trigger'],
    ]);
  });

  it('a drop after a continue keeps the earlier events', () => {
    const ev = createRuleEngine(set).evaluate(doc({ n: 2 }));
    expect(ev.rule).toBe('third');
    expect(ev.action).toBe('drop');
    expect(ev.events.map((e) => e.rule)).toEqual(['first']);
  });

  it('nothing matched: no rule, drop, counted and logged', async () => {
    const { engine, logs, metric } = instrumented(set);
    const ev = engine.evaluate(doc({ n: 9 }));
    expect(ev).toEqual({ rule: null, action: 'drop', matches: [], events: [] });
    expect((await metric('pdrelay_rule_unmatched_total'))[0]?.value).toBe(1);
    expect(logs.find((l) => l.msg === 'No rule matched; the message was dropped.')).toMatchObject({
      level: 'warn',
    });
  });

  it('every decision is counted by rule and action, drops included', async () => {
    const { engine, metric } = instrumented(set);
    engine.evaluate(doc({ n: 2 }));
    engine.evaluate(doc({ n: 3 }));
    const values = await metric('pdrelay_rule_matches_total');
    expect(values.map((v) => [v.labels.rule, v.labels.action, v.value])).toEqual([
      ['first', 'change', 1],
      ['third', 'drop', 2],
    ]);
  });
});

describe('event bodies', () => {
  const set = ruleSet(`
- name: alert
  match: { message: { kind: [alert] } }
  route: team-a
  dedup_key: '{{ message.key }}'
  payload:
    summary: '{{ message.title }}'
    source: '{{ message.host }}'
    severity: '{{ message.sev }}'
    timestamp: '{{ message.at }}'
    component: '{{ message.component }}'
    group: prod
    class: '{{ message.class }}'
    custom_details:
      title: '{{ message.title }}'
      missing: '{{ message.nothing }}'
      whole: { path: message.extra }
  links:
    - { href: 'https://example.com/{{ message.key }}', text: Runbook }
    - { href: '{{ message.nothing }}', text: dropped when empty }
  images:
    - { src: 'https://example.com/graph.png', alt: graph }
  client: pd-relay
  client_url: https://example.com
- name: fix
  match: { message: { kind: [fix] } }
  action: resolve
  dedup_key: '{{ message.key }}'
- name: fix-timed
  match: { message: { kind: [fix-timed] } }
  action: resolve
  dedup_key: '{{ message.key }}'
  payload:
    timestamp: '{{ message.at }}'
- name: ack
  match: { message: { kind: [ack] } }
  action: acknowledge
  dedup_key: '{{ message.key }}'
- name: deploy
  match: { message: { kind: [deploy] } }
  action: change
  payload:
    summary: 'Deployed {{ message.version }}'
    timestamp: '{{ message.at }}'
    custom_details: message
  links: [{ href: 'https://ci.example.com/{{ message.version }}' }]
- name: plain
  match: { message: { kind: [plain] } }
  payload:
    custom_details: message.n
`);
  const engine = createRuleEngine(set);

  it('a trigger carries every rendered field, empty ones left out', () => {
    const ev = engine.evaluate(
      doc({
        kind: 'alert',
        key: 'db-1/disk',
        title: 'Disk full',
        host: 'db-1',
        sev: 'CRITICAL',
        at: '2024-03-01T10:00:00+01:00',
        component: 'postgres',
        class: 'disk',
        extra: { used: '99%' },
      }),
    );
    expect(ev.events).toEqual([
      {
        route: 'team-a',
        rule: 'alert',
        action: 'trigger',
        dedupKey: 'db-1/disk',
        body: {
          event_action: 'trigger',
          dedup_key: 'db-1/disk',
          payload: {
            summary: 'Disk full',
            source: 'db-1',
            severity: 'critical',
            timestamp: '2024-03-01T09:00:00.000Z',
            component: 'postgres',
            group: 'prod',
            class: 'disk',
            custom_details: { title: 'Disk full', whole: { used: '99%' } },
          },
          links: [{ href: 'https://example.com/db-1/disk', text: 'Runbook' }],
          images: [{ src: 'https://example.com/graph.png', alt: 'graph' }],
          client: 'pd-relay',
          client_url: 'https://example.com',
        },
        time: { at: Date.parse('2024-03-01T09:00:00.000Z'), from: 'payload' },
      },
    ]);
  });

  it.each(['fix', 'ack'])(
    '%s bodies carry only event_action and dedup_key; their time is the SNS Timestamp',
    (kind) => {
      const d = doc({ kind, key: 'db-1/disk', title: 'ignored' });
      const ev = engine.evaluate(d);
      const action = kind === 'fix' ? 'resolve' : 'acknowledge';
      expect(ev.events).toEqual([
        {
          route: 'default',
          rule: kind,
          action,
          dedupKey: 'db-1/disk',
          body: { event_action: action, dedup_key: 'db-1/disk' },
          time: { at: Date.parse(d.timestamp), from: 'sns' },
        },
      ]);
      expect(Number.isFinite(Date.parse(d.timestamp))).toBe(true);
    },
  );

  it("a resolve's time is its rule's payload.timestamp, though PagerDuty does not get it; the SNS Timestamp when that is not a date", () => {
    const at = engine.evaluate(doc({ kind: 'fix-timed', key: 'k', at: '2024-03-01T10:31:00.000+0000' }));
    expect(at.events[0]?.body).toEqual({ event_action: 'resolve', dedup_key: 'k' });
    expect(at.events[0]?.time).toEqual({ at: Date.parse('2024-03-01T10:31:00.000Z'), from: 'payload' });
    const d = doc({ kind: 'fix-timed', key: 'k', at: 'soon' });
    expect(engine.evaluate(d).events[0]?.time).toEqual({ at: Date.parse(d.timestamp), from: 'sns' });
  });

  it('change produces a change event body', () => {
    const ev = engine.evaluate(doc({ kind: 'deploy', version: 'v42', at: '2024-03-01T10:00:00Z' }));
    expect(ev.action).toBe('change');
    expect(ev.events[0]).toEqual({
      route: 'default',
      rule: 'deploy',
      action: 'change',
      dedupKey: null,
      body: {
        payload: {
          summary: 'Deployed v42',
          source: 'arn:aws:sns:us-east-1:123456789012:events',
          timestamp: '2024-03-01T10:00:00.000Z',
          custom_details: { kind: 'deploy', version: 'v42', at: '2024-03-01T10:00:00Z' },
        },
        links: [{ href: 'https://ci.example.com/v42' }],
      },
      time: { at: Date.parse('2024-03-01T10:00:00Z'), from: 'payload' },
    });
  });

  it('defaults: no dedup key, error severity, Subject as summary, topic as source, scalar details wrapped', () => {
    const ev = engine.evaluate(doc({ kind: 'plain', n: 7 }, { subject: 'Something happened' }));
    expect(ev.events[0]?.dedupKey).toBeNull();
    expect(ev.events[0]?.body).toEqual({
      event_action: 'trigger',
      payload: {
        summary: 'Something happened',
        source: 'arn:aws:sns:us-east-1:123456789012:events',
        severity: 'error',
        custom_details: { value: 7 },
      },
    });
  });

  it('limits apply: a long dedup key is hashed, dedupKey follows, truncations are reported', () => {
    const truncations: Array<[readonly TruncatedField[], string]> = [];
    const { engine } = instrumented(set, (fields, e) => truncations.push([fields, e.rule]));
    const key = 'k'.repeat(300);
    const ev = engine.evaluate(doc({ kind: 'alert', key, title: 't'.repeat(2000), host: 'h', sev: 'info' }));
    const event = ev.events[0] as OutboundEvent;
    expect(event.dedupKey).toBe(hashDedupKey(key));
    expect((event.body as { dedup_key: string }).dedup_key).toBe(event.dedupKey);
    expect((event.body as { payload: { summary: string } }).payload.summary).toHaveLength(1024);
    expect(truncations).toEqual([[['dedup_key', 'summary'], 'alert']]);
  });
});

describe('invalid rendered values fall back, are logged and counted', () => {
  const set = ruleSet(`
- name: dynamic
  match: { message: { t: [{ exists: true }] } }
  action: '{{ message.action }}'
  route: '{{ message.route }}'
  dedup_key: k
  payload:
    summary: '{{ message.summary }}'
    severity: '{{ message.severity }}'
    timestamp: '{{ message.at }}'
`);
  const valid = {
    t: 1,
    action: 'trigger',
    route: 'team-a',
    summary: 'ok',
    severity: 'info',
    at: '2024-03-01T10:00:00Z',
  };

  it.each<[string, Record<string, unknown>, Record<string, unknown>]>([
    ['action', { action: 'page-everyone' }, { route: 'team-a', body: { event_action: 'trigger' } }],
    ['severity', { severity: 'sev1' }, { body: { payload: { severity: 'error' } } }],
    ['severity', { severity: '' }, { body: { payload: { severity: 'error' } } }],
    ['route', { route: 'team-z' }, { route: 'default' }],
    ['timestamp', { at: 'yesterday' }, { body: { payload: { summary: 'ok' } } }],
    ['summary', { summary: '' }, { body: { payload: { summary: expect.stringContaining('"summary":""') } } }],
  ])('%s %j', async (field, change, expected) => {
    const { engine, logs, metric } = instrumented(set);
    const ev = engine.evaluate(doc({ ...valid, ...change }));
    const event = ev.events[0] as OutboundEvent;
    expect(event).toMatchObject(expected);
    const timestamp = (event.body as { payload?: { timestamp?: string } }).payload?.timestamp;
    expect(timestamp).toBe(field === 'timestamp' ? undefined : '2024-03-01T10:00:00.000Z');
    const values = await metric('pdrelay_rule_render_fallbacks_total');
    expect(values.map((v) => [v.labels.rule, v.labels.field, v.value])).toEqual([['dynamic', field, 1]]);
    expect(
      logs.find((l) => l.msg === 'Rule rendered an invalid value; a safe default was used.'),
    ).toMatchObject({
      level: 'warn',
      rule: 'dynamic',
      field,
    });
  });

  it('valid dynamic values are used as rendered (case-insensitive action and severity)', async () => {
    const { engine, metric } = instrumented(set);
    const ev = engine.evaluate(doc({ ...valid, action: 'Trigger', severity: 'WARNING' }));
    expect(ev.events[0]).toMatchObject({
      route: 'team-a',
      action: 'trigger',
      body: { payload: { severity: 'warning' } },
    });
    expect(await metric('pdrelay_rule_render_fallbacks_total')).toEqual([]);
  });
});

describe('for_each', () => {
  const set = ruleSet(`
- name: findings
  match: { message: { scan: [true] } }
  for_each: message.findings
  action: '{% if item.state == "done" %}resolve{% elsif item.state == "noise" %}drop{% else %}trigger{% endif %}'
  dedup_key: '{{ item.id }}'
  payload: { summary: '{{ item_index }}: {{ item.title }} ({{ message.source }})' }
- name: catch-all
  fallback: true
  dedup_key: 'sns/{{ messageId }}'
  payload: { summary: caught }
`);
  const engine = createRuleEngine(set);

  it('emits one event per element, skipping dropped ones', () => {
    const ev = engine.evaluate(
      doc({
        scan: true,
        source: 'scanner',
        findings: [
          { id: 'a', state: 'new', title: 'A' },
          { id: 'b', state: 'noise', title: 'B' },
          { id: 'c', state: 'done', title: 'C' },
        ],
      }),
    );
    expect(ev.action).toBe('trigger');
    expect(ev.events.map((e) => [e.action, e.dedupKey])).toEqual([
      ['trigger', 'a'],
      ['resolve', 'c'],
    ]);
    expect(ev.events[0]?.body).toMatchObject({ payload: { summary: '0: A (scanner)' } });
  });

  it('all elements dropped is a drop', () => {
    const ev = engine.evaluate(doc({ scan: true, findings: [{ id: 'b', state: 'noise' }] }));
    expect(ev).toMatchObject({ rule: 'findings', action: 'drop', events: [] });
  });

  it('a path that is not a list fails the rule; the next matching rule takes the message', () => {
    const ev = engine.evaluate(doc({ scan: true, findings: 'none' }));
    expect(ev.rule).toBe('catch-all');
    expect(ev.events).toHaveLength(1);
  });
});

describe('rules that fail to render', () => {
  const set = ruleSet(`
- name: fragile
  match: { message: { blob: [{ exists: true }] } }
  payload: { summary: '{{ message.blob | base64_decode }}' }
- name: keyless-resolve
  match: { message: { state: [OK] } }
  action: resolve
- name: catch-all
  fallback: true
  payload: { summary: caught }
`);

  it('fall through to the next matching rule, logged and counted', async () => {
    const { engine, logs, metric } = instrumented(set);
    const ev = engine.evaluate(doc({ blob: '!!' }));
    expect(ev.rule).toBe('catch-all');
    expect(ev.events[0]?.action).toBe('trigger');
    const failures = await metric('pdrelay_rule_render_failures_total');
    expect(failures.map((v) => [v.labels.rule, v.value])).toEqual([['fragile', 1]]);
    expect(logs.find((l) => l.msg === 'Rule failed to render; trying the next matching rule.')).toMatchObject(
      {
        level: 'error',
        rule: 'fragile',
      },
    );
  });

  it('a resolve without a dedup key is a render failure (PagerDuty could not use it)', () => {
    const ev = createRuleEngine(set).evaluate(doc({ state: 'OK' }));
    expect(ev.rule).toBe('catch-all');
  });

  it('when no matching rule can render, an emergency event still pages', async () => {
    const noCatchAll = ruleSet(`
- name: fragile
  match: { message: { blob: [{ exists: true }] } }
  payload: { summary: '{{ message.blob | base64_decode }}' }
`);
    const { engine, metric } = instrumented(noCatchAll);
    const ev = engine.evaluate(doc({ blob: '!!' }, { subject: 'Backup failed', messageId: 'm-1' }));
    expect(ev.rule).toBe(EMERGENCY_RULE);
    expect(ev.events).toHaveLength(1);
    expect(ev.events[0]).toMatchObject({
      route: 'default',
      action: 'trigger',
      dedupKey: 'pd-relay:m-1',
      body: { payload: { summary: 'Backup failed', severity: 'warning' } },
    });
    expect((await metric('pdrelay_rule_emergency_events_total'))[0]?.value).toBe(1);
  });
});
