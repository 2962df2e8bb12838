import * as fs from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { AirgapError } from '../errors.js';
import { assertDigest, isDescriptor, type Descriptor } from '../oci/descriptor.js';
import { parseManifest } from '../oci/manifest.js';
import { verifyBytes } from '../oci/verify.js';
import type { FetchOptions, Resolved, SourceStore } from '../store.js';
import {
  ANNOTATION_CONTAINERD_NAME, ANNOTATION_REF_NAME, APP_DIR, BLOBS_DIR, INDEX_FILE, METADATA_FILE,
  METADATA_SCHEMA_VERSION, OCI_LAYOUT_FILE, type BundleMetadata,
} from './format.js';
import { indexTar, type TarEntry } from './tarindex.js';

/** index.json, airgap.json and manifests are read whole; a real one is far below these. */
const MAX_JSON_FILE = 64 << 20;
const MAX_MANIFEST = 16 << 20;
const DIGEST_NAME = /^[a-f0-9]{64}$/;

export interface BundleBlob {
  digest: string;
  size: number;
}

/**
 * Reads a bundle in place: one pass over the tar headers builds name → byte range, and every
 * blob is then served as a ranged read of the tar itself. Nothing is extracted.
 */
export class BundleReader implements SourceStore {
  readonly label: string;
  readonly path: string;
  readonly #fh: FileHandle;
  readonly #entries: Map<string, TarEntry>;
  readonly #blobs = new Map<string, TarEntry>();
  readonly #strayBlobNames: string[] = [];
  readonly #index: Descriptor[];
  readonly #metadata: BundleMetadata | undefined;
  #closed = false;

  private constructor(path: string, fh: FileHandle, entries: Map<string, TarEntry>, index: Descriptor[],
    metadata: BundleMetadata | undefined) {
    this.label = `bundle ${path}`;
    this.path = path;
    this.#fh = fh;
    this.#entries = entries;
    this.#index = index;
    this.#metadata = metadata;
    for (const [name, entry] of entries) {
      if (entry.type !== 'file' || !name.startsWith('blobs/')) continue;
      const hex = name.startsWith(BLOBS_DIR + '/') ? name.slice(BLOBS_DIR.length + 1) : '';
      if (DIGEST_NAME.test(hex)) this.#blobs.set(`sha256:${hex}`, entry);
      else this.#strayBlobNames.push(name);
    }
  }

  static async open(path: string): Promise<BundleReader> {
    let fh: FileHandle;
    try {
      fh = await open(path, 'r');
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') throw new AirgapError('E_NOT_FOUND', `bundle ${path} does not exist`);
      throw new AirgapError('E_BUNDLE', `cannot read bundle ${path}: ${(e as Error).message}`, { cause: e });
    }
    try {
      const stat = await fh.stat();
      if (!stat.isFile()) throw new AirgapError('E_BUNDLE', `bundle ${path} is not a regular file`);
      const label = `bundle ${path}`;
      const entries = await indexTar(fh, stat.size, label);
      const layout = await readJson(fh, entries, OCI_LAYOUT_FILE, label, true);
      if (!isObject(layout) || typeof layout.imageLayoutVersion !== 'string') {
        throw bad(label, `${OCI_LAYOUT_FILE} has no "imageLayoutVersion": this is not an OCI image layout`);
      }
      const index = parseIndex(await readJson(fh, entries, INDEX_FILE, label, true), label);
      const metadata = parseMetadata(await readJson(fh, entries, METADATA_FILE, label, false), label);
      return new BundleReader(path, fh, entries, index, metadata);
    } catch (e) {
      await fh.close();
      throw e;
    }
  }

