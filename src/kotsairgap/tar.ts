import { AirgapError } from '../errors.js';
import type { Region } from './inflate.js';
import { checksumMatches, cString, describeType, headerName, parseNumber, parsePax, printable, safePath } from '../bundle/tarheader.js';
export { printable };

/**
 * A tar read as a stream (the inside of a gzip, or a docker archive inside that), never
 * extracted: each entry's name, size and where its body starts in the stream. What a careless
 * extractor could be tricked with is refused as the bundle reader refuses it (links, devices,
 * absolute paths, `..`, duplicates, truncation, bad checksums).
 */

export const BLOCK = 512;
const MAX_META_BODY = 1 << 20;
export const MAX_ENTRIES = 1_000_000;

/** Skips shorter than this are read through: a fresh stream costs more than inflating them. */
const SEEK_MIN = 1 << 20;

export type Seek = (target: number) => { at: number; source: AsyncIterable<Buffer> } | undefined;

/** A source that can pass over its next n bytes without handing them through a stream (GzipWalk.skip). */
export interface Skipper {
  skip(n: number, visit: (b: Buffer, region: Region | undefined) => void | Promise<void>): Promise<number>;
}

export interface StreamEntry {
  name: string;
  /** 'symlink' only where the walk was asked to allow them (inside a docker archive). */
  type: 'file' | 'dir' | 'symlink';
  /** A symlink's target, as written. */
  link?: string;
  size: number;
  /** Where the body starts, counted from the start of the stream the walk was given. */
  offset: number;
}

export function badAirgap(label: string, detail: string): AirgapError {
  return new AirgapError('E_BUNDLE', `${label}: ${detail}`,
    { hint: 'the .airgap file is damaged or was not written by the vendor portal, KOTS or airgap build; download or copy it again' });
}

/**
 * Exact reads over an async source of chunks, counting the position; `limit` makes a view of
 * the next n bytes (a nested tar), which ends there whatever its parent holds after.
 */
export class ByteSource {
  #it: AsyncIterator<Buffer>;
  #buf: Buffer = Buffer.alloc(0);
  #pos = 0;
  #end: number;
  readonly label: string;
  readonly #seek: Seek | undefined;
  readonly #skipper: Skipper | undefined;

  /** Where this stream starts in the outermost one (a limit() view's start). */
  readonly origin: number;

  /**
   * `seek`, when given, lets a long skip start a fresh stream nearer its target (a gzip member
   * boundary) instead of reading every byte in between; `skipper` (the source itself, a GzipWalk)
   * lets skip and pass go over bytes without their being handed through the stream.
   */
  constructor(source: AsyncIterable<Buffer>, label: string, end = Number.POSITIVE_INFINITY, seek?: Seek, skipper?: Skipper, origin = 0) {
    this.origin = origin;
    this.#it = source[Symbol.asyncIterator]();
    this.label = label;
    this.#end = end;
    this.#seek = seek;
    this.#skipper = skipper;
  }

  /** Stops the underlying stream (a gunzip of a whole file) when the walk ends early. */
  async close(): Promise<void> {
    await this.#it.return?.();
  }

  get position(): number {
    return this.#pos;
  }

