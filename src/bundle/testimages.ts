import { createHash } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import tar from 'tar-stream';
import type { Descriptor } from '../oci/descriptor.js';
import { MediaType } from '../oci/mediatypes.js';

/**
 * Test support: real images built in memory (gzip'd tar layers, a config with matching diff_ids,
 * OCI and Docker v2 manifests, a two-platform index), so tests can write bundles that an
 * independent reader (skopeo) must accept.
 */

export interface Blob {
  descriptor: Descriptor;
  bytes: Buffer;
}

export interface TestImage {
  /** The top-level manifest or index. */
  root: Blob;
  /** Every blob of the image, root included, children before parents. */
  blobs: Blob[];
}

const LAYER_GZIP = 'application/vnd.oci.image.layer.v1.tar+gzip';
const DOCKER_LAYER_GZIP = 'application/vnd.docker.image.rootfs.diff.tar.gzip';

export function blobOf(bytes: Buffer, mediaType: string, extra: Partial<Descriptor> = {}): Blob {
  const digest = 'sha256:' + createHash('sha256').update(bytes).digest('hex');
  return { bytes, descriptor: { mediaType, digest, size: bytes.length, ...extra } };
}

/** A tar with the given files, as a layer would hold them. */
export async function tarOf(files: Record<string, string | Buffer>): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  pack.on('data', (c: unknown) => { chunks.push(c as Buffer); });
  const done = new Promise<void>((resolve, reject) => {
    pack.on('end', resolve);
    pack.on('error', reject);
  });
  for (const [name, content] of Object.entries(files)) {
    pack.entry({ name, mtime: new Date(0), mode: 0o644 }, typeof content === 'string' ? Buffer.from(content) : content);
  }
  pack.finalize();
  await done;
  return Buffer.concat(chunks);
}

/** A gzip'd layer plus the diff_id (digest of the uncompressed tar) its config must list. */
export async function layerOf(files: Record<string, string | Buffer>, mediaType = LAYER_GZIP): Promise<{ blob: Blob; diffId: string }> {
  const raw = await tarOf(files);
  const diffId = 'sha256:' + createHash('sha256').update(raw).digest('hex');
  return { blob: blobOf(gzipSync(raw), mediaType), diffId };
}

export interface ImageOptions {
  os?: string;
  architecture?: string;
  variant?: string;
  /** Layers shared with other images (already built). */
  sharedLayers?: { blob: Blob; diffId: string }[];
  /** Files of one more layer unique to this image. */
  files?: Record<string, string | Buffer>;
  docker?: boolean;
}

export async function imageOf(opts: ImageOptions = {}): Promise<TestImage> {
  const os = opts.os ?? 'linux';
  const architecture = opts.architecture ?? 'amd64';
  const layers = [...(opts.sharedLayers ?? [])];
  if (opts.files) layers.push(await layerOf(opts.files, opts.docker ? DOCKER_LAYER_GZIP : LAYER_GZIP));
  const config = blobOf(Buffer.from(JSON.stringify({
    architecture, os, ...(opts.variant ? { variant: opts.variant } : {}),
    config: { Cmd: ['/bin/sh'] },
    rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) },
    history: layers.map(() => ({ created_by: 'airgap test' })),
  })), opts.docker ? MediaType.DockerConfig : MediaType.OciConfig);
  const mediaType = opts.docker ? MediaType.DockerManifest : MediaType.OciManifest;
  const manifest = blobOf(Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType,
    config: config.descriptor,
    layers: layers.map((l) => l.blob.descriptor),
  }, null, 3)), mediaType);
  return { root: manifest, blobs: [...layers.map((l) => l.blob), config, manifest] };
}

/** An OCI index over linux/amd64 and linux/arm64 images that share their first layer. */
export async function multiPlatformImage(): Promise<TestImage> {
  const base = await layerOf({ 'etc/os-release': 'NAME=test\n' });
  const amd = await imageOf({ sharedLayers: [base], files: { 'bin/app': 'amd64 binary' } });
  const arm = await imageOf({ architecture: 'arm64', variant: 'v8', sharedLayers: [base], files: { 'bin/app': 'arm64 binary' } });
  const index = blobOf(Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: MediaType.OciIndex,
    manifests: [
      { ...amd.root.descriptor, platform: { os: 'linux', architecture: 'amd64' } },
      { ...arm.root.descriptor, platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } },
    ],
  })), MediaType.OciIndex);
  const seen = new Set<string>();
  const blobs = [...amd.blobs, ...arm.blobs, index].filter((b) => {
    if (seen.has(b.descriptor.digest)) return false;
    seen.add(b.descriptor.digest);
    return true;
  });
  return { root: index, blobs };
}
