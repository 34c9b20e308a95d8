import { describe, expect, it } from 'vitest';
import type { Envelope } from '../helpers/fake-sns.js';
import { Load, type LoadResult } from './helpers/load.js';
import { type E2eWorld, e2eRule, type RelayOptions, until, useE2eWorld } from './helpers/world.js';

/**
 * SIGTERM while SNS keeps posting (a rolling update). What must hold:
 *
 * - Readiness turns false inside the relay some time after the signal is sent, at a moment the
 *   test cannot observe directly. What it can observe is when the relay had read a request's
 *   headers: the client sends `Expect: 100-continue`, and the relay's HTTP server answers
 *   "100 Continue" once it has parsed them, right before the handler runs (readiness check
 *   first). So a request whose "100 Continue" arrived before the test even sent SIGTERM certainly
 *   got in before readiness turned false: it must be answered 200 — no 5xx, no reset.
 * - Every request whose headers the relay read, before or after the signal, gets an answer, 200 or
 *   503 (SNS retries a 503): never a 500 or 502, never a connection dropped after the headers.
 * - A request whose headers the relay never read may find the port closed (connection refused or
 *   reset): SNS retries it, and nothing was acknowledged.
 * - Everything answered 200 reaches PagerDuty: before the exit (drain) or after a restart on the
 *   same spool.
 */
describe('e2e: SIGTERM drain under load', () => {
  let world: E2eWorld;
  useE2eWorld((w) => (world = w), { windowMs: 1000, limit: 1000 });

  it('answers 200 to every request that got in, 200 or 503 to the rest, exits 0, and loses nothing', async () => {
    const dir = world.dir();
    const opts: RelayOptions = {
      routes: { default: { aliases: ['drain-1', 'drain-2'], ratePerMinute: 1000 } },
      rules: { 'e2e.yaml': e2eRule('v1') },
      delivery: { drainTimeoutMs: 2000 },
    };
    let relay = await world.startRelay(dir, opts);
    const sns = world.client(() => relay);
    // Slow enough that a backlog is queued when the signal comes.
    world.pd.latency(20);
    const messages = new Map<number, Envelope>();
    const message = (n: number) => {
      const env = world.notification({ e2e: 1, alert: `d${n}`, seq: 0 });
      messages.set(n, env);
      return env;
    };

    const load = new Load(sns, message, { concurrency: 24, expectContinue: true }).start();
    await until(() => load.ok().length >= 200, '200 messages accepted', 20_000);
    const signalledAt = performance.now();
    relay.signal('SIGTERM');
    expect(await relay.wait(20_000)).toEqual({ code: 0, signal: null });
    const exitedAt = performance.now();
    // Keep posting a little after the exit, as SNS would, then stop.
    await until(() => load.results.some((r) => r.startedAt > exitedAt), 'a request after the exit');
    await load.stop();
    const deliveredBeforeExit = new Set(world.pd.accepted.map((e) => e.dedupKey)).size;
    expect(relay.logs.map((l) => l.msg)).toEqual(
      expect.arrayContaining(['Relay stopping: no longer accepting SNS messages.', 'Relay stopped.']),
    );

    const gotIn = (r: LoadResult) => r.continuedAt !== null && r.continuedAt < signalledAt;
    const headersRead = (r: LoadResult) => r.continuedAt !== null;
    const describeResult = (r: LoadResult) => `#${r.n}: ${r.status ?? r.error}`;
    expect(load.results.filter(gotIn).length).toBeGreaterThanOrEqual(200);
    expect(load.results.filter((r) => gotIn(r) && r.status !== 200).map(describeResult)).toEqual([]);
    expect(
      load.results.filter((r) => headersRead(r) && r.status !== 200 && r.status !== 503).map(describeResult),
    ).toEqual([]);
    expect(
      load.results
        .filter((r) => r.status !== null && r.status !== 200 && r.status !== 503)
        .map(describeResult),
    ).toEqual([]);
    // A 503 says why, in the one error shape: not ready (draining).
    for (const r of load.results.filter((x) => x.status === 503))
      expect(JSON.parse(r.body)).toMatchObject({
        error: 'not_ready',
        message: expect.stringContaining('draining'),
      });
    // Requests that never got in found the port closed; SNS retries those.
    for (const r of load.results.filter((x) => x.status === null))
      expect(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'socket hang up']).toContain(r.error);

    // Whatever was answered 200 and not delivered during the drain is in the spool for the next start.
    relay = await world.startRelay(dir, opts);
    world.pd.latency(0);
    const acked = load.ok().map((r) => `e2e/d${r.n}`);
    const delivered = () => new Set(world.pd.accepted.map((e) => e.dedupKey));
    await until(() => acked.every((k) => delivered().has(k)), 'every acknowledged event', 20_000);
    expect(acked.filter((k) => !delivered().has(k))).toEqual([]);
    const tally = load.tally();
    console.info(
      `SIGTERM under load: ${JSON.stringify(tally)}; got in before the signal ${load.results.filter(gotIn).length}; ` +
        `delivered before the exit ${deliveredBeforeExit}, after the restart ${delivered().size - deliveredBeforeExit}; ` +
        `duplicate deliveries ${world.pd.duplicates().length}`,
    );
    // A clean stop records every request it made: nothing is sent twice.
    expect(world.pd.duplicates()).toEqual([]);
  });
});
