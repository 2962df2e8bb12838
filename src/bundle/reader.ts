import { Readable } from 'node:stream';
import { AirgapError, isAirgapError } from '../errors.js';
import { assertDigest, isDescriptor, isSha256Hex, type Descriptor } from '../oci/descriptor.js';
import { MAX_MANIFEST_BYTES } from '../oci/manifest.js';
import { isIndexType, isManifestType } from '../oci/mediatypes.js';
import type { ParsedManifest } from '../oci/manifest.js';
import type { FetchOptions, Resolved, SourceStore } from '../store.js';
import { checkBundleManifest, indexProblems, parseBundleManifest } from './rules.js';
import {
  ANNOTATION_ATTACHED_KIND, ANNOTATION_ATTACHED_TAG, ANNOTATION_CONTAINERD_NAME, ANNOTATION_REF_NAME, ANNOTATION_SUBJECT, APP_DIR, BLOBS_DIR, INDEX_FILE, METADATA_FILE,
  METADATA_SCHEMA_VERSION, OCI_LAYOUT_FILE, malformedBundle, type BundleBase, type BundleMetadata,
} from './format.js';
import { openRegularFile } from './regular.js';
import { BundleFile } from './split.js';
import { indexTar, readExactly, type ReadAt, type TarEntry } from './tarindex.js';

/** index.json and airgap.json are read whole; a real one is far below this. */
const MAX_JSON_FILE = 64 << 20;

export interface BundleBlob {
  digest: string;
  size: number;
}

/**
 * Reads a bundle in place: one pass over the tar headers builds name → byte range, and every
 * blob is then served as a ranged read of the tar itself. Nothing is extracted. A split bundle
 * (split.ts) reads the same way through its parts; a delta bundle (airgap.json "base") names
 * the blobs it leaves to its base, and those are reported as such rather than as missing.
 */
export class BundleReader implements SourceStore {
  readonly label: string;
  /** A graph read from a bundle that breaks the rules is the bundle's fault: exit 3. */
  readonly malformedCode = 'E_BUNDLE' as const;
  readonly path: string;
  /** The bytes: one tar, or the parts of a split bundle. */
  readonly file: BundleFile;
  readonly #entries: Map<string, TarEntry>;
  readonly #blobs = new Map<string, TarEntry>();
  readonly #strayBlobNames: string[] = [];
  readonly #index: Descriptor[];
  readonly #metadata: BundleMetadata | undefined;
  readonly #fromBase = new Map<string, number>();
  #closed = false;

  private constructor(path: string, file: BundleFile, entries: Map<string, TarEntry>, index: Descriptor[],
    metadata: BundleMetadata | undefined) {
    this.label = `bundle ${path}`;
    this.path = path;
    this.file = file;
    this.#entries = entries;
    this.#index = index;
    this.#metadata = metadata;
    for (const [name, entry] of entries) {
      if (entry.type !== 'file' || !name.startsWith('blobs/')) continue;
      const hex = name.startsWith(BLOBS_DIR + '/') ? name.slice(BLOBS_DIR.length + 1) : '';
      if (isSha256Hex(hex)) this.#blobs.set(`sha256:${hex}`, entry);
      else this.#strayBlobNames.push(name);
    }
    for (const b of metadata?.base?.blobs ?? []) if (!this.#blobs.has(b.digest)) this.#fromBase.set(b.digest, b.size);
  }

  static async open(path: string): Promise<BundleReader> {
    const { fh, size } = await openRegularFile(path, `bundle ${path}`, (e) => e.code === 'ENOENT'
      ? new AirgapError('E_NOT_FOUND', `bundle ${path} does not exist`)
      : new AirgapError('E_BUNDLE', `cannot read bundle ${path}: ${e.message}`, { cause: e }));
    let file: BundleFile | undefined;
    try {
      const label = `bundle ${path}`;
      file = await BundleFile.open(path, fh, size);
      const entries = await indexTar(file, file.size, label).catch((e: unknown) => nameDamagedParts(e, file!));
      const layout = await readJson(file, entries, OCI_LAYOUT_FILE, label, true);
      if (!isObject(layout) || typeof layout.imageLayoutVersion !== 'string') {
        throw malformedBundle(label, `${OCI_LAYOUT_FILE} has no "imageLayoutVersion": this is not an OCI image layout`);
      }
      const index = parseIndex(await readJson(file, entries, INDEX_FILE, label, true), label);
      const broken = indexProblems(index);
      if (broken.length > 0) {
        throw malformedBundle(label, broken[0]! + (broken.length > 1 ? ` (and ${broken.length - 1} more problem(s) in ${INDEX_FILE})` : ''));
      }
      const metadata = parseMetadata(await readJson(file, entries, METADATA_FILE, label, false), label);
      return new BundleReader(path, file, entries, index, metadata);
    } catch (e) {
      await (file ? file.close() : fh.close().catch(() => undefined));
      throw e;
    }
  }

  /** The base this delta bundle builds on, or undefined for a full bundle. */
  base(): BundleBase | undefined {
    return this.#metadata?.base;
  }

  /** Blobs this delta leaves to its base (declared in airgap.json and not carried). */
  fromBase(): BundleBlob[] {
    return [...this.#fromBase].map(([digest, size]) => ({ digest, size }));
  }

  isFromBase(digest: string): boolean {
    return this.#fromBase.has(digest);
  }

  /** The size airgap.json declares for a blob expected from the base. */
  baseBlobSize(digest: string): number | undefined {
    return this.#fromBase.get(digest);
  }

  /** The part file(s) holding a blob: named in errors about a split bundle's damaged content. */
  partsOfBlob(digest: string): string[] {
    const e = this.#blobs.get(digest);
    return e ? this.file.partsOf(e.offset, e.offset + e.size) : [];
  }

  /** One entry per index.json descriptor that carries a reference name. */
  images(): { ref: string; descriptor: Descriptor }[] {
    return this.#index.flatMap((d) => {
      const ref = d.annotations?.[ANNOTATION_REF_NAME] ?? d.annotations?.[ANNOTATION_CONTAINERD_NAME];
      return ref ? [{ ref, descriptor: d }] : [];
    });
  }

