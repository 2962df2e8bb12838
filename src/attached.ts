import type { BundleSource as BundleReader } from './bundle/source.js';
import { flatten, loadGraph, type Copier, type GraphNode } from './copy.js';
import { mergeCosignTag } from './cosigntag.js';
import { AirgapError, isAirgapError } from './errors.js';
import { digestHex, type Descriptor } from './oci/descriptor.js';
import { parseManifest } from './oci/manifest.js';
import { MediaType, isIndexType, isManifestType } from './oci/mediatypes.js';
import { sha256Digest } from './oci/verify.js';
import type { FetchOptions, SourceStore, TargetStore } from './store.js';

/**
 * Signatures, attestations and SBOMs published next to an image ("attached" to one of its
 * digests), found the two ways registries hold them:
 *  - the cosign tag scheme: `sha256-<hex>.sig`, `.att`, `.sbom` in the image's repository;
 *  - OCI 1.1 referrers: manifests whose `subject` is the digest, listed by the referrers API, or
 *    by the `sha256-<hex>` tag (an index of them) where the registry has no such API.
 * They are carried byte for byte, so a signature made upstream verifies in the customer registry.
 */

export type AttachedKind = 'signature' | 'attestation' | 'sbom' | 'referrer';

const COSIGN_SUFFIXES: [string, AttachedKind][] = [['sig', 'signature'], ['att', 'attestation'], ['sbom', 'sbom']];

export interface Attached {
  /** The digest (one of the image's manifests) it belongs to. */
  subject: string;
  kind: AttachedKind;
  /** The tag it is published under (cosign scheme); undefined for an OCI referrer. */
  tag?: string;
  graph: GraphNode;
}

export function cosignTag(subject: string, suffix: string): string {
  return `sha256-${digestHex(subject)}.${suffix}`;
}

/** The OCI 1.1 fall-back tag: an index listing the referrers of `subject`. */
export function referrersTag(subject: string): string {
  return `sha256-${digestHex(subject)}`;
}

/** What a cosign tag holds, from its suffix; undefined for any other tag. */
export function kindOfTag(tag: string): AttachedKind | undefined {
  const m = /^sha256-[a-f0-9]{64}\.([a-z]+)$/.exec(tag);
  return m ? COSIGN_SUFFIXES.find(([s]) => s === m[1])?.[1] : undefined;
}

/**
 * Everything published next to the manifests of one image graph in `src`. None found is normal;
 * a registry that fails to answer is an error (carrying an image without the signature a
 * customer's policy demands would only fail later, at the customer).
 */
export async function discoverAttached(src: SourceStore, graph: GraphNode, what: string, signal?: AbortSignal): Promise<Attached[]> {
  const opts: FetchOptions = signal ? { signal } : {};
  const subjects = flatten([graph]).filter((n) => n.bytes !== undefined).map((n) => n.descriptor.digest);
  const found: Attached[] = [];
  const seen = new Set<string>();
  const add = async (subject: string, kind: AttachedKind, desc: Descriptor, tag?: string): Promise<void> => {
    const key = `${subject} ${tag ?? ''} ${desc.digest}`;
    if (seen.has(key) || (!isIndexType(desc.mediaType) && !isManifestType(desc.mediaType))) return;
    seen.add(key);
    const label = `${what}: ${tag ?? `referrer ${desc.digest}`}`;
    const root = await src.resolve(desc.digest, opts);
    const g = await loadGraph(src, root, label, signal);
    // A stale entry of a fall-back index, or a referrer of something else: not this digest's.
    if (kind === 'referrer' && g.manifest?.subject?.digest !== subject) return;
    found.push({ subject, kind, ...(tag ? { tag } : {}), graph: g });
  };
  try {
    // The repository's tags in one request (once per repository): a tag that is not listed is not
    // asked about. Where the registry will not list them, a HEAD per tag, mostly answered 404.
    // Asked alongside the referrers API (each lookup below waits for it, so a failure is seen there).
    const tags = src.tags ? src.tags(opts) : Promise.resolve(undefined);
    tags.catch(() => undefined);
    const peek = async (tag: string): Promise<Descriptor | undefined> => {
      const listed = await tags;
      return (listed && !listed.has(tag)) || !src.peek ? undefined : src.peek(tag, opts);
    };
    // Every lookup of every subject at once.
    await Promise.all(subjects.flatMap((subject) => [
      ...COSIGN_SUFFIXES.map(async ([suffix, kind]) => {
        const tag = cosignTag(subject, suffix);
        const desc = await peek(tag);
        if (desc) await add(subject, kind, desc, tag);
      }),
      (async () => {
        for (const desc of await referrersOf(src, subject, peek, opts)) await add(subject, 'referrer', desc);
      })(),
    ]));
  } catch (e) {
    if (!isAirgapError(e) || e.code === 'E_INTERRUPTED') throw e;
    throw new AirgapError(e.code, `${what}: looking for its signatures, attestations and SBOMs: ${e.message}`,
      { hint: `${e.hint ? `${e.hint}; ` : ''}or build with --no-signatures to carry the images without them`, cause: e });
  }
  return found.sort((a, b) => (a.subject + (a.tag ?? a.graph.descriptor.digest) < b.subject + (b.tag ?? b.graph.descriptor.digest) ? -1 : 1));
}