  /** An error of zlib or of the walk, said as what it means for the file. */
  #gzipError(e: unknown): unknown {
    if (e instanceof Error && 'code' in e && typeof e.code === 'string' && e.code.startsWith('Z_')) {
      return badAirgap(this.label, e.message === 'unexpected end of file'
        ? 'truncated: the gzip stream ends before its end' : `not a valid gzip stream (${e.message})`);
    }
    return e;
  }

  async #fill(): Promise<boolean> {
    let r: IteratorResult<Buffer>;
    try {
      r = await this.#it.next();
    } catch (e) {
      throw this.#gzipError(e);
    }
    if (r.done) return false;
    this.#buf = this.#buf.length === 0 ? r.value : Buffer.concat([this.#buf, r.value]);
    return true;
  }

  /** Exactly n bytes, or undefined at a clean end of the stream (nothing read). */
  async read(n: number, what: string): Promise<Buffer | undefined> {
    if (this.#pos + n > this.#end) throw badAirgap(this.label, `truncated: ${what} runs past the end of its archive`);
    while (this.#buf.length < n) {
      if (!(await this.#fill())) {
        if (this.#buf.length === 0) return undefined;
        throw badAirgap(this.label, `truncated: the archive ends inside ${what} (at byte ${this.#pos + this.#buf.length})`);
      }
    }
    const out = this.#buf.subarray(0, n);
    this.#buf = this.#buf.subarray(n);
    this.#pos += n;
    return out;
  }

  /** The next n bytes, chunk by chunk (no copy), to a consumer; truncation is an error. */
  async *chunks(n: number, what: string): AsyncGenerator<Buffer> {
    if (this.#pos + n > this.#end) throw badAirgap(this.label, `truncated: ${what} runs past the end of its archive`);
    let left = n;
    while (left > 0) {
      if (this.#buf.length === 0 && !(await this.#fill())) {
        throw badAirgap(this.label, `truncated: the archive ends inside ${what} (${left} of ${n} bytes missing)`);
      }
      const take = Math.min(left, this.#buf.length);
      const out = this.#buf.subarray(0, take);
      this.#buf = this.#buf.subarray(take);
      this.#pos += take;
      left -= take;
      yield out;
    }
  }

  /**
   * The next n bytes shown to `visit` with their position (and, where the source passed over them,
   * the region they lie in) rather than handed out: what is buffered, then the rest straight from
   * the skipper where there is one. A visitor's promise is waited for.
   */
  async pass(n: number, what: string, visit: (b: Buffer, at: number, region: Region | undefined) => void | Promise<void>): Promise<void> {
    if (this.#pos + n > this.#end) throw badAirgap(this.label, `truncated: ${what} runs past the end of its archive`);
    const k = Math.min(n, this.#buf.length);
    if (k > 0) {
      const b = this.#buf.subarray(0, k);
      this.#buf = this.#buf.subarray(k);
      this.#pos += k;
      n -= k;
      await visit(b, this.#pos - k, undefined);
    }
    if (n === 0) return;
    if (!this.#skipper) {
      for await (const c of this.chunks(n, what)) await visit(c, this.#pos - c.length, undefined);
      return;
    }
    let at = this.#pos;
    let got: number;
    try {
      got = await this.#skipper.skip(n, (b, region) => { const from = at; at += b.length; return visit(b, from, region); });
    } catch (e) {
      throw this.#gzipError(e);
    }
    this.#pos += got;
    if (got < n) throw badAirgap(this.label, `truncated: the archive ends inside ${what} (${n - got} of ${n} bytes missing)`);
  }

  async skip(n: number, what: string): Promise<void> {
    if (this.#skipper && n >= SEEK_MIN) { await this.pass(n, what, () => undefined); return; }
    const target = this.#pos + n;
    if (this.#seek && n >= SEEK_MIN && target <= this.#end) {
      const next = this.#seek(target);
      if (next && next.at > this.#pos + this.#buf.length && next.at <= target) {
        await this.#it.return?.();
        this.#it = next.source[Symbol.asyncIterator]();
        this.#buf = Buffer.alloc(0);
        this.#pos = next.at;
        n = target - next.at;
      }
    }
    for await (const _ of this.chunks(n, what)) { /* discarded */ }
  }

  /** Whatever is left (a tar's trailing padding): read and dropped. */
  async drain(): Promise<void> {
    if (Number.isFinite(this.#end)) { await this.skip(this.#end - this.#pos, 'padding'); return; }
    this.#buf = Buffer.alloc(0);
    while (await this.#fill()) { this.#pos += this.#buf.length; this.#buf = Buffer.alloc(0); }
  }

  /** A view on the next n bytes: a nested archive's own stream, positions counted from its start. */
  limit(n: number, label: string): ByteSource {
    const parent = this;
    return new ByteSource(parent.chunks(n, label), label, n, undefined, undefined, parent.origin + parent.#pos);
  }
}

/**
 * Walks the tar: yields each file or directory once its header is read; its body must then be
 * read (chunks/read/skip on `src`) or it is skipped when the walk resumes.
 */
export async function* walkTar(src: ByteSource, label: string, opts: { symlinks?: boolean } = {}): AsyncGenerator<StreamEntry> {
  let pending: { path?: string; size?: number; link?: string } = {};
  let count = 0;
  const seen = new Set<string>();
  for (;;) {
    const at = src.position;
    const header = await src.read(BLOCK, 'a tar header');
    if (!header) throw badAirgap(label, `truncated: the archive ends at byte ${at} without its end-of-archive marker`);
    if (header.every((b) => b === 0)) return;
    if (++count > MAX_ENTRIES) throw badAirgap(label, `more than ${MAX_ENTRIES} entries`);
    const h = parseHeader(header, label, at);
    let size = pending.size ?? h.size;
    const name = pending.path ?? h.name;
    if (h.flag === 'x' || h.flag === 'L' || h.flag === 'K' || h.flag === 'g') {
      size = h.size;
      if (size > MAX_META_BODY) throw badAirgap(label, `tar extension header at byte ${at} is ${size} bytes`);
      const body = (await src.read(size, 'a tar extension header')) ?? Buffer.alloc(0);
      await src.skip(padding(size), 'tar padding');
      if (h.flag === 'x') pending = { ...pending, ...parsePax(body, at, (d) => badAirgap(label, d)) };
      else if (h.flag === 'L') pending = { ...pending, path: cString(body) };
      else if (h.flag === 'K') pending = { ...pending, link: cString(body) };
      continue;
    }
    const link = pending.link ?? h.link;
    pending = {};
    const type = h.flag === '0' || h.flag === '\u0000' || h.flag === '7' ? 'file' as const : h.flag === '5' ? 'dir' as const
      : h.flag === '2' && opts.symlinks ? 'symlink' as const : undefined;
    if (type === undefined) throw badAirgap(label, `entry "${printable(name)}" is ${describeType(h.flag)}, not a regular file`);
    const path = safePath(name, (d) => badAirgap(label, d));
    const bodySize = type === 'file' ? size : 0;
    const offset = src.position;
    if (path !== '') {
      if (seen.has(path)) throw badAirgap(label, `duplicate entry "${printable(path)}"`);
      seen.add(path);
      yield { name: path, type, size: bodySize, offset, ...(type === 'symlink' ? { link } : {}) };
    }
    // Whatever of the body the consumer left unread, then the padding.
    const read = src.position - offset;
    if (read > bodySize) throw new Error('tar walk: consumer read past the entry');
    await src.skip(bodySize - read + padding(bodySize), `entry "${printable(path)}"`);
  }
}

export function padding(size: number): number {
  return (BLOCK - (size % BLOCK)) % BLOCK;
}

interface Header { name: string; size: number; flag: string; link: string }

export function parseHeader(h: Buffer, label: string, at: number): Header {
  const name = headerName(h);
  if (!checksumMatches(h)) throw badAirgap(label, `bad tar header checksum at byte ${at} (entry "${printable(name)}")`);
  const size = parseNumber(h, 124, 12);
  if (size === undefined || !Number.isSafeInteger(size)) throw badAirgap(label, `entry "${printable(name)}" has an unreadable size field`);
  return { name, size, flag: String.fromCharCode(h[156]!), link: cString(h.subarray(157, 257)) };
}
