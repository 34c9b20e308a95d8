import {
  mkdirSync,
  mkdtempSync,
  realpathSync,
  renameSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import { decodeNotification } from '../../src/decode/decode.js';
import { wrapMessage } from '../../src/decode/sample.js';
import { formatProblem, UserError } from '../../src/errors.js';
import { createLogger } from '../../src/log/logger.js';
import { createReloadInstruments } from '../../src/metrics/rules.js';
import { createRuleEngine } from '../../src/rules/engine.js';
import { loadRuleSet, type RuleSet } from '../../src/rules/loader.js';
import { loadConfigAndRules, RuleSetHolder, watchAndReload } from '../../src/rules/reload.js';
import { type RulePathWatcher, watchRulePaths } from '../../src/rules/watch.js';

const base = mkdtempSync(join(tmpdir(), 'pd-relay-reload-'));
afterAll(() => rmSync(base, { recursive: true, force: true }));
let n = 0;
const freshDir = () => {
  const d = join(base, `case-${++n}`);
  mkdirSync(d);
  return d;
};

const rule = (name: string, summary: string) =>
  `- name: ${name}\n  match: { kind: [text] }\n  payload: { summary: '${summary}' }\n`;

const textDoc = (text: string) => decodeNotification(wrapMessage(text), 'default');

function holderFor(dir: string) {
  const registry = new Registry();
  const logs: Array<Record<string, unknown>> = [];
  const logger = createLogger({ destination: { write: (s: string) => logs.push(JSON.parse(s)) } });
  let now = 1_700_000_000_000;
  const instruments = createReloadInstruments(registry, logger, () => now);
  const swaps: string[][] = [];
  const holder = RuleSetHolder.load({
    load: () => loadRuleSet({ builtinDir: null, paths: [dir] }),
    instruments,
    onSwap: (next) => {
      swaps.push(next.ruleSet.rules.map((r) => r.name));
      return undefined;
    },
  });
  const gauge = async (name: string) => (await registry.getSingleMetric(name)?.get())?.values[0]?.value;
  return { holder, logs, gauge, swaps, tick: (ms: number) => (now += ms) };
}

describe('RuleSetHolder', () => {
  it('swaps in a good rule set and keeps the previous one when a reload has problems', async () => {
    const dir = freshDir();
    writeFileSync(join(dir, 'a.yaml'), rule('one', 'first version'));
    const { holder, logs, gauge, swaps, tick } = holderFor(dir);
    const summary = () => createEngineSummaryFromHolder(holder);
    expect(summary()).toBe('first version');
    expect(await gauge('pdrelay_config_last_reload_successful')).toBe(1);
    expect(await gauge('pdrelay_config_last_reload_success_timestamp_seconds')).toBe(1_700_000_000);

    tick(60_000);
    writeFileSync(join(dir, 'a.yaml'), `${rule('one', 'broken')}  routee: x\n`);
    writeFileSync(join(dir, 'b.yaml'), '- name: two\n  payload: { summary: "{{ x | nope }}" }\n');
    const failed = holder.reload('signal');
    expect(failed.ok).toBe(false);
    expect(summary()).toBe('first version');
    expect(await gauge('pdrelay_config_last_reload_successful')).toBe(0);
    expect(await gauge('pdrelay_config_last_reload_success_timestamp_seconds')).toBe(1_700_000_000);
    const line = logs.find((l) => l.msg === 'Rules reload failed; the previous rules stay active.');
    expect(line).toMatchObject({ level: 'error', trigger: 'signal', problemCount: 2 });
    expect(line?.problems).toEqual([
      expect.stringMatching(/a\.yaml:4:3 \[0\]\.routee: Unknown key "routee" \(did you mean "route"\?\)$/),
      expect.stringMatching(/b\.yaml:2:24 \[0\]\.payload\.summary: Liquid: undefined filter: nope$/),
    ]);

    tick(60_000);
    writeFileSync(join(dir, 'a.yaml'), rule('one', 'second version'));
    rmSync(join(dir, 'b.yaml'));
    expect(holder.reload('signal').ok).toBe(true);
    expect(summary()).toBe('second version');
    expect(await gauge('pdrelay_config_last_reload_successful')).toBe(1);
    expect(await gauge('pdrelay_config_last_reload_success_timestamp_seconds')).toBe(1_700_000_120);
    expect(swaps).toEqual([['one']]);
  });

  it('refuses to start with problems', () => {
    const dir = freshDir();
    writeFileSync(join(dir, 'a.yaml'), '- name: a\n  actoin: drop\n');
    expect(() => holderFor(dir)).toThrow(UserError);
  });

  // One rule with an unknown key and a broken template, a second file with a bad pattern: every
  // problem is reported, at start and on reload, not only the schema's.
  const everyProblem = {
    'a.yaml':
      "- name: one\n  match: { kind: [text] }\n  actoin: drop\n  payload: { summary: '{{ x | nope }}' }\n",
    'b.yaml': '- name: two\n  match: { kind: [{ prefx: t }] }\n',
  };
  const everyProblemText = (dir: string) => [
    `${dir}/a.yaml:3:3 [0].actoin: Unknown key "actoin" (did you mean "action"?)`,
    `${dir}/a.yaml:4:24 [0].payload.summary: Liquid: undefined filter: nope`,
    `${dir}/b.yaml:2:21 [0].match.kind[0].prefx: Unknown operator "prefx" (did you mean "prefix"?)`,
  ];

  it('refuses to start with every problem of every rule', () => {
    const dir = freshDir();
    for (const [name, text] of Object.entries(everyProblem)) writeFileSync(join(dir, name), text);
    let thrown: unknown;
    try {
      holderFor(dir);
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(UserError);
    expect((thrown as UserError).message).toBe('The rules have 3 problems; fix them and retry:');
    expect((thrown as UserError).problems.map(formatProblem)).toEqual(everyProblemText(dir));
  });

  it('keeps the running rules on a reload and logs every problem of every rule', () => {
    const dir = freshDir();
    writeFileSync(join(dir, 'a.yaml'), rule('one', 'running'));
    const { holder, logs } = holderFor(dir);
    for (const [name, text] of Object.entries(everyProblem)) writeFileSync(join(dir, name), text);
    const failed = holder.reload('watch');
    expect(failed.ok ? [] : failed.problems.map(formatProblem)).toEqual(everyProblemText(dir));
    expect(createEngineSummaryFromHolder(holder)).toBe('running');
    const line = logs.find((l) => l.msg === 'Rules reload failed; the previous rules stay active.');
    expect(line).toMatchObject({ trigger: 'watch', problemCount: 3 });
    expect(line?.problems).toEqual(everyProblemText(dir));
  });

  it('a loader that throws is a failed reload, not a crash', () => {
    const dir = freshDir();
    writeFileSync(join(dir, 'a.yaml'), rule('one', 'x'));
    let explode = false;
    const holder = RuleSetHolder.load({
      load: () => {
        if (explode) throw new Error('disk on fire');
        return loadRuleSet({ builtinDir: null, paths: [dir] });
      },
    });
    explode = true;
    const result = holder.reload();
    expect(result.ok ? [] : result.problems.map((p) => p.message)).toEqual([
      'Loading rules failed: disk on fire',
    ]);
    expect(holder.ruleSet.rules.map((r) => r.name)).toEqual(['one']);
  });
});

describe('loadConfigAndRules', () => {
  it('reloads the config and the rules that depend on it together, or keeps both', () => {
    const dir = freshDir();
    mkdirSync(join(dir, 'rules'));
    const config = join(dir, 'config.yaml');
    writeFileSync(config, 'routes: { default: { keys: [] } }\nrules: { paths: [rules] }\n');
    writeFileSync(join(dir, 'rules', 'a.yaml'), rule('one', 'x'));
    const holder = RuleSetHolder.load({ load: () => loadConfigAndRules({ file: config, env: {} }) });
    expect(Object.keys(holder.loaded.config?.routes ?? {})).toEqual(['default']);

    // A rule for a route the config does not have yet: the reload fails and keeps both.
    writeFileSync(join(dir, 'rules', 'a.yaml'), `${rule('one', 'x')}  route: team-b\n`);
    const failed = holder.reload('signal');
    expect(failed.ok ? [] : failed.problems.map((p) => p.message)).toEqual([
      'Unknown route "team-b"; configured routes: default',
    ]);
    // The config gains the route: config and rules now load and swap as one.
    writeFileSync(
      config,
      'routes: { default: { keys: [] }, team-b: { keys: [] } }\nrules: { paths: [rules] }\n',
    );
    expect(holder.reload('signal').ok).toBe(true);
    expect(Object.keys(holder.loaded.config?.routes ?? {})).toEqual(['default', 'team-b']);
    expect(holder.evaluate(textDoc('x')).events[0]?.route).toBe('team-b');

    // A broken config is a failed reload with its located problems; nothing changes.
    writeFileSync(config, 'routes: { default: { keys: [] } }\nrulez: {}\n');
    const broken = holder.reload('signal');
    expect(broken.ok ? [] : broken.problems.map(formatProblem)).toEqual([
      `${config}:2:1 rulez: Unknown key "rulez" (did you mean "rules"?)`,
    ]);
    expect(Object.keys(holder.loaded.config?.routes ?? {})).toEqual(['default', 'team-b']);
  });
});

describe('watchRulePaths', () => {
  const open: RulePathWatcher[] = [];
  afterEach(() => {
    for (const w of open.splice(0)) w.close();
  });
  const watchCounting = (paths: string[]) => {
    const state = { changes: 0 };
    open.push(watchRulePaths(paths, { debounceMs: 20, onChange: () => state.changes++ }));
    return { state, watcher: open.at(-1) as RulePathWatcher };
  };
  const changed = async (state: { changes: number }, before: number) =>
    vi.waitFor(() => expect(state.changes).toBeGreaterThan(before), { timeout: 5_000, interval: 10 });

  it('sees a file written in a watched directory', async () => {
    const dir = freshDir();
    writeFileSync(join(dir, 'a.yaml'), rule('a', 'x'));
    const { state } = watchCounting([dir]);
    writeFileSync(join(dir, 'b.yaml'), rule('b', 'y'));
    await changed(state, 0);
  });

  it('sees a single rule file replaced by rename (as editors and config tools write)', async () => {
    const dir = freshDir();
    const file = join(dir, 'rules.yaml');
    writeFileSync(file, rule('a', 'x'));
    const { state } = watchCounting([file]);
    writeFileSync(join(dir, '.rules.yaml.tmp'), rule('a', 'y'));
    renameSync(join(dir, '.rules.yaml.tmp'), file);
    await changed(state, 0);
  });

  it('sees a path that did not exist yet appear', async () => {
    const dir = freshDir();
    const rules = join(dir, 'rules.d');
    const { state, watcher } = watchCounting([rules]);
    mkdirSync(rules);
    await changed(state, 0);
    // Once it exists, changes inside it are seen too.
    await vi.waitFor(() => expect(watcher.watched()).toContain(realpathSync(rules)), { timeout: 5_000 });
    const before = state.changes;
    writeFileSync(join(rules, 'a.yaml'), rule('a', 'x'));
    await changed(state, before);
  });

  /**
   * A ConfigMap volume as the kubelet writes it: the files are symlinks into `..data`, itself a
   * symlink to a timestamped directory; an update writes a new directory, points `..data_tmp` at
   * it, renames `..data_tmp` over `..data`, and deletes the old directory.
   */
  function configMap(mount: string, files: Record<string, string>, generation: number) {
    const data = `..2024_01_01_00_00_0${generation}.000000000`;
    for (const [name, text] of Object.entries(files)) {
      mkdirSync(join(mount, data, name, '..'), { recursive: true });
      writeFileSync(join(mount, data, name), text);
    }
    return data;
  }
  function swap(mount: string, files: Record<string, string>, generation: number, previous: string) {
    const data = configMap(mount, files, generation);
    symlinkSync(data, join(mount, '..data_tmp'));
    renameSync(join(mount, '..data_tmp'), join(mount, '..data'));
    rmSync(join(mount, previous), { recursive: true, force: true });
    return data;
  }

  it('survives ConfigMap symlink swaps of a mounted directory', async () => {
    const mount = freshDir();
    let data = configMap(mount, { 'alarms.yaml': rule('alarms', 'v1') }, 1);
    symlinkSync(data, join(mount, '..data'));
    symlinkSync('..data/alarms.yaml', join(mount, 'alarms.yaml'));
    const { state } = watchCounting([mount]);
    const summaryNow = () => {
      const result = loadRuleSet({ builtinDir: null, paths: [mount] });
      if (!result.ok) throw new Error('unexpected problems');
      return createEngineSummary(result.ruleSet);
    };
    expect(summaryNow()).toBe('v1');

    for (const [generation, text] of [
      [2, 'v2'],
      [3, 'v3'],
    ] as const) {
      const before = state.changes;
      data = swap(mount, { 'alarms.yaml': rule('alarms', text) }, generation, data);
      await changed(state, before);
      expect(summaryNow()).toBe(text);
    }
  });

  it('re-targets a rules path that is itself a symlink into ..data', async () => {
    const mount = freshDir();
    let data = configMap(mount, { 'rules/a.yaml': rule('a', 'v1') }, 1);
    symlinkSync(data, join(mount, '..data'));
    symlinkSync('..data/rules', join(mount, 'rules'));
    const path = join(mount, 'rules');
    const { state, watcher } = watchCounting([path]);
    expect(watcher.watched()).toContain(realpathSync(path));

    for (const generation of [2, 3]) {
      const before = state.changes;
      data = swap(mount, { 'rules/a.yaml': rule('a', `v${generation}`) }, generation, data);
      await changed(state, before);
      expect(watcher.watched()).toContain(realpathSync(path));
    }
    // Still watching the live generation: an edit inside it is seen.
    const before = state.changes;
    writeFileSync(join(realpathSync(path), 'b.yaml'), rule('b', 'x'));
    await changed(state, before);
  });

  it('close() releases every watch', () => {
    const dir = freshDir();
    const { watcher } = watchCounting([dir]);
    expect(watcher.watched().length).toBeGreaterThan(0);
    watcher.close();
    expect(watcher.watched()).toEqual([]);
  });
});

describe('watchAndReload', () => {
  it('reloads the holder when a rule file changes', async () => {
    const dir = freshDir();
    writeFileSync(join(dir, 'a.yaml'), rule('one', 'before'));
    const { holder } = holderFor(dir);
    const watcher = watchAndReload(holder, [dir], { debounceMs: 20 });
    try {
      writeFileSync(join(dir, 'a.yaml'), rule('one', 'after'));
      await vi.waitFor(() => expect(createEngineSummaryFromHolder(holder)).toBe('after'), { timeout: 5_000 });
    } finally {
      watcher.close();
    }
  });
});

function createEngineSummary(ruleSet: RuleSet): string {
  const body = createRuleEngine(ruleSet).evaluate(textDoc('x')).events[0]?.body as
    | { payload: { summary: string } }
    | undefined;
  return body?.payload.summary ?? '';
}

function createEngineSummaryFromHolder(holder: RuleSetHolder): string {
  const body = holder.evaluate(textDoc('x')).events[0]?.body as { payload: { summary: string } } | undefined;
  return body?.payload.summary ?? '';
}
