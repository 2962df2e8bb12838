import { Readable } from 'node:stream';
import { AirgapError, isAirgapError } from '../errors.js';
import type { Descriptor } from '../oci/descriptor.js';
import { MAX_MANIFEST_BYTES, parseManifest } from '../oci/manifest.js';
import { MANIFEST_ACCEPT, MediaType, bareMediaType, isSchema1 } from '../oci/mediatypes.js';
import { sha256Digest } from '../oci/verify.js';
import type { PushOutcome } from '../store.js';
import { trackUpload } from './abandon.js';
import { type Access, OriginAuth, type ScopeSet, repositoryOfPath, repositoryScope } from './auth.js';
import { type Credential, type CredentialOptions, type Credentials, resolveCredentials } from './credentials.js';
import { type RequestSubject, RegistryError, describe, httpError, isTemporary, networkError, registryErrorCodes } from './errors.js';
import { type HostSettings, type RetryPolicy, hopRefusal, isEndpointOf } from './policy.js';
import { type HopKind, type HttpResponse, type Method, Transport, backoffDelay, header, refusedHop, sleep } from './transport.js';
import { pushBlob } from './upload.js';
import { fetchFromUrls, shownUrl } from './foreign.js';
import { readCapped } from './body.js';

/** The registry API for one registry host: manifests, blobs, tags, uploads. */

/** Answers to a manifest HEAD that mean "not this method here", not "not this manifest". */
const HEAD_REFUSED = new Set([400, 405, 501]);
const MAX_ERROR_BODY = 16 * 1024;
/** A tag list bigger than this (some 100 000 tags) is not read: the tags wanted are asked one by one. */
const MAX_TAG_LIST_BYTES = 4 * 1024 * 1024;

/**
 * What is learnt about a registry host once per process, shared by every client on the same
 * transport (a host is reached with several credentials: anonymous probe, user, license).
 */
interface HostFacts {
  /** Whether the host implements the referrers API; undefined until an answer decides it. */
  referrersApi?: boolean;
  /** The first lookup, which the others wait for (a failed one leaves the next to ask). */
  referrersDeciding?: Promise<void> | undefined;
  /** Some lookup has been answered, decisively or not. */
  referrersAnswered?: boolean;
}
const hostFactsByTransport = new WeakMap<Transport, Map<string, HostFacts>>();

function hostFacts(transport: Transport, host: string): HostFacts {
  let byHost = hostFactsByTransport.get(transport);
  if (!byHost) hostFactsByTransport.set(transport, (byHost = new Map()));
  let facts = byHost.get(host);
  if (!facts) byHost.set(host, (facts = {}));
  return facts;
}

export interface RegistryClientOptions {
  /** Registry host as written: `quay.io`, `127.0.0.1:5000`, `docker.io`. */
  host: string;
  /** Share one transport (connection pools, scheme answers) between clients. */
  transport?: Transport;
  /** TLS / plain-HTTP settings for this host (applied to the transport). */
  settings?: Omit<HostSettings, 'host'>;
  retry?: Partial<RetryPolicy>;
  /** Explicit credentials; otherwise the Docker config is consulted. */
  credentials?: Credentials;
  credentialOptions?: Omit<CredentialOptions, 'explicit'>;
  /** Never look credentials up (public/private probing, tests). */
  anonymous?: boolean;
  /**
   * PATCH chunk size for the chunked upload fall-back (default 5 MiB: ECR, like S3 multipart,
   * refuses smaller chunks but the last); a larger OCI-Chunk-Min-Length from the registry wins.
   */
  chunkSize?: number;
}

export interface ManifestResult {
  descriptor: Descriptor;
  bytes: Uint8Array;
  contentType: string;
}

export type { Access } from './auth.js';

export interface RegistryRequest {
  method: Method;
  /** `/v2/...` path or an absolute URL (upload Location). */
  url: string | URL;
  repo: string;
  access: Access;
  /** Extra repositories this request reads from (a mount's source). */
  alsoPull?: string[];
  what: string;
  headers?: Record<string, string>;
  body?: Uint8Array | Readable;
  signal?: AbortSignal;
  retry?: boolean;
  anonymous?: boolean;
  /** See HttpRequest.headersTimeoutMs (the request that completes an upload). */
  headersTimeoutMs?: number;
  /** What gave an absolute `url` (for the message when it is refused); default an upload Location. */
  urlFrom?: HopKind;
}

/** Where a request goes, with whose auth, for which repository there and which scopes. */
interface Attempt {
  auth: OriginAuth;
  url: string | URL;
  repo: string | undefined;
  scopes: ScopeSet;
}

/** What an anonymous or authenticated read check of a manifest found. */
export type ProbeResult = 'readable' | 'unauthorized' | 'not-found';

