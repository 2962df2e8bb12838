import { createHash } from 'node:crypto';
import { isAirgapError } from '../errors.js';
import type { Descriptor } from '../oci/descriptor.js';
import { MAX_GRAPH_DEPTH, childrenOf, isForeignLayer } from '../oci/manifest.js';
import { isIndexType, isManifestType } from '../oci/mediatypes.js';
import { ANNOTATION_ATTACHED_TAG, ANNOTATION_REF_NAME, ANNOTATION_SUBJECT, INDEX_FILE } from './format.js';
import { sha256Digest } from '../oci/verify.js';
import type { BundleSource as BundleReader } from './source.js';

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
export async function verifyBundle(reader: BundleReader,
  onProgress?: (p: VerifyProgress) => void): Promise<VerifyResult> {
  const problems: VerifyProblem[] = [];
  // A split bundle: each part against its recorded sha256 first, so a bad copy is named by file.
  problems.push(...await reader.file.checkParts());
  for (const name of reader.strayBlobNames()) {
    problems.push({ message: `${name} is not named by a sha256 digest and cannot be verified` });
  }

  const blobs = reader.blobs();
  const bytesTotal = blobs.reduce((n, b) => n + b.size, 0);
  const damaged = new Set<string>();
  let bytesDone = 0;
  let blobsDone = 0;
  for (const blob of blobs) {
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

function inParts(reader: BundleReader, digest: string): string {
  return reader.file.split ? ` (in ${reader.partsOfBlob(digest).map((p) => `part ${p}`).join(' and ')})` : '';
}

/**
 * Walks every index.json entry's graph with an explicit stack (depth costs no call stack), bounded
 * as every reader's walk is (MAX_GRAPH_DEPTH), reading manifests through the reader's rules.
 */
async function checkGraphs(reader: BundleReader, damaged: Set<string>, problems: VerifyProblem[],
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
async function checkMetadata(reader: BundleReader, problems: VerifyProblem[]): Promise<void> {
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
