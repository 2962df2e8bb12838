import { AirgapError } from '../errors.js';
import { MediaType } from '../oci/mediatypes.js';
import { sha256Digest } from '../oci/verify.js';
import type { Descriptor } from '../oci/descriptor.js';
import { isDigestOnly, parseReference, taggedName } from '../reference.js';
import { badAirgap, printable } from './tar.js';
import type { DockerArchiveFile, ScannedBlob } from './scan.js';

/**
 * An image from a docker archive (`docker save`, `skopeo copy … docker-archive:`), the format of
 * older .airgap files: manifest.json names the config and the layer tars. It becomes a Docker
 * v2 schema 2 manifest over the same bytes: the config as is, each layer as stored — usually an
 * uncompressed tar, pushed as `application/vnd.docker.image.rootfs.diff.tar` (its digest is then
 * its diff_id, the config's own rootfs entry) rather than compressed on the way as skopeo does,
 * which would give digests no one can reproduce. A gzip'd layer keeps its gzip media type.
 */

export const UNCOMPRESSED_LAYER = 'application/vnd.docker.image.rootfs.diff.tar';
export const GZIP_LAYER = 'application/vnd.docker.image.rootfs.diff.tar.gzip';

export interface ArchiveImage {
  ref: string;
  manifest: Buffer;
  descriptor: Descriptor;
  /** digest → where its bytes are in the .airgap's stream. */
  blobs: Map<string, ScannedBlob>;
}

export function archiveImage(a: DockerArchiveFile, label: string): ArchiveImage {
  const what = `${label}: ${a.entry}`;
  const p = a.parts;
  const byDigest = p[p.length - 2] === 'sha256';
  const name = p.slice(0, byDigest ? -2 : -1).join('/');
  const written = byDigest ? `${name}@sha256:${p[p.length - 1]}` : `${name}:${p[p.length - 1]}`;
  const ref = parseReference(written, what);
  if (isDigestOnly(ref)) {
    throw new AirgapError('E_DIGEST_ONLY', `${what}: image ${written} is pinned by digest only; an airgap install pushes and rewrites by tag`,
      { hint: 'ask the vendor for a bundle whose images carry tags' });
  }
  const list = parseJson(a.files.get('manifest.json'), what, 'manifest.json');
  if (!Array.isArray(list) || list.length === 0) throw badAirgap(what, 'manifest.json lists no image');
  const entry = list[0] as { Config?: unknown; Layers?: unknown };
  if (typeof entry.Config !== 'string' || !Array.isArray(entry.Layers) || entry.Layers.some((l) => typeof l !== 'string')) {
    throw badAirgap(what, 'manifest.json has no "Config" file and "Layers" list');
  }
  const blobs = new Map<string, ScannedBlob>();
  const file = (n: string): ScannedBlob & { digest: string } => {
    const f = a.files.get(n.replace(/^\.\//, ''));
    if (!f || f.digest === undefined) throw badAirgap(what, `manifest.json names ${printable(n)}, which the archive does not hold`);
    blobs.set(f.digest, f);
    return f as ScannedBlob & { digest: string };
  };
  const config = file(entry.Config);
  if (!config.data) throw badAirgap(what, `${printable(entry.Config)} is too big to be an image config`);
  const layers = (entry.Layers as string[]).map((l) => {
    const f = file(l);
    const gz = f.head !== undefined && f.head[0] === 0x1f && f.head[1] === 0x8b;
    return { mediaType: gz ? GZIP_LAYER : UNCOMPRESSED_LAYER, size: f.size, digest: f.digest };
  });
  const manifest = Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: MediaType.DockerManifest,
    config: { mediaType: MediaType.DockerConfig, size: config.size, digest: config.digest },
    layers,
  }, null, 3));
  return { ref: taggedName(ref), manifest, descriptor: { mediaType: MediaType.DockerManifest, digest: sha256Digest(manifest), size: manifest.length }, blobs };
}

function parseJson(f: ScannedBlob | undefined, what: string, name: string): unknown {
  if (!f?.data) throw badAirgap(what, `no ${name}: not a docker archive`);
  try {
    return JSON.parse(f.data.toString('utf8'));
  } catch (e) {
    throw badAirgap(what, `${name} is not valid JSON (${(e as Error).message})`);
  }
}
