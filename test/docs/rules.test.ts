import { Liquid } from 'liquidjs';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { loadRuleSet } from '../../src/rules/loader.js';
import { OPERATORS } from '../../src/rules/pattern.js';
import { ruleSchema } from '../../src/rules/schema.js';
import { liquid } from '../../src/rules/templates.js';
import { codeSpan, type Doc, prose, requireDoc, section, tableRows } from './markdown.js';

/**
 * docs/rules.md keeps up with src/rules: its tables of rule keys, test keys, pattern operators and
 * pd-relay's filters list exactly what the code has, and its built-in rules section names every
 * built-in rule and no other.
 */

const doc = requireDoc('docs/rules.md');

/** The first cells (one code span each) of the tables under `heading`. */
function tableKeys(heading: string): string[] {
  const part = section(doc, heading);
  if (!part) throw new Error(`Expected a section "${heading}" in docs/rules.md`);
  return tableRows(part as Doc).flatMap((r) => codeSpan(r.cells[0] ?? '') ?? []);
}

/** The top-level keys of a zod object schema, prefixed. */
function keysOf(schema: z.ZodType, prefix = ''): string[] {
  const json = z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' }) as {
    properties?: Record<string, unknown>;
  };
  return Object.keys(json.properties ?? {}).map((k) => `${prefix}${k}`);
}

/** The filters pd-relay registers on top of liquidjs's standard ones. */
function customFilters(): string[] {
  const standard = new Set(Object.keys(new Liquid().filters));
  return Object.keys(liquid.filters).filter((f) => !standard.has(f));
}

const sorted = (list: Iterable<string>) => [...list].sort();

describe('docs/rules.md', () => {
  it('has one row per rule key, payload keys included', () => {
    const shape = ruleSchema.shape;
    const expected = [
      ...Object.keys(shape).filter((k) => k !== 'payload'),
      ...keysOf(shape.payload.unwrap(), 'payload.'),
    ];
    expect(sorted(tableKeys('Rule keys'))).toEqual(sorted(expected));
  });

  it('has one row per key of a test', () => {
    const test = ruleSchema.shape.tests.unwrap().element.shape;
    const expected = [
      ...Object.keys(test).filter((k) => k !== 'input' && k !== 'expect'),
      ...keysOf(test.input.unwrap(), 'input.'),
      ...keysOf(test.expect, 'expect.'),
    ];
    expect(sorted(tableKeys('`tests:` blocks'))).toEqual(sorted(expected));
  });

  it('has one row per pattern operator (and $or, and plain values)', () => {
    const rows = tableKeys('Operators');
    expect(sorted(rows)).toEqual(sorted([...OPERATORS, '$or']));
  });

  it("has one row per filter pd-relay adds to Liquid's", () => {
    const filters = customFilters();
    expect(filters.length).toBeGreaterThan(5);
    expect(sorted(tableKeys("pd-relay's filters"))).toEqual(sorted(filters));
  });

  it('names every built-in rule in its section, and no rule that does not exist', () => {
    const loaded = loadRuleSet({ paths: [] });
    if (!loaded.ok) throw new Error('The built-in rules do not load');
    const names = loaded.ruleSet.rules.map((r) => r.name);
    const part = section(doc, 'Built-in rules');
    const mentioned = new Set([...prose(part as Doc).matchAll(/`([a-z0-9-]+)`/g)].map((m) => m[1] as string));
    expect(names.filter((n) => !mentioned.has(n))).toEqual([]);
    const ruleLike = [...mentioned].filter((m) =>
      /^(cloudwatch-|cloudtrail-|guardduty-|securityhub-|aws-health-|catch-all)/.test(m),
    );
    expect(ruleLike.filter((m) => !names.includes(m))).toEqual([]);
  });
});
