import { describe, expect, it } from 'vitest';
import { cidrContains, parseCidr, parseIp } from '../../src/rules/ip.js';
import { compilePattern, compileWildcard } from '../../src/rules/pattern.js';

/** Compiles a pattern that must be valid and returns its matcher. */
function matcher(pattern: unknown): (doc: unknown) => boolean {
  const { matcher, problems } = compilePattern(pattern);
  expect(problems).toEqual([]);
  return matcher;
}

// The example event of the EventBridge user guide ("Content filtering") and aws/event-ruler.
const ec2Event = {
  version: '0',
  id: 'ddddd4-aaaa-7777-4444-345dd43cc333',
  'detail-type': 'EC2 Instance State-change Notification',
  source: 'aws.ec2',
  account: '012345679012',
  time: '2017-10-02T16:24:49Z',
  region: 'us-east-1',
  resources: ['arn:aws:ec2:us-east-1:123456789012:instance/i-000000aaaaaa00000'],
  detail: {
    'c-count': 5,
    'd-count': 3,
    'x-limit': 301.8,
    'source-ip': '10.0.0.33',
    'instance-id': 'i-000000aaaaaa00000',
    state: 'running',
  },
};

describe('EventBridge pattern operators on the documented example event', () => {
  it.each<[string, unknown, boolean]>([
    [
      'exact values, an array field and a value list',
      {
        'detail-type': ['EC2 Instance State-change Notification'],
        resources: ['arn:aws:ec2:us-east-1:123456789012:instance/i-000000aaaaaa00000'],
        detail: { state: ['initializing', 'running'] },
      },
      true,
    ],
    ['an exact value that differs', { detail: { state: ['stopped'] } }, false],
    ['prefix', { time: [{ prefix: '2017-10-02' }] }, true],
    ['prefix that differs', { time: [{ prefix: '2017-10-03' }] }, false],
    ['prefix with equals-ignore-case', { source: [{ prefix: { 'equals-ignore-case': 'AWS.' } }] }, true],
    ['suffix', { source: [{ suffix: 'ec2' }] }, true],
    ['suffix with equals-ignore-case', { source: [{ suffix: { 'equals-ignore-case': 'EC2' } }] }, true],
    ['suffix that differs', { source: [{ suffix: 's3' }] }, false],
    ['equals-ignore-case', { source: [{ 'equals-ignore-case': 'AWS.EC2' }] }, true],
    ['equals-ignore-case that differs', { source: [{ 'equals-ignore-case': 'aws.ec' }] }, false],
    ['wildcard', { source: [{ wildcard: 'aws.*' }] }, true],
    ['wildcard with a star in the middle', { 'detail-type': [{ wildcard: 'EC2*Notification' }] }, true],
    ['wildcard that differs', { source: [{ wildcard: '*.s3' }] }, false],
    ['anything-but a string', { detail: { state: [{ 'anything-but': 'initializing' }] } }, true],
    ['anything-but the value itself', { detail: { state: [{ 'anything-but': 'running' }] } }, false],
    ['anything-but a number', { detail: { 'x-limit': [{ 'anything-but': 123 }] } }, true],
    [
      'anything-but a string list',
      { detail: { state: [{ 'anything-but': ['stopped', 'overloaded'] }] } },
      true,
    ],
    ['anything-but a number list', { detail: { 'x-limit': [{ 'anything-but': [100, 200, 300] }] } }, true],
    [
      'anything-but a list with the value',
      { detail: { 'x-limit': [{ 'anything-but': [100, 301.8] }] } },
      false,
    ],
    ['anything-but prefix', { detail: { state: [{ 'anything-but': { prefix: 'init' } }] } }, true],
    [
      'anything-but prefix of the value',
      { detail: { state: [{ 'anything-but': { prefix: 'run' } }] } },
      false,
    ],
    [
      'anything-but suffix of the value',
      { detail: { state: [{ 'anything-but': { suffix: 'ing' } }] } },
      false,
    ],
    [
      'anything-but equals-ignore-case',
      { detail: { state: [{ 'anything-but': { 'equals-ignore-case': 'RUNNING' } }] } },
      false,
    ],
    ['anything-but wildcard', { detail: { state: [{ 'anything-but': { wildcard: 'r*g' } }] } }, false],
    [
      'anything-but wildcard list',
      { detail: { state: [{ 'anything-but': { wildcard: ['x*', 'y*'] } }] } },
      true,
    ],
    ['numeric range', { detail: { 'c-count': [{ numeric: ['>', 0, '<=', 5] }] } }, true],
    ['numeric below', { detail: { 'd-count': [{ numeric: ['<', 10] }] } }, true],
    ['numeric equals in exponent notation', { detail: { 'x-limit': [{ numeric: ['=', 3.018e2] }] } }, true],
    ['numeric out of range', { detail: { 'c-count': [{ numeric: ['>', 5] }] } }, false],
    ['numeric open top', { detail: { 'c-count': [{ numeric: ['>=', 0, '<', 5] }] } }, false],
    ['cidr', { detail: { 'source-ip': [{ cidr: '10.0.0.0/24' }] } }, true],
    ['cidr that differs', { detail: { 'source-ip': [{ cidr: '10.0.1.0/24' }] } }, false],
    ['exists true', { detail: { 'c-count': [{ exists: true }] } }, true],
    ['exists false on a present field', { detail: { 'c-count': [{ exists: false }] } }, false],
    ['exists false on a missing field', { detail: { 'e-count': [{ exists: false }] } }, true],
    ['exists true on an intermediate node', { detail: [{ exists: true }] }, false],
    [
      'the complex example',
      {
        time: [{ prefix: '2017-10-02' }],
        detail: {
          state: [{ 'anything-but': 'initializing' }],
          'c-count': [{ numeric: ['>', 0, '<=', 5] }],
          'd-count': [{ numeric: ['<', 10] }],
          'x-limit': [{ 'anything-but': [100, 200, 300] }],
          'source-ip': [{ cidr: '10.0.0.0/8' }],
        },
      },
      true,
    ],
  ])('%s', (_name, pattern, expected) => {
    expect(matcher(pattern)(ec2Event)).toBe(expected);
  });
});

