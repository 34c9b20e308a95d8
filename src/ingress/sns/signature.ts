import { verify as verifySignature } from 'node:crypto';
import type { CertificateFetcher } from './cert-fetcher.js';
import type { SnsEnvelope } from './types.js';

/**
 * The fields each message type signs, in the order SNS signs them (AWS docs, "Verifying the
 * signatures of Amazon SNS messages"). Both confirmation types sign the Token and the SubscribeURL:
 * sns-validator 0.3.5 leaves Token out for UnsubscribeConfirmation, which is why it never verifies
 * one. MessageAttributes and UnsubscribeURL are not signed.
 */
const SIGNED_FIELDS = {
  Notification: ['Message', 'MessageId', 'Subject', 'Timestamp', 'TopicArn', 'Type'],
  SubscriptionConfirmation: [
    'Message',
    'MessageId',
    'SubscribeURL',
    'Timestamp',
    'Token',
    'TopicArn',
    'Type',
  ],
  UnsubscribeConfirmation: ['Message', 'MessageId', 'SubscribeURL', 'Timestamp', 'Token', 'TopicArn', 'Type'],
} as const;

/** SignatureVersion → digest of the RSA PKCS#1 v1.5 signature. */
const DIGESTS: Readonly<Record<string, string>> = { '1': 'sha1', '2': 'sha256' };

/**
 * The canonical string SNS signs: `<Key>\n<value>\n` for each signed field that is present (Subject
 * only when the message has one), in the fixed order above.
 */
export function stringToSign(envelope: SnsEnvelope): string {
  const fields = envelope as unknown as Record<string, string | undefined>;
  let out = '';
  for (const key of SIGNED_FIELDS[envelope.Type]) {
    const value = fields[key];
    if (value !== undefined) out += `${key}\n${value}\n`;
  }
  return out;
}

export type SignatureFieldsCheck =
  | { ok: true; digest: string; signature: Buffer }
  | { ok: false; message: string };

/**
 * The cheap part of verification, done before any certificate is fetched: a known SignatureVersion
 * and a non-empty base64 Signature.
 */
export function checkSignatureFields(envelope: SnsEnvelope): SignatureFieldsCheck {
  const version = envelope.SignatureVersion;
  const digest = version === undefined ? undefined : DIGESTS[version];
  if (!digest) {
    return {
      ok: false,
      message:
        version === undefined
          ? 'Expected a SignatureVersion field ("1" or "2").'
          : `Expected SignatureVersion "1" or "2", got ${JSON.stringify(version.slice(0, 16))}.`,
    };
  }
  const signature = envelope.Signature ? Buffer.from(envelope.Signature, 'base64') : undefined;
  if (!signature || signature.length === 0)
    return { ok: false, message: 'Expected a base64 Signature field.' };
  return { ok: true, digest, signature };
}

export type VerifyResult =
  | { ok: true }
  | { ok: false; reason: 'bad_signature'; message: string }
  /** The certificate could not be had right now: answer 503 so that SNS retries. */
  | { ok: false; reason: 'cert_unavailable'; message: string };

/** Checks an SNS message's signature against the certificate at its (already checked) SigningCertURL. */
export interface SignatureVerifier {
  verify(envelope: SnsEnvelope, certUrl: URL): Promise<VerifyResult>;
}

/**
 * pd-relay's verifier, on node:crypto with the certificate's public key cached by the fetcher
 * (verifying against a PEM string, as sns-validator does, re-parses the certificate every time:
 * about 8× slower). Certificate validity dates are not checked, as in AWS's own validators.
 */
export function createSignatureVerifier(deps: { fetcher: CertificateFetcher }): SignatureVerifier {
  return {
    async verify(envelope, certUrl) {
      const fields = checkSignatureFields(envelope);
      if (!fields.ok) return { ok: false, reason: 'bad_signature', message: fields.message };
      const cert = await deps.fetcher.getKey(certUrl);
      if (!cert.ok) {
        return {
          ok: false,
          reason: 'cert_unavailable',
          message: `Cannot get the signing certificate right now (${cert.reason}: ${cert.message}).`,
        };
      }
      // On the event loop, not libuv's pool (verify's callback form): measured in the ingest
      // benchmark, the hand-off costs ~3% more CPU per request and frees loop time only when a
      // core is idle; the shipped pod is limited to half a core (k8s/base), where it gains nothing.
      let valid = false;
      try {
        valid = verifySignature(
          fields.digest,
          Buffer.from(stringToSign(envelope), 'utf8'),
          cert.key,
          fields.signature,
        );
      } catch {
        // A key of the wrong type or a malformed signature is just a signature that does not verify.
        valid = false;
      }
      return valid
        ? { ok: true }
        : { ok: false, reason: 'bad_signature', message: 'The message signature is invalid.' };
    },
  };
}
