import { parse, stringify } from 'yaml';
import type { Rng } from './rng.js';

/** One generated file: its bytes and how they were made (for the failure message). */
export interface MutatedFile {
  bytes: Buffer;
  how: string;
}

/** Pieces of YAML (and of what rule and config files embed: Liquid, ${ENV}, patterns) to splice in. */
const TOKENS = [
  ':',
  ': ',
  '- ',
  '-',
  '{',
  '}',
  '[',
  ']',
  ',',
  '? ',
  '|',
  '|-',
  '>',
  '>+',
  '#',
  '"',
  "'",
  '\t',
  '\n',
  '\r\n',
  '\r',
  '  ',
  '    ',
  '&a ',
  '*a',
  '&x ',
  '*x',
  '<<: *a',
  '!!binary ',
  '!!str ',
  '!!int ',
  '!!float ',
  '!!map ',
  '!!seq ',
  '!!set ',
  '!!omap ',
  '!!timestamp ',
  '!tag ',
  '!<tag:x> ',
  '%YAML 1.1\n',
  '%TAG ! tag:x:\n',
  '---\n',
  '...\n',
  'null',
  '~',
  '.inf',
  '-.inf',
  '.nan',
  '0x1F',
  '0o17',
  '1e400',
  '-0',
  '99999999999999999999',
  '1_000',
  'true',
  'yes',
  'on',
  'no',
  '2001-12-14t21:59:43.10-05:00',
  '${PD_RELAY_FUZZ_UNSET}',
  '${PD_RELAY_FUZZ_SET}',
  '${PD_RELAY_FUZZ_SET:-x}',
  '${',
  '$$',
  '{{',
  '}}',
  '{{ message.',
  '{%',
  '%}',
  '{% if %}',
  '{% for x in y %}',
  '| upcase',
  '| nonexistent_filter',
  '{{ a | date: "%s" }}',
  'prefix:',
  'anything-but:',
  'numeric: [">", 1]',
  'exists: true',
  '$or:',
  'wildcard: "*"',
  '\u0000',
  '\ufeff',
  '\u2028',
  '\ud800',
  '\u00e9',
  '\u{1f4df}',
  'é',
  '\\',
  '\\u',
  '__proto__',
  'constructor',
  'prototype',
  'toString',
  'hasOwnProperty',
];

/** Values a structure-aware mutation puts where another value was. */
const VALUES: unknown[] = [
  null,
  true,
  false,
  0,
  -1,
  1.5,
  1e300,
  -1e300,
  Number.MAX_SAFE_INTEGER + 2,
  '',
  ' ',
  'x',
  'default',
  'arn:aws:sns:*:123456789012:*',
  '{{',
  '{{ message.x }}',
  '{% raw %}',
  '${PD_RELAY_FUZZ_UNSET}',
  [],
  {},
  [1, 2],
  ['a'],
  { a: 1 },
  { prefix: 'x' },
  [{ numeric: ['>', 'x'] }],
  'x'.repeat(5000),
  '\u0000',
  '\ud800',
  '__proto__',
];

const KEYS = [
  'name',
  'match',
  'action',
  'route',
  'dedup_key',
  'payload',
  'summary',
  'severity',
  'custom_details',
  'tests',
  'input',
  'expect',
  'fields',
  'continue',
  'fallback',
  'enabled',
  'for_each',
  'links',
  'images',
  'client',
  'client_url',
  'server',
  'port',
  'host',
  'metrics',
  'sns',
  'topics',
  'routes',
  'keys',
  'alias',
  'key',
  'keyFile',
  'basicAuth',
  'password',
  'passwordFile',
  'tls',
  'certFile',
  'rules',
  'paths',
  'spool',
  'dir',
  'delivery',
  'log',
  'level',
  'unknownKey',
  '__proto__',
  'constructor',
  '',
  ' ',
  '0',
];