describe('null, empty strings and missing fields', () => {
  // The EventBridge user guide's "null values and empty strings" example event.
  const event = {
    'detail-type': 'EC2 Instance Launch Successful',
    source: 'aws.autoscaling',
    resources: [],
    detail: { eventVersion: '', responseElements: null },
  };
  it.each<[string, unknown, boolean]>([
    ['"" matches an empty string', { detail: { eventVersion: [''] } }, true],
    ['null matches null', { detail: { responseElements: [null] } }, true],
    ['null does not match an empty string', { detail: { eventVersion: [null] } }, false],
    ['"" does not match null', { detail: { responseElements: [''] } }, false],
    ['null does not match a missing field', { detail: { nothing: [null] } }, false],
    ['a null value exists', { detail: { responseElements: [{ exists: true }] } }, true],
    [
      'anything-but matches null (it is present)',
      { detail: { responseElements: [{ 'anything-but': 'x' }] } },
      true,
    ],
    ['anything-but never matches a missing field', { detail: { nothing: [{ 'anything-but': 'x' }] } }, false],
    ['an empty list does not exist', { resources: [{ exists: false }] }, true],
    ['an empty list matches no value', { resources: [{ exists: true }] }, false],
    ['a missing parent: exists false matches', { nothing: { deeper: [{ exists: false }] } }, true],
    ['a missing parent: a value does not', { nothing: { deeper: ['x'] } }, false],
  ])('%s', (_name, pattern, expected) => {
    expect(matcher(pattern)(event)).toBe(expected);
  });

  it('exists false matches a field whose value is a mapping (not a leaf)', () => {
    const withObject = { detail: { state: 'running', 'c-count': { c1: 100 } } };
    expect(matcher({ detail: { 'c-count': [{ exists: false }] } })(withObject)).toBe(true);
  });
});

