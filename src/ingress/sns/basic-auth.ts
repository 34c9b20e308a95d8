import { createHash, timingSafeEqual } from 'node:crypto';
import type { Secret } from '../../shared/secret.js';

export type BasicAuthResult = 'ok' | 'missing' | 'invalid';

/**
 * HTTP basic auth for the SNS routes. SNS supports credentials in the subscription URL
 * (`https://user:pass@host/sns`) but sends them only after a 401 with a `WWW-Authenticate`
 * challenge, so "missing" must be answered with that challenge.
 *
 * Comparison is constant-time in the credentials' content: both sides are hashed to fixed-length
 * SHA-256 digests and compared with timingSafeEqual, so neither the position of the first wrong
 * character nor the password's length shows in the answer time.
 */
export function createBasicAuthCheck(credentials: {
  username: string;
  password: Secret;
}): (authorization: string | null | undefined) => BasicAuthResult {
  const expected = digest(`${credentials.username}:${credentials.password.reveal()}`);
  return (authorization) => {
    if (!authorization) return 'missing';
    const match = /^Basic[ \t]+([A-Za-z0-9+/=]+)[ \t]*$/i.exec(authorization);
    if (!match) return 'missing';
    const given = digest(Buffer.from(match[1] as string, 'base64').toString('utf8'));
    return timingSafeEqual(given, expected) ? 'ok' : 'invalid';
  };
}

/** The challenge SNS waits for before it sends the credentials of its subscription URL (RFC 7617). */
export const BASIC_AUTH_CHALLENGE = 'Basic realm="pd-relay", charset="UTF-8"';

function digest(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest();
}
