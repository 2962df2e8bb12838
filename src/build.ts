import { isIndexType } from './oci/mediatypes.js';
import { Limits, type ConcurrencyReport } from './concurrency.js';
import { AirgapError, isAirgapError } from './errors.js';
import { BundleWriter } from './bundle/writer.js';
import type { BundleImage, BundleMetadata } from './bundle/format.js';
import { partCount, refuseExistingSplit, splitBundle, type PartInfo } from './bundle/split.js';
import { bundleId, loadBase, pruneGraph } from './delta.js';
import { Copier, flatten, loadGraph, totalSize, type EventSink, type GraphNode } from './copy.js';
import { choosePlatforms } from './platforms.js';
import { KeptBlobs } from './kept.js';
import type { Descriptor } from './oci/descriptor.js';
import { isForeignLayer } from './oci/manifest.js';
import { parsePlatformSpecs } from './oci/platform.js';
import { makePlan, type PlanOptions } from './plan.js';
import { formatReference, taggedName } from './reference.js';
import type { ResolvedImage } from './app/resolve.js';
import type { Finding } from './app/findings.js';
import type { NotRead } from './app/files.js';
import type { SourceStore } from './store.js';
import { discoverAttached, type Attached } from './attached.js';
import { ANNOTATION_ATTACHED_KIND, ANNOTATION_ATTACHED_TAG, ANNOTATION_SUBJECT } from './bundle/format.js';
import { loadSigningKey } from './bundle/signing.js';
import { sha256Digest } from './oci/verify.js';
import { TOOL_NAME, TOOL_VERSION } from './version.js';

export interface BuildOptions extends PlanOptions {
  licensePath: string;
  out: string;
  platforms?: string[];
  /** --concurrency; undefined: the default, which adapts (src/concurrency.ts). */
  concurrency?: number;
  release?: string;
  /** A previous bundle: write a delta carrying only the blobs it does not hold. */
  since?: string;
  /** Write the bundle as parts of at most this many bytes beside `out` (split.ts). */
  splitSize?: number;
  /** false: do not carry the images' signatures, attestations and SBOMs (default true). */
  signatures?: boolean;
  /** A PEM private key: sign airgap.json into airgap.json.sig (bundle/signing.ts). */
  signKey?: string;
  /** Carry foreign (non-distributable) layers: from the source registry, else from their URLs. */
  includeForeignLayers?: boolean;
  /** A line a person should read (files not read, foreign layers left out), said before the download starts. */
  onWarning?: (line: string) => void;
  onEvent?: EventSink;
  /** Called once the work is known, before the first blob moves. */
  onStart?: (totalBytes: number, totalImages: number) => void;
  signal?: AbortSignal;
}

export interface BuildSummary {
  out: string;
  /** How many requests ran at once (src/concurrency.ts). */
  concurrency: ConcurrencyReport;
  appSlug: string;
  images: (BundleImage & { kind: string })[];
  /** Blobs and bytes carried by the bundle. */
  blobs: number;
  bytes: number;
  id: string;
  /** A delta: its base and what it leaves to it. */
  delta?: { base: { id: string; created: string; release?: string }; blobsFromBase: number; bytesFromBase: number };
  /** A split bundle: its parts, beside `out` (which holds the parts manifest). */
  parts?: PartInfo[];
  /** Warnings about the manifests (a build with errors is refused). */
  findings: Finding[];
  /** Signatures, attestations and SBOMs carried with the images. */
  attached: { image: string; subject: string; kind: string; tag?: string; digest: string }[];
  /** The bundle is signed (airgap.json.sig) with this key type. */
  signed?: string;
  /** Foreign layers of the bundled images, carried or not (--include-foreign-layers). */
  foreignLayers: ForeignLayer[];
  /** Files under --manifests that were not read (not manifests, hidden). */
  notRead: NotRead[];
}

export interface ForeignLayer {
  image: string;
  digest: string;
  mediaType: string;
  size: number;
  /** Hosts of the layer's URLs. */
  urlHosts: string[];
  carried: boolean;
}

interface PreparedImage {
  image: ResolvedImage;
  src: SourceStore;
  graph: GraphNode;
  platforms: string[];
  attached: Attached[];
}

