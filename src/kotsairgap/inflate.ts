import { readSync } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { crc32 } from 'node:zlib';
import type { BufferPool } from './buffers.js';

/**
 * A gzip file decompressed by walking its deflate blocks here, so that stored blocks are never
 * copied through an inflater: their bytes are handed on as views of what was read from the file,
 * and where each one lies in the file is recorded (`regions`). That is what a one-stream .airgap
 * (the vendor portal's, `tar -czf`) is made of: its layers are compressed already, so deflate
 * keeps them in stored blocks, and only the tar headers and the small files between them are
 * Huffman-coded. Huffman blocks are decoded here too (RFC 1951: fixed and dynamic codes, a
 * 32 KiB window), which is cheap for the few KiB they hold in such a file; a file that is mostly
 * compressed data (uncompressed layers) is better left to zlib, so the walk gives up past
 * `huffmanBudget` bytes of Huffman output (`WalkAbandoned`) and its caller starts zlib instead.
 *
 * The checks zlib makes are made: gzip header flags and header CRC, stored LEN/NLEN, code
 * lengths over-subscribed or incomplete (as zlib judges them), distances too far back, invalid
 * symbols, the CRC-32 and length of each member; a file cut short is an error, not an early end.
 */

/** Where a stretch of the decompressed stream came from: a stored block's data at file offset `c`, or a Huffman block (`c` = -1). */
export interface Region {
  /** Offset in the decompressed stream. */
  d: number;
  len: number;
  /** File offset of these bytes in a stored block, -1 for Huffman output. */
  c: number;
  /**
   * 'start': a stored block's data from its first byte; 'more': the rest of a stored block whose
   * data was read in two reads (it follows the region before in the file); 'huffman'.
   */
  kind: 'start' | 'more' | 'huffman';
  /** A stored block right after a stored block: its 5-byte header lies between their data (readStored walks into it). */
  chained: boolean;
  /** For stored data: the file offset where its block's data ends. */
  blockEnd: number;
}

export class InflateError extends Error {
  readonly code = 'Z_DATA_ERROR';
}

/** The walk stops past `huffmanBudget` bytes of Huffman output: the file is mostly compressed data, better read by zlib. */
export class WalkAbandoned extends Error {}

const WSIZE = 32768;
const OUT = 256 << 10;
const READ = 1 << 20;
/** A long skip lets the event loop run (signals, other threads' messages) every so many bytes. */
const YIELD_EVERY = 16 << 20;
/** With a buffer pool, a read buffer is read into again this many reads after the walk has left it (the window, a reader close behind). */
const REUSE_AFTER = 4;
/** Input left before a Huffman symbol is decoded: one symbol pair never needs more than 8 bytes. */
const SLACK = 16;
/** Input wanted before a dynamic block header is read (at most 14 + 19·3 + 316·14 bits). */
const HEADER_MAX = 1024;
const EMPTY = Buffer.alloc(0);

const LEN_BASE = new Uint16Array([3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258]);
const LEN_EXTRA = new Uint8Array([0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0]);
const DIST_BASE = new Uint16Array([1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073,
  4097, 6145, 8193, 12289, 16385, 24577]);
const DIST_EXTRA = new Uint8Array([0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13]);
const CL_ORDER = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15];

/**
 * A decoding table in two levels, as zlib builds them: the next `bits` input bits (least
 * significant first) index the root; an entry is `symbol << 8 | length` for a code that fits, or
 * `offset << 8 | 0x80 | sub` for longer codes, whose next `sub` bits index a subtable at
 * `offset`; 0 is no code. Small enough to stay in the processor's cache, and cheap to build for
 * every dynamic block (a full table for 15-bit codes would be 32768 entries).
 */
export interface Table { t: Uint32Array; bits: number }

/** Root bits of a table: codes up to this long are found in one lookup. */
const ROOT_BITS = 9;
const LINK = 0x80;

