import { mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { dirname, isAbsolute, join } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { parseConfig } from '../../src/config/load.js';
import { configSchema } from '../../src/config/schema.js';
import { decodeNotification } from '../../src/decode/decode.js';
import type { InputDocument, NotificationEnvelope } from '../../src/decode/types.js';
import { formatProblem, type Problem } from '../../src/errors.js';
import { buildRuleSet, DEFAULT_ROUTE, readRuleSources } from '../../src/rules/loader.js';
import { runRuleTests } from '../../src/rules/rule-tests.js';
import { ruleSchema } from '../../src/rules/schema.js';
import { testRoutingKey } from '../helpers/fake-pagerduty.js';
import { testTls } from '../helpers/fake-sns.js';
import { tempDir } from '../helpers/temp.js';
import { REPO_ROOT } from '../k8s/tools.js';
import { type CodeBlock, codeBlocks, readDoc } from './markdown.js';

/**
 * Every ```yaml block of the documentation (docs/*.md, README.md, k8s/README.md) parses, and is
 * checked by the relay's own loaders according to what it is:
 * - a list (a rule file): compiled with the built-in rules, as a file in `rules.paths` would be,
 *   and its `tests:` must pass;
 * - a mapping of rule keys (a rule without its list, e.g. a `match:` or `payload:` example):
 *   compiled as a one-rule file, named `docs-example` unless it has a name;
 * - a mapping of configuration sections: parseConfig. Secrets are provided the way Kubernetes
 *   does: every `*File` an example names is created (relative to a temporary config directory, so
 *   examples must use paths relative to the config file, which the manifests do), holding a valid
 *   test routing key, a password or the test TLS files; `${VAR}` references resolve from
 *   EXAMPLE_ENV below, so an example using a variable the test does not know fails, naming it;
 * - anything else must say why it is not checked, on its first line: `# not-validated: <reason>`.
 * Rule examples may send to `default` and to every route some configuration example defines.
 *
 * ```json blocks of docs/rules.md that are rule input documents (exactly the document's keys) must
 * be what the decoder makes of their own topic, subject, message and attributes.
 */

const DOC_FILES = [
  'README.md',
  'k8s/README.md',
  ...readdirSync(join(REPO_ROOT, 'docs'))
    .filter((f) => f.endsWith('.md'))
    .sort()
    .map((f) => `docs/${f}`),
];

/** What `${VAR}` references in configuration examples resolve to. */
const EXAMPLE_ENV: NodeJS.ProcessEnv = {
  PD_ROUTING_KEY: testRoutingKey('env-default'),
  PD_SECURITY_ROUTING_KEY: testRoutingKey('env-security'),
  PD_PAYMENTS_ROUTING_KEY: testRoutingKey('env-payments'),
};

const OPT_OUT = /^#\s*not-validated:\s*(\S.*)$/;
const CONFIG_KEYS = new Set(Object.keys(configSchema.shape));
const RULE_KEYS = new Set(Object.keys(ruleSchema.shape));

type Kind = 'rules' | 'rule' | 'config' | 'opt-out' | 'unknown';

interface Example extends CodeBlock {
  kind: Kind;
  value: unknown;
  parseErrors: string[];
  reason?: string;
}

function classify(block: CodeBlock): Example {
  const firstLine = block.text.split('\n').find((l) => l.trim() !== '') ?? '';
  const optOut = OPT_OUT.exec(firstLine.trim());
  const docs = parseAllDocuments(block.text, { uniqueKeys: true, strict: true });
  const all = Array.isArray(docs) ? docs : [];
  const parseErrors = all.flatMap((d) =>
    d.errors.map((e) => `line ${block.line + (e.linePos?.[0]?.line ?? 1) - 1}: ${e.message.split('\n')[0]}`),
  );
  if (all.length === 0) parseErrors.push('empty block');
  if (all.length > 1 && !optOut) parseErrors.push('several YAML documents in one block');
  const value = all[0]?.toJS({ maxAliasCount: 100 }) as unknown;
  const base = { ...block, value, parseErrors };
  if (optOut) return { ...base, kind: 'opt-out', reason: optOut[1] as string };
  if (Array.isArray(value)) return { ...base, kind: 'rules' };
  if (value && typeof value === 'object') {
    const keys = Object.keys(value);
    if (keys.length && keys.every((k) => CONFIG_KEYS.has(k))) return { ...base, kind: 'config' };
    if (keys.length && keys.every((k) => RULE_KEYS.has(k))) return { ...base, kind: 'rule' };
  }
  return { ...base, kind: 'unknown' };
}

// ---- input documents ------------------------------------------------------------------------------

const DOCUMENT_KEYS = [
  'account',
  'attributes',
  'endpoint',
  'kind',
  'message',
  'messageId',
  'region',
  'subject',
  'timestamp',
  'topic',
];

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function isInputDocument(v: unknown): v is InputDocument {
  return (
    !!v &&
    typeof v === 'object' &&
    !Array.isArray(v) &&
    isDeepStrictEqual(Object.keys(v).sort(), DOCUMENT_KEYS)
  );
}

/** The SNS envelope a document came from: its topic, subject, message and attributes. */
function envelopeOf(d: InputDocument): NotificationEnvelope {
  const attrs: NonNullable<NotificationEnvelope['MessageAttributes']> = {};
  for (const [name, v] of Object.entries(d.attributes)) {
    if (typeof v === 'number') attrs[name] = { Type: 'Number', Value: String(v) };
    else if (Array.isArray(v)) attrs[name] = { Type: 'String.Array', Value: JSON.stringify(v) };
    else attrs[name] = { Type: 'String', Value: v };
  }
  return {
    MessageId: d.messageId,
    TopicArn: d.topic,
    Subject: d.subject,
    Timestamp: d.timestamp,
    Message: typeof d.message === 'string' ? d.message : JSON.stringify(d.message),
    MessageAttributes: attrs,
  };
}

const examples: Example[] = [];
const inputDocuments: CodeBlock[] = [];
for (const path of DOC_FILES) {
  const doc = readDoc(path);
  if (!doc) continue; // README.md may not be written yet
  for (const block of codeBlocks(doc)) {
    if (block.lang === 'yaml' || block.lang === 'yml') examples.push(classify(block));
    if (block.lang === 'json' && isInputDocument(parseJson(block.text))) inputDocuments.push(block);
  }
}

/** A problem located inside a block, moved to its line in the Markdown file. */
function inDoc(block: CodeBlock, p: Problem, lineOffset = 0): string {
  const line = block.line + p.location.line - 1 - lineOffset;
  return formatProblem({ ...p, location: { file: block.doc, line, col: p.location.col } });
}

// ---- configuration examples ---------------------------------------------------------------------

/** Creates the files a configuration example names; returns the problems of absolute paths. */
function provideFiles(value: unknown, base: string): string[] {
  const problems: string[] = [];
  let n = 0;
  const walk = (v: unknown, path: Array<string | number>) => {
    if (Array.isArray(v)) {
      for (const [i, x] of v.entries()) walk(x, [...path, i]);
      return;
    }
    if (!v || typeof v !== 'object') return;
    for (const [k, x] of Object.entries(v)) {
      if (!k.endsWith('File') || typeof x !== 'string') {
        walk(x, [...path, k]);
        continue;
      }
      if (isAbsolute(x)) {
        problems.push(`${[...path, k].join('.')}: expected a path relative to the config file, got ${x}`);
        continue;
      }
      const tls = path[0] === 'server' && path[1] === 'tls';
      const content =
        tls && k === 'certFile'
          ? testTls.serverCertPem
          : tls
            ? testTls.serverKeyPem
            : k === 'passwordFile'
              ? 'an example password\n'
              : k === 'urlFile'
                ? 'postgres://relay:an-example-password@db.example.com:5432/alerts\n'
                : k === 'caFile'
                  ? testTls.caPem
                  : `${testRoutingKey(`file-${++n}`)}\n`;
      mkdirSync(dirname(join(base, x)), { recursive: true });
      writeFileSync(join(base, x), content);
    }
  };
  walk(value, []);
  return problems;
}

const configRoutes = new Set<string>([DEFAULT_ROUTE]);
const configResults = new Map<Example, string[]>();
for (const ex of examples.filter((e) => e.kind === 'config' && e.parseErrors.length === 0)) {
  const t = tempDir();
  try {
    const problems = provideFiles(ex.value, t.dir);
    const result = parseConfig(ex.text, ex.doc, { env: EXAMPLE_ENV, baseDir: t.dir });
    problems.push(...result.problems.map((p) => inDoc(ex, p)));
    if (result.config) for (const r of Object.keys(result.config.routes)) configRoutes.add(r);
    configResults.set(ex, problems);
  } finally {
    t.cleanup();
  }
}

// ---- rule examples --------------------------------------------------------------------------------

const builtins = readRuleSources({}).sources;

function checkRules(ex: Example): string[] {
  let text = ex.text;
  let offset = 0;
  if (ex.kind === 'rule') {
    // The rule as the one item of a list, lines kept where they are (plus one for an added name).
    const named = Object.hasOwn(ex.value as object, 'name');
    const lines = ex.text.split('\n');
    text = named
      ? lines
          .map((l, i) =>
            i === lines.findIndex((x) => /^\S/.test(x) && !x.startsWith('#')) ? `- ${l}` : `  ${l}`,
          )
          .join('\n')
      : ['- name: docs-example', ...lines.map((l) => `  ${l}`)].join('\n');
    offset = named ? 0 : 1;
  }
  const source = { path: join(REPO_ROOT, ex.doc), display: ex.doc, text, builtin: false };
  const built = buildRuleSet([...builtins, source], { routes: configRoutes, checkTestFiles: true });
  if (!built.ok) return built.problems.map((p) => inDoc(ex, p, offset));
  const failures: string[] = [];
  for (const r of runRuleTests(built.ruleSet)) {
    if (r.location.file !== ex.doc || r.ok) continue;
    const at = inDoc(ex, { location: r.location, path: '', message: '' }, offset).replace(/ $/, '');
    failures.push(`${at} test "${r.name}" of ${r.rule}: ${r.failures.join('; ')}`);
  }
  return failures;
}

// ---- the tests ------------------------------------------------------------------------------------

describe('YAML examples in the documentation', () => {
  it('finds the examples (the test can fail)', () => {
    const kinds = new Set(examples.map((e) => e.kind));
    for (const kind of ['rules', 'rule', 'config'] as const) expect(kinds, kind).toContain(kind);
  });

  it.each(examples.map((e) => [`${e.doc}:${e.line} (${e.kind})`, e] as const))('%s', (_name, ex) => {
    expect(ex.parseErrors, 'YAML syntax').toEqual([]);
    switch (ex.kind) {
      case 'opt-out':
        expect(ex.reason?.length ?? 0).toBeGreaterThan(3);
        return;
      case 'unknown':
        throw new Error(
          `${ex.doc}:${ex.line}: expected a rule file (a list), a rule (rule keys), a configuration (config sections) or a first line "# not-validated: <reason>"`,
        );
      case 'config':
        expect(configResults.get(ex)).toEqual([]);
        return;
      default:
        expect(checkRules(ex)).toEqual([]);
    }
  });

  it('opts out only a few blocks', () => {
    const optedOut = examples.filter((e) => e.kind === 'opt-out');
    expect(optedOut.length).toBeLessThanOrEqual(Math.max(3, Math.floor(examples.length / 5)));
  });
});

describe('input documents in the documentation', () => {
  it.each(inputDocuments.map((b) => [`${b.doc}:${b.line}`, b] as const))(
    '%s is what the decoder makes of its message',
    (_name, block) => {
      const documented = JSON.parse(block.text) as InputDocument;
      expect(decodeNotification(envelopeOf(documented), documented.endpoint)).toEqual(documented);
    },
  );
});
