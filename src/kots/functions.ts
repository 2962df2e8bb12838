import type { ConfigState } from './config.js';
import { dockerConfigJson } from '../app/pullsecret.js';
import { pullSecretName } from '../app/pullsecret.js';
import type { TemplateFunction } from './template.js';
import { staticFunctions } from './static.js';
import { sprigFunctions } from './sprig.js';

/**
 * KOTS's context functions (replicatedhq/kots pkg/template: config_context.go,
 * license_context.go, version_context.go, kurl_context.go) over one rendering's facts: the
 * config, the license (customer side only), the local registry `push` wrote to, the namespace.
 */

/** The customer registry, as push wrote to it (install/rewrite), or none (build, online). */
export interface LocalRegistry {
  host: string;
  namespace: string;
  /** The pushed name of a source reference (push's naming, --keep-path included). */
  imageName: (ref: string) => string;
  /** Credentials of the pull secret, when given: LocalRegistryImagePullSecret needs them. */
  username?: string;
  password?: string;
}

export interface LicenseFacts {
  licenseId: string;
  appSlug: string;
  /** The license's spec, as a plain object: fields and entitlements (spec.entitlements.<name>.value). */
  spec: Record<string, unknown>;
}

export interface RenderFacts {
  config: ConfigState;
  appSlug: string;
  /** Kubernetes namespace the app is installed into (Namespace). */
  namespace: string;
  isAirgap: boolean;
  localRegistry?: LocalRegistry;
  /** Without a local registry: the proxy name of a private image, undefined for a public one. */
  proxyName?: (ref: string) => string | undefined;
  proxyHost: string;
  replicatedRegistry: string;
  license?: LicenseFacts;
  version: { label?: string; channelName?: string; releaseNotes?: string; sequence?: number; cursor?: string; isRequired?: boolean };
  /** HTTP(S)_PROXY / NO_PROXY of the installing host (KOTS reads its own pod's environment). */
  env: Record<string, string | undefined>;
}

function str(fn: string, v: unknown, i = 1): string {
  if (typeof v !== 'string') throw new Error(`${fn}: argument ${i} must be a string, got ${v === undefined || v === null ? 'nothing' : typeof v}`);
  return v;
}

function arity(fn: string, args: unknown[], n: number): void {
  if (args.length !== n) throw new Error(`${fn} takes ${n} argument${n === 1 ? '' : 's'}, got ${args.length}`);
}

/** Named license fields (license_context.go); anything else is an entitlement. */
const LICENSE_FIELDS: Record<string, string> = {
  appSlug: 'appSlug', channelID: 'channelID', channelName: 'channelName', customerEmail: 'customerEmail',
  customerName: 'customerName', licenseSequence: 'licenseSequence', licenseType: 'licenseType',
  signature: 'signature', replicatedProxyDomain: 'replicatedProxyDomain',
  isAirgapSupported: 'isAirgapSupported', isGitOpsSupported: 'isGitOpsSupported',
  isIdentityServiceSupported: 'isIdentityServiceSupported', isSnapshotSupported: 'isSnapshotSupported',
  isSupportBundleUploadSupported: 'isSupportBundleUploadSupported', isSemverRequired: 'isSemverRequired',
  isDisasterRecoverySupported: 'isDisasterRecoverySupported', IsDisasterRecoverySupported: 'isDisasterRecoverySupported',
  isGeoaxisSupported: 'isGeoaxisSupported', isEmbeddedClusterDownloadEnabled: 'isEmbeddedClusterDownloadEnabled',
  isEmbeddedClusterMultiNodeEnabled: 'isEmbeddedClusterMultiNodeEnabled',
};

function goString(v: unknown): string {
  if (v === undefined || v === null) return '';
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v);
}