/**
 * Canonical Huffman codes from code lengths (RFC 1951 §3.2.2). An over-subscribed or incomplete
 * set is an error, except as zlib allows: a single code of one bit, or no code at all (a block of
 * literals only has no distance code); entries left empty are then an error if the data uses them.
 */
export function buildTable(lens: Uint8Array, what: string, fixed = false): Table {
  let max = 0;
  const count = new Uint16Array(16);
  for (const l of lens) { count[l]!++; if (l > max) max = l; }
  count[0] = 0;
  let left = 1;
  for (let l = 1; l <= 15; l++) {
    left = (left << 1) - count[l]!;
    if (left < 0) throw new InflateError(`invalid ${what} code lengths (over-subscribed)`);
  }
  // As zlib: an incomplete code only as a single code of one bit (or none at all), never for code
  // lengths; the fixed codes (RFC 1951 §3.2.6: 30 distance codes of 5 bits) are as they are.
  if (!fixed && max > 0 && left > 0 && (what === 'code length' || max !== 1)) throw new InflateError(`invalid ${what} code lengths (incomplete)`);
  const root = Math.min(Math.max(max, 1), ROOT_BITS);
  const rootMask = (1 << root) - 1;
  const next = new Uint16Array(16);
  let code = 0;
  for (let l = 1; l <= 15; l++) { code = (code + count[l - 1]!) << 1; next[l] = code; }
  // Each code reversed (deflate sends codes most significant bit first, read here least first).
  const rev = new Uint16Array(lens.length);
  // For each root index that starts longer codes, how many more bits its subtable takes.
  const sub = new Uint8Array(1 << root);
  for (let s = 0; s < lens.length; s++) {
    const l = lens[s]!;
    if (l === 0) continue;
    const c = next[l]!++;
    let r = 0;
    for (let i = 0; i < l; i++) r |= ((c >> i) & 1) << (l - 1 - i);
    rev[s] = r;
    if (l > root) sub[r & rootMask] = Math.max(sub[r & rootMask]!, l - root);
  }
  const offset = new Uint32Array(1 << root);
  let size = 1 << root;
  for (let i = 0; i <= rootMask; i++) if (sub[i]) { offset[i] = size; size += 1 << sub[i]!; }
  const t = new Uint32Array(size);
  for (let i = 0; i <= rootMask; i++) if (sub[i]) t[i] = (offset[i]! << 8) | LINK | sub[i]!;
  for (let s = 0; s < lens.length; s++) {
    const l = lens[s]!;
    if (l === 0) continue;
    const r = rev[s]!;
    // Codes are prefix-free: a short code never fills an index a longer one links from.
    if (l <= root) { for (let k = r; k <= rootMask; k += 1 << l) t[k] = (s << 8) | l; continue; }
    const i = r & rootMask;
    for (let k = r >>> root; k < 1 << sub[i]!; k += 1 << (l - root)) t[offset[i]! + k] = (s << 8) | l;
  }
  return { t, bits: root };
}

/** The table's entry for the next input bits: `symbol << 8 | length`, 0 for no code. */
export function lookup(tb: Table, bits: number): number {
  const e = tb.t[bits & ((1 << tb.bits) - 1)]!;
  return e & LINK ? tb.t[(e >>> 8) + ((bits >>> tb.bits) & ((1 << (e & 15)) - 1))]! : e;
}

let FIXED: { lit: Table; dist: Table } | undefined;
function fixedTables(): { lit: Table; dist: Table } {
  if (!FIXED) {
    const l = new Uint8Array(288);
    l.fill(8, 0, 144); l.fill(9, 144, 256); l.fill(7, 256, 280); l.fill(8, 280, 288);
    FIXED = { lit: buildTable(l, 'literal/length', true), dist: buildTable(new Uint8Array(30).fill(5), 'distance', true) };
  }
  return FIXED;
}

