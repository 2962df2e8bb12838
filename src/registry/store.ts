import { Readable } from 'node:stream';
import { AirgapError, isAirgapError } from '../errors.js';
import { MAX_MANIFEST_BYTES, childrenOf, isForeignLayer, parseManifest } from '../oci/manifest.js';
import type { Descriptor } from '../oci/descriptor.js';
import { isIndexType, isManifestType, isSchema1 } from '../oci/mediatypes.js';
import { verifyBytes } from '../oci/verify.js';
import type { FetchOptions, PushOutcome, Resolved, SourceStore, TargetStore } from '../store.js';
import type { ProbeResult, RegistryClient } from './client.js';
import { RegistryError } from './errors.js';
import { backoffDelay, sleep } from './transport.js';

/** PUTs of one manifest while a HEAD finds every blob it names (see #putManifest). */
const LINK_RACE_ATTEMPTS = 4;

/**
 * One repository of one registry as a content store, both source and target. The repository
 * path is taken as given: behind the vendor proxy it carries another registry's `host:port`
 * (`proxy/my-app/127.0.0.1:5001/org/api`), which the reference grammar would refuse.
 */
export class RegistryStore implements SourceStore, TargetStore {
  readonly label: string;
  readonly client: RegistryClient;
  readonly repository: string;
  /**
   * push() of a blob finds one already here itself (a HEAD, or a mount that moves no byte:
   * upload.ts); a manifest is PUT without asking first (see push()).
   */
  readonly pushFindsExisting = true;
  /** tag() is a PUT of the whole manifest by tag: a tagged root needs no push() by digest first. */
  readonly tagStoresManifest = true;

  constructor(client: RegistryClient, repository: string) {
    if (repository === '' || /[\s?#]/.test(repository) || repository.startsWith('/') || repository.endsWith('/')) {
      throw new AirgapError('E_REFERENCE', `"${repository}" is not a repository path on registry ${client.host}`);
    }
    this.client = client;
    this.repository = repository;
    this.label = `registry ${client.host}/${repository}`;
  }

  async resolve(reference: string, opts: FetchOptions = {}): Promise<Resolved> {
    const { descriptor, bytes } = await this.client.getManifest(this.repository, reference, opts);
    return { descriptor, bytes };
  }

  async fetch(desc: Descriptor, opts: FetchOptions = {}): Promise<Readable> {
    if (isManifestMediaType(desc.mediaType)) {
      const { bytes } = await this.client.getManifest(this.repository, desc.digest, opts);
      return Readable.from([Buffer.from(bytes)], { objectMode: false });
    }
    try {
      return await this.client.getBlob(this.repository, desc, opts);
    } catch (e) {
      // A foreign layer usually lives only at its URLs (a Windows base layer at its vendor's).
      if (!isAirgapError(e, 'E_NOT_FOUND') || !isForeignLayer(desc) || (desc.urls?.length ?? 0) === 0) throw e;
      return this.client.getBlobFromUrls(desc, opts);
    }
  }

  /** Blobs only: manifests are small and always fetched whole. */
  async servesRanges(desc: Descriptor, opts: FetchOptions = {}): Promise<boolean> {
    // A foreign layer may come from its URLs rather than this registry: one plain stream.
    if (isManifestMediaType(desc.mediaType) || isForeignLayer(desc)) return false;
    return this.client.servesRanges(this.repository, desc, opts);
  }

  async fetchRange(desc: Descriptor, start: number, end: number, opts: FetchOptions = {}): Promise<Readable> {
    const body = await this.client.getBlobRange(this.repository, desc, start, end, opts);
    this.client.rememberBlob(desc.digest, this.repository);
    return body;
  }

  async exists(desc: Descriptor, opts: FetchOptions = {}): Promise<boolean> {
    const call = { access: 'push' as const, ...(opts.signal ? { signal: opts.signal } : {}) };
    if (isManifestMediaType(desc.mediaType)) {
      return (await this.client.headManifest(this.repository, desc.digest, call)) !== undefined;
    }
    return (await this.client.headBlob(this.repository, desc.digest, call)) !== undefined;
  }

  async push(desc: Descriptor, open: () => Promise<Readable>, opts: FetchOptions = {}): Promise<PushOutcome> {
    if (!isManifestMediaType(desc.mediaType)) {
      // Mount from a repository of this registry where the blob is known to be (pushed, seen, fetched).
      const mountFrom = this.client.knownRepositories(desc.digest).filter((r) => r !== this.repository);
      return this.client.pushBlob(this.repository, desc, open, { ...opts, mountFrom });
    }
    // No HEAD first: a manifest is small, and a PUT of one the registry holds already is harmless
    // (the same content under the same digest) and costs the one request the HEAD would have.
    const bytes = await readManifest(await open(), desc, this.label);
    verifyBytes(bytes, desc, `manifest ${desc.digest} for ${this.label}`);
    // By digest: pushing must not make the content visible under a tag.
    await this.#putManifest(desc.digest, bytes, desc.mediaType, opts);
    return 'uploaded';
  }

  async taggedAs(reference: string, opts: FetchOptions = {}): Promise<string | undefined> {
    return (await this.client.headManifest(this.repository, reference, { access: 'push', ...(opts.signal ? { signal: opts.signal } : {}) }))?.digest;
  }

  /** Stores the manifest under `reference`; fails E_DIGEST_MISMATCH when the registry says it stored other content. */
  async tag(desc: Descriptor, bytes: Uint8Array, reference: string, opts: FetchOptions = {}): Promise<void> {
    verifyBytes(bytes, desc, `manifest ${desc.digest} for ${this.label}`);
    await this.#putManifest(reference, bytes, desc.mediaType, opts);
  }

  /**
   * A manifest PUT, once more when the registry says it lacks a blob the manifest names but a HEAD
   * finds every one of them: distribution rewrites a repository's link to a blob each time the blob
   * is uploaded there (truncated, then written), so while another client pushes the same blob into
   * the same repository a manifest can be refused for a blob that is there (MANIFEST_BLOB_UNKNOWN,
   * after a DIGEST_INVALID for the empty link it read).
   * A blob the HEAD does not find leaves the error as it was: the manifest is not stored without it.
   */
  async #putManifest(reference: string, bytes: Uint8Array, mediaType: string, opts: FetchOptions): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await this.client.putManifest(this.repository, reference, bytes, mediaType, opts);
        return;
      } catch (e) {
        if (attempt >= LINK_RACE_ATTEMPTS || !(e instanceof RegistryError) || !e.registryCodes.includes('MANIFEST_BLOB_UNKNOWN') ||
          !(await this.#holdsEveryChild(bytes, mediaType, opts))) throw explainForeignUrls(e, bytes, mediaType);
        await sleep(backoffDelay(this.client.retryPolicy, attempt), opts.signal);
      }
    }
  }

