import { createHash } from 'node:crypto';
import { isAirgapError } from '../errors.js';
import type { Descriptor } from '../oci/descriptor.js';
import { MAX_GRAPH_DEPTH, childrenOf, isForeignLayer } from '../oci/manifest.js';
import { isIndexType, isManifestType } from '../oci/mediatypes.js';
import { ANNOTATION_ATTACHED_TAG, ANNOTATION_REF_NAME, ANNOTATION_SUBJECT, INDEX_FILE } from './format.js';
import { sha256Digest } from '../oci/verify.js';
import type { BundleSource } from './source.js';
import { BundleReader } from './reader.js';

export interface VerifyProblem {
  digest?: string;
  ref?: string;
  /** The part file at fault, for a split bundle. */
  part?: string;
  message: string;
}

/** A delta bundle: what its images need from the base and it does not carry (not a problem). */
export interface ExpectedFromBase {
  base: { id: string; created: string; release?: string };
  blobs: number;
  bytes: number;
}

export interface VerifyResult {
  ok: boolean;
  problems: VerifyProblem[];
  /** Blobs re-hashed and bytes read doing it. */
  blobs: number;
  bytes: number;
  /** Present for a delta bundle. */
  expectedFromBase?: ExpectedFromBase;
  /** Part files checked against their sha256, for a split bundle. */
  parts?: number;
}

export interface VerifyProgress {
  blobsDone: number;
  blobsTotal: number;
  bytesDone: number;
  bytesTotal: number;
  /** The blob being hashed. */
  digest: string;
}

/**
 * Checks a bundle end to end and reports every problem found, never stopping at the first:
 * each blob re-hashed against its name, then each image's graph from index.json walked (every
 * manifest parses, every child, config and layer present with the right size).
 */
export async function verifyBundle(reader: BundleSource,
  onProgress?: (p: VerifyProgress) => void): Promise<VerifyResult> {
  const problems: VerifyProblem[] = [];
  for (const name of reader.strayBlobNames()) {
    problems.push({ message: `${name} is not named by a sha256 digest and cannot be verified` });
  }

  const blobs = reader.blobs();
  const bytesTotal = blobs.reduce((n, b) => n + b.size, 0);
  const damaged = new Set<string>();
  let bytesDone = 0;
  let blobsDone = 0;
  // A split bundle is read once: each part hashed against the parts manifest and each blob
  // against its name in the same pass (parts first, then blobs, read it twice; three times with push --key).
  const once = reader.file.split !== undefined && reader instanceof BundleReader;
  if (once) {
    const hashed = await hashSplitOnce(reader, damaged, problems, onProgress);
    bytesDone = hashed.bytes;
    blobsDone = hashed.blobs;
  } else {
    problems.push(...await reader.file.checkParts());
  }
  for (const blob of once ? [] : blobs) {
    onProgress?.({ blobsDone, blobsTotal: blobs.length, bytesDone, bytesTotal, digest: blob.digest });
    const hash = createHash('sha256');
    try {
      const stream = await reader.fetch({ mediaType: 'application/octet-stream', ...blob });
      for await (const chunk of stream as AsyncIterable<Buffer>) {
        hash.update(chunk);
        bytesDone += chunk.length;
      }
      const got = `sha256:${hash.digest('hex')}`;
      if (got !== blob.digest) {
        damaged.add(blob.digest);
        problems.push({ digest: blob.digest, message: `blob ${blob.digest} is damaged: its content hashes to ${got}${inParts(reader, blob.digest)}` });
      }
    } catch (e) {
      damaged.add(blob.digest);
      problems.push({ digest: blob.digest, message: `blob ${blob.digest} could not be read${inParts(reader, blob.digest)}: ${errorText(e)}` });
    }
    blobsDone++;
  }
  if (blobs.length > 0) {
    const last = blobs[blobs.length - 1]!;
    onProgress?.({ blobsDone, blobsTotal: blobs.length, bytesDone, bytesTotal, digest: last.digest });
  }

  const fromBase = new Map<string, number>();
  await checkGraphs(reader, damaged, problems, fromBase);
  await checkMetadata(reader, problems);
  const base = reader.base();
  return {
    ok: problems.length === 0, problems, blobs: blobsDone, bytes: bytesDone,
    ...(base ? { expectedFromBase: {
      base: { id: base.id, created: base.created, ...(base.release ? { release: base.release } : {}) },
      blobs: fromBase.size, bytes: [...fromBase.values()].reduce((n, x) => n + x, 0),
    } } : {}),
    ...(reader.file.split ? { parts: reader.file.split.parts.length } : {}),
  };
}

