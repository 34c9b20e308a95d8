import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { LogLine, RelayProcess } from '../helpers/relay-process.js';
import { Load } from './helpers/load.js';
import { type E2eWorld, e2eRule, metricValue, parseSummary, useE2eWorld } from './helpers/world.js';

/** Replaces `path` the way editors and ConfigMap updates do: a new file renamed over the old one. */
function replaceFile(path: string, text: string): void {
  const tmp = join(path, '..', `.${Date.now()}.tmp`);
  writeFileSync(tmp, text);
  renameSync(tmp, path);
}

/** The next log line passing `test` after those already seen. */
function nextLog(relay: RelayProcess, test: (l: LogLine) => boolean, timeoutMs = 10_000): Promise<LogLine> {
  const seen = relay.logs.length;
  return relay.waitForLog((l) => relay.logs.indexOf(l) >= seen && test(l), timeoutMs);
}

/**
 * Rules reloaded while SNS keeps posting: by a change in the rules directory (watch) and by
 * SIGHUP (after a config change that points at another rules directory), then a broken rule file.
 * No request may fail, and every message posted after the relay said "Rules reloaded." must be
 * rendered by the new rules (each rule version writes its name into the summary).
 */
describe('e2e: rules reloaded under load', () => {
  let world: E2eWorld;
  useE2eWorld((w) => (world = w), { windowMs: 1000, limit: 1000 });

  it('applies a watched file change and a SIGHUP without failing a request; a broken file keeps the running rules', async () => {
    const dir = world.dir();
    mkdirSync(join(dir, 'rules-b'));
    writeFileSync(join(dir, 'rules-b', 'e2e.yaml'), e2eRule('v3', { severity: 'critical' }));
    const relay = await world.startRelay(dir, {
      routes: { default: { aliases: ['reload-1', 'reload-2'], ratePerMinute: 1000 } },
      rules: { 'e2e.yaml': e2eRule('v1') },
      watch: true,
      reloadDebounceMs: 100,
    });
    const sns = world.client(() => relay);
    const load = new Load(sns, (n) => world.notification({ e2e: 1, alert: `r${n}`, seq: n }), {
      concurrency: 8,
    }).start();
    const progress = async (more: number) => {
      const target = load.results.length + more;
      await load.waitForResults(target);
    };
    /** When the test saw each version take over (performance.now()). */
    const tookOver: Array<{ v: string; at: number }> = [{ v: 'v1', at: 0 }];

    await progress(60);
    // 1. The rule file changes in the watched directory.
    const watched = nextLog(relay, (l) => l.msg === 'Rules reloaded.' && l.trigger === 'watch');
    replaceFile(join(dir, 'rules', 'e2e.yaml'), e2eRule('v2', { severity: 'error' }));
    await watched;
    tookOver.push({ v: 'v2', at: performance.now() });

    await progress(60);
    // 2. The config now names another rules directory; SIGHUP re-reads config and rules together.
    const configFile = join(dir, 'config.yaml');
    writeFileSync(
      configFile,
      readFileSync(configFile, 'utf8').replace('paths: ["rules"]', 'paths: ["rules-b"]'),
    );
    const signalled = nextLog(relay, (l) => l.msg === 'Rules reloaded.' && l.trigger === 'signal');
    relay.signal('SIGHUP');
    await signalled;
    tookOver.push({ v: 'v3', at: performance.now() });

    await progress(60);
    // 3. A broken rule file in the directory now watched: the reload fails, v3 keeps running.
    const failed = nextLog(relay, (l) => l.trigger === 'watch' && l.level === 'error');
    replaceFile(join(dir, 'rules-b', 'e2e.yaml'), `${e2eRule('v4')}  nonsense: [\n`);
    await failed;
    await progress(60);
    await load.stop();

    // No request failed.
    expect(load.tally()).toEqual({ 200: load.results.length });
    // Every message was rendered by the rules in force when it was posted, or newer ones.
    await world.pd.waitFor((f) => f.accepted.length === load.results.length, 15_000, 'every event');
    const versions = ['v1', 'v2', 'v3'];
    const startedAt = new Map(load.results.map((r) => [`e2e/r${r.n}`, r.startedAt]));
    const seen = new Map<string, number>();
    for (const e of world.pd.accepted) {
      const { v } = parseSummary(e.body);
      seen.set(v, (seen.get(v) ?? 0) + 1);
      const posted = startedAt.get(e.dedupKey as string) as number;
      const required = tookOver.filter((t) => t.at < posted).at(-1)?.v as string;
      expect(
        versions.indexOf(v),
        `${e.dedupKey} posted under ${required}, rendered by ${v}`,
      ).toBeGreaterThanOrEqual(versions.indexOf(required));
    }
    expect([...seen.keys()].sort()).toEqual(versions);
    // The severities of each version came with it (the whole rule set swapped, not a mix).
    for (const e of world.pd.accepted) {
      const { v } = parseSummary(e.body);
      expect((e.body.payload as { severity: string }).severity).toBe(
        { v1: 'warning', v2: 'error', v3: 'critical' }[v],
      );
    }

    const metrics = await world.metrics(relay);
    expect(
      metricValue(metrics, 'pdrelay_config_reloads_total', { trigger: 'watch', result: 'success' }),
    ).toBeGreaterThanOrEqual(1);
    expect(
      metricValue(metrics, 'pdrelay_config_reloads_total', { trigger: 'signal', result: 'success' }),
    ).toBe(1);
    expect(
      metricValue(metrics, 'pdrelay_config_reloads_total', { trigger: 'watch', result: 'failure' }),
    ).toBeGreaterThanOrEqual(1);
    expect(metricValue(metrics, 'pdrelay_config_last_reload_successful')).toBe(0);
  });
});
