import { type HttpsGet, type HttpsGetOptions, httpsGet } from './https-get.js';

export type ConfirmResult =
  | { ok: true; subscriptionArn: string | null }
  | { ok: false; reason: 'timeout' | 'network' | 'too_large' | 'http_status'; message: string };

/**
 * Confirms a subscription by visiting its SubscribeURL (which the caller has verified: the message
 * was signed by SNS and the URL is https on an SNS host).
 */
export interface SubscriptionConfirmer {
  confirm(subscribeUrl: URL): Promise<ConfirmResult>;
}

export interface SubscriptionConfirmerOptions extends Partial<Pick<HttpsGetOptions, 'ca'>> {
  /** `sns.confirmTimeoutMs`. */
  timeoutMs: number;
  /** The host check (`sns.certHostPattern`), applied again here so that no caller can skip it. */
  hostPattern: RegExp;
  get?: HttpsGet;
}

/** SNS answers ConfirmSubscription with a small XML document; 64 KiB is plenty. */
const MAX_RESPONSE_BYTES = 64 * 1024;

/**
 * The real confirmer: an https GET with a hard timeout. SNS answers 200 with a
 * ConfirmSubscriptionResponse whose SubscriptionArn is reported for the log.
 * https://docs.aws.amazon.com/sns/latest/api/API_ConfirmSubscription.html
 */
export function createSubscriptionConfirmer(opts: SubscriptionConfirmerOptions): SubscriptionConfirmer {
  const get = opts.get ?? httpsGet;
  const getOptions: HttpsGetOptions = {
    timeoutMs: opts.timeoutMs,
    maxBytes: MAX_RESPONSE_BYTES,
    ...(opts.ca !== undefined ? { ca: opts.ca } : {}),
  };
  return {
    async confirm(url) {
      if (url.protocol !== 'https:' || !opts.hostPattern.test(url.host)) {
        throw new Error(`Refusing to confirm through ${url.protocol}//${url.host}: not an SNS https URL`);
      }
      const res = await get(url, getOptions);
      if (!res.ok) return { ok: false, reason: res.reason, message: res.message };
      if (res.status !== 200) {
        return { ok: false, reason: 'http_status', message: `Expected HTTP 200, got ${res.status}` };
      }
      const arn = /<SubscriptionArn>\s*([^<\s]+)\s*<\/SubscriptionArn>/.exec(res.body.toString('utf8'));
      return { ok: true, subscriptionArn: arn?.[1] ?? null };
    },
  };
}