export interface WalkOptions {
  /** Bytes of Huffman output after which the walk stops with WalkAbandoned (default: no limit). */
  huffmanBudget?: number;
  /** How far behind the output the regions are kept (default 8 MiB). */
  keepRegions?: number;
  /**
   * Read into buffers of this pool, used again, rather than fresh ones: a chunk handed out is
   * then good only until the walk has read REUSE_AFTER more reads on. The pool's buffer size is
   * the read size.
   */
  pool?: BufferPool;
}

/** What #step asks of its caller: more input (at least #want bytes); or the walk is at its end. */
const NEED = 1;
const END = 2;
type Step = Buffer | typeof NEED | typeof END;

/**
 * The decompressed bytes of the gzip file behind `fh`, from file offset `start` (a member's
 * header) to the end of its last member: as an async iterable of chunks, or `read`/`skip` for a
 * reader that passes over most of it (the scan skips layers: their stored data is then only
 * looked at where it lies, in the buffers read from the file, never handed through streams).
 * Chunks of stored data are views of the file's bytes as read; the caller must not write into them.
 */
export class GzipWalk implements AsyncIterable<Buffer> {
  readonly #fh: FileHandle;
  readonly #opts: WalkOptions;
  /** Input: buf[pos..] is unread; buf[0] is at file offset base. */
  #buf: Buffer = Buffer.alloc(0);
  #pos = 0;
  #base: number;
  #eof = false;
  #want = 0;
  #bitbuf = 0;
  #bitcnt = 0;
  /** Where the walk is: before a member's header, between blocks, inside one, at a member's trailer, done. */
  #state: 'member' | 'block' | 'stored' | 'huffman' | 'trailer' | 'end' = 'member';
  #member = 0;
  #final = false;
  /** The stored block being read: data left, where its data ends in the file, whether it follows a stored block. */
  #left = 0;
  #blockEnd = 0;
  #chained = false;
  #firstPart = false;
  #tables: { lit: Table; dist: Table } | undefined;
  /** Huffman output not handed out yet. */
  #pending: Buffer = Buffer.alloc(0);
  /** Decompressed bytes handed out so far. */
  #d = 0;
  #huffman = 0;
  #regions: Region[] = [];
  #head = 0;
  /** The region of the last chunk handed out (for Huffman output, the region it was merged into). */
  #last: Region | undefined;
  /** The last ≥ 32 KiB of output, as the views handed out. */
  #recent: Buffer[] = [];
  #recentBytes = 0;
  /** Huffman output: ob[lo..op) is history (the window, then what was decoded since). */
  #ob: Buffer | undefined;
  #op = 0;
  #ostart = 0;
  #lo = 0;
  #crc = 0;
  #memberStart = 0;
  /** Read buffers of the pool the walk has left, oldest first: released REUSE_AFTER reads later. */
  #retired: ArrayBufferLike[] = [];
  /** The stored block just ended on a byte boundary: a stored block right after it is chained. */
  #afterStored = false;

  readonly #readSize: number;

  constructor(fh: FileHandle, start: number, opts: WalkOptions = {}) {
    this.#readSize = opts.pool?.size ?? READ;
    this.#fh = fh;
    this.#base = start;
    this.#opts = opts;
  }

  /** The recorded regions overlapping [from, to), oldest first (those more than keepRegions behind are gone). */
  regions(from: number, to: number): Region[] {
    const out: Region[] = [];
    // The first region ending after `from`.
    let lo = this.#head;
    let hi = this.#regions.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      const r = this.#regions[mid]!;
      if (r.d + r.len <= from) lo = mid + 1; else hi = mid;
    }
    for (let i = lo; i < this.#regions.length; i++) {
      const r = this.#regions[i]!;
      if (r.d >= to) break;
      if (r.d + r.len > from) out.push(r);
    }
    return out;
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<Buffer> {
    try {
      for (;;) {
        const b = await this.read();
        if (!b) return;
        yield b;
      }
    } finally {
      this.close();
    }
  }

