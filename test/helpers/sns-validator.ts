import { globalAgent } from 'node:https';
import { createRequire } from 'node:module';

type Callback = (err: Error | null, message?: unknown) => void;
interface MessageValidator {
  validate(message: Record<string, unknown> | string, cb: Callback): void;
}
type MessageValidatorClass = new (hostPattern?: RegExp, encoding?: string) => MessageValidator;

const MessageValidatorImpl = createRequire(import.meta.url)('sns-validator') as MessageValidatorClass;

/**
 * sns-validator 0.3.5, the reference implementation used as a differential oracle (tests) and as
 * the baseline (bench/verify). It downloads certificates with `https.get` on Node's global agent
 * and offers no way to pass a CA, so the only way to let it reach a FakeSns is to make the global
 * agent trust the test CA: done here, for this process only, and undone by `restore()`. pd-relay's
 * own fetcher never uses the global agent.
 */
export function snsValidatorOracle(opts: { caPem: string; hostPattern: RegExp }): {
  /** Resolves true when sns-validator accepts the message, false with its reason otherwise. */
  validate(message: Record<string, unknown>): Promise<{ ok: boolean; error?: string }>;
  restore(): void;
} {
  const previous = globalAgent.options.ca;
  globalAgent.options.ca = opts.caPem;
  const validator = new MessageValidatorImpl(opts.hostPattern);
  return {
    validate: (message) =>
      new Promise((resolve) => {
        // It rewrites Lambda spellings in place: give it a copy.
        validator.validate(structuredClone(message), (err) =>
          resolve(err ? { ok: false, error: err.message } : { ok: true }),
        );
      }),
    restore() {
      globalAgent.options.ca = previous;
    },
  };
}
