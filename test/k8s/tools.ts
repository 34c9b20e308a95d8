import { execFileSync, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';

/** The repository root (test/k8s/../..). */
export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));

/**
 * Throws unless `command` runs. These tests must fail, never skip, without their tool: a skipped
 * manifest or alert test would let a broken deployment through CI looking green.
 */
export function requireTool(command: string, versionArgs: string[], install: string): void {
  if (!runs(command, versionArgs)) {
    throw new Error(
      `Expected ${command} to be installed, but \`${command} ${versionArgs.join(' ')}\` fails. ${install}`,
    );
  }
}

const KUSTOMIZE_INSTALL =
  'The manifest tests render k8s/ with `kubectl kustomize` (kubectl 1.27 or later, which embeds kustomize v5) ' +
  'or a standalone `kustomize build` (v5). Install either one.';

export const PROMTOOL_INSTALL =
  'promtool comes with the Debian package "prometheus": apt-get install -y --no-install-recommends prometheus ' +
  '(.ci/run does this when promtool is missing).';

/** A rendered Kubernetes object. */
export interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: {
    name: string;
    namespace?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
  };
  [field: string]: unknown;
}

/** Runs a command; true when it exits 0. */
function runs(command: string, args: string[]): boolean {
  const r = spawnSync(command, args, { encoding: 'utf8' });
  return !r.error && r.status === 0;
}

let renderer: [string, string[]] | undefined;

/** `kubectl kustomize`, else `kustomize build`; throws when there is neither. */
function kustomizeCommand(): [string, string[]] {
  renderer ??= runs('kubectl', ['version', '--client'])
    ? ['kubectl', ['kustomize']]
    : runs('kustomize', ['version'])
      ? ['kustomize', ['build']]
      : undefined;
  if (!renderer)
    throw new Error(`Expected kubectl or kustomize to be installed, found neither. ${KUSTOMIZE_INSTALL}`);
  return renderer;
}

/** `kubectl kustomize <dir>` (dir relative to the repository root), parsed. */
export function kustomize(dir: string): K8sObject[] {
  const [command, args] = kustomizeCommand();
  let out: string;
  try {
    out = execFileSync(command, [...args, join(REPO_ROOT, dir)], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    });
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`${command} ${args.join(' ')} ${dir} failed:\n${e.stderr || e.message}`);
  }
  const docs = parseAllDocuments(out);
  if (!Array.isArray(docs)) throw new Error(`kubectl kustomize ${dir} printed no YAML documents.`);
  return docs.map((d, i) => {
    if (d.errors.length) throw new Error(`Document ${i} of ${dir}: ${d.errors[0]?.message}`);
    return d.toJS() as K8sObject;
  });
}

/** The one object of `kind` (and name prefix), or an error naming what was there. */
export function only(objects: readonly K8sObject[], kind: string, namePrefix = ''): K8sObject {
  const found = objects.filter((o) => o.kind === kind && o.metadata.name.startsWith(namePrefix));
  if (found.length !== 1) {
    throw new Error(
      `Expected one ${kind}${namePrefix ? ` named ${namePrefix}*` : ''}, got ${found.length} among ${objects
        .map((o) => `${o.kind}/${o.metadata.name}`)
        .join(', ')}`,
    );
  }
  return found[0] as K8sObject;
}
