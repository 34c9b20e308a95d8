import { Liquid, type Template } from 'liquidjs';
import {
  arn,
  awsConsoleHost,
  awsPartition,
  cloudwatchMetric,
  firstLine,
  iso8601,
  severityToken,
  toText,
  uriComponent,
} from './filters.js';
import { compileLiquid } from './liquid-compile.js';

/**
 * Rule outputs are Liquid templates (liquidjs), parsed once when rules load and rendered
 * synchronously per message from the parsed form. One shared engine, configured strictly where a
 * mistake is the rule author's (unknown filters and tags fail at load) and leniently where it is
 * the payload's (an undefined variable renders as empty: AWS payloads vary by version and type).
 */
export const liquid: Liquid = new Liquid({
  strictFilters: true,
  strictVariables: false,
  // Templates read payload data: no prototype walking (`x.constructor`), only own properties.
  ownPropertyOnly: true,
  // `{{ message.detail }}` prints JSON rather than "[object Object]".
  outputEscape: toText,
  cache: false,
  // A loop over a huge payload list must not stall intake: past this, rendering throws, the rule
  // counts as failed and the next matching rule (at worst the catch-all) takes the message.
  // (Loops are outside the compiled subset, so they always render through liquidjs.)
  renderLimit: 250,
  // Likewise for allocations ((1..100000000) ranges, huge joins): liquidjs counts and stops them.
  memoryLimit: 10_000_000,
});

// Templates turn payload data into events; they never read files (include, render, layout).
for (const tag of ['include', 'render', 'layout', 'block'])
  delete (liquid.tags as Record<string, unknown>)[tag];

liquid.registerFilter('uri_component', uriComponent);
liquid.registerFilter('aws_console_host', awsConsoleHost);
liquid.registerFilter('aws_partition', awsPartition);
liquid.registerFilter('arn', arn);
liquid.registerFilter('iso8601', iso8601);
liquid.registerFilter('severity_token', severityToken);
liquid.registerFilter('text', toText);
liquid.registerFilter('first_line', firstLine);
liquid.registerFilter('cloudwatch_metric', cloudwatchMetric);

/** A parsed template. render() trims the result: YAML block scalars end in a newline. */
export interface CompiledTemplate {
  readonly source: string;
  /**
   * static: no Liquid markup; path: exactly `{{ a.b.c }}`; compiled: Liquid compiled to closures
   * (see liquid-compile.ts); liquid: rendered by liquidjs.
   */
  readonly kind: 'static' | 'path' | 'compiled' | 'liquid';
  render(scope: object): string;
  /** The same render through liquidjs itself (the reference the fast paths are tested against). */
  reference(scope: object): string;
}

/** A template syntax error, positioned inside the template (1-based). */
export interface TemplateError {
  message: string;
  line: number;
  col: number;
}

// `{{ name.name[0].name }}` and nothing else: rendered by a direct lookup. Names that Liquid
// treats specially (`size`, `first`, `last`) keep the Liquid path so the meaning never differs.
const SIMPLE_OUTPUT = /^\{\{-?\s*([A-Za-z_][\w-]*(?:\.[A-Za-z_][\w-]*|\[\d+\])*)\s*-?\}\}$/;
const SPECIAL_NAMES = new Set(['size', 'first', 'last']);

/** Parses a template, or returns where its syntax is wrong (including unknown filters and tags). */
export function compileTemplate(source: string): { template: CompiledTemplate } | { error: TemplateError } {
  if (!source.includes('{{') && !source.includes('{%')) {
    const value = source.trim();
    return { template: { source, kind: 'static', render: () => value, reference: () => value } };
  }
  let parsed: Template[];
  try {
    parsed = liquid.parse(source);
  } catch (err) {
    return { error: templateError(err) };
  }
  const reference = (scope: object) => (liquid.renderSync(parsed, scope) as string).trim();
  const simple = SIMPLE_OUTPUT.exec(source.trim());
  if (simple) {
    const segs = (simple[1] as string)
      .split(/\.|\[(\d+)\]/)
      .filter((s) => s !== undefined && s !== '')
      .map((s) => (/^\d+$/.test(s) ? Number(s) : s));
    if (!segs.some((s) => typeof s === 'string' && SPECIAL_NAMES.has(s))) {
      return {
        template: { source, kind: 'path', render: (scope) => toText(lookup(scope, segs)).trim(), reference },
      };
    }
  }
  const compiled = compileLiquid(parsed, liquid);
  if (compiled) {
    return { template: { source, kind: 'compiled', render: (scope) => compiled(scope).trim(), reference } };
  }
  return { template: { source, kind: 'liquid', render: reference, reference } };
}

function lookup(scope: object, segs: Array<string | number>): unknown {
  let cur: unknown = scope;
  for (const seg of segs) {
    if (cur === null || typeof cur !== 'object') return undefined;
    if (Array.isArray(cur)) {
      if (typeof seg !== 'number') return undefined;
      cur = cur[seg];
    } else {
      const key = String(seg);
      if (!Object.hasOwn(cur, key)) return undefined;
      cur = (cur as Record<string, unknown>)[key];
    }
  }
  return cur;
}

function templateError(err: unknown): TemplateError {
  const e = err as { message?: string; token?: { getPosition?: () => [number, number] } };
  const [line = 1, col = 1] = typeof e.token?.getPosition === 'function' ? e.token.getPosition() : [];
  // liquidjs appends ", line:1, col:5" to its messages; the location is reported separately.
  const message = String(e.message ?? err).replace(/, line:\d+, col:\d+$/, '');
  return { message: `Liquid: ${message}`, line, col };
}