export interface CallOptions {
  signal?: AbortSignal;
}

export class RegistryClient {
  readonly host: string;
  readonly chunkSize: number;
  readonly #transport: Transport;
  readonly #ownsTransport: boolean;
  readonly #credentialOptions: Omit<CredentialOptions, 'explicit'>;
  readonly #anonymous: boolean;
  /** Auth per origin reached (see auth.ts); `anon\n<origin>` for the anonymous probe's. */
  readonly #auths = new Map<string, OriginAuth>();
  readonly #credential: (repository: string | undefined) => Promise<Credential | undefined>;
  /** digest → repositories of this registry known to hold the blob (mount sources). */
  readonly #known = new Map<string, Set<string>>();
  /**
   * Whether Range is answered with 206, per repository: a proxy or pull-through cache may serve
   * ranges for one upstream and not another.
   */
  readonly #ranges = new Map<string, Promise<boolean>>();
  /** Per repository: its tags in one answer, or undefined where the registry will not list them so (tagSet). */
  readonly #tagSets = new Map<string, Promise<ReadonlySet<string> | undefined>>();
  readonly #hasCredential = new Map<string, Promise<boolean>>();

  constructor(opts: RegistryClientOptions) {
    this.host = opts.host;
    this.chunkSize = opts.chunkSize ?? 5 * 1024 * 1024;
    this.#ownsTransport = opts.transport === undefined;
    this.#transport = opts.transport ?? new Transport(opts.retry ? { retry: opts.retry } : {});
    if (opts.settings) this.#transport.configure({ host: opts.host, ...opts.settings });
    else this.#transport.settings(opts.host); // validates the host
    const explicit = opts.credentials;
    this.#credentialOptions = opts.credentialOptions ?? {};
    this.#anonymous = opts.anonymous ?? false;
    this.#credential = (repository) => resolveCredentials(opts.host, {
      ...this.#credentialOptions, ...(explicit ? { explicit } : {}), ...(repository !== undefined ? { repository } : {}),
    });
  }

  /**
   * The auth state of the origin a URL reaches. This registry's own endpoint uses this client's
   * credential; any other origin (a registry this one redirects to) gets the credential stored
   * for ITS host, if any, never this registry's.
   */
  /**
   * Tracks an open upload session of `repo` (abandon.ts) so that an interrupt gives it back with a
   * DELETE, carrying the Authorization and trust this client would use for it. Returns the untrack.
   */
  async trackSession(url: URL, repo: string, signal?: AbortSignal): Promise<() => void> {
    const subject: RequestSubject = { method: 'DELETE', host: this.host, what: `cancel upload to ${repo}` };
    const base = await this.#transport.baseUrl(this.host, subject, signal);
    const authorization = await this.#authFor(url, false, base).authorization([repositoryScope(repo, 'push')], repo, subject, signal)
      .catch(() => undefined);
    const proxy = this.#transport.policy.route(url.protocol, url.host).proxy;
    return trackUpload({ url: url.href, ...(authorization ? { authorization } : {}), ...this.#transport.trustFor(this.host, url), ...(proxy ? { proxy } : {}) });
  }

  #authFor(url: URL, anonymous: boolean, base: URL): OriginAuth {
    // Whole origins (scheme, host, port; a default port as if not written): plain HTTP on the
    // registry's own host and port is another origin, and gets none of its credentials.
    const own = url.origin === base.origin;
    const key = `${anonymous || this.#anonymous ? 'anon' : 'cred'}\n${own ? 'own' : url.origin}`;
    let auth = this.#auths.get(key);
    if (!auth) {
      const none = (): Promise<undefined> => Promise.resolve(undefined);
      const credential = anonymous || this.#anonymous ? none
        : own ? this.#credential
          : (repository: string | undefined) => resolveCredentials(url.host, { ...this.#credentialOptions, ...(repository !== undefined ? { repository } : {}) });
      auth = new OriginAuth(this.#transport, this.host, credential);
      this.#auths.set(key, auth);
    }
    return auth;
  }

  get retryPolicy(): RetryPolicy {
    return this.#transport.retryPolicy;
  }

  async close(): Promise<void> {
    if (this.#ownsTransport) await this.#transport.close();
  }

  async getManifest(repo: string, ref: string, opts: CallOptions = {}): Promise<ManifestResult> {
    const what = `manifest ${refName(repo, ref)}`;
    const res = await this.request({
      method: 'GET', url: `/v2/${repo}/manifests/${ref}`, repo, access: 'pull', what,
      headers: { accept: MANIFEST_ACCEPT }, ...sig(opts),
    });
    if (res.status !== 200) return this.fail(res, 'GET', what);
    return this.#readManifest(res, ref, what);
  }

  /** A manifest GET's 200 body: size-capped, parsed, and hashed (a by-digest reference must match). */
  async #readManifest(res: HttpResponse, ref: string, what: string): Promise<ManifestResult> {
    const bytes = await readCapped(res, MAX_MANIFEST_BYTES, `${what} on registry ${this.host}`);
    const contentType = header(res, 'content-type') ?? '';
    const parsed = parseManifest(bytes, contentType, `${what} on registry ${this.host}`);
    const digest = sha256Digest(bytes);
    // Docker-Content-Digest is advisory; what we hashed is what counts.
    if (isDigest(ref) && digest !== ref) {
      throw new AirgapError('E_DIGEST_MISMATCH', `${what} on registry ${this.host}: content hashes to ${digest}`,
        { hint: 'the registry served a manifest that does not match the requested digest; report it to its operator' });
    }
    return { descriptor: { mediaType: parsed.mediaType, digest, size: bytes.length }, bytes, contentType };
  }

  async headManifest(repo: string, ref: string, opts: CallOptions & { access?: Access } = {}): Promise<Descriptor | undefined> {
    const what = `manifest ${refName(repo, ref)}`;
    const res = await this.request({
      method: 'HEAD', url: `/v2/${repo}/manifests/${ref}`, repo, access: opts.access ?? 'pull', what,
      headers: { accept: MANIFEST_ACCEPT }, ...sig(opts),
    });
    await res.body.dump().catch(() => undefined);
    if (res.status === 404) return undefined;
    if (res.status !== 200) return this.fail(res, 'HEAD', what);
    const digest = header(res, 'docker-content-digest') ?? (isDigest(ref) ? ref : undefined);
    const size = Number(header(res, 'content-length'));
    const mediaType = bareMediaType(header(res, 'content-type'));
    if (!digest || !Number.isSafeInteger(size) || !mediaType) {
      // A HEAD without the headers we need: a GET tells us everything.
      return (await this.getManifest(repo, ref, opts)).descriptor;
    }
    return { mediaType, digest, size };
  }

  /**
   * The blob's bytes as one stream. A download cut part-way is resumed with `Range: bytes=N-`
   * (or by skipping N bytes when the registry ignores ranges), so the consumer, which hashes the
   * stream, sees one continuous body.
   */
  async getBlob(repo: string, desc: Descriptor, opts: CallOptions = {}): Promise<Readable> {
    const first = await this.#openBlob(repo, desc, 0, desc.size, opts.signal);
    this.rememberBlob(desc.digest, repo);
    return Readable.from(this.#resumingBody(repo, desc, first, 0, desc.size, opts.signal), { objectMode: false });
  }

  /** A foreign layer's bytes from its descriptor's `urls` (foreign.ts), without this registry's credentials. */
  getBlobFromUrls(desc: Descriptor, opts: CallOptions = {}): Promise<Readable> {
    return fetchFromUrls(this.#transport, desc, this.host, opts.signal);
  }

  /**
   * Exactly bytes [start, end) of a blob, resumed like getBlob when cut. Meant for registries
   * where servesRanges() is true; one that answers 200 anyway still gives the right bytes.
   */
  async getBlobRange(repo: string, desc: Descriptor, start: number, end: number, opts: CallOptions = {}): Promise<Readable> {
    if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || end > desc.size || start >= end) {
      throw new AirgapError('E_USAGE', `blob ${repo}@${desc.digest}: range [${start}, ${end}) is not inside its ${desc.size} bytes`);
    }
    const first = await this.#openBlob(repo, desc, start, end, opts.signal);
    return Readable.from(this.#resumingBody(repo, desc, first, start, end, opts.signal), { objectMode: false });
  }

  /**
   * Whether this repository answers `Range` with 206 (asked once per repository with a one-byte
   * range of `desc`; the answer is remembered, a failure is not).
   */
  servesRanges(repo: string, desc: Descriptor, opts: CallOptions = {}): Promise<boolean> {
    let known = this.#ranges.get(repo);
    if (!known) {
      known = this.#probeRanges(repo, desc, opts.signal);
      this.#ranges.set(repo, known);
      known.catch(() => { if (this.#ranges.get(repo) === known) this.#ranges.delete(repo); });
    }
    return known;
  }

  async #probeRanges(repo: string, desc: Descriptor, signal?: AbortSignal): Promise<boolean> {
    const what = `blob ${repo}@${desc.digest}`;
    const res = await this.request({
      method: 'GET', url: `/v2/${repo}/blobs/${desc.digest}`, repo, access: 'pull', what,
      headers: { range: 'bytes=0-0' }, ...(signal ? { signal } : {}),
    });
    // A registry that ignores Range starts sending the whole blob: stop it.
    if (res.status === 200) res.body.destroy();
    else await res.body.dump().catch(() => undefined);
    if (res.status === 206) return /^bytes\s+0-0\//.test(header(res, 'content-range') ?? '');
    if (res.status === 200) return false;
    return this.fail(res, 'GET', what);
  }

  async headBlob(repo: string, digest: string, opts: CallOptions & { access?: Access } = {}): Promise<Descriptor | undefined> {
    const what = `blob ${repo}@${digest}`;
    const res = await this.request({
      method: 'HEAD', url: `/v2/${repo}/blobs/${digest}`, repo, access: opts.access ?? 'pull', what, ...sig(opts),
    });
    await res.body.dump().catch(() => undefined);
    if (res.status === 404) return undefined;
    if (res.status !== 200) return this.fail(res, 'HEAD', what);
    this.rememberBlob(digest, repo);
    const size = Number(header(res, 'content-length') ?? -1);
    return { mediaType: 'application/octet-stream', digest, size: Number.isSafeInteger(size) ? size : -1 };
  }

  /**
   * The tags of `repo`, page by page (`Link: rel=next`), stopping once `max` are known. Each page
   * is size-capped, and so is the number of pages; a page that links back to one already read is
   * an error, not a loop.
   */
  async listTags(repo: string, opts: CallOptions & { max?: number } = {}): Promise<string[]> {
    const what = `tags of ${repo}`;
    const tags: string[] = [];
    const pages = new Pages(`GET ${what} on registry ${this.host}`);
    let url: string | URL | undefined = `/v2/${repo}/tags/list?n=1000`;
    while (url !== undefined && tags.length < (opts.max ?? Infinity)) {
      const res = await this.request({ method: 'GET', url, repo, access: 'pull', what, urlFrom: 'next-page Link', ...sig(opts) });
      if (res.status !== 200) return this.fail(res, 'GET', what);
      let body: { tags?: unknown };
      try {
        body = JSON.parse((await readCapped(res, MAX_TAG_LIST_BYTES, `${what} on registry ${this.host}: a page`)).toString()) as typeof body;
      } catch (e) {
        if (e instanceof SyntaxError) throw new RegistryError('E_REGISTRY', `GET ${what} on registry ${this.host}: a page is not JSON`);
        throw e;
      }
      if (Array.isArray(body.tags)) for (const t of body.tags) if (typeof t === 'string') tags.push(t);
      url = pages.next(res);
    }
    return opts.max !== undefined ? tags.slice(0, opts.max) : tags;
  }

  /**
   * Every tag of `repo` in one answer, asked once per repository (concurrent callers share the
   * request), or undefined when the registry will not give it that way: any status but 200 (ECR
   * without ecr:ListImages answers 403), a paginated answer (a `Link` header: a repository with
   * thousands of tags is not paged through), a body over 4 MiB or not a tag list. The caller then
   * asks about each tag it wants on its own. A snapshot: for reading only, never after writing tags.
   */
  tagSet(repo: string, opts: CallOptions = {}): Promise<ReadonlySet<string> | undefined> {
    let known = this.#tagSets.get(repo);
    if (!known) {
      known = this.#listTagsOnce(repo, opts.signal);
      this.#tagSets.set(repo, known);
      // An interrupted listing is not an answer: the next caller asks again.
      known.catch(() => { if (this.#tagSets.get(repo) === known) this.#tagSets.delete(repo); });
    }
    return known;
  }

  async #listTagsOnce(repo: string, signal?: AbortSignal): Promise<ReadonlySet<string> | undefined> {
    const what = `tags of ${repo}`;
    let res: HttpResponse;
    try {
      res = await this.request({ method: 'GET', url: `/v2/${repo}/tags/list`, repo, access: 'pull', what, ...(signal ? { signal } : {}) });
    } catch (e) {
      if (signal?.aborted || isAirgapError(e, 'E_INTERRUPTED')) throw e;
      return undefined; // refused (E_AUTH) or unreachable: the per-tag requests say what is wrong, if anything
    }
    if (res.status !== 200 || header(res, 'link') !== undefined) {
      await res.body.dump().catch(() => undefined);
      return undefined;
    }
    try {
      const body = JSON.parse((await readCapped(res, MAX_TAG_LIST_BYTES, what)).toString('utf8')) as { tags?: unknown };
      // `null` is distribution's answer for a repository whose tags were all deleted.
      if (body.tags === null) return new Set();
      if (!Array.isArray(body.tags) || !body.tags.every((t) => typeof t === 'string')) return undefined;
      return new Set(body.tags as string[]);
    } catch (e) {
      if (signal?.aborted) throw e;
      return undefined;
    }
  }

  async putManifest(repo: string, ref: string, bytes: Uint8Array, mediaType: string, opts: CallOptions = {}): Promise<Descriptor> {
    const what = `manifest ${refName(repo, ref)}`;
    const res = await this.request({
      method: 'PUT', url: `/v2/${repo}/manifests/${ref}`, repo, access: 'push', what,
      headers: { 'content-type': mediaType }, body: bytes, ...sig(opts),
    });
    if (res.status < 200 || res.status > 299) return this.fail(res, 'PUT', what);
    await res.body.dump().catch(() => undefined);
    const digest = sha256Digest(bytes);
    // The registry says what it stored. A proxy or policy that rewrote the manifest would leave the
    // reference naming other content than ours (a schema 1 manifest's digest leaves its signatures out).
    const stored = header(res, 'docker-content-digest')?.trim();
    // Registries answer 201 (the distribution spec), with the digest; a 200 without one is a web
    // page (a login portal, a proxy) that took the PUT for a form: nothing was stored.
    if (res.status !== 201 && !stored) {
      throw new RegistryError('E_REGISTRY', `PUT ${what} on registry ${this.host}: HTTP ${res.status} without a Docker-Content-Digest, not a registry's answer to a manifest upload`,
        { status: res.status, hint: 'check that the address is the registry itself, not a web page or a proxy in front of it' });
    }
    if (stored && stored !== digest && !isSchema1(bareMediaType(mediaType))) {
      throw new AirgapError('E_DIGEST_MISMATCH',
        `PUT ${what} on registry ${this.host}: the registry answered that it stored ${stored}, but the manifest sent is ${digest}`,
        { hint: `the registry (or a proxy in front of it) changed the manifest, so ${refName(repo, ref)} may now name other content than the bundle's; check what rewrites manifests there, then push again` });
    }
    return { mediaType, digest, size: bytes.length };
  }

  /**
   * OCI 1.1 referrers API: the descriptors of manifests whose `subject` is `digest`, or undefined
   * when the registry does not implement the API (the caller falls back to the `sha256-<hex>` tag).
   * Paged results (a `Link` header) are followed.
   *
   * Whether the host has the API is learnt once per process and host: a registry with it answers
   * 200 for any digest of a repository it knows (OCI distribution spec, "Listing Referrers"), so a
   * 404 (distribution 2.x: "404 page not found"), 405 or 501 means no API and the host is not
   * asked again. The first lookup on a host decides; concurrent ones wait for it. Not decisive,
   * and so not remembered: a 404 carrying the registry's NAME_UNKNOWN or MANIFEST_UNKNOWN (the
   * spec only promises 200 "assuming a repository is found", and some registries with the API
   * answer so for a subject they do not hold), 400, 401 and 403 (a refusal for this repository);
   * that lookup falls back to the tag and the next one asks again.
   */
  async getReferrers(repo: string, digest: string, opts: CallOptions = {}): Promise<Descriptor[] | undefined> {
    const known = hostFacts(this.#transport, this.host);
    const ask = async (): Promise<Descriptor[] | undefined> => {
      const answer = await this.#askReferrers(repo, digest, opts);
      known.referrersAnswered = true;
      if (answer.api !== undefined && known.referrersApi === undefined) known.referrersApi = answer.api;
      return answer.list;
    };
    for (;;) {
      if (known.referrersApi === false) return undefined;
      // Decided, or the first answer was not decisive (then lookups go on at once, not in a queue).
      if (known.referrersApi === true || known.referrersAnswered) return ask();
      if (known.referrersDeciding) {
        await known.referrersDeciding;
        continue;
      }
      let decided!: () => void;
      known.referrersDeciding = new Promise<void>((resolve) => { decided = resolve; });
      try {
        return await ask();
      } finally {
        known.referrersDeciding = undefined;
        decided();
      }
    }
  }

  async #askReferrers(repo: string, digest: string, opts: CallOptions): Promise<{ list: Descriptor[] | undefined; api?: boolean }> {
    const what = `referrers of ${repo}@${digest}`;
    const out: Descriptor[] = [];
    const pages = new Pages(`GET ${what} on registry ${this.host}`);
    let url: string | URL | undefined = `/v2/${repo}/referrers/${digest}`;
    for (let page = 0; url !== undefined; page++) {
      const res = await this.request({
        method: 'GET', url, repo, access: 'pull', what, headers: { accept: MediaType.OciIndex }, urlFrom: 'next-page Link', ...sig(opts),
      });
      if (res.status !== 200) {
        if (page === 0 && [404, 405, 501].includes(res.status)) {
          const body = await readCapped(res, MAX_ERROR_BODY, what, true).catch(() => Buffer.alloc(0));
          const codes = registryErrorCodes(body.toString('utf8'));
          if (res.status === 404 && (codes.includes('NAME_UNKNOWN') || codes.includes('MANIFEST_UNKNOWN'))) return { list: undefined };
          return { list: undefined, api: false };
        }
        // A proxy or an auth rule may refuse it for this repository only.
        if (page === 0 && [400, 401, 403].includes(res.status)) {
          await res.body.dump().catch(() => undefined);
          return { list: undefined };
        }
        return this.fail(res, 'GET', what);
      }
      const bytes = await readCapped(res, MAX_MANIFEST_BYTES, `${what} on registry ${this.host}`);
      const parsed = parseManifest(bytes, MediaType.OciIndex, `${what} on registry ${this.host}`);
      if (parsed.kind !== 'index') {
        throw new AirgapError('E_UNSUPPORTED', `${what} on registry ${this.host}: the answer is not an image index`);
      }
      out.push(...parsed.manifests);
      url = pages.next(res);
    }
    return { list: out, api: true };
  }

  /** Mount (from one of `mountFrom`, no HEAD first) or HEAD → monolithic PUT → chunked PATCH (upload.ts). */
  pushBlob(repo: string, desc: Descriptor, open: () => Promise<Readable>,
    opts: CallOptions & { mountFrom?: string[] } = {}): Promise<PushOutcome> {
    return pushBlob(this, repo, desc, open, opts);
  }

  /**
   * Anonymous read check for the public/private decision: a HEAD, which hosted registries do not
   * count against pull quotas (Docker Hub counts manifest GETs); a GET only where HEAD is refused.
   */
  async probe(repo: string, ref: string, opts: CallOptions = {}): Promise<ProbeResult> {
    return (await this.#probe(repo, ref, 'HEAD', opts)).result;
  }

  /**
   * The same check as a GET whose manifest, when readable, is kept (size-capped, parsed, and for
   * a by-digest reference verified against it): `build` reads it anyway, so it is not asked twice.
   */
  probeManifest(repo: string, ref: string, opts: CallOptions = {}): Promise<{ result: ProbeResult; manifest?: ManifestResult }> {
    return this.#probe(repo, ref, 'GET', opts);
  }

  async #probe(repo: string, ref: string, first: 'HEAD' | 'GET', opts: CallOptions): Promise<{ result: ProbeResult; manifest?: ManifestResult }> {
    const what = `manifest ${refName(repo, ref)}`;
    const ask = async (method: 'HEAD' | 'GET'): Promise<HttpResponse | 'unauthorized'> => {
      try {
        return await this.request({
          method, url: `/v2/${repo}/manifests/${ref}`, repo, access: 'pull', what, anonymous: true,
          headers: { accept: MANIFEST_ACCEPT }, ...sig(opts),
        });
      } catch (e) {
        if (e instanceof AirgapError && e.code === 'E_AUTH') return 'unauthorized';
        throw e;
      }
    };
    let method: 'HEAD' | 'GET' = first;
    let res = await ask(method);
    if (res !== 'unauthorized' && method === 'HEAD' && HEAD_REFUSED.has(res.status)) {
      await res.body.dump().catch(() => undefined);
      method = 'GET';
      res = await ask(method);
    }
    if (res === 'unauthorized') return { result: 'unauthorized' };
    if (res.status === 200) {
      if (first === 'GET') return { result: 'readable', manifest: await this.#readManifest(res, ref, what) };
      await res.body.dump().catch(() => undefined);
      return { result: 'readable' };
    }
    if (res.status === 401 || res.status === 403) {
      await res.body.dump().catch(() => undefined);
      return { result: 'unauthorized' };
    }
    if (res.status === 404) {
      await res.body.dump().catch(() => undefined);
      return { result: 'not-found' };
    }
    return this.fail(res, method, what);
  }

  /** Whether requests for `repository` carry a credential (flags, license, Docker config), looked up once. */
  hasCredential(repository: string): Promise<boolean> {
    if (this.#anonymous) return Promise.resolve(false);
    let known = this.#hasCredential.get(repository);
    if (!known) {
      // A lookup that fails (a broken helper) counts as one: the authenticated request will say why.
      known = this.#credential(repository).then((c) => c !== undefined, () => true);
      this.#hasCredential.set(repository, known);
    }
    return known;
  }

  rememberBlob(digest: string, repo: string): void {
    let repos = this.#known.get(digest);
    if (!repos) this.#known.set(digest, (repos = new Set()));
    repos.add(repo);
  }

  knownRepositories(digest: string): string[] {
    return [...(this.#known.get(digest) ?? [])];
  }

  /**
   * One authenticated request (the flow drawn in auth.ts): Authorization for the origin it goes
   * to and the scopes it needs; on a 401, the origin that answered (this registry, or one it
   * redirected to) learns its challenge and the request goes once more, straight to that origin.
   */
  async request(r: RegistryRequest): Promise<HttpResponse> {
    const subject: RequestSubject = { method: r.method, host: this.host, what: r.what };
    const anonymous = r.anonymous ?? false;
    const scopes = [repositoryScope(r.repo, r.access), ...(r.alsoPull ?? []).map((p) => repositoryScope(p, 'pull'))];
    const target = typeof r.url === 'string' && r.url.startsWith('/') ? undefined : new URL(r.url);
    const base = await this.#transport.baseUrl(this.host, subject, r.signal);
    // An absolute URL is one the registry gave (upload Location, next-page Link): checked as a redirect is.
    const refusal = target && hopRefusal(base, target);
    if (target && refusal !== undefined) throw refusedHop(subject, r.urlFrom ?? 'upload Location', target, refusal);
    const auth = this.#authFor(target ?? base, anonymous, base);
    const send = (url: string | URL, authorization: string | undefined): Promise<HttpResponse> => this.#transport.send({
      method: r.method, host: this.host, url, subject,
      headers: { ...r.headers, ...(authorization ? { authorization } : {}) },
      ...(r.body !== undefined ? { body: r.body } : {}),
      ...(r.signal ? { signal: r.signal } : {}),
      ...(r.retry === false ? { retry: false } : {}),
      ...(r.headersTimeoutMs !== undefined ? { headersTimeoutMs: r.headersTimeoutMs } : {}),
    });
    // The first request to an origin goes alone; the others wait until it has learned the challenge.
    const firstContactDone = await auth.firstContact();
    let res: HttpResponse;
    let again: Attempt | undefined;
    try {
      const authorization = await auth.authorization(scopes, r.repo, subject, r.signal);
      res = await send(r.url, authorization);
      again = await this.#challenged(res, { auth, url: r.url, repo: r.repo, scopes }, r, authorization, base);
    } finally {
      firstContactDone?.();
    }
    // Each origin's challenge is answered at most once per request: this registry's, then maybe
    // that of a registry it redirects to once it has let us in.
    const answered = new Set<OriginAuth>();
    while (again && !answered.has(again.auth)) {
      // A stream body is spent: the caller (uploads) restarts with a fresh one.
      if (r.body !== undefined && !(r.body instanceof Uint8Array)) return res;
      answered.add(again.auth);
      await res.body.dump().catch(() => undefined);
      const authorization = await again.auth.authorization(again.scopes, again.repo, subject, r.signal);
      res = await send(again.url, authorization);
      again = await this.#challenged(res, again, r, authorization, base);
    }
    return res;
  }

  /**
   * After a 401: whose challenge it is (this registry's, or a redirect target's), and whether
   * sending again, to that origin, with fresh authorization can help.
   */
  async #challenged(res: HttpResponse, sent: Attempt, r: RegistryRequest, authorization: string | undefined,
    base: URL): Promise<Attempt | undefined> {
    if (res.status !== 401) return undefined;
    const challenger = this.#authFor(res.url, r.anonymous ?? false, base);
    if (challenger === sent.auth) return await sent.auth.unauthorized(res, sent.scopes, sent.repo, authorization) ? sent : undefined;
    // A redirect target that challenges: its own scopes (from its URL), its own credential.
    const repo = repositoryOfPath(res.url.pathname);
    const theirs = repo !== undefined ? [repositoryScope(repo, r.access)] : [];
    return await challenger.unauthorized(res, theirs, repo, undefined) ? { auth: challenger, url: res.url, repo, scopes: theirs } : undefined;
  }

  /** Reads the error body and throws the typed error for it. */
  async fail(res: HttpResponse, method: string, what: string): Promise<never> {
    let text = '';
    if (method !== 'HEAD') {
      try {
        text = (await readCapped(res, MAX_ERROR_BODY, what, true)).toString('utf8');
      } catch {
        text = '';
      }
    } else {
      await res.body.dump().catch(() => undefined);
    }
    const subject = { method, host: this.host, what };
    const err = httpError(subject, res.status, text, header(res, 'content-type'));
    if (err.code !== 'E_AUTH' || isEndpointOf(this.host, res.url)) throw err;
    // Another origin refused (storage, a CDN, a gateway the registry redirected to): the
    // credentials for this registry never went there, so they are not what it refused.
    throw new RegistryError('E_REGISTRY', `${describe(subject)}: HTTP ${res.status} from ${res.url.host}, where the registry redirected the request`, {
      status: res.status, ...(err.registryCode ? { registryCode: err.registryCode } : {}),
      hint: `credentials for ${this.host} are never sent to ${res.url.host}; it refused the redirected request on its own terms (a signed URL that expired, a storage policy, or credentials of its own): report it to the registry's operator`,
    });
  }

  async #openBlob(repo: string, desc: Descriptor, offset: number, end: number, signal?: AbortSignal): Promise<Readable> {
    const what = `blob ${repo}@${desc.digest}`;
    const ranged = offset > 0 || end < desc.size;
    const res = await this.request({
      method: 'GET', url: `/v2/${repo}/blobs/${desc.digest}`, repo, access: 'pull', what,
      ...(ranged ? { headers: { range: `bytes=${offset}-${end < desc.size ? end - 1 : ''}` } } : {}),
      ...(signal ? { signal } : {}),
    });
    if (ranged && res.status === 206) {
      const start = /bytes\s+(\d+)-/.exec(header(res, 'content-range') ?? '');
      if (start && Number(start[1]) === offset) return res.body;
      await res.body.dump().catch(() => undefined);
      throw new RegistryError('E_REGISTRY', `GET ${what} on registry ${this.host}: resumed download answered the wrong range`,
        { temporary: true, hint: 'the registry or a proxy mangles Range requests; retry' });
    }
    if (res.status === 200) return offset > 0 ? Readable.from(skipBytes(res.body, offset), { objectMode: false }) : res.body;
    return this.fail(res, 'GET', what);
  }

  /** The bytes [start, end) as one stream: a cut is resumed from where it stopped. */
  async *#resumingBody(repo: string, desc: Descriptor, first: Readable, start: number, end: number,
    signal?: AbortSignal): AsyncGenerator<Buffer> {
    let body = first;
    let offset = start;
    let failures = 0;
    let offsetAtFailure = -1;
    const subject: RequestSubject = { method: 'GET', host: this.host, what: `blob ${repo}@${desc.digest}` };
    try {
      for (;;) {
        try {
          for await (const raw of body as AsyncIterable<Buffer>) {
            // A registry that ignored the range sends past `end`: keep only what was asked for.
            const chunk = offset + raw.length > end && end < desc.size ? raw.subarray(0, end - offset) : raw;
            offset += chunk.length;
            if (chunk.length > 0) yield chunk;
            if (offset >= end && end < desc.size) return;
          }
          // A body that ended early without an error (no Content-Length) is resumed too.
          if (offset >= end) return;
          throw Object.assign(new Error(`body ended after ${offset - start} of ${end - start} bytes`), { code: 'ERR_STREAM_PREMATURE_CLOSE' });
        } catch (e) {
          if (signal?.aborted) throw signal.reason ?? e;
          if (!isTemporary(e)) throw e;
          // Progress since the last cut resets the budget: a long download may be cut many times.
          failures = offset > offsetAtFailure ? 1 : failures + 1;
          offsetAtFailure = offset;
          if (failures >= this.retryPolicy.attempts) throw e instanceof AirgapError ? e : networkError(subject, e);
          body.destroy();
          await sleep(backoffDelay(this.retryPolicy, failures), signal);
          body = await this.#openBlob(repo, desc, offset, end, signal);
        }
      }
    } finally {
      body.destroy();
    }
  }
}

async function* skipBytes(body: AsyncIterable<Buffer>, n: number): AsyncGenerator<Buffer> {
  let left = n;
  for await (const chunk of body) {
    if (left >= chunk.length) {
      left -= chunk.length;
      continue;
    }
    yield left > 0 ? chunk.subarray(left) : chunk;
    left = 0;
  }
}

/** More pages than a registry of any size sends (100 000 tags at 1000 a page). */
export const MAX_PAGES = 100;

/**
 * The `Link: <url>; rel="next"` of paged answers: each page may name the next, at most MAX_PAGES
 * pages, and a link back to a page already read is an error (a registry that paginates forever).
 */
class Pages {
  readonly #what: string;
  readonly #seen = new Set<string>();

  constructor(what: string) {
    this.#what = what;
  }

  /** The next page's URL, or undefined after the last page. */
  next(res: HttpResponse): URL | undefined {
    this.#seen.add(res.url.href);
    const link = /<([^>]+)>\s*;\s*rel="?next"?/.exec(header(res, 'link') ?? '');
    if (!link) return undefined;
    const url = new URL(link[1]!, res.url);
    const hint = 'the registry paginates without end; report it to its operator';
    if (this.#seen.has(url.href)) {
      throw new RegistryError('E_REGISTRY', `${this.#what}: page ${this.#seen.size} links back to a page already read (${shownUrl(url)})`, { hint });
    }
    if (this.#seen.size >= MAX_PAGES) {
      throw new RegistryError('E_REGISTRY', `${this.#what}: more than ${MAX_PAGES} pages`, { hint });
    }
    return url;
  }
}

function isDigest(ref: string): boolean {
  return /^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/.test(ref);
}

function refName(repo: string, ref: string): string {
  return isDigest(ref) ? `${repo}@${ref}` : `${repo}:${ref}`;
}

function sig(opts: CallOptions): { signal?: AbortSignal } {
  return opts.signal ? { signal: opts.signal } : {};
}
