import { createReadStream } from 'node:fs';
import { open } from 'node:fs/promises';
import type { Region } from './inflate.js';

/**
 * Reading deflate's stored blocks straight from the file, without zlib. A layer is compressed
 * already, so a .tar.gz holds it mostly in stored blocks (deflate falls back to them where
 * compressing does not pay; `build --format kots` writes layers as stored blocks only): a
 * 5-byte header on a byte boundary (BFINAL, BTYPE = 00, LEN, NLEN = ~LEN) then LEN bytes as
 * they are. Those bytes are read from the file at any offset, in any order, as fast as our own
 * bundle is read: no inflating a one-stream file from its start for each blob.
 *
 * A blob of a one-stream file (the vendor portal's) is located by the scan, which walks the
 * file's deflate blocks itself (inflate.ts, PieceBuilder): the few Huffman blocks it touches (its
 * start shares a block with the tar header before it, its end with the next one; now and then
 * deflate codes a block of a layer) are kept in memory, its stored stretches located in the file. Headers are checked
 * again as they are read; where they no longer hold, zlib takes over. The digest is checked by
 * whoever reads the blob, as for every source.
 */

/** A byte of the decompressed stream inside a stored block: where it is, and how much of its block is left. */
export interface StoredAnchor {
  /** Offset in the file. */
  c: number;
  /** Offset in the decompressed stream. */
  d: number;
  /** Bytes of the block left from here (0: a block header is next). */
  left: number;
}

/** A stretch of a blob: bytes kept in memory, or stored blocks from `anchor` up to decompressed offset `until`. */
export type Piece = { bytes: Buffer } | StoredPiece;

export interface StoredPiece {
  anchor: StoredAnchor;
  until: number;
  /** Where the blob's bytes start, after the anchor (a member's tar header). */
  from?: number;
  /** Written by build --format kots: blocks of STORED_BLOCK bytes, read a run at a time (readBlocks). */
  blocks?: boolean;
  /**
   * Found by the scan's walk (one-stream files): the data lengths of the stored blocks that follow
   * the anchor's, each after its 5-byte header, so a read lays them out in advance (readLaid).
   */
  lens?: Uint16Array;
}

/** The stored block `build --format kots` writes: the most deflate allows. */
export const STORED_BLOCK = 0xffff;

const HEADER = 5;

/** The stored block header at `b[i]`, or undefined when it is not one (another block type, LEN ≠ ~NLEN). */
export function storedHeader(b: Buffer, i: number): { len: number; final: boolean } | undefined {
  if (i < 0 || i + HEADER > b.length || ((b[i]! >> 1) & 3) !== 0) return undefined;
  const len = b.readUInt16LE(i + 1);
  if ((len ^ b.readUInt16LE(i + 3)) !== 0xffff) return undefined;
  return { len, final: (b[i]! & 1) === 1 };
}

/**
 * Bytes [start, end) of the decompressed stream, read from stored blocks from `a` on (a.d ≤
 * start). Returns where it stopped: `end`, or before it where a block is not stored or the file
 * ends.
 */
export async function* readStored(path: string, a: StoredAnchor, start: number, end: number, signal?: AbortSignal): AsyncGenerator<Buffer, number> {
  let d = a.d;
  let left = a.left;
  let head = Buffer.alloc(0);
  let final = false;
  const file = createReadStream(path, { start: a.c, highWaterMark: 1 << 20, ...(signal ? { signal } : {}) });
  try {
    reading: for await (const chunk of file as AsyncIterable<Buffer>) {
      // The chunk's data without the block headers, as one buffer: a few large chunks move through
      // the streams downstream (hash, upload) far cheaper than one per block.
      const out: Buffer[] = [];
      const flush = () => (out.length === 1 ? out[0]! : Buffer.concat(out));
      let i = 0;
      while (i < chunk.length) {
        if (left === 0) {
          if (final) { if (out.length > 0) yield flush(); break reading; }
          const need = HEADER - head.length;
          head = Buffer.concat([head, chunk.subarray(i, i + need)]);
          i += Math.min(need, chunk.length - i);
          if (head.length < HEADER) continue;
          const h = storedHeader(head, 0);
          head = Buffer.alloc(0);
          if (!h) { if (out.length > 0) yield flush(); break reading; }
          left = h.len;
          final = h.final;
          continue;
        }
        const n = Math.min(left, chunk.length - i);
        // The part of [d, d + n) inside [start, end).
        const from = Math.max(d, start);
        const to = Math.min(d + n, end);
        if (from < to) out.push(chunk.subarray(i + from - d, i + to - d));
        d += n;
        i += n;
        left -= n;
        if (d >= end) { if (out.length > 0) yield flush(); return end; }
      }
      if (out.length > 0) yield flush();
    }
  } finally {
    file.destroy();
  }
  return Math.max(d, start);
}

