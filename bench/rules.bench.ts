// Decode + match + render of the built-in rule set over the real corpus messages, beside a plain
// JSON.parse of the same messages measured in the same run (the machine is shared and noisy:
// compare the ratio). Single-threaded, so messages/s is per core. Target: >= 20,000 messages/s.
//   npm run bench rules
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { decodeNotification } from '../src/decode/decode.js';
import { envelopeFromSample, wrapMessage } from '../src/decode/sample.js';
import type { NotificationEnvelope } from '../src/decode/types.js';
import { formatProblem } from '../src/errors.js';
import { createRuleEngine } from '../src/rules/engine.js';
import { loadRuleSet } from '../src/rules/loader.js';
import { liquid } from '../src/rules/templates.js';

const TARGET = 20_000;
const ROUND_MS = 1_000;
const ROUNDS = 5;

const repo = fileURLToPath(new URL('../', import.meta.url));
const corpus = process.env.PD_RELAY_CORPUS
  ? resolve(process.env.PD_RELAY_CORPUS)
  : resolve(repo, '../shared/corpus');
const messagesDir = join(corpus, 'messages');
if (!existsSync(messagesDir)) {
  console.log(`Corpus not found at ${messagesDir} (set PD_RELAY_CORPUS): skipping the rules benchmark.`);
  process.exit(0);
}

// The real messages: SNS Messages, Lambda SNS events and envelopes as they are; CloudTrail records
// wrapped as EventBridge delivers them. The CONSTRUCTED (not real) file is left out.
const samples: Array<{ name: string; envelope: NotificationEnvelope }> = [];
const walk = (dir: string): string[] =>
  readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    return statSync(p).isDirectory() ? walk(p) : p.endsWith('.json') ? [p] : [];
  });
for (const file of walk(messagesDir).sort()) {
  const name = relative(messagesDir, file);
  if (name.startsWith('CONSTRUCTED/')) continue;
  const text = readFileSync(file, 'utf8');
  if (name.startsWith('cloudtrail-records/')) {
    const parsed = JSON.parse(text) as { Records?: Array<Record<string, unknown>> };
    const record = (parsed.Records?.[0] ?? parsed) as Record<string, unknown>;
    const event = {
      version: '0',
      id: '11111111-2222-4333-8444-555555555555',
      'detail-type':
        record.eventType === 'AwsConsoleSignIn'
          ? 'AWS Console Sign In via CloudTrail'
          : 'AWS API Call via CloudTrail',
      source: `aws.${String(record.eventSource).split('.')[0]}`,
      account: record.recipientAccountId ?? '123456789012',
      time: record.eventTime,
      region: record.awsRegion,
      resources: [],
      detail: record,
    };
    samples.push({ name, envelope: wrapMessage(JSON.stringify(event), event) });
  } else {
    samples.push({ name, envelope: envelopeFromSample(text).envelope });
  }
}

const loaded = loadRuleSet();
if (!loaded.ok) {
  console.error(loaded.problems.map(formatProblem).join('\n'));
  process.exit(1);
}
const engine = createRuleEngine(loaded.ruleSet);

// Proof that nothing is parsed per message: count Liquid parses during the measured runs.
let parses = 0;
const parse = liquid.parse.bind(liquid);
liquid.parse = ((...args: Parameters<typeof parse>) => {
  parses++;
  return parse(...args);
}) as typeof liquid.parse;

let sink = 0;
const rulesOp = (env: NotificationEnvelope) => {
  const ev = engine.evaluate(decodeNotification(env, 'default'));
  sink += ev.events.length;
};
const parseOp = (env: NotificationEnvelope) => {
  const v = JSON.parse(env.Message) as unknown;
  sink += v ? 1 : 0;
};

/** Messages per second over the whole sample set, run round-robin for `ms`. */
function measure(op: (env: NotificationEnvelope) => void, ms: number): number {
  let count = 0;
  const start = performance.now();
  let now = start;
  while (now - start < ms) {
    for (const s of samples) op(s.envelope);
    count += samples.length;
    now = performance.now();
  }
  return (count * 1000) / (now - start);
}

measure(rulesOp, 300);
measure(parseOp, 300);
parses = 0;
const rulesRates: number[] = [];
const parseRates: number[] = [];
for (let i = 0; i < ROUNDS; i++) {
  rulesRates.push(measure(rulesOp, ROUND_MS));
  parseRates.push(measure(parseOp, ROUND_MS));
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
const rules = median(rulesRates);
const baseline = median(parseRates);

// Per-message cost, to see which formats are expensive.
const perMessage = samples.map((s) => {
  const n = 2_000;
  const start = performance.now();
  for (let i = 0; i < n; i++) rulesOp(s.envelope);
  return { name: s.name, us: ((performance.now() - start) * 1000) / n };
});

const fmt = (n: number) => Math.round(n).toLocaleString('en-US');
console.log(
  `corpus: ${samples.length} real messages (${messagesDir}); ${loaded.ruleSet.rules.length} built-in rules`,
);
console.log(`median of ${ROUNDS} rounds of ${ROUND_MS} ms each, one core:`);
console.log(
  `  decode + match + render : ${fmt(rules).padStart(10)} messages/s  (${(1e6 / rules).toFixed(1)} µs/message)`,
);
console.log(
  `  baseline JSON.parse     : ${fmt(baseline).padStart(10)} messages/s  (${(1e6 / baseline).toFixed(1)} µs/message)`,
);
console.log(`  ratio baseline / rules  : ${(baseline / rules).toFixed(1)}x`);
console.log(
  `  target                  : ${fmt(TARGET).padStart(10)} messages/s  -> ${rules >= TARGET ? 'met' : 'NOT met'}`,
);
console.log(`  Liquid parses during the measured runs: ${parses}`);
console.log('  slowest messages:');
for (const m of perMessage.sort((a, b) => b.us - a.us).slice(0, 5))
  console.log(`    ${m.us.toFixed(1).padStart(7)} µs  ${m.name}`);
if (sink < 0) console.log(sink);
