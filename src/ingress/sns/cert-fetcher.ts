import { type KeyObject, X509Certificate } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import { type HttpsGet, type HttpsGetOptions, httpsGet } from './https-get.js';
import { type Clock, systemClock } from './types.js';

/** Why a signing certificate could not be had: a fixed list (the `result` label of the fetch metric). */
export type CertFetchFailure = 'timeout' | 'network' | 'http_status' | 'too_large' | 'bad_certificate';

export type CertificateResult =
  | { ok: true; key: KeyObject }
  | { ok: false; reason: CertFetchFailure; message: string };

/** Gives the public key of the SNS signing certificate at a URL that already passed checkSigningCertUrl. */
export interface CertificateFetcher {
  getKey(url: URL): Promise<CertificateResult>;
}

/** One download attempt, reported to instrumentation (log line + metric). */
export interface CertFetchEvent {
  url: string;
  result: 'ok' | CertFetchFailure;
  durationMs: number;
  message?: string;
}

export interface CertificateFetcherOptions extends Partial<Pick<HttpsGetOptions, 'ca' | 'maxBytes'>> {
  /** `sns.certTimeoutMs`. */
  timeoutMs: number;
  /** Distinct certificate URLs kept (AWS has a handful per partition; each rotation adds a new name). */
  cacheSize?: number;
  /** How long a failed download answers from cache before the next attempt (keeps a herd off a failing host). */
  failureTtlMs?: number;
  clock?: Clock;
  get?: HttpsGet;
  onFetch?: (event: CertFetchEvent) => void;
}

/** A PEM certificate is ~2 KB; anything over 64 KiB is not one. */
export const MAX_CERT_BYTES = 64 * 1024;

/**
 * Downloads SNS signing certificates and keeps their public keys. Keys are cached by URL in a
 * bounded LRU (a URL names one certificate for good: AWS rotates to a new file name), so that
 * verification does not re-parse PEM per message. Concurrent requests for one URL share a single
 * download (single-flight). Failures are remembered only for `failureTtlMs`. Certificate dates are
 * deliberately not checked: AWS's own validators do not, and SNS has signed with certificates
 * past their notAfter.
 */
export function createCertificateFetcher(opts: CertificateFetcherOptions): CertificateFetcher {
  const clock = opts.clock ?? systemClock;
  const get = opts.get ?? httpsGet;
  const failureTtlMs = opts.failureTtlMs ?? 1_000;
  const getOptions: HttpsGetOptions = {
    timeoutMs: opts.timeoutMs,
    maxBytes: opts.maxBytes ?? MAX_CERT_BYTES,
    ...(opts.ca !== undefined ? { ca: opts.ca } : {}),
  };
  const cache = new LRUCache<string, CertificateResult>({
    max: opts.cacheSize ?? 64,
    perf: clock,
    ttlResolution: 0,
  });
  const inFlight = new Map<string, Promise<CertificateResult>>();

  const download = async (url: URL): Promise<CertificateResult> => {
    const started = clock.now();
    const result = await fetchKey(url);
    opts.onFetch?.({
      url: url.href,
      result: result.ok ? 'ok' : result.reason,
      durationMs: clock.now() - started,
      ...(result.ok ? {} : { message: result.message }),
    });
    if (result.ok) cache.set(url.href, result);
    else cache.set(url.href, result, { ttl: failureTtlMs });
    return result;
  };

  const fetchKey = async (url: URL): Promise<CertificateResult> => {
    const res = await get(url, getOptions);
    if (!res.ok) return { ok: false, reason: res.reason, message: res.message };
    if (res.status !== 200) {
      return { ok: false, reason: 'http_status', message: `Expected HTTP 200, got ${res.status}` };
    }
    try {
      const cert = new X509Certificate(res.body);
      return { ok: true, key: cert.publicKey };
    } catch (err) {
      return {
        ok: false,
        reason: 'bad_certificate',
        message: `Not a PEM certificate: ${(err as Error).message}`,
      };
    }
  };

  return {
    getKey(url) {
      const cached = cache.get(url.href);
      if (cached) return Promise.resolve(cached);
      let pending = inFlight.get(url.href);
      if (!pending) {
        pending = download(url).finally(() => inFlight.delete(url.href));
        inFlight.set(url.href, pending);
      }
      return pending;
    },
  };
}
