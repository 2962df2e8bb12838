import { scanManifests, type ScanResult } from './app/scan.js';
import { readLicense } from './app/license.js';
import { refuseLicenseInManifests } from './app/leaks.js';
import { resolveImages, type RegistryProbe, type ResolvedImage, type ImageSource } from './app/resolve.js';
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
  if (scan.images.length === 0) {
    throw new AirgapError('E_NO_IMAGES', `no container images found in ${opts.manifestsDir}`,
      { hint: 'point --manifests at the rendered Kubernetes manifests of the application (*.yaml, *.yml)' });
  }
  const appSlug = license?.appSlug ?? scan.application?.name ?? 'app';
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
  return { scan, appSlug, ...(license ? { license: { licenseId: license.licenseId, appSlug: license.appSlug } } : {}), images };
}
