import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/load.js';
import { INGRESS_RESULTS, SNS_MESSAGE_TYPES, systemClock } from '../../src/ingress/sns/types.js';
import { createLogger } from '../../src/log/logger.js';
import { type Relay, startRelay } from '../../src/main.js';
import { createDeliveryMetrics } from '../../src/metrics/delivery.js';
import { createIngressInstruments } from '../../src/metrics/ingress.js';
import { createRegistry } from '../../src/metrics/registry.js';
import { createReloadInstruments, createRulesInstruments } from '../../src/metrics/rules.js';
import { RETRY_REASONS } from '../../src/pagerduty/client.js';
import { EVENT_ACTIONS } from '../../src/pagerduty/types.js';
import { RULE_ACTIONS } from '../../src/rules/loader.js';
import { DEAD_LETTER_REASONS } from '../../src/spool/spool.js';
import { FakePagerDuty, testRoutingKey } from '../helpers/fake-pagerduty.js';
import { type Envelope, FakeSns } from '../helpers/fake-sns.js';
import { tempDir, writeIn } from '../helpers/temp.js';
import { checkPromQL, type MetricSpec } from '../k8s/metric-catalogue.js';
import { PROMTOOL_INSTALL, requireTool } from '../k8s/tools.js';
import { codeBlocks, codeSpan, requireDoc, tableRows } from './markdown.js';

/**
 * docs/metrics.md is the reference of every metric the relay exposes. This test starts a relay
 * in-process, drives traffic through every stage (a subscription, signed notifications, a
 * redelivery, a forgery, a foreign topic, a 429, a PagerDuty 400 that becomes a dead letter, a
 * summary cut to PagerDuty's limit, a rule that fails to render, a full rate window, reloads that
 * pass and fail), reads /metrics, and holds the document to what it finds: the same pdrelay_*
 * names, types and label names (label names of metrics without samples come from the
 * instruments in src/metrics/*.ts), every observed label value among the documented ones, and
 * the exposition clean under `promtool check metrics`.
 */

const TOPIC = 'arn:aws:sns:eu-west-1:123456789012:alarms';
const FOREIGN_TOPIC = 'arn:aws:sns:eu-west-1:999999999999:not-ours';
const KEY = testRoutingKey(1);

const PROBE_RULES = `
- name: metrics-probe
  match: { kind: [json], message: { probe: [cut] } }
  dedup_key: "probe/{{ message.id }}"
  payload:
    summary: "{{ message.text }}"
    severity: "{{ message.severity }}"
- name: metrics-probe-broken
  match: { kind: [json], message: { probe: [broken] } }
  for_each: message.items
`;

function alarm(state: 'ALARM' | 'OK'): string {
  return JSON.stringify({
    AlarmName: 'api-5xx',
    AWSAccountId: '123456789012',
    NewStateValue: state,
    NewStateReason: 'Threshold Crossed',
    StateChangeTime: '2026-11-20T10:00:00.000+0000',
    AlarmArn: 'arn:aws:cloudwatch:eu-west-1:123456789012:alarm:api-5xx',
    Trigger: { MetricName: '5XXError', Namespace: 'AWS/ApiGateway', Dimensions: [] },
  });
}

interface Family {
  type: string;
  help: string;
  samples: Array<{ name: string; labels: Record<string, string>; value: number }>;
}

/** The text exposition format, by metric family (histogram series folded into their family). */
function parseExposition(text: string): Map<string, Family> {
  const families = new Map<string, Family>();
  const family = (name: string) => {
    let f = families.get(name);
    if (!f) {
      f = { type: '', help: '', samples: [] };
      families.set(name, f);
    }
    return f;
  };
  for (const line of text.split('\n')) {
    const meta = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(line);
    if (meta) {
      const f = family(meta[2] as string);
      if (meta[1] === 'TYPE') f.type = meta[3] as string;
      else f.help = meta[3] as string;
      continue;
    }
    const sample = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)/.exec(line);
    if (!sample) continue;
    const name = sample[1] as string;
    const base = /^(.*)_(bucket|sum|count)$/.exec(name)?.[1];
    const owner = base && families.get(base)?.type === 'histogram' ? base : name;
    const labels: Record<string, string> = {};
    for (const m of (sample[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g))
      labels[m[1] as string] = (m[2] as string).replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
    family(owner).samples.push({ name, labels, value: Number(sample[3]) });
  }
  return families;
}

