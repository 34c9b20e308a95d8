import { execFileSync } from 'node:child_process';
import { existsSync, statSync, writeFileSync } from 'node:fs';
import BetterSqlite3 from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { PoolKeyAssigner, pickForDedupKey } from '../../src/delivery/key-assigner.js';
import { KeyRing } from '../../src/delivery/key-ring.js';
import { SPOOL_SCHEMA_VERSION } from '../../src/delivery/migrations.js';
import type { PendingEvent } from '../../src/delivery/spool.js';
import { type SpoolObserver, SpoolOpenError, SqliteSpool } from '../../src/delivery/sqlite-spool.js';
import { SpoolUnavailableError } from '../../src/delivery/types.js';
import { WalFileSync, type WalSync } from '../../src/delivery/wal-sync.js';
import type { OutboundEvent } from '../../src/rules/types.js';
import { alarmEvent, entry, tempDir, testConfig } from '../helpers/delivery.js';
import { testRoutingKey } from '../helpers/fake-pagerduty.js';

let tmp: ReturnType<typeof tempDir>;
const open: SqliteSpool[] = [];
beforeEach(() => {
  tmp = tempDir();
});
afterEach(() => {
  for (const s of open.splice(0)) s.close();
  tmp.cleanup();
});

function ringOf(keys: number[], route = 'default'): KeyRing {
  const config = testConfig({
    dir: tmp.dir,
    routes: { [route]: { keys: keys.map((k) => testRoutingKey(k)) } },
  });
  return new KeyRing(config.routes);
}

function spoolWith(
  keys: number[] = [1, 2, 3, 4],
  opts: {
    observer?: SpoolObserver;
    maxSizeMiB?: number;
    now?: () => number;
    probeIntervalMs?: number;
    walSync?: WalSync;
    backgroundCheckpoint?: boolean;
  } = {},
): { spool: SqliteSpool; ring: KeyRing } {
  const ring = ringOf(keys);
  const spool = new SqliteSpool({ dir: tmp.dir, assigner: new PoolKeyAssigner(ring), ...opts });
  open.push(spool);
  return { spool, ring };
}

