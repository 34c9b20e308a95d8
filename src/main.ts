import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import type { Server as HttpServer, IncomingMessage, ServerResponse } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { createAdaptorServer } from '@hono/node-server';
import type { Hono } from 'hono';
import { createAdminApp, createSnsApp } from './app.js';
import { type Config, loadConfig } from './config/load.js';
import { decodeNotification } from './decode/decode.js';
import { createDelivery, type Delivery } from './delivery/delivery.js';
import { type Problem, UserError } from './errors.js';
import { createIngressFromConfig } from './ingress/sns/from-config.js';
import type { HttpsGetOptions } from './ingress/sns/https-get.js';
import { bodyLimitWarning } from './ingress/sns/limits.js';
import { createLogger, type Logger } from './log/logger.js';
import { createRegistry } from './metrics/registry.js';
import { createReloadInstruments, createRulesInstruments, type ReloadTrigger } from './metrics/rules.js';
import { type LoadResult, loadRulesForConfig, RuleSetHolder, watchAndReload } from './rules/reload.js';
import type { RulePathWatcher } from './rules/watch.js';
import { watchTlsFiles } from './server/tls-reloader.js';

/** A running relay: what `pd-relay serve` and the process-level tests hold. */
export interface Relay {
  /** The configuration in effect (reloads replace the reloadable parts). */
  readonly config: Config;
  logger: Logger;
  delivery: Delivery;
  /** Bound address of the SNS port (port 0 in config → the real port here). */
  snsAddress: AddressInfo;
  metricsAddress: AddressInfo;
  /** Reloads the config file and the rules, as SIGHUP does. */
  reload(trigger?: ReloadTrigger): LoadResult;
  /** Stops accepting, drains, closes. Safe to call twice. */
  close(reason?: string): Promise<void>;
}

export interface StartOptions {
  logger?: Logger;
  /** CAs trusted for SNS hosts instead of the system store (in-process tests). */
  snsCa?: HttpsGetOptions['ca'];
}

/** Longer than common load-balancer idle timeouts (60 s), so the relay is not the side that closes. */
const KEEP_ALIVE_TIMEOUT_MS = 65_000;
/**
 * How often Node checks the headers and request timeouts (`server.headersTimeoutMs`,
 * `server.requestTimeoutMs`). Node's default is 30 s, which let a client trickling its headers
 * hold a socket for up to 30 s past the limit.
 */
const CONNECTIONS_CHECK_INTERVAL_MS = 1_000;

/**
 * The composition root: the only place that turns config into live objects and wires the
 * stages together — ingress → decode → rules → spool → dispatch.
 */
