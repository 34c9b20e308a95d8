import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, posix, relative, sep } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Config, parseConfig, ROUTING_KEY_PATTERN } from '../../src/config/load.js';
import { formatProblem } from '../../src/errors.js';
import { YamlSource } from '../../src/shared/yaml-source.js';
import { MODELS, modelKey } from './models.js';
import { FieldChecker } from './strict-fields.js';
import { type K8sObject, kustomize, only, REPO_ROOT } from './tools.js';

// The slice of the Kubernetes API these assertions read (the schema checks cover the rest).
interface HttpProbe {
  httpGet?: { path?: string; port?: string | number };
}
interface Container {
  name: string;
  args?: string[];
  ports?: { name?: string; containerPort: number }[];
  securityContext?: {
    runAsNonRoot?: boolean;
    readOnlyRootFilesystem?: boolean;
    allowPrivilegeEscalation?: boolean;
    privileged?: boolean;
    capabilities?: { drop?: string[]; add?: string[] };
    seccompProfile?: { type?: string };
  };
  resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
  livenessProbe?: HttpProbe;
  readinessProbe?: HttpProbe;
  startupProbe?: HttpProbe;
  lifecycle?: { preStop?: { sleep?: { seconds: number } } };
  volumeMounts?: { name: string; mountPath: string; subPath?: string; readOnly?: boolean }[];
}
interface TopologySpreadConstraint {
  maxSkew: number;
  topologyKey: string;
  whenUnsatisfiable: string;
  labelSelector?: { matchLabels?: Record<string, string> };
  matchLabelKeys?: string[];
  nodeTaintsPolicy?: string;
}
interface PodSpec {
  automountServiceAccountToken?: boolean;
  serviceAccountName?: string;
  hostNetwork?: boolean;
  hostPID?: boolean;
  hostIPC?: boolean;
  terminationGracePeriodSeconds?: number;
  securityContext?: { runAsNonRoot?: boolean; runAsUser?: number; seccompProfile?: { type?: string } };
  topologySpreadConstraints?: TopologySpreadConstraint[];
  containers: Container[];
  volumes?: {
    name: string;
    configMap?: { name: string };
    secret?: { secretName: string };
    emptyDir?: object;
    hostPath?: object;
    persistentVolumeClaim?: object;
  }[];
}
/** A StatefulSet's or a Deployment's spec: the relay runs as one or the other. */
interface WorkloadSpec {
  replicas?: number;
  selector: { matchLabels: Record<string, string> };
  template: { metadata: { labels: Record<string, string> }; spec: PodSpec };
  /** StatefulSet only. */
  serviceName?: string;
  volumeClaimTemplates?: {
    metadata: { name: string };
    spec: { accessModes?: string[]; resources?: { requests?: { storage?: string } } };
  }[];
  /** Deployment only. */
  strategy?: {
    type?: string;
    rollingUpdate?: { maxUnavailable?: number | string; maxSurge?: number | string };
  };
}
interface NetworkPolicySpec {
  podSelector: { matchLabels?: Record<string, string> };
  policyTypes: string[];
  ingress?: { from?: NetworkPolicyPeer[]; ports?: NetworkPolicyPort[] }[];
  egress?: { to?: NetworkPolicyPeer[]; ports?: NetworkPolicyPort[] }[];
}
interface NetworkPolicyPeer {
  namespaceSelector?: { matchLabels?: Record<string, string> };
  podSelector?: { matchLabels?: Record<string, string> };
  ipBlock?: { cidr: string; except?: string[] };
}
interface NetworkPolicyPort {
  port?: string | number;
  protocol?: string;
}

const spec = <T>(o: K8sObject): T => o.spec as T;
const data = (o: K8sObject): Record<string, string> => (o.data ?? {}) as Record<string, string>;

/** Kubernetes quantities as numbers (CPU in cores, memory in bytes), for limit >= request checks. */
function quantity(q: string): number {
  const m = /^([0-9.]+)(m|Ki|Mi|Gi|Ti|k|M|G|T)?$/.exec(q);
  if (!m) throw new Error(`Unexpected quantity ${q}`);
  const factor: Record<string, number> = {
    m: 1e-3,
    k: 1e3,
    M: 1e6,
    G: 1e9,
    T: 1e12,
    Ki: 2 ** 10,
    Mi: 2 ** 20,
    Gi: 2 ** 30,
    Ti: 2 ** 40,
  };
  return Number(m[1]) * (m[2] ? (factor[m[2]] as number) : 1);
}

const matches = (selector: Record<string, string>, labels: Record<string, string>) =>
  Object.entries(selector).every(([k, v]) => labels[k] === v);

/** The example overlay (one replica, SQLite); `kubectl kustomize k8s` renders it. */
const EXAMPLE = 'k8s';
/** Several replicas on PostgreSQL. */
const HA = 'k8s/overlays/ha';
/** Every render, checked for schemas, the hardened pod and the wiring between objects. */
const RENDERS = [EXAMPLE, 'k8s/base', HA] as const;
/** The renders whose relay is the one-replica StatefulSet with its SQLite spool on a volume claim. */
const SQLITE_RENDERS = [EXAMPLE, 'k8s/base'] as const;
const rendered = new Map<string, K8sObject[] | Error>();
/**
 * The objects `kubectl kustomize <dir>` renders, rendered once. Rendering happens inside each test
 * (not in a hook) so that without kubectl every test fails with the reason, instead of the file
 * erroring and its tests showing as skipped.
 */
function objects(dir: string): K8sObject[] {
  let r = rendered.get(dir);
  if (!r) {
    try {
      r = kustomize(dir);
    } catch (err) {
      r = err as Error;
    }
    rendered.set(dir, r);
  }
  if (r instanceof Error) throw r;
  return r;
}

/** The object of `kind` named exactly `name` (`only` matches a name prefix). */
function named(all: readonly K8sObject[], kind: string, name: string): K8sObject {
  const found = all.find((o) => o.kind === kind && o.metadata.name === name);
  if (!found)
    throw new Error(`Expected ${kind}/${name}, got ${all.map((o) => `${o.kind}/${o.metadata.name}`)}`);
  return found;
}

let temp: string;
beforeAll(() => {
  temp = mkdtempSync(join(tmpdir(), 'pd-relay-k8s-'));
});
afterAll(() => {
  if (temp) rmSync(temp, { recursive: true, force: true });
});

/** What a Secret's placeholder is replaced with in the pod layout: a value the loader accepts. */
const STAND_INS: Record<string, (key: string) => string> = {
  'pd-relay-secrets': () => 'A'.repeat(32),
  'pd-relay-database': () => 'postgres://pdrelay:stand-in@pd-relay-db.example.internal:5432/pdrelay',
};