/** airgap build: registry → bundle. Resolve every image, plan the tar, copy, finish atomically. */
export async function build(opts: BuildOptions): Promise<BuildSummary> {
  const spec = parsePlatformSpecs(opts.platforms);
  if (opts.splitSize !== undefined) refuseExistingSplit(opts.out);
  // A key that cannot sign is refused before anything is downloaded.
  const signer = opts.signKey !== undefined ? loadSigningKey(opts.signKey) : undefined;
  const base = opts.since !== undefined ? await loadBase(opts.since) : undefined;
  const plan = await makePlan({ ...opts, keepManifests: true });
  for (const n of plan.scan.notRead) opts.onWarning?.(`not read: ${n.path} (${n.reason})`);
  if (base?.appSlug && base.appSlug !== plan.appSlug) {
    throw new AirgapError('E_USAGE', `--since ${opts.since} is a bundle of app "${base.appSlug}", not "${plan.appSlug}"`,
      { hint: 'give the previous bundle of this same application' });
  }

  // Every manifest first (small), so that every blob's size is known before the tar is planned.
  const limits = new Limits(opts.concurrency !== undefined ? { concurrency: opts.concurrency } : {});
  // Resolving is small requests only (manifests, a config, signature lookups): many at once.
  const resolveLimit = limits.small;
  const discovered = new Map<string, Promise<Attached[]>>();
  const discover = (src: SourceStore, graph: GraphNode, what: string): Promise<Attached[]> => {
    const key = `${src.label} ${graph.descriptor.digest}`;
    let p = discovered.get(key);
    if (!p) discovered.set(key, (p = discoverAttached(src, graph, what, opts.signal)));
    return p;
  };
  // Configs read for their platform are copied from memory, not downloaded twice.
  const kept = new KeptBlobs();
  const prepared = await Promise.all(plan.images.map((image) => resolveLimit(async (): Promise<PreparedImage> => {
    const what = formatReference(image.ref);
    const src = opts.registries.open(image.source);
    const reference = image.ref.digest ?? image.ref.tag ?? 'latest';
    // A public image's manifest was read by the anonymous check (one GET, not two).
    const resolved = image.manifest ?? await src.resolve(reference, opts.signal ? { signal: opts.signal } : {}).catch((e: unknown) => {
      throw explainSource(e, image, what);
    });
    const choosing = choosePlatforms(src, resolved, spec, what);
    // A single manifest is its own graph whatever the platform check says: its signature lookups
    // go out beside the config's download (one round trip per image, not two). An index's graph
    // depends on the platforms chosen.
    const graphing = isIndexType(resolved.descriptor.mediaType)
      ? choosing.then((c) => loadGraph(src, c.root, what, opts.signal, () => opts.includeForeignLayers === true))
      : loadGraph(src, resolved, what, opts.signal, () => opts.includeForeignLayers === true);
    // In the same slot, so it overlaps the other images' resolution; once per repository and digest.
    const finding = opts.signatures === false ? Promise.resolve([]) : graphing.then((g) => discover(src, g, what));
    const [chosen, graph, attached] = await Promise.all([choosing, graphing, finding]);
    if (chosen.config) kept.keep(chosen.config.digest, chosen.config.bytes);
    return { image, src, graph, platforms: chosen.platforms, attached };
  })));

  const unique = oneImagePerName(prepared);
  const foreignLayers = unique.flatMap((p) => foreignLayersOf(p));
  for (const line of foreignWarnings(foreignLayers)) opts.onWarning?.(line);
  const nodes = flatten([...unique.map((p) => p.graph), ...unique.flatMap((p) => p.attached.map((a) => a.graph))]);
  // A delta carries every manifest, and only the blobs its base does not hold (by digest).
  const fromBase = (d: string): boolean => base?.blobs.has(d) ?? false;
  const isBlob = (n: GraphNode): boolean => n.bytes === undefined;
  const carried = nodes.filter((n) => !isBlob(n) || !fromBase(n.descriptor.digest));
  const leftToBase = nodes.filter((n) => isBlob(n) && fromBase(n.descriptor.digest));
  // The tar is at least as big as what it carries: too many parts shows before the download.
  if (opts.splitSize !== undefined) partCount(totalSize(carried), opts.splitSize);
  const appFiles = (plan.scan.carried ?? plan.scan.files).map((f) => ({ path: f.path, content: f.content }));
  const writer = await BundleWriter.create(opts.out, {
    blobs: carried.map((n) => ({ digest: n.descriptor.digest, size: n.descriptor.size })),
    appFiles,
  });
  try {
    // Progress counts what moves: a delta's blobs left to the base never do.
    opts.onStart?.(totalSize(carried), unique.length);
    const copier = new Copier(writer, {
      limits,
      kept,
      ...(opts.onEvent ? { onEvent: opts.onEvent } : {}),
      ...(opts.signal ? { signal: opts.signal } : {}),
    });
    const prune = (g: GraphNode): GraphNode => (base ? pruneGraph(g, fromBase) : g);
    await Promise.all(unique.map(async (p) => {
      await copier.copyImage(p.src, prune(p.graph), formatReference(p.image.ref), [taggedName(p.image.ref)]);
      for (const a of p.attached) {
        await copier.copyImage(p.src, prune(a.graph), `${formatReference(p.image.ref)} (${a.tag ?? `${a.kind} ${a.graph.descriptor.digest}`})`, [], true);
        writer.attach(a.graph.descriptor, a.graph.bytes!, {
          [ANNOTATION_SUBJECT]: a.subject, [ANNOTATION_ATTACHED_KIND]: a.kind, ...(a.tag ? { [ANNOTATION_ATTACHED_TAG]: a.tag } : {}),
        });
      }
    }));
    const attached = unique.flatMap((p) => p.attached.map((a) => ({
      image: taggedName(p.image.ref), subject: a.subject, kind: a.kind, ...(a.tag ? { tag: a.tag } : {}), digest: a.graph.descriptor.digest,
    })));
    const images = unique.map((p) => ({
      ref: taggedName(p.image.ref),
      digest: p.graph.descriptor.digest,
      mediaType: p.graph.descriptor.mediaType,
      platforms: p.platforms,
      size: totalSize(flatten([p.graph])),
      source: p.image.kind,
    }));
    const id = bundleId(images, appFiles, base?.id, attached);
    const baseRecord = base ? { id: base.id, created: base.created, ...(base.release ? { release: base.release } : {}) } : undefined;
    const metadata: BundleMetadata = {
      schemaVersion: 1,
      tool: { name: TOOL_NAME, version: TOOL_VERSION },
      created: new Date().toISOString(),
      id,
      appSlug: plan.appSlug,
      ...(opts.release ? { release: opts.release } : {}),
      images,
      appFiles: (plan.scan.carried ?? plan.scan.files).map((f) => f.path),
      ...(baseRecord ? { base: { ...baseRecord, blobs: leftToBase.map((n) => ({ digest: n.descriptor.digest, size: n.descriptor.size,
        // Where the base's push put it: found there if this release moved its image (delta.ts).
        ...(base?.where.get(n.descriptor.digest) ? { images: base.where.get(n.descriptor.digest) } : {}) })) } } : {}),
      pins: { index: '', app: Object.fromEntries(appFiles.map((f) => [f.path, sha256Digest(f.content)])) },
    };
    // A split bundle is cut into parts straight from the writer's complete temp tar (split.ts).
    const splitSize = opts.splitSize;
    let parts: PartInfo[] | undefined;
    await writer.finish(metadata, splitSize === undefined ? undefined : async (tar) => {
      parts = (await splitBundle(tar, opts.out, splitSize, id)).parts;
    }, signer?.sign);
    limits.stop();
    return {
      out: opts.out, appSlug: plan.appSlug, concurrency: limits.report(), images: images.map((i) => ({ ...i, kind: i.source })),
      blobs: carried.length, bytes: totalSize(carried), id,
      ...(baseRecord ? { delta: { base: baseRecord, blobsFromBase: leftToBase.length,
        bytesFromBase: totalSize(leftToBase) } } : {}),
      ...(parts ? { parts } : {}),
      findings: plan.scan.findings,
      attached,
      ...(signer ? { signed: signer.type } : {}),
      foreignLayers,
      notRead: plan.scan.notRead,
    };
  } catch (e) {
    limits.stop();
    await writer.abort();
    throw e;
  }
}

