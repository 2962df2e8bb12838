/**
 * Which objects live in a namespace. `kubectl apply -n NS` and kustomize's `namespace:` decide it
 * from the API server's discovery; offline we decide it from the kinds Kubernetes defines as
 * cluster-scoped, the well-known cluster-scoped kinds of common operators, and the
 * CustomResourceDefinitions shipped with the application (`spec.scope: Cluster`). Anything else is
 * namespaced, as a custom resource is unless its CRD says otherwise.
 */

/** `group/Kind` ("" for the core group) of every cluster-scoped kind Kubernetes itself defines. */
const CLUSTER_SCOPED = new Set([
  '/Namespace', '/Node', '/PersistentVolume', '/ComponentStatus',
  'rbac.authorization.k8s.io/ClusterRole', 'rbac.authorization.k8s.io/ClusterRoleBinding',
  'apiextensions.k8s.io/CustomResourceDefinition',
  'apiregistration.k8s.io/APIService',
  'storage.k8s.io/StorageClass', 'storage.k8s.io/VolumeAttachment', 'storage.k8s.io/CSIDriver', 'storage.k8s.io/CSINode',
  'scheduling.k8s.io/PriorityClass',
  'node.k8s.io/RuntimeClass',
  'networking.k8s.io/IngressClass', 'networking.k8s.io/IPAddress', 'networking.k8s.io/ServiceCIDR',
  'admissionregistration.k8s.io/MutatingWebhookConfiguration', 'admissionregistration.k8s.io/ValidatingWebhookConfiguration',
  'admissionregistration.k8s.io/ValidatingAdmissionPolicy', 'admissionregistration.k8s.io/ValidatingAdmissionPolicyBinding',
  'admissionregistration.k8s.io/MutatingAdmissionPolicy', 'admissionregistration.k8s.io/MutatingAdmissionPolicyBinding',
  'certificates.k8s.io/CertificateSigningRequest', 'certificates.k8s.io/ClusterTrustBundle',
  'flowcontrol.apiserver.k8s.io/FlowSchema', 'flowcontrol.apiserver.k8s.io/PriorityLevelConfiguration',
  'policy/PodSecurityPolicy',
  'resource.k8s.io/DeviceClass', 'resource.k8s.io/ResourceSlice',
  'authentication.k8s.io/TokenReview', 'authentication.k8s.io/SelfSubjectReview',
  'authorization.k8s.io/SubjectAccessReview', 'authorization.k8s.io/SelfSubjectAccessReview', 'authorization.k8s.io/SelfSubjectRulesReview',
  // Operators' cluster-scoped kinds an application commonly ships without their CRD.
  'cert-manager.io/ClusterIssuer', 'kyverno.io/ClusterPolicy', 'external-secrets.io/ClusterSecretStore',
  'external-secrets.io/ClusterExternalSecret', 'gateway.networking.k8s.io/GatewayClass',
]);

/** The group of an `apiVersion` ("" for `v1`). */
export function apiGroup(apiVersion: string): string {
  const slash = apiVersion.indexOf('/');
  return slash < 0 ? '' : apiVersion.slice(0, slash);
}

export class NamespaceScope {
  readonly #clusterScoped = new Set(CLUSTER_SCOPED);

  /** A CustomResourceDefinition of the application: its kind is cluster-scoped when its scope says so. */
  addDefinition(group: string | undefined, kind: string | undefined, scope: string | undefined): void {
    if (group !== undefined && kind !== undefined && scope === 'Cluster') this.#clusterScoped.add(`${group}/${kind}`);
  }

  isNamespaced(apiVersion: string, kind: string): boolean {
    return !this.#clusterScoped.has(`${apiGroup(apiVersion)}/${kind}`);
  }
}
