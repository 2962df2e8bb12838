import test from 'ava';
import { createHash } from 'node:crypto';
import dns from 'node:dns';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import '../testing/nodns.js';
import { isAirgapError } from '../errors.js';
import { childrenOf, parseManifest } from '../oci/manifest.js';
import { VerifyingStream } from '../oci/verify.js';
import { type EgressProxy, startEgressProxy } from '../testing/egress.js';
import { seedImage } from '../testing/fixtures.js';
import { type TestRegistry, startRegistry } from '../testing/registry.js';
import { startSharedPort } from '../testing/sharedport.js';
import { type KeyPair, type TestCa, createTestCa } from '../testing/tlsca.js';
import { basic } from './auth.js';
import { RegistryClient } from './client.js';
import { type Front, type FrontHandler, startFront } from './testfront.js';
import { Transport } from './transport.js';

// Issue 24, items 1 and 2: a registry that sends us to plain HTTP (a redirect, an upload
// Location, a token realm), to a link-local address, or that is named with its default port.
// Real TLS (a throw-away CA), a real docker-registry with htpasswd behind the fronts, and an egress
// proxy that alone resolves the `.invalid` names (so they are not loopback to the client).

const USER = { username: 'mallory-target', password: 'never-in-clear-9c1' };
const FAST = { attempts: 2, baseDelayMs: 5, maxDelayMs: 20, maxElapsedMs: 5_000, retryAfterCapMs: 50 };
const NAME = 'registry.hostile.invalid';
const AUTH_NAME = 'auth.hostile.invalid';
const NAME_443 = 'reg443.hostile.invalid';

let backend: TestRegistry;
let ca: TestCa;
let cert: KeyPair;
let layer: { mediaType: string; digest: string; size: number };
const cleanups: (() => Promise<unknown>)[] = [];

test.before(async () => {
  [backend, ca] = await Promise.all([startRegistry({ users: [USER] }), createTestCa()]);
  cleanups.push(() => backend.stop(), () => ca.remove());
  cert = await ca.server([NAME, NAME_443]);
  const img = await seedImage(backend, { repo: 'team/app', tag: '1', layers: [{ seed: 'hostile', size: 50_000 }] });
  const c = new RegistryClient({ host: backend.host, credentials: USER, credentialOptions: { configDir: '/nonexistent-airgap', env: {} } });
  const m = await c.getManifest('team/app', img.digest);
  await c.close();
  layer = childrenOf(parseManifest(m.bytes, m.contentType)).at(-1)!;
});

test.after.always(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => undefined);
});

async function front(handle: FrontHandler, tls: boolean): Promise<Front> {
  const f = await startFront(backend.host, handle, tls ? { tls: cert } : {});
  cleanups.push(() => f.stop());
  return f;
}

/** A TLS front and a plain-HTTP front behind one port; the plain side is storage with its own access to the backend. */
async function sharedPort(onTls: FrontHandler): Promise<{ host: string; port: number; plain: Front }> {
  const plain = await front((req, res, ctx) => {
    // Not a registry (so the loopback scheme probe settles on TLS): storage that reads as itself.
    if (req.url === '/v2/') return void res.writeHead(404).end();
    return ctx.forward({ headers: { authorization: basic(USER) } });
  }, false);
  const secure = await front(onTls, true);
  const shared = await startSharedPort(secure.host, plain.host);
  cleanups.push(() => shared.stop());
  return { host: shared.host, port: shared.port, plain };
}

async function egressFor(names: Record<string, string>): Promise<EgressProxy> {
  const e = await startEgressProxy(names);
  cleanups.push(() => e.stop());
  return e;
}

function client(host: string, opts: { env?: NodeJS.ProcessEnv; caFile?: string; insecure?: boolean } = {}): RegistryClient {
  const transport = new Transport({
    retry: FAST, env: opts.env ?? {}, headersTimeoutMs: 3_000,
    hosts: [{ host, ...(opts.caFile ? { caFile: opts.caFile } : {}), ...(opts.insecure ? { insecureSkipTlsVerify: true } : {}) }],
  });
  cleanups.push(() => transport.close());
  return new RegistryClient({ host, transport, credentials: USER, credentialOptions: { configDir: '/nonexistent-airgap', env: {} } });
}

async function drain(stream: Readable): Promise<number> {
  let n = 0;
  await pipeline(stream, new VerifyingStream(layer, 'test layer'), new Writable({ write(c: Buffer, _e, cb) { n += c.length; cb(); } }));
  return n;
}

const redirectBlobsToPlain: FrontHandler = (req, res, ctx) => {
  if (req.method === 'GET' && /\/blobs\/sha256:/.test(req.url ?? '')) {
    return void res.writeHead(307, { location: `http://${req.headers.host}${req.url}` }).end();
  }
  return ctx.forward();
};

