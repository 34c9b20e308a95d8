import type { KeyObject } from 'node:crypto';
import { type Envelope, type FakeSns, signEnvelope } from '../helpers/fake-sns.js';
import type { Rng } from './rng.js';
import { app, closed, node, type Outcome, type SnsModel, type SnsType, type Verdict } from './sns-model.js';

/**
 * The HTTP fuzz's request generators. Every case carries the answers it may get (its oracle):
 * exact ones from the reference model (sns-model.ts) for the body, after the HTTP layer — routing,
 * basic auth, method, body size — that the generator knows it built. Families:
 * - genuine messages, sent in every way SNS (or a proxy) might send them;
 * - field mutations of signed envelopes (dropped, retyped, re-valued, duplicated keys);
 * - byte mutations of signed envelopes (flips, insertions, deletions, truncation, invalid UTF-8);
 * - signature and SigningCertURL manipulations, subscription confirmations, foreign topics;
 * - HTTP tricks (methods, paths, headers, basic auth) and malformed framing answered by Node;
 * - sizes (900 KB strings, bodies at and over server.maxBodyBytes, 10,000-level nesting).
 */

export interface FuzzCase {
  family: string;
  /** The request bytes, in the pieces they are written in. */
  pieces: Buffer[];
  head?: boolean;
  /** Every acceptable answer. */
  outcomes: Outcome[];
  /** Set when the body is a genuine SNS message that reaches the handler. */
  genuine?: Verdict['genuine'];
  why: string;
}

export interface CaseContext {
  rng: Rng;
  sns: FakeSns;
  model: SnsModel;
  /** `Basic …` for the configured credentials. */
  authorization: string;
  username: string;
  password: string;
  maxBodyBytes: number;
  topic: string;
  /** A topic of an account outside the allow-list. */
  foreignTopic: string;
  /** An RSA key that is not the one behind the served certificate. */
  foreignKey: KeyObject;
  /** URLs on the certificate host: another (valid) certificate, garbage, nothing, a hang. */
  otherCertUrl: string;
  garbageCertUrl: string;
  missingCertUrl: string;
  hangCertUrl: string;
  /** A port on 127.0.0.1 where nothing listens. */
  closedPort: number;
  /**
   * Messages genuinely signed by AWS (../shared/corpus), their SigningCertURL pointed at the
   * certificate host, which serves the real AWS certificates. Empty without the corpus.
   */
  corpus: ReadonlyArray<{ name: string; env: Envelope }>;
}

/** A request as the generators describe it; `serialize` turns it into bytes. */
export interface HttpRequest {
  method?: string;
  target?: string;
  version?: string;
  /** Headers in order, repeats allowed. Defaults fill in what is missing unless `bare`. */
  headers?: Array<[string, string]>;
  body: Buffer;
  /** How the body is framed: Content-Length (default), chunked, or nothing. */
  framing?: 'length' | 'chunked' | 'none';
  /** No default headers at all. */
  bare?: boolean;
  /** Leave these default headers out. */
  omit?: string[];
}

const ENDPOINTS = [
  '/sns',
  '/sns/default',
  '/sns/team-payments_2',
  `/sns/${'a'.repeat(64)}`,
  '/sns?x=1',
  '/sns/ops?Action=x',
];

/** Serializes a request byte-exact; chunked bodies are cut at random places. */
export function serialize(rng: Rng, req: HttpRequest): Buffer {
  const head: string[] = [`${req.method ?? 'POST'} ${req.target ?? '/sns'} ${req.version ?? 'HTTP/1.1'}`];
  const headers = [...(req.headers ?? [])];
  const has = (name: string) => headers.some(([n]) => n.toLowerCase() === name);
  const framing = req.framing ?? 'length';
  if (!req.bare) {
    const omit = new Set(req.omit ?? []);
    const add = (n: string, v: string) => {
      if (!omit.has(n.toLowerCase()) && !has(n.toLowerCase())) headers.push([n, v]);
    };
    add('Host', 'relay.example');
    add('Connection', 'close');
    if (framing === 'length') add('Content-Length', String(req.body.length));
    if (framing === 'chunked') add('Transfer-Encoding', 'chunked');
  }
  for (const [n, v] of headers) head.push(`${n}: ${v}`);
  const headBytes = Buffer.from(`${head.join('\r\n')}\r\n\r\n`, 'latin1');
  if (framing !== 'chunked') return Buffer.concat([headBytes, req.body]);
  const parts: Buffer[] = [headBytes];
  let at = 0;
  while (at < req.body.length) {
    const n = Math.min(req.body.length - at, rng.chance(0.5) ? rng.range(1, 64) : rng.range(64, 65_536));
    parts.push(
      Buffer.from(`${n.toString(16)}\r\n`, 'latin1'),
      req.body.subarray(at, at + n),
      Buffer.from('\r\n'),
    );
    at += n;
  }
  parts.push(Buffer.from('0\r\n\r\n', 'latin1'));
  return Buffer.concat(parts);
}

