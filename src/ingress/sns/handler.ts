import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import { LRUCache } from 'lru-cache';
import type { IngressInstruments, RequestRecord } from '../../metrics/ingress.js';
import { errorResponse } from '../../server/error-response.js';
import type { ReadinessProbe } from '../../server/readiness.js';
import type { Secret } from '../../shared/secret.js';
import { type EventSink, SpoolUnavailableError } from '../../spool/types.js';
import { BASIC_AUTH_CHALLENGE, createBasicAuthCheck } from './basic-auth.js';
import { readBody } from './body.js';
import type { SubscriptionConfirmer } from './confirmer.js';
import { parseEnvelope } from './envelope.js';
import type { SignatureVerifier } from './signature.js';
import { compileTopicAllowList } from './topics.js';
import {
  type Clock,
  type IngressResult,
  type NotificationHandler,
  type NotificationMessage,
  SNS_MESSAGE_TYPES,
  type SnsMessageType,
  systemClock,
} from './types.js';
import { checkSigningCertUrl, checkSubscribeUrl, compileHostPattern } from './urls.js';

/** `POST /sns/{endpoint}`: the name reaches the rules as `endpoint`; `POST /sns` is "default". */
export const ENDPOINT_PATTERN = /^[a-z0-9][a-z0-9_-]{0,63}$/;
export const DEFAULT_ENDPOINT = 'default';

/** The `sns.*` and `server.*` settings ingress reads. */
export interface SnsIngressOptions {
  /** `sns.topics`: allow-list globs; empty allows any topic. */
  topics: readonly string[];
  /** `sns.certHostPattern`. */
  certHostPattern: string;
  /** `sns.autoConfirm`. */
  autoConfirm: boolean;
  /** `server.maxBodyBytes`. */
  maxBodyBytes: number;
  /** `sns.messageIdCacheSize`. */
  messageIdCacheSize: number;
  /** `server.basicAuth`. */
  basicAuth?: { username: string; password: Secret } | undefined;
}

/** What ingress needs, all injected: no globals, so that tests pass trivial implementations. */
export interface SnsIngressDeps {
  options: SnsIngressOptions;
  verifier: SignatureVerifier;
  confirmer: SubscriptionConfirmer;
  handleNotification: NotificationHandler;
  sink: EventSink;
  instruments: IngressInstruments;
  /** Not ready (draining, …) → new SNS requests get 503 and SNS retries them later. */
  readiness: ReadinessProbe;
  clock?: Clock;
  newRequestId?: () => string;
}

/** The SNS front door: one call per request to `/sns` or `/sns/{endpoint}`, any method. */
export interface SnsIngress {
  /** `endpoint` is the raw path segment after /sns/, or undefined for /sns itself. */
  handle(request: Request, endpoint: string | undefined): Promise<Response>;
  /**
   * Applies the settings a config reload may change while running: the topic allow-list,
   * auto-confirmation and basic-auth credentials (a rotated password file). Requests already
   * past the check keep the settings they started with.
   */
  update(policy: SnsIngressPolicy): void;
}

/** The part of SnsIngressOptions that a reload can change. */
export type SnsIngressPolicy = Pick<SnsIngressOptions, 'topics' | 'autoConfirm' | 'basicAuth'>;

/** A decided answer: status, stable code and human message (errors), or a result body (2xx). */
interface Outcome {
  result: IngressResult;
  status: ContentfulStatusCode;
  /** For 4xx/5xx: the `error` code and `message` of the error body. */
  error?: { code: string; message: string };
  headers?: Record<string, string>;
}

const refuse = (
  result: IngressResult,
  status: ContentfulStatusCode,
  message: string,
  code: string = result,
  headers?: Record<string, string>,
): Outcome => ({ result, status, error: { code, message }, ...(headers ? { headers } : {}) });

const ok = (result: IngressResult): Outcome => ({ result, status: 200 });

/**
 * Builds the ingress pipeline. Checks run cheapest and least trusting first, and nothing is
 * fetched for a message that any check refuses: basic auth → path → method → readiness → body
 * size → raw-delivery header → JSON → envelope shape → message-type header → topic allow-list →
 * SigningCertURL (and SubscribeURL) → signature fields, then signature (the verifier, which may
 * fetch the certificate) → MessageId de-dup → act by Type.
 *
 * Status codes follow SNS's retry rule (2xx–4xx count as delivered, only 5xx and timeouts are
 * retried): 4xx only for "never send this again", 503 when a retry can succeed.
 */
