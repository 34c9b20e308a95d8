import { Counter, Gauge, type Registry } from 'prom-client';
import type { InputDocument } from '../decode/types.js';
import { formatProblem, type Problem } from '../errors.js';
import type { Logger } from '../log/logger.js';
import type { RuleAction } from '../pagerduty/types.js';

/**
 * Instrumentation of the rules stage: each event is one function that writes its log line and its
 * metric together, so they cannot drift. `rule` label values are rule names from loaded rule files
 * (bounded by the rule set), `field` and `action` come from fixed lists; nothing from the message.
 */

/** A rendered value that was not usable and was replaced: a bounded label set. */
export type FallbackField = 'action' | 'severity' | 'route' | 'summary' | 'timestamp';

export interface RulesInstruments {
  /** A rule matched and decided (drops included: every drop is counted by rule). */
  ruleMatched(rule: string, action: RuleAction, doc: InputDocument): void;
  /** No rule matched at all (only possible when the catch-all was replaced): nothing is sent. */
  noRuleMatched(doc: InputDocument): void;
  /** A rendered value was invalid; `used` replaced it. */
  renderFallback(rule: string, field: FallbackField, got: string, used: string, doc: InputDocument): void;
  /** A rule threw while rendering; the engine went on to the next matching rule. */
  renderFailed(rule: string, error: unknown, doc: InputDocument): void;
  /** Every matching rule failed to render; a built-in fallback event was produced instead. */
  emergencyEvent(failedRules: readonly string[], doc: InputDocument): void;
}

/** Instruments that record nothing (the CLI, tests that do not look). */
export const silentRulesInstruments: RulesInstruments = {
  ruleMatched() {},
  noRuleMatched() {},
  renderFallback() {},
  renderFailed() {},
  emergencyEvent() {},
};

const MAX_LOGGED_VALUE = 120;

export function createRulesInstruments(registry: Registry, logger: Logger): RulesInstruments {
  const matches = new Counter({
    name: 'pdrelay_rule_matches_total',
    help: 'Messages decided by a rule, by rule name and action (drop included).',
    labelNames: ['rule', 'action'],
    registers: [registry],
  });
  const unmatched = new Counter({
    name: 'pdrelay_rule_unmatched_total',
    help: 'Messages no rule matched (nothing sent); only possible when the catch-all rule was replaced.',
    registers: [registry],
  });
  const fallbacks = new Counter({
    name: 'pdrelay_rule_render_fallbacks_total',
    help: 'Rendered values that were invalid and replaced by a safe default, by rule and field.',
    labelNames: ['rule', 'field'],
    registers: [registry],
  });
  const failures = new Counter({
    name: 'pdrelay_rule_render_failures_total',
    help: 'Rules that failed to render a message (the next matching rule was tried), by rule.',
    labelNames: ['rule'],
    registers: [registry],
  });
  const emergencies = new Counter({
    name: 'pdrelay_rule_emergency_events_total',
    help: 'Messages for which every matching rule failed to render; pd-relay sent its own fallback event.',
    registers: [registry],
  });
  const context = (doc: InputDocument) => ({ messageId: doc.messageId, topic: doc.topic, kind: doc.kind });
  return {
    ruleMatched(rule, action, doc) {
      matches.inc({ rule, action });
      logger.debug({ rule, action, ...context(doc) }, 'Rule matched.');
    },
    noRuleMatched(doc) {
      unmatched.inc();
      logger.warn(context(doc), 'No rule matched; the message was dropped.');
    },
    renderFallback(rule, field, got, used, doc) {
      fallbacks.inc({ rule, field });
      logger.warn(
        { rule, field, got: clip(got), used, ...context(doc) },
        'Rule rendered an invalid value; a safe default was used.',
      );
    },
    renderFailed(rule, error, doc) {
      failures.inc({ rule });
      logger.error(
        { rule, err: error instanceof Error ? error.message : String(error), ...context(doc) },
        'Rule failed to render; trying the next matching rule.',
      );
    },
    emergencyEvent(failedRules, doc) {
      emergencies.inc();
      logger.error(
        { rules: failedRules, ...context(doc) },
        'Every matching rule failed to render; sending a fallback event instead.',
      );
    },
  };
}

/** Why a reload happened: a bounded set (it is a label). */
/** What a reload changed in the key pools, by alias. */
export interface KeyChanges {
  added: readonly string[];
  removed: readonly string[];
  /** Keys whose ratePerMinute changed. */
  rates: readonly string[];
}

export type ReloadTrigger = 'startup' | 'signal' | 'watch' | 'manual';

export interface ReloadInstruments {
  reloadSucceeded(info: { trigger: ReloadTrigger; rules: number; files: number; keys?: KeyChanges }): void;
  reloadFailed(info: { trigger: ReloadTrigger; problems: readonly Problem[] }): void;
}

/**
 * Reload outcome metrics, named as Prometheus and Alertmanager name theirs so existing alerts
 * ("config reload failed") carry over: `pdrelay_config_last_reload_successful` (1/0) and
 * `pdrelay_config_last_reload_success_timestamp_seconds`.
 */
export function createReloadInstruments(
  registry: Registry,
  logger: Logger,
  now: () => number = Date.now,
): ReloadInstruments {
  const successful = new Gauge({
    name: 'pdrelay_config_last_reload_successful',
    help: 'Whether the last configuration and rules (re)load succeeded (1) or failed and kept the previous rules (0).',
    registers: [registry],
  });
  const successTime = new Gauge({
    name: 'pdrelay_config_last_reload_success_timestamp_seconds',
    help: 'Unix time of the last successful configuration and rules (re)load.',
    registers: [registry],
  });
  const reloads = new Counter({
    name: 'pdrelay_config_reloads_total',
    help: 'Configuration and rules (re)loads, by trigger, result, and whether routing keys were added or removed (keys: changed, unchanged).',
    labelNames: ['trigger', 'result', 'keys'],
    registers: [registry],
  });
  const loaded = new Gauge({
    name: 'pdrelay_rules_loaded',
    help: 'Rules in the active rule set.',
    registers: [registry],
  });
  return {
    reloadSucceeded({ trigger, rules, files, keys }) {
      successful.set(1);
      successTime.set(now() / 1000);
      const changed = keys !== undefined && (keys.added.length > 0 || keys.removed.length > 0);
      reloads.inc({ trigger, result: 'success', keys: changed ? 'changed' : 'unchanged' });
      loaded.set(rules);
      const pools =
        keys && (changed || keys.rates.length)
          ? { keysAdded: keys.added, keysRemoved: keys.removed, keyRatesChanged: keys.rates }
          : {};
      logger.info(
        { trigger, rules, files, ...pools },
        trigger === 'startup'
          ? 'Rules loaded.'
          : changed
            ? 'Rules and key pools reloaded.'
            : 'Rules reloaded.',
      );
    },
    reloadFailed({ trigger, problems }) {
      successful.set(0);
      reloads.inc({ trigger, result: 'failure', keys: 'unchanged' });
      logger.error(
        { trigger, problemCount: problems.length, problems: problems.map(formatProblem) },
        'Rules reload failed; the previous rules stay active.',
      );
    },
  };
}

function clip(s: string): string {
  return s.length > MAX_LOGGED_VALUE ? `${s.slice(0, MAX_LOGGED_VALUE - 3)}...` : s;
}
