import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));

/**
 * The real AWS corpus: `../shared/corpus` beside the repository (env PD_RELAY_CORPUS overrides).
 * Null when absent; suites then skip with `CORPUS_MISSING` as the reason.
 */
export function corpusDir(): string | null {
  const dir = process.env.PD_RELAY_CORPUS
    ? resolve(process.env.PD_RELAY_CORPUS)
    : resolve(REPO_ROOT, '..', 'shared', 'corpus');
  return existsSync(dir) ? dir : null;
}

export const CORPUS_MISSING =
  'Real AWS corpus not found at ../shared/corpus (set PD_RELAY_CORPUS): corpus tests skipped.';

/** One file of `sns-signed/`: a message genuinely signed by AWS and the certificate it names. */
export interface SignedCorpusMessage {
  /** `folder/file.json`, for test names. */
  name: string;
  /** The JSON as stored (HTTP(S) or Lambda spelling). */
  raw: Record<string, unknown>;
  /** True for NEGATIVE-* files: tampered or fabricated upstream, must not verify. */
  negative: boolean;
  /** True when the file is in the HTTP(S) delivery format (SigningCertURL, no Lambda spellings). */
  http: boolean;
  /** The certificate's file name (basename of the SigningCertURL) and its PEM. */
  certName: string;
  certPem: string;
}

/**
 * Reads `<corpus>/sns-signed`: every message with the certificate of the same file name found in
 * its folder or, failing that, any other folder (the same AWS certificate signs in every region).
 */
export function loadSignedCorpus(dir: string): SignedCorpusMessage[] {
  const root = join(dir, 'sns-signed');
  const folders = readdirSync(root)
    .filter((d) => statSync(join(root, d)).isDirectory())
    .sort();
  const pems = new Map<string, string>();
  for (const d of folders) {
    for (const f of readdirSync(join(root, d))) {
      if (f.startsWith('SimpleNotificationService-') && !pems.has(f)) pems.set(f, join(root, d, f));
    }
  }
  const out: SignedCorpusMessage[] = [];
  for (const d of folders) {
    for (const f of readdirSync(join(root, d))
      .filter((x) => x.endsWith('.json'))
      .sort()) {
      const raw = JSON.parse(readFileSync(join(root, d, f), 'utf8')) as Record<string, unknown>;
      const certUrl = String(raw.SigningCertURL ?? raw.SigningCertUrl);
      const certName = basename(new URL(certUrl).pathname);
      const local = join(root, d, certName);
      const certPath = existsSync(local) ? local : pems.get(certName);
      if (!certPath) throw new Error(`No certificate ${certName} in the corpus for ${d}/${f}`);
      out.push({
        name: `${d}/${f}`,
        raw,
        negative: f.startsWith('NEGATIVE-'),
        http: 'SigningCertURL' in raw && !('SigningCertUrl' in raw),
        certName,
        certPem: readFileSync(certPath, 'utf8'),
      });
    }
  }
  return out;
}

/** The HTTP(S) spelling of a Lambda-delivered record (what AWS's validators do before verifying). */
export function toHttpFormat(raw: Record<string, unknown>): Record<string, unknown> {
  const m: Record<string, unknown> = { ...raw };
  for (const [from, to] of [
    ['SigningCertUrl', 'SigningCertURL'],
    ['UnsubscribeUrl', 'UnsubscribeURL'],
    ['SubscribeUrl', 'SubscribeURL'],
  ] as const) {
    if (from in m) {
      m[to] ??= m[from];
      delete m[from];
    }
  }
  if (m.Subject === null) delete m.Subject;
  if (m.MessageAttributes && Object.keys(m.MessageAttributes as object).length === 0)
    delete m.MessageAttributes;
  return m;
}