/** Referrers through the API, else the fall-back tag's index, else none. */
async function referrersOf(src: SourceStore, subject: string, peek: (tag: string) => Promise<Descriptor | undefined>,
  opts: FetchOptions): Promise<Descriptor[]> {
  const listed = src.referrers ? await src.referrers(subject, opts) : undefined;
  if (listed) return listed;
  const tagged = await peek(referrersTag(subject));
  if (!tagged || !isIndexType(tagged.mediaType)) return [];
  const { bytes } = await src.resolve(tagged.digest, opts);
  const index = parseManifest(bytes, tagged.mediaType, `referrers index ${referrersTag(subject)}`);
  return index.kind === 'index' ? index.manifests : [];
}

/** The descriptor of a referrer in a referrers index (OCI distribution spec: artifactType, annotations). */
export function referrerDescriptor(node: GraphNode): Descriptor {
  const body = JSON.parse(Buffer.from(node.bytes!).toString('utf8')) as {
    artifactType?: unknown; config?: { mediaType?: unknown }; annotations?: unknown;
  };
  const artifactType = typeof body.artifactType === 'string' ? body.artifactType
    : typeof body.config?.mediaType === 'string' ? body.config.mediaType : undefined;
  const annotations = typeof body.annotations === 'object' && body.annotations !== null ? body.annotations as Record<string, string> : undefined;
  return {
    mediaType: node.descriptor.mediaType, digest: node.descriptor.digest, size: node.descriptor.size,
    ...(artifactType ? { artifactType } : {}), ...(annotations ? { annotations } : {}),
  };
}

/**
 * After referrers of `subject` are pushed into `dst`: a registry with the referrers API lists
 * them by itself; one without it (distribution 2.x) needs the `sha256-<hex>` tag to name an
 * index of them, which is read, merged and written back (never dropping entries already there).
 * Returns whether the tag was written.
 */
export async function publishReferrers(dst: SourceStore & TargetStore, subject: string, referrers: Descriptor[],
  opts: FetchOptions = {}): Promise<boolean> {
  if (referrers.length === 0) return false;
  if (dst.referrers && (await dst.referrers(subject, opts)) !== undefined) return false;
  const tag = referrersTag(subject);
  let manifests: unknown[] = [];
  const current = dst.peek ? await dst.peek(tag, opts) : undefined;
  if (current && isIndexType(current.mediaType)) {
    const body = JSON.parse(Buffer.from((await dst.resolve(current.digest, opts)).bytes).toString('utf8')) as { manifests?: unknown };
    if (Array.isArray(body.manifests)) manifests = body.manifests;
  }
  const held = new Set(manifests.map((m) => (m as { digest?: unknown }).digest));
  const added = referrers.filter((r) => !held.has(r.digest));
  if (added.length === 0) return false;
  const bytes = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MediaType.OciIndex, manifests: [...manifests, ...added] }));
  const desc: Descriptor = { mediaType: MediaType.OciIndex, digest: sha256Digest(bytes), size: bytes.length };
  await dst.tag(desc, bytes, tag, opts);
  return true;
}

