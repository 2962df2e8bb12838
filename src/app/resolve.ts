import pLimit from 'p-limit';
import { DEFAULT_SMALL_REQUESTS } from '../concurrency.js';
import { AirgapError } from '../errors.js';
import { type Reference, formatReference, isDigestOnly, nameOf } from '../reference.js';
import type { Credentials } from '../registry/credentials.js';
import type { ProbeResult } from '../registry/client.js';
import type { Resolved } from '../store.js';

/**
 * The vendor's rules for where each image is pulled from (DESIGN.md "The rules we implement"):
 * - on the vendor registry → pulled as is, with the license credentials;
 * - readable anonymously → public, pulled directly;
 * - refused anonymously (401/403) → private, pulled through the proxy with the license credentials,
 *   at <proxy>/proxy/<app-slug>/<original-host>/<original-repo>;
 * - already written as <proxy>/proxy/… → private, pulled as written with the license credentials.
 * And the limited-digest rule: a reference pinned by digest only is refused before any download.
 */

export type ImageKind = 'public' | 'private' | 'vendor';

export interface Occurrence {
  file: string;
  line: number;
}

export interface ImageSource {
  registry: string;
  /** Raw repository path on `registry`; for the proxy it holds the upstream host (maybe with a port). */
  repository: string;
  /** License credentials for the proxy and the vendor registry; undefined = the user's own (docker config). */
  credentials?: Credentials;
}

export interface ResolvedImage {
  /** Fully qualified reference as written in the manifests. */
  ref: Reference;
  kind: ImageKind;
  source: ImageSource;
  occurrences: Occurrence[];
  /** A public image's root manifest as the anonymous check read it (build: keepManifests). */
  manifest?: Resolved;
}

/** What resolution needs from the network: an anonymous read check, and tag lookup for digests. */
export interface RegistryProbe {
  probe(registry: string, repository: string, reference: string): Promise<ProbeResult>;
  /**
   * Optional (build): the same check, keeping the manifest when it is readable, so that the build
   * does not ask for it again; `manifest` may be absent even then (the caller GETs it itself).
   */
  probeManifest?(registry: string, repository: string, reference: string): Promise<{ result: ProbeResult; manifest?: Resolved }>;
  /** A tag of `repository` whose manifest digest is `digest` today, when the registry can tell. */
  tagFor(registry: string, repository: string, digest: string): Promise<string | undefined>;
}

export interface ResolveOptions {
  proxyHost: string;
  replicatedRegistry: string;
  /** Present for build; plan may run without a license (then credentials are absent). */
  license?: { licenseId: string; appSlug: string };
  /** App slug when no license is given (plan): from the KOTS Application, else "app". */
  appSlug: string;
  concurrency?: number;
  /** Online installs pull by digest too: the limited-digest rule is an airgap rule (`airgap online`). */
  allowDigestOnly?: boolean;
  /** build: check with a GET and keep the manifest read (probeManifest); plan keeps the quota-free HEAD. */
  keepManifests?: boolean;
}

export interface FoundRef {
  ref: Reference;
  file: string;
  line: number;
}

export function proxyRepository(appSlug: string, ref: Reference): string {
  return `proxy/${appSlug}/${ref.registry}/${ref.repository}`;
}

/** Groups occurrences by reference, preserving first-seen order. */
export function uniqueReferences(found: FoundRef[]): { ref: Reference; occurrences: Occurrence[] }[] {
  const byKey = new Map<string, { ref: Reference; occurrences: Occurrence[] }>();
  for (const f of found) {
    const key = formatReference(f.ref);
    const entry = byKey.get(key) ?? { ref: f.ref, occurrences: [] };
    entry.occurrences.push({ file: f.file, line: f.line });
    byKey.set(key, entry);
  }
  return [...byKey.values()];
}

function where(o: Occurrence[]): string {
  return o.map((x) => `${x.file}:${x.line}`).join(', ');
}

/**
 * Refuses every digest-only reference at once, naming each with file:line and, when its registry
 * can tell, a tag that points at the same digest today.
 */
