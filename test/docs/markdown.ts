import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { REPO_ROOT } from '../k8s/tools.js';

/** A Markdown file of the repository, read once per test file. */
export interface Doc {
  /** Path relative to the repository root, as messages show it. */
  path: string;
  text: string;
}

/** Reads `rel` (relative to the repository root); undefined when the file does not exist. */
export function readDoc(rel: string): Doc | undefined {
  const file = join(REPO_ROOT, rel);
  return existsSync(file) ? { path: rel, text: readFileSync(file, 'utf8') } : undefined;
}

/** Reads `rel`, which must exist. */
export function requireDoc(rel: string): Doc {
  const doc = readDoc(rel);
  if (!doc) throw new Error(`Expected ${rel} to exist`);
  return doc;
}

/** A fenced code block. `line` is the 1-based line of its first content line. */
export interface CodeBlock {
  doc: string;
  lang: string;
  line: number;
  text: string;
}

/**
 * The fenced code blocks of a Markdown text (``` or ~~~ fences, CommonMark's rule that the closing
 * fence is at least as long as the opening one), with their info-string language in lower case.
 */
export function codeBlocks(doc: Doc): CodeBlock[] {
  const lines = doc.text.split('\n');
  const blocks: CodeBlock[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^( {0,3})(`{3,}|~{3,})\s*([^`\s]*)/.exec(lines[i] as string);
    if (!open) continue;
    const fence = open[2] as string;
    const indent = (open[1] as string).length;
    const body: string[] = [];
    let j = i + 1;
    for (; j < lines.length; j++) {
      const line = lines[j] as string;
      const close = /^ {0,3}(`{3,}|~{3,})\s*$/.exec(line);
      if (close && (close[1] as string)[0] === fence[0] && (close[1] as string).length >= fence.length) break;
      // Content lines lose up to the opening fence's indentation (list items indent their blocks).
      body.push(line.replace(new RegExp(`^ {0,${indent}}`), ''));
    }
    blocks.push({
      doc: doc.path,
      lang: (open[3] as string).toLowerCase(),
      line: i + 2,
      text: body.join('\n'),
    });
    i = j;
  }
  return blocks;
}

/** The Markdown text outside fenced code blocks (where headings and tables live). */
export function prose(doc: Doc): string {
  return doc.text.replace(/^( {0,3})(`{3,}|~{3,})[^\n]*\n[\s\S]*?\n {0,3}\2[`~]*[ \t]*$/gm, '');
}

/**
 * The anchors GitHub gives the headings of a Markdown text (lower case, punctuation removed,
 * spaces to hyphens, "-1", "-2"… for repeats), plus explicit `<a id="…">` / `<a name="…">` anchors.
 */
export function anchors(doc: Doc): Set<string> {
  const out = new Set<string>();
  const seen = new Map<string, number>();
  for (const line of prose(doc).split('\n')) {
    const heading = /^ {0,3}#{1,6}\s+(.*?)\s*#*\s*$/.exec(line);
    if (heading) {
      const slug = githubSlug(heading[1] as string);
      const n = seen.get(slug) ?? 0;
      seen.set(slug, n + 1);
      out.add(n === 0 ? slug : `${slug}-${n}`);
    }
    for (const m of line.matchAll(/<a\s+(?:id|name)="([^"]+)"/g)) out.add(m[1] as string);
  }
  return out;
}

/** GitHub's heading slug: links reduced to their text, lower case, punctuation dropped, spaces to "-". */
export function githubSlug(heading: string): string {
  return heading
    .replace(/\[([^\]]*)\]\([^)]*\)/g, '$1')
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\s_-]/gu, '')
    .replace(/\s/g, '-');
}

/** The rows of every Markdown table, each as its trimmed cells (header and separator rows excluded). */
export function tableRows(doc: Doc): Array<{ cells: string[]; line: number }> {
  const rows: Array<{ cells: string[]; line: number }> = [];
  const lines = prose(doc).split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i] as string;
    if (!line.trimStart().startsWith('|')) continue;
    const next = lines[i + 1] ?? '';
    if (/^\s*\|?[\s:|-]+\|[\s:|-]*$/.test(next) && next.includes('-')) {
      i++; // a header row and its separator
      continue;
    }
    rows.push({ cells: splitRow(line), line: i + 1 });
  }
  return rows;
}

/** Splits `| a | b \| c |` into cells, keeping escaped pipes and pipes inside code spans. */
function splitRow(line: string): string[] {
  const cells: string[] = [];
  let cur = '';
  let code = false;
  const body = line.trim().replace(/^\|/, '').replace(/\|$/, '');
  for (let i = 0; i < body.length; i++) {
    const c = body[i] as string;
    if (c === '\\' && body[i + 1] === '|') {
      cur += '|';
      i++;
    } else if (c === '`') {
      code = !code;
      cur += c;
    } else if (c === '|' && !code) {
      cells.push(cur.trim());
      cur = '';
    } else cur += c;
  }
  cells.push(cur.trim());
  return cells;
}

/** The text of a cell that is one code span (`` `x` `` → x), else undefined. */
export function codeSpan(cell: string): string | undefined {
  const m = /^`([^`]*)`$/.exec(cell.trim());
  return m ? (m[1] as string) : undefined;
}

/**
 * The part of a document under a heading (the heading's text exactly, any level), up to the next
 * heading of the same or a higher level; undefined when there is no such heading.
 */
export function section(doc: Doc, heading: string): Doc | undefined {
  const lines = doc.text.split('\n');
  let fence = false;
  let start = -1;
  let level = 0;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i] as string;
    if (/^ {0,3}(```|~~~)/.test(line)) fence = !fence;
    if (fence) continue;
    const h = /^(#{1,6})\s+(.*?)\s*#*\s*$/.exec(line);
    if (!h) continue;
    const hashes = (h[1] as string).length;
    if (start < 0 && h[2] === heading) {
      start = i;
      level = hashes;
    } else if (start >= 0 && hashes <= level) {
      return { path: doc.path, text: lines.slice(start, i).join('\n') };
    }
  }
  return start < 0 ? undefined : { path: doc.path, text: lines.slice(start).join('\n') };
}
