import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
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
