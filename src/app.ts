import { Hono } from 'hono';
import type { Registry } from 'prom-client';
import type { SnsIngress } from './ingress/sns/handler.js';
import type { Logger } from './log/logger.js';
import { errorResponse } from './server/error-response.js';
import type { ReadinessProbe } from './server/readiness.js';

export interface SnsAppDeps {
  readiness: ReadinessProbe;
  logger: Logger;
  /** The SNS intake (src/ingress/sns); without it /sns paths answer 404. */
  ingress?: SnsIngress;
}

/**
 * The public app (the SNS port): health endpoints and `POST /sns`, `POST /sns/{endpoint}`. No side
 * effects: tests drive it with app.request(). Metrics are never served here.
 */
export function createSnsApp(deps: SnsAppDeps): Hono {
  const app = new Hono();
  app.get('/healthz', (c) => c.json({ status: 'ok' }));
  app.get('/readyz', (c) => {
    const reason = deps.readiness();
    return reason === null ? c.json({ status: 'ready' }) : c.json({ status: 'not_ready', reason }, 503);
  });
  const ingress = deps.ingress;
  if (ingress) {
    // Every method reaches ingress, which answers 405 with `Allow: POST` after the auth check.
    app.all('/sns', (c) => ingress.handle(c.req.raw, undefined));
    app.all('/sns/:endpoint', (c) => ingress.handle(c.req.raw, c.req.param('endpoint')));
  }
  installErrorHandlers(app, deps.logger);
  return app;
}

export interface AdminAppDeps {
  registry: Registry;
  logger: Logger;
  /** Dry-run only: the latest events that would have been sent (delivery's DryRunRecorder). */
  recentEvents?: () => readonly unknown[];
}

/** The metrics/admin app (its own port, never public): /metrics, and /-/events in dry-run. */
export function createAdminApp(deps: AdminAppDeps): Hono {
  const app = new Hono();
  app.get('/metrics', async () => {
    const body = await deps.registry.metrics();
    return new Response(body, { headers: { 'content-type': deps.registry.contentType } });
  });
  app.get('/-/events', (c) => {
    if (!deps.recentEvents)
      return errorResponse(
        404,
        'not_dry_run',
        'The relay has routing keys: events are sent to PagerDuty, not listed. /-/events lists them in dry-run.',
      );
    return c.json({ events: deps.recentEvents() });
  });
  installErrorHandlers(app, deps.logger);
  return app;
}

/** 404 for unknown paths, 500 without a stack for bugs; both in the one error shape. */
export function installErrorHandlers(app: Hono, logger: Logger): void {
  app.notFound((c) => errorResponse(404, 'not_found', `No route for ${c.req.method} ${c.req.path}.`));
  app.onError((err, c) => {
    logger.error(
      { err, method: c.req.method, path: c.req.path },
      'Unhandled error while answering a request.',
    );
    return errorResponse(500, 'internal', 'Internal error; the relay logged the details.');
  });
}
