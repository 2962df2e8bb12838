import { open, stat } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import type { Descriptor } from '../oci/descriptor.js';
import type { ParsedManifest } from '../oci/manifest.js';
import type { FetchOptions, Resolved, SourceStore } from '../store.js';
import type { BundleBase, BundleMetadata } from './format.js';
import { BundleReader, type BundleBlob } from './reader.js';
import type { BundleFile } from './split.js';

/**
 * What push, rewrite, install, inspect and verify read from a bundle, whichever format holds it:
 * our own (an OCI layout tar, BundleReader) or KOTS's `.airgap` (kotsairgap/reader.ts).
 */
export interface BundleSource extends SourceStore {
  readonly label: string;
  readonly malformedCode: 'E_BUNDLE';
  readonly path: string;
  readonly file: Pick<BundleFile, 'size' | 'split' | 'checkParts'>;
  base(): BundleBase | undefined;
  fromBase(): BundleBlob[];
  isFromBase(digest: string): boolean;
  baseBlobSize(digest: string): number | undefined;
  partsOfBlob(digest: string): string[];
  images(): { ref: string; descriptor: Descriptor }[];
  attached(): { descriptor: Descriptor; subject: string; kind: string; tag?: string }[];
  indexDescriptors(): Descriptor[];
  metadata(): BundleMetadata | undefined;
  appFiles(): string[];
  readAppFile(rel: string): Promise<Buffer>;
  readEntry(name: string): Promise<Buffer | undefined>;
  hasBlob(digest: string): boolean;
  blobSize(digest: string): number | undefined;
  blobs(): BundleBlob[];
  strayBlobNames(): string[];
  resolve(reference: string, opts?: FetchOptions): Promise<Resolved>;
  readManifest(desc: Descriptor, what?: string): Promise<{ bytes: Buffer; manifest: ParsedManifest }>;
  fetch(desc: Descriptor, opts?: FetchOptions): Promise<Readable>;
  close(): Promise<void>;
}

/** Opens a bundle by its content: a gzip file is a KOTS .airgap, anything else our own format. */
export async function openBundle(path: string): Promise<BundleSource> {
  if (await isGzip(path)) {
    const { KotsAirgapReader } = await import('../kotsairgap/reader.js');
    return KotsAirgapReader.open(path);
  }
  return BundleReader.open(path);
}

async function isGzip(path: string): Promise<boolean> {
  // A missing path, a FIFO, a directory: BundleReader.open says what is wrong, as it always has.
  const st = await stat(path).catch(() => undefined);
  if (!st?.isFile()) return false;
  const fh = await open(path, 'r').catch(() => undefined);
  if (!fh) return false;
  try {
    const head = Buffer.alloc(2);
    const { bytesRead } = await fh.read(head, 0, 2, 0);
    return bytesRead === 2 && head[0] === 0x1f && head[1] === 0x8b;
  } finally {
    await fh.close();
  }
}