/**
 * The config file the pod reads, parsed by the relay's own loader (see loadRenderedConfig).
 * Relative paths in the config resolve against its directory, /etc/pd-relay in the pod. It is
 * parsed against a temporary directory laid out as the pod sees it: every Secret and ConfigMap the
 * relay container mounts under /etc/pd-relay is written there, at its mount path, one file per
 * key — so the loader's own checks (keyFile and urlFile readable, 32-character keys, topics
 * required with keys, caFile readable) run, and a path in the config that no mount provides fails.
 * Secret placeholders are replaced by STAND_INS unless `secretValue` says otherwise.
 */
function renderedConfig(all: readonly K8sObject[], secretValue?: (secret: string, key: string) => string) {
  const configMap = only(all, 'ConfigMap', 'pd-relay-config');
  const text = data(configMap)['config.yaml'];
  if (text === undefined) throw new Error(`${configMap.metadata.name} has no config.yaml`);
  const workload = relayWorkload(all);
  const container = relayContainerOf(workload);
  const configFile = container.args?.[container.args.indexOf('--config') + 1];
  if (!configFile) throw new Error('The relay container has no --config argument');
  const etc = posix.dirname(configFile);

  const base = mkdtempSync(join(temp, 'etc-pd-relay-'));
  const volumes = workload.template.spec.volumes ?? [];
  for (const mount of container.volumeMounts ?? []) {
    const rel = posix.relative(etc, mount.mountPath);
    if (mount.subPath || rel === '' || rel.startsWith('..')) continue;
    const volume = volumes.find((v) => v.name === mount.name);
    const dir = join(base, ...rel.split('/'));
    mkdirSync(dir, { recursive: true });
    if (volume?.secret) {
      const name = volume.secret.secretName;
      const secret = all.find((o) => o.kind === 'Secret' && o.metadata.name === name);
      const keys = Object.keys({ ...(secret?.stringData ?? {}), ...(secret?.data ?? {}) });
      for (const key of keys) {
        writeFileSync(
          join(dir, key),
          secretValue ? secretValue(name, key) : (STAND_INS[name]?.(key) ?? 'A'.repeat(32)),
        );
      }
    } else if (volume?.configMap) {
      const cm = all.find((o) => o.kind === 'ConfigMap' && o.metadata.name === volume.configMap?.name);
      for (const [key, value] of Object.entries(cm ? data(cm) : {})) writeFileSync(join(dir, key), value);
    }
  }
  const secret = all.find((o) => o.kind === 'Secret' && o.metadata.name === 'pd-relay-secrets');
  const secretKeys = Object.keys({ ...(secret?.stringData ?? {}), ...(secret?.data ?? {}) });
  const result = parseConfig(text, `${configMap.metadata.name}/config.yaml`, { env: {}, baseDir: base });
  return { ...result, base, etc, secretKeys };
}

type LoadedConfig = Config & { base: string; etc: string; secretKeys: string[] };
/** renderedConfig, which must be valid; throws with the loader's problems otherwise. */
function loadConfigOf(all: readonly K8sObject[], label: string): LoadedConfig {
  const { config, problems, base, etc, secretKeys } = renderedConfig(all);
  if (!config)
    throw new Error(`The config in ${label} is invalid:\n${problems.map(formatProblem).join('\n')}`);
  return { ...config, base, etc, secretKeys };
}

const loaded = new Map<string, LoadedConfig>();
function loadRenderedConfig(dir: string): LoadedConfig {
  let c = loaded.get(dir);
  if (!c) {
    c = loadConfigOf(objects(dir), dir);
    loaded.set(dir, c);
  }
  return c;
}

/** The path in the pod of a file the loaded config names (it resolved it against `base`). */
const podPath = (config: LoadedConfig, file: string) =>
  posix.join(config.etc, relative(config.base, file).split(sep).join('/'));

/** The relay's workload: the one StatefulSet or Deployment (never both). */
function relayWorkload(all: readonly K8sObject[]): WorkloadSpec {
  const workloads = all.filter((o) => o.kind === 'StatefulSet' || o.kind === 'Deployment');
  if (workloads.length !== 1)
    throw new Error(`Expected one StatefulSet or Deployment, got ${workloads.map((o) => o.kind).join(', ')}`);
  return spec<WorkloadSpec>(workloads[0] as K8sObject);
}

function relayContainerOf(workload: WorkloadSpec): Container {
  const c = workload.template.spec.containers.find((x) => x.name === 'pd-relay');
  if (!c) throw new Error('No pd-relay container');
  return c;
}

function workload(dir: string): WorkloadSpec {
  return relayWorkload(objects(dir));
}

function statefulSet(dir: string): WorkloadSpec {
  return spec<WorkloadSpec>(only(objects(dir), 'StatefulSet'));
}

function relayContainer(dir: string): Container {
  return relayContainerOf(workload(dir));
}

function mountPath(dir: string, volume: string): string {
  const m = relayContainer(dir).volumeMounts?.find((v) => v.name === volume);
  if (!m) throw new Error(`No mount of volume ${volume}`);
  return m.mountPath;
}

describe('kustomize output', () => {
  it('k8s renders the example overlay: every object, in the pd-relay namespace', () => {
    const all = objects('k8s');
    expect(
      all.map((o) => `${o.kind}/${o.metadata.name.replace(/-[a-z0-9]{10}$/, '-<hash>')}`).sort(),
    ).toEqual(
      [
        'ConfigMap/pd-relay-config-<hash>',
        'ConfigMap/pd-relay-dashboard',
        'ConfigMap/pd-relay-rules',
        'Ingress/pd-relay',
        'NetworkPolicy/pd-relay',
        'PodDisruptionBudget/pd-relay',
        'PrometheusRule/pd-relay',
        'Secret/pd-relay-secrets',
        'Service/pd-relay',
        'Service/pd-relay-metrics',
        'ServiceAccount/pd-relay',
        'ServiceMonitor/pd-relay',
        'StatefulSet/pd-relay',
      ].sort(),
    );
    for (const o of all) expect(o.metadata.namespace, `${o.kind}/${o.metadata.name}`).toBe('pd-relay');
  });

  it('k8s/base renders without a namespace, Secret or Ingress (overlays add those)', () => {
    const kinds = objects('k8s/base').map((o) => o.kind);
    expect(kinds).not.toContain('Secret');
    expect(kinds).not.toContain('Ingress');
    expect(kinds).toContain('StatefulSet');
    for (const o of objects('k8s/base')) expect(o.metadata.namespace).toBeUndefined();
  });

  it('the config ConfigMap is content-hashed (rollout on change), the rules one is not (live reload)', () => {
    for (const dir of RENDERS) {
      const all = objects(dir);
      expect(only(all, 'ConfigMap', 'pd-relay-config').metadata.name).toMatch(
        /^pd-relay-config-[a-z0-9]{10}$/,
      );
      expect(only(all, 'ConfigMap', 'pd-relay-rules').metadata.name).toBe('pd-relay-rules');
      const volumes = workload(dir).template.spec.volumes ?? [];
      expect(volumes.find((v) => v.name === 'config')?.configMap?.name).toBe(
        only(all, 'ConfigMap', 'pd-relay-config').metadata.name,
      );
    }
  });
});

