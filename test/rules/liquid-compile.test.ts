import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { decodeNotification } from '../../src/decode/decode.js';
import { envelopeFromSample } from '../../src/decode/sample.js';
import type { InputDocument } from '../../src/decode/types.js';
import { formatProblem } from '../../src/errors.js';
import { loadRuleSet } from '../../src/rules/loader.js';
import { getPath } from '../../src/rules/path.js';
import type { CompiledRule } from '../../src/rules/rule.js';
import { testDocument } from '../../src/rules/rule-tests.js';
import { type CompiledTemplate, compileTemplate } from '../../src/rules/templates.js';
import { corpusRoot, jsonFiles } from './corpus.js';

function template(source: string): CompiledTemplate {
  const result = compileTemplate(source);
  if ('error' in result) throw new Error(result.error.message);
  return result.template;
}

/** Renders both ways; both must agree, including on throwing. */
function both(t: CompiledTemplate, scope: object): { fast: string; reference: string } {
  const run = (f: () => string) => {
    try {
      return f();
    } catch (err) {
      return `THROWS ${(err as Error).name}`;
    }
  };
  return { fast: run(() => t.render(scope)), reference: run(() => t.reference(scope)) };
}

const scopes: object[] = [
  {
    s: 'Hello World',
    blankstr: '',
    n: 7,
    zero: 0,
    f: 2.5,
    neg: -1,
    t: true,
    no: false,
    nothing: null,
    arr: [3, 'b', null, [1, 2]],
    objs: [
      { id: 'a', v: 1 },
      { id: 'b', v: 2 },
    ],
    obj: { 'detail-type': 'X', size: 'big', first: 'f', nested: { deep: [1, 2, 3] } },
    num: '7',
  },
  { s: 7, arr: 'not a list', obj: null, n: '7' },
  {},
];

describe('compiled Liquid renders exactly what liquidjs renders', () => {
  it.each<[string, 'compiled' | 'liquid']>([
    ['{{ s }} and {{ n }} and {{ f }} and {{ t }} and {{ nothing }} and {{ missing }}', 'compiled'],
    ['{{ arr }}|{{ obj }}|{{ objs }}', 'compiled'],
    ['{{ arr.size }} {{ s.size }} {{ obj.size }} {{ objs.size }} {{ n.size }} {{ size }}', 'compiled'],
    ['{{ arr.first }} {{ arr.last }} {{ obj.first }} {{ arr[-1] }} {{ arr[1] }} {{ arr[9] }}', 'compiled'],
    ['{{ obj["detail-type"] }} {{ obj.nested.deep[2] }} {{ objs[1].id }} {{ obj.constructor }}', 'compiled'],
    ['{% if n > 5 %}big{% elsif n > 2 %}mid{% else %}small{% endif %}', 'compiled'],
    ['{% if num > 5 %}gt{% endif %}{% if n == "7" %}eq{% endif %}{% if n == 7 %}eq7{% endif %}', 'compiled'],
    [
      '{% if blankstr %}truthy{% else %}falsy{% endif %} {% if zero %}z{% endif %} {% if no %}n{% endif %}',
      'compiled',
    ],
    [
      '{% if t and n %}a{% endif %}{% if no or nothing %}b{% endif %}{% if missing or t %}c{% endif %}',
      'compiled',
    ],
    [
      '{% if arr contains "b" %}a{% endif %}{% if s contains "World" %}s{% endif %}{% if n contains 7 %}n{% endif %}',
      'compiled',
    ],
    ['{% if arr == arr %}same{% endif %}{% if obj != obj %}diff{% endif %}', 'compiled'],
    ['{% unless t %}u{% elsif n %}e{% else %}x{% endunless %}', 'compiled'],
    ['{% case n %}{% when 1, 7 %}one-or-seven{% when 7 %}again{% else %}other{% endcase %}', 'compiled'],
    ['{% case s %}{% when "x" or "y" %}xy{% else %}else{% endcase %}', 'compiled'],
    ['{% assign s = "shadowed" %}{{ s }} {% assign z = arr | size %}{{ z }}', 'compiled'],
    ['{%- capture c -%} {{ n }}-{{ s }} {%- endcapture -%}[{{ c }}]', 'compiled'],
    ['{% comment %}ignored {{ s }}{% endcomment %}kept', 'compiled'],
    ['{{ s | downcase | replace: "world", "there" | truncate: 8 }}', 'compiled'],
    [
      '{{ missing | default: "d" }} {{ no | default: "d", allow_false: true }} {{ blankstr | default: s }}',
      'compiled',
    ],
    ['{{ n | plus: 1 | times: f }} {{ f | round }} {{ neg | abs }}', 'compiled'],
    ['{{ obj | json }} {{ arr | join: "," }} {{ s | split: " " | first }}', 'compiled'],
    [
      '{{ s | uri_component }} {{ obj.nested | text }} {% assign a = "arn:aws:sns:us-east-1:1:t" | arn %}{{ a.region }}',
      'compiled',
    ],
    // Outside the subset: liquidjs renders these.
    ['{% if missing == nil %}nil{% endif %}', 'liquid'],
    ['{% if arr == empty %}empty{% endif %}', 'liquid'],
    ['{% for x in arr %}{{ x }}{% endfor %}', 'liquid'],
    ['{{ objs | map: "id" | join: "," }}', 'liquid'],
    ['{% for i in (1..3) %}{{ i }}{% endfor %}', 'liquid'],
  ])('%s', (source, kind) => {
    const t = template(source);
    expect(t.kind).toBe(kind);
    for (const scope of scopes) {
      const { fast, reference } = both(t, scope);
      expect(fast, JSON.stringify(scope)).toBe(reference);
    }
  });

  it('a filter that throws on odd data throws on both paths', () => {
    const t = template('{{ s | base64_decode }}');
    expect(t.kind).toBe('compiled');
    expect(() => t.render({ s: '!!' })).toThrow();
    expect(() => t.reference({ s: '!!' })).toThrow();
  });
});

