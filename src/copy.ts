import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Limits } from './concurrency.js';
import type { KeptBlobs } from './kept.js';
import { ByteCounter } from './bytecounter.js';
import { AirgapError } from './errors.js';
import type { Descriptor } from './oci/descriptor.js';
import { MAX_GRAPH_DEPTH, MAX_MANIFEST_BYTES, parseManifest, childrenOf, isForeignLayer, type ParsedManifest } from './oci/manifest.js';
import { isIndexType, isManifestType } from './oci/mediatypes.js';
import { VerifyingStream, verifyBytes } from './oci/verify.js';
import { DEFAULT_PART_SIZE, PARTS_FROM, copyParts } from './parts.js';
import type { PushOutcome, Resolved, SourceStore, TargetStore } from './store.js';

/**
 * The copy engine: walks a manifest graph from a SourceStore to a TargetStore. Children are copied
 * before their parents, a tag is set only after everything under it is stored, each digest is
 * handled once per target (single flight), and every byte is verified while it streams. Only blob
 * transfers hold a concurrency slot, so a parent waiting on its children never starves them.
 */

export interface GraphNode {
  descriptor: Descriptor;
  /** Manifest bytes (for manifests and indexes); undefined for blobs. */
  bytes?: Uint8Array;
  manifest?: ParsedManifest;
  children: GraphNode[];
  /** Foreign layers this manifest names that the graph does not carry (see loadGraph). */
  foreign?: Descriptor[];
}

export type CopyEvent =
  | { type: 'blob-start'; digest: string; size: number; image: string }
  | { type: 'blob-progress'; digest: string; bytes: number }
  | { type: 'blob-done'; digest: string; size: number; outcome: PushOutcome; image: string }
  | { type: 'manifest-done'; digest: string; size: number; image: string; outcome: PushOutcome }
  /** `existed`: every tag already named this digest, so nothing was written for the image. */
  | { type: 'image-done'; image: string; digest: string; existed: boolean }
  /** A signature, attestation or SBOM copied next to its image (not counted as an image). */
  | { type: 'attached-done'; image: string; digest: string };

export type EventSink = (e: CopyEvent) => void;

/** Reads a manifest (or index) by descriptor, verified, and parses it. */
export async function fetchManifest(src: SourceStore, desc: Descriptor, what: string, signal?: AbortSignal): Promise<Resolved> {
  if (desc.size > MAX_MANIFEST_BYTES) {
    throw new AirgapError('E_UNSUPPORTED', `${what}: manifest ${desc.digest} is ${desc.size} bytes, over the ${MAX_MANIFEST_BYTES}-byte limit`);
  }
  const stream = await src.fetch(desc, signal ? { signal } : {});
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  const bytes = Buffer.concat(chunks);
  verifyBytes(bytes, desc, what);
  return { descriptor: desc, bytes };
}

/**
 * Loads the whole graph under a root manifest: every manifest's bytes (small), every blob's
 * descriptor. Blob content is not read. `what` names the image in errors. A foreign layer is a
 * child only when `carryForeign` says so; otherwise it is listed in its manifest's `foreign`.
 */
export async function loadGraph(src: SourceStore, root: Resolved, what: string, signal?: AbortSignal,
  carryForeign: (d: Descriptor) => boolean = () => false): Promise<GraphNode> {
  const seen = new Map<string, Promise<GraphNode>>();
  const visit = (desc: Descriptor, bytes: Uint8Array | undefined, depth: number): Promise<GraphNode> => {
    const key = desc.digest;
    const known = seen.get(key);
    if (known) return known;
    const p = (async (): Promise<GraphNode> => {
      if (!isIndexType(desc.mediaType) && !isManifestType(desc.mediaType) && bytes === undefined) {
        return { descriptor: desc, children: [] };
      }
      if (depth > MAX_GRAPH_DEPTH) {
        throw new AirgapError(src.malformedCode ?? 'E_UNSUPPORTED',
          `${what}: manifests nest more than ${MAX_GRAPH_DEPTH} levels deep (at ${desc.digest}) in ${src.label}; no image is built that way`);
      }
      const b = bytes ?? (await fetchManifest(src, desc, what, signal)).bytes;
      const manifest = parseManifest(b, desc.mediaType, `${what} manifest ${desc.digest}`);
      const left = childrenOf(manifest).filter((d) => isForeignLayer(d) && !carryForeign(d));
      const kids = childrenOf(manifest).filter((d) => !left.includes(d));
      const children = await Promise.all(kids.map((d) => visit(d, undefined, depth + 1)));
      return { descriptor: desc, bytes: b, manifest, children, ...(left.length > 0 ? { foreign: left } : {}) };
    })();
    seen.set(key, p);
    return p;
  };
  return visit(root.descriptor, root.bytes, 1);
}

