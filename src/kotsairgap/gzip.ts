import { createReadStream } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';

/**
 * Random access into a gzip'd tar without unpacking it. A gzip stream cannot be entered in the
 * middle, but a gzip *file* may be several members back to back (RFC 1952 §2.2; Go's
 * gzip.Reader, GNU tar and zlib read them as one stream). `airgap build --format kots` writes
 * each tar entry as its own member and records, in an extra field of the member's header
 * (subfield "AG": compressed length, uncompressed length, both 64-bit little-endian), how long
 * it is, so a reader hops from header to header and starts inflating at the member holding the
 * entry it wants, as BGZF does for genomics files. A file without that field (the vendor
 * portal's, one member) is one member that starts at byte 0: reads then inflate from the start,
 * except where a blob lies in stored blocks, which are read as they are (stored.ts).
 */

export interface Member {
  /** Offset of the member's header in the file. */
  coff: number;
  /** Offset of its first decompressed byte in the decompressed stream. */
  doff: number;
  /** Where its deflate data starts, when the header is exactly ours (no name, comment or header CRC). */
  data?: number;
}

export const GZIP_MAGIC = Buffer.from([0x1f, 0x8b]);
const FEXTRA = 4;
const SUBFIELD = Buffer.from('AG', 'latin1');
const SUBFIELD_LEN = 16;
/** 10 fixed bytes + XLEN + subfield header + data. */
export const MEMBER_HEADER_SIZE = 10 + 2 + 4 + SUBFIELD_LEN;

/** The header of a member whose lengths are patched in once known (writer). */
export function memberHeader(compressedLength: number, uncompressedLength: number): Buffer {
  const h = Buffer.alloc(MEMBER_HEADER_SIZE);
  h[0] = 0x1f; h[1] = 0x8b; h[2] = 8; h[3] = FEXTRA;
  // MTIME 0 (reproducible), XFL 0, OS 255 (unknown), as a deterministic writer should.
  h[9] = 255;
  h.writeUInt16LE(4 + SUBFIELD_LEN, 10);
  SUBFIELD.copy(h, 12);
  h.writeUInt16LE(SUBFIELD_LEN, 14);
  h.writeBigUInt64LE(BigInt(compressedLength), 16);
  h.writeBigUInt64LE(BigInt(uncompressedLength), 24);
  return h;
}

/**
 * The members of a file written with the "AG" field, or undefined when the first member has
 * none (one opaque member). A chain that does not add up (a lie, a truncated copy) is also
 * undefined: the file is then read as one stream, whose own checks say what is wrong.
 */
export async function scanMembers(fh: FileHandle, fileSize: number): Promise<Member[] | undefined> {
  const members: Member[] = [];
  const h = Buffer.alloc(MEMBER_HEADER_SIZE);
  let coff = 0;
  let doff = 0;
  while (coff < fileSize) {
    const { bytesRead } = await fh.read(h, 0, h.length, coff);
    if (bytesRead < h.length || h[0] !== 0x1f || h[1] !== 0x8b || h[2] !== 8 || (h[3]! & FEXTRA) === 0) return undefined;
    if (h.readUInt16LE(10) !== 4 + SUBFIELD_LEN || !h.subarray(12, 14).equals(SUBFIELD) || h.readUInt16LE(14) !== SUBFIELD_LEN) return undefined;
    const clen = Number(h.readBigUInt64LE(16));
    const dlen = Number(h.readBigUInt64LE(24));
    if (!Number.isSafeInteger(clen) || !Number.isSafeInteger(dlen) || clen < MEMBER_HEADER_SIZE + 8 || coff + clen > fileSize) return undefined;
    members.push({ coff, doff, ...(h[3] === FEXTRA ? { data: coff + MEMBER_HEADER_SIZE } : {}) });
    coff += clen;
    doff += dlen;
  }
  return members.length > 0 ? members : undefined;
}

/** The member holding decompressed offset `at` (the last starting at or before it). */
export function memberAt(members: Member[], at: number): Member {
  let lo = 0;
  let hi = members.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (members[mid]!.doff <= at) lo = mid; else hi = mid - 1;
  }
  return members[lo]!;
}

/** Decompressed bytes from member `m` on, as a stream of chunks (the rest of the file, all members). */
export function inflateFrom(path: string, m: Member, signal?: AbortSignal): Readable {
  const file = createReadStream(path, { start: m.coff, highWaterMark: 1 << 20, ...(signal ? { signal } : {}) });
  const gunzip = createGunzip({ chunkSize: 256 << 10 });
  file.on('error', (e) => gunzip.destroy(e));
  return file.pipe(gunzip);
}

/** A decompressed stream left where the last range ended, for the next range after it. */
interface Cursor {
  pos: number;
  it: AsyncIterator<Buffer>;
  /** Bytes already inflated at pos (the rest of the chunk the last range ended in). */
  rest: Buffer;
  close(): void;
}

const MAX_IDLE = 4;

/**
 * Exactly the decompressed bytes [start, end) of a file. Each range inflates from the member
 * that holds `start`, unless an idle stream stopped earlier at or before it in the same or a
 * later member: reads in the order of the tar (verify; a push whose requests follow it) then
 * inflate the file once, not once per read.
 */
export class RangeReader {
  readonly #path: string;
  readonly #members: Member[];
  #idle: Cursor[] = [];

  constructor(path: string, members: Member[]) {
    this.#path = path;
    this.#members = members;
  }

  read(start: number, end: number, onShort: (got: number) => Error, signal?: AbortSignal): Readable {
    const self = this;
    async function* range(): AsyncGenerator<Buffer> {
      const cur = self.#cursorFor(start, signal);
      let ok = false;
      let left = end - start;
      try {
        let chunk = cur.rest;
        cur.rest = Buffer.alloc(0);
        for (;;) {
          if (chunk.length === 0) {
            const r = await cur.it.next();
            if (r.done) throw onShort(end - start - left);
            chunk = r.value;
          }
          if (cur.pos < start) {
            const drop = Math.min(chunk.length, start - cur.pos);
            cur.pos += drop;
            chunk = chunk.subarray(drop);
            continue;
          }
          if (left === 0) { cur.rest = chunk; break; }
          const take = Math.min(chunk.length, left);
          left -= take;
          cur.pos += take;
          const out = chunk.subarray(0, take);
          chunk = chunk.subarray(take);
          yield out;
          if (left === 0) { cur.rest = chunk; break; }
        }
        ok = true;
      } finally {
        if (ok && !signal?.aborted) self.#release(cur); else cur.close();
      }
    }
    return Readable.from(range(), { objectMode: false, highWaterMark: 1 << 20 });
  }

  #cursorFor(start: number, signal: AbortSignal | undefined): Cursor {
    const m = memberAt(this.#members, start);
    let best = -1;
    for (const [i, c] of this.#idle.entries()) {
      if (c.pos <= start && c.pos >= m.doff && (best === -1 || c.pos > this.#idle[best]!.pos)) best = i;
    }
    if (best !== -1) return this.#idle.splice(best, 1)[0]!;
    void signal; // a cursor outlives one read: aborting a read closes it (below), not the stream it may hand on
    const stream = inflateFrom(this.#path, m);
    return { pos: m.doff, it: (stream as AsyncIterable<Buffer>)[Symbol.asyncIterator](), rest: Buffer.alloc(0), close: () => stream.destroy() };
  }

  #release(c: Cursor): void {
    this.#idle.push(c);
    if (this.#idle.length > MAX_IDLE) this.#idle.shift()!.close();
  }

  close(): void {
    for (const c of this.#idle) c.close();
    this.#idle = [];
  }
}