describe('schemas (Kubernetes 1.33, prometheus-operator CRDs)', () => {
  let fields: FieldChecker;
  beforeAll(() => {
    fields = FieldChecker.create(
      REPO_ROOT,
      Object.fromEntries(
        Object.entries(MODELS).map(([k, m]) => [k, { specifier: m.specifier, typeName: m.typeName }]),
      ),
    );
  });

  it.each(RENDERS)('every object rendered from %s validates and has no unknown field', (dir) => {
    const problems: string[] = [];
    for (const o of objects(dir)) {
      const name = `${o.kind}/${o.metadata.name}`;
      const entry = MODELS[modelKey(o)];
      if (!entry) {
        problems.push(`${name}: no schema for ${modelKey(o)} (add it to test/k8s/models.ts)`);
        continue;
      }
      try {
        new entry.model(o as never).validate();
      } catch (err) {
        problems.push(`${name}: ${(err as Error).message}`);
      }
      for (const f of fields.unknownFields(modelKey(o), o)) problems.push(`${name}: unknown field ${f}`);
    }
    expect(problems).toEqual([]);
  });

  it('the checks catch a misspelt field, a misplaced one and a malformed value', () => {
    const sts = structuredClone(only(objects('k8s'), 'StatefulSet')) as K8sObject & { spec: WorkloadSpec };
    const container = sts.spec.template.spec.containers[0] as Container & Record<string, unknown>;
    (container.securityContext as Record<string, unknown>).readOnlyRootFileSystem = true;
    (sts.spec.template.spec as unknown as Record<string, unknown>).capabilities = { drop: ['ALL'] };
    expect(fields.unknownFields('apps/v1/StatefulSet', sts)).toEqual([
      'spec.template.spec.containers[0].securityContext.readOnlyRootFileSystem',
      'spec.template.spec.capabilities',
    ]);
    container.resources = { limits: { memory: 'a lot' } };
    const Model = MODELS['apps/v1/StatefulSet']?.model;
    expect(() => Model && new Model(sts as never).validate()).toThrow(/resources\/limits\/memory/);
  });
});

describe.each(RENDERS)('hardened pod (%s)', (dir) => {
  it('runs as non-root with a read-only root filesystem, no privilege escalation, no capabilities, seccomp', () => {
    const pod = workload(dir).template.spec;
    expect(pod.securityContext?.runAsNonRoot).toBe(true);
    expect(pod.securityContext?.runAsUser).toBeGreaterThan(0);
    expect(pod.securityContext?.seccompProfile?.type).toBe('RuntimeDefault');
    expect(pod.hostNetwork ?? false).toBe(false);
    expect(pod.hostPID ?? false).toBe(false);
    expect(pod.hostIPC ?? false).toBe(false);
    expect((pod.volumes ?? []).filter((v) => v.hostPath)).toEqual([]);
    for (const c of pod.containers) {
      const sc = c.securityContext;
      expect(sc?.runAsNonRoot, c.name).toBe(true);
      expect(sc?.readOnlyRootFilesystem, c.name).toBe(true);
      expect(sc?.allowPrivilegeEscalation, c.name).toBe(false);
      expect(sc?.privileged ?? false, c.name).toBe(false);
      expect(sc?.capabilities?.drop, c.name).toEqual(['ALL']);
      expect(sc?.capabilities?.add ?? [], c.name).toEqual([]);
      expect(sc?.seccompProfile?.type ?? pod.securityContext?.seccompProfile?.type, c.name).toBe(
        'RuntimeDefault',
      );
    }
  });

  it('mounts no service-account token', () => {
    const pod = workload(dir).template.spec;
    expect(pod.automountServiceAccountToken).toBe(false);
    const sa = only(objects(dir), 'ServiceAccount');
    expect(pod.serviceAccountName).toBe(sa.metadata.name);
    expect(sa.automountServiceAccountToken).toBe(false);
  });

  it('sets CPU and memory requests and limits, limits at least the requests', () => {
    for (const c of workload(dir).template.spec.containers) {
      for (const r of ['cpu', 'memory']) {
        const request = c.resources?.requests?.[r];
        const limit = c.resources?.limits?.[r];
        expect(request, `${c.name} ${r} request`).toBeDefined();
        expect(limit, `${c.name} ${r} limit`).toBeDefined();
        expect(quantity(limit as string)).toBeGreaterThanOrEqual(quantity(request as string));
      }
    }
  });

  it('probes liveness on /healthz and readiness on /readyz, on the SNS port', () => {
    const c = relayContainer(dir);
    const sns = c.ports?.find((p) => p.name === 'sns');
    expect(sns?.containerPort).toBe(loadRenderedConfig(dir).server.port);
    expect(c.livenessProbe?.httpGet).toEqual({ path: '/healthz', port: 'sns' });
    expect(c.readinessProbe?.httpGet).toEqual({ path: '/readyz', port: 'sns' });
    expect(c.startupProbe?.httpGet).toEqual({ path: '/healthz', port: 'sns' });
    expect(c.ports?.find((p) => p.name === 'metrics')?.containerPort).toBe(
      loadRenderedConfig(dir).metrics.port,
    );
  });

  it('gives the relay time to drain: grace period > preStop sleep + delivery.drainTimeoutMs', () => {
    const pod = workload(dir).template.spec;
    const c = relayContainer(dir);
    const preStop = c.lifecycle?.preStop?.sleep?.seconds ?? 0;
    const drain = loadRenderedConfig(dir).delivery.drainTimeoutMs / 1000;
    expect(pod.terminationGracePeriodSeconds).toBeGreaterThan(preStop + drain);
  });

  it('mounts config, rules and secrets where the config says, read-only; /tmp is writable', () => {
    const c = relayContainer(dir);
    const config = loadRenderedConfig(dir);
    const mounts = c.volumeMounts ?? [];
    const volumes = new Set([
      ...(workload(dir).template.spec.volumes ?? []).map((v) => v.name),
      ...(workload(dir).volumeClaimTemplates ?? []).map((t) => t.metadata.name),
    ]);
    for (const m of mounts) expect(volumes.has(m.name), `volume ${m.name}`).toBe(true);

    const configFile = c.args?.[c.args.indexOf('--config') + 1];
    const configMount = mounts.find((m) => m.name === 'config');
    expect(configMount?.mountPath).toBe(configFile);
    expect(configMount?.subPath).toBe('config.yaml');
    const etc = posix.dirname(configFile as string);

    // Rules: a directory mount (a subPath mount never sees ConfigMap updates), at rules.paths.
    const rules = mounts.find((m) => m.name === 'rules');
    expect(rules?.subPath).toBeUndefined();
    expect(config.rules.watch).toBe(true);
    expect(config.rules.paths.map((p) => podPath(config, p))).toContain(rules?.mountPath);

    expect(mountPath(dir, 'secrets')).toBe(posix.join(etc, 'secrets'));
    for (const name of ['config', 'rules', 'secrets']) {
      expect(mounts.find((m) => m.name === name)?.readOnly, name).toBe(true);
    }
    const tmp = workload(dir).template.spec.volumes?.find((v) => v.name === 'tmp');
    expect(tmp?.emptyDir).toBeDefined();
    expect(mountPath(dir, 'tmp')).toBe('/tmp');
  });
});

