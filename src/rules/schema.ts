import { z } from 'zod';
import { NAME_PATTERN } from '../config/schema.js';

/**
 * The shape of a rule file (docs/rules.md documents every key). Validated with zod for structure
 * and unknown keys; `match` patterns, templates, paths and routes are then checked by the loader,
 * which knows where each value sits in the file.
 */

/** A template is text; YAML numbers and booleans (`severity: 1`? `dedup_key: 42`) count as text. */
const template = z.union([z.string(), z.number(), z.boolean()]).transform((v) => String(v));

const name = z.string().regex(NAME_PATTERN, {
  message:
    'Expected a rule name of letters, digits, "_", "." or "-" (at most 63, starting with a letter or digit)',
});

/** custom_details entry: a template, or `{ path: message.detail }` to include a value whole. */
const detailValue = z.union([template, z.strictObject({ path: z.string() })]);

const payload = z.strictObject({
  summary: template.optional(),
  source: template.optional(),
  severity: template.optional(),
  timestamp: template.optional(),
  component: template.optional(),
  group: template.optional(),
  class: template.optional(),
  custom_details: z.union([z.string(), z.record(z.string(), detailValue)]).optional(),
});

const link = z.strictObject({ href: template, text: template.optional() });
const image = z.strictObject({ src: template, href: template.optional(), alt: template.optional() });

const attributeValue = z.union([z.string(), z.number(), z.array(z.unknown())]);

/** A test's input: the parts of an SNS Notification a rule can see. */
const testInput = z.strictObject({
  message: z.unknown().optional(),
  subject: z.string().nullable().optional(),
  topic: z.string().optional(),
  endpoint: z.string().optional(),
  timestamp: z.string().optional(),
  messageId: z.string().optional(),
  attributes: z.record(z.string(), attributeValue).optional(),
});

const expectedEvent = z.strictObject({
  route: z.string().optional(),
  fields: z.record(z.string(), z.unknown()).optional(),
});

const expectation = z.strictObject({
  rule: z.string().nullable().optional(),
  action: z.enum(['trigger', 'acknowledge', 'resolve', 'change', 'drop']).optional(),
  route: z.string().optional(),
  count: z.number().int().min(0).optional(),
  fields: z.record(z.string(), z.unknown()).optional(),
  events: z.array(expectedEvent).optional(),
});

const ruleTest = z.strictObject({
  name: z.string().optional(),
  input: testInput.optional(),
  input_file: z.string().min(1).optional(),
  expect: expectation,
});

export const ruleSchema = z.strictObject({
  name,
  description: z.string().optional(),
  enabled: z.boolean().optional(),
  match: z.unknown().optional(),
  continue: z.boolean().optional(),
  fallback: z.boolean().optional(),
  for_each: z.string().optional(),
  route: template.optional(),
  action: template.optional(),
  dedup_key: template.optional(),
  payload: payload.optional(),
  links: z.array(link).optional(),
  images: z.array(image).optional(),
  client: template.optional(),
  client_url: template.optional(),
  tests: z.array(ruleTest).optional(),
});

export const ruleFileSchema = z.array(ruleSchema);

export type RawRule = z.output<typeof ruleSchema>;
export type RawRuleTest = z.output<typeof ruleTest>;
export type RawExpectation = z.output<typeof expectation>;
export type RawTestInput = z.output<typeof testInput>;
