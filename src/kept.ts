import { Readable } from 'node:stream';
import type { Descriptor } from './oci/descriptor.js';
import type { FetchOptions, Resolved, SourceStore } from './store.js';

/**
 * Small blobs a build has already downloaded whole before the copy starts (an image's config,
 * read to learn its platform): the copy takes them from memory instead of asking the registry a
 * second time. Each is handed out once and then forgotten, and the whole store is bounded, so a
 * build of thousands of images holds at most `budget` bytes here; a blob that does not fit is
 * simply downloaded again. The copy engine verifies these bytes like any others.
 */
export class KeptBlobs {
  readonly #blobs = new Map<string, Buffer>();
  readonly #budget: number;
  #bytes = 0;

  constructor(budget = DEFAULT_KEPT_BYTES) {
    this.#budget = budget;
  }

  keep(digest: string, bytes: Buffer): void {
    if (this.#blobs.has(digest) || this.#bytes + bytes.length > this.#budget) return;
    this.#blobs.set(digest, bytes);
    this.#bytes += bytes.length;
  }

  /** The bytes of `digest`, once; undefined when not kept (or already taken). */
  take(digest: string): Buffer | undefined {
    const bytes = this.#blobs.get(digest);
    if (bytes === undefined) return undefined;
    this.#blobs.delete(digest);
    this.#bytes -= bytes.length;
    return bytes;
  }

  get size(): number {
    return this.#bytes;
  }

  /** `src`, except that fetch() of a kept blob answers from memory. */
  over(src: SourceStore): SourceStore {
    return new KeptSource(src, this);
  }
}

/** Image configs are a few KB each: 32 MiB holds thousands. */
export const DEFAULT_KEPT_BYTES = 32 * 1024 * 1024;

class KeptSource implements SourceStore {
  readonly label: string;
  readonly #src: SourceStore;
  readonly #kept: KeptBlobs;
  readonly servesRanges?: SourceStore['servesRanges'];
  readonly fetchRange?: SourceStore['fetchRange'];
  readonly peek?: SourceStore['peek'];
  readonly referrers?: SourceStore['referrers'];

  constructor(src: SourceStore, kept: KeptBlobs) {
    this.#src = src;
    this.#kept = kept;
    this.label = src.label;
    if (src.servesRanges) this.servesRanges = src.servesRanges.bind(src);
    if (src.fetchRange) this.fetchRange = src.fetchRange.bind(src);
    if (src.peek) this.peek = src.peek.bind(src);
    if (src.referrers) this.referrers = src.referrers.bind(src);
  }

  resolve(reference: string, opts?: FetchOptions): Promise<Resolved> {
    return this.#src.resolve(reference, opts);
  }

  async fetch(desc: Descriptor, opts?: FetchOptions): Promise<Readable> {
    const bytes = this.#kept.take(desc.digest);
    return bytes !== undefined ? Readable.from([bytes], { objectMode: false }) : this.#src.fetch(desc, opts);
  }
}
