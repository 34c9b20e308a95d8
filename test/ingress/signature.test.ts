import { generateKeyPairSync, type KeyObject, X509Certificate } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CertificateFetcher } from '../../src/ingress/sns/cert-fetcher.js';
import { parseEnvelope } from '../../src/ingress/sns/envelope.js';
import {
  createSignatureVerifier,
  type SignatureVerifier,
  stringToSign,
} from '../../src/ingress/sns/signature.js';
import type { SnsEnvelope } from '../../src/ingress/sns/types.js';
import {
  CORPUS_MISSING,
  corpusDir,
  loadSignedCorpus,
  type SignedCorpusMessage,
  toHttpFormat,
} from '../helpers/corpus.js';
import { type Envelope, FakeSns, testTls } from '../helpers/fake-sns.js';
import { snsValidatorOracle } from '../helpers/sns-validator.js';

/** A trivial fetcher: keys by certificate file name, no network. */
function keysByName(pems: Record<string, string>): CertificateFetcher {
  const keys = new Map<string, KeyObject>(
    Object.entries(pems).map(([name, pem]) => [name, new X509Certificate(pem).publicKey]),
  );
  return {
    async getKey(url) {
      const key = keys.get(url.pathname.slice(url.pathname.lastIndexOf('/') + 1));
      return key
        ? { ok: true, key }
        : { ok: false, reason: 'http_status', message: 'Expected HTTP 200, got 404' };
    },
  };
}

function envelopeOf(raw: Record<string, unknown>): SnsEnvelope {
  const parsed = parseEnvelope(raw);
  if (!parsed.ok) throw new Error(parsed.message);
  return parsed.envelope;
}

const certUrlOf = (e: SnsEnvelope) => new URL(e.SigningCertURL as string);

describe('stringToSign', () => {
  it('signs Notification fields in order, Subject only when present', () => {
    const base = {
      Type: 'Notification',
      MessageId: 'm-1',
      TopicArn: 'arn:aws:sns:us-east-1:123456789012:t',
      Message: 'hi\nthere',
      Timestamp: 'ts',
      UnsubscribeURL: 'u',
      MessageAttributes: { a: { Type: 'String', Value: 'v' } },
    };
    expect(stringToSign(envelopeOf(base))).toBe(
      'Message\nhi\nthere\nMessageId\nm-1\nTimestamp\nts\nTopicArn\narn:aws:sns:us-east-1:123456789012:t\nType\nNotification\n',
    );
    expect(stringToSign(envelopeOf({ ...base, Subject: 'S' }))).toBe(
      'Message\nhi\nthere\nMessageId\nm-1\nSubject\nS\nTimestamp\nts\nTopicArn\narn:aws:sns:us-east-1:123456789012:t\nType\nNotification\n',
    );
    expect(stringToSign(envelopeOf({ ...base, Subject: '' }))).toContain('Subject\n\n');
  });

  it.each(['SubscriptionConfirmation', 'UnsubscribeConfirmation'])(
    'signs the Token and SubscribeURL of %s',
    (type) => {
      const e = envelopeOf({
        Type: type,
        MessageId: 'm',
        TopicArn: 'arn:aws:sns:us-east-1:123456789012:t',
        Message: 'msg',
        Timestamp: 'ts',
        Token: 'tok',
        SubscribeURL: 'https://s/?a=1',
      });
      expect(stringToSign(e)).toBe(
        `Message\nmsg\nMessageId\nm\nSubscribeURL\nhttps://s/?a=1\nTimestamp\nts\nToken\ntok\nTopicArn\narn:aws:sns:us-east-1:123456789012:t\nType\n${type}\n`,
      );
    },
  );
});

