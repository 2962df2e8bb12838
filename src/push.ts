import { Limits, type ConcurrencyReport } from './concurrency.js';
import { damaged } from './bundle/reader.js';
import { openBundle, type BundleSource } from './bundle/source.js';
import { Copier, flatten, loadGraph, totalSize, type CopyEvent, type EventSink, type GraphNode } from './copy.js';
import { placeBaseBlobs, pruneGraph } from './delta.js';
import { bundledCharts, pushBundledCharts, refuseChartCollisions, type BundledChart, type PushedChartSummary } from './helm/bundled.js';
import { AirgapError, isAirgapError } from './errors.js';
import type { RegistryAccess } from './plan.js';
import { parseReference } from './reference.js';
import { checkCollisions, parseTargetRegistry, targetName, type TargetName, type TargetRegistry } from './target.js';
import { loadAttached, pushAttached, type AttachedGraph, type PushedAttached } from './attached.js';
import { checkSignedBundle, signatureKeys, type SignatureCheck, type SignedRelease } from './bundle/signing.js';

export interface PushOptions {
  bundle: string;
  registry: string;
  registries: RegistryAccess;
  /** --concurrency; undefined: the default, which adapts (src/concurrency.ts). */
  concurrency?: number;
  /** Keep the whole source repository path under the namespace (target.ts); rewrite must agree. */
  keepPath?: boolean;
  onEvent?: EventSink;
  onStart?: (totalBytes: number, totalImages: number) => void;
  signal?: AbortSignal;
  /** false: leave the bundle's signatures, attestations and SBOMs out (default true). */
  signatures?: boolean;
  /** A PEM public key: check the bundle's signature and every byte before anything moves. */
  key?: string;
}

/** How one digest reached the registry; each digest counts once, under the first that applies. */
type Moved = 'uploaded' | 'mounted' | 'existed';

/**
 * Bytes are counted one way everywhere (the build's way): each distinct blob or manifest once,
 * whatever number of images or target repositories share it.
 */
export interface PushCounts {
  /** Distinct content the images are made of (blobs and manifests), as `build` and `inspect` count it. */
  bytes: number;
  blobs: number;
  /** Of which sent over the wire (to at least one repository). */
  bytesUploaded: number;
  blobsUploaded: number;
  /** Of which not sent, only mounted from another repository of the registry. */
  bytesMounted: number;
  blobsMounted: number;
  /** Of which the registry already held (including what a delta leaves to its base). */
  bytesExisting: number;
  blobsExisting: number;
  /** bytesMounted + bytesExisting. */
  bytesSkipped: number;
}

export interface PushSummary extends PushCounts {
  registry: string;
  /** How many requests ran at once (src/concurrency.ts); absent for a dry run. */
  concurrency?: ConcurrencyReport;
  /** `already there`: every tag named this image already, so nothing was written for it. */
  images: { source: string; target: string; digest: string; status: 'pushed' | 'already there' }[];
  /** A delta bundle: its base, and the blobs found in the registry instead of in the bundle. */
  delta?: { base: { id: string; created: string; release?: string }; blobsFromBase: number; bytesFromBase: number };
  /** Signatures, attestations and SBOMs written next to their images (same repository). */
  attached: PushedAttached[];
  /** The bundle's signature was checked with --key (its key type). */
  verified?: string;
  /** What the signed airgap.json says this bundle is (with verified). */
  signedRelease?: SignedRelease;
  /** A KOTS release's Helm charts, pushed as OCI charts after the images. */
  charts: PushedChartSummary[];
  /** What the push left as it found it and the user should know (a customer's signature tag it could not merge). */
  warnings: string[];
}

/** What a push would do, found with HEAD requests only. */
export interface PushDryRun extends PushCounts {
  registry: string;
  dryRun: true;
  images: { source: string; target: string; digest: string; status: 'would push' | 'already there' }[];
  /** A delta bundle: blobs it leaves to its base that the registry does not hold (the push would refuse). */
  missingFromBase?: string[];
  /** The bundle's signature was checked with --key (its key type). */
  verified?: string;
  signedRelease?: SignedRelease;
  charts: { name: string; version: string; target: string; status: 'would push' | 'already there' }[];
}

interface PushImage {
  ref: string;
  name: TargetName;
}

/**
 * A push, prepared: every check that needs no registry is done (bundle readable and complete,
 * names, collisions). Nothing has been sent yet; `close()` whatever happens next.
 */
export class PushJob {
  readonly #opts: PushOptions;
  readonly #reader: BundleSource;
  readonly #target: TargetRegistry;
  readonly #images: PushImage[];
  readonly #graphs: Map<string, GraphNode>;
  /** Each image's signatures, attestations and SBOMs (pushed into its repository after it). */
  readonly #attached: Map<string, AttachedGraph[]>;
  readonly #signed: SignatureCheck | undefined;
  readonly #charts: BundledChart[];

