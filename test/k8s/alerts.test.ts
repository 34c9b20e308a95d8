import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { checkPromQL, KUBE_STATE_METRICS, type MetricSpec, relayCatalogue } from './metric-catalogue.js';
import { PROMTOOL_INSTALL, REPO_ROOT, requireTool } from './tools.js';

interface Rule {
  alert?: string;
  record?: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}
interface PromRuleManifest {
  kind: string;
  spec: { groups: { name: string; rules: Rule[] }[] };
}
interface UnitTests {
  rule_files: string[];
  tests: { name?: string; alert_rule_test?: { alertname: string; exp_alerts?: unknown[] }[] }[];
}

const RULE_FILE = 'pd-relay.rules.yaml';
/** promtool unit-test files, each next to this file; they name RULE_FILE. */
const TEST_FILES = ['alerts.test.yaml', 'alerts-daily.test.yaml'];
const manifest = parse(
  readFileSync(join(REPO_ROOT, 'k8s/base/prometheusrule.yaml'), 'utf8'),
) as PromRuleManifest;
const alerts = manifest.spec.groups.flatMap((g) => g.rules).filter((r) => r.alert);

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'pd-relay-alerts-'));
});
afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/**
 * Writes the PrometheusRule's groups as a plain Prometheus rule file (what the operator hands
 * Prometheus) beside a copy of the unit tests, and runs promtool on them.
 */
function promtool(args: string[], groups = manifest.spec.groups) {
  requireTool('promtool', ['--version'], PROMTOOL_INSTALL);
  writeFileSync(join(dir, RULE_FILE), stringify({ groups }));
  for (const f of TEST_FILES) copyFileSync(join(REPO_ROOT, 'test/k8s', f), join(dir, f));
  const r = spawnSync('promtool', args, { cwd: dir, encoding: 'utf8' });
  return { status: r.status, output: `${r.stdout}${r.stderr}` };
}

describe('PrometheusRule', () => {
  it('is a PrometheusRule whose rule groups promtool accepts', () => {
    expect(manifest.kind).toBe('PrometheusRule');
    const r = promtool(['check', 'rules', RULE_FILE]);
    expect(r.output).toContain(`SUCCESS: ${alerts.length} rules found`);
    expect(r.status).toBe(0);
  });

  it('passes its promtool unit tests (test/k8s/alerts*.test.yaml)', () => {
    const r = promtool(['test', 'rules', ...TEST_FILES]);
    expect(r.output.match(/SUCCESS/g)?.length).toBe(TEST_FILES.length);
    expect(r.status, r.output).toBe(0);
  });

  // Each change must make a unit test of its alert fail: a threshold, a duration, or a part of the
  // expression that a case exists for.
  it.each([
    ['PdRelayDeliveryDelayed', 'expr', '> 300', '> 3000'],
    [
      'PdRelayNotReady',
      'expr',
      'kube_deployment_status_replicas_available',
      'kube_deployment_status_replicas',
    ],
    ['PdRelayDatabaseUnreachable', 'for', '1m', '3m'],
    ['PdRelayKeyUnowned', 'expr', '> 0', '> 2'],
    ['PdRelayKeyUnowned', 'for', '2m', '30s'],
    ['PdRelayKeyUnowned', 'expr', 'pdrelay_spool_database_up == 1', 'pdrelay_spool_database_up >= 0'],
    ['PdRelayKeyLeasesFlapping', 'expr', '> 2', '> 3'],
    ['PdRelayKeyLeasesFlapping', 'expr', '> 2', '> 1'],
    ['PdRelayKeyLeasesFlapping', 'expr', 'changes(', 'increase('],
    // Time to page: the p99 and the queue age it must go with, the minutes it must last; the
    // median of the source delay (not its tail), and the relay's own share it must leave out.
    ['PdRelaySlowPaging', 'expr', '> 300', '> 600'],
    [
      'PdRelaySlowPaging',
      'expr',
      'pdrelay_queue_oldest_age_seconds) > 300',
      'pdrelay_queue_oldest_age_seconds) >= 0',
    ],
    ['PdRelaySlowPaging', 'for', '10m', '5m'],
    ['PdRelaySlowUpstream', 'expr', '> 300', '> 600'],
    ['PdRelaySlowUpstream', 'expr', 'histogram_quantile(0.5', 'histogram_quantile(0.99'],
    ['PdRelaySlowUpstream', 'expr', '< 60', '>= 0'],
    ['PdRelaySlowUpstream', 'for', '30m', '10m'],
  ] as const)(
    'fails its unit tests when %s %s moves from "%s" to "%s" (the tests can fail)',
    (alert, field, from, to) => {
      const groups = structuredClone(manifest.spec.groups);
      const rule = groups.flatMap((g) => g.rules).find((r) => r.alert === alert);
      const value = rule?.[field];
      expect(value).toContain(from);
      if (rule && value) rule[field] = value.replace(from, to);
      const r = promtool(['test', 'rules', 'alerts.test.yaml'], groups);
      expect(r.status).toBe(1);
      expect(r.output).toContain(`alertname: ${alert}`);
    },
  );

  it('every alert has a unit test where it fires and one where it stays silent', () => {
    const cases = TEST_FILES.flatMap((f) => {
      const tests = parse(readFileSync(join(REPO_ROOT, 'test/k8s', f), 'utf8')) as UnitTests;
      expect(tests.rule_files, f).toEqual([RULE_FILE]);
      return tests.tests.flatMap((t) => t.alert_rule_test ?? []);
    });
    for (const a of alerts) {
      const mine = cases.filter((c) => c.alertname === a.alert);
      expect(
        mine.some((c) => (c.exp_alerts ?? []).length > 0),
        `${a.alert} has no case where it fires`,
      ).toBe(true);
      expect(
        mine.some((c) => (c.exp_alerts ?? []).length === 0),
        `${a.alert} has no case where it stays silent`,
      ).toBe(true);
    }
    const known = new Set(alerts.map((a) => a.alert));
    for (const c of cases) expect(known.has(c.alertname), `test for unknown alert ${c.alertname}`).toBe(true);
  });

  it('every alert has a severity, a summary, a description and a runbook anchor of its own', () => {
    const names = alerts.map((a) => a.alert);
    expect(new Set(names).size).toBe(names.length);
    for (const a of alerts) {
      expect(['critical', 'warning', 'info'], a.alert).toContain(a.labels?.severity);
      expect(a.annotations?.summary, a.alert).toBeTruthy();
      expect(a.annotations?.description, a.alert).toBeTruthy();
      expect(a.annotations?.runbook_url, a.alert).toBe(`docs/operations.md#${a.alert?.toLowerCase()}`);
    }
  });

  it("expressions use only the relay's metrics and labels (kube-state-metrics for readiness)", async () => {
    // PdRelayNotReady reads the StatefulSet's or the Deployment's status from kube-state-metrics.
    const catalogue = new Map<string, MetricSpec>([
      ...(await relayCatalogue()),
      ...Object.entries(KUBE_STATE_METRICS),
    ]);
    const problems = alerts.flatMap((a) => checkPromQL(a.expr, catalogue).map((p) => `${a.alert}: ${p}`));
    expect(problems).toEqual([]);
  });
});