describe.each(SQLITE_RENDERS)('one replica on SQLite (%s)', (dir) => {
  it('keeps the spool on a ReadWriteOnce volume claim at spool.dir, one replica', () => {
    const sts = statefulSet(dir);
    expect(sts.replicas).toBe(1);
    const vct = sts.volumeClaimTemplates?.find((t) => t.metadata.name === 'spool');
    expect(vct?.spec.accessModes).toEqual(['ReadWriteOnce']);
    expect(quantity(vct?.spec.resources?.requests?.storage ?? '0')).toBeGreaterThan(0);
    expect(mountPath(dir, 'spool')).toBe(loadRenderedConfig(dir).spool.dir);
    expect(loadRenderedConfig(dir).spool.postgres).toBeUndefined();
  });

  it('the StatefulSet has its governing Service, headless', () => {
    const governing = objects(dir).find(
      (o) => o.kind === 'Service' && o.metadata.name === statefulSet(dir).serviceName,
    );
    expect(spec<{ clusterIP?: string }>(governing as K8sObject).clusterIP).toBe('None');
  });
});

describe.each(RENDERS)('wiring (%s)', (dir) => {
  it('Services, PodDisruptionBudget and NetworkPolicies select the relay pod and name its ports', () => {
    const all = objects(dir);
    const w = workload(dir);
    const podLabels = w.template.metadata.labels;
    expect(matches(w.selector.matchLabels, podLabels)).toBe(true);
    const portNames = new Set(relayContainer(dir).ports?.map((p) => p.name));
    for (const svc of all.filter((o) => o.kind === 'Service')) {
      const s = spec<{ selector: Record<string, string>; ports: { name: string; targetPort: string }[] }>(
        svc,
      );
      expect(matches(s.selector, podLabels), svc.metadata.name).toBe(true);
      for (const p of s.ports)
        expect(portNames.has(p.targetPort), `${svc.metadata.name}:${p.name}`).toBe(true);
    }
    const pdb = spec<{ selector: { matchLabels: Record<string, string> } }>(only(all, 'PodDisruptionBudget'));
    expect(matches(pdb.selector.matchLabels, podLabels)).toBe(true);
    const policies = all.filter((o) => o.kind === 'NetworkPolicy');
    expect(policies.length).toBeGreaterThan(0);
    for (const np of policies) {
      const selector = spec<NetworkPolicySpec>(np).podSelector.matchLabels ?? {};
      expect(matches(selector, podLabels), np.metadata.name).toBe(true);
    }
  });

  it('the ServiceMonitor scrapes /metrics on the metrics Service and names the job pd-relay', () => {
    const all = objects(dir);
    const sm = spec<{
      jobLabel: string;
      selector: { matchLabels: Record<string, string> };
      endpoints: { port: string; path: string }[];
    }>(only(all, 'ServiceMonitor'));
    const selected = all.filter(
      (o) => o.kind === 'Service' && matches(sm.selector.matchLabels, o.metadata.labels ?? {}),
    );
    expect(selected.map((s) => s.metadata.name)).toEqual(['pd-relay-metrics']);
    const svc = selected[0] as K8sObject;
    expect(svc.metadata.labels?.[sm.jobLabel]).toBe('pd-relay');
    const ports = spec<{ ports: { name: string }[] }>(svc).ports.map((p) => p.name);
    expect(sm.endpoints.map((e) => [e.port, e.path])).toEqual([['metrics', '/metrics']]);
    expect(ports).toContain('metrics');
    // Every replica is a target: the operator scrapes the Service's endpoints, one per pod it
    // selects, and it selects by the labels every pod of the workload carries (nothing naming one
    // pod, such as statefulset.kubernetes.io/pod-name).
    const selector = spec<{ selector: Record<string, string> }>(svc).selector;
    expect(matches(selector, workload(dir).template.metadata.labels)).toBe(true);
    expect(Object.keys(selector).sort()).toEqual(Object.keys(workload(dir).selector.matchLabels).sort());
  });

  it('the base NetworkPolicy admits SNS from the ingress controller, metrics from monitoring, egress DNS and 443 only', () => {
    const np = spec<NetworkPolicySpec & Required<Pick<NetworkPolicySpec, 'ingress' | 'egress'>>>(
      named(objects(dir), 'NetworkPolicy', 'pd-relay'),
    );
    expect([...np.policyTypes].sort()).toEqual(['Egress', 'Ingress']);

    const ns = (p: NetworkPolicyPeer) => p.namespaceSelector?.matchLabels?.['kubernetes.io/metadata.name'];
    expect(
      np.ingress.map((r) => ({ from: (r.from ?? []).map(ns), ports: (r.ports ?? []).map((p) => p.port) })),
    ).toEqual([
      { from: ['ingress-nginx'], ports: ['sns'] },
      { from: ['monitoring'], ports: ['metrics'] },
    ]);
    for (const r of np.ingress) for (const peer of r.from ?? []) expect(peer.podSelector).toBeDefined();

    const ports = np.egress.flatMap((r) => (r.ports ?? []).map((p) => `${p.protocol}/${p.port}`)).sort();
    expect(ports).toEqual(['TCP/443', 'TCP/53', 'UDP/53']);
    for (const r of np.egress)
      expect(r.ports?.length, 'an egress rule without ports allows all').toBeGreaterThan(0);
    const dns = np.egress.find((r) => r.ports?.some((p) => p.port === 53));
    expect(dns?.to?.map(ns)).toEqual(['kube-system']);
    const https = np.egress.find((r) => r.ports?.some((p) => p.port === 443));
    for (const peer of https?.to ?? []) {
      expect(peer.ipBlock, 'HTTPS egress goes to public addresses').toBeDefined();
      expect(peer.ipBlock?.except?.length).toBeGreaterThan(0);
    }
    expect(https?.to?.flatMap((p) => p.ipBlock?.except ?? [])).toEqual(
      expect.arrayContaining(['10.0.0.0/8', '169.254.0.0/16', '172.16.0.0/12', '192.168.0.0/16']),
    );
  });

  it('the config parses with the relay loader; routing keys come from the mounted Secret', () => {
    const config = loadRenderedConfig(dir);
    if (dir === 'k8s/base') {
      expect(config.dryRun).toBe(true);
      return;
    }
    expect(config.dryRun).toBe(false);
    expect(config.sns.topics.length).toBeGreaterThan(0);
    // Every key of every route came from a file of the Secret (the loader read them from the temp
    // layout); and the Secret carries no key the config does not use.
    const keyFiles = (
      YamlSource.parse(
        data(only(objects(dir), 'ConfigMap', 'pd-relay-config'))['config.yaml'] ?? '',
        'config',
      ).source.toJS() as { routes: Record<string, { keys: { keyFile?: string }[] }> }
    ).routes;
    const used = Object.values(keyFiles)
      .flatMap((r) => r.keys.map((k) => k.keyFile))
      .map((f) => posix.basename(f ?? ''));
    expect(used.sort()).toEqual([...config.secretKeys].sort());
    expect(Object.values(config.routes).every((r) => r.keys.length > 0)).toBe(true);
  });
});

