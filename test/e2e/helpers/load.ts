import type { Envelope } from '../../helpers/fake-sns.js';
import type { PostResult, SnsClient } from './sns-client.js';

/** A PostResult with the number of the message it carried. */
export type LoadResult = PostResult & { n: number };

export interface LoadOptions {
  /** Requests in flight at once (SNS delivers concurrently). */
  concurrency: number;
  /** Stop after this many messages (default: until stop()). */
  total?: number;
  /** Send each body only after the relay's "100 Continue" (see SnsClient.post). */
  expectContinue?: boolean;
  /** Pause of a worker after a request without response, so that a dead relay is not spun on. */
  pauseAfterErrorMs?: number;
}

/**
 * A steady stream of signed notifications from `concurrency` workers, each posting message
 * number n = 0, 1, 2, … (built by `make`) and recording what it got. Every message is posted
 * once: a scenario that wants SNS's retries re-posts the failures itself, so that what happened
 * to each attempt stays visible.
 */
export class Load {
  readonly results: LoadResult[] = [];
  #next = 0;
  #stopped = false;
  #workers: Promise<void>[] = [];
  readonly #waiters: Array<{ count: number; resolve: () => void }> = [];

  constructor(
    private readonly client: SnsClient,
    private readonly make: (n: number) => Envelope,
    private readonly opts: LoadOptions,
  ) {}

  start(): this {
    for (let i = 0; i < this.opts.concurrency; i++) this.#workers.push(this.#work());
    return this;
  }

  /** Messages handed to a worker so far. */
  get started(): number {
    return this.#next;
  }

  /** Stops issuing new requests and waits for those in flight. */
  async stop(): Promise<void> {
    this.#stopped = true;
    await Promise.all(this.#workers);
  }

  /** Waits until every message of `total` has its result. */
  async done(): Promise<void> {
    await Promise.all(this.#workers);
  }

  /** Resolves once `count` results (any status) are in. */
  waitForResults(count: number): Promise<void> {
    if (this.results.length >= count) return Promise.resolve();
    return new Promise((resolve) => this.#waiters.push({ count, resolve }));
  }

  /** Results answered 200. */
  ok(): LoadResult[] {
    return this.results.filter((r) => r.status === 200);
  }

  /** How many results had each status ("error" for no response). */
  tally(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const r of this.results) {
      const k = r.status === null ? `error:${r.error}` : String(r.status);
      out[k] = (out[k] ?? 0) + 1;
    }
    return out;
  }

  async #work(): Promise<void> {
    for (;;) {
      if (this.#stopped) return;
      if (this.opts.total !== undefined && this.#next >= this.opts.total) return;
      const n = this.#next++;
      const r = await this.client.post(this.make(n), {
        ...(this.opts.expectContinue ? { expectContinue: true } : {}),
      });
      this.results.push({ ...r, n });
      for (let i = this.#waiters.length - 1; i >= 0; i--) {
        const w = this.#waiters[i] as { count: number; resolve: () => void };
        if (this.results.length >= w.count) {
          this.#waiters.splice(i, 1);
          w.resolve();
        }
      }
      if (r.status === null) await new Promise((res) => setTimeout(res, this.opts.pauseAfterErrorMs ?? 20));
    }
  }
}