/**
 * One sequential read of a split bundle's logical tar: every byte updates its part's hash, and
 * the bytes of each blob its blob's hash (blobs are disjoint ranges, in file order).
 */
async function hashSplitOnce(reader: BundleReader, damaged: Set<string>, problems: VerifyProblem[],
  onProgress?: (p: VerifyProgress) => void): Promise<{ bytes: number; blobs: number }> {
  const parts = reader.file.split!.parts;
  const ranges = reader.blobRanges();
  const bytesTotal = ranges.reduce((n, b) => n + b.size, 0);
  let bytes = 0;
  let done = 0;
  let part = 0;
  let partStart = 0;
  let partHash = createHash('sha256');
  let next = 0; // the first blob not finished
  let blobHash: ReturnType<typeof createHash> | undefined;
  const finishParts = (pos: number): void => {
    while (part < parts.length && pos === partStart + parts[part]!.size) {
      const got = partHash.digest('hex');
      const p = parts[part]!;
      if (got !== p.sha256) problems.push({ part: p.name, message: `part ${p.name} is damaged: its sha256 is ${got}, the parts manifest says ${p.sha256}` });
      partStart += p.size;
      part++;
      partHash = createHash('sha256');
    }
  };
  const feed = (slice: Buffer, pos: number): void => {
    const end = pos + slice.length;
    while (next < ranges.length && ranges[next]!.offset <= end) {
      const b = ranges[next]!;
      if (!blobHash) {
        onProgress?.({ blobsDone: done, blobsTotal: ranges.length, bytesDone: bytes, bytesTotal, digest: b.digest });
        blobHash = createHash('sha256');
      }
      const from = Math.max(b.offset, pos);
      const to = Math.min(b.offset + b.size, end);
      if (to > from) {
        blobHash.update(slice.subarray(from - pos, to - pos));
        bytes += to - from;
      }
      if (b.offset + b.size > end) break;
      const got = `sha256:${blobHash.digest('hex')}`;
      blobHash = undefined;
      if (got !== b.digest) {
        damaged.add(b.digest);
        problems.push({ digest: b.digest, message: `blob ${b.digest} is damaged: its content hashes to ${got}${inParts(reader, b.digest)}` });
      }
      done++;
      next++;
    }
  };
  let pos = 0;
  finishParts(pos);
  try {
    for await (const chunk of reader.file.stream(0, reader.file.size) as AsyncIterable<Buffer>) {
      for (let off = 0; off < chunk.length;) {
        const n = Math.min(chunk.length - off, partStart + parts[part]!.size - pos);
        const slice = chunk.subarray(off, off + n);
        partHash.update(slice);
        feed(slice, pos);
        pos += n;
        off += n;
        finishParts(pos);
      }
    }
  } catch (e) {
    for (const b of ranges.slice(next)) {
      damaged.add(b.digest);
      problems.push({ digest: b.digest, message: `blob ${b.digest} could not be read${inParts(reader, b.digest)}: ${errorText(e)}` });
    }
  }
  return { bytes, blobs: done };
}

function inParts(reader: BundleSource, digest: string): string {
  return reader.file.split ? ` (in ${reader.partsOfBlob(digest).map((p) => `part ${p}`).join(' and ')})` : '';
}

/**
 * Walks every index.json entry's graph with an explicit stack (depth costs no call stack), bounded
 * as every reader's walk is (MAX_GRAPH_DEPTH), reading manifests through the reader's rules.
 */