function reopen(spool: SqliteSpool, keys: number[] = [1, 2, 3, 4]) {
  spool.close();
  open.splice(open.indexOf(spool), 1);
  return spoolWith(keys);
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

describe('SqliteSpool', () => {
  it('commits a message with its events and remembers its MessageId across restarts', async () => {
    const { spool } = spoolWith();
    const r = await spool.commit(entry([alarmEvent('trigger', 'a1')], 'm-1'));
    expect(r).toMatchObject({
      status: 'committed',
      events: [{ action: 'trigger', dedupKey: 'a1', attempts: 0 }],
    });
    expect(spool.hasMessage('m-1')).toBe(true);
    expect(spool.hasMessage('m-2')).toBe(false);
    const again = reopen(spool).spool;
    expect(again.hasMessage('m-1')).toBe(true);
    expect(await again.commit(entry([alarmEvent('trigger', 'a1')], 'm-1'))).toEqual({ status: 'duplicate' });
    expect(again.pending()).toHaveLength(1);
  });

  it('shares one transaction among concurrent commits (group commit)', async () => {
    const { o, calls } = observer();
    const { spool } = spoolWith([1, 2, 3, 4], { observer: o });
    const results = await Promise.all(
      Array.from({ length: 50 }, (_, i) => spool.commit(entry([alarmEvent('trigger', `g${i}`)], `g-${i}`))),
    );
    expect(results.every((r) => r.status === 'committed')).toBe(true);
    expect(calls).toEqual([{ kind: 'committed', entries: 50 }]);
    await spool.commit(entry([alarmEvent('trigger', 'later')]));
    expect(calls).toHaveLength(2);
  });

  it('treats the same MessageId twice in one batch as one message', async () => {
    const { spool } = spoolWith();
    const [a, b] = await Promise.all([
      spool.commit(entry([alarmEvent('trigger', 'x')], 'same')),
      spool.commit(entry([alarmEvent('trigger', 'x')], 'same')),
    ]);
    expect([a?.status, b?.status]).toEqual(['committed', 'duplicate']);
    expect(spool.pending()).toHaveLength(1);
  });

  it('tells the listener about committed events, in order, before commit() resolves', async () => {
    const { spool } = spoolWith();
    const seen: number[] = [];
    spool.onCommitted((events) => seen.push(...events.map((e) => e.id)));
    const r = await spool.commit(entry([alarmEvent('trigger', 'l1'), alarmEvent('trigger', 'l2')]));
    expect(r.status === 'committed' && r.events.map((e) => e.id)).toEqual(seen);
    expect(seen).toHaveLength(2);
  });

  it('answers every commit even when the listener throws, and reports it', async () => {
    const { o, calls } = observer();
    const { spool } = spoolWith([1, 2, 3, 4], { observer: o });
    spool.onCommitted(() => {
      throw new Error('listener bug');
    });
    expect(await spool.commit(entry([alarmEvent('trigger', 'lb')]))).toMatchObject({ status: 'committed' });
    expect(calls).toContainEqual({ kind: 'listenerFailed', problem: 'Error: listener bug' });
    expect(spool.pending()).toHaveLength(1);
  });

  it('resumes every undelivered event in order after a restart, backoff included', async () => {
    const { spool } = spoolWith();
    for (let i = 0; i < 10; i++) await spool.commit(entry([alarmEvent('trigger', `r${i}`)]));
    const pending = spool.pending();
    spool.delivered(pending[0] as PendingEvent);
    const second = { ...(pending[1] as PendingEvent), attempts: 3, nextAttemptAt: 123_456 };
    spool.reschedule(second, '503: Service unavailable');
    spool.deadLetter(pending[2] as PendingEvent, 'rejected', '400: nope');
    spool.flush();
    const resumed = reopen(spool).spool.pending();
    expect(resumed.map((e) => e.dedupKey)).toEqual(['r1', 'r3', 'r4', 'r5', 'r6', 'r7', 'r8', 'r9']);
    expect(resumed[0]).toMatchObject({ attempts: 3, nextAttemptAt: 123_456 });
    const ids = resumed.map((e) => e.id);
    expect([...ids].sort((a, b) => a - b)).toEqual(ids);
  });

  it('assigns each dedup key its rendezvous key, and events without one to the least loaded key', async () => {
    const { spool, ring } = spoolWith();
    const keys = ring.keysOf('default');
    const r = await spool.commit(
      entry([
        alarmEvent('trigger', 'alpha'),
        ...Array.from({ length: 8 }, () => alarmEvent('trigger', null)),
      ]),
    );
    if (r.status !== 'committed') throw new Error('expected a commit');
    expect(r.events[0]?.keyFp).toBe(pickForDedupKey(keys, 'alpha').fp);
    const spread = new Map<string, number>();
    for (const e of r.events.slice(1)) spread.set(e.keyFp, (spread.get(e.keyFp) ?? 0) + 1);
    expect([...spread.values()].sort()).toEqual([2, 2, 2, 2]);
  });

  it('sends a resolve through its trigger’s key after the pool changed, and forgets the alert once resolved', async () => {
    const { spool, ring } = spoolWith([1, 2, 3, 4]);
    // A dedup key that the grown pool would send elsewhere: the map must win over rendezvous.
    const grown = ringOf([1, 2, 3, 4, 5]).keysOf('default');
    const moved = Array.from({ length: 200 }, (_, i) => `alarm-${i}`).find(
      (d) => pickForDedupKey(grown, d).fp !== pickForDedupKey(ring.keysOf('default'), d).fp,
    ) as string;
    const t = await spool.commit(entry([alarmEvent('trigger', moved)]));
    const triggerKey = t.status === 'committed' ? t.events[0]?.keyFp : undefined;
    spool.delivered((t.status === 'committed' && t.events[0]) as PendingEvent);
    const after = reopen(spool, [1, 2, 3, 4, 5]).spool;
    expect(after.alerts.get('default', moved)?.keyFp).toBe(triggerKey);
    const r = await after.commit(entry([alarmEvent('resolve', moved)]));
    const resolve = (r.status === 'committed' && r.events[0]) as PendingEvent;
    expect(resolve.keyFp).toBe(triggerKey);
    expect(resolve.keyFp).not.toBe(pickForDedupKey(grown, moved).fp);
    after.delivered(resolve);
    after.flush();
    expect(after.alerts.get('default', moved)).toBeUndefined();
  });

  it('keeps the alert remembered when a later trigger reopened it before the resolve was delivered', async () => {
    const { spool } = spoolWith();
    const r = await spool.commit(
      entry([alarmEvent('trigger', 'flap'), alarmEvent('resolve', 'flap'), alarmEvent('trigger', 'flap')]),
    );
    if (r.status !== 'committed') throw new Error('expected a commit');
    const [, resolve, retrigger] = r.events as [PendingEvent, PendingEvent, PendingEvent];
    spool.delivered(resolve);
    spool.flush();
    expect(spool.alerts.get('default', 'flap')).toEqual({ keyFp: retrigger.keyFp, triggerId: retrigger.id });
  });

  it('flags a resolve whose trigger’s key left the pool as orphaned', async () => {
    const { spool, ring } = spoolWith([1, 2, 3, 4]);
    const dedup = Array.from({ length: 100 }, (_, i) => `o-${i}`).find(
      (d) => pickForDedupKey(ring.keysOf('default'), d).fp === testKeyFp(1),
    ) as string;
    await spool.commit(entry([alarmEvent('trigger', dedup)]));
    const after = reopen(spool, [2, 3, 4]).spool;
    const r = await after.commit(entry([alarmEvent('resolve', dedup)]));
    expect(r.status === 'committed' && r.orphaned.map((e) => e.dedupKey)).toEqual([dedup]);
  });

  it('dead-letters at commit an event whose route has no keys, and SNS still gets its 200', async () => {
    const { spool } = spoolWith();
    const r = await spool.commit(entry([alarmEvent('trigger', 'z', { route: 'nowhere' })]));
    expect(r).toMatchObject({
      status: 'committed',
      events: [],
      deadLettered: [{ reason: 'no_route', detail: 'Expected a configured route, got "nowhere"' }],
    });
    expect(spool.deadLetters()).toMatchObject([{ route: 'nowhere', reason: 'no_route' }]);
  });

  it('keeps dead letters with their reason and queues them again for a running relay to adopt', async () => {
    const { spool } = spoolWith();
    await spool.commit(entry([alarmEvent('trigger', 'd1'), alarmEvent('trigger', 'd2')]));
    const [a, b] = spool.pending() as [PendingEvent, PendingEvent];
    spool.deadLetter({ ...a, attempts: 1 }, 'rejected', "400: 'payload.summary' is missing or blank");
    spool.deadLetter(b, 'bad_key', '400: Invalid routing key');
    spool.flush();
    expect(spool.adopt()).toEqual([]);
    expect(spool.counts()).toMatchObject({
      pending: 0,
      deadLetters: 2,
      deadLettersByReason: { rejected: 1, bad_key: 1 },
    });
    const letters = spool.deadLetters();
    expect(letters.map((d) => [d.id, d.reason, d.attempts])).toEqual([
      [a.id, 'rejected', 1],
      [b.id, 'bad_key', 0],
    ]);
    expect(letters[0]?.body).toMatchObject({ dedup_key: 'd1' });

    // Another process (the CLI) retries one of them.
    const cli = new SqliteSpool({ dir: tmp.dir });
    expect(cli.retryDeadLetters([a.id, 999])).toBe(1);
    cli.close();
    const adopted = spool.adopt();
    expect(adopted).toMatchObject([{ dedupKey: 'd1', attempts: 0, nextAttemptAt: 0 }]);
    expect(adopted[0]?.id).toBeGreaterThan(b.id);
    expect(spool.adopt()).toEqual([]);
    expect(spool.counts()).toMatchObject({ pending: 1, deadLetters: 1 });
  });

  it('forgets MessageIds older than the retention, in slices', async () => {
    let now = 1_000_000;
    const { spool } = spoolWith([1], { now: () => now });
    await Promise.all(Array.from({ length: 6000 }, (_, i) => spool.commit(entry([], `old-${i}`, 1000))));
    await spool.commit(entry([], 'new', 5000));
    now = 10_000;
    expect(spool.pruneMessageIds(2000)).toBe(6000);
    expect(spool.hasMessage('old-1')).toBe(false);
    expect(spool.hasMessage('new')).toBe(true);
  });

  it('isolates a bug in one entry from the others in its batch', async () => {
    const { spool } = spoolWith();
    const bad = alarmEvent('trigger', 'bad');
    (bad.body as unknown as Record<string, unknown>).oops = 10n;
    const [ok, broken] = await Promise.allSettled([
      spool.commit(entry([alarmEvent('trigger', 'ok')], 'ok')),
      spool.commit(entry([bad], 'broken')),
    ]);
    expect(ok.status).toBe('fulfilled');
    expect(broken).toMatchObject({ status: 'rejected', reason: expect.any(TypeError) });
    expect(spool.hasMessage('ok')).toBe(true);
    expect(spool.hasMessage('broken')).toBe(false);
  });

  it('migrates a new spool to the current schema and refuses one from a newer pd-relay', () => {
    const { spool } = spoolWith();
    spool.close();
    open.length = 0;
    const db = new BetterSqlite3(`${tmp.dir}/spool.db`);
    expect(db.pragma('user_version', { simple: true })).toBe(SPOOL_SCHEMA_VERSION);
    expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
    db.pragma(`user_version = ${SPOOL_SCHEMA_VERSION + 1}`);
    db.close();
    expect(() => new SqliteSpool({ dir: tmp.dir })).toThrow(
      new SpoolOpenError(
        `${tmp.dir}/spool.db: Expected spool schema version ${SPOOL_SCHEMA_VERSION} or older, got ${SPOOL_SCHEMA_VERSION + 1}: it was written by a newer pd-relay`,
      ),
    );
  });

  it('migrates a spool written by an older pd-relay, keeping what it holds', async () => {
    const { spool } = spoolWith();
    await spool.commit(entry([alarmEvent('trigger', 'kept')], 'old-msg'));
    spool.close();
    open.length = 0;
    // What schema version 1 looked like: no rate_log, no alert_times, no index on opened_at.
    const db = new BetterSqlite3(`${tmp.dir}/spool.db`);
    db.exec('DROP TABLE rate_log; DROP TABLE alert_times; DROP INDEX open_alerts_opened_at');
    db.pragma('user_version = 1');
    db.close();
    const readonly = () => new SqliteSpool({ dir: tmp.dir, readonly: true });
    expect(readonly).toThrow(/Expected spool schema version 3, got 1: run `pd-relay serve`/);
    const { spool: migrated } = spoolWith();
    expect(migrated.pending().map((e) => e.dedupKey)).toEqual(['kept']);
    expect(migrated.hasMessage('old-msg')).toBe(true);
    migrated.recordSend('fp', 1000, 0);
    migrated.flush();
    expect(migrated.recentSends(0)).toEqual(new Map([['fp', [1000]]]));
    readonly().close();
  });

  it('does not queue an event older than the newest one accepted for its route and dedup key on the same clock', async () => {
    const { spool } = spoolWith();
    const t = (at: number, from: 'payload' | 'sns' = 'payload') => ({ time: { at, from } });
    const commit = async (...events: OutboundEvent[]) => {
      const r = await spool.commit(entry(events));
      if (r.status !== 'committed') throw new Error('Expected a commit');
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
    // Other dedup keys, other routes and events without a time are not affected.
    expect((await commit(alarmEvent('trigger', 'b', t(1)))).queued).toEqual(['trigger b']);
    expect((await commit(alarmEvent('trigger', 'a', { route: 'other', ...t(1) }))).stale).toEqual([]);
    expect((await commit(alarmEvent('trigger', 'a'))).queued).toEqual(['trigger a']);
    // Remembered across a restart, forgotten with the MessageIds of the same age.
    const again = reopen(spool).spool;
    const stale = await again.commit(entry([alarmEvent('trigger', 'a', t(1, 'sns'))]));
    expect(stale).toMatchObject({ status: 'committed', events: [], stale: [{ newerAt: 500 }] });
    again.pruneMessageIds(Date.now() + 1);
    const fresh = await again.commit(entry([alarmEvent('trigger', 'a', t(1, 'sns'))]));
    expect(fresh).toMatchObject({ status: 'committed', stale: [] });
    expect(again.pending().filter((p) => p.dedupKey === 'a' && p.route === 'default')).toHaveLength(7);
  });

  it('with lock: true, holds spool.lock while open: a second relay spool is refused, the read-only CLI is not', async () => {
    const first = new SqliteSpool({ dir: tmp.dir, assigner: new PoolKeyAssigner(ringOf([1])), lock: true });
    open.push(first);
    await first.commit(entry([alarmEvent('trigger', 'held')]));
    let refused: unknown;
    try {
      new SqliteSpool({ dir: tmp.dir, assigner: new PoolKeyAssigner(ringOf([1])), lock: true }).close();
    } catch (err) {
      refused = err;
    }
    expect(refused).toBeInstanceOf(SpoolOpenError);
    expect(refused).toMatchObject({
      locked: true,
      message: `Another pd-relay process is serving the spool in ${tmp.dir} (it holds ${tmp.dir}/spool.lock): stop it first, or give this one its own spool.dir`,
    });
    const cli = new SqliteSpool({ dir: tmp.dir, readonly: true });
    expect(cli.counts().pending).toBe(1);
    cli.close();
    first.close();
    const next = new SqliteSpool({ dir: tmp.dir, assigner: new PoolKeyAssigner(ringOf([1])), lock: true });
    open.push(next);
    expect(next.pending().map((p) => p.dedupKey)).toEqual(['held']);
  });

  it('forgets open alerts whose last trigger is older than the retention, a re-trigger counting as new', async () => {
    let now = 1_000;
    const { spool } = spoolWith([1, 2, 3, 4], { now: () => now });
    await spool.commit(entry([alarmEvent('trigger', 'catch-all/1'), alarmEvent('trigger', 'flapping')]));
    now = 5_000;
    await spool.commit(entry([alarmEvent('trigger', 'flapping'), alarmEvent('trigger', 'recent')]));
    expect(spool.counts().openAlerts).toBe(3);
    const { pending: _pending, deadLettersByReason: _byReason, ...shown } = spool.counts();
    expect(spool.gaugeCounts()).toEqual(shown);
    expect(spool.pruneOpenAlerts(3_000)).toBe(1);
    expect(spool.counts().openAlerts).toBe(2);
    expect(spool.pruneOpenAlerts(3_000)).toBe(0);
    expect(spool.pruneOpenAlerts(6_000)).toBe(2);
  });

  it('keeps the last window of request ends per key, forgetting older ones', () => {
    const { spool } = spoolWith();
    spool.recordSend('a', 100, 0);
    spool.recordSend('a', 200, 0);
    spool.recordSend('b', 150, 0);
    spool.recordSend('a', 300, 150);
    spool.flush();
    expect(spool.recentSends(0)).toEqual(
      new Map([
        ['a', [200, 300]],
        ['b', [150]],
      ]),
    );
    expect(spool.recentSends(250)).toEqual(new Map([['a', [300]]]));
  });

  it('refuses to open a spool that does not exist read-only, and one that cannot be created', () => {
    expect(() => new SqliteSpool({ dir: `${tmp.dir}/absent`, readonly: true })).toThrow(SpoolOpenError);
    writeFileSync(`${tmp.dir}/a-file`, '');
    expect(() => new SqliteSpool({ dir: `${tmp.dir}/a-file/spool` })).toThrow(
      /Cannot open the spool .*ENOTDIR/,
    );
  });

  it('answers SpoolUnavailableError when the spool is full, reports it, and recovers once deliveries free space', async () => {
    const { o, calls } = observer();
    const { spool } = spoolWith([1, 2, 3, 4], { observer: o, maxSizeMiB: 1, probeIntervalMs: 20 });
    const details = { text: 'x'.repeat(20_000) };
    let failure: unknown;
    for (let i = 0; i < 200 && !failure; i++) {
      await spool.commit(entry([alarmEvent('trigger', `f${i}`, { details })])).catch((err) => {
        failure = err;
      });
    }
    expect(failure).toBeInstanceOf(SpoolUnavailableError);
    expect(String((failure as Error).message)).toMatch(/SQLITE_FULL/);
    expect(spool.problem()).toMatch(/^Spool not writable: SQLITE_FULL/);
    expect(calls.filter((c) => c.kind === 'unavailable')).toHaveLength(1);

    // Deliveries go on while full: their deletes free pages, and the probe notices.
    for (const p of spool.pending()) spool.delivered(p);
    await expect.poll(() => spool.problem(), { timeout: 5000 }).toBeNull();
    expect(calls.at(-1)).toEqual({ kind: 'recovered' });
    expect(await spool.commit(entry([alarmEvent('trigger', 'after')]))).toMatchObject({
      status: 'committed',
    });
  });

  it('recovers from full when the first queued write needs space the deletes queued after it free', async () => {
    const { spool } = spoolWith([1, 2, 3, 4], { maxSizeMiB: 1, probeIntervalMs: 20 });
    const details = { text: 'x'.repeat(20_000) };
    let failure: unknown;
    for (let i = 0; i < 200 && !failure; i++) {
      await spool.commit(entry([alarmEvent('trigger', `g${i}`, { details })])).catch((err) => {
        failure = err;
      });
    }
    expect(spool.problem()).toMatch(/SQLITE_FULL/);
    const [first, ...rest] = spool.pending();
    if (!first) throw new Error('Nothing pending');
    // A retry whose last error does not fit, queued before the deliveries: in one transaction it
    // fails them all, and with nothing queued after them nothing would try again.
    spool.reschedule({ ...first, attempts: 1, nextAttemptAt: 0 }, 'e'.repeat(60_000));
    for (const p of rest) spool.delivered(p);
    await expect.poll(() => spool.problem(), { timeout: 5000 }).toBeNull();
    expect(spool.pending().map((p) => [p.id, p.attempts])).toEqual([[first.id, 1]]);
    expect(spool.load(first.id)?.lastError).toHaveLength(60_000);
  });

  it('answers SpoolUnavailableError while another process holds the write lock, and recovers after', async () => {
    const { spool } = spoolWith([1, 2, 3, 4], { probeIntervalMs: 20 });
    const other = new BetterSqlite3(`${tmp.dir}/spool.db`);
    other.exec('BEGIN IMMEDIATE');
    await expect(spool.commit(entry([alarmEvent('trigger', 'locked')]))).rejects.toThrow(/SQLITE_BUSY/);
    expect(spool.problem()).toMatch(/SQLITE_BUSY/);
    other.exec('COMMIT');
    other.close();
    await expect.poll(() => spool.problem(), { timeout: 5000 }).toBeNull();
    expect(await spool.commit(entry([alarmEvent('trigger', 'unlocked')]))).toMatchObject({
      status: 'committed',
    });
  });

  it.skipIf(!canMakeImmutable())(
    'answers SpoolUnavailableError while the spool files are read-only, and recovers once they are writable',
    async () => {
      // chattr +i is the one way to make a file read-only for root and for an already-open
      // descriptor (chmod is neither). Not the -shm file: it is mmapped, and writing an immutable
      // mapping is a SIGBUS.
      const { o, calls } = observer();
      const { spool } = spoolWith([1, 2, 3, 4], { observer: o, probeIntervalMs: 20 });
      await spool.commit(entry([alarmEvent('trigger', 'before')]));
      const files = [`${tmp.dir}/spool.db`, `${tmp.dir}/spool.db-wal`];
      execFileSync('chattr', ['+i', ...files]);
      try {
        await expect(spool.commit(entry([alarmEvent('trigger', 'during')]))).rejects.toThrow(
          /^Spool not writable: SQLITE_IOERR_WRITE/,
        );
        expect(spool.problem()).toMatch(/SQLITE_IOERR_WRITE/);
      } finally {
        execFileSync('chattr', ['-i', ...files]);
      }
      await expect.poll(() => spool.problem(), { timeout: 5000 }).toBeNull();
      expect(calls.map((c) => c.kind)).toEqual(['committed', 'unavailable', 'recovered']);
      await spool.commit(entry([alarmEvent('trigger', 'after')]));
      expect(spool.pending().map((e) => e.dedupKey)).toEqual(['before', 'after']);
    },
  );

  it('acknowledges a commit, and queues its events, only once the WAL is synced; later transactions wait for the next sync', async () => {
    const wal = new HeldWalSync(`${tmp.dir}/spool.db-wal`);
    const { spool } = spoolWith([1, 2, 3, 4], { walSync: wal });
    const queued: Array<string | null> = [];
    spool.onCommitted((events) => queued.push(...events.map((e) => e.dedupKey)));
    const answered: string[] = [];
    const first = spool.commit(entry([alarmEvent('trigger', 'w1')])).then(() => answered.push('w1'));
    spool.flush();
    expect(wal.calls).toBe(1);
    // Written (another connection sees it), but neither answered nor queued before its sync.
    const other = new BetterSqlite3(`${tmp.dir}/spool.db`, { readonly: true });
    expect(other.prepare('SELECT count(*) AS n FROM events').get()).toEqual({ n: 1 });
    other.close();
    await wal.synced(1);
    expect(answered).toEqual([]);
    expect(queued).toEqual([]);

    // Written while the first sync runs: that sync began before it, so it waits for the next one.
    const second = spool.commit(entry([alarmEvent('trigger', 'w2')])).then(() => answered.push('w2'));
    spool.flush();
    expect(wal.calls).toBe(1);
    wal.release();
    await first;
    expect(answered).toEqual(['w1']);
    expect(queued).toEqual(['w1']);
    expect(wal.calls).toBe(2);
    await wal.synced(1);
    wal.release();
    await second;
    expect(answered).toEqual(['w1', 'w2']);
    expect(queued).toEqual(['w1', 'w2']);
  });

  it('answers SpoolUnavailableError when the WAL cannot be synced, still queues the events, and recovers', async () => {
    const { o, calls } = observer();
    const wal = new FailingWalSync(`${tmp.dir}/spool.db-wal`);
    const { spool } = spoolWith([1, 2, 3, 4], { observer: o, walSync: wal, probeIntervalMs: 20 });
    const queued: Array<string | null> = [];
    spool.onCommitted((events) => queued.push(...events.map((e) => e.dedupKey)));
    wal.failing = true;
    const message = entry([alarmEvent('trigger', 'eio')]);
    await expect(spool.commit(message)).rejects.toThrow(/^Spool not durable: EIO/);
    expect(spool.problem()).toMatch(/^Spool not durable: EIO/);
    // In the database all the same: queued for delivery now, not at the next start.
    expect(queued).toEqual(['eio']);
    const redelivery = { ...message, events: [alarmEvent('trigger', 'eio-again')] };
    await expect(spool.commit(redelivery)).rejects.toThrow(/^Spool not durable/);

    wal.failing = false;
    await expect.poll(() => spool.problem(), { timeout: 5000 }).toBeNull();
    expect(calls.map((c) => c.kind)).toEqual(['unavailable', 'recovered']);
    // A duplicate, not a second event.
    expect(await spool.commit(redelivery)).toEqual({ status: 'duplicate' });
    expect(await spool.commit(entry([alarmEvent('trigger', 'ok')]))).toMatchObject({ status: 'committed' });
    expect(spool.pending().map((e) => e.dedupKey)).toEqual(['eio', 'ok']);
  });

  it('answers commits still waiting for a sync when closed, durably', async () => {
    const wal = new HeldWalSync(`${tmp.dir}/spool.db-wal`);
    const { spool } = spoolWith([1, 2, 3, 4], { walSync: wal });
    const message = entry([alarmEvent('trigger', 'closing')]);
    const committed = spool.commit(message);
    spool.flush();
    spool.close();
    open.length = 0;
    expect(await committed).toMatchObject({ status: 'committed' });
    wal.release();
    const { spool: again } = spoolWith();
    expect(again.hasMessage(message.messageId)).toBe(true);
    expect(again.pending().map((e) => e.dedupKey)).toEqual(['closing']);
  });

  it('checkpoints the WAL into the database file on a thread of its own, long before SQLite would', async () => {
    const { spool } = spoolWith([1, 2, 3, 4], { backgroundCheckpoint: true });
    const db = `${tmp.dir}/spool.db`;
    const before = statSync(db).size;
    // ~400 KB: about 100 pages, far below SQLite's own threshold (1000 pages; 10,000 with the thread).
    const details = { text: 'x'.repeat(4000) };
    for (let i = 0; i < 100; i++) await spool.commit(entry([alarmEvent('trigger', `c${i}`, { details })]));
    await expect.poll(() => statSync(db).size - before, { timeout: 5000 }).toBeGreaterThan(300_000);
    expect(spool.pending()).toHaveLength(100);
  });

  it('closes the checkpointing thread first, so that closing leaves the database whole and no WAL', async () => {
    const { spool } = spoolWith([1, 2, 3, 4], { backgroundCheckpoint: true });
    const db = `${tmp.dir}/spool.db`;
    const before = statSync(db).size;
    const message = entry([alarmEvent('trigger', 'whole', { details: { text: 'x'.repeat(100_000) } })]);
    await spool.commit(message);
    // The thread has its connection open: it checkpointed.
    await expect.poll(() => statSync(db).size - before, { timeout: 5000 }).toBeGreaterThan(90_000);
    expect(existsSync(`${tmp.dir}/spool.db-wal`)).toBe(true);
    spool.close();
    open.length = 0;
    // SQLite removes the WAL when its last connection closes: the thread's was closed before.
    expect(existsSync(`${tmp.dir}/spool.db-wal`)).toBe(false);
    const { spool: again } = spoolWith();
    expect(again.hasMessage(message.messageId)).toBe(true);
  });

  it('rejects commits once closed', async () => {
    const { spool } = spoolWith();
    spool.close();
    open.length = 0;
    await expect(spool.commit(entry([]))).rejects.toBeInstanceOf(SpoolUnavailableError);
  });
});

/** The real fdatasync, with each completion held until the test releases it. */
class HeldWalSync implements WalSync {
  calls = 0;
  readonly #real: WalFileSync;
  #held: Array<() => void> = [];
  constructor(path: string) {
    this.#real = new WalFileSync(path);
  }
  sync(done: (err: Error | null) => void): void {
    this.calls++;
    this.#real.sync((err) => this.#held.push(() => done(err)));
  }
  /** Resolves once `n` syncs have completed on disk and wait for release(). */
  async synced(n: number): Promise<void> {
    await expect.poll(() => this.#held.length).toBe(n);
  }
  release(): void {
    for (const h of this.#held.splice(0)) h();
  }
  syncNow(): Error | null {
    return this.#real.syncNow();
  }
  close(): void {
    this.#real.close();
  }
}

/** The real fdatasync, or EIO (a failing disk) while `failing`. */
class FailingWalSync implements WalSync {
  failing = false;
  readonly #real: WalFileSync;
  constructor(path: string) {
    this.#real = new WalFileSync(path);
  }
  sync(done: (err: Error | null) => void): void {
    if (this.failing) {
      const err = Object.assign(new Error('i/o error, fdatasync'), { code: 'EIO' });
      setImmediate(() => done(err));
    } else {
      this.#real.sync(done);
    }
  }
  syncNow(): Error | null {
    return this.#real.syncNow();
  }
  close(): void {
    this.#real.close();
  }
}

/** Whether this process may set the immutable attribute here (root with CAP_LINUX_IMMUTABLE, ext4/xfs). */
function canMakeImmutable(): boolean {
  const { dir, cleanup } = tempDir();
  try {
    writeFileSync(`${dir}/probe`, '');
    execFileSync('chattr', ['+i', `${dir}/probe`], { stdio: 'ignore' });
    execFileSync('chattr', ['-i', `${dir}/probe`], { stdio: 'ignore' });
    return true;
  } catch {
    console.warn(
      'Skipping the read-only spool test: chattr +i is not available here (needs root on ext4/xfs).',
    );
    return false;
  } finally {
    cleanup();
  }
}

function testKeyFp(n: number): string {
  return ringOf([n]).keysOf('default')[0]?.fp as string;
}