  /** One entry per index.json descriptor that carries a reference name. */
  images(): { ref: string; descriptor: Descriptor }[] {
    return this.#index.flatMap((d) => {
      const ref = d.annotations?.[ANNOTATION_REF_NAME] ?? d.annotations?.[ANNOTATION_CONTAINERD_NAME];
      return ref ? [{ ref, descriptor: d }] : [];
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

  /** Entries under blobs/ whose name is not a sha256 digest (verify reports them). */
  strayBlobNames(): string[] {
    return [...this.#strayBlobNames];
  }

  /** A reference name from index.json, or a digest of a manifest stored in the bundle. */
  async resolve(reference: string): Promise<Resolved> {
    let descriptor: Descriptor | undefined;
    if (reference.startsWith('sha256:')) {
      assertDigest(reference, `${this.label}: ${reference}`);
      descriptor = this.#index.find((d) => d.digest === reference);
      if (!descriptor) {
        const entry = this.#blobs.get(reference);
        if (!entry) throw notFound(this.label, reference);
        const bytes = await this.#readManifest(entry, reference);
        const parsed = parseManifest(bytes, null, `${this.label}: manifest ${reference}`);
        descriptor = { mediaType: parsed.mediaType, digest: reference, size: entry.size };
      }
    } else {
      descriptor = this.images().find((i) => i.ref === reference)?.descriptor;
      if (!descriptor) throw notFound(this.label, reference);
    }
    const entry = this.#blobs.get(descriptor.digest);
    if (!entry) throw notFound(this.label, `manifest ${descriptor.digest} of ${reference}`);
    const bytes = await this.#readManifest(entry, descriptor.digest);
    verifyBytes(bytes, descriptor, `${this.label}: manifest of ${reference}`);
    return { descriptor, bytes };
  }

  async fetch(desc: Descriptor, opts: FetchOptions = {}): Promise<Readable> {
    const entry = this.#blobs.get(desc.digest);
    if (!entry) throw notFound(this.label, desc.digest);
    if (entry.size !== desc.size) {
      throw new AirgapError('E_DIGEST_MISMATCH',
        `${this.label}: ${desc.digest} is stored with ${entry.size} bytes, expected ${desc.size}`,
        { hint: 'the bundle is damaged; run airgap verify on it and rebuild it' });
    }
    if (entry.size === 0) return Readable.from([]);
    return fs.createReadStream(this.path, {
      start: entry.offset, end: entry.offset + entry.size - 1, ...(opts.signal ? { signal: opts.signal } : {}),
    });
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#fh.close();
  }

  async #readManifest(entry: TarEntry, digest: string): Promise<Buffer> {
    if (entry.size > MAX_MANIFEST) throw bad(this.label, `manifest ${digest} is ${entry.size} bytes, too big to be a manifest`);
    return this.#read(entry);
  }

  async #read(entry: TarEntry): Promise<Buffer> {
    return readRange(this.#fh, entry);
  }
}

async function readRange(fh: FileHandle, entry: TarEntry): Promise<Buffer> {
  const buf = Buffer.alloc(entry.size);
  let done = 0;
  while (done < entry.size) {
    const { bytesRead } = await fh.read(buf, done, entry.size - done, entry.offset + done);
    if (bytesRead === 0) throw new Error(`unexpected end of file at byte ${entry.offset + done}`);
    done += bytesRead;
  }
  return buf;
}

async function readJson(fh: FileHandle, entries: Map<string, TarEntry>, name: string, label: string,
  required: boolean): Promise<unknown> {
  const entry = entries.get(name);
  if (!entry || entry.type !== 'file') {
    if (!required) return undefined;
    throw bad(label, `no ${name}: this is not an airgap bundle (an OCI image layout tar)`);
  }
  if (entry.size > MAX_JSON_FILE) throw bad(label, `${name} is ${entry.size} bytes, too big`);
  const text = (await readRange(fh, entry)).toString('utf8');
  try {
    return JSON.parse(text);
  } catch (e) {
    throw bad(label, `${name} is not valid JSON (${(e as Error).message})`);
  }
}

function parseIndex(v: unknown, label: string): Descriptor[] {
  if (!isObject(v) || !Array.isArray(v.manifests)) throw bad(label, `${INDEX_FILE} has no "manifests" array`);
  return v.manifests.map((d, i) => {
    if (!isDescriptor(d)) throw bad(label, `${INDEX_FILE} manifests[${i}] is not a valid descriptor`);
    try {
      assertDigest(d.digest);
    } catch {
      throw bad(label, `${INDEX_FILE} manifests[${i}] has an invalid or unsupported digest "${d.digest}"`);
    }
    const ann = (d as { annotations?: unknown }).annotations;
    if (ann !== undefined && (!isObject(ann) || Object.values(ann).some((x) => typeof x !== 'string'))) {
      throw bad(label, `${INDEX_FILE} manifests[${i}] has malformed annotations`);
    }
    return d;
  });
}

function parseMetadata(v: unknown, label: string): BundleMetadata | undefined {
  if (v === undefined) return undefined;
  const fail = (what: string): never => { throw bad(label, `${METADATA_FILE} ${what}`); };
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
  for (const k of ['appSlug', 'release'] as const) if (v[k] !== undefined && typeof v[k] !== 'string') fail(`"${k}" is not a string`);
  return v as unknown as BundleMetadata;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function notFound(label: string, what: string): AirgapError {
  return new AirgapError('E_NOT_FOUND', `${label} does not contain ${what}`,
    { hint: 'run airgap inspect on the bundle to list what it holds' });
}

function bad(label: string, detail: string): AirgapError {
  return new AirgapError('E_BUNDLE', `${label}: ${detail}`,
    { hint: 'the bundle is damaged or was not written by airgap build; rebuild it or copy it again' });
}
