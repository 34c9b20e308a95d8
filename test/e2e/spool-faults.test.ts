import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, rmSync, statfsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { RelayProcess } from '../helpers/relay-process.js';
import { tempDir } from '../helpers/temp.js';
import type { PostResult, SnsClient } from './helpers/sns-client.js';
import { type E2eWorld, e2eRule, metricValue, type RelayOptions, useE2eWorld } from './helpers/world.js';

/** Whether this process may mount a tmpfs (root with CAP_SYS_ADMIN, as in the CI container). */
function canMountTmpfs(): boolean {
  if (process.platform !== 'linux') return false;
  const { dir, cleanup } = tempDir('pd-relay-mount-probe-');
  try {
    if (spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', dir], { stdio: 'ignore' }).status !== 0)
      return false;
    spawnSync('umount', [dir], { stdio: 'ignore' });
    return true;
  } finally {
    cleanup();
  }
}

/** Whether this process may set the immutable attribute (root with CAP_LINUX_IMMUTABLE on ext4/xfs/tmpfs). */
function canMakeImmutable(): boolean {
  const { dir, cleanup } = tempDir('pd-relay-chattr-probe-');
  try {
    writeFileSync(join(dir, 'probe'), '');
    if (spawnSync('chattr', ['+i', join(dir, 'probe')], { stdio: 'ignore' }).status !== 0) return false;
    spawnSync('chattr', ['-i', join(dir, 'probe')], { stdio: 'ignore' });
    return true;
  } finally {
    cleanup();
  }
}

const MOUNT = canMountTmpfs();
const IMMUTABLE = canMakeImmutable();
if (!MOUNT)
  console.warn('Skipping the e2e full-disk test: cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN).');
if (!IMMUTABLE)
  console.warn(
    'Skipping the e2e read-only spool test: chattr +i is not available here (needs root on ext4/xfs).',
  );

/**
 * The spool cannot be written — a size cap reached (`spool.maxSizeMiB`, SQLITE_FULL), a disk that
 * is really full (a tiny tmpfs), spool files made read-only (chattr +i: root ignores permissions)
 * — while SNS keeps posting. SNS must get 503 (it retries), never a 500 and never a 200 for a
 * message that was not stored; readiness turns false; once the cause is gone the relay recovers
 * by itself, and every message answered 200 reaches PagerDuty.
 */
describe('e2e: a full or read-only spool', () => {
  let world: E2eWorld;
  useE2eWorld((w) => (world = w), { windowMs: 1000, limit: 1000 });

  const options = (extra: Partial<RelayOptions> = {}): RelayOptions => ({
    routes: { default: { aliases: ['spool-1', 'spool-2'], ratePerMinute: 1000 } },
    rules: { 'e2e.yaml': e2eRule('v1') },
    ...extra,
  });
  /** ~20 KB per message, so that a small spool fills within a few dozen. */
  const PAD = 'x'.repeat(20_000);
  let seq = 0;
  /** The dedup key of every message posted, by MessageId. */
  const dedupKeyOf = new Map<string, string>();
  const message = (tag: string) => {
    const alert = `${tag}${seq++}`;
    const envelope = world.notification({ e2e: 1, alert, seq: 0, pad: PAD });
    dedupKeyOf.set(String(envelope.MessageId), `e2e/${alert}`);
    return envelope;
  };

  /** Posts until the relay answers 503 (or `max` messages); every answer must be 200 or 503. */
  async function postUntil503(sns: SnsClient, tag: string, max: number): Promise<PostResult[]> {
    const results: PostResult[] = [];
    for (let i = 0; i < max; i++) {
      const batch = await Promise.all(Array.from({ length: 4 }, () => sns.post(message(tag))));
      results.push(...batch);
      if (batch.some((r) => r.status === 503)) break;
    }
    return results;
  }

  /** The shared course of events once the spool is unwritable, up to recovery and delivery. */
  async function expectOutageAndRecovery(
    relay: RelayProcess,
    sns: SnsClient,
    results: PostResult[],
    fix: () => void,
    reason: RegExp,
  ): Promise<void> {
    expect(
      results.filter((r) => r.status !== 200 && r.status !== 503).map((r) => r.status ?? r.error),
    ).toEqual([]);
    const refused = results.filter((r) => r.status === 503);
    expect(refused.length).toBeGreaterThan(0);
    // The first refusal is the failed commit itself (spool_unavailable) or, when the dispatcher's
    // own write found the spool unwritable a moment earlier, the readiness check (not_ready) that
    // names the spool: both are 503, so SNS retries either way.
    const first = JSON.parse(refused[0]?.body ?? '{}') as { error?: string; message?: string };
    if (first.error === 'not_ready') expect(first.message).toMatch(reason);
    else expect(first).toMatchObject({ error: 'spool_unavailable' });
    // Readiness is false, new deliveries are deferred, the metric and the log say why.
    const ready = await sns.get('/readyz');
    expect(ready.status).toBe(503);
    expect(JSON.parse(ready.body)).toMatchObject({
      status: 'not_ready',
      reason: expect.stringMatching(reason),
    });
    const later = await sns.post(message('during'));
    expect(later.status).toBe(503);
    expect(metricValue(await world.metrics(relay), 'pdrelay_spool_writable')).toBe(0);
    await relay.waitForLog(
      (l) => l.msg === 'The spool cannot be written: SNS deliveries get 503 until it can.',
    );

    fix();
    world.pd.heal();
    await relay.waitForLog((l) => l.msg === 'The spool is writable again.', 15_000);
    // The backlog drains (for the size cap, that is what frees the space), then SNS is welcome again.
    const ackedBefore = results.filter((r) => r.status === 200).length;
    await world.pd.waitFor((f) => f.accepted.length >= ackedBefore, 20_000, 'the backlog');
    expect((await sns.get('/readyz')).status).toBe(200);
    const after = await Promise.all(Array.from({ length: 5 }, () => sns.post(message('after'))));
    expect(after.map((r) => r.status)).toEqual([200, 200, 200, 200, 200]);
    expect(metricValue(await world.metrics(relay), 'pdrelay_spool_writable')).toBe(1);

    // Every message answered 200 — before, during and after — reaches PagerDuty; no 503'd one does.
    const all = [...results, later, ...after];
    const acked = all.filter((r) => r.status === 200).map((r) => dedupKeyOf.get(r.messageId));
    await world.pd.waitFor((f) => f.accepted.length >= acked.length, 20_000, 'every acknowledged event');
    await new Promise((r) => setTimeout(r, 200));
    expect(world.pd.accepted.map((e) => e.dedupKey).sort()).toEqual(acked.sort());
    console.info(
      `Spool unwritable (${String(JSON.parse(ready.body).reason)}): ${acked.length} acknowledged and delivered, ${all.length - acked.length} deferred with 503`,
    );
  }

  it('spool.maxSizeMiB reached (SQLITE_FULL): 503 and not ready, recovers once deliveries free space', async () => {
    const relay = await world.startRelay(world.dir(), options({ maxSizeMiB: 1 }));
    const sns = world.client(() => relay);
    // PagerDuty down: nothing leaves the spool, so it fills.
    world.pd.failAll(600_000);
    const results = await postUntil503(sns, 'cap', 100);
    await expectOutageAndRecovery(relay, sns, results, () => {}, /SQLITE_FULL/);
  });

  it.skipIf(!MOUNT)(
    'a full disk (a tiny tmpfs filled up): 503 and not ready, recovers once space is freed',
    async () => {
      const dir = world.dir();
      const mnt = join(dir, 'disk');
      mkdirSync(mnt);
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=8m', 'tmpfs', mnt]);
      world.onCleanup(() => execFileSync('umount', ['-l', mnt]));
      const relay = await world.startRelay(dir, options({ spoolDir: join(mnt, 'spool') }));
      const sns = world.client(() => relay);
      world.pd.failAll(600_000);
      const first = await Promise.all(Array.from({ length: 10 }, () => sns.post(message('disk'))));
      expect(first.map((r) => r.status)).toEqual(first.map(() => 200));
      // Fill what is left of the disk. The relay may write meanwhile (its WAL, the checkpoint
      // thread), so the filler itself can already hit ENOSPC: the disk is full either way.
      const filler = join(mnt, 'filler');
      const { bavail, bsize } = statfsSync(mnt);
      try {
        writeFileSync(filler, Buffer.alloc(Math.max(0, bavail * bsize - 4096)));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
      }
      try {
        writeFileSync(join(mnt, 'filler-rest'), Buffer.alloc(64 * 1024));
      } catch {
        // ENOSPC: the disk is full.
      }
      const results = await postUntil503(sns, 'disk', 100);
      await expectOutageAndRecovery(
        relay,
        sns,
        [...first, ...results],
        () => {
          rmSync(filler, { force: true });
          rmSync(join(mnt, 'filler-rest'), { force: true });
        },
        /SQLITE_FULL/,
      );
    },
  );

  it.skipIf(!IMMUTABLE)(
    'read-only spool files (chattr +i): 503 and not ready, recovers once writable',
    async () => {
      const dir = world.dir();
      const relay = await world.startRelay(dir, options());
      const sns = world.client(() => relay);
      world.pd.failAll(600_000);
      const first = await Promise.all(Array.from({ length: 10 }, () => sns.post(message('ro'))));
      expect(first.map((r) => r.status)).toEqual(first.map(() => 200));
      // Not the -shm file: it is mmapped, and writing an immutable mapping is a SIGBUS, not an error.
      const files = [join(dir, 'spool', 'spool.db'), join(dir, 'spool', 'spool.db-wal')];
      execFileSync('chattr', ['+i', ...files]);
      let immutable = true;
      const release = () => {
        if (!immutable) return;
        execFileSync('chattr', ['-i', ...files]);
        immutable = false;
      };
      world.onCleanup(release);
      const results = await postUntil503(sns, 'ro', 20);
      await expectOutageAndRecovery(relay, sns, [...first, ...results], release, /SQLITE_IOERR_WRITE/);
    },
  );
});
