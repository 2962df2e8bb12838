import pLimit from 'p-limit';
import { BundleReader, damaged } from './bundle/reader.js';
import { Copier, flatten, loadGraph, totalSize, type CopyEvent, type EventSink, type GraphNode } from './copy.js';
import { placeBaseBlobs, pruneGraph } from './delta.js';
import { AirgapError, isAirgapError } from './errors.js';
import type { RegistryAccess } from './plan.js';
import { parseReference } from './reference.js';
import { checkCollisions, parseTargetRegistry, targetName, type TargetName } from './target.js';
import { loadAttached, pushAttached, type AttachedGraph, type PushedAttached } from './attached.js';
import { checkSignedBundle } from './bundle/signing.js';

export interface PushOptions {
  bundle: string;
  registry: string;
  registries: RegistryAccess;
  concurrency: number;
  onEvent?: EventSink;
  onStart?: (totalBytes: number, totalImages: number) => void;
  signal?: AbortSignal;
  /** false: leave the bundle's signatures, attestations and SBOMs out (default true). */
  signatures?: boolean;
  /** A PEM public key: check the bundle's signature and every byte before anything moves. */
  key?: string;
}

export interface PushSummary {
  registry: string;
  images: { source: string; target: string; digest: string }[];
  /** Blob bytes sent over the wire. */
  bytesUploaded: number;
  /** Blob bytes the registry already had (existing or mounted from another repository). */
  bytesSkipped: number;
  blobsUploaded: number;
  blobsMounted: number;
  blobsExisting: number;
  /** A delta bundle: its base, and the blobs found in the registry instead of in the bundle. */
  delta?: { base: { id: string; created: string; release?: string }; blobsFromBase: number; bytesFromBase: number };
  /** Signatures, attestations and SBOMs written next to their images (same repository). */
  attached: PushedAttached[];
  /** The bundle's signature was checked with --key (its key type). */
  verified?: string;
}

/**
 * airgap push: bundle → registry. Every image goes to <host>/<namespace>/<name>:<tag>; blobs are
 * read from their byte range in the bundle, mounted when a sibling repository already has them,
 * and each tag is written only after all of its content is in the registry.
 */
