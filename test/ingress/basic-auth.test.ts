import { describe, expect, it } from 'vitest';
import { createBasicAuthCheck } from '../../src/ingress/sns/basic-auth.js';
import { Secret } from '../../src/shared/secret.js';

const check = createBasicAuthCheck({ username: 'sns', password: new Secret('s3cret-pässword') });
const basic = (s: string) => `Basic ${Buffer.from(s, 'utf8').toString('base64')}`;

describe('basic auth check', () => {
  it.each([
    ['the right credentials', basic('sns:s3cret-pässword'), 'ok'],
    ['a lower-case scheme', basic('sns:s3cret-pässword').replace('Basic', 'basic'), 'ok'],
    ['no header', undefined, 'missing'],
    ['an empty header', '', 'missing'],
    ['another scheme', 'Bearer abc', 'missing'],
    ['a wrong password of the same length', basic('sns:s3cret-pässwort'), 'invalid'],
    ['a wrong password, shorter', basic('sns:s3cret'), 'invalid'],
    ['a wrong password, longer', basic('sns:s3cret-pässword-and-more'), 'invalid'],
    ['a wrong user', basic('admin:s3cret-pässword'), 'invalid'],
    ['no colon', basic('sns'), 'invalid'],
    ['the password as user', basic('s3cret-pässword:sns'), 'invalid'],
  ])('%s → %s', (_name, header, expected) => {
    expect(check(header)).toBe(expected);
  });
});
