import { createReadStream, readSync } from 'node:fs';
import { open } from 'node:fs/promises';

/**
 * Reading deflate's stored blocks straight from the file, without zlib. A layer is compressed
 * already, so a .tar.gz holds it mostly in stored blocks (deflate falls back to them where
 * compressing does not pay; `build --format kots` writes layers as stored blocks only): a
 * 5-byte header on a byte boundary (BFINAL, BTYPE = 00, LEN, NLEN = ~LEN) then LEN bytes as
 * they are. Those bytes are read from the file at any offset, in any order, as fast as our own
 * bundle is read: no inflating a one-stream file from its start for each blob.
 *
 * A blob of a one-stream file (the vendor portal's) is found in the scan, which inflates it
 * anyway (RunFinder): the few compressed blocks it touches (its start shares a block with the
 * tar header before it, its end with the next one; now and then deflate codes a block of a
 * layer) are kept in memory, its stored stretches located in the file. Headers are checked
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
export type Piece = { bytes: Buffer } | {
  anchor: StoredAnchor;
  until: number;
  /** Where the blob's bytes start, after the anchor (a member's tar header). */
  from?: number;
  /** Written by build --format kots: blocks of STORED_BLOCK bytes, read a run at a time (readBlocks). */
  blocks?: boolean;
};

/** The stored block `build --format kots` writes: the most deflate allows. */
export const STORED_BLOCK = 0xffff;

