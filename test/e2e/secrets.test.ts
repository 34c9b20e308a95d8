import { describe, expect, it } from 'vitest';
import { randomSecret, SecretWatch } from './helpers/secrets.js';
import { logFormatProblems } from './helpers/world.js';

/** The no-secret grep every e2e scenario ends with must be able to fail. */
describe('e2e: the no-secret grep', () => {
  it('finds a whole secret, a slice of one, and names only the label and the place', () => {
    const key = randomSecret(32);
    const watch = new SecretWatch();
    watch.add('the routing key of pd-1', key);
    watch.record('a clean body', '{"result":"accepted"}');
    expect(watch.leaks()).toEqual([]);

    watch.record('a log line', `{"msg":"Sending.","key":"${key}"}`);
    watch.record('/metrics', `pdrelay_x{key="${key.slice(5, 19)}…"} 1`);
    const leaks = watch.leaks([
      { where: 'the output of relay process #1', text: `masked ${key.slice(-12)}` },
    ]);
    expect(leaks).toEqual([
      'the routing key of pd-1 in /metrics',
      'the routing key of pd-1 in a log line',
      'the routing key of pd-1 in the output of relay process #1',
    ]);
    expect(leaks.join('\n')).not.toContain(key.slice(0, 12));
  });

  it('makes random secrets of 32 letters and digits that do not repeat', () => {
    const a = randomSecret();
    expect(a).toMatch(/^[A-Za-z0-9]{32}$/);
    expect(randomSecret()).not.toBe(a);
  });

  it('flags output lines that are not JSON log lines with a capitalised sentence', () => {
    const output = [
      '{"level":"info","msg":"Relay started."}',
      'plain text',
      '{"level":"info","msg":"lowercase start."}',
      '{"msg":"No level."}',
      '',
    ].join('\n');
    expect(logFormatProblems(output, 'relay')).toEqual([
      'line 2 of relay is not JSON',
      'line 3 of relay is not a capitalised sentence',
      'line 4 of relay has no level',
    ]);
  });
});
