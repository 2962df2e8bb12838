import { AirgapError } from './errors.js';
import { fetchManifest } from './copy.js';
import { platformString, type Descriptor } from './oci/descriptor.js';
import { parseManifest } from './oci/manifest.js';
import { selectChildren, type PlatformSpec } from './oci/platform.js';
import { sha256Digest } from './oci/verify.js';
import type { Resolved, SourceStore } from './store.js';

/**
 * Applies the platform choice to an image's root (DESIGN.md "Platforms"): `all` keeps the index
 * bytes; one platform stores that platform's manifest (its digest is what the customer registry
 * will serve); several store a new index holding only the chosen children. A plain manifest is
 * kept as is.
 */
export async function choosePlatforms(src: SourceStore, root: Resolved, spec: PlatformSpec, what: string): Promise<{ root: Resolved; platforms: string[] }> {
  const parsed = parseManifest(root.bytes, root.descriptor.mediaType, `${what} manifest`);
  if (parsed.kind === 'manifest') return { root, platforms: [] };
  const listed = parsed.manifests.map((d) => platformString(d.platform));
  if (spec.all) return { root, platforms: listed };
  const { chosen, missing } = selectChildren(parsed.manifests, spec.wanted);
  if (missing.length > 0) {
    throw new AirgapError('E_NOT_FOUND',
      `${what} has no ${missing.map((p) => platformString(p)).join(', ')} image (it has ${listed.join(', ')})`,
      { hint: 'choose platforms the image provides with --platform, or --platform all' });
  }
  if (chosen.length === 1) {
    const child = chosen[0]!;
    const resolved = await fetchManifest(src, child, what);
    return { root: { descriptor: stripPlatform(child, resolved.descriptor), bytes: resolved.bytes }, platforms: [platformString(child.platform)] };
  }
  // A new index of the chosen children; the received children are stored byte for byte.
  const index = { schemaVersion: 2, mediaType: parsed.mediaType, manifests: chosen };
  const bytes = Buffer.from(JSON.stringify(index));
  const descriptor: Descriptor = { mediaType: parsed.mediaType, digest: sha256Digest(bytes), size: bytes.length };
  return { root: { descriptor, bytes }, platforms: chosen.map((c) => platformString(c.platform)) };
}

function stripPlatform(child: Descriptor, d: Descriptor): Descriptor {
  return { mediaType: child.mediaType, digest: d.digest, size: d.size };
}
