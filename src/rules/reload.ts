import { type Config, type LoadOptions, loadConfig } from '../config/load.js';
import type { InputDocument } from '../decode/types.js';
import { type Problem, UserError } from '../errors.js';
import type { KeyChanges, ReloadInstruments, ReloadTrigger } from '../metrics/rules.js';
import { createRuleEngine, type EngineOptions } from './engine.js';
import { type LoadRulesOptions, loadRuleSet, type RuleSet, type RuleSetResult } from './loader.js';
import type { Evaluation, RuleEngine } from './types.js';
import { type RulePathWatcher, watchRulePaths } from './watch.js';

/**
 * What one (re)load produced: a rule set and, when the loader also read the config file (see
 * loadConfigAndRules), that config, swapped together with the rules.
 */
export interface Loaded {
  ruleSet: RuleSet;
  config?: Config;
}
export type LoadResult = ({ ok: true } & Loaded) | { ok: false; problems: Problem[] };

export interface RuleSetHolderOptions {
  /** Loads the next rule set (and, optionally, the config that goes with it). */
  load: () => LoadResult;
  engine?: EngineOptions;
  instruments?: ReloadInstruments;
  /**
   * Runs right after a successful swap (e.g. to point the watcher at new `rules.paths`, apply new
   * key pools); what it returns about the key pools goes into the reload's log line and metric.
   */
  onSwap?: (next: Loaded, previous: Loaded) => KeyChanges | undefined;
}

/**
 * The active rule set behind one stable object: ingress holds the holder and calls evaluate();
 * reload() builds a complete new engine first and swaps it, with everything loaded alongside, in
 * one assignment, so a message is evaluated by the old rules or the new ones, never a mix. A
 * reload with problems keeps the previous state, logs every problem and sets
 * `pdrelay_config_last_reload_successful` to 0.
 */
export class RuleSetHolder implements RuleEngine {
  #state: { loaded: Loaded; engine: RuleEngine };
  readonly #opts: RuleSetHolderOptions;

  private constructor(loaded: Loaded, opts: RuleSetHolderOptions) {
    this.#state = { loaded, engine: createRuleEngine(loaded.ruleSet, opts.engine) };
    this.#opts = opts;
  }

  /** The first load (at startup). Problems are a UserError: `serve` refuses to start with them. */
  static load(opts: RuleSetHolderOptions): RuleSetHolder {
    const result = safeLoad(opts.load);
    if (!result.ok) {
      opts.instruments?.reloadFailed({ trigger: 'startup', problems: result.problems });
      throw new UserError(
        `The rules have ${result.problems.length} problem${result.problems.length === 1 ? '' : 's'}; fix them and retry:`,
        result.problems,
      );
    }
    const holder = new RuleSetHolder(withoutOk(result), opts);
    opts.instruments?.reloadSucceeded({
      trigger: 'startup',
      rules: result.ruleSet.rules.length,
      files: result.ruleSet.files.length,
    });
    return holder;
  }

  /** The active rule set. */
  get ruleSet(): RuleSet {
    return this.#state.loaded.ruleSet;
  }

  /** Everything the last successful load produced: the rule set and, if loaded with it, the config. */
  get loaded(): Loaded {
    return this.#state.loaded;
  }

  evaluate(doc: InputDocument): Evaluation {
    return this.#state.engine.evaluate(doc);
  }

  /** Loads again; on success swaps the new state in, on failure keeps the current one. */
  reload(trigger: ReloadTrigger = 'manual'): LoadResult {
    const result = safeLoad(this.#opts.load);
    if (!result.ok) {
      this.#opts.instruments?.reloadFailed({ trigger, problems: result.problems });
      return result;
    }
    const next = withoutOk(result);
    const engine = createRuleEngine(next.ruleSet, this.#opts.engine);
    const previous = this.#state.loaded;
    this.#state = { loaded: next, engine };
    const keys = this.#opts.onSwap?.(next, previous);
    this.#opts.instruments?.reloadSucceeded({
      trigger,
      rules: next.ruleSet.rules.length,
      files: next.ruleSet.files.length,
      ...(keys ? { keys } : {}),
    });
    return result;
  }
}

function withoutOk(result: { ok: true } & Loaded): Loaded {
  return result.config ? { ruleSet: result.ruleSet, config: result.config } : { ruleSet: result.ruleSet };
}

/** A loader that throws (a bug, or an fs error outside the collected ones) must not take the relay down. */
function safeLoad(load: () => LoadResult): LoadResult {
  try {
    return load();
  } catch (err) {
    return { ok: false, problems: [problemAt('<rules>', `Loading rules failed: ${messageOf(err)}`)] };
  }
}

/** The loader options a configuration implies: its rule paths and its route names. */
export function ruleOptionsFromConfig(config: Pick<Config, 'rules' | 'routes'>): LoadRulesOptions {
  return { paths: config.rules.paths, routes: Object.keys(config.routes) };
}

/** Loads the built-in rules plus those a configuration names. */
export function loadRulesForConfig(
  config: Pick<Config, 'rules' | 'routes'>,
  extra: Omit<LoadRulesOptions, 'paths' | 'routes'> = {},
): RuleSetResult {
  return loadRuleSet({ ...ruleOptionsFromConfig(config), ...extra });
}

/**
 * Loads the config file and then the rules it names, as one result: what SIGHUP and the rules
 * watcher reload, so that a config edit (a new route, a new rules path) and the rules that
 * depend on it change together or not at all. Config problems are returned like rule problems.
 */
export function loadConfigAndRules(opts: LoadOptions): LoadResult {
  let config: Config;
  try {
    config = loadConfig(opts);
  } catch (err) {
    if (!(err instanceof UserError)) throw err;
    const problems = err.problems.length
      ? [...err.problems]
      : [problemAt(opts.file ?? '<config>', err.message)];
    return { ok: false, problems };
  }
  const rules = loadRulesForConfig(config);
  return rules.ok ? { ok: true, ruleSet: rules.ruleSet, config } : rules;
}

/**
 * Reloads the holder when files under `paths` change (debounced, ConfigMap-safe; see
 * watchRulePaths). Returns the watcher; close() it on shutdown, setPaths() it when a config reload
 * changes `rules.paths`.
 */
export function watchAndReload(
  holder: RuleSetHolder,
  paths: readonly string[],
  opts: { debounceMs: number; onError?: (err: Error, dir: string) => void },
): RulePathWatcher {
  return watchRulePaths(paths, {
    debounceMs: opts.debounceMs,
    onChange: () => {
      holder.reload('watch');
    },
    ...(opts.onError ? { onError: opts.onError } : {}),
  });
}

function problemAt(file: string, message: string): Problem {
  return { location: { file, line: 1, col: 1 }, path: '', message };
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