/** Label names of every instrument in src/metrics/*.ts, registered on a registry of their own. */
function instrumentLabels(): Map<string, string[]> {
  const registry = createRegistry();
  const logger = createLogger({ level: 'silent' });
  createIngressInstruments({ registry, logger, clock: systemClock });
  createRulesInstruments(registry, logger);
  createReloadInstruments(registry, logger);
  createDeliveryMetrics(registry, logger).observe({
    lanes: () => [],
    counts: () => undefined,
    keysOwned: () => 0,
    keysUnowned: () => undefined,
  });
  const out = new Map<string, string[]>();
  for (const metric of registry.getMetricsAsArray()) {
    const m = metric as unknown as { name: string; labelNames?: string[] };
    if (m.name.startsWith('pdrelay_')) out.set(m.name, [...(m.labelNames ?? [])].sort());
  }
  return out;
}

// ---- the document ------------------------------------------------------------------------------

const doc = requireDoc('docs/metrics.md');
const TYPES = new Set(['counter', 'gauge', 'histogram']);

interface DocumentedMetric {
  type: string;
  labels: string[];
  line: number;
}
/** `| \`name\` | type | \`label\`, … | meaning |` rows. */
const documented = new Map<string, DocumentedMetric>();
/** `| \`name\` | \`label\` | \`value\` (why), … |` rows; no code span outside parentheses: an open set. */
const documentedValues = new Map<string, { values: string[] | null; line: number }>();
for (const row of tableRows(doc)) {
  const name = codeSpan(row.cells[0] ?? '');
  if (!name?.startsWith('pdrelay_')) continue;
  const second = row.cells[1] ?? '';
  if (TYPES.has(second)) {
    const labels = [...(row.cells[2] ?? '').matchAll(/`([^`]+)`/g)].map((m) => m[1] as string).sort();
    documented.set(name, { type: second, labels, line: row.line });
  } else if (codeSpan(second) !== undefined) {
    // Values are the code spans outside parentheses; parentheses explain them.
    let text = row.cells[2] ?? '';
    while (/\([^()]*\)/.test(text)) text = text.replace(/\([^()]*\)/g, '');
    const spans = [...text.matchAll(/`([^`]*)`/g)].map((m) => m[1] as string);
    documentedValues.set(`${name} ${codeSpan(second)}`, {
      values: spans.length ? spans : null,
      line: row.line,
    });
  }
}

// ---- the relay -----------------------------------------------------------------------------------