describe('signature verifier with FakeSns-signed messages', () => {
  let fake: FakeSns;
  let verifier: SignatureVerifier;
  beforeAll(async () => {
    fake = await FakeSns.start();
    verifier = createSignatureVerifier({
      fetcher: keysByName({ [new URL(fake.signingCertUrl).pathname.slice(1)]: testTls.signingCertPem }),
    });
  });
  afterAll(() => fake?.close());

  const verify = (env: Envelope) => {
    const e = envelopeOf(env);
    return verifier.verify(e, certUrlOf(e));
  };

  it.each([
    ['v1 Notification', () => fake.notification({ signatureVersion: '1' })],
    ['v2 Notification', () => fake.notification({ signatureVersion: '2' })],
    ['Notification with Subject', () => fake.notification({ subject: 'ALARM: "cpu" in US East' })],
    [
      'Notification with non-ASCII text',
      () => fake.notification({ subject: 'Störung ⚠', message: '{"x":"日本語 \\u0000"}' }),
    ],
    ['v1 SubscriptionConfirmation', () => fake.subscriptionConfirmation()],
    ['v2 SubscriptionConfirmation', () => fake.subscriptionConfirmation({ signatureVersion: '2' })],
    ['UnsubscribeConfirmation', () => fake.unsubscribeConfirmation()],
  ])('accepts a %s', async (_name, make) => {
    expect(await verify(make())).toEqual({ ok: true });
  });

  it.each([
    [
      'Message',
      (e: Envelope) => {
        e.Message = `${e.Message} `;
      },
    ],
    [
      'MessageId',
      (e: Envelope) => {
        e.MessageId = 'other';
      },
    ],
    [
      'Subject changed',
      (e: Envelope) => {
        e.Subject = 'other';
      },
    ],
    [
      'Subject removed',
      (e: Envelope) => {
        delete e.Subject;
      },
    ],
    [
      'Timestamp',
      (e: Envelope) => {
        e.Timestamp = '2030-01-01T00:00:00.000Z';
      },
    ],
    [
      'TopicArn',
      (e: Envelope) => {
        e.TopicArn = 'arn:aws:sns:us-east-1:123456789012:other';
      },
    ],
    [
      'SignatureVersion 1 → 2',
      (e: Envelope) => {
        e.SignatureVersion = '2';
      },
    ],
    [
      'Signature truncated',
      (e: Envelope) => {
        e.Signature = String(e.Signature).slice(0, 100);
      },
    ],
    [
      'Signature of another message',
      (e: Envelope) => {
        e.Signature = fake.notification().Signature;
      },
    ],
  ])('refuses a Notification with a tampered %s', async (_name, tamper) => {
    const env = fake.notification({ subject: 'S' });
    tamper(env);
    expect(await verify(env)).toMatchObject({ ok: false, reason: 'bad_signature' });
  });

  it.each([
    [
      'Token',
      (e: Envelope) => {
        e.Token = 'x';
      },
    ],
    [
      'SubscribeURL',
      (e: Envelope) => {
        e.SubscribeURL = `${e.SubscribeURL}&x=1`;
      },
    ],
    [
      'Type',
      (e: Envelope) => {
        e.Type = 'UnsubscribeConfirmation';
      },
    ],
  ])('refuses a SubscriptionConfirmation with a tampered %s', async (_name, tamper) => {
    const env = fake.subscriptionConfirmation();
    tamper(env);
    expect(await verify(env)).toMatchObject({ ok: false, reason: 'bad_signature' });
  });

  it('refuses a message signed by another key (a forger with the right cert URL)', async () => {
    const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const env = fake.notification();
    env.Message = 'forged';
    fake.sign(env, privateKey);
    expect(await verify(env)).toMatchObject({ ok: false, reason: 'bad_signature' });
  });

  it.each<[string, () => KeyObject]>([
    ['an EC key', () => generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey],
    // node:crypto refuses a digest with Ed25519 outright: an error, not false.
    ['an Ed25519 key', () => generateKeyPairSync('ed25519').publicKey],
  ])('refuses, without failing, a certificate with %s', async (_name, key) => {
    const other = createSignatureVerifier({ fetcher: { getKey: async () => ({ ok: true, key: key() }) } });
    for (const version of ['1', '2']) {
      const e = envelopeOf(fake.notification({ signatureVersion: version }));
      expect(await other.verify(e, certUrlOf(e))).toMatchObject({ ok: false, reason: 'bad_signature' });
    }
  });

  it('verifies many messages at once, each on its own merits', async () => {
    const envs = Array.from({ length: 40 }, (_, i) => fake.notification({ message: `m${i}` }));
    for (const e of envs.filter((_, i) => i % 3 === 0)) e.Message = 'tampered';
    const results = await Promise.all(envs.map(verify));
    expect(results.map((r) => r.ok)).toEqual(envs.map((_, i) => i % 3 !== 0));
  });

  it.each([
    [
      'an unknown SignatureVersion',
      (e: Envelope) => {
        e.SignatureVersion = '3';
      },
      /SignatureVersion "1" or "2", got "3"/,
    ],
    [
      'no SignatureVersion',
      (e: Envelope) => {
        delete e.SignatureVersion;
      },
      /Expected a SignatureVersion/,
    ],
    [
      'no Signature',
      (e: Envelope) => {
        delete e.Signature;
      },
      /Expected a base64 Signature/,
    ],
    [
      'an empty Signature',
      (e: Envelope) => {
        e.Signature = '';
      },
      /Expected a base64 Signature/,
    ],
  ])('refuses %s without fetching', async (_name, tamper, message) => {
    let fetched = 0;
    const counting = createSignatureVerifier({
      fetcher: {
        getKey: async () => {
          fetched++;
          return { ok: false, reason: 'network', message: 'x' };
        },
      },
    });
    const env = fake.notification();
    tamper(env);
    const e = envelopeOf(env);
    const r = await counting.verify(e, certUrlOf(e));
    expect(r).toMatchObject({ ok: false, reason: 'bad_signature' });
    if (!r.ok) expect(r.message).toMatch(message);
    expect(fetched).toBe(0);
  });

  it('reports an unavailable certificate as cert_unavailable (503), not as a bad signature', async () => {
    const env = envelopeOf(
      fake.notification({ signingCertUrl: `${fake.origin}/SimpleNotificationService-0000.pem` }),
    );
    expect(await verifier.verify(env, certUrlOf(env))).toMatchObject({
      ok: false,
      reason: 'cert_unavailable',
    });
  });
});

