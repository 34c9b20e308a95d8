import { describe, expect, it } from 'vitest';
import { run } from '../../src/cli/main.js';
import { captureIo } from '../helpers/io.js';

describe('pd-relay CLI', () => {
  it('prints the package version', async () => {
    const io = captureIo();
    expect(await run(['--version'], io)).toBe(0);
    expect(io.stdout).toEqual([expect.stringMatching(/^\d+\.\d+\.\d+/)]);
  });

  it.each([
    [['frobnicate'], /Unknown command "frobnicate"/],
    [['serve', '--port', '1'], /Unknown option '--port'/],
    [['serve', 'extra'], /Unexpected argument 'extra'/],
    [[], /Usage: pd-relay <command>/],
  ])('answers %j with usage and exit 2', async (argv, message) => {
    const io = captureIo();
    expect(await run(argv, io)).toBe(2);
    expect(io.stderr.join('\n')).toMatch(message);
    expect(io.stderr.join('\n')).toMatch(/Usage: pd-relay/);
  });

  it('serve with a broken config file exits 1 with located problems', async () => {
    const io = captureIo();
    expect(await run(['serve', '--config', 'test/fixtures/config/unknown-key.yaml'], io)).toBe(1);
    expect(io.stderr.join('\n')).toContain(
      'test/fixtures/config/unknown-key.yaml:3:3 server.prot: Unknown key "prot" (did you mean "port"?)',
    );
  });
});