  /** Stops the reads under way. */
  close(): void {
    for (const b of this.#retired) this.#opts.pool?.release(b);
    this.#retired = [];
  }

  /** The next chunk of output, at most `max` bytes; undefined at the end. */
  async read(max = Number.POSITIVE_INFINITY): Promise<Buffer | undefined> {
    for (;;) {
      const r = this.#stepSync(max);
      if (r === END) return undefined;
      if (r.length > 0) return r;
    }
  }

  /**
   * Passes over the next n bytes of output, each chunk shown to `visit` with the region it lies in
   * (stored data: where it is in the file; Huffman output: a region that may start before it) instead of being handed
   * through a stream; a visitor that returns a promise (it has too much to do) is waited for.
   * Returns how many bytes there were (fewer than n only at the end).
   */
  async skip(n: number, visit: (b: Buffer, region: Region | undefined) => void | Promise<void>): Promise<number> {
    let done = 0;
    let calm = 0;
    while (done < n) {
      const r = this.#stepSync(n - done);
      if (r === END) break;
      done += r.length;
      calm += r.length;
      const wait = visit(r, this.#last);
      if (wait) { await wait; calm = 0; } else if (calm >= YIELD_EVERY) { await new Promise((go) => setImmediate(go)); calm = 0; }
    }
    return done;
  }

  /** Steps until there is output or the end (input is read synchronously). */
  #stepSync(max: number): Buffer | typeof END {
    for (;;) {
      const r = this.#step(max);
      if (r === NEED) { this.#need(this.#want); this.#want = 0; continue; }
      if (r === EMPTY) continue;
      return r;
    }
  }

  #truncated(): InflateError {
    return new InflateError('unexpected end of file');
  }

  #avail(): number {
    return this.#buf.length - this.#pos;
  }

