import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { run } from '../../src/cli/main.js';
import { formatDuration } from '../../src/cli/spool.js';
import { loadConfig } from '../../src/config/load.js';
import { createDelivery, type Delivery } from '../../src/delivery/delivery.js';
import { PoolKeyAssigner } from '../../src/delivery/key-assigner.js';
import { KeyRing } from '../../src/delivery/key-ring.js';
import type { PendingEvent } from '../../src/spool/spool.js';
import { SqliteSpool } from '../../src/spool/sqlite/spool.js';
import { alarmEvent, entry, tempDir } from '../helpers/delivery.js';
import { FakePagerDuty, testRoutingKey } from '../helpers/fake-pagerduty.js';
import { captureIo } from '../helpers/io.js';
import { captureLogger } from '../helpers/log.js';

const K1 = testRoutingKey('cli1');
const K2 = testRoutingKey('cli2');

let tmp: ReturnType<typeof tempDir>;
let file: string;
let fake: FakePagerDuty;
beforeEach(async () => {
  tmp = tempDir();
  fake = await FakePagerDuty.start();
  file = join(tmp.dir, 'pd-relay.yaml');
  writeFileSync(
    file,
    [
      'sns:',
      '  topics: ["arn:aws:sns:*:123456789012:*"]',
      'pagerduty:',
      `  url: ${fake.url}`,
      'routes:',
      '  default:',
      '    keys:',
      `      - { alias: primary, key: ${K1} }`,
      `      - { alias: secondary, key: ${K2} }`,
      'spool:',
      '  dir: ./data',
      'delivery:',
      '  minBackoffMs: 5',
      '  maxBackoffMs: 50',
      '',
    ].join('\n'),
  );
});
afterEach(async () => {
  await fake.close();
  tmp.cleanup();
});

/** Puts two pending events and two dead letters in the spool of the test config. */
async function seed() {
  const config = loadConfig({ file });
  const spool = new SqliteSpool({
    dir: config.spool.dir,
    assigner: new PoolKeyAssigner(new KeyRing(config.routes)),
  });
  await spool.commit(entry([alarmEvent('trigger', 'a'), alarmEvent('trigger', 'b')]));
  await spool.commit(
    entry([alarmEvent('trigger', 'c', { summary: 'Disk full' }), alarmEvent('resolve', 'd')]),
  );
  const [, , c, d] = (await spool.pending()) as PendingEvent[];
  spool.deadLetter({ ...(c as PendingEvent), attempts: 2 }, 'rejected', "400: 'payload.summary' is weird");
  spool.deadLetter(d as PendingEvent, 'bad_key', '400: Invalid routing key');
  spool.closeNow();
  return { c: c as PendingEvent, d: d as PendingEvent };
}

