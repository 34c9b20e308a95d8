import { partitionOf } from '../decode/sample.js';

/**
 * Liquid filters pd-relay adds to liquidjs's standard set (documented in docs/rules.md). They
 * never throw on odd input: AWS payloads vary, and a filter error would push a message to the
 * next rule. Each returns '' (or nil) when its input does not fit.
 */

/** `{{ name | uri_component }}`: encodeURIComponent (spaces → %20, "/" → %2F), for URL paths and fragments. */
export function uriComponent(v: unknown): string {
  return encodeURIComponent(toText(v));
}

/**
 * `{{ region | aws_console_host }}`: the AWS Management Console host for a region:
 * `<region>.console.aws.amazon.com`, `<region>.console.amazonaws.cn` in China, and
 * `console.amazonaws-us-gov.com` in GovCloud.
 */
export function awsConsoleHost(v: unknown): string {
  const region = toText(v);
  if (!/^[a-z]{2}(-[a-z]+)+-\d+$/.test(region)) return 'console.aws.amazon.com';
  switch (partitionOf(region)) {
    case 'aws-cn':
      return `${region}.console.amazonaws.cn`;
    case 'aws-us-gov':
      return 'console.amazonaws-us-gov.com';
    default:
      return `${region}.console.aws.amazon.com`;
  }
}

/** `{{ region | aws_partition }}`: aws, aws-cn or aws-us-gov. */
export function awsPartition(v: unknown): string {
  return partitionOf(toText(v));
}

/** `{% assign a = message.AlarmArn | arn %}`: `{ partition, service, region, account, resource }`, or nil. */
export function arn(v: unknown): Record<string, string> | undefined {
  if (typeof v !== 'string' || !v.startsWith('arn:')) return undefined;
  const parts = v.split(':');
  if (parts.length < 6) return undefined;
  return {
    partition: parts[1] as string,
    service: parts[2] as string,
    region: parts[3] as string,
    account: parts[4] as string,
    resource: parts.slice(5).join(':'),
  };
}

/**
 * `{{ message.StateChangeTime | iso8601 }}`: any date JavaScript can parse (ISO 8601 with or
 * without a colon in the offset, RFC 1123 as AWS Health writes it, epoch milliseconds) as UTC ISO
 * 8601, or '' when it is not a date, so that an optional timestamp is left out rather than sent
 * in a form PagerDuty rejects.
 */
export function iso8601(v: unknown): string {
  let ms: number;
  if (typeof v === 'number') ms = v;
  else if (typeof v === 'string' && v.trim() !== '') ms = Date.parse(v);
  else return '';
  if (!Number.isFinite(ms)) return '';
  const d = new Date(ms);
  return Number.isNaN(d.getTime()) ? '' : d.toISOString();
}

const SEVERITY_KEY = /(?:^|[^A-Za-z0-9_])severity\s*[=:]\s*(critical|error|warning|info)(?![A-Za-z0-9_])/i;
const SEVERITY_BRACKET = /\[(critical|error|warning|info)\]/i;

/**
 * `{{ message.AlarmDescription | severity_token }}`: the PagerDuty severity an alarm description
 * asks for, or ''. Accepted, case-insensitive, anywhere in the text: `severity=critical`,
 * `severity: warning`, or `[critical]`; the first `severity=` form wins over a bracket.
 */
export function severityToken(v: unknown): string {
  if (typeof v !== 'string' || v === '') return '';
  const m = SEVERITY_KEY.exec(v) ?? SEVERITY_BRACKET.exec(v);
  return m ? (m[1] as string).toLowerCase() : '';
}

/** `{{ message | text }}`: strings as they are, anything else as JSON, nil as ''. */
export function toText(v: unknown): string {
  if (v === null || v === undefined) return '';
  if (typeof v === 'string') return v;
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v);
}

/** `{{ message | text | first_line }}`: the first non-empty line, trimmed. */
export function firstLine(v: unknown): string {
  for (const line of toText(v).split(/\r?\n/)) {
    const t = line.trim();
    if (t) return t;
  }
  return '';
}

/** What `cloudwatch_metric` returns. */
export interface AlarmMetric {
  /** metric, metric-math, anomaly-detection, composite, or unknown. */
  type: string;
  namespace: string;
  name: string;
  /** The expression the alarm evaluates (metric math, anomaly band), else ''. */
  expression: string;
  /** Dimension name → value of the (first) metric. */
  dimensions: Record<string, string>;
}

