import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import type { BufferPool } from './buffers.js';

/**
 * SHA-256 (and, where asked, CRC-32) of blobs on worker threads, so that the scan of a one-stream
 * .airgap (scan.ts) verifies every layer before anything is pushed without the hashing adding to
 * its time: the walk goes on through the file on the main thread and sends each layer's bytes,
 * as views of the shared buffers it read the file into (buffers.ts), to a worker that hashes
 * them there. Each view holds its buffer until the worker has hashed it; bytes not in such a
 * buffer (Huffman output) are copied. At most IN_FLIGHT bytes wait for a worker: past that the
 * walk waits (room()).
 *
 * The worker is a few lines of plain JavaScript run from a string, so it needs no file of its own
 * beside the bundled executable and no loader in tests.
 */

const WORKER = `
const { parentPort } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const { crc32 } = require('node:zlib');
const hashes = new Map();
parentPort.on('message', (m) => {
  try {
    if (m.t === 'u') {
      let h = hashes.get(m.id);
      if (!h) { h = { hash: createHash('sha256'), crc: undefined }; hashes.set(m.id, h); }
      for (const p of m.parts) {
        if (p === 'crc') { h.crc = 0; continue; }
        const b = p instanceof Uint8Array ? p : new Uint8Array(p[0], p[1], p[2]);
        h.hash.update(b);
        if (h.crc !== undefined) h.crc = crc32(b, h.crc);
      }
      parentPort.postMessage({ t: 'ack', n: m.n });
    } else if (m.t === 'd') {
      const h = hashes.get(m.id) ?? { hash: createHash('sha256'), crc: undefined };
      hashes.delete(m.id);
      parentPort.postMessage({ t: 'd', id: m.id, digest: 'sha256:' + h.hash.digest('hex'), crc: h.crc ?? 0 });
    }
  } catch (e) {
    parentPort.postMessage({ t: 'err', message: String((e && e.message) || e) });
  }
});
`;

/** Bytes sent to workers and not hashed yet, past which the sender waits. */
const IN_FLIGHT = 32 << 20;
/** Parts are sent in batches of about this many bytes. */
const BATCH = 1 << 20;

/** A view of a shared buffer, bytes copied, or the mark after which the CRC-32 is computed too. */
type Part = [SharedArrayBuffer, number, number] | Uint8Array | 'crc';

interface Lane {
  worker: Worker;
  /** Bytes given to this worker in all (for picking the least loaded). */
  load: number;
  /** The shared buffers each batch sent holds, in the order sent (the worker acknowledges in order). */
  held: SharedArrayBuffer[][];
  digests: Map<number, { resolve: (d: { digest: string; crc: number }) => void; reject: (e: Error) => void }>;
}

export class HashPool {
  readonly #lanes: Lane[] = [];
  readonly #buffers: BufferPool;
  #nextId = 0;
  #inFlight = 0;
  #waiters: (() => void)[] = [];
  #failed: Error | undefined;

