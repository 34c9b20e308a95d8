import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { REPO_ROOT } from './tools.js';

// No Docker engine runs here or in CI, so the image cannot be built in tests. These checks read the
// Dockerfile and hold it to what the rest of the repository expects of the image.

interface Instruction {
  op: string;
  args: string;
}
interface Stage {
  from: string;
  name: string;
  instructions: Instruction[];
}

/** Splits a Dockerfile into stages of instructions (continuation lines joined, comments dropped). */
function parseDockerfile(text: string): { args: Map<string, string>; stages: Stage[] } {
  const logical: string[] = [];
  let current = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line.startsWith('#')) continue;
    if (line.endsWith('\\')) {
      current += `${line.slice(0, -1).trim()} `;
      continue;
    }
    current += line;
    if (current.trim()) logical.push(current.trim());
    current = '';
  }
  const args = new Map<string, string>();
  const stages: Stage[] = [];
  for (const l of logical) {
    const [op = '', ...rest] = l.split(/\s+/);
    const argText = rest.join(' ');
    if (op.toUpperCase() === 'FROM') {
      const m = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(argText);
      stages.push({ from: m?.[1] ?? '', name: m?.[2] ?? String(stages.length), instructions: [] });
    } else if (stages.length === 0 && op.toUpperCase() === 'ARG') {
      const [k, v = ''] = argText.split('=');
      args.set(k as string, v);
    } else {
      stages.at(-1)?.instructions.push({ op: op.toUpperCase(), args: argText });
    }
  }
  return { args, stages };
}

/** .dockerignore semantics (last matching pattern wins; `!` re-includes; a directory covers its files). */
function dockerignoreAdmits(patterns: string[], path: string): boolean {
  const toRegex = (p: string) =>
    new RegExp(
      `^${p
        .replace(/\/$/, '')
        .replace(/[.+^${}()|[\]\\]/g, '\\$&')
        .replace(/\*\*/g, '\0')
        .replace(/\*/g, '[^/]*')
        .replace(/\?/g, '[^/]')
        .replace(/\0/g, '.*')}$`,
    );
  const prefixes = path
    .replace(/\/$/, '')
    .split('/')
    .map((_, i, parts) => parts.slice(0, i + 1).join('/'));
  let admitted = true;
  for (const raw of patterns) {
    const negate = raw.startsWith('!');
    const re = toRegex(negate ? raw.slice(1) : raw);
    if (prefixes.some((p) => re.test(p))) admitted = negate;
  }
  return admitted;
}

const dockerfile = parseDockerfile(readFileSync(join(REPO_ROOT, 'Dockerfile'), 'utf8'));
const ignore = readFileSync(join(REPO_ROOT, '.dockerignore'), 'utf8')
  .split('\n')
  .map((l) => l.trim())
  .filter((l) => l && !l.startsWith('#'));
const stage = (name: string): Stage => {
  const s = dockerfile.stages.find((x) => x.name === name);
  if (!s) throw new Error(`No stage ${name}`);
  return s;
};
const runtime = dockerfile.stages.at(-1) as Stage;
const ops = (s: Stage, op: string) => s.instructions.filter((i) => i.op === op).map((i) => i.args);

const statefulSet = parse(readFileSync(join(REPO_ROOT, 'k8s/base/statefulset.yaml'), 'utf8')) as {
  spec: {
    template: {
      spec: {
        securityContext: { runAsUser: number; runAsGroup: number };
        containers: { name: string; args: string[]; ports: { containerPort: number }[] }[];
      };
    };
  };
};
const pod = statefulSet.spec.template.spec;
const container = pod.containers.find((c) => c.name === 'pd-relay');