/** A v4-shaped UUID from the run's generator (MessageIds repeat with the seed). */
export function uuid(rng: Rng): string {
  const hex = Array.from({ length: 32 }, () => rng.int(16).toString(16)).join('');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-4${hex.slice(13, 16)}-${'89ab'[rng.int(4)]}${hex.slice(17, 20)}-${hex.slice(20)}`;
}

/** SNS's default headers for an envelope (the ones SNS sends; the relay reads only the type). */
function snsHeaders(ctx: CaseContext, env: Envelope): Array<[string, string]> {
  return [
    ['Content-Type', 'text/plain; charset=UTF-8'],
    ['User-Agent', 'Amazon Simple Notification Service Agent'],
    ['x-amz-sns-message-type', String(env.Type)],
    ['x-amz-sns-message-id', String(env.MessageId)],
    ['x-amz-sns-topic-arn', String(env.TopicArn)],
    ['Authorization', ctx.authorization],
  ];
}

// ---- message contents ---------------------------------------------------------------------------

const WORDS = ['disk', 'full', 'on', 'db-1', 'deploy', 'failed', 'latency', 'p99', 'queue', 'backlog', 'ok'];
/** Keys that no built-in rule reads (the decoder's kinds stay json/text: only the catch-all matches). */
const JSON_KEYS = [
  'service',
  'status',
  'count',
  'tags',
  'owner',
  'region-x',
  'détail',
  '🔥',
  '',
  '__proto__',
  'constructor',
];
const ODD_TEXT = [
  '\u0000',
  '\u2028',
  '\u2029',
  '\ud800',
  '\udfff',
  '\ufeff',
  '\u202e',
  '\u0301',
  '\u200b',
  '🚨',
  '漢字',
  'مرحبا',
  '\\',
  '"',
  '\n',
  '\r\n',
  '\t',
  '{{ 7 * 7 }}',
  '{% raw %}',
  '${PATH}',
  '<script>',
  "'; DROP TABLE spool; --",
];

function words(rng: Rng, n: number): string {
  return Array.from({ length: n }, () => (rng.chance(0.15) ? rng.pick(ODD_TEXT) : rng.pick(WORDS))).join(' ');
}

function jsonValue(rng: Rng, depth: number): unknown {
  const r = rng.int(depth > 0 ? 8 : 5);
  if (r === 0) return null;
  if (r === 1) return rng.chance(0.5);
  if (r === 2) return rng.pick([0, -1, 1.5, 1e21, -0, 2 ** 53 + 1]);
  if (r <= 4) return words(rng, rng.range(0, 4));
  if (r <= 5) return Array.from({ length: rng.range(0, 4) }, () => jsonValue(rng, depth - 1));
  const o: Record<string, unknown> = {};
  for (let i = rng.range(0, 4); i > 0; i--) o[rng.pick(JSON_KEYS)] = jsonValue(rng, depth - 1);
  return o;
}

/** A Message: text, JSON, or the occasional monster. */
export function messageText(rng: Rng, big = false): string {
  if (big) {
    return rng.pick([
      () => 'x'.repeat(900_000),
      () => JSON.stringify({ blob: 'y'.repeat(900_000) }),
      () => JSON.stringify(Array.from({ length: 150_000 }, (_, i) => i % 10)),
      () => `${'['.repeat(10_000)}${']'.repeat(10_000)}`,
      () => `${'{"a":'.repeat(100_000)}1${'}'.repeat(100_000)}`,
      () => `${'é'.repeat(200_000)}`,
    ])();
  }
  return rng.weighted<() => string>([
    [4, () => words(rng, rng.range(1, 30))],
    [3, () => JSON.stringify(jsonValue(rng, 3))],
    [1, () => JSON.stringify({ service: words(rng, 1), status: 'failed', items: jsonValue(rng, 2) })],
    [1, () => ''],
    [1, () => `${'['.repeat(200)}${']'.repeat(200)}`],
    [1, () => `{${words(rng, 3)}`],
  ])();
}

function subject(rng: Rng): string | undefined {
  return rng.weighted<string | undefined>([
    [3, undefined],
    [3, words(rng, rng.range(1, 8))],
    [1, ''],
    [1, 'x'.repeat(rng.range(100, 2000))],
  ]);
}

function attributes(rng: Rng): Record<string, { Type: string; Value: string }> | undefined {
  if (rng.chance(0.6)) return undefined;
  const out: Record<string, { Type: string; Value: string }> = {};
  for (let i = rng.range(0, 5); i > 0; i--) {
    const type = rng.pick(['String', 'Number', 'Number.float', 'Binary', 'String.Array', 'String.custom']);
    const value =
      type === 'String.Array'
        ? rng.pick(['["a",1,true,null]', '[oops', `${'['.repeat(300)}${']'.repeat(300)}`, '[]'])
        : type.startsWith('Number')
          ? rng.pick(['1', '-2.5', 'NaN', '1e999', 'many', ''])
          : words(rng, rng.range(0, 3));
    out[rng.pick(['team', 'priority', 'env', '__proto__', 'a b', 'é', ''])] = { Type: type, Value: value };
  }
  return out;
}

// ---- signed bases --------------------------------------------------------------------------------

/** A fresh, genuinely signed Notification with a MessageId of its own. */
export function notification(
  ctx: CaseContext,
  opts: { message?: string; topic?: string; version?: string; key?: KeyObject; attributes?: boolean } = {},
): Envelope {
  const { rng, sns } = ctx;
  const topic = opts.topic ?? ctx.topic;
  const subj = subject(rng);
  const attrs = opts.attributes === false ? undefined : attributes(rng);
  const env: Envelope = {
    Type: 'Notification',
    MessageId: uuid(rng),
    TopicArn: topic,
    ...(subj !== undefined ? { Subject: subj } : {}),
    Message: opts.message ?? messageText(rng),
    Timestamp: new Date(Date.UTC(2025, 0, 1) + rng.int(1e10)).toISOString(),
    SignatureVersion: opts.version ?? rng.pick(['1', '2']),
    Signature: '',
    SigningCertURL: sns.signingCertUrl,
    UnsubscribeURL: `${sns.origin}/?Action=Unsubscribe&SubscriptionArn=${topic}:${uuid(rng)}`,
    ...(attrs ? { MessageAttributes: attrs } : {}),
  };
  return opts.key ? signEnvelope(env, opts.key) : sns.sign(env);
}

/** A fresh, genuinely signed SubscriptionConfirmation or UnsubscribeConfirmation. */
export function confirmation(
  ctx: CaseContext,
  type: Exclude<SnsType, 'Notification'>,
  subscribeUrl?: string,
): Envelope {
  const { rng, sns } = ctx;
  const token = Array.from({ length: 256 }, () => rng.int(16).toString(16)).join('');
  const env: Envelope = {
    Type: type,
    MessageId: uuid(rng),
    Token: token,
    TopicArn: ctx.topic,
    Message: `You have chosen to ${type === 'SubscriptionConfirmation' ? 'subscribe to' : 'unsubscribe from'} the topic ${ctx.topic}.`,
    SubscribeURL:
      subscribeUrl ??
      `${sns.origin}/?Action=ConfirmSubscription&TopicArn=${encodeURIComponent(ctx.topic)}&Token=${token}`,
    Timestamp: new Date(Date.UTC(2025, 0, 1) + rng.int(1e10)).toISOString(),
    SignatureVersion: rng.pick(['1', '2']),
    Signature: '',
    SigningCertURL: sns.signingCertUrl,
  };
  return sns.sign(env);
}

// ---- building cases --------------------------------------------------------------------------------

/**
 * A POST of `body` that passes the HTTP layer (path, credentials, size): its answers are the
 * model's for the body. `req` may vary anything that does not change that.
 */
function post(
  ctx: CaseContext,
  family: string,
  body: Buffer,
  env: Envelope | null,
  req: Partial<HttpRequest> = {},
): FuzzCase {
  const headers =
    req.headers ?? (env ? snsHeaders(ctx, env) : [['Authorization', ctx.authorization] as [string, string]]);
  const verdict = ctx.model.body(body, {
    messageType: joined(headers, 'x-amz-sns-message-type'),
    rawDelivery: joined(headers, 'x-amz-sns-rawdelivery'),
  });
  const request: HttpRequest = { target: ctx.rng.pick(ENDPOINTS), ...req, headers, body };
  return {
    family,
    pieces: [serialize(ctx.rng, request)],
    outcomes: verdict.outcomes,
    ...(verdict.genuine ? { genuine: verdict.genuine } : {}),
    why: verdict.why,
  };
}

/** A header as Node hands it to the app: repeats joined by ", " (for headers Node does not dedupe). */
function joined(headers: Array<[string, string]>, name: string): string | null {
  const values = headers.filter(([n]) => n.toLowerCase() === name).map(([, v]) => v.trim());
  return values.length ? values.join(', ') : null;
}

const json = (env: unknown) => Buffer.from(JSON.stringify(env), 'utf8');

/** The same JSON with every non-ASCII character written as a \u escape. */
function asciiJson(env: unknown): string {
  return JSON.stringify(env).replace(
    /[\u007f-\uffff]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
}

/** Re-encodes an envelope's JSON without changing its values: pretty, \u-escaped, reordered, BOM. */
function sameValues(rng: Rng, env: Envelope): Buffer {
  return rng.weighted<() => Buffer>([
    [4, () => json(env)],
    [1, () => Buffer.from(JSON.stringify(env, null, rng.pick([1, 2, '\t'])), 'utf8')],
    [1, () => Buffer.from(asciiJson(env), 'latin1')],
    [1, () => json(Object.fromEntries(Object.entries(env).reverse()))],
    [1, () => Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), json(env)])],
    [1, () => Buffer.from(` \n\t${JSON.stringify(env)}\r\n `, 'utf8')],
  ])();
}

// ---- families ------------------------------------------------------------------------------------

/** Genuine messages, framed and labelled in every way that must not matter. */
export function genuine(ctx: CaseContext): FuzzCase[] {
  const { rng } = ctx;
  const env = notification(ctx);
  const headers = snsHeaders(ctx, env).filter(([n]) => {
    if (n === 'x-amz-sns-message-type') return !rng.chance(0.2);
    if (n === 'Content-Type') return !rng.chance(0.1);
    return true;
  });
  const extra: Array<[string, string]> = [];
  if (rng.chance(0.2))
    extra.push([
      'Content-Type',
      rng.pick([
        'application/json',
        'application/x-www-form-urlencoded',
        'multipart/form-data; boundary=x',
        'text/plain; charset=ISO-8859-1',
        '*/*',
        'garbage',
      ]),
    ]);
  if (rng.chance(0.1))
    extra.push(['x-amz-sns-rawdelivery', rng.pick(['false', 'False', 'no', '', 'true, true'])]);
  if (rng.chance(0.1)) extra.push(['Content-Encoding', rng.pick(['gzip', 'identity', 'br'])]);
  if (rng.chance(0.1)) extra.push(['Expect', '100-continue']);
  if (rng.chance(0.1)) extra.push(['x-amz-sns-message-type', String(env.Type)]);
  if (rng.chance(0.1)) extra.push(['X-Forwarded-For', '10.0.0.1, 127.0.0.1']);
  const auth = rng.chance(0.1)
    ? `${rng.pick(['basic', 'BASIC', 'Basic'])}${rng.pick([' ', '  ', '\t'])}${Buffer.from(`${ctx.username}:${ctx.password}`).toString('base64')}`
    : ctx.authorization;
  const all = [
    ...headers.filter(([n]) => n !== 'Authorization'),
    ...extra,
    ['Authorization', auth] as [string, string],
  ];
  return [
    post(ctx, 'genuine', sameValues(rng, env), env, {
      headers: all,
      framing: rng.chance(0.2) ? 'chunked' : 'length',
      ...(rng.chance(0.05) ? { version: 'HTTP/1.0', omit: ['host'], framing: 'length' as const } : {}),
    }),
  ];
}

type FieldMutation = (env: Envelope, ctx: CaseContext) => { env: unknown; text?: string; how: string };

const FIELDS = [
  'Type',
  'MessageId',
  'TopicArn',
  'Subject',
  'Message',
  'Timestamp',
  'SignatureVersion',
  'Signature',
  'SigningCertURL',
  'UnsubscribeURL',
  'MessageAttributes',
  'Token',
  'SubscribeURL',
];
const ODD_VALUES: unknown[] = [
  null,
  true,
  0,
  1,
  -1,
  1.5,
  '',
  ' ',
  [],
  {},
  ['x'],
  { a: 1 },
  'x'.repeat(300),
  '\u0000',
  '\ud800',
];

const FIELD_MUTATIONS: Array<[number, FieldMutation]> = [
  [
    3,
    (env, { rng }) => {
      const k = rng.pick(FIELDS);
      const { [k]: _, ...rest } = env;
      return { env: rest, how: `drop ${k}` };
    },
  ],
  [
    4,
    (env, { rng }) => {
      const k = rng.pick(FIELDS);
      const v = structuredClone(rng.pick(ODD_VALUES));
      return { env: { ...env, [k]: v }, how: `${k}=${JSON.stringify(v)?.slice(0, 20)}` };
    },
  ],
  [
    2,
    (env, { rng }) => {
      // A changed signed (or unsigned) string value: tampering, or a harmless change.
      const k = rng.pick(FIELDS.filter((f) => typeof env[f] === 'string'));
      const v = String(env[k]);
      const changed = rng.pick([
        `${v}x`,
        v.slice(0, -1),
        v.toUpperCase(),
        ` ${v}`,
        `${v}\u0000`,
        v.normalize('NFD'),
      ]);
      return { env: { ...env, [k]: changed }, how: `alter ${k}` };
    },
  ],
  [
    2,
    (env, { rng }) => {
      const k = rng.pick([
        'Extra',
        'signature',
        'Signature ',
        '__proto__',
        'constructor',
        'type',
        'MessageID',
        'SigningCertUrl',
      ]);
      return { env: { ...env, [k]: structuredClone(rng.pick(ODD_VALUES)) }, how: `add ${k}` };
    },
  ],
  [
    2,
    (env, { rng }) => {
      // Duplicate keys: JSON.parse keeps the last one, and so must the model.
      const k = rng.pick(FIELDS);
      const other = JSON.stringify(
        rng.pick(ODD_VALUES.concat(['Notification', 'SubscriptionConfirmation', 'x'])),
      );
      const text = JSON.stringify(env);
      const dup = `"${k}":${other}`;
      const out = rng.chance(0.5) ? `{${dup},${text.slice(1)}` : `${text.slice(0, -1)},${dup}}`;
      return { env: JSON.parse(out), text: out, how: `duplicate ${k}` };
    },
  ],
  [
    1,
    (env, { rng }) => ({
      env: {
        ...env,
        Type: rng.pick([
          'notification',
          'SubscriptionConfirmation',
          'UnsubscribeConfirmation',
          'Notification ',
          'Unknown',
        ]),
      },
      how: 'Type',
    }),
  ],
  [
    1,
    (env, { rng }) => ({
      env: {
        ...env,
        MessageId: rng.pick(['', 'x'.repeat(128), 'x'.repeat(129), '\u0000', '../../etc/passwd', '🚨']),
      },
      how: 'MessageId',
    }),
  ],
  [
    1,
    (env, { rng }) => ({
      env: {
        ...env,
        TopicArn: rng.pick([
          'arn:aws:sns:us-east-1:123456789012:other',
          'arn:aws:sns:us-east-1:999999999999:alarms',
          'arn:aws-cn:sns:cn-north-1:123456789012:alarms',
          'arn:aws:sns:us-east-1:12345678901:alarms',
          'arn:aws:sns:us-east-1:123456789012:',
          'arn:aws:sns:us-east-1:123456789012:a.fifo',
          '*',
        ]),
      },
      how: 'TopicArn',
    }),
  ],
  [
    1,
    (env, { rng }) => ({
      env: {
        ...env,
        MessageAttributes: rng.pick<unknown>([
          null,
          {},
          [],
          'x',
          { a: null },
          { a: { Type: 'String' } },
          { a: { Type: 1, Value: 'x' } },
          { a: { Type: 'String', Value: 'v' } },
        ]),
      },
      how: 'MessageAttributes',
    }),
  ],
];

/** Field-level mutations of one signed envelope: each variant is a request of its own. */
export function fieldMutations(ctx: CaseContext): FuzzCase[] {
  const { rng } = ctx;
  const env = rng.chance(0.85)
    ? notification(ctx)
    : confirmation(ctx, rng.pick(['SubscriptionConfirmation', 'UnsubscribeConfirmation'] as const));
  const out: FuzzCase[] = [];
  for (let i = rng.range(4, 12); i > 0; i--) {
    let cur: unknown = env;
    let text: string | undefined;
    const hows: string[] = [];
    for (
      let k = rng.weighted([
        [5, 1],
        [2, 2],
        [1, 3],
      ] as const);
      k > 0;
      k--
    ) {
      const m = rng.weighted(FIELD_MUTATIONS)(cur as Envelope, ctx);
      cur = m.env;
      text = m.text;
      hows.push(m.how);
    }
    const body = text !== undefined ? Buffer.from(text, 'utf8') : json(cur);
    const c = post(ctx, 'field', body, env);
    out.push({ ...c, why: `${hows.join(', ')} → ${c.why}` });
  }
  return out;
}

const TOKENS = [
  '{',
  '}',
  '[',
  ']',
  '"',
  ',',
  ':',
  '\\',
  '\\u',
  '\\ud800',
  'null',
  '1e999',
  '\u0000',
  ' ',
  '\n',
  '"Type":"Notification",',
];

/** Byte-level mutations of one signed envelope's JSON text. */
export function byteMutations(ctx: CaseContext): FuzzCase[] {
  const { rng } = ctx;
  const env = notification(ctx);
  const original = json(env);
  const out: FuzzCase[] = [];
  for (let i = rng.range(4, 12); i > 0; i--) {
    let bytes = original;
    const hows: string[] = [];
    for (
      let k = rng.weighted([
        [5, 1],
        [2, 2],
        [1, 5],
      ] as const);
      k > 0;
      k--
    ) {
      const at = rng.int(bytes.length + 1);
      const op = rng.weighted([
        [4, 'flip'],
        [2, 'delete'],
        [2, 'insert'],
        [1, 'utf8'],
        [1, 'truncate'],
      ] as const);
      if (op === 'flip' && bytes.length) {
        bytes = Buffer.from(bytes);
        const j = Math.min(at, bytes.length - 1);
        bytes[j] = rng.chance(0.7) ? (bytes[j] as number) ^ (1 << rng.int(8)) : rng.int(256);
      } else if (op === 'delete')
        bytes = Buffer.concat([bytes.subarray(0, at), bytes.subarray(at + rng.range(1, 8))]);
      else if (op === 'insert')
        bytes = Buffer.concat([bytes.subarray(0, at), Buffer.from(rng.pick(TOKENS)), bytes.subarray(at)]);
      else if (op === 'utf8') {
        const junk = rng.pick([
          [0x80],
          [0xc0, 0xaf],
          [0xed, 0xa0, 0x80],
          [0xf8, 0x88, 0x80, 0x80, 0x80],
          [0xff],
          [0xc3],
        ]);
        bytes = Buffer.concat([bytes.subarray(0, at), Buffer.from(junk), bytes.subarray(at)]);
      } else bytes = bytes.subarray(0, at);
      hows.push(`${op}@${at}`);
    }
    const c = post(ctx, 'bytes', bytes, env);
    out.push({ ...c, why: `${hows.join(', ')} → ${c.why}` });
  }
  return out;
}

/** Signature manipulations: versions, garbage, another message's, a foreign key, re-encodings. */
export function signatures(ctx: CaseContext): FuzzCase[] {
  const { rng } = ctx;
  const env = notification(ctx);
  const sig = String(env.Signature);
  const other = String(notification(ctx).Signature);
  const variants: Array<[string, () => unknown]> = [
    ['version 3', () => ({ ...env, SignatureVersion: '3' })],
    ['version 01', () => ({ ...env, SignatureVersion: '01' })],
    ['version swapped', () => ({ ...env, SignatureVersion: env.SignatureVersion === '1' ? '2' : '1' })],
    ['base64 garbage', () => ({ ...env, Signature: rng.pick(['!!!!', '====', '', '*', 'é'.repeat(10)]) })],
    ['random signature', () => ({ ...env, Signature: rng.bytes(256).toString('base64') })],
    ["another message's signature", () => ({ ...env, Signature: other })],
    ['truncated', () => ({ ...env, Signature: sig.slice(0, rng.range(1, sig.length - 1)) })],
    [
      'bit flip',
      () => {
        const b = Buffer.from(sig, 'base64');
        const i = rng.int(b.length);
        b[i] = (b[i] as number) ^ (1 << rng.int(8));
        return { ...env, Signature: b.toString('base64') };
      },
    ],
    ['line breaks (same bytes)', () => ({ ...env, Signature: sig.replace(/(.{64})/g, '$1\n') })],
    [
      'URL-safe alphabet (same bytes)',
      () => ({ ...env, Signature: sig.replace(/\+/g, '-').replace(/\//g, '_') }),
    ],
    ['no padding (same bytes)', () => ({ ...env, Signature: sig.replace(/=+$/, '') })],
    ['foreign key', () => signEnvelope({ ...env }, ctx.foreignKey)],
    [
      'foreign key, version swapped',
      () =>
        signEnvelope({ ...env, SignatureVersion: env.SignatureVersion === '1' ? '2' : '1' }, ctx.foreignKey),
    ],
  ];
  const out: FuzzCase[] = [];
  for (let i = rng.range(2, 5); i > 0; i--) {
    const [how, make] = rng.pick(variants);
    const c = post(ctx, 'signature', json(make()), env);
    out.push({ ...c, why: `${how} → ${c.why}` });
  }
  return out;
}

/** SigningCertURL manipulations (the URL is not signed: each is sent on an otherwise genuine message). */
export function certUrls(ctx: CaseContext): FuzzCase[] {
  const { rng, sns } = ctx;
  const good = new URL(sns.signingCertUrl);
  const path = good.pathname;
  const host = good.host;
  const port = good.port;
  const variants = [
    `http://${host}${path}`,
    `https://sns.us-east-1.amazonaws.com${path}`,
    `https://${host}.evil.example${path}`,
    `https://evil.example/${host}${path}`,
    `https://user@${host}${path}`,
    `https://user:pass@${host}${path}`,
    `https://${host}@evil.example${path}`,
    `https://${host}${path}?x=1`,
    `https://${host}${path}?`,
    `https://${host}${path}#x`,
    `https://${host}${path}#`,
    `https://${host}/%2e%2e${path}`,
    `https://${host}/a/..${path}`,
    `https://${host}${path}/../../etc/passwd`,
    `https://${host}/SimpleNotificationService-${'f'.repeat(65)}.pem`,
    `https://${host}/SimpleNotificationService-XYZ.pem`,
    `https://${host}/simplenotificationservice-abc.pem`,
    `https://${host}${path.replace('.pem', '.PEM')}`,
    `HTTPS://${host.toUpperCase()}${path}`,
    ` https://${host}${path} `,
    `https://${host}${path.slice(0, 10)}\n${path.slice(10)}`,
    `https:\\\\${host}\\${path.slice(1)}`,
    `https://127。0。0。1:${port}${path}`,
    `https://[::1]:${port}${path}`,
    `https://127.1:${port}${path}`,
    `https://0x7f.0.0.1:${port}${path}`,
    `https://127.0.0.1:0${port}${path}`,
    `https://127.0.0.1:${ctx.closedPort}${path}`,
    `https://127.0.0.1:99999${path}`,
    `https://127.0.0.1${path}`,
    `https://snś.us-east-1.amazonaws.com${path}`,
    `https://${host}${path}${'a'.repeat(2100)}`,
    ctx.otherCertUrl,
    ctx.garbageCertUrl,
    ctx.missingCertUrl,
    ctx.hangCertUrl,
    'not a url',
    '',
  ];
  const out: FuzzCase[] = [];
  for (let i = rng.range(1, 3); i > 0; i--) {
    const env = notification(ctx);
    const url = rng.pick(variants);
    const c = post(ctx, 'cert-url', json({ ...env, SigningCertURL: url }), env);
    out.push({ ...c, why: `SigningCertURL ${JSON.stringify(url.slice(0, 80))} → ${c.why}` });
  }
  return out;
}

