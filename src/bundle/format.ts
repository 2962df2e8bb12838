import { AirgapError } from '../errors.js';
import { digestHex } from '../oci/descriptor.js';

/**
 * The bundle is one plain tar holding an OCI image layout plus the application (DESIGN.md
 * "Bundle format"). These names are the contract between BundleWriter, BundleReader and
 * every other tool that reads the file (skopeo oci-archive:, ctr images import, tar).
 */
export const OCI_LAYOUT_FILE = 'oci-layout';
export const OCI_LAYOUT_CONTENT = '{"imageLayoutVersion":"1.0.0"}';
export const INDEX_FILE = 'index.json';
export const METADATA_FILE = 'airgap.json';
export const BLOBS_DIR = 'blobs/sha256';
export const APP_DIR = 'app';

/** Both carry the fully qualified source reference without digest: docker.io/library/redis:7. */
export const ANNOTATION_REF_NAME = 'org.opencontainers.image.ref.name';
export const ANNOTATION_CONTAINERD_NAME = 'io.containerd.image.name';

/**
 * Signatures, attestations and SBOMs carried with an image have their own index.json entry, with
 * NO reference name (so `ctr images import`, skopeo and older readers never take them for an
 * application image) and these annotations instead: the digest they belong to, what they are,
 * and for the cosign tag scheme the tag they go under (`sha256-<hex>.sig`). An OCI 1.1 referrer
 * has no tag: the registry finds it through the `subject` in its own manifest.
 */
export const ANNOTATION_SUBJECT = 'io.airgap.subject';
export const ANNOTATION_ATTACHED_KIND = 'io.airgap.attached';
export const ANNOTATION_ATTACHED_TAG = 'io.airgap.tag';
/** airgap.json.sig: a detached signature over the exact bytes of airgap.json (bundle/signing.ts). */
export const SIGNATURE_FILE = 'airgap.json.sig';

export const METADATA_SCHEMA_VERSION = 1;

export interface BundleImage {
  /** Fully qualified source reference without digest, as in the index.json annotations. */
  ref: string;
  digest: string;
  mediaType: string;
  /** os/arch[/variant] of every platform stored under this reference. */
  platforms: string[];
  /** Total bytes of the image's manifests, configs and layers. */
  size: number;
  /** Where it was pulled from, when that differs from `ref` (the vendor proxy). */
  source?: string;
}

/** The content of airgap.json. */
export interface BundleMetadata {
  schemaVersion: 1;
  tool: { name: string; version: string };
  created: string;
  /** The bundle's identity: a digest over its images, app files and base (src/delta.ts). */
  id?: string;
  appSlug?: string;
  release?: string;
  images: BundleImage[];
  /** Paths relative to app/. */
  appFiles: string[];
  /** Present on a delta bundle: the bundle it builds on and the blobs it expects from it. */
  base?: BundleBase;
  /**
   * The sha256 of index.json (which pins every manifest, and through them every blob) and of
   * every file under app/: what a signature over airgap.json extends to (bundle/signing.ts).
   */
  pins?: BundlePins;
}

export interface BundlePins {
  index: string;
  /** Path relative to app/ → sha256:<hex> of its bytes. */
  app: Record<string, string>;
}

/**
 * A delta bundle lists every image but carries only the blobs its base does not hold; `blobs`
 * are the ones it leaves out, which the target registry must already have (the base pushed).
 */
export interface BundleBase {
  id: string;
  created: string;
  release?: string;
  blobs: BaseBlob[];
}

export interface BaseBlob {
  digest: string;
  size: number;
  /**
   * Some of the base's images (source references) that hold this blob: where the base's push put
   * it. A delta's image that moved to another repository finds its blobs there (push mounts them).
   */
  images?: string[];
}

export function blobPath(digest: string): string {
  return `${BLOBS_DIR}/${digestHex(digest)}`;
}

/** A bundle whose structure (tar, layout, metadata) is not what airgap build writes. */
export function malformedBundle(label: string, detail: string): AirgapError {
  return new AirgapError('E_BUNDLE', `${label}: ${detail}`,
    { hint: 'the bundle is damaged or was not written by airgap build; rebuild it or copy it again' });
}

export function refAnnotations(ref: string): Record<string, string> {
  return { [ANNOTATION_REF_NAME]: ref, [ANNOTATION_CONTAINERD_NAME]: ref };
}

