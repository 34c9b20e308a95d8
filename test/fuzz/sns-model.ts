import { type KeyObject, verify } from 'node:crypto';
import { SIGNED } from '../helpers/fake-sns.js';

/**
 * The fuzz suite's reference model of what the relay answers to one SNS request body, written from
 * DESIGN.md and the configuration, independently of src/ (a model that called the relay's own
 * checks would agree with any bug in them). The relay's documented order: body (UTF-8) → raw
 * delivery header → JSON → envelope shape → message-type header → topic allow-list →
 * SigningCertURL (and SubscribeURL) → signature fields → certificate → signature → MessageId
 * de-dup → act by Type.
 */

/** One acceptable answer: from the relay's handlers (JSON body) or from Node's HTTP parser (empty body). */
export type Outcome =
  | { layer: 'app'; status: number; error?: string; result?: string }
  | { layer: 'node'; status: number }
  | { layer: 'closed' };

export const app = (status: number, code?: string): Outcome =>
  status === 200
    ? { layer: 'app', status, ...(code ? { result: code } : {}) }
    : { layer: 'app', status, ...(code ? { error: code } : {}) };
export const node = (status: number): Outcome => ({ layer: 'node', status });
export const closed: Outcome = { layer: 'closed' };

/** What the model makes of a body: the acceptable answers and, when it is a genuine message, which one. */
export interface Verdict {
  outcomes: Outcome[];
  /** Set when every check passes: the request is a genuine SNS message (first delivery or not). */
  genuine?: { type: SnsType; messageId: string; token?: string };
  /** Why (for failure messages). */
  why: string;
}

export type SnsType = 'Notification' | 'SubscriptionConfirmation' | 'UnsubscribeConfirmation';
const TYPES: readonly string[] = ['Notification', 'SubscriptionConfirmation', 'UnsubscribeConfirmation'];

/** An SNS topic ARN (https://docs.aws.amazon.com/sns/latest/api/API_CreateTopic.html). */
const TOPIC_ARN = /^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}(\.fifo)?$/;
const CERT_PATH = /^\/SimpleNotificationService-[0-9a-f]{1,64}\.pem$/;

export interface ModelConfig {
  /** `sns.topics` globs. */
  topics: readonly string[];
  /** `sns.certHostPattern`. */
  certHostPattern: string;
  /** What the certificate host serves: `origin + pathname` → the certificate's key, or 'garbage'. */
  served: ReadonlyMap<string, KeyObject | 'garbage'>;
}

export interface RequestContext {
  /** The x-amz-sns-message-type header as Node hands it over (repeats joined by ", "), or null. */
  messageType: string | null;
  /** The x-amz-sns-rawdelivery header, or null. */
  rawDelivery: string | null;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

export class SnsModel {
  readonly #topics: RegExp[];
  readonly #host: RegExp;

  constructor(readonly config: ModelConfig) {
    this.#topics = config.topics.map(
      (glob) =>
        new RegExp(
          `^${glob
            .split('')
            .map((c) => (c === '*' ? '.*' : c === '?' ? '.' : c.replace(/[.+^${}()|[\]\\]/g, '\\$&')))
            .join('')}$`,
        ),
    );
    this.#host = new RegExp(`^(?:${config.certHostPattern})$`);
  }