/** Subscription confirmations and unsubscribes: genuine, replayed, and with SubscribeURLs (signed) elsewhere. */
export function confirmations(ctx: CaseContext): FuzzCase[] {
  const { rng, sns } = ctx;
  const host = new URL(sns.origin).host;
  const subscribe = rng.pick([
    undefined,
    undefined,
    undefined,
    `http://${host}/?Action=ConfirmSubscription`,
    `https://evil.example/?Action=ConfirmSubscription`,
    `https://user@${host}/?Action=ConfirmSubscription`,
    `https://${host}/?Action=ConfirmSubscription#x`,
    `https://${host}.evil.example/`,
  ]);
  const type = rng.chance(0.7) ? 'SubscriptionConfirmation' : 'UnsubscribeConfirmation';
  const env = confirmation(ctx, type, subscribe);
  const c = post(ctx, 'confirmation', json(env), env);
  return [{ ...c, why: `${type} ${subscribe ?? 'on the SNS host'} → ${c.why}` }];
}

/** Genuine signatures on topics: outside the allow-list, and unusual names inside it. */
export function topics(ctx: CaseContext): FuzzCase[] {
  const { rng } = ctx;
  const topic = rng.pick([
    ctx.foreignTopic,
    'arn:aws:sns:eu-west-1:123456789012:other-topic',
    'arn:aws:sns:us-east-1:123456789012:orders.fifo',
    'arn:aws-cn:sns:cn-north-1:123456789012:alarms',
    `arn:aws:sns:us-east-1:123456789012:${'t'.repeat(256)}`,
  ]);
  const env = notification(ctx, { topic });
  const c = post(ctx, 'topic', json(env), env);
  return [{ ...c, why: `${topic.slice(0, 60)} → ${c.why}` }];
}