  /**
   * Signatures, attestations and SBOMs: index.json entries without a reference name that say
   * which digest they belong to (format.ts ANNOTATION_SUBJECT).
   */
  attached(): { descriptor: Descriptor; subject: string; kind: string; tag?: string }[] {
    return this.#index.flatMap((d) => {
      const a = d.annotations ?? {};
      const subject = a[ANNOTATION_SUBJECT];
      if (!subject || a[ANNOTATION_REF_NAME] !== undefined || a[ANNOTATION_CONTAINERD_NAME] !== undefined) return [];
      const tag = a[ANNOTATION_ATTACHED_TAG];
      return [{ descriptor: d, subject, kind: a[ANNOTATION_ATTACHED_KIND] ?? 'referrer', ...(tag ? { tag } : {}) }];
    });
  }

  /** Every descriptor of index.json, with or without a reference name. */
  indexDescriptors(): Descriptor[] {
    return [...this.#index];
  }

  metadata(): BundleMetadata | undefined {
    return this.#metadata;
  }

  appFiles(): string[] {
    const prefix = APP_DIR + '/';
    return [...this.#entries].filter(([n, e]) => e.type === 'file' && n.startsWith(prefix))
      .map(([n]) => n.slice(prefix.length)).sort();
  }

  async readAppFile(rel: string): Promise<Buffer> {
    const entry = this.#entries.get(`${APP_DIR}/${rel}`);
    if (!entry || entry.type !== 'file') throw new AirgapError('E_NOT_FOUND', `${this.label} has no app file "${rel}"`);
    return this.#read(entry);
  }

  /** The exact bytes of a top-level file (airgap.json, its signature, index.json), undefined when absent. */
  async readEntry(name: string): Promise<Buffer | undefined> {
    const entry = this.#entries.get(name);
    if (!entry || entry.type !== 'file') return undefined;
    if (entry.size > MAX_JSON_FILE) throw malformedBundle(this.label, `${name} is ${entry.size} bytes, too big`);
    return this.#read(entry);
  }

  hasBlob(digest: string): boolean {
    return this.#blobs.has(digest);
  }

  blobSize(digest: string): number | undefined {
    return this.#blobs.get(digest)?.size;
  }

  /** Every blob stored under blobs/sha256/ (for verify). */
  blobs(): BundleBlob[] {
    return [...this.#blobs].map(([digest, e]) => ({ digest, size: e.size }));
  }

  /** Every blob with its byte range in the (logical) tar, in file order: verify hashes a split bundle in one pass. */
  blobRanges(): { digest: string; offset: number; size: number }[] {
    return [...this.#blobs].map(([digest, e]) => ({ digest, offset: e.offset, size: e.size })).sort((a, b) => a.offset - b.offset);
  }

  /** Entries under blobs/ whose name is not a sha256 digest (verify reports them). */
  strayBlobNames(): string[] {
    return [...this.#strayBlobNames];
  }

  /** A reference name from index.json, or a digest of a manifest stored in the bundle. */
  async resolve(reference: string): Promise<Resolved> {
    let descriptor: Descriptor | undefined;
    if (reference.startsWith('sha256:')) {
      assertDigest(reference, `${this.label}: ${reference}`);
      descriptor = this.#byDigest().get(reference);
      if (!descriptor) {
        const entry = this.#blobs.get(reference);
        if (!entry) throw notFound(this.label, reference);
        const bytes = await this.#readManifest(entry, reference);
        const parsed = this.#parse(bytes, null, `manifest ${reference}`);
        descriptor = { mediaType: parsed.mediaType, digest: reference, size: entry.size };
      }
    } else {
      descriptor = this.#byRef().get(reference);
      if (!descriptor) throw notFound(this.label, reference);
    }
    const { bytes } = await this.readManifest(descriptor, `manifest of ${reference}`);
    return { descriptor, bytes };
  }

  /**
   * A manifest or index, read whole, verified and parsed; its body must be what the descriptor
   * says (bundle/rules.ts). Every reader of the bundle's manifests comes through here.
   */
  async readManifest(desc: Descriptor, what = `manifest ${desc.digest}`): Promise<{ bytes: Buffer; manifest: ParsedManifest }> {
    const entry = this.#blobs.get(desc.digest);
    if (!entry) throw damaged(this.label, `${what} (${desc.digest})`);
    const bytes = await this.#readManifest(entry, desc.digest);
    return { bytes, manifest: checkBundleManifest(bytes, desc, this.label, what, (d) => malformedBundle(this.label, d)) };
  }

  #parse(bytes: Buffer, mediaType: string | null, what: string): ParsedManifest {
    return parseBundleManifest(bytes, mediaType, what, (d) => malformedBundle(this.label, d));
  }

  #refs: Map<string, Descriptor> | undefined;
  #digests: Map<string, Descriptor> | undefined;

  /** Reference name → descriptor, built once (a lookup per image must not scan the index). */
  #byRef(): Map<string, Descriptor> {
    this.#refs ??= new Map(this.images().map((i) => [i.ref, i.descriptor]));
    return this.#refs;
  }

  /** Digest → its first index.json descriptor. */
  #byDigest(): Map<string, Descriptor> {
    if (!this.#digests) {
      this.#digests = new Map();
      for (const d of this.#index) if (!this.#digests.has(d.digest)) this.#digests.set(d.digest, d);
    }
    return this.#digests;
  }

  async fetch(desc: Descriptor, opts: FetchOptions = {}): Promise<Readable> {
    const entry = this.#blobs.get(desc.digest);
    if (!entry && this.#fromBase.has(desc.digest)) {
      const base = this.#metadata!.base!;
      throw new AirgapError('E_NOT_FOUND',
        `${this.label} is a delta: ${desc.digest} comes from its base bundle ${base.id}${base.release ? ` (release ${base.release})` : ''} and is not carried`,
        { hint: 'push the base bundle into the registry first, or build a full bundle (without --since)' });
    }
    if (!entry) throw notFound(this.label, desc.digest);
    if (isIndexType(desc.mediaType) || isManifestType(desc.mediaType)) {
      return Readable.from([(await this.readManifest(desc)).bytes], { objectMode: false });
    }
    if (entry.size !== desc.size) {
      throw new AirgapError('E_DIGEST_MISMATCH',
        `${this.label}: ${desc.digest} is stored with ${entry.size} bytes, expected ${desc.size}`,
        { hint: 'the bundle is damaged; run airgap verify on it and rebuild it' });
    }
    if (entry.size === 0) return Readable.from([]);
    return this.file.stream(entry.offset, entry.offset + entry.size, opts.signal);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.file.close();
  }

  async #readManifest(entry: TarEntry, digest: string): Promise<Buffer> {
    if (entry.size > MAX_MANIFEST_BYTES) throw malformedBundle(this.label, `manifest ${digest} is ${entry.size} bytes, too big to be a manifest`);
    return this.#read(entry);
  }

  async #read(entry: TarEntry): Promise<Buffer> {
    return readRange(this.file, entry);
  }
}

