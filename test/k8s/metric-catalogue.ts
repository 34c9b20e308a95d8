import { createRegistry } from '../../src/metrics/registry.js';

/** One metric the relay exposes: its type and the labels it carries. */
export interface MetricSpec {
  type: 'counter' | 'gauge' | 'histogram';
  labels: readonly string[];
}

/**
 * The relay's metrics as the issue fixes them (names and label sets). The alerts and the dashboard
 * may use these and nothing else of the relay's; when a stage adds a metric, add it here too.
 */
export const RELAY_METRICS: Readonly<Record<string, MetricSpec>> = {
  pdrelay_sns_messages_total: { type: 'counter', labels: ['type', 'result'] },
  pdrelay_sns_subscriptions_confirmed_total: { type: 'counter', labels: [] },
  pdrelay_sns_cert_fetches_total: { type: 'counter', labels: ['result'] },
  pdrelay_rule_matches_total: { type: 'counter', labels: ['rule', 'action'] },
  pdrelay_events_total: { type: 'counter', labels: ['route', 'action', 'outcome'] },
  pdrelay_event_delivery_seconds: { type: 'histogram', labels: ['route', 'action'] },
  pdrelay_event_source_delay_seconds: { type: 'histogram', labels: ['route', 'action'] },
  pdrelay_pagerduty_requests_total: { type: 'counter', labels: ['route', 'key', 'code_class'] },
  pdrelay_pagerduty_request_duration_seconds: { type: 'histogram', labels: [] },
  pdrelay_delivery_retries_total: { type: 'counter', labels: ['reason'] },
  pdrelay_dead_letters_total: { type: 'counter', labels: ['reason'] },
  pdrelay_dead_letters: { type: 'gauge', labels: [] },
  pdrelay_payload_truncations_total: { type: 'counter', labels: ['field'] },
  pdrelay_queue_depth: { type: 'gauge', labels: ['route', 'key'] },
  pdrelay_queue_oldest_age_seconds: { type: 'gauge', labels: ['route', 'key'] },
  pdrelay_rate_limit_wait_seconds: { type: 'histogram', labels: [] },
  pdrelay_spool_commit_duration_seconds: { type: 'histogram', labels: [] },
  pdrelay_config_last_reload_successful: { type: 'gauge', labels: [] },
  pdrelay_config_last_reload_success_timestamp_seconds: { type: 'gauge', labels: [] },
  pdrelay_last_message_timestamp_seconds: { type: 'gauge', labels: ['endpoint'] },
  pdrelay_build_info: { type: 'gauge', labels: ['version', 'node'] },
  // Several replicas on PostgreSQL (spool.postgres).
  pdrelay_spool_database_up: { type: 'gauge', labels: [] },
  pdrelay_spool_database_errors_total: { type: 'counter', labels: ['operation'] },
  pdrelay_delivery_keys_owned: { type: 'gauge', labels: [] },
  pdrelay_delivery_keys_unowned: { type: 'gauge', labels: [] },
  pdrelay_delivery_key_ownership_changes_total: { type: 'counter', labels: ['change'] },
};

/**
 * The kube-state-metrics series PdRelayNotReady reads: the one-replica StatefulSet
 * (k8s/base/statefulset.yaml) and the Deployment of k8s/overlays/ha. kube-state-metrics labels each
 * with `namespace` and the object's name (`statefulset`, `deployment`). A Deployment's
 * `_available` counts the pods ready for at least its minReadySeconds.
 */
export const KUBE_STATE_METRICS: Readonly<Record<string, MetricSpec>> = {
  kube_statefulset_status_replicas_ready: { type: 'gauge', labels: ['statefulset'] },
  kube_statefulset_replicas: { type: 'gauge', labels: ['statefulset'] },
  kube_deployment_status_replicas_available: { type: 'gauge', labels: ['deployment'] },
  kube_deployment_spec_replicas: { type: 'gauge', labels: ['deployment'] },
};

/**
 * Labels Prometheus attaches to every scraped series through the ServiceMonitor (`endpoint` is
 * dropped there, see k8s/base/servicemonitor.yaml).
 */
export const TARGET_LABELS: readonly string[] = [
  'namespace',
  'pod',
  'job',
  'instance',
  'container',
  'service',
];

/** The relay's metrics plus what its registry exposes by itself (prom-client's process metrics). */
export async function relayCatalogue(): Promise<Map<string, MetricSpec>> {
  const catalogue = new Map<string, MetricSpec>(Object.entries(RELAY_METRICS));
  for (const m of await createRegistry().getMetricsAsJSON()) {
    if (catalogue.has(m.name)) continue;
    const labels = new Set<string>();
    for (const v of m.values) for (const l of Object.keys(v.labels)) if (l !== 'le') labels.add(l);
    const kind = String(m.type);
    const type = kind === 'histogram' ? 'histogram' : kind === 'counter' ? 'counter' : 'gauge';
    catalogue.set(m.name, { type, labels: [...labels] });
  }
  catalogue.set('up', { type: 'gauge', labels: [] });
  return catalogue;
}

const KEYWORDS = new Set(['and', 'or', 'unless', 'offset', 'bool', 'inf', 'nan', 'atan2', 'start', 'end']);
const CLAUSE = /\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)/g;

