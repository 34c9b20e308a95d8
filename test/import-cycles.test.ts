import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

/**
 * src/ imports no module that imports it back, even for types only: stages depend one way
 * (DESIGN.md, "Data moves one way"), and a cycle is what let src/app.ts and
 * src/ingress/sns/handler.ts each reach into the other (the error shape now lives in
 * src/server/error-response.ts).
 */

const SRC = resolve(import.meta.dirname, '../src');

/** Each module of src/ and the modules of src/ it imports or re-exports (`import type` included). */
function importGraph(): Map<string, string[]> {
  const files = readdirSync(SRC, { recursive: true, encoding: 'utf8' })
    .filter((f) => f.endsWith('.ts'))
    .map((f) => join(SRC, f));
  const graph = new Map<string, string[]>();
  for (const file of files) {
    const { importedFiles } = ts.preProcessFile(readFileSync(file, 'utf8'), true, true);
    graph.set(
      file,
      importedFiles
        .map((i) => i.fileName)
        .filter((name) => name.startsWith('.'))
        .map((name) => resolve(dirname(file), name.replace(/\.js$/, '.ts'))),
    );
  }
  return graph;
}

/** Every cycle a depth-first walk meets, as "a.ts -> b.ts -> a.ts". */
function cycles(graph: Map<string, string[]>): string[] {
  const found: string[] = [];
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const visit = (node: string) => {
    state.set(node, 'open');
    stack.push(node);
    for (const dep of graph.get(node) ?? []) {
      if (state.get(dep) === 'open') {
        found.push([...stack.slice(stack.indexOf(dep)), dep].map((f) => relative(SRC, f)).join(' -> '));
      } else if (!state.has(dep)) {
        visit(dep);
      }
    }
    stack.pop();
    state.set(node, 'done');
  };
  for (const node of [...graph.keys()].sort()) if (!state.has(node)) visit(node);
  return found;
}

describe('the import graph of src/', () => {
  const graph = importGraph();

  it('resolves every relative import to a module of src/', () => {
    const missing = [...graph].flatMap(([file, deps]) =>
      deps.filter((d) => !graph.has(d)).map((d) => `${relative(SRC, file)} imports ${relative(SRC, d)}`),
    );
    expect(graph.size).toBeGreaterThan(50);
    expect(missing).toEqual([]);
  });

  it('has no cycle', () => {
    expect(cycles(graph)).toEqual([]);
  });

  it('finds a cycle when there is one', () => {
    // The walk itself, on the cycle this test was written for.
    const app = join(SRC, 'app.ts');
    const handler = join(SRC, 'ingress/sns/handler.ts');
    expect(
      cycles(
        new Map([
          [app, [handler]],
          [handler, [app]],
        ]),
      ),
    ).toEqual(['app.ts -> ingress/sns/handler.ts -> app.ts']);
  });

  it('app.ts and the SNS handler take the error shape from src/server, not from each other', () => {
    const app = join(SRC, 'app.ts');
    const handler = join(SRC, 'ingress/sns/handler.ts');
    const shape = join(SRC, 'server/error-response.ts');
    expect(graph.get(handler)).not.toContain(app);
    expect(graph.get(handler)).toContain(shape);
    expect(graph.get(app)).toContain(shape);
  });
});