const HEADER = 5;
/** A search key: long enough never to be found by chance in random bytes. */
const PROBE = 64;

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
 * As readStored, for blocks of STORED_BLOCK bytes (build --format kots): a run of them is laid out
 * before it is read, headers into their own buffers and data back to back into one, so a single
 * read gives 1 MiB of the blob with no copy. Each header is checked after the read; the first that
 * is not what was laid out (the member's last block, or a file written otherwise) ends the batch,
 * and readStored carries on from there.
 */
export async function* readBlocks(path: string, a: StoredAnchor, start: number, end: number, signal?: AbortSignal): AsyncGenerator<Buffer, number> {
  if (a.left !== 0) return yield* readStored(path, a, start, end, signal);
  const PER_READ = 16;
  const fh = await open(path, 'r');
  let { c, d } = a;
  try {
    while (d < end) {
      signal?.throwIfAborted();
      const n = Math.min(PER_READ, Math.ceil((end - d) / STORED_BLOCK));
      const heads = Buffer.allocUnsafe(n * HEADER);
      const data = Buffer.allocUnsafe(n * STORED_BLOCK);
      const iov: Buffer[] = [];
      for (let i = 0; i < n; i++) iov.push(heads.subarray(i * HEADER, (i + 1) * HEADER), data.subarray(i * STORED_BLOCK, (i + 1) * STORED_BLOCK));
      const { bytesRead } = await fh.readv(iov, c);
      let valid = 0;
      // Why the batch stopped short of what was laid out, if it did.
      let stop: 'final' | 'short' | 'other' | undefined;
      for (let i = 0; i < n; i++) {
        const at = i * (HEADER + STORED_BLOCK);
        const h = bytesRead >= at + HEADER ? storedHeader(heads, i * HEADER) : undefined;
        if (!h) { stop = 'other'; break; } // c is at this header: readStored looks at it again
        const got = Math.min(h.len, bytesRead - at - HEADER);
        valid += got;
        c += HEADER + got;
        if (got < h.len) { stop = 'short'; break; }
        if (h.final) { stop = 'final'; break; }
        // A shorter block: its data is in place, what follows was laid out wrong.
        if (h.len !== STORED_BLOCK) { stop = 'other'; break; }
      }
      const from = Math.max(0, start - d);
      const to = Math.min(valid, end - d);
      if (from < to) yield data.subarray(from, to);
      d += valid;
      if (d >= end) return end;
      if (stop === 'final' || stop === 'short') return Math.max(d, start);
      if (stop === 'other') return yield* readStored(path, { c, d, left: 0 }, Math.max(start, d), end, signal);
    }
    return end;
  } finally {
    await fh.close();
  }
}

/** A whole blob from its pieces; `fallback(at)` gives its bytes from `at` to its end where stored blocks stop early (the file changed). */
export async function* readPieces(path: string, pieces: Piece[], fallback: (at: number) => AsyncIterable<Buffer>, signal?: AbortSignal): AsyncGenerator<Buffer> {
  for (const p of pieces) {
    if ('bytes' in p) { yield p.bytes; continue; }
    const stopped = yield* (p.blocks ? readBlocks : readStored)(path, p.anchor, p.from ?? p.anchor.d, p.until, signal);
    if (stopped < p.until) { yield* fallback(stopped); return; }
  }
}

/** Bytes of compressed blocks one blob may keep before it is left to zlib (a compressible layer). */
export const GAP_MAX = 2 << 20;

/**
 * Follows a blob of a one-stream file as the scan inflates it, chunk by chunk: walks the stored
 * blocks it lies in (their headers, read from the file), keeps what is not in one, and finds
 * where stored blocks start again by searching the file for the bytes that follow, from
 * `near(d)`: a file offset and decompressed offset zlib had reached at or before d.
 */
export class RunFinder {
  readonly #fd: number;
  readonly #end: number;
  readonly #near: (d: number) => [c: number, d: number] | undefined;
  readonly #pieces: Piece[] = [];
  #pos: number;
  /** The stored stretch being walked: where it started, and its next header's place. */
  #run: { anchor: StoredAnchor; c: number; d: number; left: number; final: boolean } | undefined;
  /** Bytes since the last stored stretch ended (or the blob started): [pos - gap.length, pos). */
  #gap: Buffer[] = [];
  #gapBytes = 0;
  #failed = false;
  #kept = 0;

  constructor(fd: number, start: number, size: number, near: (d: number) => [number, number] | undefined) {
    this.#fd = fd;
    this.#pos = start;
    this.#end = start + size;
    this.#near = near;
  }

  /** Bytes held in memory for this blob. */
  get kept(): number {
    return this.#kept + this.#gapBytes;
  }

  push(chunk: Buffer): void {
    if (this.#failed) return;
    const end = this.#pos + chunk.length;
    let i = 0;
    if (this.#run) {
      const cov = this.#covered(end);
      if (cov >= end) { this.#pos = end; return; }
      this.#close(cov);
      i = cov - this.#pos;
    }
    this.#pos = end;
    this.#gap.push(Buffer.from(chunk.subarray(i)));
    this.#gapBytes += chunk.length - i;
    // A stretch found in the gap may end before the gap does: the rest is a gap again.
    while (this.#gapBytes > 0) {
      if (this.#gapBytes > GAP_MAX) { this.#fail(); return; }
      const gap = Buffer.concat(this.#gap);
      const gapStart = end - gap.length;
      const found = this.#search(gap, gapStart);
      if (!found) { this.#gap = [gap]; return; }
      this.#run = { anchor: { ...found }, ...found, final: false };
      const before = found.d - gapStart;
      // A copy: a view would keep the whole gap (up to GAP_MAX) alive for a few KiB.
      if (before > 0) { this.#pieces.push({ bytes: Buffer.from(gap.subarray(0, before)) }); this.#kept += before; }
      this.#gap = [];
      this.#gapBytes = 0;
      const cov = this.#covered(end);
      if (cov >= end) return;
      this.#close(cov);
      this.#gap = [gap.subarray(cov - gapStart)];
      this.#gapBytes = end - cov;
    }
  }

  /** The blob's pieces, or undefined when too much of it is compressed (zlib reads it). */
  finish(): Piece[] | undefined {
    if (this.#failed || this.#pos !== this.#end) return undefined;
    if (this.#run) this.#close(this.#end);
    if (this.#gapBytes > 0) { this.#pieces.push({ bytes: Buffer.concat(this.#gap) }); this.#kept += this.#gapBytes; }
    this.#gap = [];
    this.#gapBytes = 0;
    return this.#pieces;
  }

  #fail(): void {
    this.#failed = true;
    this.#gap = [];
    this.#gapBytes = 0;
    this.#pieces.length = 0;
    this.#run = undefined;
  }

  /** How far the stretch being walked covers, walking its headers up to `target` at most. */
  #covered(target: number): number {
    const r = this.#run!;
    const h = Buffer.alloc(HEADER);
    while (r.d + r.left < target && !r.final) {
      if (readSync(this.#fd, h, 0, HEADER, r.c + r.left) < HEADER) break;
      const hdr = storedHeader(h, 0);
      if (!hdr) break;
      r.c += r.left + HEADER;
      r.d += r.left;
      r.left = hdr.len;
      r.final = hdr.final;
    }
    return Math.min(this.#end, r.d + r.left, target);
  }

  #close(until: number): void {
    const r = this.#run!;
    if (until > r.anchor.d) this.#pieces.push({ anchor: r.anchor, until });
    this.#run = undefined;
  }

  /**
   * A stored block among the gap's bytes: a probe of them found once, verbatim, in the file,
   * then the block's header found where the file, read backwards from there, stops matching the
   * bytes before the probe. Undefined when none is (yet) to be seen.
   */
  #search(gap: Buffer, gapStart: number): { c: number; d: number; left: number } | undefined {
    // Probes a little way in (a compressed block is some KiB), and at the end of what is here.
    const offsets = [1 << 10, 4 << 10, 16 << 10, 40 << 10, gap.length - PROBE]
      .filter((o, n, all) => o > 0 && o + PROBE <= gap.length && all.indexOf(o) === n);
    if (offsets.length === 0) return undefined;
    const near = this.#near(gapStart);
    if (!near) return undefined;
    const [c0, d0] = near;
    const from = Math.max(0, c0 - 64);
    // Stored data takes its size and 5 bytes per block; compressed data less.
    const span = gapStart + gap.length - d0;
    if (span > 4 * GAP_MAX) return undefined;
    const buf = Buffer.allocUnsafe(span + Math.ceil(span / 1024) + (64 << 10));
    const hay = buf.subarray(0, readSync(this.#fd, buf, 0, buf.length, from));
    for (const o of offsets) {
      const probe = gap.subarray(o, o + PROBE);
      const at = hay.indexOf(probe);
      if (at === -1 || hay.indexOf(probe, at + 1) !== -1) continue;
      let k = 0;
      while (k < o && at - k - 1 >= 0 && hay[at - k - 1] === gap[o - k - 1]) k++;
      // Matched back to the gap's start: the block began before it, somewhere not checked here.
      if (k === o) continue;
      // The header's last bytes may equal the data by chance: it ends at most 4 bytes nearer.
      for (let extra = 0; extra < HEADER; extra++) {
        const h = at - k + extra - HEADER;
        const hdr = storedHeader(hay, h);
        if (!hdr || h + HEADER + hdr.len < at + PROBE) continue;
        const dataStart = h + HEADER;
        return { c: from + dataStart, d: gapStart + o - (at - dataStart), left: hdr.len };
      }
    }
    return undefined;
  }
}
