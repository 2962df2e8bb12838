import type { AirgapError } from '../errors.js';

/**
 * Reading one tar header and its extensions, shared by the bundle's tar index (tarindex.ts) and
 * the KOTS .airgap walk (src/kotsairgap/tar.ts): a tar comes from elsewhere, so each field is read
 * defensively and every refusal names the entry. `refuse` makes the caller's error (the bundle's,
 * or the .airgap's) from one line of detail.
 */

export type Refuse = (detail: string) => AirgapError;

export const TAR_BLOCK = 512;

/** A NUL-terminated field. */
export function cString(b: Buffer): string {
  const end = b.indexOf(0);
  return b.toString('utf8', 0, end === -1 ? b.length : end);
}

/** The entry name, with the ustar prefix when there is one. */
export function headerName(h: Buffer): string {
  const name = cString(h.subarray(0, 100));
  // Only POSIX ustar has a prefix field; GNU's "ustar  " magic puts other data there.
  if (h.toString('latin1', 257, 263) === 'ustar\u0000') {
    const prefix = cString(h.subarray(345, 500));
    if (prefix) return `${prefix}/${name}`;
  }
  return name;
}

/** Octal (NUL/space padded) or GNU base-256; undefined when unreadable. */
export function parseNumber(h: Buffer, off: number, len: number): number | undefined {
  const field = h.subarray(off, off + len);
  if (field[0]! & 0x80) {
    if (field[0] === 0xff) return undefined; // negative
    let v = BigInt(field[0]! & 0x7f);
    for (let i = 1; i < len; i++) v = (v << 8n) | BigInt(field[i]!);
    return v > BigInt(Number.MAX_SAFE_INTEGER) ? undefined : Number(v);
  }
  const text = field.toString('latin1').replace(/[\u0000 ]+$/, '').replace(/^ +/, '');
  if (text === '') return 0;
  if (!/^[0-7]+$/.test(text)) return undefined;
  return parseInt(text, 8);
}

/** The header's checksum field matches its bytes (summed unsigned, or signed as some old tars did, as GNU tar accepts). */
export function checksumMatches(h: Buffer): boolean {
  const stored = parseNumber(h, 148, 8);
  if (stored === undefined) return false;
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < TAR_BLOCK; i++) {
    const b = i >= 148 && i < 156 ? 0x20 : h[i]!;
    unsigned += b;
    signed += i >= 148 && i < 156 ? 0x20 : (b << 24) >> 24;
  }
  return stored === unsigned || stored === signed;
}

/** A PAX extended header's records that rename or resize the next entry. */
export function parsePax(body: Buffer, at: number, refuse: Refuse): { path?: string; size?: number; link?: string } {
  const out: { path?: string; size?: number; link?: string } = {};
  let i = 0;
  while (i < body.length && body[i] !== 0) {
    const space = body.indexOf(0x20, i);
    const len = space === -1 ? NaN : Number(body.toString('latin1', i, space));
    if (!Number.isSafeInteger(len) || len <= 0 || i + len > body.length) throw refuse(`malformed PAX header at byte ${at}`);
    const record = body.toString('utf8', space + 1, i + len - 1);
    const eq = record.indexOf('=');
    if (eq === -1) throw refuse(`malformed PAX header at byte ${at}`);
    const key = record.slice(0, eq);
    const value = record.slice(eq + 1);
    if (key === 'path') out.path = value;
    else if (key === 'linkpath') out.link = value;
    else if (key === 'size') {
      if (!/^[0-9]+$/.test(value) || !Number.isSafeInteger(Number(value))) throw refuse(`PAX header at byte ${at} has an invalid size "${printable(value)}"`);
      out.size = Number(value);
    }
    i += len;
  }
  return out;
}

/** What a refused typeflag is, in words. */
export function describeType(flag: string): string {
  switch (flag) {
    case '1': return 'a hard link';
    case '2': return 'a symbolic link';
    case '3': return 'a character device';
    case '4': return 'a block device';
    case '6': return 'a FIFO';
    default: return `an unsupported tar entry type "${printable(flag)}"`;
  }
}

/** Normalises a relative path ("./a//b/" → "a/b"); refuses absolute paths, NULs, `..` and names no file system holds. */
export function safePath(name: string, refuse: Refuse): string {
  if (name.startsWith('/') || /^[a-zA-Z]:[\\/]/.test(name)) throw refuse(`entry "${printable(name)}" has an absolute path`);
  if (name.includes('\u0000')) throw refuse(`entry "${printable(name)}" has a NUL in its name`);
  const parts = name.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.some((p) => p === '..' || p.split('\\').includes('..'))) throw refuse(`entry "${printable(name)}" has a ".." path component`);
  // NAME_MAX: such a file could not be written out (ENAMETOOLONG), and no tar made from a file system holds one.
  if (parts.some((p) => Buffer.byteLength(p, 'utf8') > 255)) throw refuse(`entry "${printable(name)}" has a path component longer than 255 bytes`);
  return parts.join('/');
}

/** An untrusted name as it may be printed: control characters replaced, at most 200 characters. */
export function printable(s: string): string {
  // eslint-disable-next-line no-control-regex
  const clean = s.replace(/[\u0000-\u001f\u007f]/g, '?');
  return clean.length > 200 ? clean.slice(0, 200) + '…' : clean;
}