describe.each([EXAMPLE, HA])('example Secret and Ingress (%s)', (dir) => {
  it('the keys Secret holds placeholders only, which the relay refuses without echoing them', () => {
    const secret = named(objects(dir), 'Secret', 'pd-relay-secrets');
    const values = Object.values(secret.stringData as Record<string, string>);
    expect(values.length).toBeGreaterThan(0);
    for (const v of values)
      expect(ROUTING_KEY_PATTERN.test(v), 'a real-looking key is committed').toBe(false);
    expect(secret.data).toBeUndefined();

    const result = renderedConfig(objects(dir), (name, key) =>
      name === secret.metadata.name
        ? ((secret.stringData as Record<string, string>)[key] as string)
        : (STAND_INS[name]?.(key) ?? ''),
    );
    expect(result.config).toBeUndefined();
    const report = result.problems.map(formatProblem).join('\n');
    expect(result.problems.length).toBe(values.length);
    expect(report).toMatch(/Expected a 32-character PagerDuty integration key/);
    for (const v of values) expect(report).not.toContain(v);
  });

  it('the Ingress serves /sns over TLS with a cert-manager certificate, nothing else', () => {
    const all = objects(dir);
    const ingress = spec<{
      ingressClassName?: string;
      tls: { hosts: string[]; secretName: string }[];
      rules: {
        host: string;
        http: {
          paths: {
            path: string;
            pathType: string;
            backend: { service: { name: string; port: { name: string } } };
          }[];
        };
      }[];
    }>(only(all, 'Ingress'));
    const annotations = only(all, 'Ingress').metadata.annotations ?? {};
    expect(
      Object.keys(annotations).some(
        (a) => a === 'cert-manager.io/cluster-issuer' || a === 'cert-manager.io/issuer',
      ),
    ).toBe(true);
    const tlsHosts = ingress.tls.flatMap((t) => t.hosts);
    expect(ingress.tls.every((t) => t.secretName)).toBe(true);
    const sns = all.find((o) => o.kind === 'Service' && o.metadata.name === 'pd-relay');
    const snsPorts = spec<{ ports: { name: string }[] }>(sns as K8sObject).ports.map((p) => p.name);
    for (const rule of ingress.rules) {
      expect(tlsHosts).toContain(rule.host);
      expect(rule.http.paths.map((p) => [p.path, p.pathType])).toEqual([['/sns', 'Prefix']]);
      for (const p of rule.http.paths) {
        expect(p.backend.service.name).toBe('pd-relay');
        expect(snsPorts).toContain(p.backend.service.port.name);
      }
    }
  });
});

describe('rules and dashboard ConfigMaps', () => {
  it('every example rule file is YAML: a list of rules with unique names and a match', () => {
    // Shape only: the rule loader (src/rules) is being written alongside; `pd-relay rules lint`
    // will validate these files fully once it exists.
    const files = Object.entries(data(only(objects('k8s'), 'ConfigMap', 'pd-relay-rules')));
    expect(files.length).toBeGreaterThan(0);
    const names: string[] = [];
    for (const [file, text] of files) {
      expect(file).toMatch(/\.ya?ml$/);
      const { source, problems } = YamlSource.parse(text, file);
      expect(problems.map(formatProblem)).toEqual([]);
      const rules = source.toJS();
      expect(Array.isArray(rules), `${file} is a list of rules`).toBe(true);
      for (const rule of rules as Record<string, unknown>[]) {
        expect(typeof rule.name).toBe('string');
        expect(typeof rule.match).toBe('object');
        names.push(rule.name as string);
      }
    }
    expect(new Set(names).size).toBe(names.length);
  });

  it('the dashboard ConfigMap carries k8s/dashboards/pd-relay.json with the Grafana sidecar label', () => {
    const cm = only(objects('k8s'), 'ConfigMap', 'pd-relay-dashboard');
    expect(cm.metadata.labels?.grafana_dashboard).toBe('1');
    const file = readFileSync(join(REPO_ROOT, 'k8s/dashboards/pd-relay.json'), 'utf8');
    expect(JSON.parse(data(cm)['pd-relay.json'] ?? 'null')).toEqual(JSON.parse(file));
  });
});

// ---- overlays/ha: several replicas on PostgreSQL ---------------------------------------------------

/** A render of overlays/ha, taken apart for the checks below. */
interface HaView {
  all: readonly K8sObject[];
  deployment: WorkloadSpec;
  pod: PodSpec;
  podLabels: Record<string, string>;
  container: Container;
  /** The example overlay's StatefulSet: the pod the Deployment's must equal, but for documented differences. */
  reference: WorkloadSpec;
}

function haView(all: readonly K8sObject[]): HaView {
  const deployment = spec<WorkloadSpec>(only(all, 'Deployment'));
  return {
    all,
    deployment,
    pod: deployment.template.spec,
    podLabels: deployment.template.metadata.labels,
    container: relayContainerOf(deployment),
    reference: statefulSet(EXAMPLE),
  };
}

/** Which mount provides a file the config names (a path relative to /etc/pd-relay), and from what. */
function providerOf(v: HaView, file: string) {
  const configFile = v.container.args?.[v.container.args.indexOf('--config') + 1] ?? '';
  const path = posix.join(posix.dirname(configFile), file);
  const mount = v.container.volumeMounts?.find((m) => !m.subPath && posix.dirname(path) === m.mountPath);
  const volume = v.pod.volumes?.find((x) => x.name === mount?.name);
  const source = volume?.secret
    ? v.all.find((o) => o.kind === 'Secret' && o.metadata.name === volume.secret?.secretName)
    : v.all.find((o) => o.kind === 'ConfigMap' && o.metadata.name === volume?.configMap?.name);
  const keys = Object.keys({ ...(source?.stringData ?? {}), ...(source?.data ?? {}) });
  return { path, mount, volume, source, hasKey: keys.includes(posix.basename(path)) };
}

/** The paths at which two JSON values differ. */
function differences(a: unknown, b: unknown, path = ''): string[] {
  if (a && b && typeof a === 'object' && typeof b === 'object' && Array.isArray(a) === Array.isArray(b)) {
    const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
    return [...keys].flatMap((k) =>
      differences(
        (a as Record<string, unknown>)[k],
        (b as Record<string, unknown>)[k],
        path ? `${path}.${k}` : k,
      ),
    );
  }
  return isDeepStrictEqual(a, b) ? [] : [path];
}