  private constructor(opts: PushOptions, reader: BundleSource, target: TargetRegistry, images: PushImage[], graphs: Map<string, GraphNode>,
    attached: Map<string, AttachedGraph[]>, signed: SignatureCheck | undefined, charts: BundledChart[]) {
    this.#opts = opts;
    this.#charts = charts;
    this.#reader = reader;
    this.#target = target;
    this.#images = images;
    this.#graphs = graphs;
    this.#attached = attached;
    this.#signed = signed;
  }

  static async open(opts: PushOptions): Promise<PushJob> {
    const target = parseTargetRegistry(opts.registry);
    const reader = await openBundle(opts.bundle);
    try {
      // --key: the signature, every pinned digest and every blob, before anything moves.
      // AIRGAP_REQUIRE_SIGNATURE (the admin's key) holds whatever --key says.
      const signed = await checkSignedBundle(reader, signatureKeys(opts.key));
      const entries = reader.images();
      if (entries.length === 0) {
        throw new AirgapError('E_BUNDLE', `bundle ${opts.bundle} holds no images (index.json lists none)`,
          { hint: 'rebuild the bundle with airgap build' });
      }
      const images = entries.map((e) => {
        const ref = parseReference(e.ref, `${opts.bundle}: index.json`);
        return { ref: e.ref, name: targetName(target, ref, opts.keepPath) };
      });
      checkCollisions(images.map((i) => i.name));
      const charts = await bundledCharts(reader, target);
      refuseChartCollisions(charts, images.map((i) => i.name));
      const graphs = new Map<string, GraphNode>();
      for (const img of images) {
        const root = await reader.resolve(img.ref);
        // A foreign layer the bundle carries (build --include-foreign-layers) is pushed like any other.
        graphs.set(img.ref, await loadGraph(reader, root, img.ref, opts.signal, (d) => reader.hasBlob(d.digest)));
      }
      // Each image's signatures, attestations and SBOMs: those attached to one of its manifests.
      const attached = opts.signatures === false ? new Map<string, AttachedGraph[]>() : await loadAttached(reader, images, graphs, opts.signal);
      const all = (ref: string): GraphNode[] => [graphs.get(ref)!, ...(attached.get(ref) ?? []).map((a) => a.graph)];
      refuseIncomplete(reader, new Map(images.flatMap((i) => all(i.ref).map((g, n) => [`${i.ref}#${n}`, g] as const))));
      return new PushJob(opts, reader, target, images, graphs, attached, signed, charts);
    } catch (e) {
      await reader.close();
      throw e;
    }
  }

  async close(): Promise<void> {
    await this.#reader.close();
  }

