import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { CertFetchEvent } from '../ingress/sns/cert-fetcher.js';
import type { Clock, IngressResult, SnsMessageType } from '../ingress/sns/types.js';
import type { Logger } from '../log/logger.js';

/** After this many distinct endpoint names, further ones share the label value "other". */
export const MAX_ENDPOINT_LABELS = 100;

/** Everything the request log line and the request metrics say about one SNS request. */
export interface RequestRecord {
  reqId: string;
  /** The message's Type once its shape is known; before that the (known) header value, else "unknown". */
  type: SnsMessageType | 'unknown';
  result: IngressResult;
  status: number;
  durationMs: number;
  /** The endpoint name once the path was valid. */
  endpoint?: string;
  /** Set once the envelope had a valid shape (the values are then bounded and well-formed). */
  topic?: string;
  messageId?: string;
  /** True once the signature verified: only then may the endpoint become a metric label. */
  verified?: boolean;
  /** Number of events the message produced (accepted notifications). */
  events?: number;
  /** Why a request was refused, as answered to the client. */
  reason?: string;
  /** A bug (500): logged with its stack. */
  err?: unknown;
}

/**
 * The ingress stage's instrumentation. Each method is one event that writes its log line and its
 * metrics together, so that they cannot drift apart.
 */
export interface IngressInstruments {
  /** One line per SNS request; `pdrelay_sns_messages_total`, the duration histogram, last-message time. */
  requestCompleted(r: RequestRecord): void;
  /** A signing-certificate download; `pdrelay_sns_cert_fetches_total{result}`. */
  certFetched(e: CertFetchEvent): void;
  /** A SubscribeURL visited successfully; `pdrelay_sns_subscriptions_confirmed_total`. */
  subscriptionConfirmed(e: { reqId: string; topic: string; subscriptionArn: string | null }): void;
  /** A SubscribeURL visit that failed (the request is answered 503 so that SNS retries). */
  subscriptionConfirmFailed(e: { reqId: string; topic: string; reason: string; message: string }): void;
  /** `sns.autoConfirm: false`: the URL a human must visit. */
  confirmationNeedsHuman(e: { reqId: string; topic: string; subscribeUrl: string }): void;
  /** A verified UnsubscribeConfirmation: recorded, never acted on. */
  unsubscribeReceived(e: { reqId: string; topic: string; subscribeUrl: string }): void;
}

const RESULT_MESSAGES: Record<IngressResult, string> = {
  accepted: 'SNS notification accepted.',
  duplicate: 'SNS message already accepted (redelivery); nothing new.',
  confirmed: 'SNS subscription confirmed.',
  confirm_logged: 'SNS subscription awaits manual confirmation.',
  confirm_failed: 'SNS subscription confirmation failed; SNS will retry.',
  unsubscribe_logged: 'SNS unsubscribe confirmation recorded; nothing done.',
  bad_request: 'SNS request refused: malformed.',
  bad_signature: 'SNS request refused: bad signature.',
  bad_cert_url: 'SNS request refused: URL not on an SNS host.',
  topic_not_allowed: 'SNS request refused: topic not allowed.',
  raw_delivery: 'SNS request refused: raw message delivery.',
  unauthorized: 'SNS request refused: missing or wrong credentials.',
  not_found: 'SNS request refused: unknown endpoint.',
  method_not_allowed: 'SNS request refused: method not allowed.',
  too_large: 'SNS request refused: body too large.',
  cert_unavailable: 'SNS request deferred: signing certificate unavailable; SNS will retry.',
  spool_unavailable: 'SNS request deferred: spool unavailable; SNS will retry.',
  draining: 'SNS request deferred: relay not ready; SNS will retry.',
  error: 'SNS request failed with an internal error; SNS will retry.',
};

/** Registers the ingress metrics on `registry` and returns the instrumentation events. */
export function createIngressInstruments(deps: {
  registry: Registry;
  logger: Logger;
  clock: Clock;
}): IngressInstruments {
  const { registry, logger, clock } = deps;
  const messages = new Counter({
    name: 'pdrelay_sns_messages_total',
    help: 'SNS requests by message type and what ingress made of them.',
    labelNames: ['type', 'result'],
    registers: [registry],
  });
  const confirmed = new Counter({
    name: 'pdrelay_sns_subscriptions_confirmed_total',
    help: 'SNS subscriptions confirmed by visiting their SubscribeURL.',
    registers: [registry],
  });
  const certFetches = new Counter({
    name: 'pdrelay_sns_cert_fetches_total',
    help: 'SNS signing-certificate downloads by result (ok, timeout, network, http_status, too_large, bad_certificate).',
    labelNames: ['result'],
    registers: [registry],
  });
  const lastMessage = new Gauge({
    name: 'pdrelay_last_message_timestamp_seconds',
    help: 'When the last SNS message with a valid signature arrived, per endpoint (Unix time).',
    labelNames: ['endpoint'],
    registers: [registry],
  });
  const duration = new Histogram({
    name: 'pdrelay_ingest_request_duration_seconds',
    help: 'Time to answer an SNS request, from arrival to response (SNS gives up after 15 s).',
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15],
    registers: [registry],
  });
  const endpointLabels = new Set<string>();
  const endpointLabel = (endpoint: string): string => {
    if (endpointLabels.has(endpoint)) return endpoint;
    if (endpointLabels.size >= MAX_ENDPOINT_LABELS) return 'other';
    endpointLabels.add(endpoint);
    return endpoint;
  };

  return {
    requestCompleted(r) {
      messages.inc({ type: r.type, result: r.result });
      duration.observe(r.durationMs / 1000);
      if (r.verified && r.endpoint !== undefined)
        lastMessage.set({ endpoint: endpointLabel(r.endpoint) }, clock.now() / 1000);
      const fields = {
        reqId: r.reqId,
        type: r.type,
        result: r.result,
        status: r.status,
        durationMs: Math.round(r.durationMs * 1000) / 1000,
        ...(r.endpoint !== undefined ? { endpoint: r.endpoint } : {}),
        ...(r.topic !== undefined ? { topic: r.topic } : {}),
        ...(r.messageId !== undefined ? { messageId: r.messageId } : {}),
        ...(r.events !== undefined ? { events: r.events } : {}),
        ...(r.reason !== undefined ? { reason: r.reason } : {}),
        ...(r.err !== undefined ? { err: r.err } : {}),
      };
      const message = RESULT_MESSAGES[r.result];
      if (r.result === 'error') logger.error(fields, message);
      else if (r.status >= 400) logger.warn(fields, message);
      else logger.info(fields, message);
    },
    certFetched(e) {
      certFetches.inc({ result: e.result });
      const fields = {
        url: e.url,
        result: e.result,
        durationMs: Math.round(e.durationMs),
        ...(e.message ? { reason: e.message } : {}),
      };
      if (e.result === 'ok') logger.info(fields, 'SNS signing certificate fetched.');
      else logger.warn(fields, 'SNS signing certificate could not be fetched.');
    },
    subscriptionConfirmed(e) {
      confirmed.inc();
      logger.info(e, 'SNS subscription confirmed through its SubscribeURL.');
    },
    subscriptionConfirmFailed(e) {
      logger.warn(e, 'SNS subscription could not be confirmed; answering 503 so that SNS retries.');
    },
    confirmationNeedsHuman(e) {
      logger.warn(
        e,
        'SNS subscription needs confirming by hand (sns.autoConfirm is false): visit subscribeUrl to confirm it.',
      );
    },
    unsubscribeReceived(e) {
      logger.warn(e, 'SNS says this endpoint was unsubscribed from the topic; nothing was done.');
    },
  };
}
