import { PrometheusRule } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule';
import { ServiceMonitor } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor';
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import { StatefulSet } from 'kubernetes-models/apps/v1/StatefulSet';
import { Ingress } from 'kubernetes-models/networking.k8s.io/v1/Ingress';
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1/NetworkPolicy';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget';
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { Secret } from 'kubernetes-models/v1/Secret';
import { Service } from 'kubernetes-models/v1/Service';
import { ServiceAccount } from 'kubernetes-models/v1/ServiceAccount';

/** A model class: validate() throws a ValidationError listing every schema violation. */
interface ModelClass {
  new (data: never): { validate(): void };
}

interface ModelEntry {
  model: ModelClass;
  /** Module and interface whose declarations FieldChecker reads. */
  specifier: string;
  typeName: string;
}

/**
 * Every kind the manifests may contain, keyed `apiVersion/kind`: Kubernetes 1.33 core models
 * (kubernetes-models 4.5.1) and prometheus-operator CRDs (@kubernetes-models/prometheus-operator
 * 4.4.4, operator v0.65 CRDs). A kind missing here fails the manifest test: add it deliberately.
 */
export const MODELS: Readonly<Record<string, ModelEntry>> = {
  'v1/ConfigMap': { model: ConfigMap, specifier: 'kubernetes-models/v1/ConfigMap', typeName: 'IConfigMap' },
  'v1/Secret': { model: Secret, specifier: 'kubernetes-models/v1/Secret', typeName: 'ISecret' },
  'v1/Service': { model: Service, specifier: 'kubernetes-models/v1/Service', typeName: 'IService' },
  'v1/ServiceAccount': {
    model: ServiceAccount,
    specifier: 'kubernetes-models/v1/ServiceAccount',
    typeName: 'IServiceAccount',
  },
  'apps/v1/StatefulSet': {
    model: StatefulSet,
    specifier: 'kubernetes-models/apps/v1/StatefulSet',
    typeName: 'IStatefulSet',
  },
  'apps/v1/Deployment': {
    model: Deployment,
    specifier: 'kubernetes-models/apps/v1/Deployment',
    typeName: 'IDeployment',
  },
  'policy/v1/PodDisruptionBudget': {
    model: PodDisruptionBudget,
    specifier: 'kubernetes-models/policy/v1/PodDisruptionBudget',
    typeName: 'IPodDisruptionBudget',
  },
  'networking.k8s.io/v1/NetworkPolicy': {
    model: NetworkPolicy,
    specifier: 'kubernetes-models/networking.k8s.io/v1/NetworkPolicy',
    typeName: 'INetworkPolicy',
  },
  'networking.k8s.io/v1/Ingress': {
    model: Ingress,
    specifier: 'kubernetes-models/networking.k8s.io/v1/Ingress',
    typeName: 'IIngress',
  },
  'monitoring.coreos.com/v1/ServiceMonitor': {
    model: ServiceMonitor,
    specifier: '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor',
    typeName: 'IServiceMonitor',
  },
  'monitoring.coreos.com/v1/PrometheusRule': {
    model: PrometheusRule,
    specifier: '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule',
    typeName: 'IPrometheusRule',
  },
};

/** The MODELS key of an object. */
export function modelKey(o: { apiVersion: string; kind: string }): string {
  return `${o.apiVersion}/${o.kind}`;
}