  async #holdsEveryChild(bytes: Uint8Array, mediaType: string, opts: FetchOptions): Promise<boolean> {
    let children: Descriptor[];
    try {
      children = childrenOf(parseManifest(bytes, mediaType)).filter((d) => !isForeignLayer(d));
    } catch {
      return false;
    }
    const held = await Promise.all(children.map((d) => this.exists(d, opts).catch(() => false)));
    return held.every(Boolean);
  }

  /** The manifest a tag names now (a HEAD: free of pull quotas), undefined when it names nothing. */
  async peek(tag: string, opts: FetchOptions = {}): Promise<Descriptor | undefined> {
    return this.client.headManifest(this.repository, tag, opts.signal ? { signal: opts.signal } : {});
  }

  /** Every tag of the repository in one answer (asked once), undefined where the registry will not list them so. */
  tags(opts: FetchOptions = {}): Promise<ReadonlySet<string> | undefined> {
    return this.client.tagSet(this.repository, opts);
  }

  /** OCI 1.1 referrers of a digest, or undefined when the registry has no referrers API. */
  async referrers(digest: string, opts: FetchOptions = {}): Promise<Descriptor[] | undefined> {
    return this.client.getReferrers(this.repository, digest, opts);
  }

  /** Anonymous read check for the public/private decision. */
  probe(reference: string, opts: FetchOptions = {}): Promise<ProbeResult> {
    return this.client.probe(this.repository, reference, opts);
  }
}

/**
 * A `distribution` registry refuses (HTTP 400 or 500) a manifest whose foreign layers name URLs
 * unless its configuration allows them: say so, since its own answer does not.
 */
function explainForeignUrls(e: unknown, bytes: Uint8Array, mediaType: string): unknown {
  if (!isAirgapError(e, 'E_REGISTRY') || e.hint?.includes('foreign') || !isManifestType(mediaType)) return e;
  let foreign = false;
  try {
    const m = parseManifest(bytes, mediaType);
    foreign = m.kind === 'manifest' && m.layers.some((l) => isForeignLayer(l) && (l.urls?.length ?? 0) > 0);
  } catch {
    return e;
  }
  if (!foreign) return e;
  return new AirgapError(e.code, `${e.message}; the manifest has foreign layers that name URLs`, {
    hint: 'the registry may refuse manifests naming foreign layer URLs: allow them in its configuration (distribution: validation.manifests.urls.allow), or push an image built without them',
    cause: e,
  });
}

export function isManifestMediaType(mediaType: string): boolean {
  return isIndexType(mediaType) || isManifestType(mediaType) || isSchema1(mediaType) ||
    /\.(manifest|index)\.v\d+\+json$/.test(mediaType);
}

async function readManifest(stream: Readable, desc: Descriptor, label: string): Promise<Buffer> {
  if (desc.size > MAX_MANIFEST_BYTES) {
    stream.destroy();
    throw new AirgapError('E_UNSUPPORTED', `manifest ${desc.digest} for ${label} is ${desc.size} bytes, more than the ${MAX_MANIFEST_BYTES}-byte limit`);
  }
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of stream as AsyncIterable<Buffer | string>) {
    const buf = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    total += buf.length;
    if (total > desc.size) {
      stream.destroy();
      break; // verifyBytes reports the size mismatch
    }
    chunks.push(buf);
  }
  return Buffer.concat(chunks);
}
