import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';

/**
 * SHA-256 of blobs on worker threads, so that the scan of a one-stream .airgap (scan.ts) hashes
 * every layer before anything is pushed without the hashing adding to its time: the walk goes on
 * through the file on the main thread and says where each layer's bytes lie (stored blocks:
 * offsets in the file), and a worker reads them from the file itself and hashes them. Bytes that
 * are not in the file as they are (Huffman output) are sent along, copied.
 *
 * The worker is a few lines of plain JavaScript run from a string, so it needs no file of its own
 * beside the bundled executable and no loader in tests.
 */

const WORKER = `
const { parentPort, workerData } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const { openSync, readSync, closeSync } = require('node:fs');
const fd = openSync(workerData.path, 'r');
const buf = Buffer.allocUnsafe(4 << 20);
let start = 0, end = 0;
const hashes = new Map();
function span(h, c, len) {
  while (len > 0) {
    if (c < start || c >= end) {
      const n = readSync(fd, buf, 0, buf.length, c);
      if (n === 0) throw new Error('the file ends at byte ' + c);
      start = c; end = c + n;
    }
    const k = Math.min(len, end - c);
    h.update(buf.subarray(c - start, c - start + k));
    c += k; len -= k;
  }
}
parentPort.on('message', (m) => {
  try {
    if (m.t === 'u') {
      let h = hashes.get(m.id);
      if (!h) { h = createHash('sha256'); hashes.set(m.id, h); }
      for (const p of m.parts) {
        if (p instanceof Uint8Array) h.update(p);
        else for (let i = 0; i < p.length; i += 2) span(h, p[i], p[i + 1]);
      }
    } else if (m.t === 'd') {
      const h = hashes.get(m.id) ?? createHash('sha256');
      hashes.delete(m.id);
      parentPort.postMessage({ t: 'd', id: m.id, digest: 'sha256:' + h.digest('hex') });
    } else if (m.t === 'close') {
      closeSync(fd);
      parentPort.close();
    }
  } catch (e) {
    parentPort.postMessage({ t: 'err', message: String((e && e.message) || e) });
  }
});
`;

/** Stretches are sent in batches of about this many bytes. */
const BATCH = 4 << 20;

interface Lane {
  worker: Worker;
  /** Bytes given to this worker in all (for picking the least loaded). */
  load: number;
  digests: Map<number, { resolve: (d: string) => void; reject: (e: Error) => void }>;
}

export class HashPool {
  readonly #lanes: Lane[] = [];
  #nextId = 0;
  #failed: Error | undefined;

  /** Workers reading `path`: one fewer than the machine's processors (the walk has the main thread), at least one, at most four. */
  constructor(path: string, n = Math.max(1, Math.min(4, availableParallelism() - 1))) {
    for (let i = 0; i < n; i++) {
      const worker = new Worker(WORKER, { eval: true, execArgv: [], workerData: { path } });
      const lane: Lane = { worker, load: 0, digests: new Map() };
      worker.on('message', (m: { t: string; id?: number; digest?: string; message?: string }) => {
        if (m.t === 'd') { lane.digests.get(m.id!)?.resolve(m.digest!); lane.digests.delete(m.id!); }
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

  async close(): Promise<void> {
    this.#fail(new Error('the hashing threads were stopped'));
    await Promise.all(this.#lanes.map((l) => l.worker.terminate()));
  }

  /** @internal */
  send(lane: Lane, msg: { t: 'u'; id: number; parts: (Uint8Array | number[])[] } | { t: 'd'; id: number }, bytes: number): void {
    if (this.#failed) throw this.#failed;
    lane.load += bytes;
    lane.worker.postMessage(msg);
  }

  /** @internal */
  digest(lane: Lane, id: number): Promise<string> {
    if (this.#failed) return Promise.reject(this.#failed);
    return new Promise<string>((resolve, reject) => {
      lane.digests.set(id, { resolve, reject });
      this.send(lane, { t: 'd', id }, 0);
    });
  }

  #fail(e: Error): void {
    if (this.#failed) return;
    this.#failed = e;
    for (const lane of this.#lanes) {
      for (const d of lane.digests.values()) d.reject(e);
      lane.digests.clear();
    }
  }
}

export class BlobHash {
  readonly #pool: HashPool;
  readonly #lane: Lane;
  readonly #id: number;
  #parts: (Uint8Array | number[])[] = [];
  #bytes = 0;

  /** @internal */
  constructor(pool: HashPool, lane: Lane, id: number) {
    this.#pool = pool;
    this.#lane = lane;
    this.#id = id;
  }

  /** The next `len` bytes of the blob lie in the file at offset `c`. */
  span(c: number, len: number): void {
    if (len === 0) return;
    const last = this.#parts[this.#parts.length - 1];
    if (Array.isArray(last)) {
      // Right after the last stretch: one longer stretch.
      if (last[last.length - 2]! + last[last.length - 1]! === c) last[last.length - 1]! += len;
      else last.push(c, len);
    } else this.#parts.push([c, len]);
    this.#grow(len);
  }

  /** The next bytes of the blob, as they are (copied). */
  bytes(b: Buffer): void {
    if (b.length === 0) return;
    this.#parts.push(Uint8Array.prototype.slice.call(b));
    this.#grow(b.length);
  }

  /** The blob's digest, once the worker has hashed every byte. */
  digest(): Promise<string> {
    this.#flush();
    return this.#pool.digest(this.#lane, this.#id);
  }

  #grow(n: number): void {
    this.#bytes += n;
    if (this.#bytes >= BATCH) this.#flush();
  }

  #flush(): void {
    if (this.#parts.length === 0) return;
    this.#pool.send(this.#lane, { t: 'u', id: this.#id, parts: this.#parts }, this.#bytes);
    this.#parts = [];
    this.#bytes = 0;
  }
}