export function createSnsIngress(deps: SnsIngressDeps): SnsIngress {
  const { options, verifier, confirmer, handleNotification, sink, instruments } = deps;
  const clock = deps.clock ?? systemClock;
  const newRequestId = deps.newRequestId ?? randomUUID;
  const hostPattern = compileHostPattern(options.certHostPattern);
  let topicAllowed = compileTopicAllowList(options.topics);
  let autoConfirm = options.autoConfirm;
  let checkAuth = options.basicAuth ? createBasicAuthCheck(options.basicAuth) : undefined;
  const dedup = createDeduplicator(options.messageIdCacheSize);

  const decide = async (
    request: Request,
    rawEndpoint: string | undefined,
    rec: RequestRecord,
  ): Promise<Outcome> => {
    if (checkAuth) {
      const auth = checkAuth(request.headers.get('authorization'));
      if (auth !== 'ok') {
        return refuse('unauthorized', 401, 'Expected valid basic-auth credentials.', 'unauthorized', {
          'www-authenticate': BASIC_AUTH_CHALLENGE,
        });
      }
    }
    const endpoint = rawEndpoint ?? DEFAULT_ENDPOINT;
    if (!ENDPOINT_PATTERN.test(endpoint)) {
      return refuse(
        'not_found',
        404,
        'Expected /sns or /sns/<endpoint> with an endpoint name of a-z, 0-9, "_", "-".',
      );
    }
    rec.endpoint = endpoint;
    if (request.method !== 'POST') {
      return refuse(
        'method_not_allowed',
        405,
        `Expected POST, got ${request.method.slice(0, 16)}.`,
        'method_not_allowed',
        {
          allow: 'POST',
        },
      );
    }
    const notReady = deps.readiness();
    if (notReady !== null) {
      return refuse(
        'draining',
        503,
        `The relay is not accepting messages right now (${notReady}); SNS will retry.`,
        'not_ready',
      );
    }

    const body = await readBody(request, options.maxBodyBytes);
    if (!body.ok) {
      return body.reason === 'too_large'
        ? refuse('too_large', 413, body.message, 'too_large', { connection: 'close' })
        : refuse('bad_request', 400, body.message);
    }
    // Raw delivery strips the envelope and its signature: nothing could be verified. Checked before
    // parsing because a raw body is usually not an envelope, and the operator should read "raw".
    if (request.headers.get('x-amz-sns-rawdelivery')?.trim().toLowerCase() === 'true') {
      return refuse(
        'raw_delivery',
        403,
        'Expected a signed SNS envelope, got raw message delivery: disable RawMessageDelivery on the subscription.',
      );
    }
    let json: unknown;
    try {
      json = JSON.parse(body.text);
    } catch {
      return refuse('bad_request', 400, 'Expected a JSON body (an SNS message).');
    }
    const parsed = parseEnvelope(json);
    if (!parsed.ok) return refuse('bad_request', 400, parsed.message);
    const envelope = parsed.envelope;
    rec.type = envelope.Type;
    rec.topic = envelope.TopicArn;
    rec.messageId = envelope.MessageId;

    const headerType = request.headers.get('x-amz-sns-message-type');
    if (headerType !== null && headerType !== envelope.Type) {
      return refuse(
        'bad_request',
        400,
        `Expected the x-amz-sns-message-type header to equal Type ${envelope.Type}, got ${JSON.stringify(headerType.slice(0, 40))}.`,
      );
    }
    if (!topicAllowed(envelope.TopicArn)) {
      return refuse(
        'topic_not_allowed',
        403,
        `Expected a topic allowed by sns.topics, got ${envelope.TopicArn}.`,
      );
    }
    const certUrl = checkSigningCertUrl(envelope.SigningCertURL, hostPattern);
    if (!certUrl.ok) return refuse('bad_cert_url', 403, certUrl.message);
    let subscribeUrl: URL | undefined;
    if (envelope.Type === 'SubscriptionConfirmation') {
      const checked = checkSubscribeUrl(envelope.SubscribeURL, hostPattern);
      if (!checked.ok) return refuse('bad_cert_url', 403, checked.message, 'bad_subscribe_url');
      subscribeUrl = checked.url;
    }
    // The verifier refuses a missing or unknown SignatureVersion/Signature before it fetches anything.
    const verified = await verifier.verify(envelope, certUrl.url);
    if (!verified.ok) {
      return verified.reason === 'cert_unavailable'
        ? refuse('cert_unavailable', 503, verified.message)
        : refuse('bad_signature', 403, verified.message);
    }
    rec.verified = true;

    return dedup.run(envelope.MessageId, async () => {
      switch (envelope.Type) {
        case 'Notification':
          return acceptNotification(envelope, endpoint, rec);
        case 'SubscriptionConfirmation':
          return confirmSubscription(envelope.TopicArn, subscribeUrl as URL, rec);
        case 'UnsubscribeConfirmation':
          instruments.unsubscribeReceived({
            reqId: rec.reqId,
            topic: envelope.TopicArn,
            subscribeUrl: envelope.SubscribeURL,
          });
          return ok('unsubscribe_logged');
      }
    });
  };

  const acceptNotification = async (
    envelope: NotificationMessage,
    endpoint: string,
    rec: RequestRecord,
  ): Promise<Outcome> => {
    // A throw here is a bug in decode/rules: 500 (SNS retries) and a stack in the log, never a crash.
    const events = handleNotification(envelope, endpoint);
    rec.events = events.length;
    const committed = await sink.commit({
      messageId: envelope.MessageId,
      topic: envelope.TopicArn,
      endpoint,
      receivedAt: clock.now(),
      events,
    });
    return ok(committed === 'committed' ? 'accepted' : 'duplicate');
  };

  const confirmSubscription = async (topic: string, url: URL, rec: RequestRecord): Promise<Outcome> => {
    if (!autoConfirm) {
      instruments.confirmationNeedsHuman({ reqId: rec.reqId, topic, subscribeUrl: url.href });
      return ok('confirm_logged');
    }
    const confirmed = await confirmer.confirm(url);
    if (!confirmed.ok) {
      instruments.subscriptionConfirmFailed({
        reqId: rec.reqId,
        topic,
        reason: confirmed.reason,
        message: confirmed.message,
      });
      return refuse(
        'confirm_failed',
        503,
        `Could not confirm the subscription right now (${confirmed.reason}); SNS will retry.`,
      );
    }
    instruments.subscriptionConfirmed({
      reqId: rec.reqId,
      topic,
      subscriptionArn: confirmed.subscriptionArn,
    });
    return ok('confirmed');
  };

  return {
    update(policy) {
      topicAllowed = compileTopicAllowList(policy.topics);
      autoConfirm = policy.autoConfirm;
      checkAuth = policy.basicAuth ? createBasicAuthCheck(policy.basicAuth) : undefined;
    },
    async handle(request, rawEndpoint) {
      const started = performance.now();
      const rec: RequestRecord = {
        reqId: newRequestId(),
        type: knownType(request.headers.get('x-amz-sns-message-type')),
        result: 'error',
        status: 500,
        durationMs: 0,
      };
      let outcome: Outcome;
      try {
        outcome = await decide(request, rawEndpoint, rec);
      } catch (err) {
        if (err instanceof SpoolUnavailableError) {
          outcome = refuse('spool_unavailable', 503, 'Cannot store the message right now; SNS will retry.');
          rec.reason = err.message;
        } else {
          outcome = refuse(
            'error',
            500,
            'Internal error; the relay logged the details. SNS will retry.',
            'internal',
          );
          rec.err = err;
        }
      }
      rec.result = outcome.result;
      rec.status = outcome.status;
      if (outcome.error && rec.reason === undefined) rec.reason = outcome.error.message;
      rec.durationMs = performance.now() - started;
      instruments.requestCompleted(rec);

      // Headers go into the constructor: setting them afterwards makes @hono/node-server give up
      // its lightweight Response (measured: a visible share of the ingest benchmark).
      const headers = { 'x-request-id': rec.reqId, ...outcome.headers };
      return outcome.error
        ? errorResponse(outcome.status, outcome.error.code, outcome.error.message, headers)
        : new Response(JSON.stringify({ result: outcome.result }), {
            status: outcome.status,
            headers: { 'content-type': 'application/json; charset=utf-8', ...headers },
          });
    },
  };
}