const dir = corpusDir();
describe.skipIf(!dir)('signature verifier on the real AWS corpus', () => {
  if (!dir) it.skip(CORPUS_MISSING, () => {});
  const corpus: SignedCorpusMessage[] = dir ? loadSignedCorpus(dir) : [];
  const verifier = createSignatureVerifier({
    fetcher: keysByName(Object.fromEntries(corpus.map((m) => [m.certName, m.certPem]))),
  });
  const verify = (raw: Record<string, unknown>) => {
    const e = envelopeOf(toHttpFormat(raw));
    return verifier.verify(e, certUrlOf(e));
  };

  it('finds the corpus messages (not an empty or moved directory)', () => {
    expect(corpus.length).toBeGreaterThanOrEqual(30);
    expect(corpus.filter((m) => m.negative).length).toBe(2);
  });

  it.each(corpus.filter((m) => !m.negative).map((m) => [m.name, m] as const))(
    'verifies %s',
    async (_name, m) => {
      expect(await verify(m.raw)).toEqual({ ok: true });
    },
  );

  it.each(corpus.filter((m) => m.negative).map((m) => [m.name, m] as const))(
    'refuses %s',
    async (_name, m) => {
      expect(await verify(m.raw)).toMatchObject({ ok: false, reason: 'bad_signature' });
    },
  );

  it('does not check certificate dates: every corpus certificate has expired', () => {
    for (const m of corpus)
      expect(new Date(new X509Certificate(m.certPem).validTo).getTime()).toBeLessThan(Date.now());
  });

  const signed = ['Message', 'MessageId', 'Timestamp', 'TopicArn'];
  it.each(corpus.filter((m) => !m.negative && m.http).map((m) => [m.name, m] as const))(
    'refuses every tampered copy of %s, and ignores changes to unsigned fields',
    async (_name, m) => {
      for (const field of [
        ...signed,
        ...(m.raw.Type === 'Notification' ? ['Subject'] : ['Token', 'SubscribeURL']),
      ]) {
        const copy = { ...m.raw, [field]: `${String(m.raw[field] ?? '')}x` };
        expect(await verify(copy), field).toMatchObject({ ok: false, reason: 'bad_signature' });
      }
      const unsigned = {
        ...m.raw,
        UnsubscribeURL: 'https://elsewhere/',
        MessageAttributes: { added: { Type: 'String', Value: 'x' } },
      };
      expect(await verify(unsigned)).toEqual({ ok: true });
    },
  );
});

