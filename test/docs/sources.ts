import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { z } from 'zod';
import { configSchema } from '../../src/config/schema.js';
import { loadRuleSet } from '../../src/rules/loader.js';
import { REPO_ROOT } from '../k8s/tools.js';

/** How a record's entry appears in configuration key paths (`routes.<name>.keys`). */
export const RECORD_SEGMENT = '<name>';

interface JsonSchema {
  type?: string;
  properties?: Record<string, JsonSchema>;
  additionalProperties?: JsonSchema | boolean;
}

/** Every leaf key of the configuration schema, records written with RECORD_SEGMENT. */
export function configKeys(): string[] {
  const root = z.toJSONSchema(configSchema, { io: 'input', unrepresentable: 'any' }) as JsonSchema;
  const keys: string[] = [];
  const walk = (node: JsonSchema, path: string[]) => {
    if (node.type === 'object' && node.properties && Object.keys(node.properties).length) {
      for (const [k, v] of Object.entries(node.properties)) walk(v, [...path, k]);
    } else if (node.type === 'object' && typeof node.additionalProperties === 'object') {
      walk(node.additionalProperties, [...path, RECORD_SEGMENT]);
    } else keys.push(path.join('.'));
  };
  walk(root, []);
  return keys;
}

/** The names of the built-in rules, in evaluation order. */
export function builtinRuleNames(): string[] {
  const loaded = loadRuleSet({ paths: [] });
  if (!loaded.ok) throw new Error('The built-in rules do not load');
  return loaded.ruleSet.rules.map((r) => r.name);
}

/** An alerting rule of k8s/base/prometheusrule.yaml. */
export interface AlertRule {
  alert: string;
  annotations?: Record<string, string>;
}

/** The alerts of k8s/base/prometheusrule.yaml. */
export function alertRules(): AlertRule[] {
  const doc = parse(readFileSync(join(REPO_ROOT, 'k8s/base/prometheusrule.yaml'), 'utf8')) as {
    spec: { groups: Array<{ rules: Array<Partial<AlertRule>> }> };
  };
  return doc.spec.groups.flatMap((g) => g.rules).filter((r): r is AlertRule => typeof r.alert === 'string');
}
