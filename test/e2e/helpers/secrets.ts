import { randomBytes } from 'node:crypto';

/**
 * The secrets of an end-to-end run and the texts they must never appear in. Every routing key,
 * basic-auth password (right or wrong: a credential a client sent is a secret too) and the
 * Authorization header value built from them is registered here; every text the suite sees —
 * each relay's whole stdout/stderr, every HTTP response (status line, headers, body) from the
 * relay's ports, every /metrics scrape — is recorded here, and `leaks()` greps them all.
 *
 * Matches report the secret's label and where it was found, never the value: a failing
 * assertion must not print the secret it caught.
 */
export class SecretWatch {
  readonly #secrets: Array<{ label: string; needles: string[] }> = [];
  readonly #texts: Array<{ where: string; text: string }> = [];

  /**
   * Registers `value` under `label`. Besides the whole value, every `window`-character slice of it
   * is searched, so that a truncated or partly masked secret ("kAbC…") is caught too.
   */
  add(label: string, value: string, window = 12): void {
    const needles = new Set([value]);
    if (value.length > window) {
      for (let i = 0; i + window <= value.length; i++) needles.add(value.slice(i, i + window));
    }
    this.#secrets.push({ label, needles: [...needles] });
  }

  /** Keeps `text` for the final grep. */
  record(where: string, text: string): void {
    if (text) this.#texts.push({ where, text });
  }

  /** How many texts were recorded (a suite that recorded nothing proved nothing). */
  get recorded(): number {
    return this.#texts.length;
  }

  /** Every (secret label, place) pair where a secret or a slice of one appears. */
  leaks(extra: Array<{ where: string; text: string }> = []): string[] {
    const found = new Set<string>();
    for (const { where, text } of [...this.#texts, ...extra]) {
      for (const s of this.#secrets) {
        if (s.needles.some((n) => text.includes(n))) found.add(`${s.label} in ${where}`);
      }
    }
    return [...found].sort();
  }

  /** Forgets the recorded texts (the secrets stay registered). */
  clearTexts(): void {
    this.#texts.length = 0;
  }
}

const ALNUM = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';

/**
 * A random secret of letters and digits. Random rather than derived (like testRoutingKey's
 * "k1xxxx…"), so that any 12-character slice of it is distinctive enough to grep for.
 */
export function randomSecret(length = 32): string {
  const bytes = randomBytes(length);
  let s = '';
  for (const b of bytes) s += ALNUM[b % ALNUM.length];
  return s;
}
