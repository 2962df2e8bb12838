import { AirgapError } from '../errors.js';
import type { Credentials } from '../registry/credentials.js';

/**
 * The image pull secret the rewrite creates: a `kubernetes.io/dockerconfigjson` Secret named
 * `<app-slug>-registry`, one per namespace the application runs in, holding the customer
 * registry's credentials.
 */

/** File name of the secret manifest in `rendered/` and `midstream/`. */
export const PULL_SECRET_FILE = 'airgap-pull-secret.yaml';

export function pullSecretName(appSlug: string): string {
  return `${appSlug}-registry`;
}

/**
 * The `.dockerconfigjson` document: `{"auths":{"host":{"username","password","auth"}}}`, one entry
 * per host (online: the vendor proxy and the vendor registry share the license credentials).
 */
export function dockerConfigJson(host: string | string[], creds: Credentials): string {
  const auth = Buffer.from(`${creds.username}:${creds.password}`).toString('base64');
  const hosts = [...new Set(typeof host === 'string' ? [host] : host)];
  return JSON.stringify({ auths: Object.fromEntries(hosts.map((h) => [h, { username: creds.username, password: creds.password, auth }])) });
}

/** Valid DNS-1123 label: the only names Kubernetes accepts for a namespace. */
const NAMESPACE_RE = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

/**
 * The Secret manifests, one YAML document per namespace (sorted, deduplicated). JSON quoting
 * keeps every scalar safe in YAML whatever it holds.
 */
export function pullSecretManifests(opts: {
  appSlug: string;
  host: string | string[];
  credentials: Credentials;
  namespaces: string[];
}): string {
  const name = pullSecretName(opts.appSlug);
  const data = Buffer.from(dockerConfigJson(opts.host, opts.credentials)).toString('base64');
  const namespaces = [...new Set(opts.namespaces)].sort();
  for (const ns of namespaces) {
    if (!NAMESPACE_RE.test(ns) || ns.length > 63) {
      throw new AirgapError('E_MANIFESTS', `namespace ${JSON.stringify(ns)} is not a valid Kubernetes namespace name`,
        { hint: 'namespaces are lower-case letters, digits and "-", at most 63 characters' });
    }
  }
  return namespaces.map((ns) => [
    '# Created by airgap: lets pods pull from the customer registry.',
    'apiVersion: v1',
    'kind: Secret',
    'metadata:',
    `  name: ${JSON.stringify(name)}`,
    `  namespace: ${JSON.stringify(ns)}`,
    'type: kubernetes.io/dockerconfigjson',
    'data:',
    `  .dockerconfigjson: ${JSON.stringify(data)}`,
    '',
  ].join('\n')).join('---\n');
}
