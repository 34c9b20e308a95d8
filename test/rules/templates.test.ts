import { describe, expect, it } from 'vitest';
import {
  arn,
  awsConsoleHost,
  cloudwatchMetric,
  firstLine,
  iso8601,
  severityToken,
  toText,
  uriComponent,
} from '../../src/rules/filters.js';
import { type CompiledTemplate, compileTemplate } from '../../src/rules/templates.js';

function template(source: string): CompiledTemplate {
  const result = compileTemplate(source);
  if ('error' in result) throw new Error(result.error.message);
  return result.template;
}

describe('compileTemplate', () => {
  it.each<[string, CompiledTemplate['kind']]>([
    ['critical', 'static'],
    ['{{ message.AlarmName }}', 'path'],
    ['{{ message.detail-type }}', 'path'],
    ['{{ message.Trigger.Metrics[0].Id }}', 'path'],
    ['{{ items.size }}', 'compiled'],
    ['{{ a }} and {{ b }}', 'compiled'],
    ['{{ a | upcase }}', 'compiled'],
    ['{% for i in items %}{{ i }}{% endfor %}', 'liquid'],
  ])('%s is a %s template', (source, kind) => {
    expect(template(source).kind).toBe(kind);
  });

  const scope = {
    message: {
      AlarmName: 'cpu',
      'detail-type': 'GuardDuty Finding',
      n: 1.5,
      t: true,
      nil: null,
      list: [1, 'a'],
      obj: { x: 1 },
    },
    items: [1, 2, 3],
  };
  it.each<[string, string]>([
    ['{{ message.AlarmName }}', 'cpu'],
    ['{{ message.detail-type }}', 'GuardDuty Finding'],
    ['{{ message["detail-type"] }}', 'GuardDuty Finding'],
    ['{{ message.n }}', '1.5'],
    ['{{ message.t }}', 'true'],
    ['{{ message.nil }}', ''],
    ['{{ message.missing.deeper }}', ''],
    ['{{ message.obj }}', '{"x":1}'],
    ['{{ message.list }}', '[1,"a"]'],
    ['{{ items.size }}', '3'],
    ['{{ message.constructor }}', ''],
    ['  padded {{ message.AlarmName }}\n', 'padded cpu'],
  ])('%j renders %j (fast paths agree with Liquid)', (source, expected) => {
    expect(template(source).render(scope)).toBe(expected);
    // The same output through Liquid proper (a template with text around it never takes a fast path).
    expect(template(`[${source.trim()}]`).render(scope)).toBe(`[${expected}]`);
  });

  it('assign does not change the document', () => {
    const doc = { a: 1 };
    expect(template('{% assign a = 2 %}{{ a }}').render(doc)).toBe('2');
    expect(doc).toEqual({ a: 1 });
  });

  it.each<[string, string, number, number]>([
    ['{{ a | nofilter }}', 'Liquid: undefined filter: nofilter', 1, 1],
    ['line one\n  {% iff x %}', 'Liquid: tag "iff" not found', 2, 3],
    ['{{ a | upcase ', 'Liquid: output "{{ a | upcase " not closed', 1, 1],
    ['x {% if a %}', 'Liquid: tag {% if a %} not closed', 1, 3],
    ["{% include 'secrets.yaml' %}", 'Liquid: tag "include" not found', 1, 1],
    ["{% render 'x' %}", 'Liquid: tag "render" not found', 1, 1],
  ])('reports %j at its line and column', (source, message, line, col) => {
    const result = compileTemplate(source);
    expect('error' in result && result.error).toEqual({ message, line, col });
  });
});