/** Volumes the ha pod adds (the database's) or leaves out (the SQLite spool): the documented differences. */
const HA_ONLY_VOLUMES = ['database', 'database-ca'];
const SQLITE_ONLY_VOLUMES = ['spool'];

/**
 * What overlays/ha promises, one named check each; a check returns its broken promises (none when
 * kept). The same checks run on the rendered overlay and, to prove that each can fail, on copies
 * of it broken one way each (HA_BREAKAGES).
 */
const HA_CHECKS: Record<string, (v: HaView) => string[]> = {
  'a Deployment of 3 replicas; no StatefulSet, no PersistentVolumeClaim, no volume claim': (v) => {
    const problems: string[] = [];
    if (v.deployment.replicas !== 3) problems.push(`Expected 3 replicas, got ${v.deployment.replicas}`);
    for (const o of v.all)
      if (o.kind === 'StatefulSet' || o.kind === 'PersistentVolumeClaim')
        problems.push(`Expected no ${o.kind}, got ${o.kind}/${o.metadata.name}`);
    if (v.deployment.volumeClaimTemplates) problems.push('Expected no volumeClaimTemplates');
    for (const vol of v.pod.volumes ?? [])
      if (!vol.configMap && !vol.secret && !vol.emptyDir)
        problems.push(`Expected volume ${vol.name} to be a ConfigMap, a Secret or an emptyDir`);
    return problems;
  },

  'a rollout never takes it below 2 ready pods': (v) => {
    const ru = v.deployment.strategy?.rollingUpdate;
    const problems: string[] = [];
    if (v.deployment.strategy?.type !== 'RollingUpdate') problems.push('Expected strategy RollingUpdate');
    // Absolute numbers only: a percentage rounds differently for maxUnavailable and maxSurge.
    if (typeof ru?.maxUnavailable !== 'number' || typeof ru.maxSurge !== 'number')
      return [...problems, 'Expected maxUnavailable and maxSurge as numbers'];
    if (![0, 1].includes(ru.maxUnavailable))
      problems.push(`Expected maxUnavailable 0 or 1, got ${ru.maxUnavailable}`);
    if (ru.maxSurge !== 1) problems.push(`Expected maxSurge 1, got ${ru.maxSurge}`);
    if ((v.deployment.replicas ?? 1) - ru.maxUnavailable < 2)
      problems.push(
        `Expected at least 2 ready during a rollout, got ${(v.deployment.replicas ?? 1) - ru.maxUnavailable}`,
      );
    return problems;
  },

  'spread strictly across zones and, where possible, across nodes': (v) => {
    const problems: string[] = [];
    const want: [string, string][] = [
      ['topology.kubernetes.io/zone', 'DoNotSchedule'],
      ['kubernetes.io/hostname', 'ScheduleAnyway'],
    ];
    for (const [key, when] of want) {
      const c = v.pod.topologySpreadConstraints?.find((x) => x.topologyKey === key);
      if (!c) {
        problems.push(`Expected a topologySpreadConstraint on ${key}`);
        continue;
      }
      if (c.maxSkew !== 1) problems.push(`${key}: expected maxSkew 1, got ${c.maxSkew}`);
      if (c.whenUnsatisfiable !== when) problems.push(`${key}: expected ${when}, got ${c.whenUnsatisfiable}`);
      const selector = c.labelSelector?.matchLabels ?? {};
      if (Object.keys(selector).length === 0 || !matches(selector, v.podLabels))
        problems.push(`${key}: expected a labelSelector that selects the relay's pods`);
      // Without it, the old pods of a rollout count too and it can end with a zone left empty.
      if (!c.matchLabelKeys?.includes('pod-template-hash'))
        problems.push(`${key}: expected matchLabelKeys [pod-template-hash]`);
    }
    const zone = v.pod.topologySpreadConstraints?.find((x) => x.topologyKey === want[0]?.[0]);
    if (zone && zone.nodeTaintsPolicy !== 'Honor')
      problems.push('zone: expected nodeTaintsPolicy Honor, or a failed zone blocks rescheduling');
    return problems;
  },

  'a PodDisruptionBudget keeps 2 of the pods available': (v) => {
    const pdbs = v.all
      .filter((o) => o.kind === 'PodDisruptionBudget')
      .map((o) =>
        spec<{
          minAvailable?: number | string;
          maxUnavailable?: number | string;
          selector: { matchLabels: Record<string, string> };
        }>(o),
      )
      .filter((p) => matches(p.selector.matchLabels, v.podLabels));
    if (pdbs.length !== 1) return [`Expected one PodDisruptionBudget selecting the pods, got ${pdbs.length}`];
    const pdb = pdbs[0] as NonNullable<(typeof pdbs)[0]>;
    const problems: string[] = [];
    if (pdb.minAvailable !== 2) problems.push(`Expected minAvailable 2, got ${pdb.minAvailable}`);
    if (pdb.maxUnavailable !== undefined) problems.push('Expected no maxUnavailable beside minAvailable');
    // minAvailable equal to the replicas would block every node drain.
    if (typeof pdb.minAvailable === 'number' && pdb.minAvailable >= (v.deployment.replicas ?? 1))
      problems.push(
        `Expected minAvailable below the ${v.deployment.replicas} replicas, or no drain can proceed`,
      );
    return problems;
  },

  'the config is valid, on PostgreSQL with verify-full, the URL from the mounted Secret and the CA from a ConfigMap':
    (v) => {
      const { config, problems: loaderProblems } = renderedConfig(v.all);
      if (!config) return loaderProblems.map(formatProblem);
      const problems: string[] = [];
      const pg = config.spool.postgres;
      if (!pg) return ['Expected spool.postgres'];
      if (pg.sslmode !== 'verify-full') problems.push(`Expected sslmode verify-full, got ${pg.sslmode}`);
      const raw = YamlSource.parse(
        data(only(v.all, 'ConfigMap', 'pd-relay-config'))['config.yaml'] ?? '',
        'config',
      ).source.toJS() as { spool?: { postgres?: { url?: string; urlFile?: string; caFile?: string } } };
      const { url, urlFile, caFile } = raw.spool?.postgres ?? {};
      if (url !== undefined) problems.push('Expected urlFile, not url: the URL holds the password');
      if (!urlFile) problems.push('Expected spool.postgres.urlFile');
      else {
        const p = providerOf(v, urlFile);
        if (!p.volume?.secret || !p.hasKey)
          problems.push(`Expected urlFile ${urlFile} (${p.path}) to be a key of a mounted Secret`);
      }
      if (!caFile) problems.push('Expected spool.postgres.caFile');
      else {
        const p = providerOf(v, caFile);
        if (!p.volume?.configMap || !p.hasKey)
          problems.push(`Expected caFile ${caFile} (${p.path}) to be a key of a mounted ConfigMap`);
      }
      return problems;
    },

  'nothing in the pod is writable but /tmp': (v) =>
    (v.container.volumeMounts ?? [])
      .filter((m) => !m.readOnly)
      .filter((m) => !(m.mountPath === '/tmp' && v.pod.volumes?.find((x) => x.name === m.name)?.emptyDir))
      .map((m) => `Expected ${m.mountPath} (${m.name}) read-only: the spool is the database`),

  'a NetworkPolicy allows TCP 5432 to the database subnets, and only that port there': (v) => {
    const egress = v.all
      .filter((o) => o.kind === 'NetworkPolicy')
      .map((o) => spec<NetworkPolicySpec>(o))
      .filter((np) => matches(np.podSelector.matchLabels ?? {}, v.podLabels))
      .flatMap((np) => np.egress ?? []);
    const rules = egress.filter((r) =>
      r.ports?.some((p) => p.port === 5432 && (p.protocol ?? 'TCP') === 'TCP'),
    );
    if (rules.length === 0) return ['Expected an egress rule for TCP 5432'];
    return rules.flatMap((r) => [
      ...(r.ports?.length === 1 ? [] : ['Expected the database rule to open port 5432 only']),
      ...((r.to ?? []).length > 0 &&
      (r.to ?? []).every((p) => p.ipBlock?.cidr && p.ipBlock.cidr !== '0.0.0.0/0')
        ? []
        : ['Expected the database rule to go to CIDR blocks (the database subnets), not anywhere']),
    ]);
  },

  "the pod is the example overlay's (the base's, sized) but for the volumes and the zone spread": (v) => {
    const normalise = (w: WorkloadSpec, drop: string[]) => {
      const pod = structuredClone(w.template.spec);
      delete pod.topologySpreadConstraints;
      pod.volumes = (pod.volumes ?? [])
        .filter((x) => !drop.includes(x.name))
        // The config ConfigMap's name carries its content's hash, which differs between overlays.
        .map((x) =>
          x.configMap
            ? { ...x, configMap: { ...x.configMap, name: x.configMap.name.replace(/-[a-z0-9]{10}$/, '') } }
            : x,
        );
      for (const c of pod.containers) c.volumeMounts = c.volumeMounts?.filter((m) => !drop.includes(m.name));
      return { metadata: w.template.metadata, spec: pod };
    };
    return differences(
      normalise(v.deployment, HA_ONLY_VOLUMES),
      normalise(v.reference, SQLITE_ONLY_VOLUMES),
    ).map(
      (path) =>
        `template.${path} differs from the example StatefulSet's: change both, or document the difference`,
    );
  },
};

