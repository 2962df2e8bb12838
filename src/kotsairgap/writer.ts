import { open, rename, rm, type FileHandle } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { createDeflateRaw, crc32 } from 'node:zlib';
import { stringify } from 'yaml';
import { AirgapError } from '../errors.js';
import { digestHex, type Descriptor } from '../oci/descriptor.js';
import { VerifyingStream } from '../oci/verify.js';
import { lastComponent, parseReference } from '../reference.js';
import { flatten, loadGraph, type GraphNode } from '../copy.js';
import { encodeTarHeader } from '../bundle/format.js';
import type { BundleSource } from '../bundle/source.js';
import { MEMBER_HEADER_SIZE, memberHeader } from './gzip.js';
import { AIRGAP_YAML, APP_ARCHIVE, FORMAT_REGISTRY } from './metadata.js';
import { STORED_BLOCK } from './stored.js';
import { BLOCK, padding } from './tar.js';

/**
 * Writes a KOTS `.airgap` (format docker) from a bundle: airgap.yaml and app.tar.gz first, then
 * images/ as a distribution registry's storage root (paths.go), which is what KOTS serves with
 * its temporary registry and pushes with skopeo --all. Every entry is its own gzip member (gzip.ts),
 * so the file stays one ordinary .tar.gz for KOTS and tar, and airgap reads it at random.
 * Deterministic: sorted entries, mtime 0, fixed compression levels.
 */

export interface KotsAirgapOptions {
  appSlug: string;
  versionLabel?: string;
  /** Images (by reference) to leave out: a delta's base already carried them with this digest. */
  leaveOut?: Map<string, string>;
}

export interface KotsAirgapSummary {
  savedImages: string[];
  leftOut: string[];
  blobs: number;
  bytes: number;
}

const STORAGE = 'images/docker/registry/v2';

export async function writeKotsAirgap(src: BundleSource, out: string, opts: KotsAirgapOptions): Promise<KotsAirgapSummary> {
  const images: { ref: string; repo: string; tag: string; graph: GraphNode }[] = [];
  const leftOut: string[] = [];
  const byName = new Map<string, string>();
  for (const { ref, descriptor } of src.images()) {
    if (opts.leaveOut?.get(ref) === descriptor.digest) { leftOut.push(ref); continue; }
    const r = parseReference(ref, `${src.label}: index.json`);
    // KOTS's temporary registry names a repository by the image's last path component (temp_registry.go).
    const repo = lastComponent(r.repository);
    const tag = r.tag ?? 'latest';
    const was = byName.get(`${repo}:${tag}`);
    if (was !== undefined) {
      throw new AirgapError('E_COLLISION', `${was} and ${ref} would both be ${repo}:${tag} in a KOTS .airgap (KOTS keys images by their last path component)`,
        { hint: 'give one of the images another name or tag' });
    }
    byName.set(`${repo}:${tag}`, ref);
    images.push({ ref, repo, tag, graph: await loadGraph(src, await src.resolve(ref), ref) });
  }

  // Every distinct blob once; each repository's links to its manifests and layers.
  const blobs = new Map<string, Descriptor>();
  const links = new Map<string, string>();
  for (const img of images) {
    const base = `${STORAGE}/repositories/${img.repo}`;
    for (const n of flatten([img.graph])) {
      const d = n.descriptor;
      if (!blobs.has(d.digest)) blobs.set(d.digest, d);
      const hex = digestHex(d.digest);
      if (n.bytes !== undefined) links.set(`${base}/_manifests/revisions/sha256/${hex}/link`, d.digest);
      else links.set(`${base}/_layers/sha256/${hex}/link`, d.digest);
    }
    const root = img.graph.descriptor.digest;
    links.set(`${base}/_manifests/tags/${img.tag}/current/link`, root);
    links.set(`${base}/_manifests/tags/${img.tag}/index/sha256/${digestHex(root)}/link`, root);
  }

  const app = await appArchive(src);
  const savedImages = images.map((i) => i.ref);
  const yaml = stringify({
    apiVersion: 'kots.io/v1beta1', kind: 'Airgap', metadata: { name: opts.appSlug },
    spec: {
      appSlug: opts.appSlug,
      ...(opts.versionLabel ? { versionLabel: opts.versionLabel } : {}),
      format: FORMAT_REGISTRY,
      savedImages,
      uncompressedSize: [...blobs.values()].reduce((n, d) => n + d.size, 0) + app.length,
    },
  });

  const tmp = `${out}.partial`;
  const fh = await open(tmp, 'wx', 0o644).catch((e: NodeJS.ErrnoException) => {
    throw new AirgapError('E_OUTPUT', `cannot write ${out}: ${e.message}`, { cause: e });
  });
  try {
    const w = new MemberWriter(fh);
    await w.entry(AIRGAP_YAML, [Buffer.from(yaml)], yaml.length, 9);
    await w.entry(APP_ARCHIVE, [app], app.length, 0);
    const dirs = new Set<string>();
    const dir = async (path: string) => {
      const parts = path.split('/');
      for (let i = 1; i < parts.length; i++) {
        const d = parts.slice(0, i).join('/');
        if (!dirs.has(d)) { dirs.add(d); await w.dir(d); }
      }
    };
    for (const d of [...blobs.values()].sort((a, b) => (a.digest < b.digest ? -1 : 1))) {
      const hex = digestHex(d.digest);
      const path = `${STORAGE}/blobs/sha256/${hex.slice(0, 2)}/${hex}/data`;
      await dir(path);
      const stream = (await src.fetch(d)).pipe(new VerifyingStream(d, `${src.label}: ${d.digest}`));
      // Layers are compressed already: stored as is (deflate's stored blocks) rather than deflated again for nothing.
      await w.entry(path, stream, d.size, /gzip|zstd/.test(d.mediaType) ? 0 : 6);
    }
    for (const [path, digest] of [...links].sort(([a], [b]) => (a < b ? -1 : 1))) {
      await dir(path);
      await w.entry(path, [Buffer.from(digest)], digest.length, 6);
    }
    await w.end();
    await fh.sync();
  } catch (e) {
    await fh.close().catch(() => undefined);
    await rm(tmp, { force: true });
    throw e;
  }
  await fh.close();
  await rename(tmp, out);
  return { savedImages, leftOut, blobs: blobs.size, bytes: [...blobs.values()].reduce((n, d) => n + d.size, 0) };
}

