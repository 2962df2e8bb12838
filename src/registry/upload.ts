import type { Readable } from 'node:stream';
import { AirgapError } from '../errors.js';
import type { Descriptor } from '../oci/descriptor.js';
import type { PushOutcome } from '../store.js';
import type { CallOptions, RegistryClient } from './client.js';
import { RegistryError, errorCodes, isConnectionError, isTemporary } from './errors.js';
import { type HttpResponse, backoffDelay, header, sleep } from './transport.js';

/**
 * A blob upload as explicit ordered steps:
 *   1. mount            only for a blob known in another repository of this registry (pushed, seen
 *                       or fetched in this run): POST ?mount=&from= first, without a HEAD, since a
 *                       mount moves no byte even where the blob is already here. 201 = done.
 *   2. HEAD             the registry may already hold the blob from an earlier run (Nexus re-uploads
 *                       otherwise): asked first for a blob known nowhere else, and after a mount
 *                       that was answered 202 (refused: ECR, ACR) or failed (Harbor answers 401)
 *   3. monolithic       one PUT ?digest= with the whole stream, into the session a refused mount's
 *                       202 opened (its Location, its OCI-Chunk-Min-Length), else after a new POST
 *   4. chunked          when that PUT is refused: PATCH chunks (Content-Range inclusive), PUT ?digest=;
 *                       a cut chunk asks the upload's status and continues from the offset the
 *                       registry reports (it holds the chunk in memory), not from byte 0
 * The body comes from `open()`, streamed, never buffered whole (chunked mode holds one chunk).
 * Before a failed upload is sent again, a HEAD asks whether the registry has the blob after all
 * (the commit may have succeeded while its answer was lost). The request that completes an upload
 * waits long for its answer: an S3-backed registry may take minutes to commit a big blob.
 */

/** How long the completing PUT may wait for its answer after the last byte. */
export const COMMIT_HEADERS_TIMEOUT_MS = 30 * 60_000;

interface Session {
  url: URL;
  /** OCI-Chunk-Min-Length, when the registry says. */
  minChunk: number;
}

export async function pushBlob(client: RegistryClient, repo: string, desc: Descriptor, open: () => Promise<Readable>,
  opts: CallOptions & { mountFrom?: string[] } = {}): Promise<PushOutcome> {
  const signal = opts.signal;
  const head = () => client.headBlob(repo, desc.digest, { access: 'push', ...(signal ? { signal } : {}) });
  const from = (opts.mountFrom ?? []).find((r) => r !== repo);
  // The session a refused mount opened: the first upload attempt goes into it.
  let opened: Session | undefined;
  if (from !== undefined) {
    const mount = await tryMount(client, repo, desc, from, signal);
    if (mount === 'mounted') {
      client.rememberBlob(desc.digest, repo);
      return 'mounted';
    }
    if (mount !== 'failed') opened = mount;
  }
  let held: boolean;
  try {
    held = (await head()) !== undefined;
  } catch (e) {
    if (opened) await cancel(client, repo, opened.url, signal);
    throw e;
  }
  if (held) {
    // Here from an earlier run: no byte moves, and the session the mount opened is given back.
    if (opened) await cancel(client, repo, opened.url, signal);
    return 'existed';
  }

  const policy = client.retryPolicy;
  let chunked = false;
  let authRetried = false;
  for (let attempt = 1; ; attempt++) {
    const session = opened;
    opened = undefined;
    try {
      if (chunked) {
        await uploadChunked(client, repo, desc, open, signal);
      } else if (await uploadMonolithic(client, repo, desc, open, signal, session) === 'refused') {
        chunked = true;
        attempt--;
        continue;
      }
      client.rememberBlob(desc.digest, repo);
      return 'uploaded';
    } catch (e) {
      if (signal?.aborted) throw e;
      if (errorCodes(e).includes('UND_ERR_REQ_CONTENT_LENGTH_MISMATCH')) {
        throw new AirgapError('E_DIGEST_MISMATCH', `uploading blob ${repo}@${desc.digest} to registry ${client.host}: the source gave a different size than ${desc.size} bytes`, { cause: e });
      }
      // A token that expired mid-upload shows as a 401 on a spent stream: one fresh start.
      const auth401 = e instanceof RegistryError && e.status === 401 && !authRetried;
      if (auth401) authRetried = true;
      const temporary = e instanceof RegistryError && e.temporary;
      if (!(temporary || auth401) || attempt >= policy.attempts) throw e;
      await sleep(backoffDelay(policy, attempt), signal);
      // The registry may hold the blob already (its answer to the completing PUT was lost).
      if (await head().catch(() => undefined)) {
        client.rememberBlob(desc.digest, repo);
        return 'uploaded';
      }
    }
  }
}

