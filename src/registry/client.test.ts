import test from 'ava';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Writable } from 'node:stream';
import { isAirgapError } from '../errors.js';
import { parseManifest, childrenOf } from '../oci/manifest.js';
import { MediaType } from '../oci/mediatypes.js';
import { VerifyingStream, sha256Digest } from '../oci/verify.js';
import { inspectRaw, seedImage } from '../testing/fixtures.js';
import { type TestRegistry, startRegistry } from '../testing/registry.js';
import { RegistryClient } from './client.js';
import { RegistryStore } from './store.js';
import { startFront } from './testfront.js';

const USER = { username: 'alice', password: 'wonderland-s3cret' };
const FAST = { attempts: 2, baseDelayMs: 10, maxDelayMs: 50, maxElapsedMs: 5_000, retryAfterCapMs: 100 };

let plain: TestRegistry;
let priv: TestRegistry;
let tls: TestRegistry;
const clients: RegistryClient[] = [];

function client(host: string, extra: Partial<ConstructorParameters<typeof RegistryClient>[0]> = {}): RegistryClient {
  // An empty DOCKER_CONFIG dir: the developer's own docker login must not leak into tests.
  const c = new RegistryClient({ host, retry: FAST, credentialOptions: { configDir: '/nonexistent-airgap', env: {} }, ...extra });
  clients.push(c);
  return c;
}

test.before(async () => {
  [plain, priv, tls] = await Promise.all([
    startRegistry(),
    startRegistry({ users: [USER] }),
    startRegistry({ users: [USER], tls: true }),
  ]);
});

test.after.always(async () => {
  await Promise.all(clients.map((c) => c.close()));
  await Promise.all([plain, priv, tls].filter(Boolean).map((r) => r.stop()));
});

async function drainVerified(stream: Readable, desc: { digest: string; size: number; mediaType: string }): Promise<number> {
  let n = 0;
  await pipeline(stream, new VerifyingStream(desc, 'test blob'), new Writable({
    write(chunk: Buffer, _e, cb) { n += chunk.length; cb(); },
  }));
  return n;
}

test('anonymous pull over plain HTTP on loopback: manifest, HEAD, verified blobs', async (t) => {
  const img = await seedImage(plain, { repo: 'org/api', tag: 'v1', layers: [{ seed: 'a', size: 70_000 }] });
  const c = client(plain.host);
  const got = await c.getManifest('org/api', 'v1');
  t.is(got.descriptor.digest, img.digest);
  t.is(got.descriptor.mediaType, MediaType.OciManifest);
  t.is(sha256Digest(got.bytes), img.digest);
  const head = await c.headManifest('org/api', 'v1');
  t.deepEqual(head, got.descriptor);
  const byDigest = await c.getManifest('org/api', img.digest);
  t.deepEqual(Buffer.from(byDigest.bytes), Buffer.from(got.bytes));
  for (const child of childrenOf(parseManifest(got.bytes, got.contentType))) {
    t.is(await drainVerified(await c.getBlob('org/api', child), child), child.size);
    t.is((await c.headBlob('org/api', child.digest))?.size, child.size);
  }
  t.deepEqual(await c.listTags('org/api'), ['v1']);
  t.is(await c.probe('org/api', 'v1'), 'readable');
  t.is(await c.probe('org/api', 'nope'), 'not-found');
});

test('localhost is detected as plain HTTP too', async (t) => {
  await seedImage(plain, { repo: 'lh/app', tag: '1', layers: [{ seed: 'lh', size: 100 }] });
  const c = client(plain.host.replace('127.0.0.1', 'localhost'));
  t.is((await c.getManifest('lh/app', '1')).descriptor.mediaType, MediaType.OciManifest);
});

test('all four manifest types are accepted as served', async (t) => {
  const c = client(plain.host);
  const cases = [
    { tag: 'oci-index', format: 'oci' as const, platforms: ['linux/amd64', 'linux/arm64/v8'], mt: MediaType.OciIndex },
    { tag: 'docker', format: 'v2s2' as const, platforms: undefined, mt: MediaType.DockerManifest },
    { tag: 'docker-list', format: 'v2s2' as const, platforms: ['linux/amd64', 'linux/arm64/v8'], mt: MediaType.DockerManifestList },
  ];
  for (const k of cases) {
    const img = await seedImage(plain, {
      repo: 'types/app', tag: k.tag, format: k.format, layers: [{ seed: k.tag, size: 500 }],
      ...(k.platforms ? { platforms: k.platforms } : {}),
    });
    const got = await c.getManifest('types/app', k.tag);
    t.is(got.descriptor.mediaType, k.mt, k.tag);
    t.is(got.descriptor.digest, img.digest, k.tag);
  }
});