/**
 * `{% assign m = message | cloudwatch_metric %}`: what a CloudWatch alarm watches, from either
 * format — the classic SNS message (`Trigger.MetricName`, or `Trigger.Metrics` for metric math
 * and anomaly detection, no `Trigger` for composite alarms) or the EventBridge "CloudWatch Alarm
 * State Change" event (`detail.configuration.metrics`, `alarmRule` for composites).
 */
export function cloudwatchMetric(v: unknown): AlarmMetric {
  const out: AlarmMetric = { type: 'unknown', namespace: '', name: '', expression: '', dimensions: {} };
  if (!isRecord(v)) return out;
  let msg: Record<string, unknown> = v;
  if (typeof msg['detail-type'] === 'string' && isRecord(msg.detail)) msg = msg.detail;

  if (isRecord(msg.Trigger)) {
    const t = msg.Trigger;
    if (typeof t.MetricName === 'string') {
      out.type = 'metric';
      out.namespace = str(t.Namespace);
      out.name = t.MetricName;
      out.dimensions = dimensionList(t.Dimensions, 'name', 'value');
      return out;
    }
    if (Array.isArray(t.Metrics)) {
      return fromMetricList(t.Metrics, out, {
        expression: 'Expression',
        stat: 'MetricStat',
        metric: 'Metric',
        namespace: 'Namespace',
        name: 'MetricName',
        returnData: 'ReturnData',
        dims: (m) => dimensionList(m.Dimensions, 'name', 'value'),
      });
    }
    return out;
  }
  if (typeof msg.AlarmRule === 'string') {
    out.type = 'composite';
    out.expression = msg.AlarmRule;
    return out;
  }
  const config = isRecord(msg.configuration) ? msg.configuration : undefined;
  if (config) {
    if (typeof config.alarmRule === 'string') {
      out.type = 'composite';
      out.expression = config.alarmRule;
      return out;
    }
    if (Array.isArray(config.metrics)) {
      return fromMetricList(config.metrics, out, {
        expression: 'expression',
        stat: 'metricStat',
        metric: 'metric',
        namespace: 'namespace',
        name: 'name',
        returnData: 'returnData',
        dims: (m) => (isRecord(m.dimensions) ? stringMap(m.dimensions) : {}),
      });
    }
  }
  return out;
}

interface MetricKeys {
  expression: string;
  stat: string;
  metric: string;
  namespace: string;
  name: string;
  returnData: string;
  dims: (metric: Record<string, unknown>) => Record<string, string>;
}

function fromMetricList(list: unknown[], out: AlarmMetric, k: MetricKeys): AlarmMetric {
  const entries = list.filter(isRecord);
  const expressions = entries.filter((e) => typeof e[k.expression] === 'string');
  const anomaly = expressions.find((e) => /ANOMALY_DETECTION_BAND\s*\(/i.test(e[k.expression] as string));
  const returned = expressions.find((e) => e[k.returnData] === true) ?? expressions[0];
  const stat = entries.find(
    (e) => isRecord(e[k.stat]) && isRecord((e[k.stat] as Record<string, unknown>)[k.metric]),
  );
  if (anomaly) {
    out.type = 'anomaly-detection';
    out.expression = anomaly[k.expression] as string;
  } else if (returned) {
    out.type = 'metric-math';
    out.expression = returned[k.expression] as string;
  } else if (stat) {
    out.type = 'metric';
  }
  if (stat) {
    const metric = (stat[k.stat] as Record<string, unknown>)[k.metric] as Record<string, unknown>;
    out.namespace = str(metric[k.namespace]);
    out.name = str(metric[k.name]);
    out.dimensions = k.dims(metric);
  }
  return out;
}

function dimensionList(v: unknown, nameKey: string, valueKey: string): Record<string, string> {
  const out: Record<string, string> = {};
  if (!Array.isArray(v)) return out;
  for (const d of v) {
    if (isRecord(d) && typeof d[nameKey] === 'string') out[d[nameKey] as string] = str(d[valueKey]);
  }
  return out;
}

function stringMap(v: Record<string, unknown>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(v)) out[key] = str(value);
  return out;
}

function str(v: unknown): string {
  return typeof v === 'string' ? v : v === null || v === undefined ? '' : String(v);
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
