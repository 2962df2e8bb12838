/**
 * The buffers a walk of a one-stream .airgap reads the file into (inflate.ts), used again once
 * nobody needs them: the walk itself (until it is a few reads past one) and, where the pool is
 * shared memory, the hashing threads (hashers.ts, until they have hashed the views of it they
 * were sent), which then read the bytes where the walk put them: no second read, no copy.
 *
 * Each buffer counts its holders; at zero it is free to read into again. What is handed out of a
 * buffer (views) is good only while someone holds it: the scan copies what it keeps.
 */
export class BufferPool {
  readonly size: number;
  readonly shared: boolean;
  readonly #holders = new Map<ArrayBufferLike, number>();
  readonly #free: ArrayBufferLike[] = [];
  #made = 0;

  constructor(size: number, shared = false) {
    this.size = size;
    this.shared = shared;
  }

  /** A buffer to read into, held once (by the caller). */
  get(): Buffer {
    let ab = this.#free.pop();
    if (!ab) {
      this.#made++;
      ab = this.shared ? new SharedArrayBuffer(this.size) : Buffer.allocUnsafeSlow(this.size).buffer;
    }
    this.#holders.set(ab, 1);
    return Buffer.from(ab, 0, this.size);
  }

  /** One more holder of the shared buffer under `view`; false when it is not one of this pool's shared ones (then nothing is held). */
  hold(view: Uint8Array): boolean {
    const ab = view.buffer;
    if (!(ab instanceof SharedArrayBuffer)) return false;
    const n = this.#holders.get(ab);
    if (n === undefined) return false;
    this.#holders.set(ab, n + 1);
    return true;
  }

  /** One holder fewer; the last one gives the buffer back. */
  release(sab: ArrayBufferLike): void {
    const n = this.#holders.get(sab);
    if (n === undefined) return;
    if (n > 1) { this.#holders.set(sab, n - 1); return; }
    this.#holders.delete(sab);
    this.#free.push(sab);
  }

  /** Buffers made so far (the pool's memory is this times size). */
  get made(): number {
    return this.#made;
  }
}
