import { describe, expect, it } from 'vitest';
import { anchors, type Doc, requireDoc, section } from './markdown.js';
import { alertRules } from './sources.js';

/**
 * Every alert of k8s/base/prometheusrule.yaml links a runbook in docs/operations.md at
 * `#<alert name in lower case>`, and each runbook says what the alert means, how to look and what
 * to do. docs/operations.md has no runbook for an alert that does not exist.
 */

const alerts = alertRules();
const ops = requireDoc('docs/operations.md');
const runbooks = section(ops, 'Runbooks') as Doc;

describe('runbooks in docs/operations.md', () => {
  it('finds the alerts (the test can fail)', () => {
    expect(alerts.length).toBe(18);
    expect(runbooks).toBeDefined();
  });

  it.each(alerts.map((a) => [a.alert, a] as const))('%s links an existing runbook anchor', (name, alert) => {
    expect(alert.annotations?.runbook_url).toBe(`docs/operations.md#${name.toLowerCase()}`);
    expect(anchors(ops)).toContain(name.toLowerCase());
  });

  it.each(alerts.map((a) => [a.alert] as const))(
    'the runbook of %s says what it means, how to look, what to do',
    (name) => {
      const book = section(runbooks, name);
      expect(book, `### ${name}`).toBeDefined();
      for (const part of ['**What it means.**', '**How to look.**', '**What to do.**'])
        expect((book as Doc).text, `${name}: ${part}`).toContain(part);
    },
  );

  it('has no runbook for an alert that does not exist', () => {
    const headings = [...runbooks.text.matchAll(/^### (\S+)\s*$/gm)].map((m) => m[1] as string);
    expect(headings.sort()).toEqual(alerts.map((a) => a.alert).sort());
  });
});
