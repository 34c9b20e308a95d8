import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createLogger, logDestination, redactSecrets } from '../../src/log/logger.js';
import { tempDir, writeIn } from '../helpers/temp.js';

const ROOT = resolve(import.meta.dirname, '../..');

/** The relay's own log destination (buffered), into a file. */
describe('log destination', () => {
  const cleanups: Array<() => void> = [];
  afterEach(() => {
    for (const c of cleanups.splice(0)) c();
  });
  const fileLogger = () => {
    const tmp = tempDir();
    cleanups.push(tmp.cleanup);
    const file = join(tmp.dir, 'log.jsonl');
    const logger = createLogger({ destination: logDestination(file) });
    const lines = () =>
      readFileSync(file, 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as Record<string, unknown>);
    return { logger, lines };
  };

  it("writes a quiet relay's line at once", async () => {
    const { logger, lines } = fileLogger();
    logger.info({ reqId: 'r1' }, 'SNS notification accepted.');
    await expect.poll(() => lines().map((l) => l.reqId), { timeout: 2000, interval: 10 }).toEqual(['r1']);
  });

  it('writes every line of a burst, in order', async () => {
    const { logger, lines } = fileLogger();
    for (let i = 0; i < 2000; i++) logger.info({ n: i }, 'SNS notification accepted.');
    await expect.poll(() => lines().length, { timeout: 2000, interval: 10 }).toBe(2000);
    expect(lines().map((l) => l.n)).toEqual(Array.from({ length: 2000 }, (_, i) => i));
  });

  /** Runs `lines` (after an import of createLogger) as a script of its own; its stdout is a pipe. */
  const runScript = (lines: string[]) => {
    const tmp = tempDir();
    cleanups.push(tmp.cleanup);
    const script = writeIn(
      tmp.dir,
      'script.mts',
      [`import { createLogger } from ${JSON.stringify(join(ROOT, 'src/log/logger.ts'))};`, ...lines].join(
        '\n',
      ),
    );
    return spawnSync(process.execPath, ['--import', 'tsx', script], {
      cwd: ROOT,
      encoding: 'utf8',
      maxBuffer: 64 * 1024 * 1024,
    });
  };

  it('writes every line through a pipe that fills up, in order, before the process ends by itself', () => {
    const run = runScript([
      'const logger = createLogger();',
      "const pad = 'x'.repeat(400);",
      'let n = 0;',
      // Bursts over several turns (async writes, a pipe buffer of 64 KB filled many times), then
      // a last burst in the final turn. (The relay ends by itself too: it never calls
      // process.exit(), which would not wait for a write blocked on a full pipe.)
      'for (let turn = 0; turn < 20; turn++) {',
      "  for (let i = 0; i < 500; i++) logger.info({ n: n++, pad }, 'Line.');",
      '  await new Promise((r) => setImmediate(r));',
      '}',
      "for (let i = 0; i < 500; i++) logger.info({ n: n++, pad }, 'Line.');",
    ]);
    expect(run.status).toBe(0);
    const ns = run.stdout
      .trim()
      .split('\n')
      .map((l) => (JSON.parse(l) as { n: number }).n);
    expect(ns).toEqual(Array.from({ length: 10_500 }, (_, i) => i));
  });

  it('writes the lines still buffered when the process exits', () => {
    const run = runScript(["createLogger().info({ n: 1 }, 'Relay stopped.');", 'process.exit(0);']);
    expect(run.status).toBe(0);
    expect(JSON.parse(run.stdout.trim())).toMatchObject({ n: 1, msg: 'Relay stopped.' });
  });
});

describe('secret fields in log lines', () => {
  const capture = () => {
    const chunks: string[] = [];
    const logger = createLogger({ destination: { write: (s: string) => void chunks.push(s) } });
    return { logger, lines: () => chunks.map((c) => JSON.parse(c) as Record<string, unknown>) };
  };

  it('blanks routing keys, passwords and authorization headers at any depth a log call could pass them', () => {
    const { logger, lines } = capture();
    const fields = {
      routing_key: 'R0UTING-KEY-TOP',
      alias: 'team-a',
      nested: { password: 'pw-nested', deeper: { req: { authorization: 'Basic c2VjcmV0' } } },
      list: [{ routingKey: 'R0UTING-KEY-IN-LIST' }, 'plain'],
      headers: { Authorization: 'Bearer tok' },
    };
    logger
      .child({ password: 'pw-binding' })
      .child({ stage: 'x', authorization: 'grand-secret' })
      .warn(fields, 'Something to look at.');
    const text = JSON.stringify(lines());
    for (const secret of ['R0UTING-KEY', 'pw-nested', 'c2VjcmV0', 'Bearer tok', 'pw-binding', 'grand-secret'])
      expect(text).not.toContain(secret);
    expect(lines()[0]).toMatchObject({
      routing_key: '[redacted]',
      alias: 'team-a',
      password: '[redacted]',
      nested: { password: '[redacted]', deeper: { req: { authorization: '[redacted]' } } },
      list: [{ routingKey: '[redacted]' }, 'plain'],
      headers: { Authorization: '[redacted]' },
      msg: 'Something to look at.',
    });
    // The caller's object is left as it was.
    expect(fields.nested.password).toBe('pw-nested');
    expect(fields.list[0]).toEqual({ routingKey: 'R0UTING-KEY-IN-LIST' });
  });

  it('returns the very object when there is nothing to blank, and leaves non-plain objects alone', () => {
    const plain = { reqId: 'r1', nested: { a: [1, { b: 2 }] } };
    expect(redactSecrets(plain)).toBe(plain);
    const err = Object.assign(new Error('boom'), { code: 'E1' });
    expect(redactSecrets({ err }).err).toBe(err);
    expect(redactSecrets({ password: undefined })).toEqual({ password: undefined });
  });
});
