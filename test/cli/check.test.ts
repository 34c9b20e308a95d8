import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { run } from '../../src/cli/main.js';
import { tempDir } from '../helpers/delivery.js';
import { FakePagerDuty, testRoutingKey } from '../helpers/fake-pagerduty.js';
import { captureIo } from '../helpers/io.js';

const GOOD = testRoutingKey('good');
const BAD = testRoutingKey('revoked');

let tmp: ReturnType<typeof tempDir>;
let fake: FakePagerDuty;
beforeEach(async () => {
  tmp = tempDir();
  fake = await FakePagerDuty.start();
});
afterEach(async () => {
  await fake.close();
  tmp.cleanup();
});

function configFile(keys: Array<[string, string]>, spoolDir = './data'): string {
  const file = join(tmp.dir, 'pd-relay.yaml');
  writeFileSync(
    file,
    [
      ...(keys.length ? ['sns:', '  topics: ["arn:aws:sns:*:123456789012:*"]'] : []),
      'pagerduty:',
      `  url: ${fake.url}`,
      'routes:',
      '  default:',
      `    keys: [${keys.map(([alias, key]) => `{ alias: ${alias}, key: ${key} }`).join(', ')}]`,
      'spool:',
      `  dir: ${spoolDir}`,
      '',
    ].join('\n'),
  );
  return file;
}

describe('pd-relay check', () => {
  it('fails on rules that serve would refuse, each problem located', async () => {
    const file = configFile([]);
    writeFileSync(file, `${readFileSync(file, 'utf8')}rules:\n  paths: [team.yaml]\n`);
    writeFileSync(
      join(tmp.dir, 'team.yaml'),
      '- name: team\n  match: { kind: [json] }\n  route: nowhere\n  payload: { summary: "x" }\n',
    );
    const io = captureIo();
    expect(await run(['check', '--config', file], io)).toBe(1);
    expect(io.stderr.join('\n')).toMatch(
      /^FAIL {2}rules {3}.*team\.yaml:3:10 \[0\]\.route: Unknown route "nowhere"; configured routes: default$/m,
    );
    expect(io.stderr.at(-1)).toBe('1 check failed.');
  });

  it('passes a valid config whose spool does not exist yet, without creating it', async () => {
    const io = captureIo();
    expect(await run(['check', '--config', configFile([['main', GOOD]])], io)).toBe(0);
    expect(io.stdout).toEqual([
      expect.stringMatching(/^ok {4}config {2}.*pd-relay\.yaml: 1 route, 1 key$/),
      expect.stringMatching(/^ok {4}rules {3}\d+ rules from \d+ files; (\d+)\/\1 rule tests pass$/),
      expect.stringMatching(/^ok {4}spool {3}.*spool\.db does not exist yet; serve will create it$/),
      'All checks passed.',
    ]);
    expect(fake.arrivals).toBe(0);
  });

  it('--send-test proves each key with a resolve for a random dedup key, and fails for a refused key', async () => {
    fake.invalidateKey(BAD);
    const io = captureIo();
    expect(
      await run(
        [
          'check',
          '--config',
          configFile([
            ['main', GOOD],
            ['old', BAD],
          ]),
          '--send-test',
        ],
        io,
      ),
    ).toBe(1);
    expect(io.stdout).toContainEqual(
      expect.stringMatching(/^ok {4}send-test {2}default\/main: accepted \(202, \d+ ms\)$/),
    );
    expect(io.stderr).toEqual([
      'FAIL  send-test  default/old: key refused (400: Invalid routing key)',
      '1 check failed.',
    ]);
    // What PagerDuty received pages nobody: resolves of alerts that do not exist.
    expect(fake.accepted).toHaveLength(1);
    expect(fake.accepted[0]).toMatchObject({
      action: 'resolve',
      dedupKey: expect.stringMatching(/^pd-relay-check-/),
    });
    expect(fake.droppedFollowUps()).toHaveLength(1);
    expect(io.text()).not.toContain(GOOD);
    expect(io.text()).not.toContain(BAD);
  });

  it('--send-test reports an unreachable PagerDuty per key', async () => {
    const file = configFile([['main', GOOD]]);
    await fake.close();
    const io = captureIo();
    expect(await run(['check', '--config', file, '--send-test'], io)).toBe(1);
    expect(io.stderr[0]).toMatch(
      /^FAIL {2}send-test {2}default\/main: no answer from http:\/\/127\.0\.0\.1:\d+ \(network: .*ECONNREFUSED/,
    );
    fake = await FakePagerDuty.start();
  });

  it('reports an existing spool, and skips the send test in dry-run', async () => {
    const file = configFile([]);
    const serve = captureIo();
    expect(await run(['spool', 'stats', '--config', file], serve)).toBe(1);
    // Make a spool as serve would.
    const { SqliteSpool } = await import('../../src/spool/sqlite/spool.js');
    new SqliteSpool({ dir: join(tmp.dir, 'data') }).close();
    const io = captureIo();
    expect(await run(['check', '--config', file, '--send-test'], io)).toBe(0);
    expect(io.stdout).toEqual([
      expect.stringMatching(/1 route, 0 keys \(dry-run: nothing will be sent\)$/),
      expect.stringMatching(/^ok {4}rules {6}\d+ rules from \d+ files; (\d+)\/\1 rule tests pass$/),
      expect.stringMatching(
        /^ok {4}spool {6}.*spool\.db: writable, 0 pending, 0 dead letters, 0 open alerts$/,
      ),
      'skip  send-test  dry-run: no routing keys to test',
      'All checks passed.',
    ]);
  });

  it('fails when the spool cannot be created', async () => {
    writeFileSync(join(tmp.dir, 'a-file'), '');
    const io = captureIo();
    expect(await run(['check', '--config', configFile([['main', GOOD]], './a-file/data')], io)).toBe(1);
    expect(io.stderr[0]).toMatch(/^FAIL {2}spool {3}.*a-file\/data\/spool\.db cannot be created/);
  });

  it('exits 1 with located problems for a broken config', async () => {
    const io = captureIo();
    expect(await run(['check', '--config', 'test/fixtures/config/unknown-key.yaml'], io)).toBe(1);
    expect(io.stderr.join('\n')).toContain('server.prot: Unknown key "prot"');
  });
});