  /** File offset of the next unread input byte (bit buffer empty). */
  get #at(): number {
    return this.#base + this.#pos;
  }

  /**
   * At least n unread input bytes, unless the file ends first. The next chunk of the file is read
   * synchronously (from the page cache a read is a copy, cheaper than a round trip through the
   * thread pool) into a fresh buffer of the pool, after the few unread bytes (and those the bit
   * buffer holds whole, which #align may give back), copied to its start: no buffer is joined to
   * another, and each one read goes back to the pool.
   */
  #need(n: number): void {
    while (this.#avail() < n && !this.#eof) {
      const keep = this.#bitcnt >> 3;
      const rest = this.#buf.subarray(this.#pos - keep);
      const pool = this.#opts.pool;
      const size = Math.max(this.#readSize, rest.length + n);
      const b = pool && size === pool.size ? pool.get() : Buffer.allocUnsafe(size);
      rest.copy(b, 0);
      const got = readSync(this.#fh.fd, b, rest.length, b.length - rest.length, this.#base + this.#buf.length);
      if (got === 0) {
        this.#eof = true;
        pool?.release(b.buffer);
        break;
      }
      this.#retire(this.#buf);
      this.#base += this.#pos - keep;
      this.#buf = b.subarray(0, rest.length + got);
      this.#pos = keep;
    }
  }

  /** A read buffer the walk has left: given back to the pool REUSE_AFTER reads later. */
  #retire(b: Buffer): void {
    const pool = this.#opts.pool;
    if (!pool) return;
    this.#retired.push(b.buffer);
    if (this.#retired.length > REUSE_AFTER) pool.release(this.#retired.shift()!);
  }

  /** Synchronous: from input known to be there (or the stream is cut short). */
  #bitsSync(n: number): void {
    while (this.#bitcnt < n) {
      if (this.#pos >= this.#buf.length) throw this.#truncated();
      this.#bitbuf = (this.#bitbuf | (this.#buf[this.#pos++]! << this.#bitcnt)) >>> 0;
      this.#bitcnt += 8;
    }
  }

  #drop(n: number): void {
    this.#bitbuf >>>= n;
    this.#bitcnt -= n;
  }

  #take(n: number): number {
    this.#bitsSync(n);
    const v = this.#bitbuf & ((1 << n) - 1);
    this.#drop(n);
    return v;
  }

  /** To the next byte boundary: whole bytes still in the bit buffer go back to the input. */
  #align(): void {
    this.#drop(this.#bitcnt & 7);
    this.#pos -= this.#bitcnt >> 3;
    this.#bitbuf = 0;
    this.#bitcnt = 0;
  }

  /**
   * One step of the walk: a chunk of output (empty after a header, a trailer or a block header),
   * NEED (more input first), or END. Huffman output waiting to be handed out goes first, whatever
   * the state.
   */
  #step(max: number): Step {
    if (this.#pending.length > 0) {
      const b = this.#pending.length <= max ? this.#pending : this.#pending.subarray(0, max);
      this.#pending = this.#pending.subarray(b.length);
      return this.#emit(b, -1, 'huffman');
    }
    switch (this.#state) {
      case 'member': if (!this.#startMember()) this.#state = 'end'; return EMPTY;
      case 'trailer': this.#trailer(); return EMPTY;
      case 'end': return END;
      case 'block': {
        // Enough input for any block header (a dynamic one's code lengths), unless the file ends first.
        if (!this.#eof && this.#avail() < HEADER_MAX) { this.#want = HEADER_MAX; return NEED; }
        this.#bitsSync(3);
        this.#final = (this.#bitbuf & 1) === 1;
        const type = (this.#bitbuf >>> 1) & 3;
        this.#drop(3);
        if (type === 0) {
          // After a stored block the next block starts on a byte boundary: its header byte, then LEN, NLEN.
          this.#chained = this.#afterStored;
          this.#align();
          if (this.#avail() < 4) throw this.#truncated();
          const len = this.#buf.readUInt16LE(this.#pos);
          if ((len ^ this.#buf.readUInt16LE(this.#pos + 2)) !== 0xffff) throw new InflateError('invalid stored block lengths');
          this.#pos += 4;
          this.#left = len;
          this.#blockEnd = this.#at + len;
          this.#firstPart = true;
          this.#ob = undefined;
          this.#state = 'stored';
        } else if (type === 1 || type === 2) {
          this.#tables = type === 1 ? fixedTables() : this.#dynamic();
          this.#afterStored = false;
          this.#window();
          this.#state = 'huffman';
        } else throw new InflateError('invalid block type');
        return EMPTY;
      }
      case 'stored': {
        if (this.#left === 0) {
          this.#afterStored = true;
          this.#state = this.#final ? 'trailer' : 'block';
          return EMPTY;
        }
        if (this.#avail() === 0) { if (this.#eof) throw this.#truncated(); this.#want = 1; return NEED; }
        const k = Math.min(this.#left, this.#avail(), max);
        const view = this.#buf.subarray(this.#pos, this.#pos + k);
        const c = this.#at;
        this.#pos += k;
        this.#left -= k;
        const kind = this.#firstPart ? 'start' : 'more';
        this.#firstPart = false;
        return this.#emit(view, c, kind);
      }
      case 'huffman': {
        if (!this.#eof && this.#avail() <= SLACK) { this.#want = 4 * SLACK; return NEED; }
        if (this.#op + 258 > this.#ob!.length) this.#roll();
        const end = this.#decodeSome();
        this.#pending = this.#ob!.subarray(this.#ostart, this.#op);
        this.#ostart = this.#op;
        const budget = this.#opts.huffmanBudget ?? Number.POSITIVE_INFINITY;
        if (this.#huffman + this.#pending.length > budget) throw new WalkAbandoned(`more than ${budget} bytes of compressed data`);
        if (end) this.#state = this.#final ? 'trailer' : 'block';
        return EMPTY;
      }
    }
  }

  /** A member's header; false where the file ends or goes on with what is not a member (ignored, as zlib and gzip do). */
  #startMember(): boolean {
    if (this.#member > 0) {
      this.#need(2);
      if (this.#avail() < 2 || this.#buf[this.#pos] !== 0x1f || this.#buf[this.#pos + 1] !== 0x8b) return false;
    }
    this.#header(this.#member === 0);
    this.#crc = 0;
    this.#memberStart = this.#d;
    this.#afterStored = false;
    this.#ob = undefined;
    this.#state = 'block';
    return true;
  }

  /** The trailer: CRC-32 and length of this member's output, on the next byte boundary. */
  #trailer(): void {
    this.#align();
    this.#need(8);
    if (this.#avail() < 8) throw this.#truncated();
    const crc = this.#buf.readUInt32LE(this.#pos);
    const isize = this.#buf.readUInt32LE(this.#pos + 4);
    this.#pos += 8;
    if (crc !== this.#crc) throw new InflateError('incorrect data check');
    if (isize !== (this.#d - this.#memberStart) % 2 ** 32) throw new InflateError('incorrect length check');
    this.#member++;
    this.#state = 'member';
  }
  /** Hands out a chunk of output: counted, checked into the CRC, kept as history, its region noted. */
  #emit(b: Buffer, c: number, kind: Region['kind']): Buffer {
    this.#record(c, b.length, kind, kind === 'start' && this.#chained, kind === 'huffman' ? -1 : this.#blockEnd);
    this.#last = this.#regions[this.#regions.length - 1];
    if (kind === 'huffman') this.#huffman += b.length;
    this.#crc = crc32(b, this.#crc);
    this.#d += b.length;
    this.#recent.push(b);
    this.#recentBytes += b.length;
    while (this.#recent.length > 1 && this.#recentBytes - this.#recent[0]!.length >= WSIZE) this.#recentBytes -= this.#recent.shift()!.length;
    return b;
  }

  #header(first: boolean): void {
    this.#need(10);
    const b = this.#buf;
    const p = this.#pos;
    if (this.#avail() < 10) throw first ? new InflateError('incorrect header check') : this.#truncated();
    if (b[p] !== 0x1f || b[p + 1] !== 0x8b) throw new InflateError('incorrect header check');
    if (b[p + 2] !== 8) throw new InflateError('unknown compression method');
    const flg = b[p + 3]!;
    if (flg & 0xe0) throw new InflateError('unknown header flags set');
    // The header's own CRC (FHCRC), over every byte of it before the CRC.
    let hcrc = 0;
    const pass = (n: number) => { hcrc = crc32(this.#buf.subarray(this.#pos, this.#pos + n), hcrc); this.#pos += n; };
    pass(10);
    if (flg & 4) {
      this.#need(2);
      if (this.#avail() < 2) throw this.#truncated();
      let xlen = this.#buf.readUInt16LE(this.#pos);
      pass(2);
      while (xlen > 0) {
        this.#need(1);
        if (this.#avail() === 0) throw this.#truncated();
        const k = Math.min(xlen, this.#avail());
        pass(k);
        xlen -= k;
      }
    }
    for (const bit of [8, 16]) {
      if (!(flg & bit)) continue;
      // A zero-terminated name or comment.
      for (;;) {
        this.#need(1);
        if (this.#avail() === 0) throw this.#truncated();
        const z = this.#buf.indexOf(0, this.#pos);
        if (z !== -1) { pass(z + 1 - this.#pos); break; }
        pass(this.#avail());
      }
    }
    if (flg & 2) {
      this.#need(2);
      if (this.#avail() < 2) throw this.#truncated();
      if (this.#buf.readUInt16LE(this.#pos) !== (hcrc & 0xffff)) throw new InflateError('header crc mismatch');
      this.#pos += 2;
    }
  }

  #record(c: number, len: number, kind: Region['kind'], chained: boolean, blockEnd = -1): void {
    const last = this.#regions[this.#regions.length - 1];
    if (kind === 'huffman' && last?.kind === 'huffman' && last.d + last.len === this.#d) last.len += len;
    else this.#regions.push({ d: this.#d, len, c, kind, chained, blockEnd });
    // Forget what lies far behind the output: the consumer reads close behind it.
    const keep = this.#opts.keepRegions ?? 8 << 20;
    while (this.#head < this.#regions.length - 1 && this.#regions[this.#head]!.d + this.#regions[this.#head]!.len < this.#d - keep) this.#head++;
    if (this.#head > 4096 && this.#head * 2 > this.#regions.length) { this.#regions = this.#regions.slice(this.#head); this.#head = 0; }
  }

  /** A dynamic block's code tables (RFC 1951 §3.2.7). */
  #dynamic(): { lit: Table; dist: Table } {
    const nlen = this.#take(5) + 257;
    const ndist = this.#take(5) + 1;
    const ncode = this.#take(4) + 4;
    if (nlen > 286 || ndist > 30) throw new InflateError('too many length or distance symbols');
    const cl = new Uint8Array(19);
    for (let i = 0; i < ncode; i++) cl[CL_ORDER[i]!] = this.#take(3);
    const clt = buildTable(cl, 'code length');
    const lens = new Uint8Array(nlen + ndist);
    for (let i = 0; i < nlen + ndist;) {
      const sym = this.#decode(clt);
      if (sym < 16) { lens[i++] = sym; continue; }
      let rep: number;
      let val = 0;
      if (sym === 16) {
        if (i === 0) throw new InflateError('invalid bit length repeat');
        val = lens[i - 1]!;
        rep = 3 + this.#take(2);
      } else if (sym === 17) rep = 3 + this.#take(3);
      else rep = 11 + this.#take(7);
      if (i + rep > nlen + ndist) throw new InflateError('invalid bit length repeat');
      lens.fill(val, i, i + rep);
      i += rep;
    }
    if (lens[256] === 0) throw new InflateError('invalid code -- missing end-of-block');
    return { lit: buildTable(lens.subarray(0, nlen), 'literal/length'), dist: buildTable(lens.subarray(nlen), 'distance') };
  }

  #decode(tb: Table): number {
    // Up to 15 bits: fewer may remain at the very end of the input, enough for a short code.
    while (this.#bitcnt < 15 && this.#pos < this.#buf.length) {
      this.#bitbuf = (this.#bitbuf | (this.#buf[this.#pos++]! << this.#bitcnt)) >>> 0;
      this.#bitcnt += 8;
    }
    const e = lookup(tb, this.#bitbuf);
    const l = e & 15;
    if (l === 0) throw new InflateError('invalid code');
    if (l > this.#bitcnt) throw this.#truncated();
    this.#drop(l);
    return e >>> 8;
  }

  /** The window for a Huffman block: the last 32 KiB of output, in a fresh output buffer unless the last block left one. */
  #window(): void {
    if (this.#ob) return;
    const w = Math.min(WSIZE, this.#recentBytes);
    const ob = Buffer.allocUnsafe(WSIZE + OUT);
    let at = WSIZE;
    let need = w;
    for (let i = this.#recent.length - 1; i >= 0 && need > 0; i--) {
      const r = this.#recent[i]!;
      const k = Math.min(need, r.length);
      r.copy(ob, at - k, r.length - k);
      at -= k;
      need -= k;
    }
    this.#ob = ob;
    this.#lo = WSIZE - w;
    this.#op = this.#ostart = WSIZE;
  }

  /** A full output buffer: its last 32 KiB carried into a new one (what was handed out of the old one stays as it is). */
  #roll(): void {
    const old = this.#ob!;
    const w = Math.min(WSIZE, this.#op - this.#lo);
    const ob = Buffer.allocUnsafe(WSIZE + OUT);
    old.copy(ob, WSIZE - w, this.#op - w, this.#op);
    this.#ob = ob;
    this.#lo = WSIZE - w;
    this.#op = this.#ostart = WSIZE;
  }

  /** Decodes symbols into the output buffer until it is full, the input runs low or the block ends (true). */
  #decodeSome(): boolean {
    const { lit, dist } = this.#tables!;
    const ob = this.#ob!;
    const lo = this.#lo;
    if (!this.#eof) {
      const [op, end] = this.#fast(lit, dist, ob, this.#op, lo);
      this.#op = op;
      return end;
    }
    // At the end of the file: checked reads, so a stream cut short is an error.
    let op = this.#op;
    try {
      while (op + 258 <= ob.length) {
        const sym = this.#decode(lit);
        if (sym < 256) { ob[op++] = sym; continue; }
        if (sym === 256) return true;
        const li = sym - 257;
        if (li >= 29) throw new InflateError('invalid literal/length code');
        const len = LEN_BASE[li]! + (LEN_EXTRA[li]! ? this.#take(LEN_EXTRA[li]!) : 0);
        const ds = this.#decode(dist);
        if (ds >= 30) throw new InflateError('invalid distance code');
        const dd = DIST_BASE[ds]! + (DIST_EXTRA[ds]! ? this.#take(DIST_EXTRA[ds]!) : 0);
        if (op - dd < lo) throw new InflateError('invalid distance too far back');
        let from = op - dd;
        for (let k = 0; k < len; k++) ob[op++] = ob[from++]!;
      }
      return false;
    } finally {
      this.#op = op;
    }
  }

  /**
   * The decoding loop, while at least SLACK input bytes are left (no bounds checks): bits are
   * taken 8 at a time into a 31-bit buffer kept in locals, refilled to 24 before each code.
   * Returns where the output got to and whether the block ended.
   */
  #fast(lit: Table, dist: Table, ob: Buffer, op: number, lo: number): [number, boolean] {
    const buf = this.#buf;
    const stop = buf.length - SLACK;
    let pos = this.#pos;
    let bb = this.#bitbuf;
    let bc = this.#bitcnt;
    const lt = lit.t;
    const lb = lit.bits;
    const lm = (1 << lb) - 1;
    const dt = dist.t;
    const db = dist.bits;
    const dm = (1 << db) - 1;
    const max = ob.length - 258;
    let end = false;
    try {
      while (pos < stop && op <= max) {
        while (bc < 24) { bb |= buf[pos++]! << bc; bc += 8; }
        let e = lt[bb & lm]!;
        if (e & LINK) e = lt[(e >>> 8) + ((bb >>> lb) & ((1 << (e & 15)) - 1))]!;
        let l = e & 15;
        if (l === 0) throw new InflateError('invalid code');
        bb >>>= l; bc -= l;
        const sym = e >>> 8;
        if (sym < 256) { ob[op++] = sym; continue; }
        if (sym === 256) { end = true; break; }
        const li = sym - 257;
        if (li >= 29) throw new InflateError('invalid literal/length code');
        let len = LEN_BASE[li]!;
        let x = LEN_EXTRA[li]!;
        if (x) { len += bb & ((1 << x) - 1); bb >>>= x; bc -= x; }
        while (bc < 24) { bb |= buf[pos++]! << bc; bc += 8; }
        e = dt[bb & dm]!;
        if (e & LINK) e = dt[(e >>> 8) + ((bb >>> db) & ((1 << (e & 15)) - 1))]!;
        l = e & 15;
        if (l === 0) throw new InflateError('invalid code');
        bb >>>= l; bc -= l;
        const ds = e >>> 8;
        if (ds >= 30) throw new InflateError('invalid distance code');
        let dd = DIST_BASE[ds]!;
        x = DIST_EXTRA[ds]!;
        if (x) {
          while (bc < 24) { bb |= buf[pos++]! << bc; bc += 8; }
          dd += bb & ((1 << x) - 1); bb >>>= x; bc -= x;
        }
        let from = op - dd;
        if (from < lo) throw new InflateError('invalid distance too far back');
        if (dd >= len && len > 32) { ob.copy(ob, op, from, from + len); op += len; }
        else for (let k = 0; k < len; k++) ob[op++] = ob[from++]!;
      }
    } finally {
      this.#pos = pos;
      this.#bitbuf = bb;
      this.#bitcnt = bc;
    }
    return [op, end];
  }
}