describe('JSON types', () => {
  const doc = { n: 5, s: '5', t: true, ts: 'true', big: 300 };
  it.each<[string, unknown, boolean]>([
    ['a number pattern matches the number', { n: [5] }, true],
    ['a number pattern does not match a numeric string', { s: [5] }, false],
    ['a string pattern does not match a number', { n: ['5'] }, false],
    ['numeric does not match a numeric string', { s: [{ numeric: ['>', 1] }] }, false],
    ['numbers compare numerically (300 = 3.0e2)', { big: [3.0e2] }, true],
    ['true matches the boolean', { t: [true] }, true],
    ['true does not match the string "true"', { ts: [true] }, false],
    ['prefix does not apply to numbers', { n: [{ prefix: '5' }] }, false],
    ['anything-but a string list matches a number', { n: [{ 'anything-but': ['5'] }] }, true],
    ['anything-but a number list matches a numeric string', { s: [{ 'anything-but': [5] }] }, true],
  ])('%s', (_name, pattern, expected) => {
    expect(matcher(pattern)(doc)).toBe(expected);
  });
});

describe('arrays in the document', () => {
  it('a value list matches when the intersection is not empty', () => {
    expect(matcher({ tags: ['b', 'z'] })({ tags: ['a', 'b'] })).toBe(true);
    expect(matcher({ tags: ['z'] })({ tags: ['a', 'b'] })).toBe(false);
  });

  it('anything-but matches when any element is not excluded', () => {
    expect(matcher({ state: [{ 'anything-but': 'stopped' }] })({ state: ['stopped', 'running'] })).toBe(true);
    expect(matcher({ state: [{ 'anything-but': 'stopped' }] })({ state: ['stopped'] })).toBe(false);
  });

  // aws/event-ruler README, "JSON Array Matching".
  const employees = {
    employees: [
      { firstName: 'John', lastName: 'Doe' },
      { firstName: 'Anna', lastName: 'Smith' },
      { firstName: 'Peter', lastName: 'Jones' },
    ],
  };
  it('a nested pattern matches inside any element', () => {
    expect(matcher({ employees: { firstName: ['Anna'] } })(employees)).toBe(true);
  });

  it('fields of a nested pattern must match in the same element (array consistency)', () => {
    expect(matcher({ employees: { firstName: ['Anna'], lastName: ['Jones'] } })(employees)).toBe(false);
    expect(matcher({ employees: { firstName: ['Anna'], lastName: ['Smith'] } })(employees)).toBe(true);
  });

  it('multi-level arrays are crushed', () => {
    const nested = {
      employees: [[employees.employees[0], employees.employees[1]], [employees.employees[2]]],
    };
    expect(matcher({ employees: { firstName: ['Peter'] } })(nested)).toBe(true);
    expect(matcher({ ids: [3] })({ ids: [[1, 2], [3]] })).toBe(true);
  });
});

describe('$or', () => {
  // aws/event-ruler README, "The $or Primitive".
  const cw = { source: 'aws.cloudwatch', metricName: 'CPUUtilization', namespace: 'AWS/EC2', scope: 'x' };
  it.each<[string, unknown, unknown, boolean]>([
    [
      'source && (metricName || namespace)',
      {
        source: ['aws.cloudwatch'],
        $or: [{ metricName: ['CPUUtilization', 'ReadLatency'] }, { namespace: ['AWS/ES'] }],
      },
      cw,
      true,
    ],
    [
      'no branch matches',
      { source: ['aws.cloudwatch'], $or: [{ metricName: ['ReadLatency'] }, { namespace: ['AWS/ES'] }] },
      cw,
      false,
    ],
    [
      'a branch with an AND inside',
      {
        source: ['aws.cloudwatch'],
        $or: [
          { metricName: ['ReadLatency'] },
          { metricType: ['MetricType'], namespace: ['AWS/EC2'] },
          { scope: ['Service'] },
        ],
      },
      { ...cw, metricType: 'MetricType' },
      true,
    ],
    [
      'nested $or inside a nested object',
      {
        detail: {
          $or: [{ source: ['aws.cloudwatch'] }, { 'detail-type': ['CloudWatch Alarm State Change'] }],
        },
      },
      { detail: { 'detail-type': 'CloudWatch Alarm State Change' } },
      true,
    ],
  ])('%s', (_name, pattern, doc, expected) => {
    expect(matcher(pattern)(doc)).toBe(expected);
  });
});

