import pLimit from 'p-limit';
import { DEFAULT_SMALL_REQUESTS } from './concurrency.js';
import { scanManifests, type ScanResult } from './app/scan.js';
import { readLicense } from './app/license.js';
import { refuseLicenseInManifests } from './app/leaks.js';
import {
  resolveImages, uniqueReferences, type ImageKind, type ImageSource, type Occurrence, type RegistryProbe, type ResolvedImage,
} from './app/resolve.js';
import { AirgapError, type ErrorCode } from './errors.js';
import { formatReference, isDigestOnly, type Reference } from './reference.js';
import { refuseErrors, type Finding } from './app/findings.js';
export type { Finding } from './app/findings.js';
import { rehearseRetarget } from './app/retarget.js';
import type { SourceStore, TargetStore } from './store.js';
import { releaseScanOptions, type RenderInputs } from './kots/facts.js';
import type { License } from './app/license.js';

/** How plan, build and online render a KOTS release. */
function kotsScan(opts: Omit<PlanOptions, 'registries'>, license: License | undefined): { kots: ReturnType<typeof releaseScanOptions> } {
  return {
    kots: releaseScanOptions({
      mode: 'discover', ...(opts.release !== undefined ? { versionLabel: opts.release } : {}), ...opts.kots,
      ...(license !== undefined ? { license } : {}), proxyHost: opts.proxyHost, replicatedRegistry: opts.replicatedRegistry,
    }),
  };
}

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
  /** `airgap online`: references pinned by digest only are fine (no push by tag follows). */
  allowDigestOnly?: boolean;
  /**
   * false: a manifests error (a refusal in scan.findings) returns the plan without resolving
   * anything, so that `plan` can list every finding; build keeps the default and is refused.
   */
  refuse?: boolean;
  /** build: keep each public image's manifest as the anonymous check read it (ResolvedImage.manifest). */
  keepManifests?: boolean;
  /**
   * A KOTS release: how it is rendered. Absent: discovered as build does (the Config's defaults,
   * every branch); `online` renders it for the customer (their values, their namespace).
   */
  kots?: Omit<RenderInputs, 'license' | 'proxyHost' | 'replicatedRegistry'>;
  /** The release label (--release): VersionLabel in the templates. */
  release?: string;
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
  const scan = await scanManifests(opts.manifestsDir, kotsScan(opts, license));
  // Before any network: the license never ships, whatever else is wrong.
  refuseLicenseInManifests(scan.carried ?? scan.files, license?.licenseId);
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
      ...(opts.allowDigestOnly ? { allowDigestOnly: true } : {}),
      ...(opts.keepManifests ? { keepManifests: true } : {}),
      ...(license ? { license: { licenseId: license.licenseId, appSlug: license.appSlug } } : {}),
    },
  );
  // Online (digest references allowed) rewrites by renaming, not by tag: rehearse that form.
  rehearseRetarget(scan, opts.allowDigestOnly ? 'rename' : 'by-tag');
  return { scan, appSlug, ...licensed, images };
}

/** Findings that stop a build (the scan's errors); warnings are advice. */
export function isRefusal(f: Finding): boolean {
  return f.severity === 'error';
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
  const scan = await scanManifests(opts.manifestsDir, kotsScan(opts, license));
  // Before any network: the license never ships, whatever else is wrong.
  refuseLicenseInManifests(scan.carried ?? scan.files, license?.licenseId);
  const findings = scan.findings;
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
  // Probes are small requests: as many at once as the copy engine's small requests (src/concurrency.ts).
  const limit = pLimit(DEFAULT_SMALL_REQUESTS);
  const images = await Promise.all(refs.map(({ ref, occurrences }) => limit(async (): Promise<PlannedImage> => {
    const digestRule: DigestVerdict = isDigestOnly(ref) ? 'digest-only' : ref.digest ? 'tag+digest' : 'tag';
    const base = { ref: formatReference(ref), occurrences, digestRule };
    // A refused app is not resolved (build would write nothing): offline verdicts only.
    const registries = findings.some(isRefusal) ? undefined : opts.registries;
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
  // What would make the customer's rewrite fail is refused here too, as build does.
  // (Only when every image passed: a refused reference would just fail the rehearsal again.)
  if (opts.registries && !findings.some(isRefusal) && images.every((i) => !i.error)) rehearseRetarget(scan);
  return { appSlug, offline: !opts.registries, images, findings, notRead: scan.notRead };
}

function digestOnly(ref: Reference, occurrences: Occurrence[]): { code: ErrorCode; message: string; hint: string } {
  return {
    code: 'E_DIGEST_ONLY',
    message: `${formatReference(ref)} at ${occurrences.map((o) => `${o.file}:${o.line}`).join(', ')} is pinned by digest only, which an airgap install cannot push by tag`,
    hint: 'add a tag to the reference (repo:tag@sha256:…); online, plan names a tag that points at this digest today',
  };
}
