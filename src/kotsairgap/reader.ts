import { Readable } from 'node:stream';
import { gunzipSync } from 'node:zlib';
import { AirgapError } from '../errors.js';
import { assertDigest, type Descriptor } from '../oci/descriptor.js';
import { MAX_MANIFEST_BYTES, type ParsedManifest } from '../oci/manifest.js';
import { isIndexType, isManifestType } from '../oci/mediatypes.js';
import { isDigestOnly, lastComponent, parseReference, taggedName } from '../reference.js';
import type { FetchOptions, Resolved } from '../store.js';
import type { BundleBase, BundleMetadata } from '../bundle/format.js';
import type { BundleBlob } from '../bundle/reader.js';
import { openRegularFile } from '../bundle/regular.js';
import { checkBundleManifest, parseBundleManifest } from '../bundle/rules.js';
import type { BundleSource } from '../bundle/source.js';
import { archiveImage } from './dockerarchive.js';
import { memberAt, RangeReader, type Member } from './gzip.js';
import { readPieces, type Piece } from './stored.js';
import { AIRGAP_YAML, APP_ARCHIVE, FORMAT_ARCHIVE, imageFormat, type AirgapSpec } from './metadata.js';
import { scanAirgap, type ScannedBlob } from './scan.js';
import { readStorageTree } from './storage.js';
import { badAirgap, ByteSource, walkTar } from './tar.js';

/** app.tar.gz unpacked in memory: a release is manifests and chart archives, not images. */
const MAX_APP_BYTES = 1 << 30;

/**
 * A KOTS `.airgap` read in place, as a bundle: its images from the registry storage tree (or the
 * docker archives) inside the gzip'd tar, its release from app.tar.gz. Blobs stream from where
 * they lie in the decompressed tar (gzip.ts); nothing is unpacked to disk.
 */
export class KotsAirgapReader implements BundleSource {
  readonly label: string;
  readonly malformedCode = 'E_BUNDLE' as const;
  readonly path: string;
  readonly file: BundleSource['file'];
  readonly spec: AirgapSpec;
  readonly #yaml: Buffer;
  readonly #blobs: Map<string, ScannedBlob>;
  /** Manifests made here (docker archives): served from memory. */
  readonly #made = new Map<string, Buffer>();
  readonly #images: { ref: string; descriptor: Descriptor }[];
  readonly #app: Map<string, Buffer>;
  readonly #ranges: RangeReader;
  readonly #members: Member[];

  private constructor(path: string, size: number, spec: AirgapSpec, yaml: Buffer, blobs: Map<string, ScannedBlob>,
    images: { ref: string; descriptor: Descriptor }[], app: Map<string, Buffer>, ranges: RangeReader, members: Member[]) {
    this.label = `.airgap ${path}`;
    this.path = path;
    this.file = { size, split: undefined, checkParts: async () => [] };
    this.spec = spec;
    this.#yaml = yaml;
    this.#blobs = blobs;
    this.#images = images;
    this.#app = app;
    this.#ranges = ranges;
    this.#members = members;
  }

  static async open(path: string): Promise<KotsAirgapReader> {
    const label = `.airgap ${path}`;
    const { fh, size } = await openRegularFile(path, label, (e) => e.code === 'ENOENT'
      ? new AirgapError('E_NOT_FOUND', `bundle ${path} does not exist`)
      : new AirgapError('E_BUNDLE', `cannot read bundle ${path}: ${e.message}`, { cause: e }));
    let scan;
    try {
      scan = await scanAirgap(path, fh, size, label);
    } finally {
      await fh.close();
    }
    const ranges = new RangeReader(path, scan.members);
    const app = scan.app ? await unpackApp(scan.app, label) : new Map<string, Buffer>();
    const blobs = new Map<string, ScannedBlob>();
    const reader = (images: { ref: string; descriptor: Descriptor }[]) =>
      new KotsAirgapReader(path, size, scan.spec, scan.airgapYaml, blobs, images, app, ranges, scan.members);
    try {
      if (imageFormat(scan.spec) === FORMAT_ARCHIVE) {
        const images = [];
        const made = new Map<string, Buffer>();
        for (const a of scan.archives) {
          const img = archiveImage(a, label);
          for (const [d, b] of img.blobs) if (!blobs.has(d)) blobs.set(d, b);
          made.set(img.descriptor.digest, img.manifest);
          images.push({ ref: img.ref, descriptor: img.descriptor });
        }
        const r = reader(dedupe(images, label));
        for (const [d, m] of made) r.#made.set(d, m);
        return r;
      }
      const tree = readStorageTree(scan.blobs, scan.links, label);
      for (const [d, b] of tree.blobs) blobs.set(d, b);
      const r = reader([]);
      const images = [];
      for (const saved of scan.spec.savedImages) {
        const ref = parseReference(saved, `${label}: ${AIRGAP_YAML} savedImages`);
        if (isDigestOnly(ref)) {
          throw new AirgapError('E_DIGEST_ONLY', `${label}: ${AIRGAP_YAML} lists ${saved}, pinned by digest only; an airgap install pushes and rewrites by tag`,
            { hint: 'ask the vendor for a bundle whose images carry tags' });
        }
        // As KOTS's temporary registry serves them (temp_registry.go SrcRef): by the last path component.
        const key = lastComponent(ref.repository);
        const repo = tree.repositories.get(key);
        if (!repo) throw badAirgap(label, `${AIRGAP_YAML} lists ${saved}, but the registry storage has no repository "${key}"`);
        const digest = ref.digest ?? repo.tags.get(ref.tag ?? 'latest');
        if (digest === undefined) throw badAirgap(label, `${AIRGAP_YAML} lists ${saved}, but repository "${key}" has no tag "${ref.tag ?? 'latest'}"`);
        if (!tree.blobs.has(digest)) throw badAirgap(label, `${saved} is manifest ${digest}, which the registry storage does not hold`);
        const blob = tree.blobs.get(digest)!;
        if (blob.size > MAX_MANIFEST_BYTES) throw badAirgap(label, `${saved}: manifest ${digest} is ${blob.size} bytes, too big to be a manifest`);
        const bytes = await r.#bytes(digest, blob);
        const parsed = r.#parse(bytes, null, `manifest of ${saved}`);
        images.push({ ref: taggedName(ref), descriptor: { mediaType: parsed.mediaType, digest, size: blob.size } });
      }
      r.#images.push(...dedupe(images, label));
      return r;
    } catch (e) {
      ranges.close();
      throw e;
    }
  }

