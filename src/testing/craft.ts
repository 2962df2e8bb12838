import { createHash } from 'node:crypto';
import type { Descriptor } from '../oci/descriptor.js';
import { MediaType } from '../oci/mediatypes.js';
import { blobOf, type Blob } from '../bundle/testimages.js';

/**
 * Test support: bundles crafted byte by byte, independent of src/bundle's writer, so a test can
 * hand the CLI what airgap build would never write (a layer as an image, one name bound to two
 * digests, 5,000 nested indexes, a FIFO where a part should be).
 */

export interface CraftEntry {
  name: string;
  /** '0' file, '5' directory, '2' symlink, '1' hard link. */
  type?: string;
  body?: Buffer | string;
  linkname?: string;
}

export function tarHeader(name: string, size: number, type = '0', linkname = ''): Buffer {
  const h = Buffer.alloc(512);
  h.write(name, 0, 100, 'utf8');
  h.write(type === '5' ? '0000755\0' : '0000644\0', 100, 'latin1');
  h.write('0000000\0', 108, 'latin1');
  h.write('0000000\0', 116, 'latin1');
  h.write(size.toString(8).padStart(11, '0') + '\0', 124, 'latin1');
  h.write('00000000000\0', 136, 'latin1');
  h.write(type, 156, 'latin1');
  h.write(linkname, 157, 100, 'utf8');
  h.write('ustar\u000000', 257, 'latin1');
  h.fill(0x20, 148, 156);
  let sum = 0;
  for (const b of h) sum += b;
  h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'latin1');
  return h;
}

/** A plain tar of the entries, in order, with the end-of-archive marker. */
export function packTar(entries: CraftEntry[]): Buffer {
  const parts: Buffer[] = [];
  for (const e of entries) {
    const type = e.type ?? '0';
    const body = type === '0' ? Buffer.from(e.body ?? '') : Buffer.alloc(0);
    if (Buffer.byteLength(e.name) > 100) {
      // A PAX header carries the long name, as tar writes it.
      const rest = ` path=${e.name}\n`;
      let len = Buffer.byteLength(rest) + 1;
      while (String(len).length + Buffer.byteLength(rest) !== len) len++;
      const pax = Buffer.from(`${len}${rest}`);
      parts.push(tarHeader('PaxHeader', pax.length, 'x'), pax, Buffer.alloc(Math.ceil(pax.length / 512) * 512 - pax.length));
    }
    parts.push(tarHeader(e.name, body.length, type, e.linkname ?? ''), body, Buffer.alloc(Math.ceil(body.length / 512) * 512 - body.length));
  }
  parts.push(Buffer.alloc(1024));
  return Buffer.concat(parts);
}

export interface CraftBundle {
  /** index.json's manifests, as given. */
  index: unknown[];
  blobs: Blob[];
  /** airgap.json; none when absent. */
  metadata?: unknown;
  /** Paths under app/ → content. */
  app?: Record<string, string>;
  /** Entries appended as they are. */
  extra?: CraftEntry[];
}

/** An OCI layout tar: oci-layout, index.json, each blob once, app files, airgap.json. */
export function craftBundle(b: CraftBundle): Buffer {
  const seen = new Set<string>();
  const blobs = b.blobs.filter((x) => !seen.has(x.descriptor.digest) && seen.add(x.descriptor.digest));
  return packTar([
    { name: 'oci-layout', body: '{"imageLayoutVersion":"1.0.0"}' },
    { name: 'index.json', body: JSON.stringify({ schemaVersion: 2, mediaType: MediaType.OciIndex, manifests: b.index }) },
    ...blobs.map((x) => ({ name: `blobs/sha256/${x.descriptor.digest.slice(7)}`, body: x.bytes })),
    ...Object.entries(b.app ?? {}).map(([p, c]) => ({ name: `app/${p}`, body: c })),
    ...(b.metadata !== undefined ? [{ name: 'airgap.json', body: JSON.stringify(b.metadata) }] : []),
    ...(b.extra ?? []),
  ]);
}

/** An index.json entry naming `ref`. */
export function named(d: Descriptor, ref: string): Descriptor {
  return { mediaType: d.mediaType, digest: d.digest, size: d.size,
    annotations: { 'org.opencontainers.image.ref.name': ref, 'io.containerd.image.name': ref } };
}

/** `depth` OCI indexes, each holding the one below it, over `inner`; the outermost last. */
export function nestedIndexes(inner: Descriptor, depth: number): Blob[] {
  const out: Blob[] = [];
  let below = inner;
  for (let i = 0; i < depth; i++) {
    const idx = blobOf(Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MediaType.OciIndex,
      manifests: [{ mediaType: below.mediaType, digest: below.digest, size: below.size, platform: { os: 'linux', architecture: 'amd64' } }] })),
    MediaType.OciIndex);
    out.push(idx);
    below = idx.descriptor;
  }
  return out;
}

export function sha256Hex(b: Buffer | string): string {
  return createHash('sha256').update(b).digest('hex');
}

/** The entries of a plain ustar tar (PAX long names not read): enough to look inside a bundle. */
export function entriesOf(tar: Buffer): { name: string; type: string; body: Buffer }[] {
  const out: { name: string; type: string; body: Buffer }[] = [];
  for (let pos = 0; pos + 512 <= tar.length;) {
    const h = tar.subarray(pos, pos + 512);
    if (h.every((b) => b === 0)) break;
    const name = h.toString('utf8', 0, 100).replace(/\0.*$/s, '');
    const size = parseInt(h.toString('latin1', 124, 136).replace(/[\0 ]/g, '') || '0', 8);
    out.push({ name, type: String.fromCharCode(h[156]!), body: Buffer.from(tar.subarray(pos + 512, pos + 512 + size)) });
    pos += 512 + Math.ceil(size / 512) * 512;
  }
  return out;
}
