import type { RouteConfig } from '../config/load.js';
import type { Secret } from '../shared/secret.js';

/** One configured routing key with what delivery needs beside it. */
export interface RingKey {
  route: string;
  alias: string;
  key: Secret;
  /** Secret.fingerprint(): the key's identity on disk. */
  fp: string;
  /** The route's requests per rate window. */
  ratePerMinute: number;
}

/**
 * The configured routing keys, by route and by fingerprint: what the spool's fingerprints map back
 * to. A key listed in several routes is one PagerDuty integration with one rate budget, so it is
 * one lane; its first listing names it (alias) and the lowest rate applies.
 */
export class KeyRing {
  readonly #routes = new Map<string, RingKey[]>();
  readonly #fps = new Map<string, readonly string[]>();
  readonly #byFp = new Map<string, RingKey>();

  constructor(routes: Record<string, RouteConfig>) {
    for (const route of Object.values(routes)) {
      const keys = route.keys.map((k) => ({
        route: route.name,
        alias: k.alias,
        key: k.key,
        fp: k.key.fingerprint(),
        ratePerMinute: route.ratePerMinute,
      }));
      this.#routes.set(route.name, keys);
      this.#fps.set(
        route.name,
        keys.map((k) => k.fp),
      );
      for (const k of keys) {
        const seen = this.#byFp.get(k.fp);
        if (!seen) this.#byFp.set(k.fp, { ...k });
        else seen.ratePerMinute = Math.min(seen.ratePerMinute, k.ratePerMinute);
      }
    }
  }

  hasRoute(route: string): boolean {
    return this.#routes.has(route);
  }

  /** The pool of a route, in configuration order ([] for an unknown route). */
  keysOf(route: string): readonly RingKey[] {
    return this.#routes.get(route) ?? [];
  }

  /** The fingerprints of a route's pool, in configuration order ([] for an unknown route). */
  fpsOf(route: string): readonly string[] {
    return this.#fps.get(route) ?? [];
  }

  /** The routes whose pool lists a fingerprint. */
  routesOf(fp: string): string[] {
    return [...this.#fps].filter(([, fps]) => fps.includes(fp)).map(([route]) => route);
  }

  /** The lane identity of a fingerprint, if that key is configured in any route. */
  byFp(fp: string): RingKey | undefined {
    return this.#byFp.get(fp);
  }

  /** Every configured key once. */
  lanes(): RingKey[] {
    return [...this.#byFp.values()];
  }

  /** What logs, metrics and the CLI show for a fingerprint: the alias, or a removed key's short id. */
  aliasOf(fp: string): string {
    if (fp === '') return '(none)';
    return this.#byFp.get(fp)?.alias ?? `removed:${fp.slice(0, 8)}`;
  }
}