/**
 * As readStored, for blocks of STORED_BLOCK bytes (build --format kots): the run is laid out as
 * full blocks (readLaid), 1 MiB per read with no copy; the first header that is not one (the
 * member's last block, or a file written otherwise) is where readStored carries on.
 */
export function readBlocks(path: string, a: StoredAnchor, start: number, end: number, signal?: AbortSignal): AsyncGenerator<Buffer, number> {
  if (a.left !== 0) return readStored(path, a, start, end, signal);
  const lens = new Uint16Array(Math.ceil(Math.max(0, end - a.d) / STORED_BLOCK)).fill(STORED_BLOCK);
  return readLaid(path, a, lens, start, end, signal);
}

/**
 * Stored blocks whose lengths are known (`lens`: the blocks after the anchor's; noted by the
 * scan's walk, or full blocks, readBlocks): about 1 MiB is laid out per read, the anchor block's remaining data and then each
 * block's header into its own buffer and its data back to back into one, so the blob's bytes
 * arrive in one buffer, uncopied. Every header is checked after the read (stored, LEN as noted);
 * where one is not, readStored carries on from there.
 */
export async function* readLaid(path: string, a: StoredAnchor, lens: Uint16Array, start: number, end: number, signal?: AbortSignal): AsyncGenerator<Buffer, number> {
  const PER_READ = 1 << 20;
  const fh = await open(path, 'r');
  let { c, d } = a;
  /** -1: the anchor block's remaining data (no header); then lens[i]. */
  let i = -1;
  try {
    while (d < end && i < lens.length) {
      signal?.throwIfAborted();
      // What this read covers: segments up to PER_READ bytes of data, or the end of the range.
      let dataLen = 0;
      let heads = 0;
      let j = i;
      while (j < lens.length && (dataLen === 0 || (dataLen < PER_READ && d + dataLen < end))) {
        dataLen += j === -1 ? a.left : lens[j]!;
        if (j !== -1) heads++;
        j++;
      }
      const data = Buffer.allocUnsafe(dataLen);
      const head = Buffer.allocUnsafe(heads * HEADER);
      const iov: Buffer[] = [];
      let at = 0;
      let h = 0;
      for (let k = i; k < j; k++) {
        const len = k === -1 ? a.left : lens[k]!;
        if (k !== -1) { iov.push(head.subarray(h * HEADER, (h + 1) * HEADER)); h++; }
        iov.push(data.subarray(at, at + len));
        at += len;
      }
      const { bytesRead } = await fh.readv(iov.filter((b) => b.length > 0), c);
      // How much of the laid-out data is good: up to the first header that is not as noted, or the end of what was read.
      let valid = 0;
      let file = 0;
      let broken = false;
      /** A member's last block was read: nothing of this stream lies after it. */
      let final = false;
      /** Where it broke: data of the block left unread (0: at a header). */
      let left = 0;
      h = 0;
      for (let k = i; k < j; k++) {
        const len = k === -1 ? a.left : lens[k]!;
        if (k !== -1) {
          const hd = file + HEADER <= bytesRead ? storedHeader(head, h * HEADER) : undefined;
          if (!hd || hd.len !== len) { broken = true; break; }
          file += HEADER;
          h++;
          final = hd.final;
        }
        const got = Math.max(0, Math.min(len, bytesRead - file));
        valid += got;
        file += got;
        if (got < len) { broken = true; left = len - got; break; }
        if (final) break;
      }
      const from = Math.max(0, start - d);
      const to = Math.min(valid, end - d);
      if (from < to) yield data.subarray(from, to);
      if (d + valid >= end) return end;
      // The stream ends before the range does (the file changed): the caller falls back.
      if (final) return Math.max(d + valid, start);
      if (broken) {
        // At a header that is not as noted (or the file ends): readStored looks at it itself.
        return yield* readStored(path, { c: c + file, d: d + valid, left }, Math.max(start, d + valid), end, signal);
      }
      c += file;
      d += valid;
      i = j;
    }
    return Math.max(d, start);
  } finally {
    await fh.close();
  }
}

