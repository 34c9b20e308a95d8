import { existsSync, readdirSync } from 'node:fs';
import { dirname, join, normalize } from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../k8s/tools.js';
import { anchors, prose, readDoc } from './markdown.js';

/**
 * Links between the repository's Markdown files resolve: the file exists, and an `#anchor` into a
 * Markdown file is one of its headings. External links are not fetched.
 */

const FILES = [
  'README.md',
  'CHANGELOG.md',
  'k8s/README.md',
  'bench/README.md',
  ...readdirSync(join(REPO_ROOT, 'docs'))
    .filter((f) => f.endsWith('.md'))
    .map((f) => `docs/${f}`),
];

const links = FILES.flatMap((file) => {
  const doc = readDoc(file);
  if (!doc) return [];
  return [...prose(doc).matchAll(/\]\(([^)\s]+)\)/g)]
    .map((m) => m[1] as string)
    .filter((href) => !/^[a-z]+:/i.test(href))
    .map((href) => ({ file, href }));
});

describe('links between the Markdown files', () => {
  it('finds links (the test can fail)', () => {
    expect(links.length).toBeGreaterThan(20);
  });

  it.each(links.map((l) => [`${l.file} → ${l.href}`, l] as const))('%s resolves', (_name, { file, href }) => {
    const [path = '', anchor] = href.split('#');
    const target = path ? normalize(join(dirname(file), path)) : file;
    expect(existsSync(join(REPO_ROOT, target)), `${target} exists`).toBe(true);
    if (anchor !== undefined && target.endsWith('.md')) {
      const doc = readDoc(target);
      expect(doc && [...anchors(doc)], `#${anchor} in ${target}`).toContain(anchor);
    }
  });
});
