import test from 'ava';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { childrenOf, parseManifest } from '../oci/manifest.js';
import { VerifyingStream, sha256Digest } from '../oci/verify.js';
import { seedImage } from '../testing/fixtures.js';
import { type TestRegistry, startRegistry } from '../testing/registry.js';
import { basic } from './auth.js';
import { RegistryClient } from './client.js';
import { RegistryStore } from './store.js';
import { type Front, startFront } from './testfront.js';
import { parseRetryAfter } from './transport.js';
import { withDigest } from './upload.js';

const USER = { username: 'bob', password: 'builder-pw' };
const FAST = { attempts: 4, baseDelayMs: 10, maxDelayMs: 50, maxElapsedMs: 10_000, retryAfterCapMs: 300 };

let plain: TestRegistry;
let priv: TestRegistry;
const cleanups: (() => Promise<void>)[] = [];

test.before(async () => {
  [plain, priv] = await Promise.all([startRegistry(), startRegistry({ users: [USER] })]);
});

test.after.always(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => undefined);
  await Promise.all([plain, priv].filter(Boolean).map((r) => r.stop()));
});

function client(host: string, extra: Partial<ConstructorParameters<typeof RegistryClient>[0]> = {}): RegistryClient {
  const c = new RegistryClient({ host, retry: FAST, credentialOptions: { configDir: '/nonexistent-airgap', env: {} }, ...extra });
  cleanups.push(() => c.close());
  return c;
}

function track(f: Front): Front {
  cleanups.push(() => f.stop());
  return f;
}

async function verified(stream: Readable, desc: { digest: string; size: number; mediaType: string }): Promise<number> {
  let n = 0;
  await pipeline(stream, new VerifyingStream(desc, 'blob'), new Writable({ write(c: Buffer, _e, cb) { n += c.length; cb(); } }));
  return n;
}

async function seededLayer(repo: string, size: number) {
  const img = await seedImage(plain, { repo, tag: 'v1', layers: [{ seed: repo, size }] });
  const manifest = await client(plain.host).getManifest(repo, 'v1');
  // children: [config, layer]
  return { img, layer: childrenOf(parseManifest(manifest.bytes))[1] };
}

test('a blob download cut mid-body resumes with Range and the consumer sees one verified stream', async (t) => {
  const { layer } = await seededLayer('cut/app', 400_000);
  let cut = false;
  const front = track(await startFront(plain.host, async (req, res, ctx) => {
    if (!cut && req.method === 'GET' && req.url?.includes('/blobs/')) {
      cut = true;
      await ctx.forward({ cutAfter: 100_000 });
      return;
    }
    await ctx.forward();
  }));
  const c = client(front.host);
  const n = await verified(await c.getBlob('cut/app', layer!), layer!);
  t.is(n, layer!.size);
  const ranged = front.seen.filter((r) => r.headers.range !== undefined);
  t.is(ranged.length, 1);
  t.regex(String(ranged[0]!.headers.range), /^bytes=\d+-$/);
  t.true(Number(/\d+/.exec(String(ranged[0]!.headers.range))![0]) > 0);
});

test('503 with Retry-After is retried after the (capped) delay', async (t) => {
  await seedImage(plain, { repo: 'busy/app', tag: 'v1', layers: [{ seed: 'busy', size: 100 }] });
  let refusals = 0;
  const front = track(await startFront(plain.host, async (req, res, ctx) => {
    if (req.url?.includes('/manifests/') && refusals < 2) {
      refusals++;
      res.writeHead(refusals === 1 ? 503 : 429, { 'retry-after': '1', 'content-type': 'text/html' });
      res.end('<html>busy</html>');
      return;
    }
    await ctx.forward();
  }));
  const c = client(front.host);
  const started = Date.now();
  await c.getManifest('busy/app', 'v1');
  const elapsed = Date.now() - started;
  t.is(refusals, 2);
  t.true(elapsed >= 550, `waited ${elapsed}ms for two capped 300ms Retry-Afters`);
  t.true(elapsed < 2_000, `Retry-After: 1 is capped at 300ms (took ${elapsed}ms)`);
});