describe('pd-relay spool', () => {
  it('stats: pending per route and key alias, dead letters by reason; never a key', async () => {
    await seed();
    const io = captureIo();
    expect(await run(['spool', 'stats', '--config', file], io)).toBe(0);
    const text = io.text();
    expect(text).toMatch(/^Spool: .*spool\.db \(schema 3\)$/m);
    expect(text).toMatch(/^Pending: 2 events, oldest \d+s$/m);
    expect(text).toMatch(/ROUTE\s+KEY\s+PENDING\s+OLDEST\s+HEAD ATTEMPTS\s+NEXT ATTEMPT/);
    expect(text).toMatch(/default\s+(primary|secondary)\s+\d\s+\d+s\s+0\s+now/);
    expect(text).toContain('Dead letters: 2 (bad_key 1, rejected 1)');
    expect(text).not.toContain(K1);
    expect(text).not.toContain(K2);

    const json = captureIo();
    expect(await run(['spool', 'stats', '--config', file, '--json'], json)).toBe(0);
    expect(JSON.parse(json.stdout.join('\n'))).toMatchObject({
      schema: 3,
      pending: { total: 2 },
      deadLetters: { total: 2, byReason: { rejected: 1, bad_key: 1 } },
      openAlerts: 3,
    });
  });

  it('dead-letters: each with its reason and PagerDuty’s words, as text or JSON', async () => {
    const { c, d } = await seed();
    const io = captureIo();
    expect(await run(['spool', 'dead-letters', '--config', file], io)).toBe(0);
    expect(io.stdout[0]).toMatch(
      new RegExp(
        `^#${c.id}  \\S+Z  rejected  default/(primary|secondary)  trigger  dedup_key=c  attempts=2$`,
      ),
    );
    expect(io.stdout[1]).toBe("    400: 'payload.summary' is weird");
    expect(io.stdout[2]).toBe('    summary: Disk full');
    expect(io.stdout.at(-1)).toMatch(/^2 dead letters; retry with/);

    const json = captureIo();
    expect(await run(['spool', 'dead-letters', '--config', file, '--json', '--limit', '1'], json)).toBe(0);
    const parsed = JSON.parse(json.stdout.join('\n')) as { deadLetters: Array<Record<string, unknown>> };
    expect(parsed.deadLetters).toHaveLength(1);
    expect(parsed.deadLetters[0]).toMatchObject({
      id: c.id,
      reason: 'rejected',
      action: 'trigger',
      attempts: 2,
    });
    expect(JSON.stringify(parsed)).not.toContain(K1);
    void d;
  });

  it('retry-dead-letters: queues the chosen ones again and says which ids do not exist', async () => {
    const { c, d } = await seed();
    const io = captureIo();
    expect(
      await run(['spool', 'retry-dead-letters', '--config', file, '--id', String(c.id), '--id', '999'], io),
    ).toBe(1);
    expect(io.stdout).toEqual([expect.stringMatching(/^Queued 1 dead letter again/)]);
    expect(io.stderr).toEqual(['No dead letter with id 999.']);
    const all = captureIo();
    expect(await run(['spool', 'retry-dead-letters', '--config', file], all)).toBe(0);
    expect(all.stdout[0]).toMatch(/^Queued 1 dead letter again/);
    const none = captureIo();
    expect(await run(['spool', 'retry-dead-letters', '--config', file], none)).toBe(0);
    expect(none.stdout).toEqual(['No dead letters to retry.']);
    void d;
  });

  it('discard-dead-letters: deletes the chosen ones, or all with --all, and never by default', async () => {
    const { c, d } = await seed();
    const io = captureIo();
    expect(
      await run(['spool', 'discard-dead-letters', '--config', file, '--id', String(c.id), '--id', '999'], io),
    ).toBe(1);
    expect(io.stdout).toEqual(['Discarded 1 dead letter for good.']);
    expect(io.stderr).toEqual(['No dead letter with id 999.']);
    const left = captureIo();
    expect(await run(['spool', 'dead-letters', '--config', file, '--json'], left)).toBe(0);
    const letters = (JSON.parse(left.stdout.join('\n')) as { deadLetters: Array<{ id: number }> })
      .deadLetters;
    expect(letters.map((l) => l.id)).toEqual([d.id]);

    const bare = captureIo();
    expect(await run(['spool', 'discard-dead-letters', '--config', file], bare)).toBe(2);
    expect(bare.stderr.join('\n')).toMatch(/Expected --id ID \(repeatable\) or --all/);

    const all = captureIo();
    expect(await run(['spool', 'discard-dead-letters', '--config', file, '--all'], all)).toBe(0);
    expect(all.stdout).toEqual(['Discarded 1 dead letter for good.']);
    const none = captureIo();
    expect(await run(['spool', 'discard-dead-letters', '--config', file, '--all'], none)).toBe(0);
    expect(none.stdout).toEqual(['No dead letters to discard.']);
    const stats = captureIo();
    expect(await run(['spool', 'stats', '--config', file], stats)).toBe(0);
    expect(stats.text()).toContain('Dead letters: 0');
    expect(stats.text()).toContain('Pending: 2 events');
  });

  it('retry-dead-letters while the relay runs: the relay picks them up and delivers them', async () => {
    const config = loadConfig({ file });
    const delivery: Delivery = await createDelivery(config, {
      logger: captureLogger().logger,
      registry: new Registry(),
      pollIntervalMs: 20,
    });
    delivery.start();
    try {
      fake.rejectWhen(() => ['Event object is invalid because of reasons']);
      await delivery.sink.commit(entry([alarmEvent('trigger', 'fixme')]));
      await fake.waitFor((f) => f.count(400) === 1, 5000, 'the refusal');
      const listed = captureIo();
      await expect
        .poll(async () => {
          listed.stdout.length = 0;
          await run(['spool', 'dead-letters', '--config', file], listed);
          return listed.stdout[1];
        })
        .toBe('    400: Event object is invalid because of reasons');

      fake.rejectWhen(null);
      const io = captureIo();
      expect(await run(['spool', 'retry-dead-letters', '--config', file], io)).toBe(0);
      await fake.waitFor((f) => f.accepted.length === 1, 5000, 'the retried event');
      expect(fake.accepted[0]?.dedupKey).toBe('fixme');
    } finally {
      await delivery.stop(0);
    }
  });

  it.each([
    [['spool'], /Expected a subcommand/],
    [
      ['spool', 'purge'],
      /Expected stats, dead-letters, retry-dead-letters or discard-dead-letters, got "purge"/,
    ],
    [['spool', 'stats', '--id', '3'], /--id goes with retry-dead-letters and discard-dead-letters/],
    [['spool', 'retry-dead-letters', '--all'], /--all goes with discard-dead-letters/],
    [['spool', 'discard-dead-letters', '--all', '--id', '3'], /Expected --id ID \(repeatable\) or --all/],
    [['spool', 'retry-dead-letters', '--id', 'x'], /Expected --id to be a positive integer, got "x"/],
    [['spool', 'dead-letters', '--limit', '0'], /Expected --limit to be a positive integer, got "0"/],
  ])('answers %j with usage and exit 2', async (argv, message) => {
    const io = captureIo();
    expect(await run(argv, io)).toBe(2);
    expect(io.stderr.join('\n')).toMatch(message);
  });

  it('says so when there is no spool yet', async () => {
    const io = captureIo();
    expect(await run(['spool', 'stats', '--config', file], io)).toBe(1);
    expect(io.stderr.join('\n')).toMatch(
      /^No spool at .*spool\.db: the relay has not run with this spool\.dir yet\.$/,
    );
  });

  it.each([
    [5, '5s'],
    [75, '1m 15s'],
    [3 * 3600 + 120, '3h 2m'],
    [2 * 86_400 + 3600, '2d 1h'],
  ])('formats %i seconds as %s', (s, text) => {
    expect(formatDuration(s)).toBe(text);
  });
});