async function checkGraphs(reader: BundleSource, damaged: Set<string>, problems: VerifyProblem[],
  fromBase: Map<string, number>): Promise<void> {
  // A blob shared by several images is reported once, under the first image that reaches it.
  const visited = new Set<string>();
  const roots = reader.indexDescriptors();
  if (roots.length === 0) problems.push({ message: 'index.json lists no images' });

  interface Step { desc: Descriptor; ref: string | undefined; path: string; depth: number }
  const visit = async ({ desc, ref, path, depth }: Step): Promise<Step[]> => {
    if (visited.has(desc.digest)) return [];
    visited.add(desc.digest);
    const problem = (message: string): void => {
      problems.push({ digest: desc.digest, ...(ref ? { ref } : {}), message });
    };
    const size = reader.blobSize(desc.digest);
    const declared = size === undefined ? reader.baseBlobSize(desc.digest) : undefined;
    if (declared !== undefined) {
      if (declared !== desc.size) problem(`${path} ${desc.digest} is expected from the base with ${declared} bytes but referenced with ${desc.size}`);
      // A manifest is always carried (push walks graphs from the delta alone): never expect one.
      else if (isIndexType(desc.mediaType) || isManifestType(desc.mediaType)) problem(`${path} ${desc.digest} is a manifest the delta does not carry`);
      else fromBase.set(desc.digest, desc.size);
      return [];
    }
    if (size === undefined) {
      if (!isForeignLayer(desc)) problem(`${path} ${desc.digest} is missing from the bundle`);
      return [];
    }
    if (size !== desc.size) {
      problem(`${path} ${desc.digest} is stored with ${size} bytes but referenced with ${desc.size}`);
      return [];
    }
    if (!isIndexType(desc.mediaType) && !isManifestType(desc.mediaType)) return [];
    if (damaged.has(desc.digest)) return []; // already reported; its children cannot be trusted
    if (depth > MAX_GRAPH_DEPTH) {
      problem(`${path} ${desc.digest}: manifests nest more than ${MAX_GRAPH_DEPTH} levels deep; no image is built that way`);
      return [];
    }
    let children: Descriptor[];
    let isIndex: boolean;
    try {
      const { manifest } = await reader.readManifest(desc, `${path} ${desc.digest}`);
      children = childrenOf(manifest);
      isIndex = manifest.kind === 'index';
    } catch (e) {
      problem(`${path} ${desc.digest} cannot be read as a manifest: ${errorText(e)}`);
      return [];
    }
    return children.map((child, i) => ({
      desc: child, ref, depth: depth + 1,
      path: isIndexType(child.mediaType) || isManifestType(child.mediaType) ? 'manifest' : i === 0 && !isIndex ? 'config' : 'layer',
    }));
  };

  for (const root of roots) {
    const ref = root.annotations?.[ANNOTATION_REF_NAME];
    const subject = root.annotations?.[ANNOTATION_SUBJECT];
    const path = ref ? `image ${ref}:` : subject ? `${root.annotations?.[ANNOTATION_ATTACHED_TAG] ?? 'referrer'} of ${subject}:` : 'index.json entry';
    // Depth first, children in order, as a recursive walk would report them.
    const stack: Step[] = [{ desc: root, ref, path, depth: 1 }];
    while (stack.length > 0) stack.push(...(await visit(stack.pop()!)).reverse());
  }
}

/**
 * airgap.json must describe what index.json holds: an image listed there but absent is a problem.
 * Where it pins digests (pins), index.json and every app file must match them (without --key
 * this proves consistency, not origin: that takes the signature, bundle/signing.ts).
 */
async function checkMetadata(reader: BundleSource, problems: VerifyProblem[]): Promise<void> {
  const meta = reader.metadata();
  if (!meta) return;
  if (meta.pins) {
    const index = await reader.readEntry(INDEX_FILE);
    if (index && sha256Digest(index) !== meta.pins.index) {
      problems.push({ message: `index.json hashes to ${sha256Digest(index)}, but airgap.json pins ${meta.pins.index}` });
    }
    for (const f of reader.appFiles()) {
      const want = meta.pins.app[f];
      const got = sha256Digest(await reader.readAppFile(f));
      if (want === undefined) problems.push({ message: `app/${f} is not pinned by airgap.json` });
      else if (got !== want) problems.push({ message: `app/${f} hashes to ${got}, but airgap.json pins ${want}` });
    }
  }
  const byRef = new Map(reader.images().map((i) => [i.ref, i.descriptor]));
  for (const img of meta.images) {
    const d = byRef.get(img.ref);
    if (!d) problems.push({ ref: img.ref, message: `airgap.json lists ${img.ref} but index.json does not` });
    else if (d.digest !== img.digest) {
      problems.push({ ref: img.ref, digest: img.digest,
        message: `airgap.json gives ${img.ref} digest ${img.digest} but index.json has ${d.digest}` });
    }
  }
  const held = new Set(reader.appFiles());
  for (const f of meta.appFiles) {
    if (!held.has(f)) problems.push({ message: `airgap.json lists app file ${f} but the bundle does not hold it` });
  }
}

function errorText(e: unknown): string {
  if (isAirgapError(e)) return e.message;
  return e instanceof Error ? e.message : String(e);
}
