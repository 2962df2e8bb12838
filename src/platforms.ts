import { AirgapError } from './errors.js';
import { fetchManifest } from './copy.js';
import { platformString, type Descriptor, type Platform } from './oci/descriptor.js';
import { parseManifest } from './oci/manifest.js';
import { platformMatches, selectChildren, type PlatformSpec } from './oci/platform.js';
import { sha256Digest } from './oci/verify.js';
import type { Resolved, SourceStore } from './store.js';

/**
 * Applies the platform choice to an image's root (DESIGN.md "Platforms"): `all` keeps the index
 * bytes; one platform stores that platform's manifest (its digest is what the customer registry
 * will serve); several store a new index holding only the chosen children. A plain manifest is
 * kept as is.
 */
export async function choosePlatforms(src: SourceStore, root: Resolved, spec: PlatformSpec, what: string): Promise<Chosen> {
  const parsed = parseManifest(root.bytes, root.descriptor.mediaType, `${what} manifest`);
  if (parsed.kind === 'manifest') {
    const own = await ownPlatform(src, parsed.config, spec, what);
    return { root, platforms: own.platforms, ...(own.config ? { config: own.config } : {}) };
  }
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

export interface Chosen {
  root: Resolved;
  platforms: string[];
  /**
   * The config blob of a single-platform image, read whole to learn its platform: the build keeps
   * these bytes and copies them from memory (src/kept.ts) instead of downloading them again.
   */
  config?: { digest: string; bytes: Buffer };
}

function stripPlatform(child: Descriptor, d: Descriptor): Descriptor {
  return { mediaType: child.mediaType, digest: d.digest, size: d.size };
}

/**
 * A single-platform image is its own platform, read from its config: every platform asked for
 * with --platform must be it. A config that names no platform (an OCI artifact) is taken as it is.
 */
async function ownPlatform(src: SourceStore, config: Descriptor, spec: PlatformSpec, what: string): Promise<{ platforms: string[]; config?: { digest: string; bytes: Buffer } }> {
  if (config.size > MAX_CONFIG) return { platforms: [] };
  const stream = await src.fetch(config);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of stream) {
    size += (c as Buffer).length;
    if (size > MAX_CONFIG) {
      stream.destroy();
      return { platforms: [] };
    }
    chunks.push(c as Buffer);
  }
  const bytes = Buffer.concat(chunks);
  // Kept only when it is exactly the blob the manifest names; the copy verifies it again anyway.
  const kept = bytes.length === config.size && sha256Digest(bytes) === config.digest ? { config: { digest: config.digest, bytes } } : {};
  let cfg: { os?: unknown; architecture?: unknown; variant?: unknown };
  try {
    cfg = JSON.parse(bytes.toString('utf8')) as typeof cfg;
  } catch {
    return { platforms: [], ...kept };
  }
  if (typeof cfg.os !== 'string' || typeof cfg.architecture !== 'string') return { platforms: [], ...kept };
  const have: Platform = { os: cfg.os, architecture: cfg.architecture, ...(typeof cfg.variant === 'string' ? { variant: cfg.variant } : {}) };
  const own = platformString(have);
  // Only a platform the user asked for is checked: without --platform the image is what it is
  // (a Windows-only image, say), and inspect shows its platform.
  if (spec.all || spec.defaulted) return { platforms: [own], ...kept };
  const missing = spec.wanted.filter((w) => !platformMatches(w, have));
  if (missing.length > 0) {
    throw new AirgapError('E_NOT_FOUND',
      `${what} has no ${missing.map((p) => platformString(p)).join(', ')} image: it is a single-platform ${own} image`,
      { hint: `ask for --platform ${own} (or --platform all), or use an image built for ${missing.map((p) => platformString(p)).join(', ')}` });
  }
  return { platforms: [own], ...kept };
}

/** Image configs are a few KB; one past this is no platform we can read. */
const MAX_CONFIG = 4 * 1024 * 1024;
