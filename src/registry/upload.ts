import type { Readable } from 'node:stream';
import { AirgapError } from '../errors.js';
import type { Descriptor } from '../oci/descriptor.js';
import type { PushOutcome } from '../store.js';
import type { CallOptions, RegistryClient } from './client.js';
import { RegistryError, errorCodes, isConnectionError } from './errors.js';
import { type HttpResponse, backoffDelay, header, sleep } from './transport.js';

/**
 * A blob upload as explicit ordered steps:
 *   1. HEAD             the registry may already hold it (Nexus re-uploads otherwise)
 *   2. mount            POST ?mount=&from= : 201 = done; 202 or any error = cancel, upload normally
 *   3. monolithic       POST, then one PUT ?digest= with the whole stream
 *   4. chunked          when that PUT is refused: PATCH chunks (Content-Range inclusive), PUT ?digest=
 * The body comes from `open()`, streamed, never buffered whole (chunked mode holds one chunk);
 * a cut upload starts again from step 3 with a fresh `open()`.
 */

interface Session {
  url: URL;
  /** OCI-Chunk-Min-Length, when the registry says. */
  minChunk: number;
}

export async function pushBlob(client: RegistryClient, repo: string, desc: Descriptor, open: () => Promise<Readable>,
  opts: CallOptions & { mountFrom?: string[] } = {}): Promise<PushOutcome> {
  const signal = opts.signal;
  if (await client.headBlob(repo, desc.digest, { access: 'push', ...(signal ? { signal } : {}) })) return 'existed';

  const from = (opts.mountFrom ?? []).find((r) => r !== repo);
  if (from !== undefined && await tryMount(client, repo, desc, from, signal)) {
    client.rememberBlob(desc.digest, repo);
    return 'mounted';
  }

  const policy = client.retryPolicy;
  let chunked = false;
  let authRetried = false;
  for (let attempt = 1; ; attempt++) {
    try {
      if (chunked) {
        await uploadChunked(client, repo, desc, open, signal);
      } else if (await uploadMonolithic(client, repo, desc, open, signal) === 'refused') {
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
    }
  }
}

async function tryMount(client: RegistryClient, repo: string, desc: Descriptor, from: string, signal?: AbortSignal): Promise<boolean> {
  const query = `mount=${encodeURIComponent(desc.digest)}&from=${encodeURIComponent(from)}`;
  try {
    const res = await client.request({
      method: 'POST', url: `/v2/${repo}/blobs/uploads/?${query}`, repo, access: 'push', alsoPull: [from],
      what: `mount of blob ${desc.digest} from ${from} into ${repo}`, ...(signal ? { signal } : {}),
    });
    const location = header(res, 'location');
    await res.body.dump().catch(() => undefined);
    if (res.status === 201) return true;
    // 202: the registry opened an ordinary upload session instead; we start our own.
    if (res.status === 202 && location) await cancel(client, repo, new URL(location, res.url), signal);
    return false;
  } catch (e) {
    // Mount is an optimisation: any failure (Harbor answers 401 for it) means "upload normally".
    if (signal?.aborted) throw e;
    return false;
  }
}

async function startSession(client: RegistryClient, repo: string, desc: Descriptor, signal?: AbortSignal): Promise<Session> {
  const what = `upload of blob ${desc.digest} to ${repo}`;
  const res = await client.request({
    method: 'POST', url: `/v2/${repo}/blobs/uploads/`, repo, access: 'push', what,
    headers: { 'content-length': '0' }, ...(signal ? { signal } : {}),
  });
  const location = header(res, 'location');
  if (res.status < 200 || res.status > 299 || !location) {
    if (res.status >= 200 && res.status <= 299) {
      await res.body.dump().catch(() => undefined);
      throw new RegistryError('E_REGISTRY', `POST ${what} on registry ${client.host}: HTTP ${res.status} without a Location header`,
        { status: res.status, hint: 'the registry does not follow the distribution API for uploads' });
    }
    return client.fail(res, 'POST', what);
  }
  await res.body.dump().catch(() => undefined);
  const min = Number(header(res, 'oci-chunk-min-length'));
  return { url: new URL(location, res.url), minChunk: Number.isSafeInteger(min) && min > 0 ? min : 0 };
}

/** Returns 'refused' when the registry will not take the blob in one PUT (the chunked step follows). */
async function uploadMonolithic(client: RegistryClient, repo: string, desc: Descriptor, open: () => Promise<Readable>,
  signal?: AbortSignal): Promise<'done' | 'refused'> {
  const what = `upload of blob ${desc.digest} to ${repo}`;
  const session = await startSession(client, repo, desc, signal);
  const source = await open();
  let sourceError: unknown;
  source.once('error', (e) => { sourceError = e; });
  let res: HttpResponse;
  try {
    res = await client.request({
      method: 'PUT', url: withDigest(session.url, desc.digest), repo, access: 'push', what,
      headers: { 'content-type': 'application/octet-stream', 'content-length': String(desc.size) },
      body: source, retry: false, ...(signal ? { signal } : {}),
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
  let url = session.url;
  const size = Math.max(client.chunkSize, session.minChunk);
  let offset = 0;
  const source = await open();
  try {
    for await (const chunk of rechunk(source, size)) {
      const res = await client.request({
        method: 'PATCH', url, repo, access: 'push', what, body: chunk, retry: false,
        headers: {
          'content-type': 'application/octet-stream',
          'content-length': String(chunk.length),
          'content-range': `${offset}-${offset + chunk.length - 1}`,
        },
        ...(signal ? { signal } : {}),
      });
      if (res.status < 200 || res.status > 299) {
        const err = await client.fail(res, 'PATCH', what).catch((e: unknown) => e);
        await cancel(client, repo, url, signal);
        throw err;
      }
      const location = header(res, 'location');
      await res.body.dump().catch(() => undefined);
      if (location) url = new URL(location, res.url);
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
    headers: { 'content-type': 'application/octet-stream', 'content-length': '0' }, ...(signal ? { signal } : {}),
  });
  if (res.status < 200 || res.status > 299) return client.fail(res, 'PUT', what);
  await res.body.dump().catch(() => undefined);
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
