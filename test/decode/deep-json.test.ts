import { describe, expect, it } from 'vitest';
import {
  decodeAttributes,
  decodeNotification,
  jsonNestingExceeds,
  MAX_JSON_DEPTH,
  parseMessage,
} from '../../src/decode/decode.js';
import { createRuleEngine } from '../../src/rules/engine.js';
import { loadRuleSet } from '../../src/rules/loader.js';

const nestedArrays = (depth: number) => `${'['.repeat(depth)}${']'.repeat(depth)}`;
const nestedObjects = (depth: number) => `${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`;

describe('deeply nested JSON', () => {
  it.each([
    { name: 'arrays at the limit', text: nestedArrays(MAX_JSON_DEPTH), exceeds: false },
    { name: 'arrays past the limit', text: nestedArrays(MAX_JSON_DEPTH + 1), exceeds: true },
    { name: 'objects past the limit', text: nestedObjects(MAX_JSON_DEPTH + 1), exceeds: true },
    {
      name: 'brackets inside strings',
      text: `{"a":"${'['.repeat(1000)}","b":"\\"${'{'.repeat(1000)}"}`,
      exceeds: false,
    },
    { name: 'an escaped quote does not end a string', text: `["\\"${'['.repeat(200)}"]`, exceeds: false },
  ])('$name: nesting exceeds the limit = $exceeds', ({ text, exceeds }) => {
    expect(jsonNestingExceeds(text, MAX_JSON_DEPTH)).toBe(exceeds);
  });

  it('stays text in the Message and in String.Array attributes', () => {
    const deep = nestedObjects(50_000);
    expect(parseMessage(deep)).toBe(deep);
    expect(parseMessage(nestedArrays(3))).toEqual([[[]]]);
    expect(decodeAttributes({ deep: { Type: 'String.Array', Value: nestedArrays(50_000) } })).toEqual({
      deep: nestedArrays(50_000),
    });
  });

  // A verified message that the built-in rules cannot render answers 500 on every SNS retry and
  // never pages: with 10,000 levels the catch-all and the emergency event both overflowed the stack.
  it.each([
    ['Message', { Message: nestedArrays(10_000) }],
    ['Message', { Message: nestedObjects(10_000) }],
    [
      'String.Array attribute',
      {
        Message: 'disk full',
        MessageAttributes: { deep: { Type: 'String.Array', Value: nestedArrays(100_000) } },
      },
    ],
  ])('in the %s still pages through the built-in catch-all', (_where, over) => {
    const loaded = loadRuleSet();
    if (!loaded.ok) throw new Error('The built-in rules do not load');
    const engine = createRuleEngine(loaded.ruleSet);
    const doc = decodeNotification(
      {
        MessageId: '6f0c3a52-1f7e-4c8a-9a51-3b6d2e0f9c11',
        TopicArn: 'arn:aws:sns:us-east-1:123456789012:app-events',
        Timestamp: '2024-03-01T10:15:42.180Z',
        ...over,
      },
      'default',
    );
    const evaluation = engine.evaluate(doc);
    expect(evaluation.rule).toBe('catch-all');
    expect(evaluation.events).toHaveLength(1);
    expect(() => JSON.stringify(evaluation.events)).not.toThrow();
  });
});
