import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDelivery, type Delivery } from '../../src/delivery/delivery.js';
import { MAX_EVENT_BYTES } from '../../src/pagerduty/limits.js';
import type { OutboundEvent } from '../../src/rules/types.js';
import { entry, tempDir, testConfig } from '../helpers/delivery.js';
import { FakePagerDuty, testRoutingKey } from '../helpers/fake-pagerduty.js';
import { captureLogger } from '../helpers/log.js';

const CORPUS = resolve(process.env.PD_RELAY_CORPUS ?? join(import.meta.dirname, '../../../shared/corpus'));
const MESSAGES = join(CORPUS, 'messages');
const present = existsSync(MESSAGES);
if (!present)
  console.warn(`Skipping the corpus delivery test: no corpus at ${MESSAGES} (set PD_RELAY_CORPUS).`);

function payloadFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return payloadFiles(path);
    return name.endsWith('.json') && !name.includes('.orig.') ? [path] : [];
  });
}

describe.skipIf(!present)('delivery of real AWS payloads', () => {
  let tmp: ReturnType<typeof tempDir>;
  let fake: FakePagerDuty;
  let delivery: Delivery;
  beforeAll(async () => {
    tmp = tempDir();
    fake = await FakePagerDuty.start();
    const config = testConfig({
      dir: tmp.dir,
      url: fake.url,
      routes: { default: { keys: [testRoutingKey('corpus1'), testRoutingKey('corpus2')] } },
    });
    delivery = await createDelivery(config, { logger: captureLogger().logger, registry: new Registry() });
    delivery.start();
  });
  afterAll(async () => {
    await delivery.stop(0);
    await fake.close();
    tmp.cleanup();
  });

  it('delivers every corpus message as custom_details (raw and parsed), each within 512,000 bytes', async () => {
    const files = payloadFiles(MESSAGES);
    expect(files.length).toBeGreaterThan(20);
    const events: OutboundEvent[] = files.map((file) => {
      const raw = readFileSync(file, 'utf8');
      const name = relative(MESSAGES, file);
      return {
        route: 'default',
        rule: 'corpus',
        action: 'trigger',
        dedupKey: name,
        body: {
          event_action: 'trigger',
          dedup_key: name,
          payload: {
            summary: `Corpus: ${name}`,
            source: 'corpus',
            severity: 'warning',
            // What a rule that forwards everything produces: the parsed message and its text.
            custom_details: { message: JSON.parse(raw) as unknown, raw },
          },
        },
      };
    });
    const big = events.filter((e) => Buffer.byteLength(JSON.stringify(e.body)) > MAX_EVENT_BYTES);
    expect(big.length).toBeGreaterThanOrEqual(1);
    await Promise.all(events.map((e) => delivery.sink.commit(entry([e]))));
    await fake.waitFor((f) => f.accepted.length === files.length, 10_000, 'every corpus event');

    expect(fake.count(400)).toBe(0);
    for (const got of fake.accepted) expect(got.bytes).toBeLessThanOrEqual(MAX_EVENT_BYTES);
    const cut = fake.accepted.filter(
      (e) =>
        (e.body.payload as { custom_details: Record<string, unknown> }).custom_details.pd_relay_truncated,
    );
    expect(cut.map((e) => e.dedupKey).sort()).toEqual(big.map((e) => e.dedupKey).sort());
  });
});