test('a missing manifest is E_NOT_FOUND naming the registry, repository and registry error code', async (t) => {
  const c = client(plain.host);
  const e = await t.throwsAsync(c.getManifest('missing/repo', 'v9'));
  t.true(isAirgapError(e, 'E_NOT_FOUND'));
  t.regex(e!.message, /missing\/repo:v9/);
  t.regex(e!.message, new RegExp(plain.host.replace(/\./g, '\\.')));
  t.regex(e!.message, /HTTP 404/);
  t.regex(e!.message, /(MANIFEST|NAME)_UNKNOWN/);
});

test('htpasswd registry: Basic challenge answered with credentials; anonymous probe says unauthorized', async (t) => {
  const img = await seedImage(priv, { repo: 'secret/app', tag: 'v1', layers: [{ seed: 'p', size: 1000 }] });
  const c = client(priv.host, { credentials: USER });
  t.is((await c.getManifest('secret/app', 'v1')).descriptor.digest, img.digest);
  t.is(await client(priv.host).probe('secret/app', 'v1'), 'unauthorized');
});

test('an identity token meets a Basic challenge: E_AUTH saying where it came from, never sent as a password', async (t) => {
  await seedImage(priv, { repo: 'secret/idt', tag: 'v1', layers: [{ seed: 'idt', size: 100 }] });
  const dir = await mkdtemp(join(tmpdir(), 'airgap-idt-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  await writeFile(join(dir, 'config.json'), JSON.stringify({ auths: { [priv.host]: {
    auth: Buffer.from('00000000-0000-0000-0000-000000000000:').toString('base64'), identitytoken: 'refresh-xyz' } } }));
  const c = client(priv.host, { credentialOptions: { configDir: dir, env: {} } });
  const e = await t.throwsAsync(c.getManifest('secret/idt', 'v1'));
  t.true(isAirgapError(e, 'E_AUTH'));
  t.regex(e!.message, /asks for a user and password, and the identity token in .*config\.json can only be exchanged at a Bearer token service/);
  t.false(e!.message.includes('refresh-xyz'));
});

test('wrong password: E_AUTH with a clean one-line message that never shows the password', async (t) => {
  await seedImage(priv, { repo: 'secret/wp', tag: 'v1', layers: [{ seed: 'wp', size: 100 }] });
  const c = client(priv.host, { credentials: { username: USER.username, password: 'not-the-password' } });
  const e = await t.throwsAsync(c.getManifest('secret/wp', 'v1'));
  t.true(isAirgapError(e, 'E_AUTH'));
  t.regex(e!.message, /HTTP 401/);
  t.regex(e!.message, /secret\/wp:v1/);
  t.false(e!.message.includes('not-the-password'));
  t.false(e!.message.includes('\n'));
  t.regex((e as { hint?: string }).hint ?? '', /--username\/--password/);
  // No credentials at all: same code.
  const anon = await t.throwsAsync(client(priv.host).getManifest('secret/wp', 'v1'));
  t.true(isAirgapError(anon, 'E_AUTH'));
});

test('TLS registry: works with its CA, E_TLS without it (never a plain-HTTP fall-back)', async (t) => {
  const img = await seedImage(tls, { repo: 'tls/app', tag: 'v1', layers: [{ seed: 't', size: 100 }] });
  const ok = client(tls.host, { credentials: USER, settings: { caFile: tls.caFile! } });
  t.is((await ok.getManifest('tls/app', 'v1')).descriptor.digest, img.digest);
  const bad = client(tls.host, { credentials: USER });
  const e = await t.throwsAsync(bad.getManifest('tls/app', 'v1'));
  t.true(isAirgapError(e, 'E_TLS'), String(e));
  t.regex((e as { hint?: string }).hint ?? '', /--ca-file/);
  const skip = client(tls.host, { credentials: USER, settings: { insecureSkipTlsVerify: true } });
  t.is((await skip.getManifest('tls/app', 'v1')).descriptor.digest, img.digest);
});