/** A split bundle whose tar does not parse: the damaged part is what the user can act on. */
async function nameDamagedParts(e: unknown, file: BundleFile): Promise<never> {
  if (file.split && isAirgapError(e, 'E_BUNDLE')) {
    const damaged = await file.checkParts();
    if (damaged.length > 0) {
      throw new AirgapError('E_BUNDLE', `bundle ${file.path}: ${damaged.map((d) => d.message).join('; ')}`,
        { hint: `copy ${damaged.map((d) => d.part).join(', ')} again from the original media`, cause: e });
    }
  }
  throw e;
}

async function readRange(fh: ReadAt, entry: TarEntry): Promise<Buffer> {
  const buf = Buffer.alloc(entry.size);
  await readExactly(fh, buf, entry.offset);
  return buf;
}

async function readJson(fh: ReadAt, entries: Map<string, TarEntry>, name: string, label: string,
  required: boolean): Promise<unknown> {
  const entry = entries.get(name);
  if (!entry || entry.type !== 'file') {
    if (!required) return undefined;
    throw malformedBundle(label, `no ${name}: this is not an airgap bundle (an OCI image layout tar)`);
  }
  if (entry.size > MAX_JSON_FILE) throw malformedBundle(label, `${name} is ${entry.size} bytes, too big`);
  const text = (await readRange(fh, entry)).toString('utf8');
  try {
    return JSON.parse(text);
  } catch (e) {
    throw malformedBundle(label, `${name} is not valid JSON (${(e as Error).message})`);
  }
}

