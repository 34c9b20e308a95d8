import type { SourceLocation } from '../errors.js';
import type { ValuePath } from './path.js';
import type { DocMatcher } from './pattern.js';
import type { RawExpectation, RawTestInput } from './schema.js';
import type { CompiledTemplate } from './templates.js';

/** custom_details: a whole value from a path, or a map of templates and path values. */
export type CompiledDetails =
  | { kind: 'path'; path: ValuePath }
  | { kind: 'map'; entries: Array<[string, CompiledTemplate | { path: ValuePath }]> };

/** A rule ready to evaluate: pattern and templates compiled, nothing parsed per message. */
export interface CompiledRule {
  name: string;
  description?: string;
  /** Where the rule is written (its `name`'s position), for messages. */
  location: SourceLocation;
  builtin: boolean;
  /** false: the rule exists (a user file can disable a built-in by name) but never matches. */
  enabled: boolean;
  /** Evaluated after every non-fallback rule, whatever file it came from (the catch-all). */
  fallback: boolean;
  continue: boolean;
  match: DocMatcher;
  forEach: ValuePath | null;
  /** null: the defaults (action trigger, route "default", no dedup key). */
  action: CompiledTemplate | null;
  route: CompiledTemplate | null;
  dedupKey: CompiledTemplate | null;
  payload: {
    summary: CompiledTemplate | null;
    source: CompiledTemplate | null;
    severity: CompiledTemplate | null;
    timestamp: CompiledTemplate | null;
    component: CompiledTemplate | null;
    group: CompiledTemplate | null;
    class: CompiledTemplate | null;
    details: CompiledDetails | null;
  };
  links: Array<{ href: CompiledTemplate; text: CompiledTemplate | null }>;
  images: Array<{ src: CompiledTemplate; href: CompiledTemplate | null; alt: CompiledTemplate | null }>;
  client: CompiledTemplate | null;
  clientUrl: CompiledTemplate | null;
  tests: RuleTest[];
}

/** A `tests:` entry of a rule. */
export interface RuleTest {
  /** The rule whose `tests:` holds it. */
  rule: string;
  name: string;
  location: SourceLocation;
  input: { inline: RawTestInput } | { file: string };
  expect: RawExpectation & { fieldPaths: Array<[string, ValuePath]> };
  eventFieldPaths: Array<Array<[string, ValuePath]>>;
}