describe('Dockerfile', () => {
  it('builds every stage from Node 22 LTS on Debian bookworm slim', () => {
    expect(dockerfile.stages.length).toBeGreaterThanOrEqual(2);
    for (const s of dockerfile.stages) {
      const image = s.from.replace(/^\$\{?(\w+)\}?$/, (_, arg: string) => dockerfile.args.get(arg) ?? '');
      expect(image, s.name).toBe('node:22-bookworm-slim');
    }
  });

  it('runs as the non-root uid and gid the StatefulSet expects', () => {
    const users = ops(runtime, 'USER');
    expect(users.length).toBe(1);
    const [uid, gid] = (users[0] as string).split(':').map(Number);
    expect(uid).toBeGreaterThan(0);
    expect(uid).toBe(pod.securityContext.runAsUser);
    expect(gid).toBe(pod.securityContext.runAsGroup);
  });

  it('starts pd-relay serve with the config path and ports the StatefulSet uses', () => {
    expect(ops(runtime, 'ENTRYPOINT').map((a) => JSON.parse(a))).toEqual([['node', '/app/bin/pd-relay.js']]);
    expect(ops(runtime, 'CMD').map((a) => JSON.parse(a))).toEqual([container?.args]);
    const exposed = ops(runtime, 'EXPOSE').flatMap((a) => a.split(/\s+/).map(Number));
    expect(exposed.sort()).toEqual(container?.ports.map((p) => p.containerPort).sort());
  });

  it('installs production dependencies with npm ci --omit=dev, and no npm ci in the final stage', () => {
    expect(ops(stage('deps'), 'RUN').some((r) => /\bnpm ci\b.*--omit=dev/.test(r))).toBe(true);
    expect(ops(stage('deps'), 'RUN').some((r) => /python3.*make.*g\+\+/.test(r))).toBe(true);
    expect(ops(stage('build'), 'RUN').some((r) => /\bnpm run build\b/.test(r))).toBe(true);
    expect(ops(runtime, 'RUN').some((r) => /\bnpm (ci|install)\b/.test(r))).toBe(false);
  });

  it("copies exactly what runs: package.json's files, package.json, production node_modules", () => {
    const pkg = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { files: string[] };
    const copies = ops(runtime, 'COPY').map((c) => {
      const parts = c.split(/\s+/);
      const from = parts.find((p) => p.startsWith('--from='))?.slice('--from='.length);
      const paths = parts.filter((p) => !p.startsWith('--'));
      return { from, src: paths.slice(0, -1), dest: paths.at(-1) };
    });
    const copied = copies.flatMap((c) => c.src.map((s) => s.replace(/^\/app\//, '').replace(/\/?$/, '/')));
    for (const f of pkg.files) expect(copied, f).toContain(f.replace(/\/?$/, '/'));
    expect(copied).toContain('package.json/');
    expect(copies.find((c) => c.src.includes('/app/node_modules'))?.from).toBe('deps');
    expect(copies.find((c) => c.src.includes('/app/dist'))?.from).toBe('build');
  });

  it('.dockerignore admits every file the Dockerfile copies from the context, and keeps the rest out', () => {
    const fromContext = dockerfile.stages.flatMap((s) =>
      s.instructions
        .filter((i) => i.op === 'COPY' && !i.args.includes('--from='))
        .flatMap((i) => i.args.split(/\s+/).slice(0, -1)),
    );
    expect(fromContext.length).toBeGreaterThan(0);
    for (const src of fromContext) expect(dockerignoreAdmits(ignore, src), src).toBe(true);
    for (const kept of ['node_modules', 'dist', 'data', '.git', 'test', 'k8s', 'scripts/bench.mjs'])
      expect(dockerignoreAdmits(ignore, kept), kept).toBe(false);
  });

  it('the prepare script run by `npm ci --omit=dev` exits 0 without TypeScript and builds nothing', () => {
    const dir = mkdtempSync(join(tmpdir(), 'pd-relay-prepare-'));
    try {
      mkdirSync(join(dir, 'scripts'));
      copyFileSync(join(REPO_ROOT, 'scripts/prepare.mjs'), join(dir, 'scripts/prepare.mjs'));
      const r = spawnSync(process.execPath, ['scripts/prepare.mjs'], { cwd: dir, encoding: 'utf8' });
      expect(r.status).toBe(0);
      expect(r.stdout).toContain('TypeScript not installed');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