  /** Workers: one fewer than the machine's processors (the walk has the main thread), at least one, at most four. */
  constructor(buffers: BufferPool, n = Math.max(1, Math.min(4, availableParallelism() - 1))) {
    this.#buffers = buffers;
    for (let i = 0; i < n; i++) {
      const worker = new Worker(WORKER, { eval: true, execArgv: [] });
      const lane: Lane = { worker, load: 0, held: [], digests: new Map() };
      worker.on('message', (m: { t: string; n?: number; id?: number; digest?: string; crc?: number; message?: string }) => {
        if (m.t === 'ack') this.#acked(lane, m.n!);
        else if (m.t === 'd') { lane.digests.get(m.id!)?.resolve({ digest: m.digest!, crc: m.crc! }); lane.digests.delete(m.id!); }
        else this.#fail(new Error(`hashing failed: ${m.message}`));
      });
      worker.on('error', (e) => this.#fail(e));
      worker.on('exit', (code) => { if (code !== 0) this.#fail(new Error(`the hashing thread stopped (exit code ${code})`)); });
      this.#lanes.push(lane);
    }
  }

  /** A blob to hash, on the least loaded worker. */
  start(): BlobHash {
    const lane = this.#lanes.reduce((a, b) => (b.load < a.load ? b : a));
    return new BlobHash(this, lane, this.#nextId++);
  }

  /** Too many bytes wait for the workers: room() says when there is room again. */
  get full(): boolean {
    return this.#inFlight > IN_FLIGHT;
  }

  async room(): Promise<void> {
    while (this.#inFlight > IN_FLIGHT && !this.#failed) await new Promise<void>((r) => this.#waiters.push(r));
    if (this.#failed) throw this.#failed;
  }

  async close(): Promise<void> {
    this.#fail(new Error('the hashing threads were stopped'));
    await Promise.all(this.#lanes.map((l) => l.worker.terminate()));
  }

  /** @internal A view to send: held until the worker has hashed it, or copied when not in a shared buffer. */
  part(b: Buffer): Part {
    if (this.#buffers.hold(b)) return [b.buffer as SharedArrayBuffer, b.byteOffset, b.length];
    return Uint8Array.prototype.slice.call(b);
  }

  /** @internal */
  send(lane: Lane, id: number, parts: Part[], bytes: number): void {
    if (this.#failed) throw this.#failed;
    this.#inFlight += bytes;
    lane.load += bytes;
    lane.held.push(parts.flatMap((p) => (Array.isArray(p) ? [p[0]] : [])));
    lane.worker.postMessage({ t: 'u', id, parts, n: bytes });
  }

  /** @internal */
  digest(lane: Lane, id: number): Promise<{ digest: string; crc: number }> {
    if (this.#failed) return Promise.reject(this.#failed);
    return new Promise<{ digest: string; crc: number }>((resolve, reject) => {
      lane.digests.set(id, { resolve, reject });
      lane.worker.postMessage({ t: 'd', id });
    });
  }

  #acked(lane: Lane, n: number): void {
    for (const sab of lane.held.shift() ?? []) this.#buffers.release(sab);
    this.#inFlight -= n;
    if (this.#inFlight <= IN_FLIGHT) for (const w of this.#waiters.splice(0)) w();
  }

  #fail(e: Error): void {
    if (this.#failed) return;
    this.#failed = e;
    for (const lane of this.#lanes) {
      for (const d of lane.digests.values()) d.reject(e);
      lane.digests.clear();
    }
    for (const w of this.#waiters.splice(0)) w();
  }
}

export class BlobHash {
  readonly #pool: HashPool;
  readonly #lane: Lane;
  readonly #id: number;
  #parts: Part[] = [];
  #bytes = 0;
  #result: Promise<{ digest: string; crc: number }> | undefined;
  #crc: { resolve: (n: number) => void; reject: (e: Error) => void } | undefined;

  /** @internal */
  constructor(pool: HashPool, lane: Lane, id: number) {
    this.#pool = pool;
    this.#lane = lane;
    this.#id = id;
  }

  /** The next bytes of the blob (a view of a shared buffer is sent as it is, anything else copied). */
  update(b: Buffer): void {
    if (b.length === 0) return;
    this.#parts.push(this.#pool.part(b));
    this.#bytes += b.length;
    if (this.#bytes >= BATCH) this.#flush();
  }

  /**
   * From here on, the CRC-32 of what follows is computed too: a stretch whose CRC the walk leaves
   * to the worker. The promise settles with the digest (digest() must be called).
   */
  crcFrom(): Promise<number> {
    this.#parts.push('crc');
    return new Promise<number>((resolve, reject) => { this.#crc = { resolve, reject }; });
  }

  /** The blob's digest, once the worker has hashed every byte. */
  digest(): Promise<string> {
    if (!this.#result) {
      this.#flush();
      this.#result = this.#pool.digest(this.#lane, this.#id);
      const crc = this.#crc;
      this.#result.then((r) => crc?.resolve(r.crc), (e: Error) => crc?.reject(e));
    }
    return this.#result.then((r) => r.digest);
  }

  #flush(): void {
    if (this.#parts.length === 0) return;
    this.#pool.send(this.#lane, this.#id, this.#parts, this.#bytes);
    this.#parts = [];
    this.#bytes = 0;
  }
}