/**
 * POST ?mount=&from=: 'mounted' (201), the upload session the registry opened instead (202: it
 * refused the mount, or the source lacks the blob), or 'failed' (any error, a 202 without a Location).
 */
async function tryMount(client: RegistryClient, repo: string, desc: Descriptor, from: string,
  signal?: AbortSignal): Promise<'mounted' | 'failed' | Session> {
  const query = `mount=${encodeURIComponent(desc.digest)}&from=${encodeURIComponent(from)}`;
  try {
    const res = await client.request({
      method: 'POST', url: `/v2/${repo}/blobs/uploads/?${query}`, repo, access: 'push', alsoPull: [from],
      what: `mount of blob ${desc.digest} from ${from} into ${repo}`, ...(signal ? { signal } : {}),
    });
    await res.body.dump().catch(() => undefined);
    if (res.status === 201) return 'mounted';
    return res.status === 202 ? sessionOf(res) ?? 'failed' : 'failed';
  } catch (e) {
    // Mount is an optimisation: any failure (Harbor answers 401 for it) means "upload normally".
    if (signal?.aborted) throw e;
    return 'failed';
  }
}

/** The upload session a 202 names: its Location and the smallest chunk it takes. */
function sessionOf(res: HttpResponse): Session | undefined {
  const location = header(res, 'location');
  if (!location) return undefined;
  const min = Number(header(res, 'oci-chunk-min-length'));
  return { url: new URL(location, res.url), minChunk: Number.isSafeInteger(min) && min > 0 ? min : 0 };
}

async function startSession(client: RegistryClient, repo: string, desc: Descriptor, signal?: AbortSignal): Promise<Session> {
  const what = `upload of blob ${desc.digest} to ${repo}`;
  const res = await client.request({
    method: 'POST', url: `/v2/${repo}/blobs/uploads/`, repo, access: 'push', what,
    headers: { 'content-length': '0' }, ...(signal ? { signal } : {}),
  });
  const location = header(res, 'location');
  if (res.status === 404) {
    const err = await client.fail(res, 'POST', what).catch((e: unknown) => e as RegistryError);
    throw new RegistryError(err.code, err.message, {
      ...(err.status !== undefined ? { status: err.status } : {}), ...(err.registryCode ? { registryCode: err.registryCode } : {}),
      hint: `the repository ${repo} may have to be created first on this registry (ECR repositories, Harbor projects), or the namespace is wrong`,
    });
  }
  if (res.status < 200 || res.status > 299 || !location) {
    if (res.status >= 200 && res.status <= 299) {
      await res.body.dump().catch(() => undefined);
      throw new RegistryError('E_REGISTRY', `POST ${what} on registry ${client.host}: HTTP ${res.status} without a Location header`,
        { status: res.status, hint: 'the registry does not follow the distribution API for uploads' });
    }
    return client.fail(res, 'POST', what);
  }
  await res.body.dump().catch(() => undefined);
  return sessionOf(res)!;
}

/**
 * Returns 'refused' when the registry will not take the blob in one PUT (the chunked step follows).
 * `opened`: a session already open (a refused mount's), else one is started.
 */
async function uploadMonolithic(client: RegistryClient, repo: string, desc: Descriptor, open: () => Promise<Readable>,
  signal?: AbortSignal, opened?: Session): Promise<'done' | 'refused'> {
  const what = `upload of blob ${desc.digest} to ${repo}`;
  const session = opened ?? await startSession(client, repo, desc, signal);
  // An interrupt from here on gives the session back (abandon.ts).
  const untrack = await client.trackSession(session.url, repo, signal);
  try {
    return await putWhole(client, repo, desc, open, session, what, signal);
  } finally {
    untrack();
  }
}