// ---------------------------------------------------------------------------------------------
// ustar headers. Written by hand rather than with tar-stream because the writer fills a planned
// file at known offsets (blobs arrive concurrently, in any order); a sequential packer cannot.

export const BLOCK = 512;
/** Two zero blocks end a tar archive. */
export const END_OF_ARCHIVE_SIZE = 2 * BLOCK;

/** The largest size the 11-digit octal field holds; bigger ones go to PAX + base-256. */
const MAX_OCTAL_SIZE = 0o77777777777;
const NAME_FIELD = 100;
const PREFIX_FIELD = 155;

export type TarEntryType = 'file' | 'dir';

export interface TarHeaderFields {
  /** Relative path; a directory's gets a trailing slash when encoded. */
  name: string;
  type: TarEntryType;
  /** Body size in bytes (0 for a directory). */
  size: number;
  mtime: Date;
}

/** Bytes a body of `size` occupies once padded to a whole block. */
export function paddedSize(size: number): number {
  return Math.ceil(size / BLOCK) * BLOCK;
}

/** Encodes the header block(s) for one entry: a PAX extended header first when ustar cannot hold it. */
export function encodeTarHeader(h: TarHeaderFields): Buffer {
  const name = h.type === 'dir' && !h.name.endsWith('/') ? h.name + '/' : h.name;
  const nameBytes = Buffer.from(name, 'utf8');
  const pax: Array<[string, string]> = [];
  // A long ASCII name splits into ustar's prefix and name fields where it can (every reader knows
  // them; a storage tree's paths fit); anything else takes a PAX path record.
  const split = nameBytes.length > NAME_FIELD && isAscii(nameBytes) ? prefixSplit(name) : -1;
  if ((nameBytes.length > NAME_FIELD && split < 0) || !isAscii(nameBytes)) pax.push(['path', name]);
  if (h.size > MAX_OCTAL_SIZE) pax.push(['size', String(h.size)]);

  const main = ustarBlock({
    name: pax.some(([k]) => k === 'path') ? truncatedName(name) : split >= 0 ? name.slice(split + 1) : name,
    ...(split >= 0 ? { prefix: name.slice(0, split) } : {}),
    typeflag: h.type === 'dir' ? '5' : '0',
    mode: h.type === 'dir' ? 0o755 : 0o644,
    size: h.size,
    mtime: h.mtime,
  });
  if (pax.length === 0) return main;

  const body = Buffer.from(pax.map(([k, v]) => paxRecord(k, v)).join(''), 'utf8');
  const paxHeader = ustarBlock({ name: 'PaxHeader', typeflag: 'x', mode: 0o644, size: body.length, mtime: h.mtime });
  const paxBody = Buffer.alloc(paddedSize(body.length));
  body.copy(paxBody);
  return Buffer.concat([paxHeader, paxBody, main]);
}

/** Length of encodeTarHeader's result without building it (used to plan offsets). */
export function tarHeaderLength(h: Omit<TarHeaderFields, 'mtime'>): number {
  return encodeTarHeader({ ...h, mtime: new Date(0) }).length;
}

interface UstarFields {
  name: string;
  /** ustar's prefix field: the name's leading directories, when the name alone is too long. */
  prefix?: string;
  typeflag: string;
  mode: number;
  size: number;
  mtime: Date;
}

function ustarBlock(f: UstarFields): Buffer {
  const b = Buffer.alloc(BLOCK);
  b.write(f.name, 0, NAME_FIELD, 'utf8');
  writeOctal(b, 100, 8, f.mode);
  writeOctal(b, 108, 8, 0); // uid
  writeOctal(b, 116, 8, 0); // gid
  if (f.size > MAX_OCTAL_SIZE) writeBase256(b, 124, 12, f.size);
  else writeOctal(b, 124, 12, f.size);
  writeOctal(b, 136, 12, Math.max(0, Math.floor(f.mtime.getTime() / 1000)));
  b.write(f.typeflag, 156, 1, 'latin1');
  b.write('ustar\u000000', 257, 8, 'latin1');
  if (f.prefix) b.write(f.prefix, 345, PREFIX_FIELD, 'latin1');
  b.write('root', 265, 32, 'latin1'); // uname
  b.write('root', 297, 32, 'latin1'); // gname
  b.fill(0x20, 148, 156); // checksum is computed with its own field as spaces
  const sum = checksum(b);
  b.write(sum.toString(8).padStart(6, '0') + '\u0000 ', 148, 8, 'latin1');
  return b;
}