test('a registry that keeps failing gives up after the bounded attempts with the HTTP status and its HTML note', async (t) => {
  const front = track(await startFront(undefined, (_req, res) => {
    res.writeHead(502, { 'content-type': 'text/html' });
    res.end('<html><body>Bad Gateway</body></html>');
  }));
  const c = client(front.host);
  const e = await t.throwsAsync(c.getManifest('down/app', 'v1'));
  t.is((e as { code?: string }).code, 'E_REGISTRY');
  t.regex(e!.message, /HTTP 502/);
  t.regex(e!.message, /HTML/);
  t.is(front.seen.filter((r) => r.url.includes('/manifests/')).length, FAST.attempts);
});

test('Retry-After parses seconds and HTTP dates', (t) => {
  t.is(parseRetryAfter('3'), 3000);
  const now = Date.parse('2024-01-01T00:00:00Z');
  t.is(parseRetryAfter('Mon, 01 Jan 2024 00:00:05 GMT', now), 5000);
  t.is(parseRetryAfter('soon'), undefined);
});

test('a redirect to another host is followed without the Authorization header', async (t) => {
  const img = await seedImage(priv, { repo: 'redir/app', tag: 'v1', layers: [{ seed: 'redir', size: 20_000 }] });
  // "Blob storage": another host that serves the blob itself (it holds its own access to the registry).
  const storage = track(await startFront(priv.host, async (_req, _res, ctx) => {
    await ctx.forward({ headers: { authorization: basic(USER) } });
  }));
  const front = track(await startFront(priv.host, async (req, res, ctx) => {
    if (req.method === 'GET' && req.url?.includes('/blobs/') && req.headers.authorization) {
      res.writeHead(307, { location: `http://localhost:${storage.host.split(':')[1]}${req.url}?signature=abc` });
      res.end();
      return;
    }
    await ctx.forward();
  }));
  const c = client(front.host, { credentials: USER });
  const manifest = await c.getManifest('redir/app', 'v1');
  t.is(manifest.descriptor.digest, img.digest);
  const layer = childrenOf(parseManifest(manifest.bytes))[1]!;
  t.is(await verified(await c.getBlob('redir/app', layer), layer), layer.size);
  t.true(front.seen.some((r) => r.url.includes('/blobs/') && r.headers.authorization !== undefined));
  t.true(storage.seen.length >= 1);
  for (const r of storage.seen) t.is(r.headers.authorization, undefined, 'Authorization leaked to another host');
});

test('monolithic PUT refused: chunked PATCH upload with inclusive Content-Range, relative Location, OCI-Chunk-Min-Length', async (t) => {
  const front = track(await startFront(plain.host, async (req, res, ctx) => {
    if (req.method === 'PUT' && req.url?.includes('digest=') && Number(req.headers['content-length'] ?? 0) > 0) {
      await ctx.body();
      res.writeHead(405, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ errors: [{ code: 'UNSUPPORTED', message: 'monolithic upload not allowed' }] }));
      return;
    }
    if (req.method === 'POST' && req.url?.includes('/blobs/uploads/')) {
      // Make every Location relative and announce a minimum chunk size.
      const original = res.writeHead.bind(res);
      res.writeHead = ((status: number, headers?: Record<string, string | string[] | undefined>) => {
        const h = { ...headers };
        if (typeof h.location === 'string') h.location = new URL(h.location).pathname + new URL(h.location).search;
        h['oci-chunk-min-length'] = '100000';
        return original(status, h);
      }) as typeof res.writeHead;
    }
    await ctx.forward();
  }));
  const blob = Buffer.alloc(250_000);
  for (let i = 0; i < blob.length; i++) blob[i] = (i * 7919) % 251;
  const { createHash } = await import('node:crypto');
  const desc = { mediaType: 'application/octet-stream', digest: 'sha256:' + createHash('sha256').update(blob).digest('hex'), size: blob.length };
  let opens = 0;
  const c = client(front.host, { chunkSize: 64 * 1024 });
  const outcome = await c.pushBlob('chunked/app', desc, async () => {
    opens++;
    return Readable.from([blob.subarray(0, 123_456), blob.subarray(123_456)]);
  });
  t.is(outcome, 'uploaded');
  t.is(opens, 2);
  const ranges = front.seen.filter((r) => r.method === 'PATCH').map((r) => r.headers['content-range']);
  t.deepEqual(ranges, ['0-99999', '100000-199999', '200000-249999']);
  t.is((await client(plain.host).headBlob('chunked/app', desc.digest))?.size, blob.length);
});