async function putWhole(client: RegistryClient, repo: string, desc: Descriptor, open: () => Promise<Readable>, session: Session,
  what: string, signal?: AbortSignal): Promise<'done' | 'refused'> {
  const source = await open().catch(async (e: unknown) => {
    // Nothing to send (a delta's base blob the bundle does not carry): the session is given back.
    await cancel(client, repo, session.url, signal);
    throw e;
  });
  let sourceError: unknown;
  source.once('error', (e) => { sourceError = e; });
  let res: HttpResponse;
  try {
    res = await client.request({
      method: 'PUT', url: withDigest(session.url, desc.digest), repo, access: 'push', what,
      headers: { 'content-type': 'application/octet-stream', 'content-length': String(desc.size) },
      body: source, retry: false, headersTimeoutMs: COMMIT_HEADERS_TIMEOUT_MS, ...(signal ? { signal } : {}),
    });
  } catch (e) {
    source.destroy();
    // The source's own failure (a bad bundle file, a cut source download) is what to report; a
    // socket error that undici pushed back into the body stream is the upload's own (retried).
    throw sourceError !== undefined && !isConnectionError(sourceError) ? sourceError : e;
  }
  if (sourceError !== undefined) {
    await res.body.dump().catch(() => undefined);
    throw sourceError;
  }
  if (res.status >= 200 && res.status <= 299) {
    await res.body.dump().catch(() => undefined);
    return 'done';
  }
  source.destroy();
  const err = await client.fail(res, 'PUT', what).catch((e: unknown) => e);
  await cancel(client, repo, session.url, signal);
  if (isRefusal(err)) return 'refused';
  throw err;
}

async function uploadChunked(client: RegistryClient, repo: string, desc: Descriptor, open: () => Promise<Readable>,
  signal?: AbortSignal): Promise<void> {
  const what = `chunked upload of blob ${desc.digest} to ${repo}`;
  const session = await startSession(client, repo, desc, signal);
  const untrack = await client.trackSession(session.url, repo, signal);
  try {
    await putChunks(client, repo, desc, open, session, what, signal);
  } finally {
    untrack();
  }
}

async function putChunks(client: RegistryClient, repo: string, desc: Descriptor, open: () => Promise<Readable>, session: Session,
  what: string, signal?: AbortSignal): Promise<void> {
  let url = session.url;
  const size = Math.max(client.chunkSize, session.minChunk);
  const policy = client.retryPolicy;
  let offset = 0;
  const source = await open();
  try {
    for await (const chunk of rechunk(source, size)) {
      // Bytes of this chunk the registry holds; a cut PATCH continues from the registry's own count.
      let held = 0;
      for (let attempt = 1; held < chunk.length; attempt++) {
        const part = chunk.subarray(held);
        const start = offset + held;
        let failure: unknown;
        let res: HttpResponse | undefined;
        try {
          res = await client.request({
            method: 'PATCH', url, repo, access: 'push', what, body: part, retry: false,
            headers: {
              'content-type': 'application/octet-stream',
              'content-length': String(part.length),
              'content-range': `${start}-${start + part.length - 1}`,
            },
            ...(signal ? { signal } : {}),
          });
        } catch (e) {
          if (signal?.aborted || !isTemporary(e)) throw e;
          failure = e;
        }
        if (res && res.status >= 200 && res.status <= 299) {
          const location = header(res, 'location');
          await res.body.dump().catch(() => undefined);
          if (location) url = new URL(location, res.url);
          held = chunk.length;
          break;
        }
        if (res) {
          // 416: the registry holds another count than we thought; 5xx/408/429: it may hold part of it.
          const err = await client.fail(res, 'PATCH', what).catch((e: unknown) => e);
          if (!(res.status === 416 || (err instanceof RegistryError && err.temporary))) {
            await cancel(client, repo, url, signal);
            throw err;
          }
          failure = err;
        }
        if (attempt >= policy.attempts) throw failure;
        await sleep(backoffDelay(policy, attempt), signal);
        const status = await uploadStatus(client, repo, url, what, signal);
        // A registry that lost what it had acknowledged cannot be continued: start again.
        if (status === undefined || status.next < offset || status.next > offset + chunk.length) throw failure;
        url = status.url;
        held = status.next - offset;
      }
      offset += chunk.length;
    }
  } finally {
    source.destroy();
  }
  if (offset !== desc.size) {
    await cancel(client, repo, url, signal);
    throw new AirgapError('E_DIGEST_MISMATCH', `uploading blob ${repo}@${desc.digest} to registry ${client.host}: the source gave ${offset} bytes, expected ${desc.size}`);
  }
  const res = await client.request({
    method: 'PUT', url: withDigest(url, desc.digest), repo, access: 'push', what,
    headers: { 'content-type': 'application/octet-stream', 'content-length': '0' },
    // Not sent twice blindly: a commit whose answer was lost is HEAD-checked by pushBlob first.
    retry: false, headersTimeoutMs: COMMIT_HEADERS_TIMEOUT_MS, ...(signal ? { signal } : {}),
  });
  if (res.status < 200 || res.status > 299) return client.fail(res, 'PUT', what);
  await res.body.dump().catch(() => undefined);
}

