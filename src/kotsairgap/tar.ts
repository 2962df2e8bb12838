import { AirgapError } from '../errors.js';

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

  /**
   * `seek`, when given, lets a long skip start a fresh stream nearer its target (a gzip member
   * boundary) instead of reading every byte in between.
   */
  constructor(source: AsyncIterable<Buffer>, label: string, end = Number.POSITIVE_INFINITY, seek?: Seek) {
    this.#it = source[Symbol.asyncIterator]();
    this.label = label;
    this.#end = end;
    this.#seek = seek;
  }

  /** Stops the underlying stream (a gunzip of a whole file) when the walk ends early. */
  async close(): Promise<void> {
    await this.#it.return?.();
  }

  get position(): number {
    return this.#pos;
  }

  async #fill(): Promise<boolean> {
    let r: IteratorResult<Buffer>;
    try {
      r = await this.#it.next();
    } catch (e) {
      if (e instanceof Error && 'code' in e && typeof e.code === 'string' && e.code.startsWith('Z_')) {
        throw badAirgap(this.label, e.message === 'unexpected end of file'
          ? 'truncated: the gzip stream ends before its end' : `not a valid gzip stream (${e.message})`);
      }
      throw e;
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

  async skip(n: number, what: string): Promise<void> {
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
    return new ByteSource(parent.chunks(n, label), label, n);
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
      if (h.flag === 'x') pending = { ...pending, ...parsePax(body, label, at) };
      else if (h.flag === 'L') pending = { ...pending, path: cString(body) };
      else if (h.flag === 'K') pending = { ...pending, link: cString(body) };
      continue;
    }
    const link = pending.link ?? h.link;
    pending = {};
    const type = h.flag === '0' || h.flag === '\u0000' || h.flag === '7' ? 'file' as const : h.flag === '5' ? 'dir' as const
      : h.flag === '2' && opts.symlinks ? 'symlink' as const : undefined;
    if (type === undefined) throw badAirgap(label, `entry "${printable(name)}" is ${describeType(h.flag)}, not a regular file`);
    const path = safePath(name, label);
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
  let name = cString(h.subarray(0, 100));
  if (h.toString('latin1', 257, 263) === 'ustar\u0000') {
    const prefix = cString(h.subarray(345, 500));
    if (prefix) name = `${prefix}/${name}`;
  }
  const stored = parseNumber(h, 148, 8);
  if (stored === undefined || stored !== checksum(h)) throw badAirgap(label, `bad tar header checksum at byte ${at} (entry "${printable(name)}")`);
  const size = parseNumber(h, 124, 12);
  if (size === undefined || !Number.isSafeInteger(size)) throw badAirgap(label, `entry "${printable(name)}" has an unreadable size field`);
  return { name, size, flag: String.fromCharCode(h[156]!), link: cString(h.subarray(157, 257)) };
}

function checksum(h: Buffer): number {
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : h[i]!;
  return sum;
}

function cString(b: Buffer): string {
  const end = b.indexOf(0);
  return b.toString('utf8', 0, end === -1 ? b.length : end);
}

function parseNumber(h: Buffer, off: number, len: number): number | undefined {
  const field = h.subarray(off, off + len);
  if (field[0]! & 0x80) {
    if (field[0] === 0xff) return undefined;
    let v = BigInt(field[0]! & 0x7f);
    for (let i = 1; i < len; i++) v = (v << 8n) | BigInt(field[i]!);
    return v > BigInt(Number.MAX_SAFE_INTEGER) ? undefined : Number(v);
  }
  const text = field.toString('latin1').replace(/[\u0000 ]+$/, '').replace(/^ +/, '');
  if (text === '') return 0;
  if (!/^[0-7]+$/.test(text)) return undefined;
  return parseInt(text, 8);
}

function parsePax(body: Buffer, label: string, at: number): { path?: string; size?: number; link?: string } {
  const out: { path?: string; size?: number; link?: string } = {};
  let i = 0;
  while (i < body.length && body[i] !== 0) {
    const space = body.indexOf(0x20, i);
    const len = space === -1 ? NaN : Number(body.toString('latin1', i, space));
    if (!Number.isSafeInteger(len) || len <= 0 || i + len > body.length) throw badAirgap(label, `malformed PAX header at byte ${at}`);
    const record = body.toString('utf8', space + 1, i + len - 1);
    const eq = record.indexOf('=');
    if (eq === -1) throw badAirgap(label, `malformed PAX header at byte ${at}`);
    const key = record.slice(0, eq);
    const value = record.slice(eq + 1);
    if (key === 'path') out.path = value;
    else if (key === 'linkpath') out.link = value;
    else if (key === 'size') {
      if (!/^[0-9]+$/.test(value) || !Number.isSafeInteger(Number(value))) throw badAirgap(label, `PAX header at byte ${at} has an invalid size "${printable(value)}"`);
      out.size = Number(value);
    }
    i += len;
  }
  return out;
}

function describeType(flag: string): string {
  switch (flag) {
    case '1': return 'a hard link';
    case '2': return 'a symbolic link';
    case '3': return 'a character device';
    case '4': return 'a block device';
    case '6': return 'a FIFO';
    default: return `an unsupported tar entry type "${printable(flag)}"`;
  }
}

function safePath(name: string, label: string): string {
  if (name.startsWith('/') || /^[a-zA-Z]:[\\/]/.test(name)) throw badAirgap(label, `entry "${printable(name)}" has an absolute path`);
  if (name.includes('\u0000')) throw badAirgap(label, `entry "${printable(name)}" has a NUL in its name`);
  const parts = name.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.some((p) => p === '..' || p.split('\\').includes('..'))) throw badAirgap(label, `entry "${printable(name)}" has a ".." path component`);
  return parts.join('/');
}

export function printable(s: string): string {
  // eslint-disable-next-line no-control-regex
  const clean = s.replace(/[\u0000-\u001f\u007f]/g, '?');
  return clean.length > 200 ? clean.slice(0, 200) + '…' : clean;
}