function blobDesc(bytes: Buffer): { mediaType: string; digest: string; size: number } {
  return { mediaType: 'application/octet-stream', digest: `sha256:${createHash('sha256').update(bytes).digest('hex')}`, size: bytes.length };
}

const proxied = (e: EgressProxy): NodeJS.ProcessEnv => ({ HTTPS_PROXY: e.url, HTTP_PROXY: e.url });

test('https→http redirect on the same loopback host and port is followed without Authorization', async (t) => {
  const s = await sharedPort(redirectBlobsToPlain);
  const c = client(s.host, { caFile: ca.caFile });
  // A first request learns the registry's Basic challenge: the blob GET then carries credentials.
  t.is((await c.headBlob('team/app', layer.digest))?.size, layer.size);
  t.is(await drain(await c.getBlob('team/app', layer)), layer.size);
  const blobGets = s.plain.seen.filter((r) => r.url.includes('/blobs/'));
  t.true(blobGets.length > 0, 'the blob came from the plain side');
  t.deepEqual(blobGets.map((r) => r.headers.authorization), blobGets.map(() => undefined), 'the plain side never saw Authorization');
});

test('https→http redirect to a host that is not loopback is refused with one line saying why; nothing reaches the plain side', async (t) => {
  const s = await sharedPort(redirectBlobsToPlain);
  const e = await egressFor({ [NAME]: '127.0.0.1' });
  const c = client(`${NAME}:${s.port}`, { caFile: ca.caFile, env: proxied(e) });
  const err = await t.throwsAsync(async () => drain(await c.getBlob('team/app', layer)));
  t.true(isAirgapError(err, 'E_REGISTRY'), String(err));
  t.regex(err!.message, new RegExp(`refused to follow the registry's redirect to http://${NAME.replace(/\./g, '\\.')}:${s.port}/v2/team/app/blobs/`));
  t.regex(err!.message, /plain HTTP .*unencrypted/);
  t.notRegex(err!.message, /\n/);
  t.deepEqual(s.plain.seen, []);
});