/**
 * An upload's status (`GET` on its Location): how many bytes the registry holds (`Range: 0-N`)
 * and where to continue. Undefined when the registry cannot tell (the session is gone).
 */
async function uploadStatus(client: RegistryClient, repo: string, url: URL, what: string,
  signal?: AbortSignal): Promise<{ url: URL; next: number } | undefined> {
  try {
    const res = await client.request({ method: 'GET', url, repo, access: 'push', what, ...(signal ? { signal } : {}) });
    await res.body.dump().catch(() => undefined);
    if (res.status !== 204 && res.status !== 200) return undefined;
    const range = /^(?:bytes=)?0-(\d+)$/.exec((header(res, 'range') ?? '').trim());
    if (!range) return undefined;
    const last = Number(range[1]);
    // "0-0" is what distribution says for an empty upload as well as for one byte: take the safe side.
    const next = last === 0 ? 0 : last + 1;
    const location = header(res, 'location');
    return { url: location ? new URL(location, res.url) : url, next };
  } catch (e) {
    if (signal?.aborted) throw e;
    return undefined;
  }
}

/** Appends `digest=` to a Location that may already carry a query (distribution's `_state=`). */
export function withDigest(location: URL, digest: string): URL {
  const u = new URL(location);
  u.search = (u.search && u.search !== '?' ? `${u.search}&` : '?') + `digest=${encodeURIComponent(digest)}`;
  return u;
}

/** The registry will not take a single PUT (as opposed to a bad blob, auth, or an outage). */
function isRefusal(e: unknown): boolean {
  if (!(e instanceof RegistryError) || e.status === undefined) return false;
  if (e.registryCode === 'DIGEST_INVALID' || e.registryCode === 'SIZE_INVALID') return false;
  return (e.status >= 400 && e.status < 500 && ![401, 403, 404, 408, 429].includes(e.status)) || e.status === 501;
}

async function cancel(client: RegistryClient, repo: string, url: URL, signal?: AbortSignal): Promise<void> {
  try {
    const res = await client.request({
      method: 'DELETE', url, repo, access: 'push', what: `cancel upload to ${repo}`, retry: false, ...(signal ? { signal } : {}),
    });
    await res.body.dump().catch(() => undefined);
  } catch {
    // Best effort: an abandoned session expires on its own.
  }
}

/** Re-slices a stream into chunks of exactly `size` bytes (the last may be shorter); holds at most one chunk. */
async function* rechunk(stream: Readable, size: number): AsyncGenerator<Buffer> {
  let parts: Buffer[] = [];
  let held = 0;
  for await (const data of stream as AsyncIterable<Buffer | string>) {
    let buf = typeof data === 'string' ? Buffer.from(data) : data;
    while (held + buf.length >= size) {
      const take = size - held;
      parts.push(buf.subarray(0, take));
      yield Buffer.concat(parts);
      parts = [];
      held = 0;
      buf = buf.subarray(take);
    }
    if (buf.length > 0) {
      parts.push(buf);
      held += buf.length;
    }
  }
  if (held > 0) yield Buffer.concat(parts);
}
