import type { Readable } from 'node:stream';
import type { Descriptor } from './oci/descriptor.js';

/**
 * The content-store contract every endpoint implements (a registry repository, a bundle being
 * written, a bundle being read). The copy engine (src/copy.ts) walks a manifest graph from a
 * SourceStore to a TargetStore and knows nothing of HTTP or tar.
 */

export interface Resolved {
  descriptor: Descriptor;
  /** The manifest exactly as stored: never re-serialised. */
  bytes: Uint8Array;
}

export interface FetchOptions {
  signal?: AbortSignal;
}

export interface SourceStore {
  /** Short human label for messages: "registry quay.io/my-org/api", "bundle ./app.tar". */
  readonly label: string;
  /** Resolves a tag (or reference name, for a bundle) or a digest to its manifest. */
  resolve(reference: string, opts?: FetchOptions): Promise<Resolved>;
  /**
   * Opens the content of a blob or manifest. The stream yields exactly desc.size bytes on success;
   * the caller verifies the digest while consuming it (see oci/verify.ts). Throws AirgapError
   * E_NOT_FOUND when the store does not hold it.
   */
  fetch(desc: Descriptor, opts?: FetchOptions): Promise<Readable>;
}

export type PushOutcome = 'uploaded' | 'mounted' | 'existed';

export interface TargetStore {
  readonly label: string;
  /** True when the store already holds this content (blob or manifest, by digest). */
  exists(desc: Descriptor, opts?: FetchOptions): Promise<boolean>;
  /**
   * Stores content. `open` is called lazily (zero or more times: not at all when a mount succeeds,
   * again when an upload must restart) and must give a fresh stream of the content from byte 0.
   * Implementations must not make the content visible under a tag.
   */
  push(desc: Descriptor, open: () => Promise<Readable>, opts?: FetchOptions): Promise<PushOutcome>;
  /** Points `reference` (a tag, or a full reference name for a bundle) at a manifest already pushed. */
  tag(desc: Descriptor, bytes: Uint8Array, reference: string, opts?: FetchOptions): Promise<void>;
}
