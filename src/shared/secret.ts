import { createHash } from 'node:crypto';
import { inspect } from 'node:util';

const REDACTED = '[redacted]';

/**
 * A credential (routing key, basic-auth password) that cannot leak by accident: it prints, logs and
 * serialises as `[redacted]`. Only `reveal()` gives the value, and only the code that puts it on the
 * wire (the PagerDuty client, the auth check) calls it.
 */
export class Secret {
  readonly #value: string;
  #fingerprint: string | undefined;

  constructor(value: string) {
    this.#value = value;
  }

  reveal(): string {
    return this.#value;
  }

  /**
   * A stable, non-reversible id for the value (first 16 hex digits of its SHA-256): what the spool
   * stores to remember which key an open alert went to, without storing the key itself.
   */
  fingerprint(): string {
    this.#fingerprint ??= createHash('sha256').update(this.#value).digest('hex').slice(0, 16);
    return this.#fingerprint;
  }

  get length(): number {
    return this.#value.length;
  }

  toString(): string {
    return REDACTED;
  }

  toJSON(): string {
    return REDACTED;
  }

  [inspect.custom](): string {
    return REDACTED;
  }
}
