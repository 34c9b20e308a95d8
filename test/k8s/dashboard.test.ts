import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { checkPromQL, type MetricSpec, relayCatalogue, scanPromQL } from './metric-catalogue.js';
import { PROMTOOL_INSTALL, REPO_ROOT, requireTool } from './tools.js';

interface Target {
  expr: string;
  legendFormat?: string;
  refId: string;
  datasource?: { uid?: string };
}
interface Panel {
  id: number;
  type: string;
  title: string;
  gridPos: { h: number; w: number; x: number; y: number };
  datasource?: { type?: string; uid?: string };
  targets?: Target[];
}
interface Dashboard {
  uid: string;
  title: string;
  schemaVersion: number;
  panels: Panel[];
  templating: { list: { name: string; type: string; query: string | { query: string } }[] };
}

const DATASOURCE = '${datasource}';
const dashboard = JSON.parse(
  readFileSync(join(REPO_ROOT, 'k8s/dashboards/pd-relay.json'), 'utf8'),
) as Dashboard;
const targets = dashboard.panels.flatMap((p) => (p.targets ?? []).map((t) => ({ panel: p, target: t })));

/** Grafana's variables, replaced by values that make the expression plain PromQL. */
function plain(expr: string): string {
  return expr
    .replaceAll('$__rate_interval', '5m')
    .replaceAll('$namespace', 'pd-relay')
    .replaceAll('$pod', '.+');
}