test('an upload Location on plain HTTP (a TLS-terminating load balancer) is refused: no PUT, no credentials in clear', async (t) => {
  // The registry behind believes it was reached over http, as behind a misconfigured balancer.
  const s = await sharedPort((_req, _res, ctx) => ctx.forward({ headers: { 'x-forwarded-proto': 'http' } }));
  const e = await egressFor({ [NAME]: '127.0.0.1' });
  const c = client(`${NAME}:${s.port}`, { caFile: ca.caFile, env: proxied(e) });
  const bytes = Buffer.from('an upload that must not travel in clear');
  const desc = blobDesc(bytes);
  const err = await t.throwsAsync(c.pushBlob('team/app', desc, () => Promise.resolve(Readable.from([bytes]))));
  t.true(isAirgapError(err, 'E_REGISTRY'), String(err));
  t.regex(err!.message, /refused to follow the registry's upload Location to http:\/\/.*\/v2\/team\/app\/blobs\/uploads\/.*plain HTTP/);
  t.deepEqual(s.plain.seen, []);
});

test('an upload Location at a link-local address (169.254.169.254, fe80::) is refused before any connection', async (t) => {
  for (const location of ['http://169.254.169.254/latest/meta-data/iam/', 'https://[fe80::1]/v2/team/app/blobs/uploads/x', 'http://[::ffff:169.254.169.254]/x']) {
    const f = await front((req, res, ctx) => {
      if (req.method === 'POST') return void res.writeHead(202, { location, 'content-length': '0' }).end();
      return ctx.forward();
    }, true);
    const c = client(f.host, { caFile: ca.caFile });
    const bytes = Buffer.from(`link-local ${location}`);
    const desc = blobDesc(bytes);
    const err = await t.throwsAsync(c.pushBlob('team/app', desc, () => Promise.resolve(Readable.from([bytes]))), undefined, location);
    t.regex(err!.message, /refused to follow the registry's upload Location to .*link-local address/, location);
  }
});

test('a name the registry sends us to that resolves to a link-local address is refused before any connection, not retried', async (t) => {
  // The name resolves here (a stand-in for DNS) to a link-local address scoped to the loopback
  // interface: were it not refused, the attempt would still not leave the machine.
  const name = 'metadata.hostile.invalid';
  const lookups: string[] = [];
  const real = dns.lookup;
  (dns as { lookup: unknown }).lookup = (host: string, opts: unknown, cb?: unknown): void => {
    const callback = (typeof opts === 'function' ? opts : cb) as (e: Error | null, a?: unknown, f?: number) => void;
    if (host !== name) return void (real as (...a: unknown[]) => void)(host, opts, cb);
    lookups.push(host);
    const all = typeof opts === 'object' && opts !== null && (opts as { all?: boolean }).all;
    const address = { address: 'fe80::1%lo', family: 6 };
    process.nextTick(() => (all ? callback(null, [address]) : callback(null, address.address, address.family)));
  };
  try {
    const f = await front((req, res, ctx) => {
      if (req.method === 'GET' && /\/blobs\/sha256:/.test(req.url ?? '')) {
        return void res.writeHead(307, { location: `https://${name}:8443/latest/meta-data/iam/security-credentials/` }).end();
      }
      return ctx.forward();
    }, true);
    const c = client(f.host, { caFile: ca.caFile });
    const err = await t.throwsAsync(async () => drain(await c.getBlob('team/app', layer)));
    t.regex(err!.message, new RegExp(`refused to connect to ${name.replace(/\./g, '\\.')}:8443: ${name.replace(/\./g, '\\.')} resolves to fe80::1%lo, a link-local address`));
    t.notRegex(err!.message, /cannot connect/);
    t.deepEqual(lookups, [name], 'looked up once: refused, not retried');
  } finally {
    (dns as { lookup: unknown }).lookup = real;
  }
});

test('a token realm on plain HTTP is refused for a registry on TLS: the realm never sees the credentials', async (t) => {
  const realmHits: (string | undefined)[] = [];
  const realm = http.createServer((req, res) => {
    realmHits.push(req.headers.authorization);
    res.writeHead(200, { 'content-type': 'application/json' }).end('{"token":"t"}');
  });
  await new Promise<void>((r) => realm.listen(0, '127.0.0.1', r));
  cleanups.push(() => new Promise<void>((r) => realm.close(() => r())));
  const realmPort = (realm.address() as AddressInfo).port;
  const f = await front((_req, res) => {
    res.writeHead(401, { 'www-authenticate': `Bearer realm="http://${AUTH_NAME}:${realmPort}/token",service="hostile"`, 'content-length': '0' }).end();
  }, true);
  const e = await egressFor({ [NAME]: '127.0.0.1', [AUTH_NAME]: '127.0.0.1' });
  const c = client(`${NAME}:${f.host.split(':')[1]}`, { caFile: ca.caFile, env: proxied(e) });
  const err = await t.throwsAsync(c.getManifest('team/app', '1'));
  t.regex(err!.message, new RegExp(`refused to follow the registry's token realm to http://${AUTH_NAME.replace(/\./g, '\\.')}:${realmPort}/token: .*plain HTTP`));
  t.deepEqual(realmHits, []);
});

test('--registry host:443: explicit credentials and --insecure-skip-tls-verify still apply to the registry', async (t) => {
  const f = await front((_req, _res, ctx) => ctx.forward(), true);
  const e = await egressFor({ [NAME_443]: f.host });
  // A certificate from a CA the client is not given: only --insecure-skip-tls-verify lets it in.
  const insecure = client(`${NAME_443}:443`, { insecure: true, env: proxied(e) });
  t.is((await insecure.headBlob('team/app', layer.digest))?.size, layer.size);
  // With the CA: the credentials given for `host:443` go to https://host.
  const trusted = client(`${NAME_443}:443`, { caFile: ca.caFile, env: proxied(e) });
  t.is(await drain(await trusted.getBlob('team/app', layer)), layer.size);
  t.true(f.seen.some((r) => r.headers.authorization === basic(USER)));
});

test('a refusal from the storage a registry redirected to does not blame the user\'s credentials', async (t) => {
  const storage = await front((_req, res) => void res.writeHead(403, { 'content-type': 'application/xml' })
    .end('<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>'), false);
  const f = await front((req, res, ctx) => {
    if (req.method === 'GET' && /\/blobs\/sha256:/.test(req.url ?? '')) {
      return void res.writeHead(307, { location: `http://${storage.host}/bucket/blob?X-Amz-Signature=secret` }).end();
    }
    return ctx.forward();
  }, true);
  const c = client(f.host, { caFile: ca.caFile });
  t.truthy(await c.headBlob('team/app', layer.digest));
  const err = await t.throwsAsync(async () => drain(await c.getBlob('team/app', layer)));
  t.true(isAirgapError(err, 'E_REGISTRY'), String(err));
  t.regex(err!.message, new RegExp(`HTTP 403 from ${storage.host.replace(/\./g, '\\.')}, where the registry redirected the request`));
  t.notRegex((err as { hint?: string }).hint ?? '', /--username|--password|docker login/);
  t.notRegex(err!.message, /X-Amz-Signature|secret/);
  t.deepEqual(storage.seen.map((r) => r.headers.authorization), [undefined]);
});