/** Bytes of content the nodes stand for (blobs and manifests alike). */
export function totalSize(nodes: GraphNode[]): number {
  return nodes.reduce((n, x) => n + x.descriptor.size, 0);
}

/**
 * Every distinct blob and manifest in the graphs, children before parents. Iterative: a graph's
 * depth never costs stack.
 */
export function flatten(roots: GraphNode[]): GraphNode[] {
  const out: GraphNode[] = [];
  const seen = new Set<string>();
  const stack: { node: GraphNode; next: number }[] = [];
  for (const root of roots) {
    if (seen.has(root.descriptor.digest)) continue;
    seen.add(root.descriptor.digest);
    stack.push({ node: root, next: 0 });
    while (stack.length > 0) {
      const top = stack[stack.length - 1]!;
      const child = top.node.children[top.next++];
      if (child === undefined) {
        stack.pop();
        out.push(top.node);
      } else if (!seen.has(child.descriptor.digest)) {
        seen.add(child.descriptor.digest);
        stack.push({ node: child, next: 0 });
      }
    }
  }
  return out;
}

export interface CopierOptions {
  /** --concurrency as the user gave it; undefined: the default, which adapts (src/concurrency.ts). */
  concurrency?: number;
  /** Blobs already downloaded whole (an image's config): taken from memory, once each. */
  kept?: KeptBlobs;
  /** Share one set of limits between copiers (one per target repository) so they hold for the whole run. */
  limits?: Limits;
  /**
   * Blobs in flight to sibling targets of the same registry: a copier waits for a sibling's upload
   * of the same digest and then lets its target mount it, instead of uploading the bytes twice.
   */
  siblings?: Map<string, Promise<unknown>>;
  onEvent?: EventSink;
  signal?: AbortSignal;
  /**
   * Blobs of at least twice this size are fetched as parallel byte ranges of this size, when the
   * source serves ranges and the target takes parts (src/parts.ts). Default 16 MiB.
   */
  partSize?: number;
}

/**
 * Copies graphs into one target. One Copier per target store: its single-flight map is what makes
 * "each digest once" hold across every image sent to that target.
 *
 *   push to reg.example/acme          siblings (one per registry, blobs only, shared)
 *                                       sha256:L1 -> upload started by copier web
 *   Copier web  -> acme/web           #inflight  sha256:L1 -> p1   sha256:M1 -> p2   (own)
 *   Copier api  -> acme/api           #inflight  sha256:L1 -> q1   sha256:M2 -> q2   (own)
 *                                                    |
 *                                        q1 waits for p1, then pushes: the target mounts L1
 *                                        from acme/web (a POST, no HEAD first) instead of
 *                                        uploading it again
 *
 * A tagged root into a registry (tagStoresManifest) goes once, by its first tag, after everything
 * under it is stored: PUT acme/web:1.0 is both the manifest's upload and the tag. Other manifests
 * (an index's children, referrers) go by digest, so nothing is visible under a tag too early.
 *
 * #inflight: digest -> this target's copy of it. A second image needing the digest gets the same
 *   promise; an image found already tagged registers its digests as 'existed' so no one counts
 *   them twice; a failure removes the entry so a later call may retry.
 * siblings: digest -> the first upload of that blob to any repository of the registry. Read
 *   before a copier registers its own promise, so a copier never waits on itself.
 */