export async function push(opts: PushOptions): Promise<PushSummary> {
  const target = parseTargetRegistry(opts.registry);
  const reader = await BundleReader.open(opts.bundle);
  try {
    // --key: the signature, every pinned digest and every blob, before anything moves.
    const verified = opts.key !== undefined ? await checkSignedBundle(reader, opts.key) : undefined;
    const entries = reader.images();
    if (entries.length === 0) {
      throw new AirgapError('E_BUNDLE', `bundle ${opts.bundle} holds no images (index.json lists none)`,
        { hint: 'rebuild the bundle with airgap build' });
    }
    const images = entries.map((e) => {
      const ref = parseReference(e.ref, `${opts.bundle}: index.json`);
      return { ...e, name: targetName(target, ref) };
    });
    checkCollisions(images.map((i) => i.name));

    const graphs = new Map<string, GraphNode>();
    for (const img of images) {
      const root = await reader.resolve(img.ref);
      // A foreign layer the bundle carries (build --include-foreign-layers) is pushed like any other.
      graphs.set(img.ref, await loadGraph(reader, root, img.ref, opts.signal, (d) => reader.hasBlob(d.digest)));
    }
    // Each image's signatures, attestations and SBOMs: those attached to one of its manifests.
    const attached = opts.signatures === false ? new Map<string, AttachedGraph[]>() : await loadAttached(reader, images, graphs, opts.signal);
    const withAttached = (ref: string): GraphNode[] => [graphs.get(ref)!, ...(attached.get(ref) ?? []).map((a) => a.graph)];
    refuseIncomplete(reader, new Map(images.flatMap((i) => withAttached(i.ref).map((g, n) => [`${i.ref}#${n}`, g] as const))));

    // One copier per target repository (a blob must exist in each), one limiter for them all.
    const limit = pLimit(Math.max(1, opts.concurrency));
    const siblings = new Map<string, Promise<unknown>>();
    const copiers = new Map<string, Copier>();
    const stats = { bytesUploaded: 0, bytesSkipped: 0, blobsUploaded: 0, blobsMounted: 0, blobsExisting: 0 };
    const onEvent = (e: CopyEvent) => {
      if (e.type === 'blob-done') {
        if (e.outcome === 'uploaded') { stats.bytesUploaded += e.size; stats.blobsUploaded++; }
        else { stats.bytesSkipped += e.size; if (e.outcome === 'mounted') stats.blobsMounted++; else stats.blobsExisting++; }
      }
      opts.onEvent?.(e);
    };
    const copierFor = (name: TargetName): Copier => {
      let c = copiers.get(name.repository);
      if (!c) {
        const store = opts.registries.open({ registry: target.host, repository: name.repository });
        c = new Copier(store, { concurrency: opts.concurrency, limit, siblings, onEvent, ...(opts.signal ? { signal: opts.signal } : {}) });
        copiers.set(name.repository, c);
      }
      return c;
    };

    // A delta: what it expects from its base must already be in the registry; checked (and
    // mounted across repositories) before anything moves, then left out of the copy.
    const base = reader.base();
    let delta: PushSummary['delta'];
    if (base) {
      const placed = await placeBaseBlobs(reader, target.host, [...graphsByRepository(images, withAttached)].map(([repository, gs]) => ({
        repository, graphs: gs, store: opts.registries.open({ registry: target.host, repository }),
      })), { concurrency: opts.concurrency, ...(opts.signal ? { signal: opts.signal } : {}) });
      for (const [ref, g] of graphs) graphs.set(ref, pruneGraph(g, (d) => reader.isFromBase(d)));
      for (const list of attached.values()) for (const a of list) a.graph = pruneGraph(a.graph, (d) => reader.isFromBase(d));
      stats.blobsExisting += placed.existing;
      stats.blobsMounted += placed.mounted;
      stats.bytesSkipped += placed.bytes;
      delta = { base: { id: base.id, created: base.created, ...(base.release ? { release: base.release } : {}) },
        blobsFromBase: placed.existing + placed.mounted, bytesFromBase: placed.bytes };
    }

    // Each target repository receives each of its digests once (uploaded, mounted or found there).
    const totalBytes = [...graphsByRepository(images, withAttached).values()].reduce((n, roots) => n + totalSize(flatten(roots)), 0);
    opts.onStart?.(totalBytes, images.length);
    // The image with the biggest blob starts first, so that blob is not the last one running.
    // Computed once per image: a comparator would walk each graph again on every comparison.
    const biggest = new Map(images.map((img) => [img.ref, Math.max(0, ...flatten([graphs.get(img.ref)!]).map((n) => n.descriptor.size))]));
    const order = [...images].sort((x, y) => biggest.get(y.ref)! - biggest.get(x.ref)!);
    const pushedAttached = new Map<string, PushedAttached>();
    await Promise.all(order.map(async (img) => {
      const copier = copierFor(img.name);
      await copier.copyImage(reader, graphs.get(img.ref)!, `${img.ref} → ${img.name.full}`, [img.name.tag]);
      // After the image: into its repository, under the tag names they had upstream.
      const done = await pushAttached(copier, reader, attached.get(img.ref) ?? [], `${img.ref} → ${img.name.full}`,
        `${target.host}/${img.name.repository}`, opts.signal);
      for (const a of done) pushedAttached.set(a.target, a); // two tags of one image share them
    })).catch((e: unknown) => { throw nameDamagedPart(e, reader); });

    return {
      registry: opts.registry,
      images: images.map((i) => ({ source: i.ref, target: i.name.full, digest: graphs.get(i.ref)!.descriptor.digest })),
      ...stats,
      ...(delta ? { delta } : {}),
      attached: [...pushedAttached.values()].sort((a, b) => (a.target < b.target ? -1 : 1)),
      ...(verified ? { verified } : {}),
    };
  } finally {
    await reader.close();
  }
}

/** The graphs each target repository receives: its images' and what is attached to them. */
function graphsByRepository(images: { ref: string; name: TargetName }[], graphsOf: (ref: string) => GraphNode[]): Map<string, GraphNode[]> {
  const out = new Map<string, GraphNode[]>();
  for (const img of images) out.set(img.name.repository, [...(out.get(img.name.repository) ?? []), ...graphsOf(img.ref)]);
  return out;
}

/** Content that fails its digest in a split bundle: say which part file holds it. */
function nameDamagedPart(e: unknown, reader: BundleReader): unknown {
  if (!reader.file.split || !isAirgapError(e, 'E_DIGEST_MISMATCH')) return e;
  const parts = [...e.message.matchAll(/sha256:[a-f0-9]{64}/g)].map((m) => reader.partsOfBlob(m[0])).find((p) => p.length > 0) ?? [];
  if (parts.length === 0) return e;
  return new AirgapError(e.code, `${e.message} (stored in part ${parts.join(' and ')} of ${reader.path})`,
    { hint: `part ${parts.join(', ')} is damaged: copy it again from the original media and check it with airgap verify`, cause: e });
}

/**
 * Content a manifest names that the bundle neither holds nor leaves to its base: the bundle is
 * damaged. Refused before anything is pushed, so no image is half-pushed or tagged.
 */
function refuseIncomplete(reader: BundleReader, graphs: Map<string, GraphNode>): void {
  for (const [ref, g] of graphs) {
    const absent = flatten([g]).map((n) => n.descriptor.digest).filter((d) => !reader.hasBlob(d) && !reader.isFromBase(d));
    if (absent.length > 0) {
      throw damaged(reader.label, `${absent.join(', ')}, which ${ref} needs`);
    }
  }
}
