import type { Config } from '../../src/config/load.js';
import { PoolKeyAssigner } from '../../src/delivery/key-assigner.js';
import { KeyRing } from '../../src/delivery/key-ring.js';
import { openAdminSpool, openServingSpool } from '../../src/spool/open.js';
import type { OwnershipHandlers, Spool, SpoolObserver } from '../../src/spool/spool.js';
import { type TestRoute, tempDir, testConfig } from '../helpers/delivery.js';
import { testRoutingKey } from '../helpers/fake-pagerduty.js';
import { testDatabase } from '../helpers/postgres.js';

/** Where the spools of one test live: a directory (SQLite) or a database (PostgreSQL). */
export interface SpoolPlace {
  /** A config for this place, with these keys (testRoutingKey(n)) in route `route` (default "default"). */
  config(keys: number[], opts?: { route?: string; delivery?: Record<string, number> }): Config;
  /** The spool as `pd-relay serve` opens it, with the key pool of `keys`. */
  serve(keys?: number[], opts?: ServeOptions): Promise<Served>;
  /** The spool as the `spool` commands open it beside a running relay. */
  admin(): Promise<Spool>;
  cleanup(): Promise<void>;
}

export interface ServeOptions {
  observer?: SpoolObserver;
  now?: () => number;
  route?: string;
}

export interface Served {
  spool: Spool;
  ring: KeyRing;
}

export interface SpoolBackend {
  name: string;
  /** Whether other processes share the spool (PostgreSQL). */
  shared: boolean;
  place(): Promise<SpoolPlace>;
}

/** The one-process spool: the SQLite file in a temporary spool.dir. */
export const sqliteBackend: SpoolBackend = {
  name: 'SQLite',
  shared: false,
  async place() {
    const tmp = tempDir('pd-relay-spool-');
    return placeFor(
      (keys, opts = {}) => baseConfig(keys, opts, tmp.dir),
      async () => tmp.cleanup(),
    );
  },
};

/** The shared spool: a database of its own per test on the test PostgreSQL server. */
export const postgresBackend: SpoolBackend = {
  name: 'PostgreSQL',
  shared: true,
  async place() {
    const tmp = tempDir('pd-relay-spool-');
    const db = await testDatabase('spool');
    return placeFor(
      (keys, opts = {}) => baseConfig(keys, opts, tmp.dir, { postgres: postgresSpoolConfig(db.url) }),
      async () => {
        await db.drop();
        tmp.cleanup();
      },
    );
  },
};

/** `spool.postgres` for a test database: no TLS on the test server. */
export function postgresSpoolConfig(url: string): Record<string, unknown> {
  return { url, sslmode: 'disable' };
}

/** A config whose route `opts.route` has `keys`, its spool in `dir` unless `spool` says otherwise. */
export function baseConfig(
  keys: number[],
  opts: { route?: string; delivery?: Record<string, number> },
  dir: string,
  spool: Record<string, unknown> = {},
): Config {
  const route = opts.route ?? 'default';
  const routes: Record<string, TestRoute> = {
    [route]: { keys: keys.map((n) => ({ alias: `key-${n}`, key: testRoutingKey(n) })) },
  };
  if (route !== 'default') routes.default = { keys: [{ alias: 'key-default', key: testRoutingKey(99) }] };
  return testConfig({ dir, routes, spool, ...(opts.delivery ? { delivery: opts.delivery } : {}) });
}

/** A SpoolPlace over a config maker (each backend's only difference). */
export function placeFor(config: SpoolPlace['config'], cleanup: () => Promise<void>): SpoolPlace {
  const open: Spool[] = [];
  return {
    config,
    async serve(keys = [1, 2, 3, 4], opts = {}) {
      const cfg = config(keys, opts.route ? { route: opts.route } : {});
      const ring = new KeyRing(cfg.routes);
      const spool = await openServingSpool(cfg, {
        assigner: new PoolKeyAssigner(ring),
        observer: opts.observer ?? silentObserver(),
        now: opts.now ?? Date.now,
        probeIntervalMs: 20,
        adoptIntervalMs: 20,
      });
      open.push(spool);
      return { spool, ring };
    },
    async admin() {
      const spool = await openAdminSpool(config([]), { write: true });
      open.push(spool);
      return spool;
    },
    async cleanup() {
      for (const s of open.splice(0).reverse()) await s.close();
      await cleanup();
    },
  };
}

export function silentObserver(): SpoolObserver {
  return { committed() {}, unavailable() {}, recovered() {}, listenerFailed() {} };
}

/** What an ownership told the test, as it happened. */
export interface OwnershipLog {
  owned: Set<string>;
  lost: string[];
  orphaned: string[];
  released: string[];
}

/**
 * Starts `spool`'s key ownership for the keys of `ring`, as the dispatcher does, and waits until it
 * owns them all (`expectAll`, the default) — at once on SQLite, after its first lease on PostgreSQL.
 */
export async function own(
  spool: Spool,
  ring: KeyRing,
  opts: { expectAll?: boolean; releaseMs?: () => number } = {},
): Promise<OwnershipLog> {
  const log: OwnershipLog = { owned: new Set(), lost: [], orphaned: [], released: [] };
  const handlers: OwnershipHandlers = {
    acquired: (fps) => {
      for (const fp of fps) log.owned.add(fp);
    },
    release: async (fps) => {
      // A lane's in-flight request ends and its writes are made durable before the key goes.
      const ms = opts.releaseMs?.() ?? 0;
      if (ms) await new Promise((r) => setTimeout(r, ms));
      for (const fp of fps) {
        log.owned.delete(fp);
        log.released.push(fp);
      }
    },
    lost: (fps) => {
      for (const fp of fps) {
        log.owned.delete(fp);
        log.lost.push(fp);
      }
    },
    orphaned: (fps) => {
      log.orphaned.push(...fps);
    },
  };
  const fps = ring.lanes().map((k) => k.fp);
  spool.ownership.start(fps, handlers);
  if (opts.expectAll ?? true) await waitFor(() => fps.every((fp) => log.owned.has(fp)), 'every key owned');
  return log;
}

/** Polls `predicate` every 10 ms until it holds or `timeoutMs` passes (then throws naming `what`). */
export async function waitFor(predicate: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!predicate()) {
    if (performance.now() > deadline) throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
