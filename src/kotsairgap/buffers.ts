/**
 * The buffers a walk of a one-stream .airgap reads the file into (inflate.ts), used again once
 * nobody holds them: a fresh buffer per read costs page faults and garbage collection (reads of
 * 200 MB from the page cache: 39-43 ms into reused buffers, 80-89 ms into fresh ones, 128-146 ms
 * into fresh shared ones). The walk holds a buffer until it is a few reads past it; with a
 * shared pool, the hashing thread (hashthread.ts) holds one until it has hashed its views of it.
 * What is handed out of a buffer is good only while it is held: the scan copies what it keeps.
 */
export class BufferPool {
  readonly size: number;
  readonly shared: boolean;
  readonly #holders = new Map<ArrayBufferLike, number>();
  readonly #free: ArrayBufferLike[] = [];
  #made = 0;

  /** `ready` buffers are made at once (a shared pool: made while the thread starts, not while the walk waits). */
  constructor(size: number, shared = false, ready = 0) {
    this.size = size;
    this.shared = shared;
    for (let i = 0; i < ready; i++) this.#free.push(this.#make());
  }

  /** A buffer to read into, held once (by the caller). */
  get(): Buffer {
    const ab = this.#free.pop() ?? this.#make();
    this.#holders.set(ab, 1);
    return Buffer.from(ab, 0, this.size);
  }

  /** One more holder of the shared buffer under `view`; false when it is not one of this pool's shared ones (then nothing is held). */
  hold(view: Uint8Array): boolean {
    const ab = view.buffer;
    if (!this.shared || !(ab instanceof SharedArrayBuffer)) return false;
    const n = this.#holders.get(ab);
    if (n === undefined) return false;
    this.#holders.set(ab, n + 1);
    return true;
  }

  /** One holder fewer; the last one gives the buffer back (anything not of this pool is ignored). */
  release(ab: ArrayBufferLike): void {
    const n = this.#holders.get(ab);
    if (n === undefined) return;
    if (n > 1) { this.#holders.set(ab, n - 1); return; }
    this.#holders.delete(ab);
    this.#free.push(ab);
  }

  /** Buffers made so far (the pool's memory is this times size). */
  get made(): number {
    return this.#made;
  }

  #make(): ArrayBufferLike {
    this.#made++;
    return this.shared ? new SharedArrayBuffer(this.size) : Buffer.allocUnsafeSlow(this.size).buffer;
  }
}
