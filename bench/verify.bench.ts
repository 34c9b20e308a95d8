// `npm run bench verify`: signature verifications per second, sns-validator 0.3.5 (the baseline:
// what DESIGN.md first named) against pd-relay's verifier, on the same pre-signed Notifications,
// both with warm certificate caches. sns-validator verifies against the cached PEM text, which
// re-parses the certificate on every message; pd-relay caches the parsed public KeyObject. Rounds
// alternate between the two so that machine noise hits both alike; the median round is reported.
import { createCertificateFetcher } from '../src/ingress/sns/cert-fetcher.js';
import { parseEnvelope } from '../src/ingress/sns/envelope.js';
import { createSignatureVerifier } from '../src/ingress/sns/signature.js';
import { checkSigningCertUrl, compileHostPattern } from '../src/ingress/sns/urls.js';
import { FakeSns } from '../test/helpers/fake-sns.js';
import { snsValidatorOracle } from '../test/helpers/sns-validator.js';
import { signedNotifications } from './signed-messages.js';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const ROUND_MS = Number(process.env.BENCH_ROUND_MS ?? 1_000);
const MESSAGES = 20_000;

const fake = await FakeSns.start();
const oracle = snsValidatorOracle({ caPem: fake.caPem, hostPattern: /^127\.0\.0\.1:\d+$/ });
try {
  const messages = (await signedNotifications(MESSAGES, fake.signingCertUrl)).map(
    (b) => JSON.parse(b) as Record<string, unknown>,
  );
  const hostPattern = compileHostPattern(fake.certHostPattern);
  const verifier = createSignatureVerifier({
    fetcher: createCertificateFetcher({ timeoutMs: 5_000, ca: fake.caPem }),
  });

  // Per message, each does what it does in a relay: sns-validator its structure and URL checks and
  // the signature; pd-relay the envelope shape, the URL checks and the signature.
  const theirs = async (m: Record<string, unknown>) => (await oracle.validate(m)).ok;
  const ours = async (m: Record<string, unknown>) => {
    const parsed = parseEnvelope(m);
    if (!parsed.ok) return false;
    const url = checkSigningCertUrl(parsed.envelope.SigningCertURL, hostPattern);
    return url.ok && (await verifier.verify(parsed.envelope, url.url)).ok;
  };

  const round = async (fn: (m: Record<string, unknown>) => Promise<boolean>, offset: number) => {
    let n = 0;
    const start = performance.now();
    while (performance.now() - start < ROUND_MS) {
      if (!(await fn(messages[(offset + n) % messages.length] as Record<string, unknown>))) {
        throw new Error('A valid message failed verification');
      }
      n++;
    }
    return (n / (performance.now() - start)) * 1000;
  };

  // Warm both certificate caches (one download each) and the JIT.
  await round(theirs, 0);
  await round(ours, 0);
  const results = { theirs: [] as number[], ours: [] as number[] };
  for (let r = 0; r < ROUNDS; r++) {
    results.theirs.push(await round(theirs, r * 1000));
    results.ours.push(await round(ours, r * 1000));
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
  const t = median(results.theirs);
  const o = median(results.ours);
  console.log(
    `Node ${process.version}, ${ROUNDS} alternating rounds of ${ROUND_MS} ms, SignatureVersion 2 (RSA-2048, SHA-256), one core.`,
  );
  console.log(
    `sns-validator 0.3.5   ${t.toFixed(0).padStart(7)} verifies/s   (${(1e6 / t).toFixed(1)} µs each)`,
  );
  console.log(
    `pd-relay verifier     ${o.toFixed(0).padStart(7)} verifies/s   (${(1e6 / o).toFixed(1)} µs each)`,
  );
  console.log(
    `pd-relay / sns-validator: ×${(o / t).toFixed(1)}   (certificate downloads: ${fake.certFetches().length}, one each)`,
  );
} finally {
  oracle.restore();
  await fake.close();
}