/** A byte- or line-level mutation of `text` (the file as written on disk). */
export function mutateText(rng: Rng, text: string, donors: readonly string[]): MutatedFile {
  let bytes = Buffer.from(text, 'utf8');
  const hows: string[] = [];
  const rounds = rng.weighted([
    [6, 1],
    [3, 2],
    [1, rng.range(3, 8)],
  ] as const);
  for (let r = 0; r < rounds; r++) {
    const at = rng.int(bytes.length + 1);
    const kind = rng.weighted([
      [3, 'flip'],
      [2, 'delete'],
      [3, 'insert-token'],
      [1, 'insert-bytes'],
      [1, 'truncate'],
      [2, 'line'],
      [1, 'splice'],
    ] as const);
    switch (kind) {
      case 'flip': {
        const copy = Buffer.from(bytes);
        if (copy.length) {
          const i = Math.min(at, copy.length - 1);
          copy[i] = rng.chance(0.5) ? (copy[i] as number) ^ (1 << rng.int(8)) : rng.int(256);
        }
        bytes = copy;
        hows.push(`flip@${at}`);
        break;
      }
      case 'delete': {
        const n = rng.range(1, 40);
        bytes = Buffer.concat([bytes.subarray(0, at), bytes.subarray(at + n)]);
        hows.push(`delete ${n}@${at}`);
        break;
      }
      case 'insert-token': {
        const token = rng.pick(TOKENS);
        bytes = Buffer.concat([bytes.subarray(0, at), Buffer.from(token, 'utf8'), bytes.subarray(at)]);
        hows.push(`insert ${JSON.stringify(token)}@${at}`);
        break;
      }
      case 'insert-bytes': {
        // Invalid UTF-8 on purpose: lone continuation bytes, overlongs, surrogates, 0xFF.
        const junk = rng.pick([
          Buffer.from([0x80]),
          Buffer.from([0xc0, 0xaf]),
          Buffer.from([0xed, 0xa0, 0x80]),
          Buffer.from([0xff, 0xfe]),
          Buffer.from([0xf4, 0x90, 0x80, 0x80]),
          rng.bytes(rng.range(1, 16)),
        ]);
        bytes = Buffer.concat([bytes.subarray(0, at), junk, bytes.subarray(at)]);
        hows.push(`bytes ${junk.toString('hex')}@${at}`);
        break;
      }
      case 'truncate':
        bytes = bytes.subarray(0, at);
        hows.push(`truncate@${at}`);
        break;
      case 'line': {
        const lines = bytes.toString('utf8').split('\n');
        const i = rng.int(lines.length);
        const j = rng.int(lines.length);
        const op = rng.pick(['duplicate', 'remove', 'swap', 'indent', 'dedent', 'tab'] as const);
        if (op === 'duplicate') lines.splice(i, 0, lines[i] ?? '');
        else if (op === 'remove') lines.splice(i, 1);
        else if (op === 'swap') [lines[i], lines[j]] = [lines[j] ?? '', lines[i] ?? ''];
        else if (op === 'indent') lines[i] = ' '.repeat(rng.range(1, 4)) + (lines[i] ?? '');
        else if (op === 'dedent') lines[i] = (lines[i] ?? '').replace(/^ {1,2}/, '');
        else lines[i] = (lines[i] ?? '').replace(/^ +/, '\t');
        bytes = Buffer.from(lines.join('\n'), 'utf8');
        hows.push(`line ${op} ${i}/${j}`);
        break;
      }
      case 'splice': {
        const donor = rng.pick(donors).split('\n');
        const from = rng.int(donor.length);
        const piece = donor.slice(from, from + rng.range(1, 6)).join('\n');
        const lines = bytes.toString('utf8').split('\n');
        lines.splice(rng.int(lines.length + 1), 0, piece);
        bytes = Buffer.from(lines.join('\n'), 'utf8');
        hows.push(`splice ${from}`);
        break;
      }
    }
  }
  return { bytes, how: hows.join(', ') };
}