export async function startRelay(initial: Config, opts: StartOptions = {}): Promise<Relay> {
  const logger = opts.logger ?? createLogger({ level: initial.log.level });
  // A body limit below what SNS may send turns some legitimate deliveries into 413s: lost pages.
  const bodyWarning = bodyLimitWarning(initial.server.maxBodyBytes);
  if (bodyWarning) logger.warn({ maxBodyBytes: initial.server.maxBodyBytes }, bodyWarning);
  const registry = createRegistry();
  let config = initial;
  let draining = false;

  // Spool and dispatch first: they own the durable state the rest relies on.
  const delivery = await createDelivery(config, { logger, registry });

  // Rules. A reload re-reads the config file too: its rules, sns.* policy and log level apply at
  // once; sections that hold live resources (ports, spool, key pools, PagerDuty client) need a
  // restart, which the reload says. Rules are checked against the routes actually running.
  let watcher: RulePathWatcher | undefined;
  const holder = await stopOnThrow(delivery, () =>
    RuleSetHolder.load({
      load: () => loadForReload(config, logger, (route) => delivery.queuedOn(route)),
      engine: {
        instruments: createRulesInstruments(registry, logger),
        onTruncation: (fields, event) =>
          delivery.metrics.truncated(fields, { route: event.route, rule: event.rule, action: event.action }),
      },
      instruments: createReloadInstruments(registry, logger),
      onSwap: (next) => {
        if (!next.config) return undefined;
        const before = config;
        config = next.config;
        ingress.update({
          topics: config.sns.topics,
          autoConfirm: config.sns.autoConfirm,
          basicAuth: config.server.basicAuth,
        });
        logger.level = config.log.level;
        watcher?.setPaths(config.rules.paths);
        // Key pools and rates apply at once: in a storm, added integrations drain the backlog now.
        return before.routes === config.routes || config.dryRun
          ? undefined
          : delivery.updateRoutes(config.routes);
      },
    }),
  );

  const readiness = () => (draining ? 'draining' : delivery.readiness());
  const ingress = createIngressFromConfig(config, {
    handleNotification: (envelope, endpoint) =>
      holder.evaluate(decodeNotification(envelope, endpoint)).events,
    sink: delivery.sink,
    logger,
    registry,
    readiness,
    ...(opts.snsCa !== undefined ? { ca: opts.snsCa } : {}),
  });

  const snsApp = createSnsApp({ logger, readiness, ingress });
  const recorder = delivery.recorder;
  const adminApp = createAdminApp({
    registry,
    logger,
    ...(recorder ? { recentEvents: () => recorder.list() } : {}),
  });

  let snsServer: NodeServer;
  let metricsServer: NodeServer;
  try {
    snsServer = await listen(snsApp, config.server.host, config.server.port, config.server.tls, {
      connectionsCheckingInterval: Math.min(CONNECTIONS_CHECK_INTERVAL_MS, config.server.headersTimeoutMs),
    });
    try {
      metricsServer = await listen(adminApp, config.metrics.host, config.metrics.port);
    } catch (err) {
      await closeServer(snsServer);
      throw err;
    }
  } catch (err) {
    await delivery.stop(0);
    throw err;
  }
  // A client that trickles its headers or body cannot hold a socket past these limits (408).
  snsServer.headersTimeout = config.server.headersTimeoutMs;
  snsServer.requestTimeout = config.server.requestTimeoutMs;
  snsServer.keepAliveTimeout = KEEP_ALIVE_TIMEOUT_MS;
  const tls = config.server.tls;
  const stopTlsWatch = tls ? watchTlsFiles(snsServer as HttpsServer, tls, logger) : () => {};
  delivery.start();
  if (config.rules.watch && config.rules.paths.length) {
    watcher = watchAndReload(holder, config.rules.paths, {
      debounceMs: config.rules.reloadDebounceMs,
      onError: (err, dir) =>
        logger.warn({ dir, err: err.message }, 'Cannot watch a rules directory; use SIGHUP to reload.'),
    });
  }

  const snsAddress = snsServer.address() as AddressInfo;
  const metricsAddress = metricsServer.address() as AddressInfo;
  logger.info(
    {
      sns: `${tls ? 'https' : 'http'}://${snsAddress.address}:${snsAddress.port}`,
      metrics: `http://${metricsAddress.address}:${metricsAddress.port}`,
      dryRun: config.dryRun,
      config: config.file,
      rules: holder.ruleSet.rules.length,
      routes: Object.values(config.routes).map((r) => ({ route: r.name, keys: r.keys.map((k) => k.alias) })),
    },
    config.dryRun
      ? 'Relay started in dry-run mode: no routing keys, events are listed at /-/events and not sent.'
      : 'Relay started.',
  );

  let closing: Promise<void> | undefined;
  const close = (reason = 'shutdown') => {
    closing ??= (async () => {
      // Readiness turns false first: new SNS requests get 503 (SNS retries them later), requests
      // already past that check finish their commit and get their answer.
      draining = true;
      logger.info({ reason }, 'Relay stopping: no longer accepting SNS messages.');
      watcher?.close();
      stopTlsWatch();
      await closeServer(snsServer);
      await delivery.stop(config.delivery.drainTimeoutMs);
      await closeServer(metricsServer);
      logger.info('Relay stopped.');
      logger.flush();
    })();
    return closing;
  };

  return {
    get config() {
      return config;
    },
    logger,
    delivery,
    snsAddress,
    metricsAddress,
    reload: (trigger = 'manual') => holder.reload(trigger),
    close,
  };
}

/**
 * What a reload loads: the config file again (when there is one) and the rules it names, checked
 * against the routes that are running. Returns the config to run with — the new file's reloadable
 * sections on top of the running ones — and warns about changes that wait for a restart.
 */