  base(): BundleBase | undefined { return undefined; }
  fromBase(): BundleBlob[] { return []; }
  isFromBase(): boolean { return false; }
  baseBlobSize(): number | undefined { return undefined; }
  partsOfBlob(): string[] { return []; }
  attached(): { descriptor: Descriptor; subject: string; kind: string; tag?: string }[] { return []; }
  strayBlobNames(): string[] { return []; }

  images(): { ref: string; descriptor: Descriptor }[] {
    return [...this.#images];
  }

  indexDescriptors(): Descriptor[] {
    return this.#images.map((i) => i.descriptor);
  }

  /** airgap.yaml as this tool's bundle metadata: the app, the release; no images table to check. */
  metadata(): BundleMetadata {
    return {
      schemaVersion: 1,
      tool: { name: 'KOTS airgap bundle', version: `format ${imageFormat(this.spec)}` },
      created: '',
      ...(this.spec.appSlug ? { appSlug: this.spec.appSlug } : {}),
      ...(this.spec.versionLabel ? { release: this.spec.versionLabel } : {}),
      images: [],
      appFiles: [],
    };
  }

  appFiles(): string[] {
    return [...this.#app.keys()].sort();
  }

  async readAppFile(rel: string): Promise<Buffer> {
    const b = this.#app.get(rel);
    if (!b) throw new AirgapError('E_NOT_FOUND', `${this.label} has no app file "${rel}"`);
    return b;
  }

  async readEntry(name: string): Promise<Buffer | undefined> {
    return name === AIRGAP_YAML ? this.#yaml : undefined;
  }

  /**
   * A blob the scan hashed (every blob of a one-stream file, the small ones of a build --format
   * kots file) and found to match its name: fetch() reads the same bytes again from the same
   * stored blocks (or inflates them from the same file), so the push does not hash them twice.
   */
  verified(digest: string): boolean {
    return this.#blobs.get(digest)?.digest === digest;
  }

  hasBlob(digest: string): boolean {
    return this.#blobs.has(digest) || this.#made.has(digest);
  }

  blobSize(digest: string): number | undefined {
    return this.#blobs.get(digest)?.size ?? this.#made.get(digest)?.length;
  }

  /** Every blob, in the order they lie in the file (so verify inflates it once). */
  blobs(): BundleBlob[] {
    return [...this.#blobs].sort(([, a], [, b]) => a.offset - b.offset).map(([digest, b]) => ({ digest, size: b.size }))
      .concat([...this.#made].map(([digest, m]) => ({ digest, size: m.length })));
  }

  async resolve(reference: string): Promise<Resolved> {
    let descriptor: Descriptor | undefined;
    if (reference.startsWith('sha256:')) {
      assertDigest(reference, `${this.label}: ${reference}`);
      descriptor = this.#images.find((i) => i.descriptor.digest === reference)?.descriptor;
      if (!descriptor) {
        const size = this.blobSize(reference);
        if (size === undefined) throw notFound(this.label, reference);
        if (size > MAX_MANIFEST_BYTES) throw badAirgap(this.label, `manifest ${reference} is ${size} bytes, too big to be a manifest`);
        const parsed = this.#parse(await this.#bytes(reference), null, `manifest ${reference}`);
        descriptor = { mediaType: parsed.mediaType, digest: reference, size };
      }
    } else {
      descriptor = this.#images.find((i) => i.ref === reference)?.descriptor;
      if (!descriptor) throw notFound(this.label, reference);
    }
    const { bytes } = await this.readManifest(descriptor, `manifest of ${reference}`);
    return { descriptor, bytes };
  }

  async readManifest(desc: Descriptor, what = `manifest ${desc.digest}`): Promise<{ bytes: Buffer; manifest: ParsedManifest }> {
    const size = this.blobSize(desc.digest);
    if (size === undefined) throw new AirgapError('E_BUNDLE', `${this.label} is incomplete: it does not contain ${what} (${desc.digest})`);
    if (size > MAX_MANIFEST_BYTES) throw badAirgap(this.label, `${what} is ${size} bytes, too big to be a manifest`);
    const bytes = await this.#bytes(desc.digest);
    return { bytes, manifest: checkBundleManifest(bytes, desc, this.label, what, (d) => badAirgap(this.label, d)) };
  }

  async fetch(desc: Descriptor, opts: FetchOptions = {}): Promise<Readable> {
    if (!this.hasBlob(desc.digest)) throw notFound(this.label, desc.digest);
    if (isIndexType(desc.mediaType) || isManifestType(desc.mediaType)) {
      return Readable.from([(await this.readManifest(desc)).bytes], { objectMode: false });
    }
    const made = this.#made.get(desc.digest);
    if (made) return Readable.from([made], { objectMode: false });
    const blob = this.#blobs.get(desc.digest)!;
    if (blob.size !== desc.size) {
      throw new AirgapError('E_DIGEST_MISMATCH', `${this.label}: ${desc.digest} is stored with ${blob.size} bytes, expected ${desc.size}`,
        { hint: 'the .airgap file is damaged; run airgap verify on it and download it again' });
    }
    if (blob.data) return Readable.from([blob.data], { objectMode: false });
    if (blob.size === 0) return Readable.from([]);
    const end = blob.offset + blob.size;
    const inflated = (at: number) => this.#ranges.read(at, end,
      (got) => badAirgap(this.label, `truncated: blob ${desc.digest} ends after ${at - blob.offset + got} of its ${blob.size} bytes`), opts.signal);
    // Stored blocks are read as they lie in the file; zlib takes over where they stop (stored.ts).
    const pieces = blob.stored ?? this.#memberPieces(blob.offset, end);
    if (!pieces) return inflated(blob.offset);
    return Readable.from(readPieces(this.path, pieces, inflated, opts.signal), { objectMode: false, highWaterMark: 1 << 20 });
  }

  /** A file of members (build --format kots): the member holding the blob, read from where its deflate blocks begin. */
  #memberPieces(offset: number, end: number): Piece[] | undefined {
    if (this.#members.length < 2) return undefined;
    const m = memberAt(this.#members, offset);
    // The blocks before `offset` (the tar header) are passed over.
    return m.data === undefined ? undefined : [{ anchor: { c: m.data, d: m.doff, left: 0 }, until: end, from: offset, blocks: true }];
  }

  async close(): Promise<void> {
    this.#ranges.close();
  }

  async #bytes(digest: string, blob = this.#blobs.get(digest)): Promise<Buffer> {
    const made = this.#made.get(digest);
    if (made) return made;
    if (!blob) throw notFound(this.label, digest);
    if (blob.data) return blob.data;
    const chunks: Buffer[] = [];
    for await (const c of this.#ranges.read(blob.offset, blob.offset + blob.size,
      (got) => badAirgap(this.label, `truncated: blob ${digest} ends after ${got} of its ${blob.size} bytes`))) chunks.push(c as Buffer);
    return Buffer.concat(chunks);
  }

  #parse(bytes: Buffer, mediaType: string | null, what: string): ParsedManifest {
    return parseBundleManifest(bytes, mediaType, what, (d) => badAirgap(this.label, d));
  }
}

/** Two savedImages naming the same reference are one image. */
function dedupe(images: { ref: string; descriptor: Descriptor }[], label: string): { ref: string; descriptor: Descriptor }[] {
  const byRef = new Map<string, Descriptor>();
  for (const i of images) {
    const was = byRef.get(i.ref);
    if (was && was.digest !== i.descriptor.digest) throw badAirgap(label, `${i.ref} is stored twice, as ${was.digest} and ${i.descriptor.digest}`);
    byRef.set(i.ref, i.descriptor);
  }
  return [...byRef].map(([ref, descriptor]) => ({ ref, descriptor }));
}

/** app.tar.gz → its files by path (the release, as KOTS extracts it). */
async function unpackApp(archive: Buffer, label: string): Promise<Map<string, Buffer>> {
  const what = `${label}: ${APP_ARCHIVE}`;
  let tar: Buffer;
  try {
    tar = gunzipSync(archive, { maxOutputLength: MAX_APP_BYTES });
  } catch (e) {
    throw badAirgap(label, `${APP_ARCHIVE} is not a readable .tar.gz (${(e as Error).message})`);
  }
  const files = new Map<string, Buffer>();
  const src = new ByteSource((async function* () { yield tar; })(), what, tar.length);
  for await (const e of walkTar(src, what)) {
    if (e.type !== 'file') continue;
    files.set(e.name, Buffer.from((await src.read(e.size, e.name)) ?? Buffer.alloc(0)));
  }
  return files;
}

function notFound(label: string, what: string): AirgapError {
  return new AirgapError('E_NOT_FOUND', `${label} does not contain ${what}`, { hint: 'run airgap inspect on it to list what it holds' });
}