export async function checkDigestRule(
  refs: { ref: Reference; occurrences: Occurrence[] }[],
  probe: RegistryProbe,
  sourceOf: (ref: Reference) => ImageSource | undefined,
): Promise<void> {
  const offenders = refs.filter((r) => isDigestOnly(r.ref));
  if (offenders.length === 0) return;
  const lines = await Promise.all(offenders.map(async (o) => {
    let suggestion = '';
    const src = sourceOf(o.ref);
    if (src) {
      const tag = await probe.tagFor(src.registry, src.repository, o.ref.digest!).catch(() => undefined);
      if (tag !== undefined) suggestion = ` (tag "${tag}" points at this digest today: write ${nameOf(o.ref)}:${tag}@${o.ref.digest})`;
    }
    return `${formatReference(o.ref)} at ${where(o.occurrences)}${suggestion}`;
  }));
  throw new AirgapError('E_DIGEST_ONLY',
    `${offenders.length} image reference(s) pinned by digest only, which an airgap install cannot push by tag: ${lines.join('; ')}`,
    { hint: 'add a tag to each reference (repo:tag@sha256:…) so it can be pushed and rewritten by tag' });
}

export async function resolveImages(found: FoundRef[], probe: RegistryProbe, opts: ResolveOptions): Promise<ResolvedImage[]> {
  const refs = uniqueReferences(found);
  const licenseCreds = opts.license ? { username: opts.license.licenseId, password: opts.license.licenseId } : undefined;
  const slug = opts.license?.appSlug ?? opts.appSlug;
  const vendorSource = (ref: Reference): ImageSource => ({
    registry: ref.registry, repository: ref.repository, ...(licenseCreds ? { credentials: licenseCreds } : {}),
  });
  const proxySource = (ref: Reference): ImageSource => ({
    registry: opts.proxyHost, repository: proxyRepository(slug, ref), ...(licenseCreds ? { credentials: licenseCreds } : {}),
  });
  const isVendor = (ref: Reference) => ref.registry === opts.replicatedRegistry;
  // Already written through the proxy (<proxy>/proxy/<slug>/…): pulled as written, never proxied again.
  const isProxied = (ref: Reference) => ref.registry.toLowerCase() === opts.proxyHost.toLowerCase() && ref.repository.startsWith('proxy/');

  // The digest rule first: nothing is probed or downloaded for an app that will be refused.
  if (!opts.allowDigestOnly) await checkDigestRule(refs, probe, (ref) => (isVendor(ref) || isProxied(ref) ? vendorSource(ref) : { registry: ref.registry, repository: ref.repository }));

  const limit = pLimit(opts.concurrency ?? DEFAULT_SMALL_REQUESTS);
  const missing: string[] = [];
  const resolved = await Promise.all(refs.map(({ ref, occurrences }) => limit(async (): Promise<ResolvedImage | undefined> => {
    if (isVendor(ref)) return { ref, kind: 'vendor', source: vendorSource(ref), occurrences };
    if (isProxied(ref)) return { ref, kind: 'private', source: vendorSource(ref), occurrences };
    const reference = ref.digest ?? ref.tag ?? 'latest';
    const answer = await (opts.keepManifests && probe.probeManifest
      ? probe.probeManifest(ref.registry, ref.repository, reference)
      : probe.probe(ref.registry, ref.repository, reference).then((result) => ({ result, manifest: undefined }))).catch((e: unknown) => {
      throw withWhere(e, `${formatReference(ref)} (${where(occurrences)})`);
    });
    const seen = answer.result;
    if (seen === 'readable') {
      return { ref, kind: 'public', source: { registry: ref.registry, repository: ref.repository }, occurrences,
        ...(answer.manifest ? { manifest: answer.manifest } : {}) };
    }
    // A 404 is a missing tag or repository (a typo far likelier than a licence matter): the proxy
    // would only turn it into an error about the proxy.
    if (seen === 'not-found') {
      missing.push(`${formatReference(ref)} at ${where(occurrences)}`);
      return undefined;
    }
    // 401/403 (Docker Hub also answers 401 for a repository that does not exist): the proxy decides.
    return { ref, kind: 'private', source: proxySource(ref), occurrences };
  })));
  if (missing.length > 0) {
    throw new AirgapError('E_NOT_FOUND',
      `${missing.length} image(s) not found: ${missing.join('; ')} (the registry answered 404 to an anonymous manifest request)`,
      { hint: 'check the image name and tag in the manifests; a tag that was never pushed or was deleted cannot be bundled' });
  }
  return resolved.filter((r): r is ResolvedImage => r !== undefined);
}

function withWhere(e: unknown, what: string): unknown {
  if (e instanceof AirgapError) return new AirgapError(e.code, `${what}: ${e.message}`, { ...(e.hint ? { hint: e.hint } : {}), cause: e });
  return e;
}