type Breakage = [description: string, check: string, reported: RegExp, breakIt: (all: K8sObject[]) => void];
const deploymentOf = (all: K8sObject[]) => only(all, 'Deployment') as K8sObject & { spec: WorkloadSpec };
const setConfig = (all: K8sObject[], from: string, to: string) => {
  const cm = only(all, 'ConfigMap', 'pd-relay-config') as K8sObject & { data: Record<string, string> };
  const text = cm.data['config.yaml'] as string;
  if (!text.includes(from)) throw new Error(`The ha config has no "${from}"`);
  cm.data['config.yaml'] = text.replace(from, to);
};
const [
  CHECK_WORKLOAD,
  CHECK_ROLLOUT,
  CHECK_SPREAD,
  CHECK_PDB,
  CHECK_CONFIG,
  CHECK_WRITABLE,
  CHECK_EGRESS,
  CHECK_DRIFT,
] = Object.keys(HA_CHECKS) as [string, string, string, string, string, string, string, string];

/** Ways to break overlays/ha, each of which the named check must report. */
const HA_BREAKAGES: Breakage[] = [
  [
    'two replicas',
    CHECK_WORKLOAD,
    /Expected 3 replicas, got 2/,
    (all) => {
      deploymentOf(all).spec.replicas = 2;
    },
  ],
  [
    'the StatefulSet left in',
    CHECK_WORKLOAD,
    /Expected no StatefulSet/,
    (all) => {
      all.push(structuredClone(only(objects(EXAMPLE), 'StatefulSet')));
    },
  ],
  [
    'a PersistentVolumeClaim volume',
    CHECK_WORKLOAD,
    /volume spool to be a ConfigMap, a Secret or an emptyDir/,
    (all) => {
      deploymentOf(all).spec.template.spec.volumes?.push({
        name: 'spool',
        persistentVolumeClaim: { claimName: 'spool' },
      });
    },
  ],
  [
    'maxUnavailable 2',
    CHECK_ROLLOUT,
    /at least 2 ready during a rollout, got 1/,
    (all) => {
      Object.assign(deploymentOf(all).spec.strategy?.rollingUpdate ?? {}, { maxUnavailable: 2 });
    },
  ],
  [
    'maxUnavailable 25%',
    CHECK_ROLLOUT,
    /as numbers/,
    (all) => {
      Object.assign(deploymentOf(all).spec.strategy?.rollingUpdate ?? {}, { maxUnavailable: '25%' });
    },
  ],
  [
    'the zone spread only preferred',
    CHECK_SPREAD,
    /zone: expected DoNotSchedule, got ScheduleAnyway/,
    (all) => {
      const c = deploymentOf(all).spec.template.spec.topologySpreadConstraints?.[0];
      if (c) c.whenUnsatisfiable = 'ScheduleAnyway';
    },
  ],
  [
    'the zone spread counting old pods too',
    CHECK_SPREAD,
    /zone: expected matchLabelKeys/,
    (all) => {
      delete deploymentOf(all).spec.template.spec.topologySpreadConstraints?.[0]?.matchLabelKeys;
    },
  ],
  [
    'the zone spread counting a failed zone',
    CHECK_SPREAD,
    /nodeTaintsPolicy Honor/,
    (all) => {
      delete deploymentOf(all).spec.template.spec.topologySpreadConstraints?.[0]?.nodeTaintsPolicy;
    },
  ],
  [
    'no hostname spread',
    CHECK_SPREAD,
    /topologySpreadConstraint on kubernetes.io\/hostname/,
    (all) => {
      deploymentOf(all).spec.template.spec.topologySpreadConstraints?.pop();
    },
  ],
  [
    'a budget blocking every drain',
    CHECK_PDB,
    /or no drain can proceed/,
    (all) => {
      Object.assign(only(all, 'PodDisruptionBudget').spec as object, { minAvailable: 3 });
    },
  ],
  [
    "the base's one-pod budget",
    CHECK_PDB,
    /Expected no maxUnavailable/,
    (all) => {
      const pdb = only(all, 'PodDisruptionBudget').spec as Record<string, unknown>;
      delete pdb.minAvailable;
      pdb.maxUnavailable = 1;
    },
  ],
  [
    'the URL in a path no Secret provides',
    CHECK_CONFIG,
    /urlFile: Cannot read secrets\/database-url/,
    (all) => setConfig(all, 'urlFile: database/url', 'urlFile: secrets/database-url'),
  ],
  [
    'the database Secret mounted elsewhere',
    CHECK_CONFIG,
    /urlFile: Cannot read database\/url/,
    (all) => {
      const m = deploymentOf(all).spec.template.spec.containers[0]?.volumeMounts?.find(
        (x) => x.name === 'database',
      );
      if (m) m.mountPath = '/etc/pd-relay/db';
    },
  ],
  [
    'sslmode verify-ca (the host name unchecked)',
    CHECK_CONFIG,
    /Expected sslmode verify-full, got verify-ca/,
    (all) => setConfig(all, 'sslmode: verify-full', 'sslmode: verify-ca'),
  ],
  [
    'a writable spool directory',
    CHECK_WRITABLE,
    /\/var\/lib\/pd-relay \(data\) read-only/,
    (all) => {
      const pod = deploymentOf(all).spec.template.spec;
      pod.volumes?.push({ name: 'data', emptyDir: {} });
      pod.containers[0]?.volumeMounts?.push({ name: 'data', mountPath: '/var/lib/pd-relay' });
    },
  ],
  [
    'the database port mistyped',
    CHECK_EGRESS,
    /Expected an egress rule for TCP 5432/,
    (all) => {
      const np = spec<NetworkPolicySpec>(named(all, 'NetworkPolicy', 'pd-relay-database'));
      const port = np.egress?.[0]?.ports?.[0];
      if (port) port.port = 5433;
    },
  ],
  [
    'the database rule open to anywhere',
    CHECK_EGRESS,
    /to CIDR blocks/,
    (all) => {
      const np = spec<NetworkPolicySpec>(named(all, 'NetworkPolicy', 'pd-relay-database'));
      const rule = np.egress?.[0];
      if (rule) delete rule.to;
    },
  ],
  [
    "a probe changed in the base's pod but not here",
    CHECK_DRIFT,
    /readinessProbe\.periodSeconds differs/,
    (all) => {
      const probe = deploymentOf(all).spec.template.spec.containers[0]?.readinessProbe as Record<
        string,
        unknown
      >;
      probe.periodSeconds = 30;
    },
  ],
  [
    'a capability added',
    CHECK_DRIFT,
    /capabilities\.add differs/,
    (all) => {
      const sc = deploymentOf(all).spec.template.spec.containers[0]?.securityContext;
      if (sc?.capabilities) sc.capabilities.add = ['NET_BIND_SERVICE'];
    },
  ],
];

