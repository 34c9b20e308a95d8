import { isPair, isScalar, isSeq, visit } from 'yaml';
import { formatPath, type Problem } from '../errors.js';
import type { PathSegment, YamlSource } from '../shared/yaml-source.js';

const REFERENCE = /\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g;

/**
 * Replaces `${VAR}` and `${VAR:-default}` in every string scalar of the document, in place; `$$`
 * is a literal `$`. Substitution happens on parsed scalars, never on the raw text, so a value
 * cannot inject YAML structure. Values stay strings; the schema reads numeric and boolean strings
 * where it expects numbers and booleans (`port: ${PORT}`). Unset variables without a default are
 * problems; values are never echoed (they may be secrets).
 */
export function substituteEnv(source: YamlSource, env: NodeJS.ProcessEnv): Problem[] {
  const problems: Problem[] = [];
  visit(source.doc, {
    Scalar(_key, node, ancestors) {
      if (typeof node.value !== 'string' || !node.value.includes('$')) return;
      const missing: string[] = [];
      node.value = node.value.replace(REFERENCE, (match, name?: string, fallback?: string) => {
        if (match === '$$') return '$';
        const value = env[name as string];
        if (value !== undefined && value !== '') return value;
        if (fallback !== undefined) return fallback;
        missing.push(name as string);
        return match;
      });
      for (const name of missing) {
        problems.push({
          location: source.at(node.range?.[0] ?? 0),
          path: formatPath(pathOf(node, ancestors)),
          message: `Environment variable ${name} is not set or empty (set it, or write \${${name}:-default})`,
        });
      }
    },
  });
  return problems;
}

/** The document path of a node from the visitor's ancestor chain. */
function pathOf(node: unknown, ancestors: readonly unknown[]): PathSegment[] {
  const path: PathSegment[] = [];
  const chain = [...ancestors, node];
  for (let i = 1; i < chain.length; i++) {
    const parent = chain[i - 1];
    const cur = chain[i];
    if (isPair(parent)) {
      if (parent.value !== cur) return path; // a key, not a value
      path.push(String(isScalar(parent.key) ? parent.key.value : parent.key));
    } else if (isSeq(parent)) {
      path.push(parent.items.indexOf(cur as never));
    }
  }
  return path;
}
