import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { createAdaptorServer } from '@hono/node-server';
import type { Hono } from 'hono';
import { createAdminApp, createSnsApp } from './app.js';
import type { Config } from './config/load.js';
import { createLogger, type Logger } from './log/logger.js';
import { createRegistry } from './metrics/registry.js';
import { watchTlsFiles } from './server/tls-reloader.js';

/** A running relay: what `pd-relay serve` and the process-level tests hold. */
export interface Relay {
  config: Config;
  logger: Logger;
  /** Bound address of the SNS port (port 0 in config → the real port here). */
  snsAddress: AddressInfo;
  metricsAddress: AddressInfo;
  /** Stops accepting, drains, closes. Safe to call twice. */
  close(reason?: string): Promise<void>;
}

type NodeServer = ReturnType<typeof createAdaptorServer>;

/**
 * The composition root: the only place that turns config into live objects and wires the
 * stages together (ingress → decode → rules → spool → dispatch).
 */
export async function startRelay(config: Config, opts: { logger?: Logger } = {}): Promise<Relay> {
  const logger = opts.logger ?? createLogger({ level: config.log.level });
  const registry = createRegistry();
  let draining = false;

  const snsApp = createSnsApp({ logger, readiness: () => (draining ? 'draining' : null) });
  const adminApp = createAdminApp({ registry, logger });

  const snsServer = await listen(snsApp, config.server.host, config.server.port, config.server.tls);
  const metricsServer = await listen(adminApp, config.metrics.host, config.metrics.port);
  const tlsFiles = config.server.tls;
  const stopTlsWatch = tlsFiles ? watchTlsFiles(snsServer as HttpsServer, tlsFiles, logger) : () => {};
  const snsAddress = snsServer.address() as AddressInfo;
  const metricsAddress = metricsServer.address() as AddressInfo;
  logger.info(
    {
      sns: `${config.server.tls ? 'https' : 'http'}://${snsAddress.address}:${snsAddress.port}`,
      metrics: `http://${metricsAddress.address}:${metricsAddress.port}`,
      dryRun: config.dryRun,
      config: config.file,
    },
    config.dryRun
      ? 'Relay started in dry-run mode: no routing keys, nothing will be sent.'
      : 'Relay started.',
  );

  let closing: Promise<void> | undefined;
  const close = (reason = 'shutdown') => {
    closing ??= (async () => {
      draining = true;
      logger.info({ reason }, 'Relay stopping.');
      stopTlsWatch();
      await Promise.all([closeServer(snsServer), closeServer(metricsServer)]);
      logger.info('Relay stopped.');
      logger.flush();
    })();
    return closing;
  };
  return { config, logger, snsAddress, metricsAddress, close };
}

async function listen(
  app: Hono,
  host: string,
  port: number,
  tls?: { certFile: string; keyFile: string },
): Promise<NodeServer> {
  const server = createAdaptorServer({
    fetch: app.fetch,
    hostname: host,
    port,
    ...(tls
      ? {
          createServer: createHttpsServer,
          serverOptions: { cert: readFileSync(tls.certFile), key: readFileSync(tls.keyFile) },
        }
      : {}),
  });
  server.listen(port, host);
  await once(server, 'listening');
  return server;
}

function closeServer(server: NodeServer): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    if ('closeIdleConnections' in server) server.closeIdleConnections();
  });
}