test('an upload cut mid-body restarts with a fresh open()', async (t) => {
  let cuts = 0;
  const front = track(await startFront(plain.host, async (req, _res, ctx) => {
    if (req.method === 'PUT' && req.url?.includes('digest=') && cuts === 0) {
      cuts++;
      await new Promise<void>((resolve) => req.once('data', () => resolve()));
      req.socket.destroy();
      return;
    }
    await ctx.forward();
  }));
  const blob = Buffer.alloc(500_000, 7);
  const { createHash } = await import('node:crypto');
  const desc = { mediaType: 'application/octet-stream', digest: 'sha256:' + createHash('sha256').update(blob).digest('hex'), size: blob.length };
  let opens = 0;
  const c = client(front.host);
  t.is(await c.pushBlob('restart/app', desc, async () => { opens++; return Readable.from([blob]); }), 'uploaded');
  t.is(opens, 2);
  t.is((await client(plain.host).headBlob('restart/app', desc.digest))?.size, blob.length);
});

test('digest= is appended to Locations with or without a query', (t) => {
  const d = 'sha256:' + 'a'.repeat(64);
  t.is(withDigest(new URL('http://r/v2/x/blobs/uploads/u1'), d).href, `http://r/v2/x/blobs/uploads/u1?digest=sha256%3A${'a'.repeat(64)}`);
  t.is(withDigest(new URL('http://r/v2/x/blobs/uploads/u1?_state=a%2Bb%3D'), d).href,
    `http://r/v2/x/blobs/uploads/u1?_state=a%2Bb%3D&digest=sha256%3A${'a'.repeat(64)}`);
});

test('a manifest refused for a blob the registry does hold (another push rewriting its link) is PUT again; one it lacks is not', async (t) => {
  await seedImage(plain, { repo: 'race/app', tag: 'v1', layers: [{ seed: 'race', size: 2000 }] });
  const { descriptor, bytes } = await client(plain.host).getManifest('race/app', 'v1');
  const children = childrenOf(parseManifest(bytes));
  // As distribution answers while another upload of a blob truncates and rewrites its link file.
  let refusals = 0;
  const front = track(await startFront(plain.host, async (req, res, ctx) => {
    if (req.method === 'PUT' && req.url?.includes('/manifests/') && refusals < 2) {
      refusals++;
      await ctx.body();
      res.writeHead(400, { 'content-type': 'application/json' });
      // distribution lists the error reading the empty link first, then the blob as unknown.
      const unknown = { code: 'MANIFEST_BLOB_UNKNOWN', message: 'blob unknown to registry', detail: children[1]!.digest };
      res.end(JSON.stringify({ errors: refusals === 1
        ? [{ code: 'DIGEST_INVALID', message: 'provided digest did not match uploaded content' }, unknown] : [unknown] }));
      return;
    }
    await ctx.forward();
  }));
  const store = new RegistryStore(client(front.host), 'race/app');
  await store.tag(descriptor, bytes, 'v2');
  const puts = front.seen.filter((r) => r.method === 'PUT' && r.url.includes('/manifests/'));
  t.is(puts.length, 3, 'two refusals, then the PUT that stored it');
  // Between the PUTs, every blob the manifest names was looked for.
  const heads = front.seen.filter((r) => r.method === 'HEAD' && r.url.includes('/blobs/'));
  t.is(heads.length, 2 * children.length);
  t.is((await client(plain.host).getManifest('race/app', 'v2')).descriptor.digest, descriptor.digest);

  // A manifest naming a layer the registry has never seen: the registry's own refusal, after one PUT.
  const m = JSON.parse(Buffer.from(bytes).toString('utf8')) as { layers: { digest: string }[] };
  m.layers[0]!.digest = 'sha256:' + 'ab'.repeat(32);
  const lacking = Buffer.from(JSON.stringify(m));
  const before = front.seen.length;
  const err = await t.throwsAsync(store.tag({ ...descriptor, digest: sha256Digest(lacking), size: lacking.length }, lacking, 'v3'));
  t.regex(err!.message, /MANIFEST_BLOB_UNKNOWN/);
  t.is(front.seen.slice(before).filter((r) => r.method === 'PUT').length, 1, 'not PUT again: the blob is not there');
});