function loadForReload(running: Config, logger: Logger, queuedOn: (route: string) => number): LoadResult {
  let next = running;
  if (running.file) {
    try {
      next = loadConfig({ file: running.file });
    } catch (err) {
      const e = err as { problems?: Problem[]; message: string };
      if (!e.problems) throw err;
      return {
        ok: false,
        problems: e.problems.length
          ? [...e.problems]
          : [{ location: { file: running.file, line: 1, col: 1 }, path: '', message: e.message }],
      };
    }
  }
  const pending = sectionsNeedingRestart(running, next);
  if (pending.length) {
    logger.warn(
      { sections: pending },
      'The config file changed sections that apply only after a restart; they keep their running values.',
    );
  }
  const at = (path: string) => ({ location: { file: running.file ?? '<config>', line: 1, col: 1 }, path });
  // Key pools and rates apply live, within limits that keep every queued event deliverable.
  const poolProblems: Problem[] = [];
  if (next.dryRun !== running.dryRun) {
    poolProblems.push({
      ...at('routes'),
      message: running.dryRun
        ? 'A dry-run relay gets routing keys by a restart, not a reload.'
        : 'Refusing to remove every routing key by a reload: restart in dry-run if that is meant.',
    });
  } else {
    for (const route of Object.keys(running.routes)) {
      const queued = next.routes[route] ? 0 : queuedOn(route);
      if (queued > 0)
        poolProblems.push({
          ...at(`routes.${route}`),
          message: `Route "${route}" has ${queued} queued event${queued === 1 ? '' : 's'}: keep it until they are delivered.`,
        });
    }
  }
  if (poolProblems.length) return { ok: false, problems: poolProblems };
  const samePools = JSON.stringify(poolsOf(running)) === JSON.stringify(poolsOf(next));
  const effective: Config = {
    ...running,
    log: next.log,
    sns: { ...running.sns, topics: next.sns.topics, autoConfirm: next.sns.autoConfirm },
    server: { ...running.server, basicAuth: next.server.basicAuth },
    rules: next.rules,
    // The same object when nothing changed: the swap then leaves the dispatcher alone.
    routes: samePools ? running.routes : next.routes,
  };
  if (!effective.dryRun && effective.sns.topics.length === 0) {
    return {
      ok: false,
      problems: [
        {
          location: { file: running.file ?? '<config>', line: 1, col: 1 },
          path: 'sns.topics',
          message: 'Refusing to drop the topic allow-list while routes have keys.',
        },
      ],
    };
  }
  const rules = loadRulesForConfig(effective);
  return rules.ok ? { ok: true, ruleSet: rules.ruleSet, config: effective } : rules;
}

/** Config sections a reload cannot apply to the running process, when they differ. */
function sectionsNeedingRestart(a: Config, b: Config): string[] {
  const fingerprint = (c: Config) => ({
    server: { ...c.server, basicAuth: undefined },
    metrics: c.metrics,
    sns: { ...c.sns, topics: undefined, autoConfirm: undefined },
    pagerduty: c.pagerduty,
    spool: c.spool,
    delivery: c.delivery,
  });
  const fa = fingerprint(a);
  const fb = fingerprint(b);
  return (Object.keys(fa) as Array<keyof typeof fa>).filter(
    (k) => JSON.stringify(fa[k]) !== JSON.stringify(fb[k]),
  );
}

/** The key pools of a config, for comparison: route, rate, and each key's alias and fingerprint. */
function poolsOf(c: Config): unknown {
  return Object.values(c.routes).map((r) => [
    r.name,
    r.ratePerMinute,
    r.keys.map((k) => [k.alias, k.key.fingerprint()]),
  ]);
}

type NodeServer = HttpServer | HttpsServer;

async function listen(
  app: Hono,
  host: string,
  port: number,
  tls?: { certFile: string; keyFile: string },
  options: { connectionsCheckingInterval?: number } = {},
): Promise<NodeServer> {
  const server = createAdaptorServer({
    fetch: app.fetch,
    hostname: host,
    port,
    serverOptions: {
      ...options,
      ...(tls ? { cert: readFileSync(tls.certFile), key: readFileSync(tls.keyFile) } : {}),
    },
    ...(tls ? { createServer: createHttpsServer } : {}),
  }) as NodeServer;
  server.listen(port, host);
  try {
    await Promise.race([
      once(server, 'listening'),
      once(server, 'error').then(([err]) => Promise.reject(err)),
    ]);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why =
      code === 'EADDRINUSE'
        ? 'the address is in use'
        : code === 'EACCES'
          ? 'permission denied'
          : String(code ?? err);
    throw new UserError(`Cannot listen on ${host}:${port}: ${why}.`);
  }
  return server;
}

/** How often a closing server closes the keep-alive connections that turned idle. */
const IDLE_SWEEP_MS = 50;

/**
 * Stops accepting connections and resolves once every connection is gone. Keep-alive connections
 * outlive server.close(): one that a client keeps busy (SNS posting at a steady rate, Prometheus
 * scraping) or that turns idle after an answer in progress would hold the server open until its
 * keepAliveTimeout (65 s, longer than Kubernetes' default grace period), and the delivery drain
 * that follows would never run. So from now on every answer says `Connection: close`, and
 * connections that turn idle are closed as they do.
 */
function closeServer(server: NodeServer): Promise<void> {
  return new Promise((resolve) => {
    server.prependListener('request', (_req: IncomingMessage, res: ServerResponse) => {
      if (!res.headersSent) res.setHeader('connection', 'close');
    });
    const sweep = setInterval(() => server.closeIdleConnections(), IDLE_SWEEP_MS);
    server.close(() => {
      clearInterval(sweep);
      resolve();
    });
    server.closeIdleConnections();
  });
}

/**
 * Runs `build`; if it throws (broken rules at start), stops the delivery first: its spool holds a
 * lock (SQLite) or key leases (PostgreSQL) that others must not wait out.
 */
async function stopOnThrow<T>(delivery: Delivery, build: () => T): Promise<T> {
  try {
    return build();
  } catch (err) {
    await delivery.stop(0);
    throw err;
  }
}
