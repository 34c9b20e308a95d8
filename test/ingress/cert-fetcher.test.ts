import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type CertFetchEvent,
  createCertificateFetcher,
  MAX_CERT_BYTES,
} from '../../src/ingress/sns/cert-fetcher.js';
import { FakeSns } from '../helpers/fake-sns.js';

describe('certificate fetcher (real HTTPS against FakeSns)', () => {
  let fake: FakeSns;
  beforeAll(async () => {
    fake = await FakeSns.start();
  });
  afterAll(() => fake?.close());

  const fresh = (extra: Partial<Parameters<typeof createCertificateFetcher>[0]> = {}) => {
    const events: CertFetchEvent[] = [];
    const fetcher = createCertificateFetcher({
      timeoutMs: 2_000,
      ca: fake.caPem,
      onFetch: (e) => events.push(e),
      ...extra,
    });
    return { fetcher, events };
  };
  const uniqueCertUrl = (name: string) =>
    fake.serveCertificate(`SimpleNotificationService-${name}.pem`, fake.caPem);

  it('fetches a certificate once and serves its key from cache afterwards', async () => {
    const url = uniqueCertUrl('a1');
    const { fetcher, events } = fresh();
    const first = await fetcher.getKey(new URL(url));
    expect(first.ok).toBe(true);
    if (first.ok) expect(first.key.asymmetricKeyType).toBe('rsa');
    for (let i = 0; i < 5; i++) expect((await fetcher.getKey(new URL(url))).ok).toBe(true);
    expect(fake.certFetches(url)).toHaveLength(1);
    expect(events).toEqual([expect.objectContaining({ url, result: 'ok' })]);
  });

  it('makes one download for 100 concurrent requests (single-flight)', async () => {
    const url = uniqueCertUrl('b2');
    fake.fault(new URL(url).pathname, { delayMs: 50 });
    const { fetcher } = fresh();
    const results = await Promise.all(Array.from({ length: 100 }, () => fetcher.getKey(new URL(url))));
    expect(results.every((r) => r.ok)).toBe(true);
    expect(fake.certFetches(url)).toHaveLength(1);
  });

  it.each([
    ['a 404', { status: 404 }, 'http_status', /Expected HTTP 200, got 404/],
    ['a 500', { status: 500 }, 'http_status', /got 500/],
    [
      'a body that is not a certificate',
      { status: 200, body: 'hello' },
      'bad_certificate',
      /Not a PEM certificate/,
    ],
  ] as const)('reports %s', async (_name, fault, reason, message) => {
    const url = uniqueCertUrl(`c${reason}${fault.status}`);
    fake.fault(new URL(url).pathname, fault);
    const { fetcher, events } = fresh();
    const r = await fetcher.getKey(new URL(url));
    expect(r).toMatchObject({ ok: false, reason });
    if (!r.ok) expect(r.message).toMatch(message);
    expect(events).toEqual([expect.objectContaining({ result: reason })]);
  });

  it('abandons a body over 64 KiB', async () => {
    const url = uniqueCertUrl('d4');
    fake.fault(new URL(url).pathname, { status: 200, body: 'x'.repeat(MAX_CERT_BYTES + 1) });
    const { fetcher } = fresh();
    expect(await fetcher.getKey(new URL(url))).toMatchObject({ ok: false, reason: 'too_large' });
  });

  it('gives up after certTimeoutMs on a host that never answers', async () => {
    const url = uniqueCertUrl('e5');
    fake.fault(new URL(url).pathname, { hang: true });
    const { fetcher } = fresh({ timeoutMs: 200 });
    const r = await fetcher.getKey(new URL(url));
    expect(r).toMatchObject({ ok: false, reason: 'timeout' });
    if (!r.ok) expect(r.message).toMatch(/within 200 ms/);
  });

  it('gives up after certTimeoutMs on a host that answers slower (a deadline, not an idle timeout)', async () => {
    const url = uniqueCertUrl('e6');
    fake.fault(new URL(url).pathname, { delayMs: 5_000 });
    const { fetcher } = fresh({ timeoutMs: 200 });
    expect(await fetcher.getKey(new URL(url))).toMatchObject({ ok: false, reason: 'timeout' });
  });

  it('remembers a failure only for failureTtlMs, then tries again', async () => {
    const url = uniqueCertUrl('f6');
    const path = new URL(url).pathname;
    fake.fault(path, { status: 503 });
    let now = 1_000_000;
    const { fetcher } = fresh({ clock: { now: () => now }, failureTtlMs: 1_000 });
    expect((await fetcher.getKey(new URL(url))).ok).toBe(false);
    fake.fault(path, undefined);
    now += 500;
    expect((await fetcher.getKey(new URL(url))).ok).toBe(false);
    expect(fake.certFetches(url)).toHaveLength(1);
    now += 600;
    expect((await fetcher.getKey(new URL(url))).ok).toBe(true);
    expect(fake.certFetches(url)).toHaveLength(2);
  });

  it('keeps at most cacheSize certificates', async () => {
    const urls = ['g1', 'g2', 'g3'].map(uniqueCertUrl);
    const { fetcher } = fresh({ cacheSize: 2 });
    for (const u of urls) await fetcher.getKey(new URL(u));
    await fetcher.getKey(new URL(urls[0] as string));
    expect(fake.certFetches(urls[0])).toHaveLength(2);
    expect(fake.certFetches(urls[2])).toHaveLength(1);
  });

  it('does not trust the test CA unless told to (production trusts the system store)', async () => {
    const url = uniqueCertUrl('h7');
    const fetcher = createCertificateFetcher({ timeoutMs: 2_000 });
    const r = await fetcher.getKey(new URL(url));
    expect(r).toMatchObject({ ok: false, reason: 'network' });
    if (!r.ok) expect(r.message).toMatch(/self[- ]signed|unable to verify|local issuer/i);
  });

  it('trusts the test CA in a child process through NODE_EXTRA_CA_CERTS, without a ca option', async () => {
    const url = uniqueCertUrl('i8');
    const script = fileURLToPath(new URL('../fixtures/fetch-cert.ts', import.meta.url));
    // Asynchronously: the FakeSns lives in this process's event loop.
    const run = (env: NodeJS.ProcessEnv) =>
      promisify(execFile)(process.execPath, ['--import', 'tsx', script, url], {
        env: { ...process.env, ...env },
        timeout: 20_000,
      });
    const [trusted, untrusted] = await Promise.all([
      run({ NODE_EXTRA_CA_CERTS: fake.caFile }),
      run({ NODE_EXTRA_CA_CERTS: '' }),
    ]);
    expect(trusted.stdout.trim(), trusted.stderr).toBe('ok');
    expect(untrusted.stdout.trim()).toMatch(/^network/);
  });
});