let catalogue: Map<string, MetricSpec>;
let dir: string;
beforeAll(async () => {
  catalogue = await relayCatalogue();
  dir = mkdtempSync(join(tmpdir(), 'pd-relay-dashboard-'));
});
afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('Grafana dashboard', () => {
  it('has a stable uid, unique panel ids, and every query on the datasource variable', () => {
    expect(dashboard.uid).toBe('pd-relay');
    const ids = dashboard.panels.map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
    expect(targets.length).toBeGreaterThan(20);
    for (const { panel, target } of targets) {
      expect(panel.datasource?.uid, panel.title).toBe(DATASOURCE);
      expect(target.datasource?.uid ?? panel.datasource?.uid, panel.title).toBe(DATASOURCE);
    }
    expect(dashboard.templating.list.map((v) => v.name)).toEqual(['datasource', 'namespace', 'pod']);
  });

  it('lays panels out on the 24-column grid without overlaps', () => {
    const cells = new Map<string, string>();
    for (const p of dashboard.panels) {
      const { x, y, w, h } = p.gridPos;
      expect(x + w, p.title).toBeLessThanOrEqual(24);
      for (let i = x; i < x + w; i++) {
        for (let j = y; j < y + h; j++) {
          const key = `${i},${j}`;
          expect(cells.get(key), `${p.title} overlaps ${cells.get(key)}`).toBeUndefined();
          cells.set(key, p.title);
        }
      }
    }
  });

  it('every query refers only to metrics the relay exposes, with labels those metrics carry', () => {
    const problems = targets.flatMap(({ panel, target }) =>
      checkPromQL(target.expr, catalogue, target.legendFormat ?? '').map((p) => `${panel.title}: ${p}`),
    );
    for (const v of dashboard.templating.list) {
      if (v.type !== 'query' || typeof v.query === 'string') continue;
      // label_values(<series selector>, <label>): check the selector and the label.
      const m = /^label_values\((.*),\s*([A-Za-z_][A-Za-z0-9_]*)\)$/.exec(v.query.query);
      expect(m, `variable ${v.name}`).not.toBeNull();
      if (m)
        problems.push(...checkPromQL(`${m[1]}`, catalogue, `{{${m[2]}}}`).map((p) => `$${v.name}: ${p}`));
    }
    expect(problems).toEqual([]);
  });

  it('the check rejects an unknown metric and a label the metric lacks', () => {
    expect(checkPromQL('sum by (route) (rate(pdrelay_sns_messages_total[5m]))', catalogue)).toEqual([
      'label route is not a label of pdrelay_sns_messages_total',
    ]);
    expect(checkPromQL('rate(pdrelay_made_up_total{result="x"}[5m])', catalogue)).toEqual([
      'unknown metric pdrelay_made_up_total',
    ]);
  });

  it('the check takes the operands of a top-level `or` each with its own labels, and no further', () => {
    // Each operand is right about its own metric.
    const union =
      'sum by (route) (pdrelay_queue_depth) or sum by (result) (rate(pdrelay_sns_messages_total{type="Notification"}[5m]))';
    expect(checkPromQL(union, catalogue)).toEqual([]);
    expect(checkPromQL('(pdrelay_queue_depth) or vector(0)', catalogue)).toEqual([]);
    // A wrong label inside one operand is still found.
    expect(checkPromQL(`(${union}) or max by (key) (pdrelay_dead_letters)`, catalogue)).toEqual([
      'label key is not a label of pdrelay_dead_letters',
    ]);
    // Inside an aggregation, and with `or on (...)`, the labels concern both sides.
    expect(checkPromQL(`sum by (route) (${union})`, catalogue)).toEqual([
      'label type is not a label of pdrelay_queue_depth',
      'label route is not a label of pdrelay_sns_messages_total',
      'label result is not a label of pdrelay_queue_depth',
    ]);
    expect(checkPromQL('pdrelay_queue_depth or on (route) pdrelay_dead_letters', catalogue)).toEqual([
      'label route is not a label of pdrelay_dead_letters',
    ]);
    // An `or` in a string or a name is no union.
    expect(checkPromQL('pdrelay_sns_messages_total{result="a or b"} or_x', catalogue)).toEqual([
      'unknown metric or_x',
    ]);
  });

  it('the check takes the operands of a top-level `and` or `unless` each with its own labels, and those of `on (...)` with both', () => {
    // A histogram's quantile (by `le`) guarded by a gauge that has no `le`.
    const quantile =
      'histogram_quantile(0.99, sum by (route, le) (rate(pdrelay_event_delivery_seconds_bucket[15m]))) > 300';
    const guard = 'max by (route) (pdrelay_queue_oldest_age_seconds) > 300';
    expect(checkPromQL(`(${quantile}) and on (route) (${guard})`, catalogue)).toEqual([]);
    expect(checkPromQL(`(${quantile}) unless on (route) (${guard})`, catalogue)).toEqual([]);
    // A wrong label inside one operand is still found, and the labels matched on concern both sides.
    expect(
      checkPromQL(`(${quantile}) and (max by (le) (pdrelay_queue_oldest_age_seconds))`, catalogue),
    ).toEqual(['label le is not a label of pdrelay_queue_oldest_age_seconds']);
    expect(checkPromQL(`(${quantile}) and on (key) (${guard})`, catalogue)).toEqual([
      'label key is not a label of pdrelay_event_delivery_seconds_bucket',
    ]);
    expect(checkPromQL(`(${quantile}) and ignoring (key) (${guard})`, catalogue)).toEqual([
      'label key is not a label of pdrelay_event_delivery_seconds_bucket',
    ]);
  });

  it('every query is valid PromQL (promtool check rules)', () => {
    requireTool('promtool', ['--version'], PROMTOOL_INSTALL);
    const rules = targets.map(({ panel, target }) => ({
      record: `dashboard:panel_${panel.id}_${target.refId.toLowerCase()}`,
      expr: plain(target.expr),
    }));
    writeFileSync(join(dir, 'dashboard.rules.yaml'), stringify({ groups: [{ name: 'dashboard', rules }] }));
    const r = spawnSync('promtool', ['check', 'rules', 'dashboard.rules.yaml'], {
      cwd: dir,
      encoding: 'utf8',
    });
    expect(`${r.stdout}${r.stderr}`).toContain(`SUCCESS: ${rules.length} rules found`);
    expect(r.status).toBe(0);
  });

  it('covers intake, deliveries, latency, time to page, queue depth and age, rate-limit waits, dead letters, reloads and replicas', () => {
    const used = new Set(targets.flatMap(({ target }) => scanPromQL(target.expr).metrics));
    for (const m of [
      'pdrelay_sns_messages_total',
      'pdrelay_events_total',
      'pdrelay_pagerduty_requests_total',
      'pdrelay_pagerduty_request_duration_seconds_bucket',
      'pdrelay_event_delivery_seconds_bucket',
      'pdrelay_event_source_delay_seconds_bucket',
      'pdrelay_delivery_retries_total',
      'pdrelay_queue_depth',
      'pdrelay_queue_oldest_age_seconds',
      'pdrelay_rate_limit_wait_seconds_bucket',
      'pdrelay_rate_limit_wait_seconds_count',
      'pdrelay_dead_letters',
      'pdrelay_dead_letters_total',
      'pdrelay_config_last_reload_successful',
      'pdrelay_config_last_reload_success_timestamp_seconds',
      'pdrelay_last_message_timestamp_seconds',
      'pdrelay_delivery_keys_owned',
      'pdrelay_delivery_keys_unowned',
      'pdrelay_delivery_key_ownership_changes_total',
      'pdrelay_spool_database_up',
      'pdrelay_spool_database_errors_total',
    ]) {
      expect(used.has(m), m).toBe(true);
    }
  });
});