describe('IP addresses', () => {
  it('an exact IP value matches the same address in another notation', () => {
    expect(matcher({ ip: ['2001:db8::1'] })({ ip: '2001:0DB8:0:0:0:0:0:1' })).toBe(true);
    expect(matcher({ ip: ['10.0.0.1'] })({ ip: '10.0.0.2' })).toBe(false);
  });

  it('cidr works for IPv6 and never mixes families', () => {
    expect(matcher({ ip: [{ cidr: '2001:db8::/32' }] })({ ip: '2001:db8:ffff::7' })).toBe(true);
    expect(matcher({ ip: [{ cidr: '2001:db8::/32' }] })({ ip: '2001:db9::7' })).toBe(false);
    expect(matcher({ ip: [{ cidr: '0.0.0.0/0' }] })({ ip: '::1' })).toBe(false);
    expect(matcher({ ip: [{ cidr: '10.0.0.0/8' }] })({ ip: 'not an ip' })).toBe(false);
  });

  it('parses embedded IPv4 and masks host bits', () => {
    expect(parseIp('::ffff:10.0.0.1')).toEqual(parseIp('::ffff:a00:1'));
    const cidr = parseCidr('192.168.1.77/24');
    expect(cidr && cidrContains(cidr, parseIp('192.168.1.200') as Uint8Array)).toBe(true);
    expect(parseCidr('10.0.0.0/33')).toBeNull();
  });
});

describe('wildcards', () => {
  it.each<[string, string, boolean]>([
    ['*', '', true],
    ['a*', 'abc', true],
    ['*c', 'abc', true],
    ['a*b*c', 'a-b-b-c', true],
    ['a*b*c', 'acb', false],
    ['ab*ba', 'aba', false],
    ['\\*literal', '*literal', true],
    ['\\*literal', 'xliteral', false],
    ['back\\\\slash', 'back\\slash', true],
    ['*/lib/*', '/usr/lib/node', true],
  ])('%s on %j → %s', (pattern, value, expected) => {
    const glob = compileWildcard(pattern);
    expect(typeof glob).toBe('function');
    expect((glob as (s: string) => boolean)(value)).toBe(expected);
  });
});

describe('a pattern matches everything when empty', () => {
  it.each([undefined, null, {}])('%j', (pattern) => {
    expect(compilePattern(pattern).matcher({ anything: 1 })).toBe(true);
  });
});

