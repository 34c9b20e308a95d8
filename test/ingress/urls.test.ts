import { describe, expect, it } from 'vitest';
import { DEFAULT_CERT_HOST_PATTERN } from '../../src/config/schema.js';
import { compileTopicAllowList } from '../../src/ingress/sns/topics.js';
import { checkSigningCertUrl, checkSubscribeUrl, compileHostPattern } from '../../src/ingress/sns/urls.js';

const aws = compileHostPattern(DEFAULT_CERT_HOST_PATTERN);
const PEM = '/SimpleNotificationService-7ff5318490ec183fbaddaa2a969abfda.pem';

describe('checkSigningCertUrl (before any fetch)', () => {
  it.each([
    `https://sns.us-east-1.amazonaws.com${PEM}`,
    `https://sns.cn-north-1.amazonaws.com.cn${PEM}`,
    `https://sns.us-gov-west-1.amazonaws.com${PEM}`,
    `https://SNS.US-EAST-1.AMAZONAWS.COM${PEM}`,
    `https://sns.us-east-1.amazonaws.com:443${PEM}`,
  ])('accepts %s', (url) => {
    expect(checkSigningCertUrl(url, aws)).toMatchObject({ ok: true });
  });

  it.each([
    ['missing', undefined, /Expected a SigningCertURL field/],
    ['empty', '', /Expected a SigningCertURL field/],
    ['not a URL', 'sns.us-east-1.amazonaws.com/x.pem', /to be a URL/],
    ['over http', `http://sns.us-east-1.amazonaws.com${PEM}`, /to use https, got the string "http:"/],
    ['a foreign host', `https://attacker.example${PEM}`, /on an SNS host .*attacker\.example/],
    ['a look-alike suffix', `https://sns.us-east-1.amazonaws.com.attacker.example${PEM}`, /on an SNS host/],
    ['a look-alike prefix', `https://evilsns.us-east-1.amazonaws.com${PEM}`, /on an SNS host/],
    ['another port', `https://sns.us-east-1.amazonaws.com:8443${PEM}`, /on an SNS host/],
    ['userinfo', `https://user:pw@sns.us-east-1.amazonaws.com${PEM}`, /without user information/],
    [
      'userinfo hiding the real host',
      `https://sns.us-east-1.amazonaws.com@attacker.example${PEM}`,
      /user information|SNS host/,
    ],
    ['a query', `https://sns.us-east-1.amazonaws.com${PEM}?x=1`, /without a query/],
    ['an empty query', `https://sns.us-east-1.amazonaws.com${PEM}?`, /without a query/],
    ['a fragment', `https://sns.us-east-1.amazonaws.com${PEM}#x`, /without a fragment/],
    [
      'a non-SNS path',
      'https://sns.us-east-1.amazonaws.com/cert.pem',
      /path \/SimpleNotificationService-<hex>\.pem/,
    ],
    ['a nested path', `https://sns.us-east-1.amazonaws.com/a${PEM}`, /path/],
    ['a non-hex name', 'https://sns.us-east-1.amazonaws.com/SimpleNotificationService-xyz.pem', /path/],
    [
      'an encoded slash',
      'https://sns.us-east-1.amazonaws.com/SimpleNotificationService-ab%2F..%2Fx.pem',
      /path/,
    ],
    ['another scheme', `file:///etc${PEM}`, /https/],
    ['a very long URL', `https://sns.us-east-1.amazonaws.com/${'a'.repeat(3000)}`, /at most 2048/],
  ])('refuses %s', (_name, url, message) => {
    const r = checkSigningCertUrl(url, aws);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.message).toMatch(message);
  });

  it('normalises dot segments before checking, so what is fetched is what was checked', () => {
    const r = checkSigningCertUrl(`https://sns.us-east-1.amazonaws.com/x/..${PEM}`, aws);
    expect(r).toMatchObject({ ok: true });
    if (r.ok) expect(r.url.href).toBe(`https://sns.us-east-1.amazonaws.com${PEM}`);
  });
});

describe('checkSubscribeUrl', () => {
  it('accepts the SNS ConfirmSubscription URL with its query', () => {
    const url =
      'https://sns.us-west-2.amazonaws.com/?Action=ConfirmSubscription&TopicArn=arn:aws:sns:us-west-2:123456789012:t&Token=abc';
    expect(checkSubscribeUrl(url, aws)).toMatchObject({ ok: true });
  });
  it.each([
    ['http', 'http://sns.us-west-2.amazonaws.com/?Action=ConfirmSubscription', /https/],
    ['a foreign host', 'https://attacker.example/?Action=ConfirmSubscription', /SNS host/],
    ['userinfo', 'https://a:b@sns.us-west-2.amazonaws.com/?Action=ConfirmSubscription', /user information/],
  ])('refuses %s', (_name, url, message) => {
    const r = checkSubscribeUrl(url, aws);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.message).toMatch(message);
  });
});

describe('compileHostPattern', () => {
  it('anchors a pattern the user left unanchored', () => {
    const re = compileHostPattern('sns\\.amazonaws\\.com');
    expect(re.test('sns.amazonaws.com')).toBe(true);
    expect(re.test('sns.amazonaws.com.attacker.example')).toBe(false);
    expect(re.test('xsns.amazonaws.com')).toBe(false);
  });
  it('keeps alternations inside the anchors', () => {
    const re = compileHostPattern('a\\.example|b\\.example');
    expect(re.test('a.example')).toBe(true);
    expect(re.test('a.example.evil')).toBe(false);
    expect(re.test('evil.b.example')).toBe(false);
  });
});

describe('compileTopicAllowList', () => {
  const allowed = compileTopicAllowList([
    'arn:aws:sns:*:123456789012:*',
    'arn:aws:sns:eu-west-1:210987654321:pager-?',
  ]);
  it.each([
    ['arn:aws:sns:us-east-1:123456789012:alarms', true],
    ['arn:aws:sns:eu-west-1:123456789012:x.fifo', true],
    ['arn:aws:sns:eu-west-1:210987654321:pager-1', true],
    ['arn:aws:sns:eu-west-1:210987654321:pager-12', false],
    ['arn:aws:sns:eu-west-1:210987654321:other', false],
    ['arn:aws:sns:us-east-1:999999999999:alarms', false],
    ['arn:aws-cn:sns:cn-north-1:123456789012:alarms', false],
  ])('%s → %s', (arn, expected) => {
    expect(allowed(arn)).toBe(expected);
  });
  it('treats regular-expression characters literally', () => {
    const only = compileTopicAllowList(['arn:aws:sns:us-east-1:123456789012:a.b']);
    expect(only('arn:aws:sns:us-east-1:123456789012:a.b')).toBe(true);
    expect(only('arn:aws:sns:us-east-1:123456789012:aXb')).toBe(false);
  });
  it('allows any topic when the list is empty (dry-run only, enforced by the config loader)', () => {
    expect(compileTopicAllowList([])('arn:aws:sns:us-east-1:999999999999:x')).toBe(true);
  });
  it('allows any topic with "*"', () => {
    expect(compileTopicAllowList(['*'])('arn:aws:sns:us-east-1:999999999999:x')).toBe(true);
  });
});
