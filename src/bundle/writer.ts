import * as fs from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import * as path from 'node:path';
import { addAbortSignal, type Readable } from 'node:stream';
import { leftoverTag, registerCleanup, removeLeftovers } from '../cleanup.js';
import { AirgapError } from '../errors.js';
import { assertDigest, type Descriptor } from '../oci/descriptor.js';
import { MediaType } from '../oci/mediatypes.js';
import { sha256Digest, verifyBytes } from '../oci/verify.js';
import type { BlobParts, FetchOptions, PushOutcome, TargetStore } from '../store.js';
import { BlobAssembly } from './assembly.js';
import {
  APP_DIR, BLOBS_DIR, END_OF_ARCHIVE_SIZE, INDEX_FILE, METADATA_FILE, OCI_LAYOUT_CONTENT, OCI_LAYOUT_FILE, SIGNATURE_FILE,
  blobPath, encodeTarHeader, paddedSize, refAnnotations, type BundleMetadata,
} from './format.js';
import { outputError, partialPattern, publish, refuseExisting } from './publish.js';
import { readExactly } from './tarindex.js';

export interface BundlePlan {
  /** Every manifest, index, config and layer the bundle will hold (duplicates are merged). */
  blobs: { digest: string; size: number }[];
  /** The application's manifests, paths relative to app/. */
  appFiles: { path: string; content: Uint8Array }[];
  /** The mtime of every tar entry; defaults to the time the writer is created. */
  mtime?: Date;
}

interface PlannedBlob {
  size: number;
  /** Offset of the blob's body in the tar. */
  offset: number;
  state: 'pending' | 'writing' | 'written';
  inflight?: Promise<PushOutcome>;
}

/**
 * Writes a bundle as a PLANNED tar: every blob's size is known up front, so each entry's offset
 * is fixed before the first byte arrives and concurrent pushes stream straight to their place.
 * The tar is built in a hidden temp file beside the output and appears at `outPath` only when
 * complete (finish); abort, a failed finish, or an interrupt (src/cleanup.ts) removes it.
 */
export class BundleWriter implements TargetStore {
  readonly label: string;
  /** push() and pushParts() hash what they write: the engine does not hash it again. */
  readonly verifiesContent = true;
  readonly #outPath: string;
  readonly #tempPath: string;
  readonly #fh: FileHandle;
  readonly #blobs: Map<string, PlannedBlob>;
  readonly #tailOffset: number;
  readonly #mtime: Date;
  readonly #tags = new Map<string, Descriptor>();
  /** index.json entries of signatures, attestations and SBOMs (no reference name), after the images. */
  readonly #attached = new Map<string, Descriptor>();
  readonly #unregister: () => void;
  #state: 'open' | 'finishing' | 'done' = 'open';

  private constructor(outPath: string, tempPath: string, fh: FileHandle, blobs: Map<string, PlannedBlob>,
    tailOffset: number, mtime: Date, unregister: () => void) {
    this.label = `bundle ${outPath}`;
    this.#outPath = outPath;
    this.#tempPath = tempPath;
    this.#fh = fh;
    this.#blobs = blobs;
    this.#tailOffset = tailOffset;
    this.#mtime = mtime;
    this.#unregister = unregister;
  }

  static async create(outPath: string, plan: BundlePlan): Promise<BundleWriter> {
    refuseExisting(outPath);
    const mtime = new Date(Math.floor((plan.mtime ?? new Date()).getTime() / 1000) * 1000);
    const layout = planLayout(plan, mtime, outPath);

    const dir = path.dirname(path.resolve(outPath));
    // A build killed outright (SIGKILL) left its partial here; its own later run removes it.
    removeLeftovers(dir, partialPattern(outPath));
    const tempPath = path.join(dir, `.${path.basename(outPath)}.airgap-partial-${leftoverTag()}`);
    // Registered, then created, in one synchronous step: an interrupt handled between two turns
    // of the event loop finds either no file or a file its cleanup knows (an asynchronous create
    // could land after the cleanup ran, and stay).
    const unregister = registerCleanup(() => fs.rmSync(tempPath, { force: true }));
    try {
      fs.closeSync(fs.openSync(tempPath, 'wx', 0o644));
    } catch (e) {
      unregister();
      throw outputError(e, outPath);
    }
    let fh: FileHandle;
    try {
      fh = await open(tempPath, 'r+'); // read too: parts are hashed back from the file
    } catch (e) {
      unregister();
      fs.rmSync(tempPath, { force: true });
      throw outputError(e, outPath);
    }
    const writer = new BundleWriter(outPath, tempPath, fh, layout.blobs, layout.tailOffset, mtime, unregister);
    try {
      for (const w of layout.writes) await writer.#writeAt(w.bytes, w.offset);
    } catch (e) {
      await writer.abort();
      throw e;
    }
    return writer;
  }