/** Methods, paths, credentials and SNS headers: each decided before the body matters, or not at all. */
export function httpTricks(ctx: CaseContext): FuzzCase[] {
  const { rng } = ctx;
  const env = notification(ctx);
  const body = json(env);
  const headers = snsHeaders(ctx, env);
  const without = (name: string) => headers.filter(([n]) => n.toLowerCase() !== name.toLowerCase());
  const b64 = (s: string) => Buffer.from(s, 'utf8').toString('base64');
  const unauthorized = [app(401, 'unauthorized')];
  const variants: Array<[string, () => FuzzCase]> = [
    [
      'method',
      () => {
        const method = rng.pick([
          'GET',
          'PUT',
          'DELETE',
          'PATCH',
          'OPTIONS',
          'TRACE',
          'PROPFIND',
          'LOCK',
          'SEARCH',
        ]);
        return caseOf('http', `${method} /sns`, serialize(rng, { method, body, headers }), [
          app(405, 'method_not_allowed'),
        ]);
      },
    ],
    [
      'HEAD',
      () => ({
        ...caseOf(
          'http',
          'HEAD /sns',
          serialize(rng, { method: 'HEAD', body: Buffer.alloc(0), headers, framing: 'none' }),
          [app(405)],
        ),
        head: true,
      }),
    ],
    [
      'method without credentials',
      () =>
        caseOf(
          'http',
          'GET /sns, no credentials',
          serialize(rng, { method: 'GET', body, headers: without('authorization') }),
          unauthorized,
        ),
    ],
    [
      'endpoint name',
      () => {
        const target = rng.pick([
          `/sns/${'a'.repeat(65)}`,
          '/sns/Ops',
          '/sns/-ops',
          '/sns/_x',
          '/sns/%2e%2e%2fmetrics',
          '/sns/a%2Fb',
          '/sns/%00',
          '/sns/%zz',
          '/sns/%C3%A9',
          '/sns/a%20b',
          '/sns/a.b',
        ]);
        return caseOf('http', `POST ${target}`, serialize(rng, { target, body, headers }), [
          app(404, 'not_found'),
        ]);
      },
    ],
    [
      'endpoint name without credentials',
      () =>
        caseOf(
          'http',
          'POST /sns/Ops, no credentials',
          serialize(rng, { target: '/sns/Ops', body, headers: without('authorization') }),
          unauthorized,
        ),
    ],
    [
      'unknown path',
      () => {
        // Not an SNS route at all: 404 before any credentials are asked for.
        const target = rng.pick([
          '/sns/',
          '/SNS',
          '//sns',
          '/sns/a/b',
          '/',
          '/metrics',
          '/-/events',
          '/sns/../metrics',
          '/snsx',
          '/sns.json',
          '/sns/%2e%2e',
          '/healthz',
          '/readyz',
        ]);
        return caseOf(
          'http',
          `POST ${target}`,
          serialize(rng, { target, body, headers: rng.chance(0.5) ? headers : without('authorization') }),
          [app(404, 'not_found')],
        );
      },
    ],
    [
      'normalised path',
      () => {
        const target = rng.pick(['/x/../sns', '/sns/./default', '/./sns', `http://evil.example/sns`]);
        return post(ctx, 'http', body, env, { target, headers });
      },
    ],
    [
      'health',
      () => {
        const target = rng.pick(['/healthz', '/readyz']);
        return caseOf(
          'http',
          `GET ${target}`,
          serialize(rng, { method: 'GET', target, body: Buffer.alloc(0), headers: [], framing: 'none' }),
          [{ layer: 'app', status: 200 }],
        );
      },
    ],
    [
      'no credentials',
      () =>
        caseOf(
          'http',
          'no Authorization',
          serialize(rng, { body, headers: without('authorization') }),
          unauthorized,
        ),
    ],
    [
      'wrong credentials',
      () => {
        const value = rng.pick([
          `Basic ${b64(`${ctx.username}:${ctx.password}x`)}`,
          `Basic ${b64(`${ctx.username}:`)}`,
          `Basic ${b64(`${ctx.username}`)}`,
          `Basic ${b64(`${ctx.username.toUpperCase()}:${ctx.password}`)}`,
          `Basic ${b64(`:${ctx.password}`)}`,
          `Basic ${b64(`${ctx.username}:${ctx.password}`)}!`,
          `Basic ${b64(`${ctx.username}:${ctx.password}`).replace(/=+$/, '').slice(0, -2)}`,
          `Bearer ${b64(`${ctx.username}:${ctx.password}`)}`,
          `Basic`,
          `Basic ${'A'.repeat(8000)}`,
          `Basic ${b64('é:ü')}`,
          'Digest username="x"',
        ]);
        return caseOf(
          'http',
          `Authorization ${value.slice(0, 24)}`,
          serialize(rng, { body, headers: [...without('authorization'), ['Authorization', value]] }),
          unauthorized,
        );
      },
    ],
    [
      'repeated credentials',
      () => {
        // The relay reads the headers as fetch does: repeats joined by ", ", which no credentials match.
        const wrong = `Basic ${b64('nobody:nothing')}`;
        const pair: Array<[string, string]> = rng.pick([
          [
            ['Authorization', ctx.authorization],
            ['Authorization', wrong],
          ],
          [
            ['Authorization', wrong],
            ['Authorization', ctx.authorization],
          ],
          [
            ['Authorization', ctx.authorization],
            ['Authorization', ctx.authorization],
          ],
        ] as Array<Array<[string, string]>>);
        return caseOf(
          'http',
          'two Authorization headers',
          serialize(rng, { body, headers: [...without('authorization'), ...pair] }),
          unauthorized,
        );
      },
    ],
    [
      'message-type header',
      () => {
        const value = rng.pick([
          'notification',
          'SubscriptionConfirmation',
          'Notification, Notification',
          '',
          'x'.repeat(200),
        ]);
        const hs: Array<[string, string]> = [
          ...without('x-amz-sns-message-type'),
          ['x-amz-sns-message-type', value],
        ];
        return post(ctx, 'http', body, env, { headers: hs });
      },
    ],
    [
      'repeated message-type header',
      () => {
        const hs: Array<[string, string]> = [...headers, ['x-amz-sns-message-type', String(env.Type)]];
        return post(ctx, 'http', body, env, { headers: hs });
      },
    ],
    [
      'raw delivery',
      () => {
        const value = rng.pick(['true', 'TRUE', ' true ', 'True', 'false', '1', 'true, true']);
        return post(ctx, 'http', body, env, { headers: [...headers, ['x-amz-sns-rawdelivery', value]] });
      },
    ],
    [
      'raw body with raw delivery',
      () => {
        const raw = Buffer.from(String(env.Message), 'utf8');
        return post(ctx, 'http', raw, env, { headers: [...headers, ['x-amz-sns-rawdelivery', 'true']] });
      },
    ],
    [
      'encodings',
      () => {
        const text = JSON.stringify(env);
        const bytes = rng.pick([
          Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(text, 'utf16le')]),
          Buffer.from(text, 'utf16le'),
          Buffer.from(`${text.slice(0, -1)},"X":"café"}`, 'latin1'),
        ]);
        return post(ctx, 'http', bytes, env, { headers });
      },
    ],
    [
      'gzip body',
      () =>
        post(ctx, 'http', Buffer.from('1f8b08000000000000034b4c4a0600c241243503000000', 'hex'), env, {
          headers: [...headers, ['Content-Encoding', 'gzip']],
        }),
    ],
    [
      'empty body',
      () =>
        post(ctx, 'http', Buffer.alloc(0), env, {
          headers,
          framing: rng.pick(['length', 'chunked'] as const),
        }),
    ],
  ];
  const [, make] = rng.pick(variants);
  return [make()];
}

