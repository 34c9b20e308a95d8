import { readFileSync } from 'node:fs';
import { isDeepStrictEqual } from 'node:util';
import { decodeNotification } from '../decode/decode.js';
import { envelopeFromSample, wrapMessage } from '../decode/sample.js';
import type { InputDocument, NotificationEnvelope } from '../decode/types.js';
import type { SourceLocation } from '../errors.js';
import type { RulesInstruments } from '../metrics/rules.js';
import { createRuleEngine, type EngineOptions } from './engine.js';
import type { RuleSet } from './loader.js';
import { getPath, type ValuePath } from './path.js';
import type { RuleTest } from './rule.js';
import type { RawTestInput } from './schema.js';
import type { Evaluation, OutboundEvent } from './types.js';

/** The outcome of one `tests:` entry. */
export interface RuleTestResult {
  rule: string;
  name: string;
  location: SourceLocation;
  ok: boolean;
  /** What differed, one sentence each ("Expected …, got …"). */
  failures: string[];
  /** Fallbacks the rules took while rendering (an invalid severity, an unknown route…). */
  notes: string[];
}

/** The endpoint a test input is delivered to unless it says otherwise. */
export const TEST_ENDPOINT = 'default';

/**
 * Runs every `tests:` entry of a rule set against the whole rule set (a test under one rule can
 * expect another to decide). Inputs are built into real SNS envelopes and decoded, so `kind`
 * detection is exercised too.
 */
export function runRuleTests(
  ruleSet: RuleSet,
  opts: Omit<EngineOptions, 'instruments'> = {},
): RuleTestResult[] {
  const results: RuleTestResult[] = [];
  const notes: string[] = [];
  const engine = createRuleEngine(ruleSet, { ...opts, instruments: noteTaker(notes) });
  for (const rule of ruleSet.rules) {
    for (const test of rule.tests) {
      notes.length = 0;
      const failures: string[] = [];
      let evaluation: Evaluation | undefined;
      try {
        evaluation = engine.evaluate(testDocument(test));
      } catch (err) {
        failures.push(`Evaluation threw: ${(err as Error).message}`);
      }
      if (evaluation) failures.push(...checkExpectation(test, evaluation));
      results.push({
        rule: test.rule,
        name: test.name,
        location: test.location,
        ok: failures.length === 0,
        failures,
        notes: [...notes],
      });
    }
  }
  return results;
}

/** The input document of a test: inline input wrapped in an envelope, or a sample file. */
export function testDocument(test: RuleTest): InputDocument {
  if ('file' in test.input) {
    const { envelope } = envelopeFromSample(readFileSync(test.input.file, 'utf8'));
    return decodeNotification(envelope, TEST_ENDPOINT);
  }
  const input = test.input.inline;
  return decodeNotification(envelopeFromInput(input), input.endpoint ?? TEST_ENDPOINT);
}

/** Builds the SNS envelope for an inline test input. */
export function envelopeFromInput(input: RawTestInput): NotificationEnvelope {
  const raw = typeof input.message === 'string' ? input.message : JSON.stringify(input.message ?? null);
  const overrides: Partial<NotificationEnvelope> = {};
  if (input.topic !== undefined) overrides.TopicArn = input.topic;
  if (input.subject !== undefined) overrides.Subject = input.subject;
  if (input.timestamp !== undefined) overrides.Timestamp = input.timestamp;
  if (input.messageId !== undefined) overrides.MessageId = input.messageId;
  if (input.attributes) {
    const attrs: Record<string, { Type: string; Value: string }> = {};
    for (const [name, value] of Object.entries(input.attributes)) {
      if (typeof value === 'number') attrs[name] = { Type: 'Number', Value: String(value) };
      else if (Array.isArray(value)) attrs[name] = { Type: 'String.Array', Value: JSON.stringify(value) };
      else attrs[name] = { Type: 'String', Value: value };
    }
    overrides.MessageAttributes = attrs;
  }
  return wrapMessage(raw, typeof input.message === 'string' ? undefined : input.message, overrides);
}

function checkExpectation(test: RuleTest, ev: Evaluation): string[] {
  const failures: string[] = [];
  const exp = test.expect;
  const expectedRule = exp.rule === undefined ? test.rule : exp.rule;
  if (ev.rule !== expectedRule) failures.push(`Expected rule ${show(expectedRule)}, got ${show(ev.rule)}`);
  if (exp.action !== undefined && ev.action !== exp.action)
    failures.push(`Expected action ${show(exp.action)}, got ${show(ev.action)}`);
  if (exp.count !== undefined && ev.events.length !== exp.count)
    failures.push(`Expected ${exp.count} event(s), got ${ev.events.length}`);
  if (exp.route !== undefined) {
    for (const [i, e] of ev.events.entries())
      if (e.route !== exp.route)
        failures.push(`Expected event ${i} on route ${show(exp.route)}, got ${show(e.route)}`);
  }
  if (exp.fieldPaths.length) {
    const first = ev.events[0];
    if (!first) failures.push('Expected an event to check fields on, got none');
    else failures.push(...checkFields(first, exp.fields ?? {}, exp.fieldPaths, ''));
  }
  if (exp.events) {
    if (ev.events.length !== exp.events.length)
      failures.push(`Expected ${exp.events.length} event(s), got ${ev.events.length}`);
    exp.events.forEach((e, i) => {
      const actual = ev.events[i];
      if (!actual) return;
      if (e.route !== undefined && actual.route !== e.route)
        failures.push(`Expected event ${i} on route ${show(e.route)}, got ${show(actual.route)}`);
      failures.push(...checkFields(actual, e.fields ?? {}, test.eventFieldPaths[i] ?? [], `event ${i} `));
    });
  }
  return failures;
}

function checkFields(
  event: OutboundEvent,
  fields: Record<string, unknown>,
  paths: Array<[string, ValuePath]>,
  prefix: string,
): string[] {
  const failures: string[] = [];
  for (const [key, path] of paths) {
    const expected = fields[key];
    const actual = getPath(event.body, path);
    // `null` expects the field to be absent (acknowledge/resolve bodies carry no payload).
    const ok =
      expected === null ? actual === undefined || actual === null : isDeepStrictEqual(actual, expected);
    if (!ok) failures.push(`Expected ${prefix}${key} to be ${show(expected)}, got ${show(actual)}`);
  }
  return failures;
}

function show(v: unknown): string {
  if (v === undefined) return 'nothing';
  const s = JSON.stringify(v);
  return s.length > 200 ? `${s.slice(0, 197)}...` : s;
}

/** Instruments that write fallbacks and render failures as sentences into `notes` (CLI, tests). */
export function noteTaker(notes: string[]): RulesInstruments {
  return {
    ruleMatched() {},
    noRuleMatched() {},
    renderFallback(rule, field, got, used) {
      notes.push(`rule ${rule}: ${field} ${JSON.stringify(got)} is not valid; used ${JSON.stringify(used)}`);
    },
    renderFailed(rule, error) {
      notes.push(`rule ${rule} failed to render: ${error instanceof Error ? error.message : String(error)}`);
    },
    emergencyEvent(rules) {
      notes.push(`every matching rule failed (${rules.join(', ')}); the fallback event was sent`);
    },
  };
}
