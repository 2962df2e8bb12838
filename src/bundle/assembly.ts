import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import { AirgapError } from '../errors.js';
import type { Descriptor } from '../oci/descriptor.js';

/**
 * One blob being written into its planned place in the bundle, as one or more parts that may
 * arrive concurrently and out of order. Every byte is written once, straight from the network
 * chunk to its offset, and hashed once, in blob order:
 *  - a chunk that lands exactly at the hashed frontier is hashed from memory as it passes;
 *  - bytes that arrive ahead of the frontier (a later part) are hashed when the frontier reaches
 *    them, read back from the file (the page cache) through one small buffer.
 * So memory stays bounded whatever the blob size, and a sequential push (one part) never reads
 * anything back.
 *
 *          0                           a                              b
 *   part A [=========== hashed ======>)                                      A = [0, a)
 *   part B                             [---- written ---->           )       B = [a, b), ahead
 *                                    ^ #hashed, the frontier
 *   A's next chunk starts at the frontier: hashed from memory, and the frontier moves with it.
 *   B's chunks are only written. Once the frontier reaches a, the next chunk of B (or verify())
 *   starts #readBack(): [a, B.written) is read from the file through the 1 MiB buffer and hashed;
 *   after that B's chunks land at the frontier and are hashed from memory too.
 */

export interface AssemblyIo {
  /** Writes `chunks` one after the other from `position` (one vectored write: no copy into one buffer). */
  write(chunks: Uint8Array[], position: number): Promise<void>;
  read(into: Buffer, length: number, position: number): Promise<void>;
}

interface Part {
  start: number;
  end: number;
  /** Absolute blob offset up to which this part's bytes are on disk. */
  written: number;
}

const READBACK_BUFFER = 1 << 20;
/** Bytes gathered from the network before one positional write. */
const WRITE_BATCH = 256 * 1024;

export class BlobAssembly {
  readonly #desc: Descriptor;
  readonly #base: number;
  readonly #io: AssemblyIo;
  readonly #what: string;
  readonly #hash = createHash('sha256');
  readonly #parts: Part[] = [];
  /** Blob offset up to which the hash has consumed the content, in order. */
  #hashed = 0;
  #catchUp: Promise<void> | undefined;
  #buffer: Buffer | undefined;
  #failed: unknown;

  /** `base` is the blob's body offset in the file; `what` names the blob in errors. */
  constructor(desc: Descriptor, base: number, io: AssemblyIo, what: string) {
    this.#desc = desc;
    this.#base = base;
    this.#io = io;
    this.#what = what;
  }

  get hashedBytes(): number {
    return this.#hashed;
  }

  /**
   * Streams bytes [start, end) of the blob to their place. Awaiting each positional write before
   * taking the next chunk is the backpressure; leaving the loop early destroys the source.
   */
  async writePart(start: number, end: number, source: Readable): Promise<void> {
    const size = this.#desc.size;
    if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || end > size || start > end) {
      throw new AirgapError('E_OUTPUT', `${this.#what}: part [${start}, ${end}) is outside the blob's ${size} bytes`);
    }
    if (this.#parts.some((p) => start < p.end && p.start < end)) {
      throw new AirgapError('E_OUTPUT', `${this.#what}: part [${start}, ${end}) overlaps a part already being written`);
    }
    const part: Part = { start, end, written: start };
    this.#parts.push(part);
    // Network chunks are 16–64 KiB: gathered into one vectored write of up to WRITE_BATCH, a
    // system call per batch rather than per chunk, and no copy.
    let batch: Buffer[] = [];
    let batched = 0;
    const flush = async (): Promise<void> => {
      if (batched === 0) return;
      const chunks = batch;
      const length = batched;
      batch = [];
      batched = 0;
      const at = part.written;
      await this.#io.write(chunks, this.#base + at);
      part.written = at + length;
      if (this.#hashed === at && this.#catchUp === undefined) {
        for (const c of chunks) this.#hash.update(c);
        this.#hashed = part.written;
      } else {
        this.#startCatchUp();
      }
    };
    for await (const chunk of source as AsyncIterable<Buffer>) {
      if (this.#failed !== undefined) throw this.#failed;
      if (part.written + batched + chunk.length > end) {
        throw this.#mismatch(end === size && start === 0 ? `more than the expected ${size} bytes` : `part [${start}, ${end}) got more than ${end - start} bytes`);
      }
      batch.push(chunk);
      batched += chunk.length;
      if (batched >= WRITE_BATCH) await flush();
    }
    await flush();
    if (part.written !== end) {
      throw this.#mismatch(start === 0 && end === size ? `${part.written} bytes, expected ${size}` : `part [${start}, ${end}) ended after ${part.written - start} bytes`);
    }
  }

  /** After every part is written: the whole blob must be covered and hash to its digest. */
  async verify(): Promise<void> {
    this.#startCatchUp();
    while (this.#catchUp) await this.#catchUp;
    if (this.#failed !== undefined) throw this.#failed;
    if (this.#hashed !== this.#desc.size) {
      throw this.#mismatch(`${this.#hashed} bytes, expected ${this.#desc.size}`);
    }
    const got = `sha256:${this.#hash.digest('hex')}`;
    if (got !== this.#desc.digest) throw this.#mismatch(`content hashes to ${got}`);
  }

  #startCatchUp(): void {
    if (this.#catchUp || this.#failed !== undefined) return;
    this.#catchUp = this.#readBack().catch((e: unknown) => { this.#failed = e; }).finally(() => {
      this.#catchUp = undefined;
      // A chunk written while this run was finishing saw it still running: pick it up now.
      if (this.#readable() !== undefined) this.#startCatchUp();
    });
  }

  /** Hashes, from the file, every written byte contiguous with the frontier. */
  async #readBack(): Promise<void> {
    for (;;) {
      const part = this.#readable();
      if (!part) return;
      const buffer = (this.#buffer ??= Buffer.allocUnsafe(READBACK_BUFFER));
      const n = Math.min(buffer.length, part.written - this.#hashed);
      await this.#io.read(buffer, n, this.#base + this.#hashed);
      this.#hash.update(buffer.subarray(0, n));
      this.#hashed += n;
    }
  }

  /** The part holding written bytes at the frontier, if any. */
  #readable(): Part | undefined {
    return this.#parts.find((p) => p.start <= this.#hashed && this.#hashed < p.written);
  }

  #mismatch(detail: string): AirgapError {
    return new AirgapError('E_DIGEST_MISMATCH', `${this.#what} ${this.#desc.digest} does not match its content (${detail})`,
      { hint: 'the source served corrupt or tampered data; retry, and report it to the registry operator if it persists' });
  }
}