/**
 * The bundle (and later the customer registry) holds one image per name:tag. `redis:7` and
 * `redis:7@sha256:…` are the same image when they agree, and a conflict to refuse when they don't.
 */
function oneImagePerName(prepared: PreparedImage[]): PreparedImage[] {
  const byName = new Map<string, PreparedImage>();
  for (const p of prepared) {
    const name = taggedName(p.image.ref);
    const seen = byName.get(name);
    if (!seen) {
      byName.set(name, p);
    } else if (seen.graph.descriptor.digest !== p.graph.descriptor.digest) {
      const at = (x: PreparedImage) => x.image.occurrences.map((o) => `${o.file}:${o.line}`).join(', ');
      throw new AirgapError('E_COLLISION',
        `${name} names two different images: ${formatReference(seen.image.ref)} (${at(seen)}) is ${seen.graph.descriptor.digest}, ${formatReference(p.image.ref)} (${at(p)}) is ${p.graph.descriptor.digest}`,
        { hint: 'the tag has moved since the digest was pinned: make the references agree' });
    } else if (p.image.ref.digest && !seen.image.ref.digest) {
      byName.set(name, p); // keep the pinned form for messages
    }
  }
  return [...byName.values()];
}

function foreignLayersOf(p: PreparedImage): ForeignLayer[] {
  const image = formatReference(p.image.ref);
  const hosts = (d: Descriptor): string[] => [...new Set((d.urls ?? []).map((u) => {
    try {
      return new URL(u).host;
    } catch {
      return '?';
    }
  }))];
  const out = new Map<string, ForeignLayer>();
  for (const n of flatten([p.graph])) {
    const layer = (d: Descriptor, carried: boolean) => out.set(d.digest, {
      image, digest: d.digest, mediaType: d.mediaType, size: d.size, urlHosts: hosts(d), carried,
    });
    if (n.bytes === undefined && isForeignLayer(n.descriptor)) layer(n.descriptor, true);
    for (const d of n.foreign ?? []) if (!out.has(d.digest)) layer(d, false);
  }
  return [...out.values()];
}

