import BetterSqlite3 from 'better-sqlite3';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createDelivery, type Delivery } from '../../src/delivery/delivery.js';
import { createIngressFromConfig } from '../../src/ingress/sns/from-config.js';
import type { SnsIngress } from '../../src/ingress/sns/handler.js';
import { createRegistry } from '../../src/metrics/registry.js';
import { tempDir, testConfig } from '../helpers/delivery.js';
import { testRoutingKey } from '../helpers/fake-pagerduty.js';
import { type Envelope, FakeSns } from '../helpers/fake-sns.js';
import { oneEventPerMessage } from '../helpers/ingress.js';
import { captureLogger } from '../helpers/log.js';

/**
 * MessageId de-duplication against the real SQLite spool (test/ingress/ingress.test.ts covers it
 * against the in-memory sink): the spool knows a message from the moment it joins a group commit,
 * before that commit is durable or has failed.
 */
describe('de-duplication with the SQLite spool', () => {
  let fake: FakeSns;
  beforeAll(async () => {
    fake = await FakeSns.start();
  });
  afterAll(async () => {
    await fake?.close();
  });

  const cleanups: Array<() => void | Promise<void>> = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  async function relay(): Promise<{ ingress: SnsIngress; delivery: Delivery; dir: string }> {
    const tmp = tempDir();
    cleanups.push(tmp.cleanup);
    const base = testConfig({ dir: tmp.dir, routes: { default: { keys: [testRoutingKey(1)] } } });
    const config = { ...base, sns: { ...base.sns, certHostPattern: fake.certHostPattern } };
    const logs = captureLogger();
    const registry = createRegistry();
    // Not started: nothing is sent, the spool is what is under test.
    const delivery = await createDelivery(config, {
      logger: logs.logger,
      registry,
      spoolProbeIntervalMs: 20,
    });
    cleanups.push(() => delivery.stop(0));
    const ingress = createIngressFromConfig(config, {
      handleNotification: oneEventPerMessage,
      sink: delivery.sink,
      logger: logs.logger,
      registry,
      readiness: () => null,
      ca: fake.caPem,
    });
    return { ingress, delivery, dir: tmp.dir };
  }

  const post = async (ingress: SnsIngress, env: Envelope) => {
    const res = await ingress.handle(
      new Request('http://relay.test/sns', {
        method: 'POST',
        headers: { 'content-type': 'text/plain; charset=UTF-8', 'x-amz-sns-message-type': 'Notification' },
        body: JSON.stringify(env),
      }),
      undefined,
    );
    return { status: res.status, json: (await res.json()) as Record<string, unknown> };
  };

  it('never answers 200 "duplicate" to a redelivery whose first delivery then fails to commit', async () => {
    const { ingress, delivery, dir } = await relay();
    // Warm the certificate cache, so that both deliveries below reach the spool in one loop turn.
    expect((await post(ingress, fake.notification())).json).toEqual({ result: 'accepted' });

    // Another process holds the write lock: the group commit fails with SQLITE_BUSY (503, SNS retries).
    const other = new BetterSqlite3(`${dir}/spool.db`);
    cleanups.push(() => {
      other.close();
    });
    other.exec('BEGIN IMMEDIATE');
    const env = fake.notification();
    const answers = await Promise.all([post(ingress, env), post(ingress, env)]);
    // A 200 tells SNS the message was delivered: it would never be sent again, yet it is not stored.
    expect(answers.map((a) => a.status)).toEqual([503, 503]);

    other.exec('COMMIT');
    await expect.poll(() => delivery.readiness(), { timeout: 5000 }).toBeNull();
    expect((await post(ingress, env)).json).toEqual({ result: 'accepted' });
    expect((await post(ingress, env)).json).toEqual({ result: 'duplicate' });
    expect(await (await delivery.stats()).counts?.pending).toBe(2);
  });

  it('commits once for concurrent deliveries of one MessageId, and answers the others "duplicate"', async () => {
    const { ingress, delivery } = await relay();
    const env = fake.notification();
    const answers = await Promise.all(Array.from({ length: 5 }, () => post(ingress, env)));
    expect(answers.map((a) => a.json.result).sort()).toEqual([
      'accepted',
      'duplicate',
      'duplicate',
      'duplicate',
      'duplicate',
    ]);
    expect(await (await delivery.stats()).counts?.pending).toBe(1);
  });
});
