/**
 * Value paths in rule files (`for_each: message.detail.findings`, custom_details `path:`):
 * dot-separated names (any characters but `.` and `[`, so `message.detail-type` works), with
 * `[0]` for list items and `["a.b"]` for names containing dots. Lookups read own properties only.
 */
export type ValuePath = ReadonlyArray<string | number>;

/** Parses a path, or returns a problem message. */
export function parsePath(text: string): ValuePath | string {
  const segs: Array<string | number> = [];
  let i = 0;
  const n = text.length;
  if (n === 0) return 'Expected a path such as message.detail, got an empty string';
  let expectName = true;
  while (i < n) {
    const c = text[i];
    if (c === '[') {
      const close = text.indexOf(']', i);
      if (close === -1) return `Unclosed "[" in path "${text}"`;
      const inner = text.slice(i + 1, close).trim();
      if (/^\d+$/.test(inner)) segs.push(Number(inner));
      else if (/^"(?:[^"\\]|\\.)*"$/.test(inner) || /^'[^']*'$/.test(inner)) {
        segs.push(inner.startsWith('"') ? (JSON.parse(inner) as string) : inner.slice(1, -1));
      } else return `Expected [number] or ["name"] in path "${text}", got [${inner}]`;
      i = close + 1;
      expectName = false;
    } else if (c === '.') {
      if (expectName) return `Empty name in path "${text}"`;
      i++;
      expectName = true;
    } else {
      let j = i;
      while (j < n && text[j] !== '.' && text[j] !== '[') j++;
      const name = text.slice(i, j);
      if (!expectName) return `Expected "." before "${name}" in path "${text}"`;
      if (/\s/.test(name)) return `Unexpected space in path "${text}"`;
      segs.push(name);
      i = j;
      expectName = false;
    }
  }
  if (expectName) return `Path "${text}" ends with "."`;
  return segs;
}

/** The value at `path` inside `root`, or undefined. */
export function getPath(root: unknown, path: ValuePath): unknown {
  let cur: unknown = root;
  for (const seg of path) {
    if (cur === null || typeof cur !== 'object') return undefined;
    if (Array.isArray(cur)) {
      if (typeof seg !== 'number') return undefined;
      cur = cur[seg];
    } else {
      const key = String(seg);
      if (!Object.hasOwn(cur, key)) return undefined;
      cur = (cur as Record<string, unknown>)[key];
    }
  }
  return cur;
}
