import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, posix, relative } from 'node:path';
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
interface PodSpec {
  automountServiceAccountToken?: boolean;
  serviceAccountName?: string;
  hostNetwork?: boolean;
  hostPID?: boolean;
  hostIPC?: boolean;
  terminationGracePeriodSeconds?: number;
  securityContext?: { runAsNonRoot?: boolean; runAsUser?: number; seccompProfile?: { type?: string } };
  containers: Container[];
  volumes?: {
    name: string;
    configMap?: { name: string };
    secret?: { secretName: string };
    emptyDir?: object;
    hostPath?: object;
  }[];
}
interface StatefulSetSpec {
  replicas?: number;
  serviceName: string;
  selector: { matchLabels: Record<string, string> };
  template: { metadata: { labels: Record<string, string> }; spec: PodSpec };
  volumeClaimTemplates?: {
    metadata: { name: string };
    spec: { accessModes?: string[]; resources?: { requests?: { storage?: string } } };
  }[];
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

const RENDERS = ['k8s', 'k8s/base'] as const;
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

let temp: string;
beforeAll(() => {
  temp = mkdtempSync(join(tmpdir(), 'pd-relay-k8s-'));
});
afterAll(() => {
  if (temp) rmSync(temp, { recursive: true, force: true });
});

/** The config file the pod reads, parsed by the relay's own loader (see loadRenderedConfig). */
function renderedConfig(dir: string, secretValue?: (name: string) => string) {
  const all = objects(dir);
  const configMap = only(all, 'ConfigMap', 'pd-relay-config');
  const text = data(configMap)['config.yaml'];
  if (text === undefined) throw new Error(`${configMap.metadata.name} has no config.yaml`);
  // Relative paths in the config resolve against its directory, /etc/pd-relay in the pod. Parse
  // it against a temporary directory laid out the same way, with the Secret's keys as files
  // (placeholders replaced by syntactically valid keys unless secretValue says otherwise), so the
  // loader's own checks — keyFile readable, 32-character keys, topics required with keys — run.
  const base = mkdtempSync(join(temp, 'etc-pd-relay-'));
  mkdirSync(join(base, 'secrets'));
  const secret = all.find((o) => o.kind === 'Secret' && o.metadata.name === 'pd-relay-secrets');
  const secretKeys = Object.keys({ ...(secret?.stringData ?? {}), ...(secret?.data ?? {}) });
  for (const key of secretKeys) {
    writeFileSync(join(base, 'secrets', key), secretValue ? secretValue(key) : 'A'.repeat(32));
  }
  const result = parseConfig(text, `${configMap.metadata.name}/config.yaml`, { env: {}, baseDir: base });
  return { ...result, base, secretKeys };
}

const loaded = new Map<string, Config & { base: string; secretKeys: string[] }>();
function loadRenderedConfig(dir: string): Config & { base: string; secretKeys: string[] } {
  let c = loaded.get(dir);
  if (!c) {
    const { config, problems, base, secretKeys } = renderedConfig(dir);
    if (!config)
      throw new Error(`The config in ${dir} is invalid:\n${problems.map(formatProblem).join('\n')}`);
    c = { ...config, base, secretKeys };
    loaded.set(dir, c);
  }
  return c;
}

function statefulSet(dir: string): StatefulSetSpec {
  return spec<StatefulSetSpec>(only(objects(dir), 'StatefulSet'));
}

function relayContainer(dir: string): Container {
  const c = statefulSet(dir).template.spec.containers.find((x) => x.name === 'pd-relay');
  if (!c) throw new Error('No pd-relay container');
  return c;
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
      const volumes = statefulSet(dir).template.spec.volumes ?? [];
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
    const sts = structuredClone(only(objects('k8s'), 'StatefulSet')) as K8sObject & { spec: StatefulSetSpec };
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
    const pod = statefulSet(dir).template.spec;
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
    const pod = statefulSet(dir).template.spec;
    expect(pod.automountServiceAccountToken).toBe(false);
    const sa = only(objects(dir), 'ServiceAccount');
    expect(pod.serviceAccountName).toBe(sa.metadata.name);
    expect(sa.automountServiceAccountToken).toBe(false);
  });

  it('sets CPU and memory requests and limits, limits at least the requests', () => {
    for (const c of statefulSet(dir).template.spec.containers) {
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
    const pod = statefulSet(dir).template.spec;
    const c = relayContainer(dir);
    const preStop = c.lifecycle?.preStop?.sleep?.seconds ?? 0;
    const drain = loadRenderedConfig(dir).delivery.drainTimeoutMs / 1000;
    expect(pod.terminationGracePeriodSeconds).toBeGreaterThan(preStop + drain);
  });

  it('keeps the spool on a ReadWriteOnce volume claim at spool.dir, one replica', () => {
    const sts = statefulSet(dir);
    expect(sts.replicas).toBe(1);
    const vct = sts.volumeClaimTemplates?.find((t) => t.metadata.name === 'spool');
    expect(vct?.spec.accessModes).toEqual(['ReadWriteOnce']);
    expect(quantity(vct?.spec.resources?.requests?.storage ?? '0')).toBeGreaterThan(0);
    expect(mountPath(dir, 'spool')).toBe(loadRenderedConfig(dir).spool.dir);
  });

  it('mounts config, rules and secrets where the config says, read-only; /tmp is writable', () => {
    const c = relayContainer(dir);
    const config = loadRenderedConfig(dir);
    const mounts = c.volumeMounts ?? [];
    const volumes = new Set([
      ...(statefulSet(dir).template.spec.volumes ?? []).map((v) => v.name),
      ...(statefulSet(dir).volumeClaimTemplates ?? []).map((t) => t.metadata.name),
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
    expect(config.rules.paths.map((p) => posix.join(etc, relative(config.base, p)))).toContain(
      rules?.mountPath,
    );

    expect(mountPath(dir, 'secrets')).toBe(posix.join(etc, 'secrets'));
    for (const name of ['config', 'rules', 'secrets']) {
      expect(mounts.find((m) => m.name === name)?.readOnly, name).toBe(true);
    }
    const tmp = statefulSet(dir).template.spec.volumes?.find((v) => v.name === 'tmp');
    expect(tmp?.emptyDir).toBeDefined();
    expect(mountPath(dir, 'tmp')).toBe('/tmp');
  });
});

describe.each(RENDERS)('wiring (%s)', (dir) => {
  it('Services, PodDisruptionBudget and NetworkPolicy select the relay pod and name its ports', () => {
    const all = objects(dir);
    const sts = statefulSet(dir);
    const podLabels = sts.template.metadata.labels;
    expect(matches(sts.selector.matchLabels, podLabels)).toBe(true);
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
    const np = spec<{ podSelector: { matchLabels: Record<string, string> } }>(only(all, 'NetworkPolicy'));
    expect(matches(np.podSelector.matchLabels, podLabels)).toBe(true);
    // The StatefulSet's governing Service must exist and be headless.
    const governing = all.find((o) => o.kind === 'Service' && o.metadata.name === sts.serviceName);
    expect(spec<{ clusterIP?: string }>(governing as K8sObject).clusterIP).toBe('None');
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
  });

  it('the NetworkPolicy admits SNS from the ingress controller, metrics from monitoring, egress DNS and 443 only', () => {
    const np = spec<{
      policyTypes: string[];
      ingress: { from?: NetworkPolicyPeer[]; ports?: NetworkPolicyPort[] }[];
      egress: { to?: NetworkPolicyPeer[]; ports?: NetworkPolicyPort[] }[];
    }>(only(objects(dir), 'NetworkPolicy'));
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

  it('the config parses with the relay loader; secrets come from the mounted Secret', () => {
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

describe('example Secret and Ingress', () => {
  it('the Secret holds placeholders only, which the relay refuses without echoing them', () => {
    const secret = only(objects('k8s'), 'Secret');
    const values = Object.values(secret.stringData as Record<string, string>);
    expect(values.length).toBeGreaterThan(0);
    for (const v of values)
      expect(ROUTING_KEY_PATTERN.test(v), 'a real-looking key is committed').toBe(false);
    expect(secret.data).toBeUndefined();

    const result = renderedConfig(
      'k8s',
      (key) => (secret.stringData as Record<string, string>)[key] as string,
    );
    expect(result.config).toBeUndefined();
    const report = result.problems.map(formatProblem).join('\n');
    expect(result.problems.length).toBe(values.length);
    expect(report).toMatch(/Expected a 32-character PagerDuty integration key/);
    for (const v of values) expect(report).not.toContain(v);
  });

  it('the Ingress serves /sns over TLS with a cert-manager certificate, nothing else', () => {
    const all = objects('k8s');
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
