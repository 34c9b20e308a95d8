import { describe, expect, it } from 'vitest';
import { codeSpan, requireDoc, tableRows } from './markdown.js';
import { alertRules, builtinRuleNames, configKeys, RECORD_SEGMENT } from './sources.js';

/**
 * CHANGELOG.md names every user-visible key, command, metric, built-in rule and alert (STYLE.md:
 * "CHANGELOG names the user-visible key, flag or metric"): adding one without a changelog entry
 * fails here.
 */

const changelog = requireDoc('CHANGELOG.md').text;
const mentioned = (name: string) => changelog.includes(`\`${name}\``) || changelog.includes(`\`${name}{`);

describe('CHANGELOG.md', () => {
  it('names every configuration key', () => {
    const keys = configKeys().map((k) => k.replace(RECORD_SEGMENT, '<name>'));
    expect(keys.length).toBeGreaterThan(20);
    expect(keys.filter((k) => !mentioned(k))).toEqual([]);
  });

  it('names every metric of docs/metrics.md', () => {
    const metrics = tableRows(requireDoc('docs/metrics.md'))
      .map((r) => codeSpan(r.cells[0] ?? ''))
      .filter((n): n is string => !!n?.startsWith('pdrelay_'));
    expect(metrics.length).toBeGreaterThan(25);
    expect([...new Set(metrics)].filter((m) => !mentioned(m))).toEqual([]);
  });

  it('names every built-in rule and every alert', () => {
    expect(builtinRuleNames().filter((r) => !mentioned(r))).toEqual([]);
    expect(
      alertRules()
        .map((a) => a.alert)
        .filter((a) => !mentioned(a)),
    ).toEqual([]);
  });

  it('names every command', async () => {
    const { run } = await import('../../src/cli/main.js');
    const out: string[] = [];
    await run(['--help'], { out: (l) => out.push(l), err: (l) => out.push(l) });
    const commands =
      out
        .join('\n')
        .match(/^ {2}([a-z]+) {2}/gm)
        ?.map((c) => c.trim()) ?? [];
    expect(commands.length).toBeGreaterThan(3);
    expect(commands.filter((c) => !changelog.includes(`pd-relay ${c}`))).toEqual([]);
    for (const sub of ['lint', 'test']) expect(changelog).toContain(`pd-relay rules ${sub}`);
    const spool: string[] = [];
    await run(['spool', '--help'], { out: (l) => spool.push(l), err: (l) => spool.push(l) });
    const subs =
      spool
        .join('\n')
        .split('Subcommands:')[1]
        ?.split('\n\n')[0]
        ?.match(/^ {2}([a-z-]+)/gm) ?? [];
    expect(subs.length).toBeGreaterThan(3);
    for (const sub of subs) expect(changelog).toContain(`pd-relay spool ${sub.trim()}`);
  });
});
