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
  /**
   * The code of a graph from this store that breaks the rules (nested too deep): a bundle's is
   * the bundle's fault (E_BUNDLE, exit 3); unset, a registry's, is unsupported content.
   */
  readonly malformedCode?: 'E_BUNDLE';
  /** Resolves a tag (or reference name, for a bundle) or a digest to its manifest. */
  resolve(reference: string, opts?: FetchOptions): Promise<Resolved>;
  /**
   * Opens the content of a blob or manifest. The stream yields exactly desc.size bytes on success;
   * the caller verifies the digest while consuming it (see oci/verify.ts). Throws AirgapError
   * E_NOT_FOUND when the store does not hold it.
   */
  fetch(desc: Descriptor, opts?: FetchOptions): Promise<Readable>;
  /**
   * Optional: true when the store has hashed this blob's content against its digest already,
   * before anything moved, and fetch() serves exactly the bytes it hashed, from where it read
   * them (a one-stream .airgap, whose scan must read every byte anyway): the engine then does not
   * hash them a second time. The target registry still checks the digest of what it receives.
   */
  verified?(digest: string): boolean;
  /**
   * Optional: true when this store can serve byte ranges of the blob (a registry that answers
   * `Range` with 206). Big blobs are then fetched as parts in parallel (src/parts.ts).
   */
  servesRanges?(desc: Descriptor, opts?: FetchOptions): Promise<boolean>;
  /** Optional, with servesRanges: exactly the bytes [start, end) of the blob, unverified. */
  fetchRange?(desc: Descriptor, start: number, end: number, opts?: FetchOptions): Promise<Readable>;
  /**
   * Optional: every tag of the store in one answer, or undefined when it cannot give them so (then
   * each tag wanted is asked with peek). A snapshot, for reading: may be remembered for the process.
   */
  tags?(opts?: FetchOptions): Promise<ReadonlySet<string> | undefined>;
  /** Optional: the manifest a tag names now (without downloading it), undefined when none. */
  peek?(tag: string, opts?: FetchOptions): Promise<Descriptor | undefined>;
  /**
   * Optional: the OCI 1.1 referrers of a digest (manifests whose `subject` it is), or undefined
   * when this store has no referrers API (the `sha256-<hex>` tag is then the fall-back).
   */
  referrers?(digest: string, opts?: FetchOptions): Promise<Descriptor[] | undefined>;
}

/** A blob being received in parts, each streamed to its own place (see TargetStore.pushParts). */
export interface BlobParts {
  /** Streams bytes [start, end) of the blob to their place; parts may run concurrently, in any order. */
  write(start: number, end: number, content: Readable): Promise<void>;
  /** Once every part is written: verifies the whole blob (size, digest) and stores it. */
  commit(): Promise<PushOutcome>;
  /** A part failed or was abandoned: nothing is stored and the blob may be pushed again. */
  abort(): void;
}

export type PushOutcome = 'uploaded' | 'mounted' | 'existed';

export interface TargetStore {
  readonly label: string;
  /**
   * True when push() and pushParts() hash what they receive and fail with E_DIGEST_MISMATCH
   * themselves: the engine then does not hash the same bytes a second time.
   */
  readonly verifiesContent?: boolean;
  /**
   * True when push() itself finds content the store already holds without moving its bytes (a
   * registry's blob upload starts with a HEAD or a mount; a manifest PUT over itself is harmless):
   * the engine then does not ask exists() first.
   */
  readonly pushFindsExisting?: boolean;
  /**
   * True when tag() stores the manifest itself (a registry's PUT by tag): the engine then writes a
   * tagged root only with tag(), once, after everything under it is stored, and no push() by
   * digest first. A store whose tag() only records a name (the bundle writer) leaves it unset.
   */
  readonly tagStoresManifest?: boolean;
  /** True when the store already holds this content (blob or manifest, by digest). */
  exists(desc: Descriptor, opts?: FetchOptions): Promise<boolean>;
  /**
   * Stores content. `open` is called lazily (zero or more times: not at all when a mount succeeds,
   * again when an upload must restart) and must give a fresh stream of the content from byte 0.
   * Implementations must not make the content visible under a tag.
   */
  push(desc: Descriptor, open: () => Promise<Readable>, opts?: FetchOptions): Promise<PushOutcome>;
  /**
   * Points `reference` (a tag, or a full reference name for a bundle) at a manifest already pushed,
   * or (with tagStoresManifest) at one whose children are all pushed, storing it as well.
   */
  tag(desc: Descriptor, bytes: Uint8Array, reference: string, opts?: FetchOptions): Promise<void>;
  /**
   * Optional: receive a blob as parts written at their offsets (a planned bundle, where every
   * blob's place is known). Resolves undefined when the store already holds the blob.
   */
  pushParts?(desc: Descriptor, opts?: FetchOptions): Promise<BlobParts | undefined>;
  /** Optional: the digest `reference` (a tag) points at now, undefined when it names nothing. */
  taggedAs?(reference: string, opts?: FetchOptions): Promise<string | undefined>;
}