/** The metric names and label names a PromQL expression mentions. */
export function scanPromQL(expr: string): { metrics: string[]; labels: string[] } {
  const labels = new Set<string>();
  // String literals can hold anything, including braces and names: blank them first.
  let rest = expr.replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, '""');
  rest = rest.replace(/\{([^}]*)\}/g, (_, body: string) => {
    for (const m of body.matchAll(/([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)/g)) labels.add(m[1] as string);
    return ' ';
  });
  rest = rest.replace(CLAUSE, (_, _kw: string, list: string) => {
    for (const l of list.split(',')) if (l.trim()) labels.add(l.trim());
    return ' ';
  });
  rest = rest.replace(/\[[^\]]*\]/g, ' ').replace(/\boffset\s+-?\w+/g, ' ');
  const metrics = new Set<string>();
  for (const m of rest.matchAll(/(?<![\w.$])[A-Za-z_:][A-Za-z0-9_:]*/g)) {
    const name = m[0];
    const after = rest.slice((m.index ?? 0) + name.length).trimStart();
    if (after.startsWith('(') || KEYWORDS.has(name.toLowerCase())) continue;
    metrics.add(name);
  }
  return { metrics: [...metrics], labels: [...labels] };
}

/** Resolves a series name to its catalogue entry (histogram series: `_bucket`, `_sum`, `_count`). */
function lookup(
  catalogue: ReadonlyMap<string, MetricSpec>,
  name: string,
): { spec: MetricSpec; bucket: boolean } | undefined {
  const direct = catalogue.get(name);
  if (direct) return { spec: direct, bucket: false };
  const m = /^(.*)_(bucket|sum|count)$/.exec(name);
  const base = m && catalogue.get(m[1] as string);
  if (base?.type === 'histogram') return { spec: base, bucket: m?.[2] === 'bucket' };
  return undefined;
}

/**
 * A set operator (`or`, `and`, `unless`) and the labels it matches on, if it names them (`on (...)`,
 * `ignoring (...)`).
 */
const SET_OPERATOR = /^(?:and|or|unless)\b(?:\s+((?:on|ignoring)\s*\([^)]*\)))?/i;

/**
 * The operands of the set operators at the top level of an expression (`(A) or (B)`: [`(A)`, `(B)`];
 * anything else: the whole expression). Each operand keeps its own labels, so each is checked on its
 * own: one side of a union may read a StatefulSet's series by `statefulset`, the other a
 * Deployment's by `deployment`; the `le` of a histogram's quantile on one side of an `and` says
 * nothing of a gauge on the other. The labels of `on (...)` and `ignoring (...)` concern both sides
 * and go with each operand. Not split: a set operator inside an aggregation or a function, where
 * `by (...)` applies to both sides.
 */
export function setOperands(expr: string): string[] {
  const text = blankStrings(expr);
  const cuts: Array<{ start: number; end: number; matching: string }> = [];
  let depth = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i] as string;
    if ('([{'.includes(c)) depth++;
    else if (')]}'.includes(c)) depth--;
    else if (depth === 0 && !/\w/.test(text[i - 1] ?? '')) {
      const m = SET_OPERATOR.exec(text.slice(i));
      if (!m) continue;
      cuts.push({ start: i, end: i + m[0].length, matching: m[1] ?? '' });
      i += m[0].length - 1;
    }
  }
  const parts: Array<{ part: string; matching: string[] }> = [];
  let from = 0;
  let before = '';
  for (const { start, end, matching } of cuts) {
    parts.push({ part: expr.slice(from, start), matching: [before, matching] });
    from = end;
    before = matching;
  }
  parts.push({ part: expr.slice(from), matching: [before] });
  // `(A or B)` is `A or B`: an operand wholly in parentheses is split in turn.
  return parts.flatMap(({ part, matching }) => {
    const inner = unparenthesised(part);
    const operands = inner === undefined ? [part] : setOperands(inner);
    return operands.map((o) => [o, ...matching.filter(Boolean)].join(' '));
  });
}

/** `expr` with its string literals blanked, same length: an `or` or a bracket in one does not count. */
function blankStrings(expr: string): string {
  return expr.replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, (m) => ' '.repeat(m.length));
}

/** What is inside the parentheses that wrap all of `expr`, or undefined when they do not. */
function unparenthesised(expr: string): string | undefined {
  const t = expr.trim();
  if (!t.startsWith('(') || !t.endsWith(')')) return undefined;
  const text = blankStrings(t);
  let depth = 0;
  for (let i = 0; i < text.length; i++) {
    if (text[i] === '(') depth++;
    else if (text[i] === ')' && --depth === 0 && i < text.length - 1) return undefined;
  }
  return t.slice(1, -1);
}

/**
 * Problems with one expression: metrics not in the catalogue, and labels that not every metric of
 * the expression carries (a `sum by (route)` over a metric without `route` silently yields one
 * series with an empty label). The operands of a top-level `or`, `and` or `unless` are checked each
 * on its own.
 */
export function checkPromQL(expr: string, catalogue: ReadonlyMap<string, MetricSpec>, legend = ''): string[] {
  // A Grafana legend is free text with {{label}} placeholders; it applies to every operand.
  const legendLabels = [...legend.matchAll(/\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}/g)].map(
    (m) => m[1] as string,
  );
  const problems: string[] = [];
  let metricsSeen = 0;
  for (const part of setOperands(expr)) {
    const { metrics, labels } = scanPromQL(part);
    const found = [];
    for (const name of metrics) {
      const entry = lookup(catalogue, name);
      if (entry) found.push({ name, ...entry });
      else problems.push(`unknown metric ${name}`);
    }
    metricsSeen += metrics.length;
    for (const label of [...labels, ...legendLabels]) {
      if (TARGET_LABELS.includes(label)) continue;
      for (const f of found) {
        const ok = f.spec.labels.includes(label) || (label === 'le' && f.bucket);
        if (!ok) problems.push(`label ${label} is not a label of ${f.name}`);
      }
    }
  }
  // `X or vector(0)` is fine; an expression without any metric is not.
  if (metricsSeen === 0) problems.push('no metric at all');
  return [...new Set(problems)];
}