describe('pattern problems are located by path', () => {
  it.each<[string, unknown, (string | number)[], RegExp]>([
    [
      'a bare value',
      { source: 'aws.ec2' },
      ['source'],
      /Expected a list of values or a mapping of fields, got the string "aws.ec2" \(write \["aws.ec2"\]\)/,
    ],
    [
      'an unknown operator',
      { source: [{ prefx: 'aws.' }] },
      ['source', 0, 'prefx'],
      /Unknown operator "prefx" \(did you mean "prefix"\?\)/,
    ],
    [
      'a numeric operand that is not a number',
      { n: [{ numeric: ['>', 'x'] }] },
      ['n', 0, 'numeric', 1],
      /Expected a number after ">", got the string "x"/,
    ],
    [
      'a numeric range opened with <',
      { n: [{ numeric: ['<', 5, '>', 1] }] },
      ['n', 0, 'numeric', 0],
      /Expected ">" or ">=" to open a range/,
    ],
    [
      'an empty numeric range',
      { n: [{ numeric: ['>', 5, '<', 1] }] },
      ['n', 0, 'numeric'],
      /Expected a non-empty range/,
    ],
    [
      'an unknown numeric operator',
      { n: [{ numeric: ['!=', 5] }] },
      ['n', 0, 'numeric', 0],
      /Expected one of "=", "<", "<=", ">", ">="/,
    ],
    [
      'anything-but with an empty list',
      { s: [{ 'anything-but': [] }] },
      ['s', 0, 'anything-but'],
      /empty list/,
    ],
    [
      'anything-but with mixed types',
      { s: [{ 'anything-but': ['a', 1] }] },
      ['s', 0, 'anything-but'],
      /only strings or only numbers/,
    ],
    [
      'anything-but with null',
      { s: [{ 'anything-but': [null] }] },
      ['s', 0, 'anything-but', 0],
      /does not take null/,
    ],
    [
      'anything-but with an empty prefix',
      { s: [{ 'anything-but': { prefix: '' } }] },
      ['s', 0, 'anything-but', 'prefix'],
      /non-empty prefix/,
    ],
    [
      'anything-but with an unsupported operator',
      { s: [{ 'anything-but': { numeric: ['>', 1] } }] },
      ['s', 0, 'anything-but', 'numeric'],
      /Unsupported operator "numeric" inside anything-but/,
    ],
    [
      'exists that is not a boolean',
      { s: [{ exists: 'yes' }] },
      ['s', 0, 'exists'],
      /Expected true or false/,
    ],
    ['a bad cidr', { ip: [{ cidr: '10.0.0.0/33' }] }, ['ip', 0, 'cidr'], /CIDR block/],
    ['consecutive wildcards', { s: [{ wildcard: 'a**b' }] }, ['s', 0, 'wildcard'], /consecutive "\*"/],
    [
      'a bad wildcard escape',
      { s: [{ wildcard: 'a\\b' }] },
      ['s', 0, 'wildcard'],
      /backslash may only escape/,
    ],
    ['$or without a list', { $or: { a: ['x'] } }, ['$or'], /at least two mappings/],
    ['$or with one branch', { $or: [{ a: ['x'] }] }, ['$or'], /at least two mappings/],
    [
      'an operator name as a field inside $or',
      { $or: [{ prefix: ['x'] }, { b: ['y'] }] },
      ['$or', 0, 'prefix'],
      /operator name and cannot be a field inside \$or/,
    ],
    ['an empty nested mapping', { detail: {} }, ['detail'], /Expected at least one field/],
    ['an empty value list', { detail: [] }, ['detail'], /Expected at least one value/],
    [
      'an operator without its list',
      { source: { prefix: 'aws.' } },
      ['source'],
      /Expected a list around the operator/,
    ],
    [
      'two operators in one mapping',
      { s: [{ prefix: 'a', suffix: 'b' }] },
      ['s', 0],
      /Expected exactly one operator/,
    ],
    [
      'equals-ignore-case with a number',
      { s: [{ 'equals-ignore-case': 5 }] },
      ['s', 0, 'equals-ignore-case'],
      /Expected a string, got number 5/,
    ],
  ])('%s', (_name, pattern, path, message) => {
    const { problems, matcher } = compilePattern(pattern);
    expect(problems).toHaveLength(1);
    expect(problems[0]?.path).toEqual(path);
    expect(problems[0]?.message).toMatch(message);
    expect(matcher({})).toBe(false);
  });

  it('collects every problem, not only the first', () => {
    const { problems } = compilePattern({
      a: 'x',
      b: [{ prefx: 'y' }],
      c: { d: [{ numeric: ['>', 'z'] }] },
    });
    expect(problems.map((p) => p.path)).toEqual([['a'], ['b', 0, 'prefx'], ['c', 'd', 0, 'numeric', 1]]);
  });

  it('reports a pattern that is not a mapping', () => {
    expect(compilePattern(['x']).problems[0]?.message).toBe('Expected a mapping of fields, got a list');
  });
});