function templatesOf(rule: CompiledRule): CompiledTemplate[] {
  const out: Array<CompiledTemplate | null> = [
    rule.action,
    rule.route,
    rule.dedupKey,
    rule.client,
    rule.clientUrl,
  ];
  const p = rule.payload;
  out.push(p.summary, p.source, p.severity, p.timestamp, p.component, p.group, p.class);
  if (p.details?.kind === 'map') for (const [, e] of p.details.entries) if ('render' in e) out.push(e);
  for (const l of rule.links) out.push(l.href, l.text);
  for (const i of rule.images) out.push(i.src, i.href, i.alt);
  return out.filter((t): t is CompiledTemplate => t !== null);
}

describe('every built-in template, on every test input and corpus message', () => {
  const loaded = loadRuleSet();
  if (!loaded.ok) throw new Error(loaded.problems.map(formatProblem).join('\n'));
  const rules = loaded.ruleSet.rules;
  const docs: InputDocument[] = rules.flatMap((r) => r.tests.map((t) => testDocument(t)));
  const root = corpusRoot();
  if (root) {
    const dir = join(root, 'messages');
    for (const f of jsonFiles(dir)) {
      docs.push(
        decodeNotification(envelopeFromSample(readFileSync(join(dir, f), 'utf8')).envelope, 'default'),
      );
    }
  }

  it('no built-in template needs liquidjs at runtime', () => {
    const slow = rules.flatMap((r) =>
      templatesOf(r)
        .filter((t) => t.kind === 'liquid')
        .map((t) => `${r.name}: ${t.source}`),
    );
    expect(slow).toEqual([]);
  });

  it.each(rules.map((r) => [r.name, r] as const))('%s', (_name, rule) => {
    let compared = 0;
    for (const doc of docs) {
      const info = { name: rule.name, description: rule.description ?? '' };
      const list = rule.forEach ? getPath(doc, rule.forEach) : undefined;
      const scopesFor: object[] = Array.isArray(list)
        ? list.slice(0, 3).map((item, i) => ({ ...doc, rule: info, item, item_index: i }))
        : [{ ...doc, rule: info }];
      for (const scope of scopesFor) {
        for (const t of templatesOf(rule)) {
          const { fast, reference } = both(t, scope);
          expect(fast, `${t.source}\n  on ${doc.messageId} ${doc.kind}`).toBe(reference);
          compared++;
        }
      }
    }
    expect(compared).toBeGreaterThan(0);
  });
});