function parseIndex(v: unknown, label: string): Descriptor[] {
  if (!isObject(v) || !Array.isArray(v.manifests)) throw malformedBundle(label, `${INDEX_FILE} has no "manifests" array`);
  return v.manifests.map((d, i) => {
    if (!isDescriptor(d)) throw malformedBundle(label, `${INDEX_FILE} manifests[${i}] is not a valid descriptor`);
    try {
      assertDigest(d.digest);
    } catch {
      throw malformedBundle(label, `${INDEX_FILE} manifests[${i}] has an invalid or unsupported digest "${d.digest}"`);
    }
    const ann = (d as { annotations?: unknown }).annotations;
    if (ann !== undefined && (!isObject(ann) || Object.values(ann).some((x) => typeof x !== 'string'))) {
      throw malformedBundle(label, `${INDEX_FILE} manifests[${i}] has malformed annotations`);
    }
    return d;
  });
}

function parseMetadata(v: unknown, label: string): BundleMetadata | undefined {
  if (v === undefined) return undefined;
  const fail = (what: string): never => { throw malformedBundle(label, `${METADATA_FILE} ${what}`); };
  if (!isObject(v)) return fail('is not a JSON object');
  if (v.schemaVersion !== METADATA_SCHEMA_VERSION) {
    return fail(`has schemaVersion ${JSON.stringify(v.schemaVersion)}; this airgap reads version ${METADATA_SCHEMA_VERSION}`);
  }
  if (!isObject(v.tool) || typeof v.tool.name !== 'string' || typeof v.tool.version !== 'string') fail('has no tool name/version');
  if (typeof v.created !== 'string') fail('has no "created" time');
  if (!Array.isArray(v.images)) return fail('has no "images" list');
  v.images.forEach((img, i) => {
    if (!isObject(img) || typeof img.ref !== 'string' || typeof img.digest !== 'string' ||
      typeof img.mediaType !== 'string' || typeof img.size !== 'number' || !Array.isArray(img.platforms) ||
      img.platforms.some((p) => typeof p !== 'string') || (img.source !== undefined && typeof img.source !== 'string')) {
      fail(`images[${i}] is malformed`);
    }
  });
  if (!Array.isArray(v.appFiles) || v.appFiles.some((f) => typeof f !== 'string')) fail('has no "appFiles" list');
  for (const k of ['appSlug', 'release', 'id'] as const) if (v[k] !== undefined && typeof v[k] !== 'string') fail(`"${k}" is not a string`);
  if (v.base !== undefined) {
    const b = v.base;
    if (!isObject(b) || typeof b.id !== 'string' || typeof b.created !== 'string' ||
      (b.release !== undefined && typeof b.release !== 'string') || !Array.isArray(b.blobs) ||
      b.blobs.some((x) => !isObject(x) || typeof x.digest !== 'string' || !isSha256Hex(x.digest.replace(/^sha256:/, '')) ||
        !x.digest.startsWith('sha256:') || !Number.isSafeInteger(x.size) || (x.size as number) < 0 ||
        (x.images !== undefined && (!Array.isArray(x.images) || x.images.some((r) => typeof r !== 'string'))))) {
      fail('"base" (what this delta expects from its base bundle) is malformed');
    }
  }
  if (v.pins !== undefined) {
    const p = v.pins;
    if (!isObject(p) || typeof p.index !== 'string' || !isObject(p.app) || Object.values(p.app).some((x) => typeof x !== 'string')) {
      fail('"pins" (the digests a signature covers) is malformed');
    }
  }
  return v as unknown as BundleMetadata;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Content that index.json or a manifest names but the bundle lacks: the bundle is damaged (exit 3), not a lookup miss. */
export function damaged(label: string, what: string): AirgapError {
  return new AirgapError('E_BUNDLE', `${label} is incomplete: it does not contain ${what}`,
    { hint: 'the bundle is damaged or cut short; run airgap verify on it, then copy it again or rebuild it' });
}

function notFound(label: string, what: string): AirgapError {
  return new AirgapError('E_NOT_FOUND', `${label} does not contain ${what}`,
    { hint: 'run airgap inspect on the bundle to list what it holds' });
}
