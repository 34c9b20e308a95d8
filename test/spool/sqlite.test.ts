import { execFileSync } from 'node:child_process';
import { existsSync, statSync, writeFileSync } from 'node:fs';
import BetterSqlite3 from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { PoolKeyAssigner } from '../../src/delivery/key-assigner.js';
import { KeyRing } from '../../src/delivery/key-ring.js';
import type { SpoolObserver } from '../../src/spool/spool.js';
import { SPOOL_SCHEMA_VERSION } from '../../src/spool/sqlite/migrations.js';
import { SpoolOpenError, SqliteSpool } from '../../src/spool/sqlite/spool.js';
import { WalFileSync, type WalSync } from '../../src/spool/sqlite/wal-sync.js';
import { SpoolUnavailableError } from '../../src/spool/types.js';
import { alarmEvent, entry, tempDir, testConfig } from '../helpers/delivery.js';
import { testRoutingKey } from '../helpers/fake-pagerduty.js';

let tmp: ReturnType<typeof tempDir>;
const open: SqliteSpool[] = [];
beforeEach(() => {
  tmp = tempDir();
});
afterEach(() => {
  for (const s of open.splice(0)) s.closeNow();
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
  it('migrates a new spool to the current schema and refuses one from a newer pd-relay', () => {
    const { spool } = spoolWith();
    spool.closeNow();
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
    spool.closeNow();
    open.length = 0;
    // What schema version 1 looked like: no rate_log, no alert_times, no index on opened_at.
    const db = new BetterSqlite3(`${tmp.dir}/spool.db`);
    db.exec(
      'DROP TABLE rate_log; DROP TABLE alert_times; DROP INDEX open_alerts_opened_at; ALTER TABLE open_alerts DROP COLUMN sent; ALTER TABLE events DROP COLUMN source_at; ALTER TABLE dead_letters DROP COLUMN source_at',
    );
    db.pragma('user_version = 1');
    db.close();
    const readonly = () => new SqliteSpool({ dir: tmp.dir, readonly: true });
    expect(readonly).toThrow(/Expected spool schema version 4, got 1: run `pd-relay serve`/);
    const { spool: migrated } = spoolWith();
    expect((await migrated.pending()).map((e) => e.dedupKey)).toEqual(['kept']);
    expect(await migrated.hasMessage('old-msg')).toBe(true);
    migrated.recordSend('fp', 1000, 0);
    await migrated.flush();
    expect(await migrated.recentSends(0)).toEqual(new Map([['fp', [1000]]]));
    readonly().closeNow();
  });

  it('with lock: true, holds spool.lock while open: a second relay spool is refused, the read-only CLI is not', async () => {
    const first = new SqliteSpool({ dir: tmp.dir, assigner: new PoolKeyAssigner(ringOf([1])), lock: true });
    open.push(first);
    await first.commit(entry([alarmEvent('trigger', 'held')]));
    let refused: unknown;
    try {
      new SqliteSpool({ dir: tmp.dir, assigner: new PoolKeyAssigner(ringOf([1])), lock: true }).closeNow();
    } catch (err) {
      refused = err;
    }
    expect(refused).toBeInstanceOf(SpoolOpenError);
    expect(refused).toMatchObject({
      locked: true,
      message: `Another pd-relay process is serving the spool in ${tmp.dir} (it holds ${tmp.dir}/spool.lock): stop it first, or give this one its own spool.dir`,
    });
    const cli = new SqliteSpool({ dir: tmp.dir, readonly: true });
    expect((await cli.counts()).pending).toBe(1);
    cli.closeNow();
    first.closeNow();
    const next = new SqliteSpool({ dir: tmp.dir, assigner: new PoolKeyAssigner(ringOf([1])), lock: true });
    open.push(next);
    expect((await next.pending()).map((p) => p.dedupKey)).toEqual(['held']);
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
    for (const p of await spool.pending()) spool.delivered(p);
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
    const [first, ...rest] = await spool.pending();
    if (!first) throw new Error('Nothing pending');
    // A retry whose last error does not fit, queued before the deliveries: in one transaction it
    // fails them all, and with nothing queued after them nothing would try again.
    spool.reschedule({ ...first, attempts: 1, nextAttemptAt: 0 }, 'e'.repeat(60_000));
    for (const p of rest) spool.delivered(p);
    await expect.poll(() => spool.problem(), { timeout: 5000 }).toBeNull();
    expect((await spool.pending()).map((p) => [p.id, p.attempts])).toEqual([[first.id, 1]]);
    expect((await spool.load(first.id))?.lastError).toHaveLength(60_000);
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
      expect((await spool.pending()).map((e) => e.dedupKey)).toEqual(['before', 'after']);
    },
  );

  it('acknowledges a commit, and queues its events, only once the WAL is synced; later transactions wait for the next sync', async () => {
    const wal = new HeldWalSync(`${tmp.dir}/spool.db-wal`);
    const { spool } = spoolWith([1, 2, 3, 4], { walSync: wal });
    const queued: Array<string | null> = [];
    spool.onQueued((events) => queued.push(...events.map((e) => e.dedupKey)));
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
    spool.onQueued((events) => queued.push(...events.map((e) => e.dedupKey)));
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
    expect((await spool.pending()).map((e) => e.dedupKey)).toEqual(['eio', 'ok']);
  });

  it('answers commits still waiting for a sync when closed, durably', async () => {
    const wal = new HeldWalSync(`${tmp.dir}/spool.db-wal`);
    const { spool } = spoolWith([1, 2, 3, 4], { walSync: wal });
    const message = entry([alarmEvent('trigger', 'closing')]);
    const committed = spool.commit(message);
    spool.flush();
    spool.closeNow();
    open.length = 0;
    expect(await committed).toMatchObject({ status: 'committed' });
    wal.release();
    const { spool: again } = spoolWith();
    expect(await again.hasMessage(message.messageId)).toBe(true);
    expect((await again.pending()).map((e) => e.dedupKey)).toEqual(['closing']);
  });

  it('checkpoints the WAL into the database file on a thread of its own, long before SQLite would', async () => {
    const { spool } = spoolWith([1, 2, 3, 4], { backgroundCheckpoint: true });
    const db = `${tmp.dir}/spool.db`;
    const before = statSync(db).size;
    // ~400 KB: about 100 pages, far below SQLite's own threshold (1000 pages; 10,000 with the thread).
    const details = { text: 'x'.repeat(4000) };
    for (let i = 0; i < 100; i++) await spool.commit(entry([alarmEvent('trigger', `c${i}`, { details })]));
    await expect.poll(() => statSync(db).size - before, { timeout: 5000 }).toBeGreaterThan(300_000);
    expect(await spool.pending()).toHaveLength(100);
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
    spool.closeNow();
    open.length = 0;
    // SQLite removes the WAL when its last connection closes: the thread's was closed before.
    expect(existsSync(`${tmp.dir}/spool.db-wal`)).toBe(false);
    const { spool: again } = spoolWith();
    expect(await again.hasMessage(message.messageId)).toBe(true);
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

describe('SqliteSpool adoption', () => {
  it('hands over once an event another process queued while the relay was down: at its load, not again by the poll', async () => {
    const ring = ringOf([1]);
    const first = new SqliteSpool({ dir: tmp.dir, assigner: new PoolKeyAssigner(ring) });
    open.push(first);
    await first.commit(entry([alarmEvent('trigger', 'retried'), alarmEvent('trigger', 'other')]));
    const [a, b] = await first.pending();
    if (!a || !b) throw new Error('Expected two events');
    first.deadLetter(a, 'rejected', '400: no');
    first.deadLetter(b, 'rejected', '400: no');
    first.closeNow();
    // The relay is down; the CLI retries one dead letter.
    const cli = new SqliteSpool({ dir: tmp.dir });
    expect(await cli.retryDeadLetters([a.id])).toBe(1);
    cli.closeNow();

    const relay = new SqliteSpool({ dir: tmp.dir, assigner: new PoolKeyAssigner(ring), adoptIntervalMs: 10 });
    open.push(relay);
    const handed: Array<string | null> = [];
    relay.onQueued((events) => handed.push(...events.map((e) => e.dedupKey)));
    handed.push(...(await relay.pending([ring.lanes()[0]?.fp as string])).map((e) => e.dedupKey));
    // Another write by another process wakes the poll: it finds nothing new to hand over but the other retry.
    const later = new SqliteSpool({ dir: tmp.dir });
    expect(await later.retryDeadLetters([b.id])).toBe(1);
    later.closeNow();
    // Generous: a loaded CI machine can hold a 10 ms timer back for a long while.
    await expect.poll(() => handed.length, { timeout: 10_000 }).toBeGreaterThanOrEqual(2);
    await new Promise((r) => setTimeout(r, 50));
    expect(handed).toEqual(['retried', 'other']);
  });
});
