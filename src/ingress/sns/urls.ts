import { describeValue } from '../../errors.js';

/**
 * The host check for SigningCertURL and SubscribeURL, from `sns.certHostPattern`. Always anchored
 * (`^(?:pattern)$`) whatever the user wrote: an unanchored `sns\.amazonaws\.com` would otherwise let
 * `sns.amazonaws.com.attacker.example` through. Tested against URL.host, i.e. `host[:port]`.
 */
export function compileHostPattern(pattern: string): RegExp {
  return new RegExp(`^(?:${pattern})$`);
}

/** The only path SNS serves signing certificates from (AWS docs, "Verifying the signatures of Amazon SNS messages"). */
const CERT_PATH = /^\/SimpleNotificationService-[0-9a-f]{1,64}\.pem$/;
const MAX_URL_CHARS = 2048;

export type UrlCheck = { ok: true; url: URL } | { ok: false; message: string };

/**
 * Whether `value` may be fetched as a signing certificate: https, host matching the pattern, path
 * `/SimpleNotificationService-<hex>.pem`, no query, no fragment, no userinfo. Checked before any
 * fetch. The returned URL is the one to fetch (and the cache key): what was checked is what is fetched.
 */
export function checkSigningCertUrl(value: string | undefined, host: RegExp): UrlCheck {
  const base = checkUrl('SigningCertURL', value, host);
  if (!base.ok) return base;
  const { url } = base;
  if (value?.includes('?') || url.search !== '') return fail('Expected SigningCertURL without a query.');
  if (!CERT_PATH.test(url.pathname)) {
    return fail(
      `Expected SigningCertURL path /SimpleNotificationService-<hex>.pem, got ${describeValue(url.pathname)}.`,
    );
  }
  return base;
}

/**
 * Whether `value` may be fetched to confirm a subscription: https, host matching the pattern, no
 * fragment, no userinfo. The query carries the Action and the Token, so it is allowed.
 */
export function checkSubscribeUrl(value: string, host: RegExp): UrlCheck {
  return checkUrl('SubscribeURL', value, host);
}

function checkUrl(field: string, value: string | undefined, host: RegExp): UrlCheck {
  if (value === undefined || value === '') return fail(`Expected a ${field} field.`);
  if (value.length > MAX_URL_CHARS) return fail(`Expected ${field} of at most ${MAX_URL_CHARS} characters.`);
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return fail(`Expected ${field} to be a URL, got ${describeValue(value)}.`);
  }
  if (url.protocol !== 'https:')
    return fail(`Expected ${field} to use https, got ${describeValue(url.protocol)}.`);
  if (url.username !== '' || url.password !== '') {
    return fail(`Expected ${field} without user information.`);
  }
  if (url.hash !== '') return fail(`Expected ${field} without a fragment.`);
  if (!host.test(url.host)) {
    return fail(`Expected ${field} on an SNS host (sns.certHostPattern), got ${describeValue(url.host)}.`);
  }
  return { ok: true, url };
}

function fail(message: string): UrlCheck {
  return { ok: false, message };
}
