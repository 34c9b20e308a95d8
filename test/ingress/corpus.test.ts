import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CORPUS_MISSING, corpusDir, loadSignedCorpus, type SignedCorpusMessage } from '../helpers/corpus.js';
import { FakeSns } from '../helpers/fake-sns.js';
import { type IngressHarness, startIngress } from '../helpers/ingress.js';

/**
 * The real AWS corpus (../shared/corpus/sns-signed) through the relay's HTTP intake: messages
 * signed by AWS, verified against the real AWS certificates served by a local HTTPS host. The
 * SigningCertURL is not covered by the signature, so pointing it at the local host changes nothing
 * else; the SubscribeURL is signed and stays on sns.<region>.amazonaws.com.
 */
const dir = corpusDir();
describe.skipIf(!dir)('real AWS-signed messages through POST /sns', () => {
  if (!dir) it.skip(CORPUS_MISSING, () => {});
  const corpus: SignedCorpusMessage[] = dir ? loadSignedCorpus(dir) : [];
  const http = corpus.filter((m) => m.http && !m.negative);
  let fake: FakeSns;
  let relay: IngressHarness;
  const local = (m: SignedCorpusMessage, raw = m.raw) => ({
    ...raw,
    SigningCertURL: `${fake.origin}/${m.certName}`,
  });

  beforeAll(async () => {
    fake = await FakeSns.start();
    for (const m of corpus) fake.serveCertificate(m.certName, m.certPem);
    relay = await startIngress({
      fake,
      sns: {
        topics: ['arn:aws:sns:*'],
        // Certificates from the local host; SubscribeURLs (signed, so unchanged) on the real SNS hosts.
        certHostPattern: `${fake.certHostPattern.slice(1, -1)}|sns\\.[a-z0-9-]+\\.amazonaws\\.com`,
        // Never visit a real AWS SubscribeURL from a test.
        autoConfirm: false,
      },
    });
  });
  afterAll(async () => {
    await relay?.close();
    await fake?.close();
  });

  it('has HTTP-format Notifications and SubscriptionConfirmations to send', () => {
    expect(http.filter((m) => m.raw.Type === 'Notification').length).toBeGreaterThanOrEqual(15);
    expect(http.filter((m) => m.raw.Type === 'SubscriptionConfirmation').length).toBe(2);
  });

  const sent = new Set<string>();
  it.each(http.filter((m) => m.raw.Type === 'Notification').map((m) => [m.name, m] as const))(
    'accepts the Notification %s',
    async (_name, m) => {
      const r = await relay.post(local(m));
      expect(r.status).toBe(200);
      // Some sources publish the same AWS message; the second copy is a redelivery.
      expect(r.json).toEqual({ result: sent.has(String(m.raw.MessageId)) ? 'duplicate' : 'accepted' });
      sent.add(String(m.raw.MessageId));
      expect(relay.sink.entries.some((e) => e.messageId === String(m.raw.MessageId))).toBe(true);
    },
  );

  it.each(http.filter((m) => m.raw.Type === 'SubscriptionConfirmation').map((m) => [m.name, m] as const))(
    'verifies the SubscriptionConfirmation %s and logs its SubscribeURL',
    async (_name, m) => {
      const r = await relay.post(local(m));
      expect(r.json).toEqual({ result: 'confirm_logged' });
      expect(relay.logs.lines()).toContainEqual(
        expect.objectContaining({ subscribeUrl: m.raw.SubscribeURL }),
      );
    },
  );

  it.each(corpus.filter((m) => m.negative).map((m) => [m.name, m] as const))(
    'refuses %s with 403',
    async (_name, m) => {
      const commits = relay.sink.commits;
      const r = await relay.post(local(m));
      expect(r.status).toBe(403);
      expect(r.json).toMatchObject({ error: 'bad_signature' });
      expect(relay.sink.commits).toBe(commits);
    },
  );

  it.each(http.map((m) => [m.name, m] as const))('refuses every tampered copy of %s', async (_name, m) => {
    const fields = [
      'Message',
      'MessageId',
      'Timestamp',
      'TopicArn',
      ...(m.raw.Type === 'Notification' ? ['Subject'] : ['Token']),
    ];
    for (const field of fields) {
      const commits = relay.sink.commits;
      const value = field === 'TopicArn' ? `${String(m.raw.TopicArn)}x` : `${String(m.raw[field] ?? '')}x`;
      const r = await relay.post(local(m, { ...m.raw, [field]: value }));
      expect(r.status, field).toBe(403);
      expect(relay.sink.commits).toBe(commits);
    }
  });

  it('fetched each real certificate once', () => {
    const names = new Set(http.map((m) => m.certName));
    for (const name of names) expect(fake.certFetches(`${fake.origin}/${name}`), name).toHaveLength(1);
  });
});