/** The bundle's app/ files as app.tar.gz (KOTS extracts it as the release). */
async function appArchive(src: BundleSource): Promise<Buffer> {
  const parts: Buffer[] = [];
  for (const f of src.appFiles()) {
    const body = await src.readAppFile(f);
    parts.push(tarHeader(f, body.length, '0'), body, Buffer.alloc(padding(body.length)));
  }
  parts.push(Buffer.alloc(2 * BLOCK));
  const { gzipSync } = await import('node:zlib');
  return gzipSync(Buffer.concat(parts), { level: 9 });
}

/** Tar entries, each its own gzip member with the "AG" lengths patched into its header. */
class MemberWriter {
  readonly #fh: FileHandle;
  #pos = 0;

  constructor(fh: FileHandle) {
    this.#fh = fh;
  }

  async dir(path: string): Promise<void> {
    await this.#member([tarHeader(path + '/', 0, '5')], 6);
  }

  async entry(path: string, body: Iterable<Buffer> | Readable, size: number, level: number): Promise<void> {
    const self = this;
    async function* all(): AsyncGenerator<Buffer> {
      yield tarHeader(path, size, '0');
      for await (const c of body as AsyncIterable<Buffer>) yield c;
      yield Buffer.alloc(padding(size));
    }
    await self.#member(all(), level);
  }

  async end(): Promise<void> {
    await this.#member([Buffer.alloc(2 * BLOCK)], 6);
  }

  async #member(chunks: Iterable<Buffer> | AsyncIterable<Buffer>, level: number): Promise<void> {
    if (level === 0) return this.#storedMember(chunks);
    const start = this.#pos;
    this.#pos += MEMBER_HEADER_SIZE;
    let crc = 0;
    let dlen = 0;
    const deflate = createDeflateRaw({ level, chunkSize: 256 << 10 });
    const written = (async () => {
      for await (const c of deflate as AsyncIterable<Buffer>) {
        await this.#fh.write(c, 0, c.length, this.#pos);
        this.#pos += c.length;
      }
    })();
    try {
      for await (const c of chunks) {
        crc = crc32(c, crc);
        dlen += c.length;
        if (!deflate.write(c)) await new Promise<void>((r) => deflate.once('drain', r));
      }
      deflate.end();
    } catch (e) {
      deflate.destroy();
      await written.catch(() => undefined);
      throw e;
    }
    await written;
    await this.#finish(start, crc, dlen);
  }

  /**
   * A member of stored blocks written here, each of STORED_BLOCK bytes but the last: deflate's
   * own framing, so any gzip reader reads it, and the reader can lay out a run of them in one
   * read (stored.ts, readBlocks).
   */
  async #storedMember(chunks: Iterable<Buffer> | AsyncIterable<Buffer>): Promise<void> {
    const start = this.#pos;
    this.#pos += MEMBER_HEADER_SIZE;
    let crc = 0;
    let dlen = 0;
    let block = Buffer.allocUnsafe(STORED_BLOCK);
    let fill = 0;
    // A full block waits for the next byte: only then is it known not to be the last (BFINAL).
    const emit = async (data: Buffer, final: boolean) => {
      const h = Buffer.from([final ? 1 : 0, data.length & 0xff, data.length >> 8, ~data.length & 0xff, (~data.length >> 8) & 0xff]);
      await this.#fh.writev([h, data], this.#pos);
      this.#pos += h.length + data.length;
    };
    for await (const c of chunks) {
      crc = crc32(c, crc);
      dlen += c.length;
      for (let i = 0; i < c.length;) {
        if (fill === STORED_BLOCK) { await emit(block, false); block = Buffer.allocUnsafe(STORED_BLOCK); fill = 0; }
        const n = Math.min(STORED_BLOCK - fill, c.length - i);
        c.copy(block, fill, i, i + n);
        fill += n;
        i += n;
      }
    }
    await emit(block.subarray(0, fill), true);
    await this.#finish(start, crc, dlen);
  }

  async #finish(start: number, crc: number, dlen: number): Promise<void> {
    const trailer = Buffer.alloc(8);
    trailer.writeUInt32LE(crc >>> 0, 0);
    trailer.writeUInt32LE(dlen % 2 ** 32, 4);
    await this.#fh.write(trailer, 0, 8, this.#pos);
    this.#pos += 8;
    await this.#fh.write(memberHeader(this.#pos - start, dlen), 0, MEMBER_HEADER_SIZE, start);
  }
}

/**
 * A tar header as our bundle writes them (bundle/format.ts): ustar, a long name split into prefix
 * and name (a storage tree's paths) or a PAX path, a body of 8 GiB or more (a big layer) with a
 * PAX size record and a base-256 size field (GNU tar, Go's archive/tar and KOTS read both); owner
 * root, mtime 0, so the same input gives the same file.
 */
export function tarHeader(name: string, size: number, type: '0' | '5'): Buffer {
  return encodeTarHeader({ name, type: type === '5' ? 'dir' : 'file', size, mtime: new Date(0) });
}