export class Copier {
  readonly #dst: TargetStore;
  readonly #limits: Limits;
  readonly #kept: KeptBlobs | undefined;
  readonly #emit: EventSink;
  readonly #signal: AbortSignal | undefined;
  readonly #inflight = new Map<string, Promise<PushOutcome>>();
  readonly #siblings: Map<string, Promise<unknown>> | undefined;
  readonly #partSize: number;

  constructor(dst: TargetStore, opts: CopierOptions) {
    this.#dst = dst;
    this.#kept = opts.kept;
    this.#limits = opts.limits ?? new Limits(opts.concurrency !== undefined ? { concurrency: opts.concurrency } : {});
    this.#siblings = opts.siblings;
    this.#partSize = opts.partSize ?? DEFAULT_PART_SIZE;
    this.#emit = opts.onEvent ?? (() => undefined);
    this.#signal = opts.signal;
  }

  get target(): TargetStore {
    return this.#dst;
  }

  /**
   * Copies a whole graph from `src`, children first, then tags the root with each of `tags`.
   * `attached`: the graph is a signature, attestation or SBOM of an image, reported as such.
   */
  async copyImage(src: SourceStore, root: GraphNode, image: string, tags: string[], attached = false): Promise<void> {
    const done = (existed: boolean): CopyEvent => (attached
      ? { type: 'attached-done', image, digest: root.descriptor.digest }
      : { type: 'image-done', image, digest: root.descriptor.digest, existed });
    if (await this.#alreadyTagged(root, tags) || await this.#alreadyStored(root, tags)) {
      // Every tag already names this digest: a tag is only ever written over complete content,
      // so there is nothing under it to check (a re-push costs one request per image). The same
      // holds for an untagged root (a referrer) already stored by digest.
      for (const n of flatten([root])) {
        const d = n.descriptor;
        // Another image of this target already handled (or is handling) the digest and reports it:
        // reporting it again would count its bytes twice. Registered so later images skip it too.
        if (this.#inflight.has(d.digest)) continue;
        this.#inflight.set(d.digest, Promise.resolve('existed'));
        this.#emit(n.bytes !== undefined
          ? { type: 'manifest-done', digest: d.digest, size: d.size, image, outcome: 'existed' }
          : { type: 'blob-done', digest: d.digest, size: d.size, outcome: 'existed', image });
      }
      this.#emit(done(true));
      return;
    }
    // Where tagging stores the manifest (a registry), the root goes once, by its first tag, after
    // everything under it: a PUT by digest first would send the same bytes twice.
    const byTag = this.#dst.tagStoresManifest === true && tags.length > 0 && root.bytes !== undefined;
    if (byTag) await this.#copyRootByTag(src, root, image, tags[0]!);
    else await this.#copyNode(src, root, image);
    for (const t of byTag ? tags.slice(1) : tags) {
      this.#check();
      await this.#tag(root, image, t);
    }
    this.#emit(done(false));
  }