function knownType(header: string | null): SnsMessageType | 'unknown' {
  return header !== null && (SNS_MESSAGE_TYPES as readonly string[]).includes(header)
    ? (header as SnsMessageType)
    : 'unknown';
}

/**
 * SNS redelivers with the same MessageId. A message counts as seen once it was accepted in this
 * process (the in-memory LRU). Across restarts the sink's commit is the check: it records the id in
 * the same transaction as the events and answers 'duplicate', storing nothing, for an id it holds
 * (asking it first cost a read transaction per request: ~5% of the ingest path, bench/README.md).
 * Two concurrent deliveries of one id are serialised so that one commit happens; an attempt that
 * failed (5xx) is not remembered, so the retry is processed afresh.
 */
function createDeduplicator(size: number) {
  const accepted = new LRUCache<string, true>({ max: size });
  const inFlight = new Map<string, Promise<void>>();

  return {
    async run(id: string, act: () => Promise<Outcome>): Promise<Outcome> {
      for (;;) {
        // In-flight first: a redelivery that arrives while the first delivery's commit is still
        // pending waits for that outcome (200 only once it is durable; processed afresh if it failed).
        const pending = inFlight.get(id);
        if (pending) {
          await pending;
          continue;
        }
        if (accepted.has(id)) return ok('duplicate');
        break;
      }
      let done!: () => void;
      inFlight.set(id, new Promise<void>((resolve) => (done = resolve)));
      try {
        const outcome = await act();
        if (outcome.status < 300) accepted.set(id, true);
        return outcome;
      } finally {
        inFlight.delete(id);
        done();
      }
    },
  };
}