  async exists(desc: Descriptor): Promise<boolean> {
    return this.#blobs.get(desc.digest)?.state === 'written';
  }

  async push(desc: Descriptor, openContent: () => Promise<Readable>, opts: FetchOptions = {}): Promise<PushOutcome> {
    this.#assertOpen();
    const blob = this.#planned(desc);
    if (blob.state === 'written') return 'existed';
    if (blob.inflight) {
      await blob.inflight;
      return 'existed';
    }
    blob.state = 'writing';
    blob.inflight = (async (): Promise<PushOutcome> => {
      const assembly = this.#assembly(desc, blob);
      const source = await openContent();
      if (opts.signal) addAbortSignal(opts.signal, source);
      await assembly.writePart(0, desc.size, source);
      await assembly.verify();
      return 'uploaded';
    })();
    try {
      const outcome = await blob.inflight;
      blob.state = 'written';
      return outcome;
    } catch (e) {
      blob.state = 'pending'; // a retry overwrites the same range
      throw e;
    } finally {
      delete blob.inflight;
    }
  }

  /**
   * Receives a blob as parts, each streamed straight to its offset in the planned tar (a big
   * layer fetched as parallel ranges); commit() verifies the whole blob, hashed once, in order
   * (how parts ahead of the hashed frontier are hashed: the diagram in assembly.ts).
   */
  async pushParts(desc: Descriptor, opts: FetchOptions = {}): Promise<BlobParts | undefined> {
    this.#assertOpen();
    const blob = this.#planned(desc);
    if (blob.state === 'written') return undefined;
    if (blob.inflight) {
      await blob.inflight;
      return undefined;
    }
    blob.state = 'writing';
    const assembly = this.#assembly(desc, blob);
    let settle!: (outcome: PushOutcome | Error) => void;
    const done = new Promise<PushOutcome | Error>((resolve) => { settle = resolve; });
    // Another push of the same digest waits for this one; a failed one lets it fail too.
    blob.inflight = done.then((v) => (v instanceof Error ? Promise.reject(v) : v));
    blob.inflight.catch(() => undefined);
    let open = true;
    const close = (outcome: PushOutcome | Error): void => {
      if (!open) return;
      open = false;
      blob.state = outcome instanceof Error ? 'pending' : 'written';
      delete blob.inflight;
      settle(outcome);
    };
    return {
      write: async (start, end, content) => {
        if (!open) {
          content.destroy();
          throw new AirgapError('E_OUTPUT', `${this.label}: blob ${desc.digest} is no longer being written`);
        }
        if (opts.signal) addAbortSignal(opts.signal, content);
        await assembly.writePart(start, end, content);
      },
      commit: async () => {
        try {
          await assembly.verify();
        } catch (e) {
          close(e instanceof Error ? e : new Error(String(e)));
          throw e;
        }
        close('uploaded');
        return 'uploaded';
      },
      abort: () => close(new AirgapError('E_OUTPUT', `${this.label}: blob ${desc.digest} was abandoned part-way`)),
    };
  }