/** A mutation of the parsed document: a value swapped, a key removed, renamed or added. */
export function mutateStructure(rng: Rng, text: string): MutatedFile {
  let doc: unknown;
  try {
    doc = parse(text);
  } catch {
    return { bytes: Buffer.from(text), how: 'unparsable seed' };
  }
  const hows: string[] = [];
  const rounds = rng.range(1, 3);
  for (let r = 0; r < rounds; r++) {
    const { parent, key, path } = randomSlot(rng, doc);
    if (parent === undefined) {
      doc = structuredClone(rng.pick(VALUES));
      hows.push('root=value');
      continue;
    }
    const op = rng.weighted([
      [4, 'value'],
      [2, 'remove'],
      [1, 'rename'],
      [2, 'add'],
      [1, 'wrap'],
    ] as const);
    const container = parent as Record<string | number, unknown>;
    if (op === 'value') container[key] = structuredClone(rng.pick(VALUES));
    else if (op === 'remove') {
      if (Array.isArray(container)) container.splice(Number(key), 1);
      else delete container[key];
    } else if (op === 'rename' && !Array.isArray(container)) {
      const value = container[key];
      delete container[key];
      container[typo(rng, String(key))] = value;
    } else if (op === 'add') {
      if (Array.isArray(container)) container.push(structuredClone(rng.pick(VALUES)));
      else container[rng.pick(KEYS)] = structuredClone(rng.pick(VALUES));
    } else container[key] = rng.chance(0.5) ? [container[key]] : { value: container[key] };
    hows.push(`${op} ${path.join('.')}`);
  }
  let out: string;
  try {
    out = stringify(doc, { aliasDuplicateObjects: false, lineWidth: 0 });
  } catch {
    out = JSON.stringify(doc) ?? '';
  }
  return { bytes: Buffer.from(out, 'utf8'), how: `structure: ${hows.join(', ')}` };
}

/** A document made from nothing: random nesting of maps, lists and scalars, or a token soup. */
export function randomYaml(rng: Rng): MutatedFile {
  if (rng.chance(0.3)) {
    const parts: string[] = [];
    const n = rng.range(1, 60);
    for (let i = 0; i < n; i++) parts.push(rng.chance(0.7) ? rng.pick(TOKENS) : rng.pick(KEYS));
    return { bytes: Buffer.from(parts.join(rng.pick(['', ' ', '\n'])), 'utf8'), how: 'token soup' };
  }
  const value = randomValue(rng, rng.range(0, 5));
  const text = rng.chance(0.5)
    ? stringify(value, { lineWidth: 0 })
    : stringify(value, { lineWidth: 0, collectionStyle: 'flow' });
  return { bytes: Buffer.from(text, 'utf8'), how: 'random document' };
}

function randomValue(rng: Rng, depth: number): unknown {
  if (depth <= 0 || rng.chance(0.3)) return structuredClone(rng.pick(VALUES));
  if (rng.chance(0.5)) {
    return Array.from({ length: rng.range(0, 4) }, () => randomValue(rng, depth - 1));
  }
  const out: Record<string, unknown> = {};
  for (let i = rng.range(0, 5); i > 0; i--) out[rng.pick(KEYS)] = randomValue(rng, depth - 1);
  return out;
}

/** A random container slot (parent and key) in `doc`, walking down from the root. */
function randomSlot(
  rng: Rng,
  doc: unknown,
): { parent: object | undefined; key: string | number; path: Array<string | number> } {
  let parent: object | undefined;
  let key: string | number = '';
  let cur: unknown = doc;
  const path: Array<string | number> = [];
  for (;;) {
    const keys: Array<string | number> = Array.isArray(cur)
      ? cur.map((_, i) => i)
      : cur && typeof cur === 'object'
        ? Object.keys(cur)
        : [];
    if (keys.length === 0 || (parent !== undefined && rng.chance(0.3))) return { parent, key, path };
    parent = cur as object;
    key = rng.pick(keys);
    path.push(key);
    cur = (cur as Record<string | number, unknown>)[key];
  }
}

function typo(rng: Rng, word: string): string {
  if (word.length === 0) return 'x';
  const i = rng.int(word.length);
  return rng.pick([
    word.slice(0, i) + word.slice(i + 1),
    word.slice(0, i) + String.fromCharCode(97 + rng.int(26)) + word.slice(i),
    word.toUpperCase(),
    `${word}s`,
  ]);
}