  #store(repository: string) {
    return this.#opts.registries.open({ registry: this.#target.host, repository });
  }

  #call() {
    return this.#opts.signal ? { signal: this.#opts.signal } : {};
  }

  /** One set of limits for a run (src/concurrency.ts). */
  #limits(): Limits {
    return new Limits(this.#opts.concurrency !== undefined ? { concurrency: this.#opts.concurrency } : {});
  }

  /** An image's graph and those of what is attached to it. */
  #withAttached(ref: string, graphs = this.#graphs): GraphNode[] {
    return [graphs.get(ref)!, ...(this.#attached.get(ref) ?? []).map((a) => a.graph)];
  }

  /** Every root the push sends: images and what is attached to them. */
  #roots(): GraphNode[] {
    return this.#images.flatMap((i) => this.#withAttached(i.ref));
  }

  /** Distinct content of every image (blobs left to a delta's base included) and its size. */
  #content(): { bytes: number; blobs: number } {
    const nodes = flatten(this.#roots());
    return { bytes: totalSize(nodes), blobs: nodes.length };
  }

  /**
   * The registry takes our credentials, before the first byte moves: one HEAD of the first
   * image's tag with push access (a 404 is fine; a 401/403 is the error the user needs now).
   */
  async checkAccess(): Promise<void> {
    const first = this.#images[0]!;
    await this.#store(first.name.repository).taggedAs!(first.name.tag, this.#call());
  }

  /** What run() would do, from HEAD requests alone: nothing is sent, nothing is written. */
  async dryRun(): Promise<PushDryRun> {
    const limit = this.#limits().small;
    const reader = this.#reader;
    const images = await Promise.all(this.#images.map((img) => limit(async () => {
      const digest = this.#graphs.get(img.ref)!.descriptor.digest;
      const now = await this.#store(img.name.repository).taggedAs!(img.name.tag, this.#call());
      return { source: img.ref, target: img.name.full, digest, status: now === digest ? 'already there' as const : 'would push' as const };
    })));
    // Each target repository's distinct digests, for the images not already there.
    const byRepo = new Map<string, GraphNode[]>();
    for (const [i, img] of this.#images.entries()) {
      const roots = images[i]!.status === 'already there' ? this.#withAttached(img.ref).slice(1) : this.#withAttached(img.ref);
      byRepo.set(img.name.repository, [...(byRepo.get(img.name.repository) ?? []), ...roots]);
    }
    const held = new Map<string, boolean>(); // `${repo}\n${digest}`
    await Promise.all([...byRepo].flatMap(([repo, roots]) => flatten(roots).map((n) => limit(async () => {
      held.set(`${repo}\n${n.descriptor.digest}`, await this.#store(repo).exists(n.descriptor, this.#call()));
    }))));
    const heldSomewhere = (d: string) => [...byRepo.keys()].some((r) => held.get(`${r}\n${d}`));
    const moved = new Map<string, Moved>();
    const uploadedTo = new Set<string>();
    const missingFromBase = new Set<string>();
    for (const [repo, roots] of byRepo) {
      for (const n of flatten(roots)) {
        const d = n.descriptor.digest;
        let how: Moved;
        if (held.get(`${repo}\n${d}`)) how = 'existed';
        else if (n.bytes === undefined && (uploadedTo.has(d) || heldSomewhere(d))) how = 'mounted';
        else if (reader.isFromBase(d)) { missingFromBase.add(d); continue; }
        else { how = 'uploaded'; uploadedTo.add(d); }
        record(moved, d, how);
      }
    }
    const charts = await Promise.all(this.#charts.map(async (c) => {
      const now = await this.#store(c.target.repository).taggedAs!(c.target.tag, this.#call());
      return { name: c.name, version: c.version, target: c.target.full,
        status: now === c.artifact.manifest.descriptor.digest ? 'already there' as const : 'would push' as const };
    }));
    return {
      registry: this.#opts.registry, dryRun: true, images, charts,
      ...counts(this.#content(), moved, this.#roots()),
      ...(missingFromBase.size > 0 ? { missingFromBase: [...missingFromBase] } : {}),
      ...(this.#signed ? { verified: this.#signed.keyType, signedRelease: this.#signed.release } : {}),
    };
  }

  /**
   * Sends every image: blobs are read from their byte range in the bundle, mounted when a sibling
   * repository already has them, and each tag is written only after all of its content.
   */
  async run(): Promise<PushSummary> {
    const opts = this.#opts;
    const reader = this.#reader;
    const images = this.#images;
    const graphs = new Map(this.#graphs);
    const content = this.#content();
    const roots = this.#roots();
    const attachedGraphs = [...this.#attached.values()].flat();
    // One copier per target repository (a blob must exist in each), one set of limits for them all.
    const limits = this.#limits();
    const siblings = new Map<string, Promise<unknown>>();
    const copiers = new Map<string, Copier>();
    const moved = new Map<string, Moved>();
    const already = new Set<string>();
    const onEvent = (e: CopyEvent) => {
      if (e.type === 'blob-done' || e.type === 'manifest-done') record(moved, e.digest, e.outcome);
      if (e.type === 'image-done' && e.existed) already.add(e.image);
      opts.onEvent?.(e);
    };
    const copierFor = (name: TargetName): Copier => {
      let c = copiers.get(name.repository);
      if (!c) {
        c = new Copier(this.#store(name.repository), { limits, siblings, onEvent, ...this.#call() });
        copiers.set(name.repository, c);
      }
      return c;
    };

    // A delta: what it expects from its base must already be in the registry; checked (and
    // mounted across repositories) before anything moves, then left out of the copy.
    const base = reader.base();
    let delta: PushSummary['delta'];
    if (base) {
      const placed = await placeBaseBlobs(reader, this.#target.host, [...graphsByRepository(images, (ref) => this.#withAttached(ref))].map(([repository, gs]) => ({
        repository, graphs: gs, store: this.#store(repository),
      })), { limit: limits.small, ...this.#call(), baseRepositories: {
        // The base's images went where this push's naming puts them (same --registry and --keep-path).
        repositoryOf: (ref) => {
          try {
            return targetName(this.#target, parseReference(ref, 'airgap.json base'), opts.keepPath).repository;
          } catch {
            return undefined;
          }
        },
        store: (repository) => this.#store(repository),
      } });
      for (const n of flatten(roots)) if (reader.isFromBase(n.descriptor.digest)) record(moved, n.descriptor.digest, 'existed');
      for (const d of placed.mountedDigests) record(moved, d, 'mounted');
      for (const [ref, g] of graphs) graphs.set(ref, pruneGraph(g, (d) => reader.isFromBase(d)));
      for (const a of attachedGraphs) a.graph = pruneGraph(a.graph, (d) => reader.isFromBase(d));
      delta = { base: { id: base.id, created: base.created, ...(base.release ? { release: base.release } : {}) },
        blobsFromBase: placed.existing + placed.mounted, bytesFromBase: placed.bytes };
    }

    // Progress counts each digest once, as the summary does.
    opts.onStart?.(totalSize(flatten([...graphs.values(), ...attachedGraphs.map((a) => a.graph)])), images.length);
    // The image with the biggest blob starts first, so that blob is not the last one running.
    // Computed once per image: a comparator would walk each graph again on every comparison.
    const biggest = new Map(images.map((img) => [img.ref, Math.max(0, ...flatten([graphs.get(img.ref)!]).map((n) => n.descriptor.size))]));
    const order = [...images].sort((x, y) => biggest.get(y.ref)! - biggest.get(x.ref)!);
    const label = (img: PushImage) => `${img.ref} → ${img.name.full}`;
    const pushedAttached = new Map<string, PushedAttached>();
    await Promise.all(order.map(async (img) => {
      const copier = copierFor(img.name);
      await copier.copyImage(reader, graphs.get(img.ref)!, label(img), [img.name.tag]);
      // After the image: into its repository, under the tag names they had upstream.
      const done = await pushAttached(copier, reader, this.#attached.get(img.ref) ?? [], label(img),
        `${this.#target.host}/${img.name.repository}`, opts.signal);
      for (const a of done) pushedAttached.set(a.target, a); // two tags of one image share them
    })).catch((e: unknown) => { throw nameDamagedPart(e, reader); }).finally(() => limits.stop());
    const charts = await pushBundledCharts(this.#charts, (repository) => this.#store(repository), this.#call());

    return {
      registry: opts.registry,
      concurrency: limits.report(),
      images: images.map((i) => ({ source: i.ref, target: i.name.full, digest: graphs.get(i.ref)!.descriptor.digest,
        status: already.has(label(i)) ? 'already there' as const : 'pushed' as const })),
      ...counts(content, moved, roots),
      ...(delta ? { delta } : {}),
      attached: [...pushedAttached.values()].sort((a, b) => (a.target < b.target ? -1 : 1)),
      warnings: [...pushedAttached.values()].flatMap((a) => (a.warning ? [a.warning] : [])),
      ...(this.#signed ? { verified: this.#signed.keyType, signedRelease: this.#signed.release } : {}),
      charts,
    };
  }
}

/**
 * airgap push: bundle → registry. Every image goes to <host>/<namespace>/<name>:<tag> (or the
 * whole source path with keepPath). Every check runs before the first byte moves.
 */
export async function push(opts: PushOptions): Promise<PushSummary> {
  const job = await PushJob.open(opts);
  try {
    await job.checkAccess();
    return await job.run();
  } finally {
    await job.close();
  }
}

const RANK: Record<Moved, number> = { uploaded: 3, mounted: 2, existed: 1 };

function record(moved: Map<string, Moved>, digest: string, how: Moved): void {
  const was = moved.get(digest);
  if (!was || RANK[how] > RANK[was]) moved.set(digest, how);
}

/** Sums each distinct digest of the graphs once, under how it reached the registry. */
function counts(content: { bytes: number; blobs: number }, moved: Map<string, Moved>, roots: GraphNode[]): PushCounts {
  const c = { uploaded: [0, 0], mounted: [0, 0], existed: [0, 0] } as Record<Moved, [number, number]>;
  for (const n of flatten(roots)) {
    const how = moved.get(n.descriptor.digest) ?? 'existed';
    c[how][0] += n.descriptor.size;
    c[how][1]++;
  }
  return {
    ...content,
    bytesUploaded: c.uploaded[0], blobsUploaded: c.uploaded[1],
    bytesMounted: c.mounted[0], blobsMounted: c.mounted[1],
    bytesExisting: c.existed[0], blobsExisting: c.existed[1],
    bytesSkipped: c.mounted[0] + c.existed[0],
  };
}

/** The graphs each target repository receives: its images' and what is attached to them. */
function graphsByRepository(images: PushImage[], graphsOf: (ref: string) => GraphNode[]): Map<string, GraphNode[]> {
  const out = new Map<string, GraphNode[]>();
  for (const img of images) out.set(img.name.repository, [...(out.get(img.name.repository) ?? []), ...graphsOf(img.ref)]);
  return out;
}

/** Content that fails its digest in a split bundle: say which part file holds it. */
function nameDamagedPart(e: unknown, reader: BundleSource): unknown {
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
function refuseIncomplete(reader: BundleSource, graphs: Map<string, GraphNode>): void {
  for (const [ref, g] of graphs) {
    const absent = flatten([g]).map((n) => n.descriptor.digest).filter((d) => !reader.hasBlob(d) && !reader.isFromBase(d));
    if (absent.length > 0) {
      throw damaged(reader.label, `${absent.join(', ')}, which ${ref} needs`);
    }
  }
}
