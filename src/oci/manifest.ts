import { AirgapError } from '../errors.js';
import { type Descriptor, isDescriptor, assertDigest } from './descriptor.js';
import { MediaType, NON_DISTRIBUTABLE, isIndexType, isManifestType, isSchema1, bareMediaType } from './mediatypes.js';

export interface ImageManifest {
  kind: 'manifest';
  mediaType: string;
  config: Descriptor;
  layers: Descriptor[];
  subject?: Descriptor;
}

export interface ImageIndex {
  kind: 'index';
  mediaType: string;
  manifests: Descriptor[];
  subject?: Descriptor;
}

export type ParsedManifest = ImageManifest | ImageIndex;

/**
 * The largest manifest or index we read, from a registry or a bundle: 4 MiB, what the distribution
 * spec asks registries to accept at least and what the common registries enforce.
 */
export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;

/**
 * How deep manifests may nest (an index of indexes of manifests). Real images use two or three
 * levels; the bound keeps every walk of a hostile graph (5,000 nested indexes) short.
 */
export const MAX_GRAPH_DEPTH = 16;

/**
 * Parses manifest bytes. The media type comes from the body's `mediaType` when present (registries
 * send wrong or parameterised Content-Types), else from the Content-Type, else from the shape.
 */
export function parseManifest(bytes: Uint8Array, contentType?: string | null, what = 'manifest'): ParsedManifest {
  let body: unknown;
  try {
    body = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch {
    throw new AirgapError('E_UNSUPPORTED', `${what} is not JSON (Content-Type ${contentType ?? 'none'})`,
      { hint: 'the registry answered something that is not an image manifest' });
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new AirgapError('E_UNSUPPORTED', `${what} is not a JSON object`);
  }
  const m = body as Record<string, unknown>;
  if (m.schemaVersion === 1 || isSchema1(bareMediaType(contentType))) {
    throw new AirgapError('E_UNSUPPORTED', `${what} is a Docker schema 1 manifest, which is not supported`,
      { hint: 'rebuild or re-push the image with a current client (schema 2 or OCI)' });
  }
  let mediaType = typeof m.mediaType === 'string' ? m.mediaType : bareMediaType(contentType);
  if (!isIndexType(mediaType) && !isManifestType(mediaType)) {
    // Shape fallback: an OCI manifest may omit mediaType.
    if (Array.isArray(m.manifests)) mediaType = MediaType.OciIndex;
    else if (m.config !== undefined && Array.isArray(m.layers)) mediaType = MediaType.OciManifest;
    else throw new AirgapError('E_UNSUPPORTED', `${what} has unsupported media type "${mediaType || 'none'}"`);
  }
  const subject = m.subject !== undefined ? checkDescriptor(m.subject, `${what} subject`) : undefined;
  if (isIndexType(mediaType)) {
    if (!Array.isArray(m.manifests)) throw new AirgapError('E_UNSUPPORTED', `${what}: index without "manifests"`);
    const manifests = m.manifests.map((d, i) => checkDescriptor(d, `${what} manifests[${i}]`));
    return { kind: 'index', mediaType, manifests, ...(subject ? { subject } : {}) };
  }
  if (!Array.isArray(m.layers)) throw new AirgapError('E_UNSUPPORTED', `${what}: manifest without "layers"`);
  const config = checkDescriptor(m.config, `${what} config`);
  const layers = m.layers.map((d, i) => checkDescriptor(d, `${what} layers[${i}]`));
  return { kind: 'manifest', mediaType, config, layers, ...(subject ? { subject } : {}) };
}

function checkDescriptor(v: unknown, what: string): Descriptor {
  if (!isDescriptor(v)) throw new AirgapError('E_UNSUPPORTED', `${what} is not a valid descriptor`);
  assertDigest(v.digest, what);
  return v;
}

/** Every descriptor a manifest points at (children first in the order a copy should handle them). */
export function childrenOf(m: ParsedManifest): Descriptor[] {
  const out = m.kind === 'index' ? [...m.manifests] : [m.config, ...m.layers];
  return out;
}

/**
 * Foreign (non-distributable) layers: Windows base layers and the like, which registries may not
 * hold and which the descriptor's `urls` serve instead. Decided by media type, as skopeo and crane
 * do; they are carried only when asked (build --include-foreign-layers).
 */
export function isForeignLayer(d: Descriptor): boolean {
  return NON_DISTRIBUTABLE.has(d.mediaType);
}
