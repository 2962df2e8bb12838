import { scanManifests, type ScanResult } from './app/scan.js';
import { readLicense } from './app/license.js';
import { refuseLicenseInManifests } from './app/leaks.js';
import { resolveImages, type RegistryProbe, type ResolvedImage, type ImageSource } from './app/resolve.js';
import { refuseErrors } from './app/findings.js';
import { rehearseRewrite } from './app/rewrite.js';
import { AirgapError } from './errors.js';
import type { SourceStore, TargetStore } from './store.js';

/** How the phases reach registries (src/registry/access.ts builds the real one). */
export interface RegistryAccess {
  /** A store for one repository, with the source's credentials or the user's own (flags, docker config). */
  open(source: ImageSource): SourceStore & TargetStore;
  probe: RegistryProbe;
}

export interface PlanOptions {
  manifestsDir: string;
  licensePath?: string;
  proxyHost: string;
  replicatedRegistry: string;
  registries: RegistryAccess;
  /**
   * false: a manifests error (a refusal in scan.findings) returns the plan without resolving
   * anything, so that `plan` can list every finding; build keeps the default and is refused.
   */
  refuse?: boolean;
}

export interface Plan {
  scan: ScanResult;
  appSlug: string;
  license?: { licenseId: string; appSlug: string };
  images: ResolvedImage[];
}

/** Reads the app and the license and decides where every image comes from. Downloads nothing. */
export async function makePlan(opts: PlanOptions): Promise<Plan> {
  const license = opts.licensePath ? await readLicense(opts.licensePath) : undefined;
  const scan = await scanManifests(opts.manifestsDir);
  // Before any network: the license never ships, whatever else is wrong.
  refuseLicenseInManifests(scan.files, license?.licenseId);
  const appSlug = license?.appSlug ?? scan.application?.name ?? 'app';
  const licensed = license ? { license: { licenseId: license.licenseId, appSlug: license.appSlug } } : {};
  if (scan.findings.some((f) => f.severity === 'error')) {
    if (opts.refuse !== false) refuseErrors(scan.findings);
    return { scan, appSlug, ...licensed, images: [] };
  }
  if (scan.images.length === 0) {
    const seen = scan.findings.find((f) => f.code === 'undeclared-image');
    throw new AirgapError('E_NO_IMAGES', `no container images found in ${opts.manifestsDir}`, {
      hint: seen === undefined
        ? 'point --manifests at the rendered Kubernetes manifests of the application (*.yaml, *.yml, *.json)'
        : `${seen.file}:${seen.line}: ${seen.message}; ${seen.hint}`,
    });
  }
  const images = await resolveImages(
    scan.images.map((i) => ({ ref: i.ref, file: i.file, line: i.line })),
    opts.registries.probe,
    {
      proxyHost: opts.proxyHost,
      replicatedRegistry: opts.replicatedRegistry,
      appSlug,
      ...(license ? { license: { licenseId: license.licenseId, appSlug: license.appSlug } } : {}),
    },
  );
  rehearseRewrite(scan);
  return { scan, appSlug, ...licensed, images };
}
