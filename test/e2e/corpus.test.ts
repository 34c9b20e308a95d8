import { describe, expect, it } from 'vitest';
import { CORPUS_MISSING, corpusDir, loadSignedCorpus, toHttpFormat } from '../helpers/corpus.js';
import type { Envelope } from '../helpers/fake-sns.js';
import { type E2eWorld, until, useE2eWorld } from './helpers/world.js';

interface Expected {
  rule: string;
  action: 'trigger' | 'resolve';
  dedupKey: string;
  /** For the catch-all: the summary it must carry (the Subject, else the first line). */
  summary?: string;
}

/**
 * What each real AWS message must become, worked out here from the message itself and the
 * documented built-in rules — not by running the relay's own rule engine, which would agree with
 * any bug in it: a classic CloudWatch alarm → `cloudwatch-alarm` keyed on its AlarmArn; a Security
 * Hub import → `securityhub-finding`, one event per finding keyed on its Id, resolving a PASSED /
 * RESOLVED / SUPPRESSED / ARCHIVED finding; anything else → `catch-all`, keyed on the MessageId,
 * summarised by the Subject or the first line.
 */
function expectedEvents(envelope: Record<string, unknown>): Expected[] {
  const text = String(envelope.Message);
  let json: Record<string, unknown> | undefined;
  try {
    const parsed: unknown = JSON.parse(text);
    if (parsed && typeof parsed === 'object' && !Array.isArray(parsed))
      json = parsed as Record<string, unknown>;
  } catch {
    json = undefined;
  }
  if (json && typeof json.AlarmArn === 'string' && typeof json.NewStateValue === 'string') {
    return [
      {
        rule: 'cloudwatch-alarm',
        action: json.NewStateValue === 'OK' ? 'resolve' : 'trigger',
        dedupKey: json.AlarmArn,
      },
    ];
  }
  if (
    json &&
    json.source === 'aws.securityhub' &&
    json['detail-type'] === 'Security Hub Findings - Imported'
  ) {
    type Finding = {
      Id: string;
      Workflow?: { Status?: string };
      Compliance?: { Status?: string };
      RecordState?: string;
    };
    const findings = (json.detail as { findings: Finding[] }).findings;
    return findings.map((f) => ({
      rule: 'securityhub-finding',
      action:
        ['RESOLVED', 'SUPPRESSED'].includes(f.Workflow?.Status ?? '') ||
        f.Compliance?.Status === 'PASSED' ||
        f.RecordState === 'ARCHIVED'
          ? 'resolve'
          : 'trigger',
      dedupKey: String(f.Id),
    }));
  }
  const subject = typeof envelope.Subject === 'string' ? envelope.Subject : '';
  const firstLine =
    text
      .split('\n')
      .find((l) => l.trim() !== '')
      ?.trim() ?? '';
  return [
    {
      rule: 'catch-all',
      action: 'trigger',
      dedupKey: `sns/${String(envelope.MessageId)}`,
      ...(json ? (subject ? { summary: subject } : {}) : { summary: subject || firstLine }),
    },
  ];
}

/**
 * Every real AWS-signed message of ../shared/corpus/sns-signed through the built relay's HTTP
 * path, with the real AWS certificates served by FakeSns under their real names (the
 * SigningCertURL is not signed, so pointing it at the local host changes nothing the signature
 * covers). Lambda-format copies are posted in the HTTP spelling AWS validators convert them to.
 */
