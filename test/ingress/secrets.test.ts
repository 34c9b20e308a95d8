import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { FakeSns } from '../helpers/fake-sns.js';
import { type IngressHarness, startIngress } from '../helpers/ingress.js';

const KEY_A = 'R0UTINGKEYa1b2c3d4e5f6a7b8c9d0e1';
const KEY_B = 'R0UTINGKEYz9y8x7w6v5u4t3s2r1q0p9';
const PASSWORD = 'pa55-w0rd-that-must-not-leak';

describe('no routing key or basic-auth password in logs, metrics or responses', () => {
  let fake: FakeSns;
  let relay: IngressHarness;
  const seen: string[] = [];
  const basic = (user: string, pass: string) => `Basic ${Buffer.from(`${user}:${pass}`).toString('base64')}`;

  beforeAll(async () => {
    fake = await FakeSns.start();
    const yaml = [
      'server:',
      '  basicAuth: { username: sns, password: "${PD_PASSWORD}" }',
      'sns:',
      '  topics: ["arn:aws:sns:*:123456789012:*"]',
      'routes:',
      '  default:',
      `    keys: [{ alias: primary, key: "${KEY_A}" }, "${KEY_B}"]`,
    ].join('\n');
    const { config, problems } = parseConfig(yaml, 'relay.yaml', {
      env: { PD_PASSWORD: PASSWORD },
      baseDir: '/',
    });
    if (!config) throw new Error(problems.map((p) => p.message).join('\n'));
    relay = await startIngress({
      fake,
      sns: { ...config.sns, certHostPattern: fake.certHostPattern, certTimeoutMs: 200 },
      server: config.server,
    });
  });
  afterAll(async () => {
    await relay?.close();
    await fake?.close();
  });

  it('drives every kind of answer', async () => {
    const good = basic('sns', PASSWORD);
    const broken = fake.serveCertificate('SimpleNotificationService-dead.pem', 'not a cert');
    const cases: Array<[string, Record<string, unknown> | string, Record<string, string>, number]> = [
      ['no credentials', fake.notification(), {}, 401],
      ['wrong password', fake.notification(), { authorization: basic('sns', `${PASSWORD}x`) }, 401],
      ['password as the user', fake.notification(), { authorization: basic(PASSWORD, PASSWORD) }, 401],
      ['right credentials', fake.notification(), { authorization: good }, 200],
      ['bad signature', { ...fake.notification(), Message: 'x' }, { authorization: good }, 403],
      [
        'bad cert URL',
        { ...fake.notification(), SigningCertURL: 'http://x/y.pem' },
        { authorization: good },
        403,
      ],
      ['malformed', '{', { authorization: good }, 400],
      ['cert unavailable', fake.notification({ signingCertUrl: broken }), { authorization: good }, 503],
      ['confirmation', fake.subscriptionConfirmation(), { authorization: good }, 200],
    ];
    for (const [name, body, headers, status] of cases) {
      const r = await relay.post(body, { headers });
      expect(r.status, name).toBe(status);
      seen.push(JSON.stringify(r.json), JSON.stringify([...r.headers]));
    }
    for (const method of ['GET', 'DELETE']) {
      const r = await relay.post('', { method, headers: { authorization: good } });
      seen.push(JSON.stringify(r.json), JSON.stringify([...r.headers]));
    }
  });

  it('leaks none of them', async () => {
    const everything = [...seen, relay.logs.text(), await relay.registry.metrics()].join('\n');
    expect(relay.logs.lines().length).toBeGreaterThan(10);
    for (const secret of [
      PASSWORD,
      Buffer.from(`sns:${PASSWORD}`).toString('base64'),
      Buffer.from(PASSWORD).toString('base64'),
      KEY_A,
      KEY_B,
    ]) {
      expect(everything).not.toContain(secret);
    }
  });
});
