import type { License } from '../app/license.js';
import type { ConfigValue } from './config.js';
import type { LicenseFacts, LocalRegistry, RenderFacts } from './functions.js';
import type { ReleaseScanOptions } from './scan.js';

/** The facts of one rendering of a release, from what the command knows. */
export interface RenderInputs {
  mode: ReleaseScanOptions['mode'];
  license?: License;
  /** Application slug: the license's, else the bundle's or the release's. */
  appSlug?: string;
  proxyHost: string;
  replicatedRegistry: string;
  /** Kubernetes namespace of the install (default "default"). */
  namespace?: string;
  values?: Map<string, ConfigValue>;
  localRegistry?: LocalRegistry;
  proxyName?: (ref: string) => string | undefined;
  isAirgap?: boolean;
  versionLabel?: string;
  onConfig?: ReleaseScanOptions['onConfig'];
}

export function licenseFacts(license: License | undefined): LicenseFacts | undefined {
  return license === undefined ? undefined : { licenseId: license.licenseId, appSlug: license.appSlug, spec: license.spec ?? {} };
}

export function releaseScanOptions(i: RenderInputs): ReleaseScanOptions {
  const license = licenseFacts(i.license);
  const facts: Omit<RenderFacts, 'config'> = {
    appSlug: i.license?.appSlug ?? i.appSlug ?? 'app',
    namespace: i.namespace ?? 'default',
    isAirgap: i.isAirgap ?? true,
    proxyHost: i.proxyHost,
    replicatedRegistry: i.replicatedRegistry,
    version: i.versionLabel !== undefined ? { label: i.versionLabel } : {},
    env: { ...process.env },
    ...(license !== undefined ? { license } : {}),
    ...(i.localRegistry !== undefined ? { localRegistry: i.localRegistry } : {}),
    ...(i.proxyName !== undefined ? { proxyName: i.proxyName } : {}),
  };
  return {
    mode: i.mode, render: { facts, ...(i.values !== undefined ? { values: i.values } : {}) },
    ...(i.onConfig !== undefined ? { onConfig: i.onConfig } : {}),
  };
}