/** A whole blob from its pieces; `fallback(at)` gives its bytes from `at` to its end where stored blocks stop early (the file changed). */
export async function* readPieces(path: string, pieces: Piece[], fallback: (at: number) => AsyncIterable<Buffer>, signal?: AbortSignal): AsyncGenerator<Buffer> {
  for (const p of pieces) {
    if ('bytes' in p) { yield p.bytes; continue; }
    const from = p.from ?? p.anchor.d;
    const stopped = yield* (p.lens ? readLaid(path, p.anchor, p.lens, from, p.until, signal)
      : (p.blocks ? readBlocks : readStored)(path, p.anchor, from, p.until, signal));
    if (stopped < p.until) { yield* fallback(stopped); return; }
  }
}

/** Bytes of Huffman-coded data one blob may keep before it is left to zlib (a compressible layer). */
export const GAP_MAX = 2 << 20;

/**
 * A blob of a one-stream file, as the scan reads it through the walk (inflate.ts): its pieces,
 * from the regions the walk recorded for each chunk: stored stretches located in the file (a run
 * of stored blocks in a row is one piece, readStored walks the headers between them), the bytes
 * of Huffman blocks kept (at most GAP_MAX; past that the blob is left to zlib).
 */
export class PieceBuilder {
  readonly #end: number;
  readonly #pieces: Piece[] = [];
  #pos: number;
  /** The stored stretch being extended: its piece, and the file offset just after its last byte. */
  #run: { piece: StoredPiece; cEnd: number; lens: number[] } | undefined;
  #gap: Buffer[] = [];
  #gapBytes = 0;
  #kept = 0;
  #failed = false;

  constructor(start: number, size: number) {
    this.#pos = start;
    this.#end = start + size;
  }

  /** Bytes held in memory for this blob. */
  get kept(): number {
    return this.#kept + this.#gapBytes;
  }

  /** The next chunk of the blob and the regions that produced it (overlapping it, in order). */
  push(chunk: Buffer, regions: Region[]): void {
    const from = this.#pos;
    const to = from + chunk.length;
    this.#pos = to;
    if (this.#failed) return;
    let at = from;
    for (const r of regions) {
      const s = Math.max(at, r.d);
      const e = Math.min(to, r.d + r.len);
      if (e <= s) continue;
      if (s !== at) { this.#fail(); return; } // a hole: the regions do not tile the chunk
      if (r.kind === 'huffman') {
        this.#closeRun();
        this.#gap.push(Buffer.from(chunk.subarray(s - from, e - from)));
        this.#gapBytes += e - s;
        if (this.#gapBytes > GAP_MAX) { this.#fail(); return; }
      } else {
        const c = r.c + (s - r.d);
        const run = this.#run;
        const follows = run !== undefined && run.piece.until === s
          && ((r.kind === 'more' && c === run.cEnd) || (r.kind === 'start' && r.chained && s === r.d && c === run.cEnd + 5));
        if (follows) {
          run.piece.until = e;
          run.cEnd = r.c + (e - r.d);
          if (r.kind === 'start') run.lens.push(r.blockEnd - r.c);
        } else {
          this.#closeRun();
          this.#closeGap();
          const piece = { anchor: { c, d: s, left: r.blockEnd - c }, until: e };
          this.#run = { piece, cEnd: r.c + (e - r.d), lens: [] };
        }
      }
      at = e;
    }
    if (at !== to) this.#fail();
  }

  /** The blob's pieces, or undefined when too much of it is Huffman-coded (zlib reads it). */
  finish(): Piece[] | undefined {
    if (this.#failed || this.#pos !== this.#end) return undefined;
    this.#closeRun();
    this.#closeGap();
    return this.#pieces;
  }

  #closeRun(): void {
    if (this.#run) this.#pieces.push({ ...this.#run.piece, lens: Uint16Array.from(this.#run.lens) });
    this.#run = undefined;
  }

  #closeGap(): void {
    if (this.#gapBytes === 0) return;
    this.#pieces.push({ bytes: Buffer.concat(this.#gap) });
    this.#kept += this.#gapBytes;
    this.#gap = [];
    this.#gapBytes = 0;
  }

  #fail(): void {
    this.#failed = true;
    this.#gap = [];
    this.#gapBytes = 0;
    this.#pieces.length = 0;
    this.#run = undefined;
  }
}