  #planned(desc: Descriptor): PlannedBlob {
    const blob = this.#blobs.get(desc.digest);
    if (!blob) {
      throw new AirgapError('E_OUTPUT', `${this.label}: ${desc.digest} (${desc.mediaType}) was not in the bundle plan`,
        { hint: 'this is a bug in airgap: the plan must list every blob before writing starts' });
    }
    if (desc.size !== blob.size) {
      throw new AirgapError('E_DIGEST_MISMATCH',
        `${this.label}: ${desc.digest} is ${desc.size} bytes but the plan says ${blob.size}`);
    }
    return blob;
  }

  #assembly(desc: Descriptor, blob: PlannedBlob): BlobAssembly {
    return new BlobAssembly(desc, blob.offset, {
      write: (chunks, position) => this.#writevAt(chunks, position),
      read: (into, length, position) => this.#readAt(into, length, position),
    }, `${this.label}: blob`);
  }

  async tag(desc: Descriptor, bytes: Uint8Array, reference: string): Promise<void> {
    this.#assertOpen();
    if (this.#blobs.get(desc.digest)?.state !== 'written') {
      throw new AirgapError('E_OUTPUT', `${this.label}: cannot tag ${reference}: manifest ${desc.digest} has not been written`,
        { hint: 'this is a bug in airgap: a manifest must be pushed before it is tagged' });
    }
    verifyBytes(bytes, desc, `${this.label}: manifest for ${reference}`);
    // A re-tag replaces the entry: one descriptor per reference.
    this.#tags.delete(reference);
    this.#tags.set(reference, {
      mediaType: desc.mediaType, digest: desc.digest, size: desc.size, annotations: refAnnotations(reference),
    });
  }

  /**
   * Lists a manifest already pushed in index.json without a reference name, with `annotations`
   * saying what it is attached to (format.ts ANNOTATION_SUBJECT): a signature, attestation or SBOM.
   */
  attach(desc: Descriptor, bytes: Uint8Array, annotations: Record<string, string>): void {
    this.#assertOpen();
    if (this.#blobs.get(desc.digest)?.state !== 'written') {
      throw new AirgapError('E_OUTPUT', `${this.label}: cannot list ${desc.digest}: it has not been written`,
        { hint: 'this is a bug in airgap: a manifest must be pushed before it is listed' });
    }
    verifyBytes(bytes, desc, `${this.label}: manifest ${desc.digest}`);
    const key = Object.entries(annotations).sort().map(([k, v]) => `${k}=${v}`).join('\n') + desc.digest;
    this.#attached.set(key, { mediaType: desc.mediaType, digest: desc.digest, size: desc.size, annotations });
  }

  /**
   * Appends index.json, airgap.json and the end-of-archive blocks, then publishes atomically at
   * the output path, or, given `publishTo`, hands it the complete temp tar instead (a split
   * bundle is cut into parts from it). publishTo may consume, move or truncate the file: the
   * writer removes whatever is left of it afterwards, and all of it if publishTo fails.
   */
  async finish(metadata: BundleMetadata, publishTo?: (tempPath: string) => Promise<void>,
    sign?: (bytes: Buffer) => Buffer): Promise<void> {
    this.#assertOpen();
    this.#state = 'finishing';
    try {
      const missing = [...this.#blobs].filter(([, b]) => b.state !== 'written').map(([d]) => d);
      if (missing.length > 0) {
        throw new AirgapError('E_OUTPUT',
          `${this.label}: ${missing.length} planned blob(s) were never written (first: ${missing[0]})`,
          { hint: 'this is a bug in airgap: every planned blob must be pushed before finish' });
      }
      const index = { schemaVersion: 2, mediaType: MediaType.OciIndex, manifests: [...this.#tags.values(), ...this.#attached.values()] };
      const indexBytes = Buffer.from(JSON.stringify(index, null, 2) + '\n', 'utf8');
      // airgap.json pins index.json (which pins every manifest and blob): a signature over
      // airgap.json alone then vouches for the whole bundle.
      const sealed: BundleMetadata = metadata.pins ? { ...metadata, pins: { ...metadata.pins, index: sha256Digest(indexBytes) } } : metadata;
      const metadataBytes = Buffer.from(JSON.stringify(sealed, null, 2) + '\n', 'utf8');
      const files: [string, Buffer][] = [[INDEX_FILE, indexBytes], [METADATA_FILE, metadataBytes]];
      if (sign) files.push([SIGNATURE_FILE, sign(metadataBytes)]);
      let offset = this.#tailOffset;
      for (const [name, bytes] of files) {
        const entry = fileEntry(name, bytes, this.#mtime);
        await this.#writeAt(entry, offset);
        offset += entry.length;
      }
      await this.#writeAt(Buffer.alloc(END_OF_ARCHIVE_SIZE), offset);
      offset += END_OF_ARCHIVE_SIZE;
      try {
        await this.#fh.truncate(offset);
        await this.#fh.sync();
        await this.#fh.close();
      } catch (e) {
        throw outputError(e, this.#outPath);
      }
      if (publishTo) {
        await publishTo(this.#tempPath);
        fs.rmSync(this.#tempPath, { force: true }); // force: publishTo may have moved it away
      } else {
        publish(this.#tempPath, this.#outPath);
      }
      this.#unregister();
      this.#state = 'done';
    } catch (e) {
      await this.abort();
      throw e;
    }
  }

  /** Removes the temp file; safe to call at any time, any number of times. */
  async abort(): Promise<void> {
    if (this.#state === 'done') return;
    this.#state = 'done';
    await this.#fh.close().catch(() => undefined);
    fs.rmSync(this.#tempPath, { force: true });
    this.#unregister();
  }

  #assertOpen(): void {
    if (this.#state !== 'open') {
      throw new AirgapError('E_OUTPUT', `${this.label} is already finished or aborted`);
    }
  }

  async #readAt(into: Buffer, length: number, position: number): Promise<void> {
    try {
      await readExactly(this.#fh, into.subarray(0, length), position);
    } catch (e) {
      throw outputError(e, this.#outPath);
    }
  }

  /** Several chunks one after the other from `position`: one writev, the rest of a short write after it. */
  async #writevAt(chunks: Uint8Array[], position: number): Promise<void> {
    if (chunks.length === 1) return this.#writeAt(chunks[0]!, position);
    let written: number;
    try {
      ({ bytesWritten: written } = await this.#fh.writev(chunks, position));
    } catch (e) {
      throw outputError(e, this.#outPath);
    }
    // A short write (a signal, a full disk about to fail): the rest chunk by chunk.
    for (const c of chunks) {
      if (written >= c.length) {
        written -= c.length;
        position += c.length;
        continue;
      }
      await this.#writeAt(c.subarray(written), position + written);
      position += c.length;
      written = 0;
    }
  }

  async #writeAt(bytes: Uint8Array, position: number): Promise<void> {
    let done = 0;
    try {
      while (done < bytes.length) {
        const { bytesWritten } = await this.#fh.write(bytes, done, bytes.length - done, position + done);
        done += bytesWritten;
      }
    } catch (e) {
      throw outputError(e, this.#outPath);
    }
  }
}

interface Layout {
  blobs: Map<string, PlannedBlob>;
  writes: { offset: number; bytes: Buffer }[];
  tailOffset: number;
}

/** oci-layout, the blobs (header + reserved body each), then the app files. */
function planLayout(plan: BundlePlan, mtime: Date, outPath: string): Layout {
  const blobs = new Map<string, PlannedBlob>();
  const writes: Layout['writes'] = [];
  let offset = 0;
  const add = (bytes: Buffer): void => {
    writes.push({ offset, bytes });
    offset += bytes.length;
  };
  const dir = (name: string): void => add(encodeTarHeader({ name, type: 'dir', size: 0, mtime }));

  add(fileEntry(OCI_LAYOUT_FILE, Buffer.from(OCI_LAYOUT_CONTENT), mtime));
  dir('blobs');
  dir(BLOBS_DIR);
  for (const { digest, size } of plan.blobs) {
    assertDigest(digest, `bundle plan blob ${digest}`);
    if (!Number.isSafeInteger(size) || size < 0) {
      throw new AirgapError('E_OUTPUT', `bundle ${outPath}: plan gives ${digest} an invalid size ${size}`);
    }
    const seen = blobs.get(digest);
    if (seen) {
      if (seen.size !== size) {
        throw new AirgapError('E_DIGEST_MISMATCH', `bundle ${outPath}: ${digest} is planned with two sizes (${seen.size} and ${size})`);
      }
      continue;
    }
    add(encodeTarHeader({ name: blobPath(digest), type: 'file', size, mtime }));
    blobs.set(digest, { size, offset, state: 'pending' });
    offset += paddedSize(size); // body and padding are filled by push (unwritten bytes read as zero)
  }

  const files = new Map<string, Uint8Array>();
  for (const f of plan.appFiles) {
    const rel = safeAppPath(f.path, outPath);
    if (files.has(rel)) throw new AirgapError('E_OUTPUT', `bundle ${outPath}: app file "${rel}" is listed twice`);
    files.set(rel, f.content);
  }
  if (files.size > 0) {
    const dirs = new Set<string>([APP_DIR]);
    for (const rel of files.keys()) {
      const parts = rel.split('/');
      for (let i = 1; i < parts.length; i++) dirs.add(`${APP_DIR}/${parts.slice(0, i).join('/')}`);
    }
    for (const d of [...dirs].sort()) dir(d);
    for (const [rel, content] of files) add(fileEntry(`${APP_DIR}/${rel}`, content, mtime));
  }
  return { blobs, writes, tailOffset: offset };
}

/** Header plus body padded to a whole block. */
function fileEntry(name: string, content: Uint8Array, mtime: Date): Buffer {
  const header = encodeTarHeader({ name, type: 'file', size: content.length, mtime });
  const out = Buffer.alloc(header.length + paddedSize(content.length));
  header.copy(out);
  out.set(content, header.length);
  return out;
}

function safeAppPath(p: string, outPath: string): string {
  const parts = p.replace(/\\/g, '/').split('/').filter((s) => s !== '' && s !== '.');
  if (p.startsWith('/') || parts.length === 0 || parts.includes('..') || p.includes('\u0000')) {
    throw new AirgapError('E_OUTPUT', `bundle ${outPath}: app file path "${p}" is not a relative path inside the app`);
  }
  return parts.join('/');
}