  /** The answer to a POST that reached the SNS handler with an acceptable size and credentials. */
  body(bytes: Buffer, ctx: RequestContext): Verdict {
    let text: string;
    try {
      text = utf8.decode(bytes);
    } catch {
      return refuse(400, 'bad_request', 'not UTF-8');
    }
    if (ctx.rawDelivery?.trim().toLowerCase() === 'true')
      return refuse(403, 'raw_delivery', 'raw delivery header');
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      return refuse(400, 'bad_request', 'not JSON');
    }
    return this.envelope(json, ctx);
  }

  /** The answer to a parsed body. */
  envelope(json: unknown, ctx: RequestContext): Verdict {
    if (json === null || typeof json !== 'object' || Array.isArray(json))
      return refuse(400, 'bad_request', 'not an object');
    const o = json as Record<string, unknown>;
    if (typeof o.Type !== 'string' || !TYPES.includes(o.Type)) return refuse(400, 'bad_request', 'bad Type');
    const type = o.Type as SnsType;
    const required = ['MessageId', 'TopicArn', 'Message', 'Timestamp'];
    if (type !== 'Notification') required.push('Token', 'SubscribeURL');
    for (const k of required)
      if (typeof o[k] !== 'string') return refuse(400, 'bad_request', `${k} not a string`);
    const optional = ['SignatureVersion', 'Signature', 'SigningCertURL'];
    if (type === 'Notification') optional.push('UnsubscribeURL');
    for (const k of optional)
      if (o[k] !== undefined && typeof o[k] !== 'string')
        return refuse(400, 'bad_request', `${k} not a string`);
    if (
      type === 'Notification' &&
      o.Subject !== undefined &&
      o.Subject !== null &&
      typeof o.Subject !== 'string'
    )
      return refuse(400, 'bad_request', 'Subject not a string');
    const id = o.MessageId as string;
    if (id.length < 1 || id.length > 128) return refuse(400, 'bad_request', 'MessageId length');
    if (!TOPIC_ARN.test(o.TopicArn as string)) return refuse(400, 'bad_request', 'TopicArn shape');
    if (type === 'Notification' && o.MessageAttributes !== undefined && o.MessageAttributes !== null) {
      const attrs = o.MessageAttributes;
      if (typeof attrs !== 'object' || Array.isArray(attrs))
        return refuse(400, 'bad_request', 'attributes shape');
      for (const a of Object.values(attrs as object)) {
        const v = a as { Type?: unknown; Value?: unknown } | null;
        if (!v || typeof v !== 'object' || typeof v.Type !== 'string' || typeof v.Value !== 'string')
          return refuse(400, 'bad_request', 'attribute shape');
      }
    }
    if (ctx.messageType !== null && ctx.messageType !== type)
      return refuse(400, 'bad_request', 'header type');
    if (!this.#topics.some((t) => t.test(o.TopicArn as string)))
      return refuse(403, 'topic_not_allowed', 'topic');

    const cert = this.#certUrl(o.SigningCertURL as string | undefined);
    if (cert.refused) return refuse(403, 'bad_cert_url', `cert URL: ${cert.refused}`);
    if (type === 'SubscriptionConfirmation') {
      const why = this.#urlProblem(o.SubscribeURL as string);
      if (why) return refuse(403, 'bad_subscribe_url', `SubscribeURL: ${why}`);
    }
    const version = o.SignatureVersion;
    const digest = version === '1' ? 'sha1' : version === '2' ? 'sha256' : null;
    if (!digest) return refuse(403, 'bad_signature', 'SignatureVersion');
    const signature = typeof o.Signature === 'string' ? Buffer.from(o.Signature, 'base64') : Buffer.alloc(0);
    if (signature.length === 0) return refuse(403, 'bad_signature', 'no Signature');
    if (!cert.key) return refuse(503, 'cert_unavailable', 'certificate not served');

    let signed = '';
    for (const k of SIGNED[type] ?? []) if (typeof o[k] === 'string') signed += `${k}\n${o[k]}\n`;
    let valid = false;
    try {
      valid = verify(digest, Buffer.from(signed, 'utf8'), cert.key, signature);
    } catch {
      valid = false;
    }
    if (!valid) return refuse(403, 'bad_signature', 'signature does not verify');
    const first =
      type === 'Notification'
        ? 'accepted'
        : type === 'SubscriptionConfirmation'
          ? 'confirmed'
          : 'unsubscribe_logged';
    return {
      outcomes: [app(200, first), app(200, 'duplicate')],
      genuine: {
        type,
        messageId: id,
        ...(type === 'SubscriptionConfirmation' ? { token: o.Token as string } : {}),
      },
      why: 'genuine',
    };
  }

  /** SigningCertURL: refused before any fetch, or the key of what the host serves there (null: nothing usable). */
  #certUrl(value: string | undefined): { refused?: string; key?: KeyObject | null } {
    if (value === undefined || value === '') return { refused: 'missing' };
    const why = this.#urlProblem(value);
    if (why) return { refused: why };
    const url = new URL(value);
    if (value.includes('?') || url.search !== '') return { refused: 'query' };
    if (!CERT_PATH.test(url.pathname)) return { refused: 'path' };
    const served = this.config.served.get(url.origin + url.pathname);
    return { key: served === undefined || served === 'garbage' ? null : served };
  }

  /** DESIGN.md: https, a host matching the pattern, at most 2048 characters, no userinfo or fragment. */
  #urlProblem(value: string): string | null {
    if (value === '') return 'missing';
    if (value.length > 2048) return 'too long';
    let url: URL;
    try {
      url = new URL(value);
    } catch {
      return 'not a URL';
    }
    if (url.protocol !== 'https:') return 'not https';
    if (url.username !== '' || url.password !== '') return 'userinfo';
    if (url.hash !== '') return 'fragment';
    if (!this.#host.test(url.host)) return 'host';
    return null;
  }
}

function refuse(status: number, error: string, why: string): Verdict {
  return { outcomes: [app(status, error)], why };
}
