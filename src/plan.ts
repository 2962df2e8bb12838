import pLimit from 'p-limit';
import { scanManifests, type ScanResult } from './app/scan.js';
import { readLicense } from './app/license.js';
import { refuseLicenseInManifests } from './app/leaks.js';
import {
  resolveImages, uniqueReferences, type ImageKind, type ImageSource, type Occurrence, type RegistryProbe, type ResolvedImage,
} from './app/resolve.js';
import { AirgapError, type ErrorCode } from './errors.js';
import { formatReference, isDigestOnly, type Reference } from './reference.js';
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

/**
 * A build-time warning or refusal found in the manifests (issue 10's `findings` on the scan
 * result), printed by plan as they are: what, where, and what to do.
 */
export interface Finding {
  severity: string;
  code: string;
  file: string;
  line: number;
  message: string;
  hint?: string;
}

/** Findings that stop a build; anything else (warning, info) is advice. */
export function isRefusal(f: Finding): boolean {
  return !['warning', 'warn', 'info', 'notice'].includes(f.severity.toLowerCase());
}

function findingsOf(scan: ScanResult): Finding[] {
  const list = (scan as { findings?: unknown }).findings;
  return Array.isArray(list) ? (list as Finding[]) : [];
}

export type DigestVerdict = 'tag' | 'tag+digest' | 'digest-only';

/** One image's outcome in a plan: every image gets one, whether or not others failed. */
export interface PlannedImage {
  ref: string;
  occurrences: Occurrence[];
  /** The limited-digest rule: by tag (ok), tag and digest (ok: pulled by digest, pushed by tag), digest only (refused). */
  digestRule: DigestVerdict;
  /** Where it is pulled from; online only (offline: only the vendor registry is known without asking). */
  kind?: ImageKind;
  pullFrom?: string;
  error?: { code: ErrorCode; message: string; hint?: string };
}

export interface PlanReport {
  appSlug: string;
  offline: boolean;
  images: PlannedImage[];
  findings: Finding[];
  /** Files under --manifests that were not read (and why), as the scan lists them. */
  notRead: ScanResult['notRead'];
}

export interface PlanReportOptions extends Omit<PlanOptions, 'registries'> {
  /** Absent: offline — the manifests alone, no request of any kind. */
  registries?: RegistryAccess;
}

/**
 * airgap plan: every image with file:line, the digest rule's verdict and (online) where it is
 * pulled from or why it cannot be; every finding of the scan. One image failing never hides another.
 */
export async function planReport(opts: PlanReportOptions): Promise<PlanReport> {
  const license = opts.licensePath ? await readLicense(opts.licensePath) : undefined;
  const scan = await scanManifests(opts.manifestsDir);
  // Before any network: the license never ships, whatever else is wrong.
  refuseLicenseInManifests(scan.files, license?.licenseId);
  const findings = findingsOf(scan);
  if (scan.images.length === 0 && findings.length === 0) {
    throw new AirgapError('E_NO_IMAGES', `no container images found in ${opts.manifestsDir}`,
      { hint: 'point --manifests at the rendered Kubernetes manifests of the application (*.yaml, *.yml, *.json)' });
  }
  const appSlug = license?.appSlug ?? scan.application?.name ?? 'app';
  const resolveOpts = {
    proxyHost: opts.proxyHost, replicatedRegistry: opts.replicatedRegistry, appSlug,
    ...(license ? { license: { licenseId: license.licenseId, appSlug: license.appSlug } } : {}),
  };
  const refs = uniqueReferences(scan.images.map((i) => ({ ref: i.ref, file: i.file, line: i.line })));
  const limit = pLimit(8);
  const images = await Promise.all(refs.map(({ ref, occurrences }) => limit(async (): Promise<PlannedImage> => {
    const digestRule: DigestVerdict = isDigestOnly(ref) ? 'digest-only' : ref.digest ? 'tag+digest' : 'tag';
    const base = { ref: formatReference(ref), occurrences, digestRule };
    const registries = opts.registries;
    if (!registries) {
      if (digestRule === 'digest-only') return { ...base, error: digestOnly(ref, occurrences) };
      return ref.registry === opts.replicatedRegistry ? { ...base, kind: 'vendor', pullFrom: `${ref.registry}/${ref.repository}` } : base;
    }
    try {
      const [r] = await resolveImages(occurrences.map((o) => ({ ref, ...o })), registries.probe, resolveOpts);
      return { ...base, kind: r!.kind, pullFrom: `${r!.source.registry}/${r!.source.repository}` };
    } catch (e) {
      if (!(e instanceof AirgapError)) throw e;
      return { ...base, error: { code: e.code, message: e.message, ...(e.hint ? { hint: e.hint } : {}) } };
    }
  })));
  return { appSlug, offline: !opts.registries, images, findings, notRead: scan.notRead };
}

function digestOnly(ref: Reference, occurrences: Occurrence[]): { code: ErrorCode; message: string; hint: string } {
  return {
    code: 'E_DIGEST_ONLY',
    message: `${formatReference(ref)} at ${occurrences.map((o) => `${o.file}:${o.line}`).join(', ')} is pinned by digest only, which an airgap install cannot push by tag`,
    hint: 'add a tag to the reference (repo:tag@sha256:…); online, plan names a tag that points at this digest today',
  };
}
