import type { Config } from '../config/load.js';
import type { InputDocument } from '../decode/types.js';
import { type Problem, UserError } from '../errors.js';
import type { ReloadInstruments, ReloadTrigger } from '../metrics/rules.js';
import { createRuleEngine, type EngineOptions } from './engine.js';
import { type LoadRulesOptions, loadRuleSet, type RuleSet, type RuleSetResult } from './loader.js';
import type { Evaluation, RuleEngine } from './types.js';
import { type RulePathWatcher, watchRulePaths } from './watch.js';

export type ReloadResult = { ok: true; ruleSet: RuleSet } | { ok: false; problems: Problem[] };

export interface RuleSetHolderOptions {
  /**
   * Loads the next rule set. The composition root can load the config file here too and return
   * its problems, so that config and rules are reloaded (or kept) together.
   */
  load: () => RuleSetResult;
  engine?: EngineOptions;
  instruments?: ReloadInstruments;
  /** Runs after a successful swap (e.g. to swap the config that went with these rules). */
  onSwap?: (next: RuleSet, previous: RuleSet) => void;
}

/**
 * The active rule set behind one stable object: ingress holds the holder and calls evaluate();
 * reload() builds a complete new engine first and swaps it in one assignment, so a message is
 * evaluated by the old rules or the new ones, never a mix. A reload with problems keeps the
 * previous rules, logs every problem and sets `pdrelay_config_last_reload_successful` to 0.
 */
export class RuleSetHolder implements RuleEngine {
  #ruleSet: RuleSet;
  #engine: RuleEngine;
  readonly #opts: RuleSetHolderOptions;

  private constructor(ruleSet: RuleSet, opts: RuleSetHolderOptions) {
    this.#ruleSet = ruleSet;
    this.#engine = createRuleEngine(ruleSet, opts.engine);
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
    const holder = new RuleSetHolder(result.ruleSet, opts);
    opts.instruments?.reloadSucceeded({
      trigger: 'startup',
      rules: result.ruleSet.rules.length,
      files: result.ruleSet.files.length,
    });
    return holder;
  }

  get ruleSet(): RuleSet {
    return this.#ruleSet;
  }

  evaluate(doc: InputDocument): Evaluation {
    return this.#engine.evaluate(doc);
  }

  /** Loads the rules again; on success swaps them in, on failure keeps the current ones. */
  reload(trigger: ReloadTrigger = 'manual'): ReloadResult {
    const result = safeLoad(this.#opts.load);
    if (!result.ok) {
      this.#opts.instruments?.reloadFailed({ trigger, problems: result.problems });
      return result;
    }
    const engine = createRuleEngine(result.ruleSet, this.#opts.engine);
    const previous = this.#ruleSet;
    this.#ruleSet = result.ruleSet;
    this.#engine = engine;
    this.#opts.onSwap?.(result.ruleSet, previous);
    this.#opts.instruments?.reloadSucceeded({
      trigger,
      rules: result.ruleSet.rules.length,
      files: result.ruleSet.files.length,
    });
    return result;
  }
}

/** A loader that throws (a bug, or an fs error outside the collected ones) must not take the relay down. */
function safeLoad(load: () => RuleSetResult): RuleSetResult {
  try {
    return load();
  } catch (err) {
    return {
      ok: false,
      problems: [
        {
          location: { file: '<rules>', line: 1, col: 1 },
          path: '',
          message: `Loading rules failed: ${err instanceof Error ? err.message : String(err)}`,
        },
      ],
    };
  }
}

/** The loader options a configuration implies: its rule paths and its route names. */
export function ruleOptionsFromConfig(config: Pick<Config, 'rules' | 'routes'>): LoadRulesOptions {
  return { paths: config.rules.paths, routes: Object.keys(config.routes) };
}

/** Loads the built-in rules plus those a configuration names (what `serve` and the CLI use). */
export function loadRulesForConfig(
  config: Pick<Config, 'rules' | 'routes'>,
  extra: Omit<LoadRulesOptions, 'paths' | 'routes'> = {},
): RuleSetResult {
  return loadRuleSet({ ...ruleOptionsFromConfig(config), ...extra });
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