describe('docs/metrics.md against a running relay', () => {
  let sns: FakeSns;
  let pd: FakePagerDuty;
  let relay: Relay;
  let cleanup: () => void;
  let exposition = '';
  let families: Map<string, Family>;

  beforeAll(async () => {
    sns = await FakeSns.start();
    pd = await FakePagerDuty.start();
    const t = tempDir();
    cleanup = t.cleanup;
    mkdirSync(join(t.dir, 'rules'));
    const rulesFile = writeIn(t.dir, 'rules/probe.yaml', PROBE_RULES);
    const file = writeIn(
      t.dir,
      'config.yaml',
      [
        'server: { host: 127.0.0.1, port: 0 }',
        'metrics: { host: 127.0.0.1, port: 0 }',
        `sns: { topics: ["${TOPIC}"], certHostPattern: '${sns.certHostPattern}' }`,
        `pagerduty: { url: "${pd.url}" }`,
        // One request per 300 ms: the retry after the 429 (which counts) always waits for the window.
        `routes: { default: { keys: ["${KEY}"], ratePerMinute: 1 } }`,
        'rules: { paths: [rules], watch: false }',
        'delivery: { minBackoffMs: 10, maxBackoffMs: 50, rateWindowMs: 300 }',
      ].join('\n'),
    );
    relay = await startRelay(loadConfig({ file, env: {} }), {
      logger: createLogger({ level: 'silent' }),
      snsCa: sns.caPem,
    });
    const post = async (envelope: Envelope, path = '/sns') =>
      (
        await fetch(`http://127.0.0.1:${relay.snsAddress.port}${path}`, {
          method: 'POST',
          headers: { 'x-amz-sns-message-type': String(envelope.Type) },
          body: JSON.stringify(envelope),
        })
      ).status;
    const json = (message: unknown) => sns.notification({ topic: TOPIC, message: JSON.stringify(message) });

    expect(await post(sns.subscriptionConfirmation({ topic: TOPIC }))).toBe(200);
    pd.script({
      status: 429,
      body: '{"status":"throttle event","message":"Requests for this service are arriving too quickly."}',
    });
    const trigger = sns.notification({ topic: TOPIC, message: alarm('ALARM') });
    expect(await post(trigger)).toBe(200);
    expect(await post(trigger)).toBe(200); // a redelivery
    expect(await post(sns.notification({ topic: TOPIC, message: alarm('OK') }), '/sns/team-a')).toBe(200);
    const forged = sns.notification({ topic: TOPIC, message: alarm('OK') });
    forged.Message = alarm('ALARM');
    expect(await post(forged)).toBe(403);
    expect(await post(sns.notification({ topic: FOREIGN_TOPIC, message: alarm('ALARM') }))).toBe(403);
    // PagerDuty refuses this one (400): a dead letter. Its summary is over 1024 characters and its
    // severity is not one PagerDuty knows: a truncation and a render fallback.
    pd.rejectWhen((body) => (body.dedup_key === 'probe/refused' ? ['Event object is invalid'] : null));
    const refused = { probe: 'cut', id: 'refused', text: 'x'.repeat(2000), severity: 'sev1' };
    expect(await post(json(refused))).toBe(200);
    expect(await post(json({ probe: 'broken', items: 'not a list' }))).toBe(200);

    expect(relay.reload('manual').ok).toBe(true);
    writeFileSync(
      rulesFile,
      `${PROBE_RULES}\n- name: metrics-probe-typo\n  payload: { summary: "{{ x | nope }}" }\n`,
    );
    expect(relay.reload('signal').ok).toBe(false);

    const metricsUrl = `http://127.0.0.1:${relay.metricsAddress.port}/metrics`;
    const deadline = Date.now() + 15_000;
    for (;;) {
      exposition = await (await fetch(metricsUrl)).text();
      families = parseExposition(exposition);
      const delivered = families
        .get('pdrelay_events_total')
        ?.samples.filter((s) => s.labels.outcome === 'delivered')
        .reduce((n, s) => n + s.value, 0);
      // ALARM, OK and the catch-all's page for the broken probe: delivered; the refused one: a dead letter.
      if (delivered === 3 && /^pdrelay_dead_letters 1$/m.test(exposition)) break;
      if (Date.now() > deadline) throw new Error(`Timed out waiting for deliveries:\n${exposition}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  });

  afterAll(async () => {
    await relay?.close();
    await sns?.close();
    await pd?.close();
    cleanup?.();
  });

  const sample = (name: string, labels: Record<string, string> = {}) =>
    (families.get(name)?.samples ?? []).find((s) =>
      Object.entries(labels).every(([k, v]) => s.labels[k] === v),
    );

  it('drove traffic through every stage (so that the checks below see real samples)', () => {
    for (const result of ['confirmed', 'accepted', 'duplicate', 'bad_signature', 'topic_not_allowed'])
      expect(sample('pdrelay_sns_messages_total', { result })?.value, result).toBeGreaterThan(0);
    expect(sample('pdrelay_last_message_timestamp_seconds', { endpoint: 'team-a' })).toBeDefined();
    expect(sample('pdrelay_delivery_retries_total', { reason: 'rate_limited' })?.value).toBe(1);
    expect(sample('pdrelay_pagerduty_requests_total', { code_class: '4xx' })?.value).toBe(2);
    expect(sample('pdrelay_dead_letters_total', { reason: 'rejected' })?.value).toBe(1);
    expect(sample('pdrelay_payload_truncations_total', { field: 'summary' })?.value).toBe(1);
    expect(sample('pdrelay_rule_render_fallbacks_total', { field: 'severity' })?.value).toBe(1);
    expect(sample('pdrelay_rule_render_failures_total', { rule: 'metrics-probe-broken' })?.value).toBe(1);
    expect(sample('pdrelay_config_reloads_total', { trigger: 'signal', result: 'failure' })?.value).toBe(1);
    expect(sample('pdrelay_config_last_reload_successful')?.value).toBe(0);
    const waits = families
      .get('pdrelay_rate_limit_wait_seconds')
      ?.samples.find((s) => s.name.endsWith('_count'));
    expect(waits?.value ?? 0).toBeGreaterThan(0);
    expect(sample('pdrelay_queue_depth', { route: 'default', key: 'default-1' })).toBeDefined();
  });

  it('documents every pdrelay_* metric the relay exposes, and no other', () => {
    const exposed = [...families.keys()].filter((n) => n.startsWith('pdrelay_')).sort();
    expect(exposed.length).toBeGreaterThan(25);
    expect([...documented.keys()].sort()).toEqual(exposed);
  });

  it('exposes what src/metrics/*.ts registers, nothing less and nothing more', () => {
    const exposed = [...families.keys()].filter((n) => n.startsWith('pdrelay_')).sort();
    expect([...instrumentLabels().keys()].sort()).toEqual(exposed);
  });

  it('documents each metric with its type and its label names', () => {
    const labels = instrumentLabels();
    for (const [name, f] of families) {
      const d = documented.get(name);
      if (!d) continue;
      const where = `${name} (docs/metrics.md:${d.line})`;
      expect(`${where} ${d.type}`).toBe(`${where} ${f.type}`);
      expect(`${where} ${d.labels.join(',')}`).toBe(`${where} ${(labels.get(name) ?? []).join(',')}`);
      for (const s of f.samples) {
        const observed = Object.keys(s.labels).filter((l) => !(l === 'le' && f.type === 'histogram'));
        for (const l of observed) expect(d.labels, `${where}: sample label ${l}`).toContain(l);
      }
    }
  });

  it('lists the values of every label, and every observed value is among them', () => {
    for (const [name, d] of documented) {
      for (const label of d.labels)
        expect(documentedValues.has(`${name} ${label}`), `values of ${name} ${label}`).toBe(true);
    }
    for (const key of documentedValues.keys()) {
      const [name, label] = key.split(' ') as [string, string];
      expect(documented.get(name)?.labels ?? [], `docs/metrics.md lists values of ${key}`).toContain(label);
    }
    for (const [name, f] of families) {
      for (const s of f.samples) {
        for (const [label, value] of Object.entries(s.labels)) {
          const values = documentedValues.get(`${name} ${label}`)?.values;
          if (values) expect(values, `${name}{${label}="${value}"}`).toContain(value);
        }
      }
    }
  });

  it('lists exactly the values the source defines for the fixed label sets', () => {
    const values = (key: string) => [...(documentedValues.get(key)?.values ?? [])].sort();
    expect(values('pdrelay_sns_messages_total result')).toEqual([...INGRESS_RESULTS].sort());
    expect(values('pdrelay_sns_messages_total type')).toEqual([...SNS_MESSAGE_TYPES, 'unknown'].sort());
    expect(values('pdrelay_delivery_retries_total reason')).toEqual([...RETRY_REASONS].sort());
    expect(values('pdrelay_dead_letters_total reason')).toEqual([...DEAD_LETTER_REASONS].sort());
    expect(values('pdrelay_events_total action')).toEqual([...EVENT_ACTIONS].sort());
    expect(values('pdrelay_rule_matches_total action')).toEqual([...RULE_ACTIONS].sort());
  });

  it('passes `promtool check metrics`', () => {
    requireTool('promtool', ['--version'], PROMTOOL_INSTALL);
    const lint = spawnSync('promtool', ['check', 'metrics'], { input: exposition, encoding: 'utf8' });
    expect(`${lint.stdout}${lint.stderr}`.trim()).toBe('');
    expect(lint.status).toBe(0);
  });

  it('has PromQL examples, here and in the runbooks, that parse and use only documented metrics and labels', () => {
    requireTool('promtool', ['--version'], PROMTOOL_INSTALL);
    const blocks = [doc, requireDoc('docs/operations.md')].flatMap((d) =>
      codeBlocks(d).filter((b) => b.lang === 'promql'),
    );
    expect(blocks.filter((b) => b.doc === 'docs/metrics.md').length).toBeGreaterThan(0);
    expect(blocks.filter((b) => b.doc === 'docs/operations.md').length).toBeGreaterThan(0);
    const catalogue = new Map<string, MetricSpec>([['up', { type: 'gauge', labels: [] }]]);
    for (const [name, d] of documented)
      catalogue.set(name, { type: d.type as MetricSpec['type'], labels: d.labels });
    for (const b of blocks) expect(checkPromQL(b.text, catalogue), `${b.doc}:${b.line}`).toEqual([]);
    // promtool parses each expression as a recording rule.
    const t = tempDir();
    try {
      const rules = blocks.map((b, i) => ({ record: `doc:example_${i}`, expr: b.text.trim() }));
      const file = writeIn(t.dir, 'examples.yaml', JSON.stringify({ groups: [{ name: 'docs', rules }] }));
      const check = spawnSync('promtool', ['check', 'rules', file], { encoding: 'utf8' });
      expect(check.status, `${check.stdout}${check.stderr}`).toBe(0);
    } finally {
      t.cleanup();
    }
  });
});