describe.skipIf(!dir)('differential: sns-validator 0.3.5 agrees with our verifier', () => {
  let fake: FakeSns;
  let oracle: ReturnType<typeof snsValidatorOracle>;
  let ours: SignatureVerifier;
  const corpus: SignedCorpusMessage[] = dir ? loadSignedCorpus(dir) : [];
  beforeAll(async () => {
    fake = await FakeSns.start();
    for (const m of corpus) fake.serveCertificate(m.certName, m.certPem);
    oracle = snsValidatorOracle({ caPem: fake.caPem, hostPattern: /^127\.0\.0\.1:\d+$/ });
    ours = createSignatureVerifier({
      fetcher: keysByName({
        ...Object.fromEntries(corpus.map((m) => [m.certName, m.certPem])),
        [new URL(fake.signingCertUrl).pathname.slice(1)]: testTls.signingCertPem,
      }),
    });
  });
  afterAll(async () => {
    oracle?.restore();
    await fake?.close();
  });

  /** Both verdicts for one message, its (unsigned) certificate URL pointed at the fake. */
  async function both(raw: Record<string, unknown>, certName: string) {
    const local = { ...toHttpFormat(raw), SigningCertURL: `${fake.origin}/${certName}` };
    const theirs = await oracle.validate(local);
    const e = envelopeOf(local);
    const mine = await ours.verify(e, certUrlOf(e));
    return { theirs: theirs.ok, mine: mine.ok, error: theirs.error };
  }

  // sns-validator supports Notification and SubscriptionConfirmation (its UnsubscribeConfirmation
  // string-to-sign lacks the Token, see below).
  const supported = corpus.filter((m) => m.raw.Type !== 'UnsubscribeConfirmation');
  it.each(supported.map((m) => [m.name, m] as const))('%s and its tampered copies', async (_name, m) => {
    const verdict = await both(m.raw, m.certName);
    expect(verdict.mine).toBe(!m.negative);
    expect(verdict.theirs, verdict.error).toBe(verdict.mine);
    for (const field of ['Message', 'MessageId', 'Timestamp', 'TopicArn']) {
      const tampered = await both({ ...m.raw, [field]: `${String(m.raw[field])}x` }, m.certName);
      expect(tampered, field).toMatchObject({ mine: false, theirs: false });
    }
  });

  it.each([
    ['v1', '1'],
    ['v2', '2'],
  ])('FakeSns %s Notifications and SubscriptionConfirmations', async (_name, version) => {
    const certName = new URL(fake.signingCertUrl).pathname.slice(1);
    for (const env of [
      fake.notification({ signatureVersion: version, subject: 'S' }),
      fake.notification({ signatureVersion: version }),
      fake.subscriptionConfirmation({ signatureVersion: version }),
    ]) {
      expect(await both(env, certName)).toMatchObject({ mine: true, theirs: true });
      expect(await both({ ...env, Message: 'x' }, certName)).toMatchObject({ mine: false, theirs: false });
    }
  });

  it('disagrees on UnsubscribeConfirmation, where sns-validator leaves the Token out of the string to sign', async () => {
    const env = fake.unsubscribeConfirmation();
    const verdict = await both(env, new URL(fake.signingCertUrl).pathname.slice(1));
    expect(verdict).toMatchObject({ mine: true, theirs: false });
    expect(verdict.error).toMatch(/signature is invalid/);
  });
});