/** Unsigned sum of the header bytes, the checksum field counted as eight spaces. */
export function checksum(block: Buffer): number {
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : block[i]!;
  return sum;
}

function writeOctal(b: Buffer, off: number, len: number, value: number): void {
  b.write(value.toString(8).padStart(len - 1, '0') + '\u0000', off, len, 'latin1');
}

/** GNU/star base-256: high bit of the first byte set, big-endian two's complement in the rest. */
function writeBase256(b: Buffer, off: number, len: number, value: number): void {
  let v = BigInt(value);
  for (let i = off + len - 1; i > off; i--) {
    b[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  b[off] = 0x80;
}

/** "<len> key=value\n" where len counts the whole record, itself included. */
function paxRecord(key: string, value: string): string {
  const rest = ` ${key}=${value}\n`;
  const restLen = Buffer.byteLength(rest, 'utf8');
  let len = restLen + String(restLen).length;
  if (String(len).length + restLen !== len) len = restLen + String(len).length;
  return `${len}${rest}`;
}

/** Where a name splits at a slash into ustar's prefix (≤ 155 bytes) and name (≤ 100), or -1. */
function prefixSplit(name: string): number {
  for (let i = name.length - 1; i > 0; i--) {
    if (name[i] === '/' && i <= PREFIX_FIELD && name.length - i - 1 <= NAME_FIELD && name.length - i - 1 > 0) return i;
  }
  return -1;
}

/** A readable stand-in for the ustar name field when the real name lives in the PAX header. */
function truncatedName(name: string): string {
  let out = '';
  for (const ch of name) {
    if (ch.charCodeAt(0) > 0x7e || Buffer.byteLength(out + ch) > NAME_FIELD) break;
    out += ch;
  }
  return out;
}

function isAscii(b: Buffer): boolean {
  for (const byte of b) if (byte > 0x7e || byte < 0x20) return false;
  return true;
}

/** How a base bundle is named in messages: its id, and its release and build time. */
export function baseLabel(base: { id: string; release?: string; created: string }): string {
  return `${base.id.slice(0, 19)}${base.release ? ` (release ${base.release}, built ${base.created})` : ` (built ${base.created})`}`;
}

/** What a signed airgap.json says a bundle is: "release 1.4.2 of app my-app, built 2026-12-01T10:00:00Z". */
export function describeRelease(r: { app?: string; release?: string; created: string }): string {
  return `${[r.release ? `release ${r.release}` : 'a release', r.app ? `of app ${r.app}` : ''].filter(Boolean).join(' ')}, built ${r.created}`;
}

/** The smallest --split-size: below it a bundle would be mostly part files. */
const MIN_PART_SIZE = 1024;

/**
 * "4GB", "700MB", "1.5G", "512KiB", "1000000". Decimal units (KB, MB, GB, TB, and K, M, G, T)
 * are powers of 1000 and binary ones (KiB, MiB, GiB, TiB) powers of 1024: a medium sold as
 * "4 GB files at most" (FAT32: 4 GiB − 1 byte) is safe with --split-size 4GB.
 */
export function parseSize(text: string): number {
  const m = /^\s*([0-9]+(?:\.[0-9]+)?)\s*([kmgt]i?b?|b)?\s*$/i.exec(text);
  const bad = (why: string) => new AirgapError('E_USAGE', `--split-size "${text}" ${why}`,
    { hint: 'give a size such as 4GB, 700MB or 512MiB (KB/MB/GB are powers of 1000, KiB/MiB/GiB of 1024)' });
  if (!m) throw bad('is not a size');
  const unit = (m[2] ?? 'b').toLowerCase();
  const power = { b: 0, k: 1, m: 2, g: 3, t: 4 }[unit[0] as 'b' | 'k' | 'm' | 'g' | 't'];
  const base = unit.includes('i') ? 1024 : 1000;
  const bytes = Math.floor(Number(m[1]) * base ** power);
  if (!Number.isSafeInteger(bytes)) throw bad('is too large');
  if (bytes < MIN_PART_SIZE) throw bad(`is below the minimum part size of ${MIN_PART_SIZE} bytes`);
  return bytes;
}