function licenseField(facts: RenderFacts, name: string): string {
  const license = facts.license;
  if (license === undefined) {
    throw new Error(`LicenseFieldValue "${name}" needs the customer's license: pass --license FILE`);
  }
  if (name === 'licenseID' || name === 'licenseId') return license.licenseId;
  if (name === 'endpoint') return goString(license.spec.endpoint) || 'https://replicated.app';
  const field = LICENSE_FIELDS[name];
  if (field !== undefined) {
    const v = license.spec[field];
    return typeof v === 'boolean' ? String(v) : v === undefined ? (field.startsWith('is') ? 'false' : '') : goString(v);
  }
  const entitlements = license.spec.entitlements;
  const ent = entitlements !== null && typeof entitlements === 'object' ? (entitlements as Record<string, unknown>)[name] : undefined;
  if (ent === undefined) return '';
  return goString(ent !== null && typeof ent === 'object' && 'value' in ent ? (ent as { value: unknown }).value : ent);
}

/** Every function a KOTS release may call, for one rendering. */
export function kotsFunctions(facts: RenderFacts): Map<string, TemplateFunction> {
  const fns = new Map<string, TemplateFunction>([...sprigFunctions(), ...staticFunctions()]);
  const cfg = facts.config;
  const reg = facts.localRegistry;
  const def = (name: string, n: number, fn: (...a: unknown[]) => unknown): void => {
    fns.set(name, (...args: unknown[]) => {
      arity(name, args, n);
      return fn(...args);
    });
  };
  // Config context.
  def('ConfigOption', 1, (n) => cfg.option(str('ConfigOption', n)));
  def('ConfigOptionName', 1, (n) => str('ConfigOptionName', n));
  def('ConfigOptionData', 1, (n) => Buffer.from(cfg.option(str('ConfigOptionData', n)), 'base64').toString('utf8'));
  def('ConfigOptionFilename', 1, (n) => cfg.filename(str('ConfigOptionFilename', n)));
  def('ConfigOptionEquals', 2, (n, v) => cfg.option(str('ConfigOptionEquals', n)) === str('ConfigOptionEquals', v, 2));
  def('ConfigOptionNotEquals', 2, (n, v) => cfg.option(str('ConfigOptionNotEquals', n)) !== str('ConfigOptionNotEquals', v, 2));
  // KOTS answers "" whatever the item (config_context.go).
  def('ConfigOptionIndex', 1, (n) => { str('ConfigOptionIndex', n); return ''; });
  def('HasLocalRegistry', 0, () => reg !== undefined);
  def('LocalRegistryHost', 0, () => reg?.host ?? '');
  def('LocalRegistryNamespace', 0, () => reg?.namespace ?? '');
  def('LocalRegistryAddress', 0, () => (reg === undefined ? '' : reg.namespace === '' ? reg.host : `${reg.host}/${reg.namespace}`));
  def('LocalImageName', 1, (r) => {
    const ref = str('LocalImageName', r);
    if (reg !== undefined) return reg.imageName(ref);
    return facts.proxyName?.(ref) ?? ref;
  });
  def('ImagePullSecretName', 0, () => pullSecretName(facts.appSlug));
  def('LocalRegistryImagePullSecret', 0, () => {
    if (reg !== undefined) {
      if (reg.username === undefined || reg.password === undefined) {
        throw new Error('LocalRegistryImagePullSecret needs the customer registry credentials: pass --username and --password or --password-stdin');
      }
      return Buffer.from(dockerConfigJson(reg.host, { username: reg.username, password: reg.password })).toString('base64');
    }
    if (facts.license === undefined) throw new Error('LocalRegistryImagePullSecret needs the customer\'s license: pass --license FILE');
    const creds = { username: 'LICENSE_ID', password: facts.license.licenseId };
    return Buffer.from(dockerConfigJson([facts.proxyHost, facts.replicatedRegistry], creds)).toString('base64');
  });
  // License context.
  def('LicenseFieldValue', 1, (n) => licenseField(facts, str('LicenseFieldValue', n)));
  def('LicenseDockerCfg', 0, () => {
    if (facts.license === undefined) throw new Error('LicenseDockerCfg needs the customer\'s license: pass --license FILE');
    const auth = Buffer.from(`LICENSE_ID:${facts.license.licenseId}`).toString('base64');
    const cfg = { auths: { [facts.proxyHost]: { auth }, [facts.replicatedRegistry]: { auth } } };
    return Buffer.from(JSON.stringify(cfg)).toString('base64');
  });
  // Version context.
  const v = facts.version;
  def('VersionLabel', 0, () => v.label ?? '');
  def('ChannelName', 0, () => v.channelName ?? (facts.license ? goString(facts.license.spec.channelName) : ''));
  def('ReleaseNotes', 0, () => v.releaseNotes ?? '');
  def('Cursor', 0, () => v.cursor ?? '');
  def('Sequence', 0, () => BigInt(v.sequence ?? 0));
  def('IsRequired', 0, () => v.isRequired ?? false);
  def('IsAirgap', 0, () => facts.isAirgap);
  def('ReplicatedRegistryDomain', 0, () => facts.replicatedRegistry);
  def('ReplicatedProxyDomain', 0, () => facts.proxyHost);
  // Cluster facts KOTS reads from the cluster or its own pod; offline, the install's own.
  def('Namespace', 0, () => facts.namespace);
  def('IsKurl', 0, () => false);
  def('Distribution', 0, () => '');
  def('HTTPProxy', 0, () => facts.env.HTTP_PROXY ?? facts.env.http_proxy ?? '');
  def('HTTPSProxy', 0, () => facts.env.HTTPS_PROXY ?? facts.env.https_proxy ?? '');
  def('NoProxy', 0, () => facts.env.NO_PROXY ?? facts.env.no_proxy ?? '');
  // kURL's installer values (kurl_context.go): KOTS answers these zero values on a cluster kURL
  // did not install, which is what IsKurl says of the customer's.
  def('KurlBool', 1, (p) => { str('KurlBool', p); return false; });
  def('KurlInt', 1, (p) => { str('KurlInt', p); return 0n; });
  def('KurlString', 1, (p) => { str('KurlString', p); return ''; });
  def('KurlOption', 1, (p) => { str('KurlOption', p); return ''; });
  def('KurlAll', 0, () => '');
  // The identity service (identity_context.go), configured only through KOTS's admin console on
  // kURL: KOTS's answers without that configuration; its name and port are fixed.
  def('IdentityServiceEnabled', 0, () => false);
  def('IdentityServiceClientID', 0, () => '');
  def('IdentityServiceClientSecret', 0, () => '');
  def('IdentityServiceRoles', 0, () => new Map());
  def('IdentityServiceName', 0, () => `${facts.appSlug}-dex`);
  def('IdentityServicePort', 0, () => '5556');
  // KOTS's functions that ask the running cluster or KOTS's own state: defined, as in KOTS, so a
  // branch that is not taken renders; one that is taken says why it cannot be answered here.
  for (const [name, why] of UNANSWERABLE) {
    fns.set(name, () => {
      throw new Error(`it ${why}; airgap renders the release before anything is applied, with no cluster and no KOTS to ask: ask the vendor for a release whose templates do not need it on this path`);
    });
  }
  return fns;
}

/** What each function KOTS has and airgap cannot answer would need. */
const UNANSWERABLE: [string, string][] = [
  ['Lookup', 'reads objects of the running cluster'],
  ['NodeCount', 'counts the nodes of the running cluster'],
  ['KubernetesVersion', 'asks the running cluster for its version'],
  ['KubernetesMajorVersion', 'asks the running cluster for its version'],
  ['KubernetesMinorVersion', 'asks the running cluster for its version'],
  ['KubeSeal', 'encrypts with the sealed-secrets controller\'s certificate from the running cluster'],
  ['PrivateCACert', 'names the ConfigMap of private CAs the KOTS admin console was given'],
  ['KotsVersion', 'is the version of the KOTS admin console doing the install'],
  ['TLSCert', 'makes a certificate that KOTS keeps for later renders'],
  ['TLSKey', 'makes a key that KOTS keeps for later renders'],
  ['TLSCACert', 'makes a CA that KOTS keeps for later renders'],
  ['TLSCertFromCA', 'makes a certificate that KOTS keeps for later renders'],
  ['TLSKeyFromCA', 'makes a key that KOTS keeps for later renders'],
];
