import { Readable } from 'node:stream';
import type { Copier, GraphNode } from './copy.js';
import { AirgapError } from './errors.js';
import type { Descriptor } from './oci/descriptor.js';
import { parseManifest, type ImageManifest } from './oci/manifest.js';
import { sha256Digest } from './oci/verify.js';
import type { FetchOptions, Resolved, SourceStore, TargetStore } from './store.js';

/**
 * A cosign tag (`sha256-<hex>.sig`, `.att`) the customer registry already holds with other content
 * than the bundle's: the customer counter-signed (cosign appends a layer to the manifest under
 * that tag) or signed on their own. Re-pushing must never drop their signatures, which their
 * admission policy may require:
 *  - it already holds every layer of ours: left as it is (nothing written);
 *  - else ours are appended to theirs, as `cosign sign` appends: their layers first, the config's
 *    diff_ids extended, written under the tag (a new manifest holding both);
 *  - a form we cannot merge (an SBOM, which cosign replaces rather than appends; an index; a
 *    manifest of another shape): left as it is, with a warning naming the tag.
 */
export type TagMerge =
  | { how: 'contains'; digest: string }
  | { how: 'merged'; digest: string }
  | { how: 'left'; digest: string; warning: string };

/** Bigger than any cosign config (a few hundred bytes per signature). */
const MAX_CONFIG_BYTES = 1 << 20;

export async function mergeCosignTag(copier: Copier, src: SourceStore, ours: GraphNode, tag: string, theirDigest: string,
  image: string, opts: FetchOptions): Promise<TagMerge> {
  const dst = copier.target as SourceStore & TargetStore;
  const where = `${dst.label}:${tag}`;
  const left = (why: string): TagMerge => ({ how: 'left', digest: theirDigest,
    warning: `${where} already holds ${theirDigest}, not the bundle's ${ours.descriptor.digest} (${why}): left as it is, the bundle's was not pushed` });
  if (tag.endsWith('.sbom')) return left('an SBOM tag is replaced by cosign, never merged');
  const theirs = await dst.resolve(theirDigest, opts);
  let theirManifest;
  try {
    theirManifest = parseManifest(theirs.bytes, theirs.descriptor.mediaType, where);
  } catch {
    return left('it is not a manifest airgap can read');
  }
  const ourManifest = ours.manifest;
  if (theirManifest.kind !== 'manifest' || ourManifest?.kind !== 'manifest' || theirManifest.mediaType !== ourManifest.mediaType) {
    return left('it is not a signature manifest of the same form');
  }
  const held = new Set(theirManifest.layers.map((l) => l.digest));
  const missing = ourManifest.layers.map((l, i) => ({ l, i })).filter(({ l }) => !held.has(l.digest));
  if (missing.length === 0) return { how: 'contains', digest: theirDigest };

  const theirConfig = await readJson(dst, theirManifest.config, opts);
  const ourConfig = await readJson(src, ourManifest.config, opts);
  if (theirConfig === undefined || ourConfig === undefined) return left('its config is not JSON');
  const theirIds = diffIds(theirConfig);
  if (theirIds !== undefined) {
    const ourIds = diffIds(ourConfig) ?? [];
    (theirConfig.rootfs as { diff_ids: string[] }).diff_ids = [...theirIds, ...missing.map(({ l, i }) => ourIds[i] ?? l.digest)];
  }
  const configBytes = Buffer.from(JSON.stringify(theirConfig));
  const configDesc: Descriptor = { mediaType: theirManifest.config.mediaType, digest: sha256Digest(configBytes), size: configBytes.length };
  // Their manifest as they wrote it (annotations and all), with ours appended: exact descriptors kept.
  const body = JSON.parse(Buffer.from(theirs.bytes).toString('utf8')) as Record<string, unknown> & { layers: unknown[] };
  const ourBody = JSON.parse(Buffer.from(ours.bytes!).toString('utf8')) as { layers: unknown[] };
  body.config = configDesc;
  body.layers = [...body.layers, ...missing.map(({ i }) => ourBody.layers[i])];
  const bytes = Buffer.from(JSON.stringify(body));
  const desc: Descriptor = { mediaType: theirManifest.mediaType, digest: sha256Digest(bytes), size: bytes.length };
  const manifest = parseManifest(bytes, desc.mediaType, where) as ImageManifest;
  const graph: GraphNode = {
    descriptor: desc, bytes, manifest,
    children: [{ descriptor: configDesc, children: [] }, ...manifest.layers.map((d) => ({ descriptor: d, children: [] }))],
  };
  // Their layers are in the registry already (the copier finds them); ours come from the bundle.
  await copier.copyImage(withBlob(src, configDesc, configBytes), graph, `${image} (${tag}, merged)`, [tag], true);
  return { how: 'merged', digest: desc.digest };
}

function diffIds(config: Record<string, unknown>): string[] | undefined {
  const rootfs = config.rootfs as { diff_ids?: unknown } | undefined;
  return Array.isArray(rootfs?.diff_ids) && rootfs.diff_ids.every((x) => typeof x === 'string') ? rootfs.diff_ids as string[] : undefined;
}

async function readJson(store: SourceStore, desc: Descriptor, opts: FetchOptions): Promise<Record<string, unknown> | undefined> {
  if (desc.size > MAX_CONFIG_BYTES) return undefined;
  const chunks: Buffer[] = [];
  for await (const c of await store.fetch(desc, opts)) chunks.push(c as Buffer);
  const bytes = Buffer.concat(chunks);
  if (sha256Digest(bytes) !== desc.digest) throw new AirgapError('E_DIGEST_MISMATCH', `${store.label}: config ${desc.digest} does not match its digest`);
  try {
    const v = JSON.parse(bytes.toString('utf8')) as unknown;
    return typeof v === 'object' && v !== null && !Array.isArray(v) ? v as Record<string, unknown> : undefined;
  } catch {
    return undefined;
  }
}

/** `src`, plus one blob held in memory (the merged config). */
function withBlob(src: SourceStore, desc: Descriptor, bytes: Buffer): SourceStore {
  return {
    label: src.label,
    resolve: (reference: string, opts?: FetchOptions): Promise<Resolved> => src.resolve(reference, opts),
    fetch: async (d: Descriptor, opts?: FetchOptions) => (d.digest === desc.digest ? Readable.from([bytes], { objectMode: false }) : src.fetch(d, opts)),
  };
}