/** One line per image whose foreign layers stay behind: the image will not run offline without them. */
function foreignWarnings(layers: ForeignLayer[]): string[] {
  const byImage = new Map<string, ForeignLayer[]>();
  for (const l of layers.filter((x) => !x.carried)) byImage.set(l.image, [...(byImage.get(l.image) ?? []), l]);
  return [...byImage].map(([image, ls]) =>
    `warning: ${image}: ${ls.length} foreign layer(s) not carried, so the image will not run offline: ` +
    ls.map((l) => `${l.digest} (${l.mediaType}, ${l.size} bytes${l.urlHosts.length > 0 ? `, from ${l.urlHosts.join(', ')}` : ''})`).join(', ') +
    ' (build with --include-foreign-layers to carry them, if their license allows)');
}

/** A private image that the proxy cannot find either: say both places were tried. */
function explainSource(e: unknown, image: ResolvedImage, what: string): unknown {
  if (!isAirgapError(e)) return e;
  const via = image.kind === 'private'
    ? ` through the vendor proxy ${image.source.registry} (it is not readable anonymously at ${image.ref.registry})`
    : image.kind === 'vendor' ? ` on the vendor registry with the license credentials` : '';
  if (e.code === 'E_NOT_FOUND' && image.kind === 'private') {
    const at = image.occurrences.map((o) => `${o.file}:${o.line}`).join(', ');
    return new AirgapError('E_NOT_FOUND',
      `${what} (${at}): not found on ${image.ref.registry} anonymously nor through the vendor proxy ${image.source.registry}`, {
        hint: 'a typo in the image name or tag is likelier than a licence matter: check the reference in the manifests', cause: e });
  }
  if (e.code === 'E_NOT_FOUND') {
    return new AirgapError('E_NOT_FOUND', `${what}: not found${via}`, {
      hint: 'check the image name and tag in the manifests, and that the license grants access to it', cause: e });
  }
  if (e.message.includes(what)) return e;
  return new AirgapError(e.code, `${what}${via}: ${e.message}`, { ...(e.hint ? { hint: e.hint } : {}), cause: e });
}
