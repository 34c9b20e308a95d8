import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { PoolKeyAssigner, pickForDedupKey } from '../../src/delivery/key-assigner.js';
import { KeyRing } from '../../src/delivery/key-ring.js';
import type { OutboundEvent } from '../../src/rules/types.js';
import {
  type CommitResult,
  decideKey,
  type PendingEvent,
  type SpoolObserver,
} from '../../src/spool/spool.js';
import { SpoolUnavailableError } from '../../src/spool/types.js';
import { alarmEvent, entry } from '../helpers/delivery.js';
import { own, type SpoolBackend, type SpoolPlace, waitFor } from './backends.js';

/**
 * The spool contract (src/spool/spool.ts), as behaviour: every implementation runs this suite, and
 * a new one is done when it passes. What only one implementation can show (SQLite's WAL sync and
 * file lock, PostgreSQL's replicas and a server that goes away) lives in its own test file.
 */
export function describeSpoolContract(backend: SpoolBackend): void {
  describe(`spool contract: ${backend.name}`, () => {
    let place: SpoolPlace;
    beforeEach(async () => {
      place = await backend.place();
    });
    afterEach(async () => {
      await place.cleanup();
    });

    /** Closes a served spool and serves it again (a restart), with `keys` in the pool. */
    async function restart(spool: { close(): Promise<void> }, keys: number[] = [1, 2, 3, 4]) {
      await spool.close();
      return place.serve(keys);
    }

    function observer() {
      const calls: Array<{ kind: string; entries?: number; problem?: string }> = [];
      const o: SpoolObserver = {
        committed: (info) => calls.push({ kind: 'committed', entries: info.entries }),
        unavailable: (problem) => calls.push({ kind: 'unavailable', problem }),
        recovered: () => calls.push({ kind: 'recovered' }),
        listenerFailed: (err) => calls.push({ kind: 'listenerFailed', problem: String(err) }),
      };
      return { o, calls };
    }

    const committed = (r: CommitResult) => {
      if (r.status !== 'committed') throw new Error(`Expected a commit, got ${r.status}`);
      return r;
    };

    it('commits a message with its events and remembers its MessageId across restarts', async () => {
      const { spool } = await place.serve();
      const r = await spool.commit(entry([alarmEvent('trigger', 'a1')], 'm-1'));
      expect(r).toMatchObject({
        status: 'committed',
        events: [{ action: 'trigger', dedupKey: 'a1', attempts: 0 }],
      });
      expect(await spool.hasMessage('m-1')).toBe(true);
      expect(await spool.hasMessage('m-2')).toBe(false);
      const again = (await restart(spool)).spool;
      expect(await again.hasMessage('m-1')).toBe(true);
      expect(await again.commit(entry([alarmEvent('trigger', 'a1')], 'm-1'))).toEqual({
        status: 'duplicate',
      });
      expect(await again.pending()).toHaveLength(1);
      const stored = await again.load(committed(r).events[0]?.id as number);
      expect(stored).toMatchObject({
        messageId: 'm-1',
        rule: 'test-rule',
        body: { dedup_key: 'a1' },
        lastError: null,
      });
    });

    it('shares one transaction among concurrent commits (group commit)', async () => {
      const { o, calls } = observer();
      const { spool } = await place.serve([1, 2, 3, 4], { observer: o });
      const results = await Promise.all(
        Array.from({ length: 50 }, (_, i) => spool.commit(entry([alarmEvent('trigger', `g${i}`)], `g-${i}`))),
      );
      expect(results.every((r) => r.status === 'committed')).toBe(true);
      expect(calls).toEqual([{ kind: 'committed', entries: 50 }]);
      await spool.commit(entry([alarmEvent('trigger', 'later')]));
      expect(calls).toHaveLength(2);
    });

    it('treats the same MessageId twice in one batch as one message', async () => {
      const { spool } = await place.serve();
      const [a, b] = await Promise.all([
        spool.commit(entry([alarmEvent('trigger', 'x')], 'same')),
        spool.commit(entry([alarmEvent('trigger', 'x')], 'same')),
      ]);
      expect([a?.status, b?.status].sort()).toEqual(['committed', 'duplicate']);
      expect(await spool.pending()).toHaveLength(1);
    });

    it('tells the listener about committed events, in order (one process: before commit() resolves)', async () => {
      const { spool, ring } = await place.serve();
      if (backend.shared) await own(spool, ring);
      const seen: number[] = [];
      spool.onQueued((events) => seen.push(...events.map((e) => e.id)));
      const r = committed(
        await spool.commit(entry([alarmEvent('trigger', 'l1'), alarmEvent('trigger', 'l2')])),
      );
      if (backend.shared) await waitFor(() => seen.length === 2, 'both events');
      expect([...seen].sort((a, b) => a - b)).toEqual(r.events.map((e) => e.id));
      expect(seen).toHaveLength(2);
    });

    it('answers every commit even when the listener throws, and reports it', async () => {
      const { o, calls } = observer();
      const { spool, ring } = await place.serve([1, 2, 3, 4], { observer: o });
      if (backend.shared) await own(spool, ring);
      spool.onQueued(() => {
        throw new Error('listener bug');
      });
      expect(await spool.commit(entry([alarmEvent('trigger', 'lb')]))).toMatchObject({ status: 'committed' });
      await waitFor(() => calls.some((c) => c.kind === 'listenerFailed'), 'the listener to fail');
      expect(calls).toContainEqual({ kind: 'listenerFailed', problem: 'Error: listener bug' });
      expect(await spool.pending()).toHaveLength(1);
    });

    it('resumes every undelivered event in order after a restart, backoff included', async () => {
      const { spool } = await place.serve();
      for (let i = 0; i < 10; i++) await spool.commit(entry([alarmEvent('trigger', `r${i}`)]));
      const pending = await spool.pending();
      spool.delivered(pending[0] as PendingEvent);
      const second = { ...(pending[1] as PendingEvent), attempts: 3, nextAttemptAt: 123_456 };
      spool.reschedule(second, '503: Service unavailable');
      spool.deadLetter(pending[2] as PendingEvent, 'rejected', '400: nope');
      await spool.flush();
      const again = (await restart(spool)).spool;
      const resumed = await again.pending();
      expect(resumed.map((e) => e.dedupKey)).toEqual(['r1', 'r3', 'r4', 'r5', 'r6', 'r7', 'r8', 'r9']);
      expect(resumed[0]).toMatchObject({ attempts: 3, nextAttemptAt: 123_456 });
      expect((await again.load(second.id))?.lastError).toBe('503: Service unavailable');
      const ids = resumed.map((e) => e.id);
      expect([...ids].sort((a, b) => a - b)).toEqual(ids);
    });

    it('lists pending events of chosen keys, from an id on', async () => {
      const { spool, ring } = await place.serve();
      const r = committed(
        await spool.commit(entry(Array.from({ length: 12 }, (_, i) => alarmEvent('trigger', `k${i}`)))),
      );
      const [k1, k2] = ring.lanes().map((k) => k.fp) as [string, string];
      const of = (fps: string[]) => r.events.filter((e) => fps.includes(e.keyFp)).map((e) => e.id);
      expect((await spool.pending([k1])).map((e) => e.id)).toEqual(of([k1]));
      expect((await spool.pending([k1, k2])).map((e) => e.id)).toEqual(of([k1, k2]));
      const from = r.events[6]?.id as number;
      expect((await spool.pending(undefined, from)).map((e) => e.id)).toEqual(
        r.events.slice(6).map((e) => e.id),
      );
      expect(await spool.pending(['nobody'])).toEqual([]);
    });

    it('assigns each dedup key its rendezvous key, and events without one to the least loaded key', async () => {
      const { spool, ring } = await place.serve();
      const keys = ring.keysOf('default');
      const r = committed(
        await spool.commit(
          entry([
            alarmEvent('trigger', 'alpha'),
            ...Array.from({ length: 8 }, () => alarmEvent('trigger', null)),
          ]),
        ),
      );
      expect(r.events[0]?.keyFp).toBe(pickForDedupKey(keys, 'alpha').fp);
      const spread = new Map<string, number>();
      for (const e of r.events.slice(1)) spread.set(e.keyFp, (spread.get(e.keyFp) ?? 0) + 1);
      expect([...spread.values()].sort()).toEqual([2, 2, 2, 2]);
    });

    it('sends a resolve through its trigger’s key after the pool changed, and forgets the alert once resolved', async () => {
      const { spool, ring } = await place.serve([1, 2, 3, 4]);
      // A dedup key that the grown pool would send elsewhere: the map must win over rendezvous.
      const grown = place.config([1, 2, 3, 4, 5]);
      const grownKeys = new KeyRing(grown.routes).keysOf('default');
      const moved = Array.from({ length: 200 }, (_, i) => `alarm-${i}`).find(
        (d) => pickForDedupKey(grownKeys, d).fp !== pickForDedupKey(ring.keysOf('default'), d).fp,
      ) as string;
      const t = committed(await spool.commit(entry([alarmEvent('trigger', moved)])));
      const triggerKey = t.events[0]?.keyFp;
      spool.delivered(t.events[0] as PendingEvent);
      const after = (await restart(spool, [1, 2, 3, 4, 5])).spool;
      expect((await after.openAlert('default', moved))?.keyFp).toBe(triggerKey);
      const r = committed(await after.commit(entry([alarmEvent('resolve', moved)])));
      const resolve = r.events[0] as PendingEvent;
      expect(resolve.keyFp).toBe(triggerKey);
      expect(resolve.keyFp).not.toBe(pickForDedupKey(grownKeys, moved).fp);
      after.delivered(resolve);
      await after.flush();
      expect(await after.openAlert('default', moved)).toBeUndefined();
    });

    it('keeps the alert remembered when a later trigger reopened it before the resolve was delivered', async () => {
      const { spool } = await place.serve();
      const r = committed(
        await spool.commit(
          entry([
            alarmEvent('trigger', 'flap'),
            alarmEvent('resolve', 'flap'),
            alarmEvent('trigger', 'flap'),
          ]),
        ),
      );
      const [, resolve, retrigger] = r.events as [PendingEvent, PendingEvent, PendingEvent];
      spool.delivered(resolve);
      await spool.flush();
      expect(await spool.openAlert('default', 'flap')).toEqual({
        keyFp: retrigger.keyFp,
        triggerId: retrigger.id,
        sent: false,
      });
    });

    it('knows whether an open alert reached PagerDuty: a trigger delivered, until a resolve is', async () => {
      const { spool } = await place.serve();
      const first = committed(await spool.commit(entry([alarmEvent('trigger', 'life')])))
        .events[0] as PendingEvent;
      expect((await spool.openAlert('default', 'life'))?.sent).toBe(false);
      spool.delivered(first);
      await spool.flush();
      expect((await spool.openAlert('default', 'life'))?.sent).toBe(true);
      // A repeated trigger while it is open keeps it open there.
      const again = committed(await spool.commit(entry([alarmEvent('trigger', 'life')])))
        .events[0] as PendingEvent;
      expect(await spool.openAlert('default', 'life')).toEqual({
        keyFp: first.keyFp,
        triggerId: again.id,
        sent: true,
      });
      const resolve = committed(await spool.commit(entry([alarmEvent('resolve', 'life')])))
        .events[0] as PendingEvent;
      spool.delivered(again);
      spool.delivered(resolve);
      await spool.flush();
      expect(await spool.openAlert('default', 'life')).toBeUndefined();
    });

    it('flags a resolve whose trigger’s key left the pool as orphaned', async () => {
      const { spool, ring } = await place.serve([1, 2, 3, 4]);
      const first = ring.keysOf('default')[0]?.fp as string;
      const dedup = Array.from({ length: 100 }, (_, i) => `o-${i}`).find(
        (d) => pickForDedupKey(ring.keysOf('default'), d).fp === first,
      ) as string;
      await spool.commit(entry([alarmEvent('trigger', dedup)]));
      const after = (await restart(spool, [2, 3, 4])).spool;
      const r = committed(await after.commit(entry([alarmEvent('resolve', dedup)])));
      expect(r.orphaned.map((e) => e.dedupKey)).toEqual([dedup]);
      expect(r.events.map((e) => e.dedupKey)).toEqual([dedup]);
      expect(r.events[0]?.keyFp).not.toBe(first);
    });

    it('dead-letters at commit an event whose route has no keys, and SNS still gets its 200', async () => {
      const { spool } = await place.serve();
      const r = await spool.commit(entry([alarmEvent('trigger', 'z', { route: 'nowhere' })]));
      expect(r).toMatchObject({
        status: 'committed',
        events: [],
        deadLettered: [{ reason: 'no_route', detail: 'Expected a configured route, got "nowhere"' }],
      });
      expect(await spool.deadLetters()).toMatchObject([{ route: 'nowhere', reason: 'no_route', keyFp: '' }]);
      expect(await spool.pending()).toEqual([]);
    });

    it('keeps dead letters with their reason, and queues the ones another process retries for the running relay', async () => {
      const { spool, ring } = await place.serve();
      await own(spool, ring);
      const queued: PendingEvent[] = [];
      spool.onQueued((events) => queued.push(...events));
      await spool.commit(entry([alarmEvent('trigger', 'd1'), alarmEvent('trigger', 'd2')]));
      const [a, b] = (await spool.pending()) as [PendingEvent, PendingEvent];
      spool.deadLetter({ ...a, attempts: 1 }, 'rejected', "400: 'payload.summary' is missing or blank");
      spool.deadLetter(b, 'bad_key', '400: Invalid routing key');
      await spool.flush();
      expect(await spool.counts()).toMatchObject({
        pending: 0,
        deadLetters: 2,
        deadLettersByReason: { rejected: 1, bad_key: 1 },
      });
      const letters = await spool.deadLetters();
      expect(letters.map((d) => [d.id, d.reason, d.attempts])).toEqual([
        [a.id, 'rejected', 1],
        [b.id, 'bad_key', 0],
      ]);
      expect(letters[0]?.body).toMatchObject({ dedup_key: 'd1' });
      expect(await spool.deadLetters({ limit: 1 })).toHaveLength(1);
      expect((await spool.deadLetters({ ids: [b.id, 999] })).map((d) => d.id)).toEqual([b.id]);

      // Another process (the CLI) retries one of them: the running relay hears of it.
      queued.length = 0;
      const cli = await place.admin();
      expect(await cli.retryDeadLetters([a.id, 999])).toBe(1);
      await waitFor(() => queued.length === 1, 'the retried event');
      expect(queued).toMatchObject([{ dedupKey: 'd1', attempts: 0, nextAttemptAt: 0, keyFp: a.keyFp }]);
      expect(queued[0]?.id).toBeGreaterThan(b.id);
      expect(await spool.counts()).toMatchObject({ pending: 1, deadLetters: 1 });
      expect(await cli.discardDeadLetters([b.id])).toBe(1);
      expect(await spool.counts()).toMatchObject({ pending: 1, deadLetters: 0 });
    });

    it('forgets MessageIds older than the retention, in slices', async () => {
      let now = 1_000_000;
      const { spool } = await place.serve([1], { now: () => now });
      await Promise.all(Array.from({ length: 6000 }, (_, i) => spool.commit(entry([], `old-${i}`, 1000))));
      await spool.commit(entry([], 'new', 5000));
      now = 10_000;
      expect(await spool.pruneMessageIds(2000)).toBe(6000);
      expect(await spool.hasMessage('old-1')).toBe(false);
      expect(await spool.hasMessage('new')).toBe(true);
      expect((await spool.counts()).messageIds).toBe(1);
    });

    it('isolates a bug in one entry from the others in its batch', async () => {
      const { spool } = await place.serve();
      const bad = alarmEvent('trigger', 'bad');
      (bad.body as unknown as Record<string, unknown>).oops = 10n;
      const [ok, broken] = await Promise.allSettled([
        spool.commit(entry([alarmEvent('trigger', 'ok')], 'ok')),
        spool.commit(entry([bad], 'broken')),
      ]);
      expect(ok.status).toBe('fulfilled');
      expect(broken).toMatchObject({ status: 'rejected', reason: expect.any(TypeError) });
      expect(await spool.hasMessage('ok')).toBe(true);
      expect(await spool.hasMessage('broken')).toBe(false);
      expect(spool.problem()).toBeNull();
    });

    it('does not queue an event older than the newest one accepted for its route and dedup key on the same clock', async () => {
      const { spool } = await place.serve([1, 2], { route: 'other' });
      const t = (at: number, from: 'payload' | 'sns' = 'payload') => ({ time: { at, from } });
      const commit = async (...events: OutboundEvent[]) => {
        const r = committed(await spool.commit(entry(events)));
        return { queued: r.events.map((e) => `${e.action} ${e.dedupKey}`), stale: r.stale };
      };
      // The alarm fired at 1000 and cleared at 2000; SNS delivered the ALARM again (a retry) after the OK.
      expect(await commit(alarmEvent('trigger', 'a', t(1000)))).toEqual({ queued: ['trigger a'], stale: [] });
      expect(await commit(alarmEvent('resolve', 'a', t(2000)))).toEqual({ queued: ['resolve a'], stale: [] });
      const late = alarmEvent('trigger', 'a', t(1000));
      expect(await commit(late)).toEqual({ queued: [], stale: [{ event: late, newerAt: 2000 }] });
      // The same time again (one state through two paths) is not older; a later state goes through.
      expect((await commit(alarmEvent('resolve', 'a', t(2000)))).queued).toEqual(['resolve a']);
      expect((await commit(alarmEvent('trigger', 'a', t(3000)))).queued).toEqual(['trigger a']);
      // Another clock (a rule without payload.timestamp) is never compared with this one...
      expect((await commit(alarmEvent('resolve', 'a', t(500, 'sns')))).queued).toEqual(['resolve a']);
      // ...and from then on the times of that clock count.
      expect((await commit(alarmEvent('trigger', 'a', t(400, 'sns')))).stale).toHaveLength(1);
      // Within one message too: the second event sees the first.
      expect(
        await commit(alarmEvent('trigger', 'c', t(900)), alarmEvent('resolve', 'c', t(800))),
      ).toMatchObject({
        queued: ['trigger c'],
        stale: [{ newerAt: 900 }],
      });
      // Other dedup keys, other routes and events without a time are not affected.
      expect((await commit(alarmEvent('trigger', 'b', t(1)))).queued).toEqual(['trigger b']);
      expect((await commit(alarmEvent('trigger', 'a', { route: 'other', ...t(1) }))).stale).toEqual([]);
      expect((await commit(alarmEvent('trigger', 'a'))).queued).toEqual(['trigger a']);
      // Remembered across a restart, forgotten with the MessageIds of the same age.
      const again = (await restart(spool)).spool;
      const stale = await again.commit(entry([alarmEvent('trigger', 'a', t(1, 'sns'))]));
      expect(stale).toMatchObject({ status: 'committed', events: [], stale: [{ newerAt: 500 }] });
      await again.pruneMessageIds(Date.now() + 1);
      const fresh = await again.commit(entry([alarmEvent('trigger', 'a', t(1, 'sns'))]));
      expect(fresh).toMatchObject({ status: 'committed', stale: [] });
      expect((await again.pending()).filter((p) => p.dedupKey === 'a' && p.route === 'default')).toHaveLength(
        7,
      );
    });

    it('forgets open alerts whose last trigger is older than the retention, a re-trigger counting as new', async () => {
      let now = 1_000;
      const { spool } = await place.serve([1, 2, 3, 4], { now: () => now });
      await spool.commit(entry([alarmEvent('trigger', 'catch-all/1'), alarmEvent('trigger', 'flapping')]));
      now = 5_000;
      await spool.commit(entry([alarmEvent('trigger', 'flapping'), alarmEvent('trigger', 'recent')]));
      expect((await spool.counts()).openAlerts).toBe(3);
      const { pending: _pending, deadLettersByReason: _byReason, ...shown } = await spool.counts();
      expect(await spool.gaugeCounts()).toEqual(shown);
      expect(await spool.pruneOpenAlerts(3_000)).toBe(1);
      expect((await spool.counts()).openAlerts).toBe(2);
      expect(await spool.pruneOpenAlerts(3_000)).toBe(0);
      expect(await spool.pruneOpenAlerts(6_000)).toBe(2);
    });

    it('keeps the last window of request ends per key, forgetting older ones, across a restart', async () => {
      const { spool } = await place.serve();
      spool.recordSend('a', 100, 0);
      spool.recordSend('a', 200, 0);
      spool.recordSend('b', 150, 0);
      spool.recordSend('a', 300, 150);
      await spool.flush();
      expect(await spool.recentSends(0)).toEqual(
        new Map([
          ['a', [200, 300]],
          ['b', [150]],
        ]),
      );
      expect(await spool.recentSends(250)).toEqual(new Map([['a', [300]]]));
      const again = (await restart(spool)).spool;
      expect(await again.recentSends(0, ['b'])).toEqual(new Map([['b', [150]]]));
    });

    it('moves pending events off a key that left the configuration, keeping the open-alert map in step', async () => {
      const { spool, ring } = await place.serve([1, 2, 3, 4]);
      const gone = ring.keysOf('default')[0]?.fp as string;
      const onGone = Array.from({ length: 100 }, (_, i) => `mv-${i}`)
        .filter((d) => pickForDedupKey(ring.keysOf('default'), d).fp === gone)
        .slice(0, 2) as [string, string];
      // One alert triggered and still queued, one already delivered with its resolve queued.
      const r = committed(
        await spool.commit(entry([alarmEvent('trigger', onGone[0]), alarmEvent('trigger', onGone[1])])),
      );
      spool.delivered(r.events[1] as PendingEvent);
      const resolve = committed(await spool.commit(entry([alarmEvent('resolve', onGone[1])])))
        .events[0] as PendingEvent;
      await spool.flush();
      const after = (await restart(spool, [2, 3, 4])).spool;
      const afterRing = new KeyRing(place.config([2, 3, 4]).routes);
      const assigner = new PoolKeyAssigner(afterRing);
      const moved = await after.reroute(await after.pending([gone]), (ev, open) =>
        decideKey(assigner.propose(ev), ev.action, open),
      );
      expect(
        moved.map((m) => [
          m.event.dedupKey,
          m.event.action,
          'orphaned' in m.assignment && m.assignment.orphaned === true,
        ]),
      ).toEqual([
        [onGone[0], 'trigger', false],
        [onGone[1], 'resolve', true],
      ]);
      const now = await after.pending();
      expect(now.map((e) => e.keyFp)).not.toContain(gone);
      const trigger = now.find((e) => e.dedupKey === onGone[0]) as PendingEvent;
      expect(await after.openAlert('default', onGone[0])).toEqual({
        keyFp: trigger.keyFp,
        triggerId: trigger.id,
        sent: false,
      });
      expect(now.find((e) => e.id === resolve.id)?.keyFp).toBe(
        pickForDedupKey(afterRing.keysOf('default'), onGone[1]).fp,
      );
      // An event no longer on the key the caller saw it on, or no longer pending, is not moved.
      const current = now.find((e) => e.id === resolve.id) as PendingEvent;
      expect(await after.reroute([resolve], () => ({ keyFp: 'x' }))).toEqual([]);
      expect(await after.reroute([current], () => ({ keyFp: 'x' }))).toHaveLength(1);
      after.delivered({ ...current, keyFp: 'x' });
      await after.flush();
      expect(await after.reroute([{ ...current, keyFp: 'x' }], () => ({ keyFp: 'y' }))).toEqual([]);
    });

    it('rejects commits once closed', async () => {
      const { spool } = await place.serve();
      await spool.close();
      await expect(spool.commit(entry([]))).rejects.toBeInstanceOf(SpoolUnavailableError);
    });
  });
}