  /**
   * The root of a tagged image into a store whose tag() stores the manifest: its children first,
   * then one tag() that stores it. Single flight as #copyNode: when another image of this target
   * already stores (or stored) the same root, only the tag is written, once that is done.
   */
  async #copyRootByTag(src: SourceStore, root: GraphNode, image: string, tag: string): Promise<void> {
    const { promise, first } = this.#once(root.descriptor.digest, async () => {
      await Promise.all(root.children.map((c) => this.#copyNode(src, c, image)));
      this.#check();
      await this.#tag(root, image, tag);
      const d = root.descriptor;
      // The manifest's bytes went with the tag.
      this.#emit({ type: 'manifest-done', digest: d.digest, size: d.size, image, outcome: 'uploaded' });
      return 'uploaded';
    });
    await promise;
    if (first) return;
    // Another image of this target stored the same manifest under its own tag: add ours.
    this.#check();
    await this.#tag(root, image, tag);
  }

  async #tag(root: GraphNode, image: string, tag: string): Promise<void> {
    await this.#dst.tag(root.descriptor, root.bytes!, tag, this.#opts()).catch((e: unknown) => {
      // The registry stored other content than ours: say for which image (other errors keep their shape).
      if (!(e instanceof AirgapError) || e.code !== 'E_DIGEST_MISMATCH' || e.message.includes(image)) throw e;
      throw new AirgapError(e.code, `${image}: ${e.message}`, { ...(e.hint ? { hint: e.hint } : {}), cause: e });
    });
  }

  async #alreadyTagged(root: GraphNode, tags: string[]): Promise<boolean> {
    const taggedAs = this.#dst.taggedAs?.bind(this.#dst);
    if (!taggedAs || tags.length === 0) return false;
    this.#check();
    const digests = await Promise.all(tags.map((t) => taggedAs(t, this.#opts()).catch(() => undefined)));
    return digests.every((d) => d === root.descriptor.digest);
  }

  /**
   * An untagged root (a referrer) into a registry: its manifests are PUT without asking first, so
   * one HEAD by digest here stands for the whole graph (a manifest is stored only over complete
   * content: a registry refuses one whose blobs it lacks). Not when this copier handles it already.
   */
  async #alreadyStored(root: GraphNode, tags: string[]): Promise<boolean> {
    if (tags.length > 0 || this.#dst.tagStoresManifest !== true || root.bytes === undefined) return false;
    if (this.#inflight.has(root.descriptor.digest)) return false;
    this.#check();
    return this.#dst.exists(root.descriptor, this.#opts()).catch(() => false);
  }

  #opts() {
    return this.#signal ? { signal: this.#signal } : {};
  }

  #check(): void {
    if (this.#signal?.aborted) throw new AirgapError('E_INTERRUPTED', 'interrupted');
  }

  #copyNode(src: SourceStore, node: GraphNode, image: string): Promise<PushOutcome> {
    const key = node.descriptor.digest;
    // Looked up before this copier registers its own promise, so it never waits on itself.
    const sibling = node.bytes === undefined ? this.#siblings?.get(key) : undefined;
    const { promise, first } = this.#once(key, async () => {
      // Children first; they run concurrently and take their own slots.
      await Promise.all(node.children.map((c) => this.#copyNode(src, c, image)));
      if (node.bytes !== undefined) return this.#pushManifest(node, image);
      if (sibling) await sibling.catch(() => undefined);
      return this.#transferBlob(src, node.descriptor, image);
    });
    if (first && node.bytes === undefined && this.#siblings && !sibling) this.#siblings.set(key, promise);
    return promise;
  }

  /**
   * Single flight per digest for this target: the first caller's work is everyone's; a failure
   * is forgotten, so a later call (a re-run in the same process) may try again.
   */
  #once(key: string, run: () => Promise<PushOutcome>): { promise: Promise<PushOutcome>; first: boolean } {
    const known = this.#inflight.get(key);
    if (known) return { promise: known, first: false };
    const promise = run();
    this.#inflight.set(key, promise);
    promise.catch(() => this.#inflight.delete(key));
    return { promise, first: true };
  }

  async #pushManifest(node: GraphNode, image: string): Promise<PushOutcome> {
    this.#check();
    const desc = node.descriptor;
    const bytes = node.bytes!;
    const outcome = !this.#dst.pushFindsExisting && (await this.#dst.exists(desc, this.#opts()))
      ? 'existed'
      : await this.#dst.push(desc, async () => Readable.from([Buffer.from(bytes)]), this.#opts());
    this.#emit({ type: 'manifest-done', digest: desc.digest, size: desc.size, image, outcome });
    return outcome;
  }

  /**
   * A big blob from a source that serves ranges goes as parallel parts (bulk slots); any other as
   * one stream in one slot, small or bulk after its size (src/concurrency.ts).
   */
  async #transferBlob(src: SourceStore, desc: Descriptor, image: string): Promise<PushOutcome> {
    const inParts = desc.size >= this.#partSize * PARTS_FROM && this.#dst.pushParts !== undefined &&
      src.fetchRange !== undefined && (await src.servesRanges?.(desc, this.#opts()).catch(() => false)) === true;
    return inParts ? this.#pushBlobInParts(src, desc, image) : this.#limits.forBlob(desc.size)(() => this.#pushBlob(src, desc, image));
  }

  async #pushBlobInParts(src: SourceStore, desc: Descriptor, image: string): Promise<PushOutcome> {
    this.#check();
    const outcome = await (async (): Promise<PushOutcome> => {
      const parts = await this.#dst.pushParts!(desc, this.#opts());
      if (!parts) return 'existed';
      this.#emit({ type: 'blob-start', digest: desc.digest, size: desc.size, image });
      await copyParts(src, parts, desc, {
        limit: this.#limits.bulk, partSize: this.#partSize, ...this.#opts(),
        onBytes: (n) => {
          this.#limits.moved(n);
          this.#emit({ type: 'blob-progress', digest: desc.digest, bytes: n });
        },
      });
      return parts.commit();
    })().catch((e: unknown) => {
      throw annotate(e, image, desc, src.label, this.#dst.label);
    });
    this.#emit({ type: 'blob-done', digest: desc.digest, size: desc.size, outcome, image });
    return outcome;
  }

  async #pushBlob(src: SourceStore, desc: Descriptor, image: string): Promise<PushOutcome> {
    this.#check();
    // A target whose push() looks first is not asked twice (one HEAD per blob, not two).
    if (!this.#dst.pushFindsExisting && await this.#dst.exists(desc, this.#opts())) {
      this.#emit({ type: 'blob-done', digest: desc.digest, size: desc.size, outcome: 'existed', image });
      return 'existed';
    }
    let started = false;
    let sent = 0;
    const open = async (): Promise<Readable> => {
      // Only a blob whose bytes move starts (push() may find it there, or mount it, without opening it).
      if (!started) this.#emit({ type: 'blob-start', digest: desc.digest, size: desc.size, image });
      started = true;
      // A restarted upload re-reads from byte 0: take back what the last attempt reported.
      if (sent > 0) this.#emit({ type: 'blob-progress', digest: desc.digest, bytes: -sent });
      sent = 0;
      const kept = this.#kept?.take(desc.digest);
      const raw = kept !== undefined ? Readable.from([kept], { objectMode: false }) : await src.fetch(desc, this.#opts());
      const progress = new ByteCounter((n) => {
        sent += n;
        this.#limits.moved(n);
        this.#emit({ type: 'blob-progress', digest: desc.digest, bytes: n });
      });
      // pipeline wires error propagation both ways; the consumer reads from `progress`. A target
      // that verifies what it stores (the bundle writer), or a source that hashed the blob before
      // anything moved (a one-stream .airgap's scan), is the one place these bytes are hashed.
      const done = this.#dst.verifiesContent || (kept === undefined && src.verified?.(desc.digest))
        ? pipeline(raw, progress)
        : pipeline(raw, new VerifyingStream(desc, `${image}: blob`), progress);
      done.catch(() => undefined);
      return progress;
    };
    const outcome = await this.#dst.push(desc, open, this.#opts()).catch((e: unknown) => {
      throw annotate(e, image, desc, src.label, this.#dst.label);
    });
    this.#emit({ type: 'blob-done', digest: desc.digest, size: desc.size, outcome, image });
    return outcome;
  }
}

/** Says which image and which side failed, keeping the original code and hint. */
function annotate(e: unknown, image: string, desc: Descriptor, from: string, to: string): unknown {
  if (!(e instanceof AirgapError)) return e;
  if (e.message.includes(image)) return e;
  const side = e.code === 'E_DIGEST_MISMATCH' ? `from ${from}` : `${from} → ${to}`;
  return new AirgapError(e.code, `${image} (${side}): ${e.message}`, { ...(e.hint ? { hint: e.hint } : {}), cause: e });
}