describe('filters', () => {
  it.each<[unknown, string]>([
    ['us-east-1', 'us-east-1.console.aws.amazon.com'],
    ['cn-northwest-1', 'cn-northwest-1.console.amazonaws.cn'],
    ['us-gov-west-1', 'console.amazonaws-us-gov.com'],
    ['EXAMPLE', 'console.aws.amazon.com'],
    [undefined, 'console.aws.amazon.com'],
  ])('aws_console_host %j', (region, host) => {
    expect(awsConsoleHost(region)).toBe(host);
  });

  it('uri_component encodes spaces and slashes for the console fragment', () => {
    expect(uriComponent('a b/c?d#e')).toBe('a%20b%2Fc%3Fd%23e');
    expect(template('{{ n | uri_component }}').render({ n: 'CPU > 90%' })).toBe('CPU%20%3E%2090%25');
  });

  it.each<[unknown, string]>([
    ['2021-11-10T02:45:55.640+0000', '2021-11-10T02:45:55.640Z'],
    ['Sun, 05 Jun 2016 05:01:10 GMT', '2016-06-05T05:01:10.000Z'],
    ['2019-02-21T06:07:17Z', '2019-02-21T06:07:17.000Z'],
    [0, '1970-01-01T00:00:00.000Z'],
    ['yesterday', ''],
    [null, ''],
  ])('iso8601 %j', (input, output) => {
    expect(iso8601(input)).toBe(output);
  });

  it.each<[unknown, string]>([
    ['Orders API down. severity=critical', 'critical'],
    ['SEVERITY: Warning — disk', 'warning'],
    ['[info] nightly batch', 'info'],
    ['severity=urgent [error]', 'error'],
    ['notseverity=critical', ''],
    ['severity=criticality', ''],
    [null, ''],
  ])('severity_token %j', (text, token) => {
    expect(severityToken(text)).toBe(token);
  });

  it('arn splits an ARN, keeping colons in the resource', () => {
    expect(arn('arn:aws:cloudwatch:eu-west-1:123456789012:alarm:a:b')).toEqual({
      partition: 'aws',
      service: 'cloudwatch',
      region: 'eu-west-1',
      account: '123456789012',
      resource: 'alarm:a:b',
    });
    expect(arn('nope')).toBeUndefined();
    expect(
      template('{% assign a = x | arn %}{{ a.region }}').render({ x: 'arn:aws:sns:us-east-2:1:t' }),
    ).toBe('us-east-2');
  });

  it('text and first_line', () => {
    expect(toText({ a: 1 })).toBe('{"a":1}');
    expect(toText(undefined)).toBe('');
    expect(firstLine('\n\n  first  \nsecond')).toBe('first');
  });

  it.each<[string, unknown, Partial<ReturnType<typeof cloudwatchMetric>>]>([
    [
      'SNS single metric',
      {
        Trigger: {
          MetricName: 'CPUUtilization',
          Namespace: 'AWS/EC2',
          Dimensions: [{ name: 'InstanceId', value: 'i-1' }],
        },
      },
      { type: 'metric', namespace: 'AWS/EC2', name: 'CPUUtilization', dimensions: { InstanceId: 'i-1' } },
    ],
    [
      'SNS metric math',
      {
        Trigger: {
          Metrics: [
            { Expression: 'm1*1', Id: 'e1', ReturnData: true },
            {
              Id: 'm1',
              MetricStat: { Metric: { MetricName: 'NetworkOut', Namespace: 'AWS/EC2', Dimensions: [] } },
            },
          ],
        },
      },
      { type: 'metric-math', namespace: 'AWS/EC2', name: 'NetworkOut', expression: 'm1*1' },
    ],
    [
      'SNS anomaly detection',
      {
        Trigger: {
          ThresholdMetricId: 'ad1',
          Metrics: [
            {
              Id: 'm1',
              MetricStat: { Metric: { MetricName: 'Latency', Namespace: 'AWS/ELB' } },
              ReturnData: true,
            },
            { Expression: 'ANOMALY_DETECTION_BAND(m1, 2)', Id: 'ad1', ReturnData: true },
          ],
        },
      },
      { type: 'anomaly-detection', name: 'Latency', expression: 'ANOMALY_DETECTION_BAND(m1, 2)' },
    ],
    [
      'SNS composite',
      { AlarmName: 'c', AlarmRule: 'ALARM(a) OR ALARM(b)' },
      { type: 'composite', expression: 'ALARM(a) OR ALARM(b)' },
    ],
    [
      'EventBridge metric',
      {
        'detail-type': 'CloudWatch Alarm State Change',
        detail: {
          configuration: {
            metrics: [
              {
                id: 'm1',
                metricStat: {
                  metric: { namespace: 'AWS/EC2', name: 'CPUUtilization', dimensions: { InstanceId: 'i-1' } },
                },
              },
            ],
          },
        },
      },
      { type: 'metric', namespace: 'AWS/EC2', name: 'CPUUtilization', dimensions: { InstanceId: 'i-1' } },
    ],
    [
      'EventBridge composite',
      {
        'detail-type': 'CloudWatch Alarm State Change',
        detail: { configuration: { alarmRule: 'ALARM(x)' } },
      },
      { type: 'composite' },
    ],
    ['anything else', 'text', { type: 'unknown', namespace: '' }],
  ])('cloudwatch_metric: %s', (_name, message, expected) => {
    expect(cloudwatchMetric(message)).toMatchObject(expected);
  });
});

describe('render limits', () => {
  it('a runaway loop throws instead of stalling (the engine then tries the next rule)', () => {
    const t = template('{% for i in (1..3000) %}{% for j in (1..3000) %}{{ j }}{% endfor %}{% endfor %}');
    expect(t.kind).toBe('liquid');
    expect(() => t.render({})).toThrow(/template render limit exceeded/);
  });

  it('a huge allocation throws before it happens', () => {
    const t = template('{% for i in (1..100000000) %}{{ i }}{% endfor %}');
    expect(() => t.render({})).toThrow(/memory alloc limit exceeded/);
  });
});