/** A signature, attestation, SBOM or referrer read from a bundle, ready to push. */
export interface AttachedGraph {
  kind: string;
  subject: string;
  tag?: string;
  graph: GraphNode;
}

/**
 * For each image (by reference), what the bundle attaches to one of its manifests. The reader has
 * refused an entry whose tag is not its subject's `sha256-<hex>.sig|.att|.sbom` (bundle/rules.ts).
 */
export async function loadAttached(reader: BundleReader, images: { ref: string }[], graphs: Map<string, GraphNode>,
  signal?: AbortSignal): Promise<Map<string, AttachedGraph[]>> {
  const out = new Map<string, AttachedGraph[]>();
  const entries = reader.attached();
  for (const img of images) {
    const digests = new Set(flatten([graphs.get(img.ref)!]).filter((n) => n.bytes !== undefined).map((n) => n.descriptor.digest));
    const list: AttachedGraph[] = [];
    for (const a of entries.filter((x) => digests.has(x.subject))) {
      const root = await reader.resolve(a.descriptor.digest);
      list.push({ kind: a.kind, subject: a.subject, ...(a.tag ? { tag: a.tag } : {}),
        graph: await loadGraph(reader, root, `${img.ref}: ${a.tag ?? `${a.kind} ${a.descriptor.digest}`}`, signal) });
    }
    out.set(img.ref, list);
  }
  return out;
}

export interface PushedAttached {
  target: string; kind: string; tag?: string; digest: string; subject: string;
  /**
   * The tag already named other content (the customer's own signatures): `contains` (it holds the
   * bundle's layers: untouched), `merged` (the bundle's appended to theirs) or `left` (not
   * mergeable: untouched, with `warning`). Absent when the bundle's manifest was written as is.
   */
  existing?: 'contains' | 'merged' | 'left';
  warning?: string;
}

/**
 * After an image is pushed and tagged: what is attached to it goes into the same repository
 * (the copier's target) under the tag names it had upstream; referrers are pushed by digest and
 * then listed (publishReferrers). `repository` is `host/repo` of that target, for the summary.
 */
export async function pushAttached(copier: Copier, src: SourceStore, list: AttachedGraph[], image: string, repository: string,
  signal?: AbortSignal): Promise<PushedAttached[]> {
  const referrers = new Map<string, Descriptor[]>();
  const out: PushedAttached[] = [];
  const store = copier.target as SourceStore & TargetStore;
  const opts = signal ? { signal } : {};
  for (const a of list) {
    // A cosign tag that names other content is the customer's: merged into, never replaced (cosigntag.ts).
    const now = a.tag && store.taggedAs ? await store.taggedAs(a.tag, opts) : undefined;
    if (a.tag && now !== undefined && now !== a.graph.descriptor.digest) {
      const m = await mergeCosignTag(copier, src, a.graph, a.tag, now, image, opts);
      out.push({ target: `${repository}:${a.tag}`, kind: a.kind, tag: a.tag, digest: m.digest, subject: a.subject,
        existing: m.how, ...(m.how === 'left' ? { warning: m.warning } : {}) });
      continue;
    }
    await copier.copyImage(src, a.graph, `${image} (${a.tag ?? `${a.kind} ${a.graph.descriptor.digest}`})`, a.tag ? [a.tag] : [], true);
    if (!a.tag) referrers.set(a.subject, [...(referrers.get(a.subject) ?? []), referrerDescriptor(a.graph)]);
    out.push({ target: `${repository}${a.tag ? `:${a.tag}` : `@${a.graph.descriptor.digest}`}`, kind: a.kind,
      ...(a.tag ? { tag: a.tag } : {}), digest: a.graph.descriptor.digest, subject: a.subject });
  }
  for (const [subject, descs] of referrers) await publishReferrers(store, subject, descs, signal ? { signal } : {});
  return out;
}
