import { existsSync, readdirSync, statSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));

/**
 * The real-AWS corpus (../shared/corpus beside the repository; PD_RELAY_CORPUS overrides), or null
 * when it is absent. It is read in place, never copied into the repository.
 */
export function corpusRoot(): string | null {
  const root = process.env.PD_RELAY_CORPUS
    ? resolve(process.env.PD_RELAY_CORPUS)
    : resolve(REPO_ROOT, '../shared/corpus');
  return existsSync(join(root, 'messages')) ? root : null;
}

export const CORPUS_MISSING =
  'corpus not found (expected ../shared/corpus beside the repository, or set PD_RELAY_CORPUS): skipping corpus tests';

/** Every *.json file under `dir`, as paths relative to it, sorted. */
export function jsonFiles(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      if (statSync(p).isDirectory()) walk(p);
      else if (name.endsWith('.json')) out.push(relative(dir, p));
    }
  };
  walk(dir);
  return out.sort();
}
