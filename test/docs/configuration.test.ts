import { describe, expect, it } from 'vitest';
import { configSchema } from '../../src/config/schema.js';
import { codeSpan, requireDoc, tableRows } from './markdown.js';
import { configKeys, RECORD_SEGMENT } from './sources.js';

/**
 * docs/configuration.md documents every configuration key with its real default: its key tables
 * (first cell a key in a code span, second its default in a code span or "none") are compared with
 * src/config/schema.ts, so that a key added, renamed or given another default fails here until the
 * documentation says so.
 */

/**
 * The defaults the schema fills in, with a record entry named "x" standing for RECORD_SEGMENT, and
 * the optional sections present (their keys' defaults apply once the section is written).
 */
const DEFAULTS = configSchema.parse({ routes: { x: {} }, spool: { postgres: {} } });

function schemaDefault(key: string): unknown {
  let cur: unknown = DEFAULTS;
  for (const seg of key.split('.')) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<string, unknown>)[seg === RECORD_SEGMENT ? 'x' : seg];
  }
  return cur;
}

/** A default as the documentation writes it: the value in a code span, arrays as JSON, "none" when there is none. */
function documentedForm(value: unknown): string {
  if (value === undefined) return 'none';
  if (typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean')
    return `\`${value}\``;
  return `\`${JSON.stringify(value)}\``;
}

const doc = requireDoc('docs/configuration.md');
const documented = new Map<string, { default: string; line: number }>();
for (const row of tableRows(doc)) {
  const key = codeSpan(row.cells[0] ?? '');
  if (key === undefined || !/^[a-z][A-Za-z<>.]*$/.test(key)) continue;
  documented.set(key, { default: row.cells[1] ?? '', line: row.line });
}

describe('docs/configuration.md', () => {
  const keys = configKeys();

  it('finds the schema keys and the documented ones (the test can fail)', () => {
    expect(keys).toContain('server.port');
    expect(keys).toContain('routes.<name>.ratePerMinute');
    expect(documented.size).toBeGreaterThan(20);
  });

  it('documents every key of src/config/schema.ts, and no key the schema does not have', () => {
    const missing = keys.filter((k) => !documented.has(k));
    const unknown = [...documented.keys()].filter((k) => !keys.includes(k));
    expect({ missing, unknown }).toEqual({ missing: [], unknown: [] });
  });

  it.each(keys)('documents the real default of %s', (key) => {
    const row = documented.get(key);
    if (!row) return; // reported above
    expect(`${row.default} (docs/configuration.md:${row.line})`).toBe(
      `${documentedForm(schemaDefault(key))} (docs/configuration.md:${row.line})`,
    );
  });
});