describe('overlays/ha: several replicas on PostgreSQL', () => {
  it('renders the base with a Deployment instead of the StatefulSet, the database Secret, CA and NetworkPolicy', () => {
    const all = objects(HA);
    expect(
      all.map((o) => `${o.kind}/${o.metadata.name.replace(/-[a-z0-9]{10}$/, '-<hash>')}`).sort(),
    ).toEqual(
      [
        'ConfigMap/pd-relay-config-<hash>',
        'ConfigMap/pd-relay-dashboard',
        'ConfigMap/pd-relay-database-ca-<hash>',
        'ConfigMap/pd-relay-rules',
        'Deployment/pd-relay',
        'Ingress/pd-relay',
        'NetworkPolicy/pd-relay',
        'NetworkPolicy/pd-relay-database',
        'PodDisruptionBudget/pd-relay',
        'PrometheusRule/pd-relay',
        'Secret/pd-relay-database',
        'Secret/pd-relay-secrets',
        'Service/pd-relay',
        'Service/pd-relay-metrics',
        'ServiceAccount/pd-relay',
        'ServiceMonitor/pd-relay',
      ].sort(),
    );
    for (const o of all) expect(o.metadata.namespace, `${o.kind}/${o.metadata.name}`).toBe('pd-relay');
  });

  it('leaves the example overlay as it was: the one-replica StatefulSet with its volume claim, no Deployment', () => {
    const all = objects(EXAMPLE);
    expect(all.filter((o) => o.kind === 'Deployment')).toEqual([]);
    expect(statefulSet(EXAMPLE).replicas).toBe(1);
    expect(statefulSet(EXAMPLE).volumeClaimTemplates?.map((t) => t.metadata.name)).toEqual(['spool']);
    expect(spec<{ maxUnavailable?: number }>(only(all, 'PodDisruptionBudget')).maxUnavailable).toBe(1);
    expect(all.filter((o) => o.kind === 'NetworkPolicy').map((o) => o.metadata.name)).toEqual(['pd-relay']);
  });

  it.each(Object.keys(HA_CHECKS))('%s', (name) => {
    expect(HA_CHECKS[name]?.(haView(objects(HA)))).toEqual([]);
  });

  it('keeps the base NetworkPolicy as it is (ingress, DNS, HTTPS) beside the database one', () => {
    expect(named(objects(HA), 'NetworkPolicy', 'pd-relay').spec).toEqual(
      named(objects(EXAMPLE), 'NetworkPolicy', 'pd-relay').spec,
    );
  });

  it('the database Secret holds a placeholder the relay refuses without echoing it', () => {
    const secret = named(objects(HA), 'Secret', 'pd-relay-database');
    expect(secret.data).toBeUndefined();
    const placeholder = (secret.stringData as Record<string, string>).url as string;
    expect(placeholder).toMatch(/REPLACE/);
    const result = renderedConfig(objects(HA), (name, key) =>
      name === 'pd-relay-database' ? placeholder : (STAND_INS[name]?.(key) ?? ''),
    );
    expect(result.config).toBeUndefined();
    const report = result.problems.map(formatProblem).join('\n');
    expect(result.problems.map((p) => p.path)).toEqual(['spool.postgres.urlFile']);
    expect(report).toMatch(/Expected a URL such as postgres:\/\//);
    expect(report).not.toContain(placeholder);
  });

  it('the CA bundle is a marked placeholder naming where to download the real one', () => {
    const ca = only(objects(HA), 'ConfigMap', 'pd-relay-database-ca');
    const text = data(ca)['global-bundle.pem'] ?? '';
    expect(text).toMatch(/^PLACEHOLDER/);
    expect(text).toContain('https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem');
    expect(text).not.toContain('BEGIN CERTIFICATE');
  });

  it.each(HA_BREAKAGES)('the checks catch %s', (_d, check, reported, breakIt) => {
    const all = structuredClone(objects(HA));
    breakIt(all);
    expect(HA_CHECKS[check]?.(haView(all)).join('\n'), check).toMatch(reported);
  });

  it('every check has a breakage that it catches (a check that cannot fail is a defect)', () => {
    expect(new Set(HA_BREAKAGES.map(([, check]) => check))).toEqual(new Set(Object.keys(HA_CHECKS)));
  });
});