function caseOf(family: string, why: string, bytes: Buffer, outcomes: Outcome[]): FuzzCase {
  return { family, pieces: [bytes], outcomes, why };
}

/** Malformed HTTP: answered by Node's parser before the relay sees a request. */
export function framing(ctx: CaseContext): FuzzCase[] {
  const { rng } = ctx;
  const env = notification(ctx, { attributes: false });
  // ASCII (\u-escaped) JSON: these requests are written as latin1 strings, byte for character.
  const body = asciiJson(env);
  const auth = `Authorization: ${ctx.authorization}\r\n`;
  const cl = Buffer.byteLength(body);
  const variants: Array<[string, string | Buffer, Outcome[]]> = [
    [
      'unknown method',
      `FOO /sns HTTP/1.1\r\nHost: x\r\n${auth}Content-Length: ${cl}\r\n\r\n${body}`,
      [node(400)],
    ],
    [
      'lower-case method',
      `post /sns HTTP/1.1\r\nHost: x\r\n${auth}Content-Length: ${cl}\r\n\r\n${body}`,
      [node(400)],
    ],
    ['CONNECT', 'CONNECT 127.0.0.1:443 HTTP/1.1\r\nHost: x\r\n\r\n', [closed]],
    [
      'two Content-Lengths',
      `POST /sns HTTP/1.1\r\nHost: x\r\n${auth}Content-Length: ${cl}\r\nContent-Length: ${cl}\r\n\r\n${body}`,
      [node(400)],
    ],
    [
      'Content-Length list',
      `POST /sns HTTP/1.1\r\nHost: x\r\n${auth}Content-Length: ${cl}, ${cl}\r\n\r\n${body}`,
      [node(400)],
    ],
    [
      'negative Content-Length',
      `POST /sns HTTP/1.1\r\nHost: x\r\n${auth}Content-Length: -1\r\n\r\n${body}`,
      [node(400)],
    ],
    [
      'Content-Length and chunked',
      `POST /sns HTTP/1.1\r\nHost: x\r\n${auth}Content-Length: ${cl}\r\nTransfer-Encoding: chunked\r\n\r\n${cl.toString(16)}\r\n${body}\r\n0\r\n\r\n`,
      [node(400)],
    ],
    [
      'Transfer-Encoding gzip',
      `POST /sns HTTP/1.1\r\nHost: x\r\n${auth}Transfer-Encoding: gzip\r\n\r\n${body}`,
      [node(400)],
    ],
    [
      'bad chunk size',
      `POST /sns HTTP/1.1\r\nHost: x\r\n${auth}Transfer-Encoding: chunked\r\n\r\nzz\r\n${body}\r\n0\r\n\r\n`,
      [node(400)],
    ],
    [
      'space in a header name',
      `POST /sns HTTP/1.1\r\nHost: x\r\n${auth}Bad Header: 1\r\nContent-Length: ${cl}\r\n\r\n${body}`,
      [node(400)],
    ],
    [
      'NUL in a header value',
      `POST /sns HTTP/1.1\r\nHost: x\r\n${auth}X-A: a\u0000b\r\nContent-Length: ${cl}\r\n\r\n${body}`,
      [node(400)],
    ],
    [
      'folded header',
      `POST /sns HTTP/1.1\r\nHost: x\r\n${auth}X-A: a\r\n b\r\nContent-Length: ${cl}\r\n\r\n${body}`,
      [node(400)],
    ],
    [
      'bare LF',
      `POST /sns HTTP/1.1\nHost: x\n${auth.replace('\r', '')}Content-Length: ${cl}\n\n${body}`,
      [node(400)],
    ],
    ['no Host', `POST /sns HTTP/1.1\r\n${auth}Content-Length: ${cl}\r\n\r\n${body}`, [node(400)]],
    ['HTTP/2 preface', 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', [node(400)]],
    ['TLS handshake', Buffer.from('16030100a5010000a10303', 'hex'), [node(400)]],
    [
      'headers over 16 KiB',
      `POST /sns HTTP/1.1\r\nHost: x\r\n${auth}X-Big: ${'a'.repeat(20_000)}\r\nContent-Length: ${cl}\r\n\r\n${body}`,
      [node(431)],
    ],
    [
      'URL over 16 KiB',
      `POST /sns/${'a'.repeat(20_000)} HTTP/1.1\r\nHost: x\r\n${auth}Content-Length: ${cl}\r\n\r\n${body}`,
      [node(431)],
    ],
    [
      'unsupported Expect',
      `POST /sns HTTP/1.1\r\nHost: x\r\n${auth}Expect: 200-ok\r\nContent-Length: ${cl}\r\n\r\n${body}`,
      [node(417)],
    ],
    [
      'raw UTF-8 in the path',
      `POST /sns/\u00c3\u00a9 HTTP/1.1\r\nHost: x\r\n${auth}Content-Length: ${cl}\r\n\r\n${body}`,
      [node(400)],
    ],
    ['asterisk target', `OPTIONS * HTTP/1.1\r\nHost: x\r\n${auth}\r\n`, [node(400)]],
    // The extra bytes after the declared length are a second, malformed request: Node's 400 for it,
    // the relay's for the truncated first one, or (seen under load) Node's 408 while it waits.
    [
      'Content-Length too short',
      `POST /sns HTTP/1.1\r\nHost: x\r\n${auth}Content-Length: ${cl - 5}\r\nConnection: close\r\n\r\n${body}`,
      [node(400), app(400, 'bad_request'), node(408)],
    ],
  ];
  const [how, bytes, outcomes] = rng.pick(variants);
  return [
    {
      family: 'framing',
      pieces: [typeof bytes === 'string' ? Buffer.from(bytes, 'latin1') : bytes],
      outcomes,
      why: how,
    },
  ];
}

/** Random bytes flipped in the request line and headers of a genuine message: any documented answer. */
export function headBytes(ctx: CaseContext): FuzzCase[] {
  const { rng } = ctx;
  const env = notification(ctx);
  const bytes = Buffer.from(serialize(rng, { body: json(env), headers: snsHeaders(ctx, env) }));
  const headEnd = bytes.indexOf('\r\n\r\n');
  for (let k = rng.range(1, 3); k > 0; k--)
    bytes[rng.int(headEnd)] = rng.chance(0.5) ? rng.int(256) : (bytes[rng.int(headEnd)] as number);
  // The body is untouched: should the head still lead to the handler, the message is genuine.
  const verdict = ctx.model.body(json(env), { messageType: null, rawDelivery: null });
  return [
    {
      family: 'head-bytes',
      pieces: [bytes],
      outcomes: [],
      ...(verdict.genuine ? { genuine: verdict.genuine } : {}),
      why: 'flipped request head (any documented answer)',
    },
  ];
}

/** Bodies of every size around server.maxBodyBytes, and monsters inside the limit. */
export function sizes(ctx: CaseContext): FuzzCase[] {
  const { rng } = ctx;
  const max = ctx.maxBodyBytes;
  const tooLarge: Outcome[] = [app(413, 'too_large'), closed];
  const kind = rng.pick([
    'big message',
    'exactly the limit',
    'one over',
    'declared over',
    'chunked over',
    'padding',
    'attributes',
    'deep envelope',
    'deep field',
  ] as const);
  switch (kind) {
    case 'big message': {
      const env = notification(ctx, { message: messageText(rng, true), attributes: false });
      return [post(ctx, 'size', json(env), env, { framing: rng.pick(['length', 'chunked'] as const) })];
    }
    case 'exactly the limit':
    case 'one over': {
      // A genuine message padded by an unsigned field to exactly max (or max + 1) bytes.
      const env = notification(ctx, { attributes: false });
      const bare = json({ ...env, Padding: '' }).length;
      const body = json({ ...env, Padding: 'p'.repeat(max - bare + (kind === 'one over' ? 1 : 0)) });
      const framingKind = rng.pick(['length', 'chunked'] as const);
      return kind === 'exactly the limit'
        ? [post(ctx, 'size', body, env, { framing: framingKind })]
        : [
            caseOf(
              'size',
              `max + 1 (${framingKind})`,
              serialize(rng, { body, headers: snsHeaders(ctx, env), framing: framingKind }),
              tooLarge,
            ),
          ];
    }
    case 'declared over':
    case 'chunked over': {
      const env = notification(ctx, { attributes: false });
      const body = json({ ...env, Padding: 'p'.repeat(max + rng.range(1, 1_000_000)) });
      const framingKind = kind === 'declared over' ? 'length' : 'chunked';
      return [
        caseOf(
          'size',
          kind,
          serialize(rng, { body, headers: snsHeaders(ctx, env), framing: framingKind }),
          tooLarge,
        ),
      ];
    }
    case 'padding': {
      const env = notification(ctx, { attributes: false });
      const body = json({ ...env, Padding: Array.from({ length: rng.range(1000, 150_000) }, () => 0) });
      return [post(ctx, 'size', body, env)];
    }
    case 'attributes': {
      const env = notification(ctx, { attributes: false });
      const attrs: Record<string, { Type: string; Value: string }> = {};
      for (let i = 0; i < 10_000; i++) attrs[`a${i}`] = { Type: 'String', Value: 'v'.repeat(rng.int(20)) };
      return [post(ctx, 'size', json({ ...env, MessageAttributes: attrs }), env)];
    }
    case 'deep envelope': {
      const depth = rng.pick([10_000, 400_000]);
      return [post(ctx, 'size', Buffer.from(`${'['.repeat(depth)}${']'.repeat(depth)}`), null)];
    }
    case 'deep field': {
      const env = notification(ctx, { attributes: false });
      const text = JSON.stringify(env);
      const deep = `${'{"a":'.repeat(100_000)}1${'}'.repeat(100_000)}`;
      return [post(ctx, 'size', Buffer.from(`${text.slice(0, -1)},"Deep":${deep}}`), env)];
    }
  }
}

/** Bodies that were never envelopes: random bytes, JSON values, tokens. */
export function junk(ctx: CaseContext): FuzzCase[] {
  const { rng } = ctx;
  const body = rng.weighted<() => Buffer>([
    [2, () => rng.bytes(rng.range(0, 2000))],
    [2, () => Buffer.from(JSON.stringify(jsonValue(rng, 4)) ?? 'null', 'utf8')],
    [1, () => Buffer.from(Array.from({ length: rng.range(1, 40) }, () => rng.pick(TOKENS)).join(''), 'utf8')],
    [
      1,
      () =>
        Buffer.from(
          JSON.stringify({
            Type: 'Notification',
            MessageId: uuid(rng),
            TopicArn: ctx.topic,
            Message: 'm',
            Timestamp: 't',
          }),
        ),
    ],
  ])();
  return [post(ctx, 'junk', body, null)];
}

/** Real AWS-signed messages (corpus): sent as they are, then with field and byte mutations. */
export function corpusMessages(ctx: CaseContext): FuzzCase[] {
  const { rng } = ctx;
  if (ctx.corpus.length === 0) return genuine(ctx);
  const { name, env } = rng.pick(ctx.corpus);
  const headers = snsHeaders(ctx, env);
  const out: FuzzCase[] = [post(ctx, 'corpus', json(env), env, { headers })];
  for (let i = rng.range(2, 6); i > 0; i--) {
    let body: Buffer;
    let how: string;
    if (rng.chance(0.5)) {
      const m = rng.weighted(FIELD_MUTATIONS)(env, ctx);
      body = m.text !== undefined ? Buffer.from(m.text, 'utf8') : json(m.env);
      how = m.how;
    } else {
      const b = Buffer.from(json(env));
      const at = rng.int(b.length);
      b[at] = (b[at] as number) ^ (1 << rng.int(8));
      body = b;
      how = `flip@${at}`;
    }
    const c = post(ctx, 'corpus', body, env, { headers });
    out.push({ ...c, why: `${name}: ${how} → ${c.why}` });
  }
  return out.map((c, i) => (i === 0 ? { ...c, why: `${name} → ${c.why}` } : c));
}

/** The families and their weights in a run. */
export const FAMILIES: Array<[number, (ctx: CaseContext) => FuzzCase[]]> = [
  [10, genuine],
  [7, fieldMutations],
  [7, byteMutations],
  [4, signatures],
  [6, certUrls],
  [2, confirmations],
  [1, topics],
  [10, httpTricks],
  [4, framing],
  [1, headBytes],
  [0.4, sizes],
  [3, junk],
  [1, corpusMessages],
];