const dir = corpusDir();
describe.skipIf(!dir)('e2e: the real AWS corpus through pd-relay serve', () => {
  if (!dir) it.skip(CORPUS_MISSING, () => {});
  const corpus = dir ? loadSignedCorpus(dir) : [];
  let world: E2eWorld;
  useE2eWorld((w) => {
    world = w;
    for (const m of corpus) w.sns.serveCertificate(m.certName, m.certPem);
  });

  it('delivers what each genuine Notification means, answers copies as duplicates and refuses the tampered ones', async () => {
    const relay = await world.startRelay(world.dir(), {
      topics: ['arn:aws:sns:*'],
      // Certificates from FakeSns; SubscribeURLs (signed, so unchanged) stay on the real SNS hosts
      // and are never visited: autoConfirm is off.
      certHostPattern: `${world.sns.certHostPattern.slice(1, -1)}|sns\\.[a-z0-9-]+\\.amazonaws\\.com`,
      autoConfirm: false,
      logLevel: 'debug',
      routes: { default: { aliases: ['corpus-1', 'corpus-2'] } },
    });
    const sns = world.client(() => relay);
    const local = (raw: Record<string, unknown>, certName: string): Envelope => ({
      ...raw,
      SigningCertURL: `${world.sns.origin}/${certName}`,
    });

    // HTTP-format files first, then the Lambda-format copies of the same messages.
    const genuine = corpus.filter((m) => !m.negative);
    const ordered = [...genuine.filter((m) => m.http), ...genuine.filter((m) => !m.http)];
    const notifications = ordered.filter((m) => m.raw.Type === 'Notification');
    expect(new Set(notifications.map((m) => m.raw.MessageId)).size).toBeGreaterThanOrEqual(14);

    const accepted = new Map<string, Record<string, unknown>>();
    for (const m of notifications) {
      const envelope = local(toHttpFormat(m.raw), m.certName);
      const r = await sns.post(envelope);
      const id = String(m.raw.MessageId);
      expect(r.status, m.name).toBe(200);
      expect(JSON.parse(r.body), m.name).toEqual({ result: accepted.has(id) ? 'duplicate' : 'accepted' });
      if (!accepted.has(id)) accepted.set(id, envelope);
    }
    for (const m of ordered.filter((x) => x.raw.Type === 'SubscriptionConfirmation')) {
      const r = await sns.post(local(toHttpFormat(m.raw), m.certName));
      expect(JSON.parse(r.body), m.name).toEqual({ result: 'confirm_logged' });
    }
    for (const m of corpus.filter((x) => x.negative)) {
      const r = await sns.post(local(toHttpFormat(m.raw), m.certName));
      expect(r.status, m.name).toBe(403);
      expect(JSON.parse(r.body), m.name).toMatchObject({ error: 'bad_signature' });
    }

    const expected = [...accepted.values()].flatMap((e) =>
      expectedEvents(e).map((x) => ({ ...x, messageId: String(e.MessageId) })),
    );
    await world.pd.waitFor((f) => f.accepted.length >= expected.length, 15_000, 'every corpus event');
    await new Promise((r) => setTimeout(r, 300));
    const got = world.pd.accepted;
    expect(got.map((e) => `${e.action} ${e.dedupKey}`).sort()).toEqual(
      expected.map((e) => `${e.action} ${e.dedupKey}`).sort(),
    );
    expect(world.pd.count(400)).toBe(0);
    expect(world.pd.duplicates()).toEqual([]);
    for (const e of got) expect(e.bytes).toBeLessThanOrEqual(512_000);
    // Summaries the catch-all renders from the Subject or the text.
    for (const x of expected.filter((e) => e.summary !== undefined)) {
      const event = got.find((e) => e.dedupKey === x.dedupKey);
      expect((event?.body.payload as { summary?: string } | undefined)?.summary, x.dedupKey).toBe(x.summary);
    }
    // Which rule decided each message, from the relay's own debug lines.
    await until(
      () =>
        new Set(relay.logs.filter((l) => l.msg === 'Rule matched.').map((l) => l.messageId)).size >=
        accepted.size,
      'a "Rule matched." line per message',
    );
    for (const [id] of accepted) {
      const rules = relay.logs
        .filter((l) => l.msg === 'Rule matched.' && l.messageId === id)
        .map((l) => l.rule);
      const want = [...new Set(expected.filter((e) => e.messageId === id).map((e) => e.rule))];
      expect(rules, id).toEqual(want);
    }
    // Each real AWS certificate was fetched once.
    for (const name of new Set(notifications.map((m) => m.certName)))
      expect(world.sns.certFetches(`${world.sns.origin}/${name}`), name).toHaveLength(1);
  });
});
