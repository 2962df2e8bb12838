/**
 * Small blobs a build has already downloaded whole before the copy starts (an image's config,
 * read to learn its platform): the copy takes them from memory instead of asking the registry a
 * second time (CopierOptions.kept). Each is handed out once and then forgotten, and the whole
 * store is bounded, so a
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
}

/** Image configs are a few KB each: 32 MiB holds thousands. */
export const DEFAULT_KEPT_BYTES = 32 * 1024 * 1024;
