import type { Registry } from 'prom-client';
import type { Config } from '../../config/load.js';
import type { Logger } from '../../log/logger.js';
import { createIngressInstruments } from '../../metrics/ingress.js';
import type { ReadinessProbe } from '../../server/readiness.js';
import type { EventSink } from '../../spool/types.js';
import { createCertificateFetcher } from './cert-fetcher.js';
import { createSubscriptionConfirmer } from './confirmer.js';
import { createSnsIngress, type SnsIngress } from './handler.js';
import type { HttpsGetOptions } from './https-get.js';
import { createSignatureVerifier } from './signature.js';
import { type Clock, type NotificationHandler, systemClock } from './types.js';
import { compileHostPattern } from './urls.js';

/** The live objects ingress is wired to by the composition root. */
export interface IngressWiring {
  /** decode → rules → limits, composed from the rules stage. */
  handleNotification: NotificationHandler;
  /** The spool. */
  sink: EventSink;
  logger: Logger;
  registry: Registry;
  readiness: ReadinessProbe;
  clock?: Clock;
  /**
   * CAs trusted for SNS hosts instead of the system store. Production leaves it unset (system CAs
   * plus NODE_EXTRA_CA_CERTS); in-process tests pass the FakeSns CA.
   */
  ca?: HttpsGetOptions['ca'];
}

/**
 * Turns the `sns.*` and `server.*` config into a working SNS intake: the real certificate fetcher
 * and verifier, the real subscription confirmer, and the ingress metrics on `registry`.
 */
export function createIngressFromConfig(
  config: Pick<Config, 'sns' | 'server'>,
  wiring: IngressWiring,
): SnsIngress {
  const clock = wiring.clock;
  const instruments = createIngressInstruments({
    registry: wiring.registry,
    logger: wiring.logger,
    clock: clock ?? systemClock,
  });
  const ca = wiring.ca !== undefined ? { ca: wiring.ca } : {};
  const fetcher = createCertificateFetcher({
    timeoutMs: config.sns.certTimeoutMs,
    onFetch: (e) => instruments.certFetched(e),
    ...(clock ? { clock } : {}),
    ...ca,
  });
  const confirmer = createSubscriptionConfirmer({
    timeoutMs: config.sns.confirmTimeoutMs,
    hostPattern: compileHostPattern(config.sns.certHostPattern),
    ...ca,
  });
  return createSnsIngress({
    options: {
      topics: config.sns.topics,
      certHostPattern: config.sns.certHostPattern,
      autoConfirm: config.sns.autoConfirm,
      messageIdCacheSize: config.sns.messageIdCacheSize,
      maxBodyBytes: config.server.maxBodyBytes,
      basicAuth: config.server.basicAuth,
    },
    verifier: createSignatureVerifier({ fetcher }),
    confirmer,
    handleNotification: wiring.handleNotification,
    sink: wiring.sink,
    instruments,
    readiness: wiring.readiness,
    ...(clock ? { clock } : {}),
  });
}