test('a loopback HTTP server that is not a registry is still spoken to in plain HTTP, and its answer reported', async (t) => {
  // Plain HTTP is asked first on loopback and only a registry's /v2/ answer settles it; a server
  // answering 404 leads to an HTTPS try, which it does not speak, so plain HTTP it is.
  const seen: string[] = [];
  const server = createServer((req, res) => {
    seen.push(`${req.method} ${req.url}`);
    res.writeHead(404, { 'content-type': 'text/plain' }).end('no registry here');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const port = (server.address() as AddressInfo).port;
  const e = await t.throwsAsync(client(`127.0.0.1:${port}`).getManifest('x/y', 'z'));
  t.true(isAirgapError(e, 'E_NOT_FOUND') || isAirgapError(e, 'E_REGISTRY'), String(e));
  t.regex(String((e as Error).message), /404/);
  t.is(seen[0], 'GET /v2/', 'the probe comes first, in plain HTTP');
  t.true(seen.includes('GET /v2/x/y/manifests/z'), seen.join(', '));
});

test('a registry that is down: E_NETWORK with a hint', async (t) => {
  const c = client('127.0.0.1:1');
  const e = await t.throwsAsync(c.getManifest('x/y', 'z'));
  t.true(isAirgapError(e, 'E_NETWORK'), String(e));
  t.regex((e as { hint?: string }).hint ?? '', /registry up/);
});

test('push through RegistryStore, then mount into a second repository; skopeo reads both', async (t) => {
  const src = await seedImage(plain, { repo: 'seed/src', tag: 'v1', layers: [{ seed: 'm1', size: 300_000 }, { seed: 'm2', size: 5_000 }] });
  const reader = new RegistryStore(client(plain.host), 'seed/src');
  const c = client(priv.host, { credentials: USER });
  const first = new RegistryStore(c, 'team/one');
  const second = new RegistryStore(c, 'team/two');
  const root = await reader.resolve('v1');
  const children = childrenOf(parseManifest(root.bytes));

  const outcomes1 = [];
  for (const d of children) outcomes1.push(await first.push(d, () => reader.fetch(d)));
  t.deepEqual(outcomes1, children.map(() => 'uploaded'));
  t.is(await first.push(root.descriptor, async () => Readable.from([Buffer.from(root.bytes)])), 'uploaded');
  await first.tag(root.descriptor, root.bytes, 'v1');
  t.true(await first.exists(root.descriptor));
  t.is(await first.push(children[0]!, () => reader.fetch(children[0]!)), 'existed');

  const outcomes2 = [];
  for (const d of children) outcomes2.push(await second.push(d, () => { throw new Error('must mount, not upload'); }));
  t.deepEqual(outcomes2, children.map(() => 'mounted'));
  await second.push(root.descriptor, async () => Readable.from([Buffer.from(root.bytes)]));
  await second.tag(root.descriptor, root.bytes, 'v1');

  for (const repo of ['team/one', 'team/two']) {
    const raw = await inspectRaw(`${priv.host}/${repo}:v1`, { creds: USER });
    t.is(raw.digest, src.digest, repo);
  }
});

test('the build\'s anonymous check is one GET whose manifest is kept: hashed, by-digest checked, 404 and 401 as the HEAD says them', async (t) => {
  const img = await seedImage(plain, { repo: 'probe/get', tag: 'v1', layers: [{ seed: 'probe-get', size: 1000 }] });
  const raw = await inspectRaw(`${plain.host}/probe/get:v1`);
  const seen: string[] = [];
  // Flips one digit of the first "size" in manifest bodies served by digest: valid JSON, other bytes.
  const front = await startFront(plain.host, async (req, _res, ctx) => {
    seen.push(`${req.method} ${req.url}`);
    const byDigest = /\/manifests\/sha256:/.test(req.url ?? '');
    await ctx.forward(byDigest ? { transform: (chunk) => {
      const s = chunk.toString('latin1');
      const i = s.indexOf('"size":');
      if (i < 0) return chunk;
      const d = s[i + 7]!;
      return Buffer.from(s.slice(0, i + 7) + (d === '9' ? '8' : String(Number(d) + 1)) + s.slice(i + 8), 'latin1');
    } } : {});
  });
  t.teardown(() => front.stop());
  const c = client(front.host, { anonymous: true });
  const got = await c.probeManifest('probe/get', 'v1');
  t.is(got.result, 'readable');
  t.is(got.manifest?.descriptor.digest, img.digest);
  t.true(Buffer.from(got.manifest!.bytes).equals(raw.raw), 'the bytes as served, for the bundle');
  t.deepEqual(seen.filter((s) => s.includes('/manifests/')), ['GET /v2/probe/get/manifests/v1'], 'one GET, no HEAD');
  const bad = await t.throwsAsync(c.probeManifest('probe/get', img.digest));
  t.true(isAirgapError(bad, 'E_DIGEST_MISMATCH'), String(bad));
  t.deepEqual(await c.probeManifest('probe/get', 'nope'), { result: 'not-found' });
  t.deepEqual(await client(priv.host, { anonymous: true }).probeManifest('any/thing', 'v1'), { result: 'unauthorized' });
  t.is(await c.probe('probe/get', 'v1'), 'readable');
  t.is(seen.filter((s) => s.startsWith('HEAD')).length, 1, 'plan\'s probe is still a HEAD');
});
