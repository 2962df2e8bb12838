/**
 * The buffers a walk of a one-stream .airgap reads the file into (inflate.ts), used again once
 * the walk is a few reads past them: a fresh buffer per read costs page faults and garbage
 * collection (reads of 200 MB from the page cache: 39-43 ms into reused buffers, 80-89 ms into
 * fresh ones). What is handed out of a buffer (views) is good only while it is held: the scan
 * copies what it keeps.
 */
export class BufferPool {
  readonly size: number;
  readonly #held = new Set<ArrayBufferLike>();
  readonly #free: ArrayBufferLike[] = [];
  #made = 0;

  constructor(size: number) {
    this.size = size;
  }

  /** A buffer to read into, held until released. */
  get(): Buffer {
    let ab = this.#free.pop();
    if (!ab) {
      this.#made++;
      ab = Buffer.allocUnsafeSlow(this.size).buffer;
    }
    this.#held.add(ab);
    return Buffer.from(ab, 0, this.size);
  }

  /** Gives a buffer of this pool back (anything else is ignored). */
  release(ab: ArrayBufferLike): void {
    if (!this.#held.delete(ab)) return;
    this.#free.push(ab);
  }

  /** Buffers made so far (the pool's memory is this times size). */
  get made(): number {
    return this.#made;
  }
}
