import test from 'ava';
import { createHash } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { seedImage, type SeededImage } from './fixtures.js';
import { fetchThroughProxy, startProxy, type TestProxy } from './proxy.js';
import { startRegistry, type TestRegistry } from './registry.js';

const LICENSE = 'test-license-0123456789';
const SLUG = 'my-app';
const VENDOR = { username: 'vendor', password: 'vendor-secret-42' };

let upstream: TestRegistry;
let proxy: TestProxy;
let image: SeededImage;
let repoPath: string;
let redirector: http.Server;
let redirectorHost: string;

test.before(async () => {
  upstream = await startRegistry({ users: [VENDOR] });
  image = await seedImage(upstream, { repo: 'org/api', tag: 'v1', layers: [{ seed: 'proxy-test', size: 50_000 }] });
  // An upstream that sends every blob to a CDN, as real registries do.
  redirector = http.createServer((req, res) => {
    res.writeHead(307, { Location: `/cdn${req.url ?? ''}?sig=abc` });
    res.end();
  });
  await new Promise<void>((r) => redirector.listen(0, '127.0.0.1', () => r()));
  redirectorHost = `127.0.0.1:${(redirector.address() as AddressInfo).port}`;
  proxy = await startProxy({
    licenseId: LICENSE, appSlug: SLUG,
    upstreams: { [upstream.host]: VENDOR, [redirectorHost]: VENDOR },
  });
  repoPath = `/v2/proxy/${SLUG}/${upstream.host}/org/api`;
});

test.after.always(async () => {
  await proxy?.stop();
  await upstream?.stop();
  redirector?.close();
});

const ACCEPT = 'application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json';

function sha256(b: Buffer): string {
  return 'sha256:' + createHash('sha256').update(b).digest('hex');
}

async function errorCode(res: Response): Promise<string> {
  return ((await res.json()) as { errors: { code: string }[] }).errors[0]!.code;
}

test('/v2/ challenges for a Bearer token from /token', async (t) => {
  const res = await fetch(`http://${proxy.host}/v2/`);
  t.is(res.status, 401);
  t.is(res.headers.get('www-authenticate'), `Bearer realm="http://${proxy.host}/token",service="proxy"`);
  const scoped = await fetch(`http://${proxy.host}${repoPath}/manifests/v1`);
  t.is(scoped.status, 401);
  t.true(scoped.headers.get('www-authenticate')!.endsWith(`,scope="repository:proxy/${SLUG}/${upstream.host}/org/api:pull"`));
  t.is(await errorCode(scoped), 'UNAUTHORIZED');
});

test('/token wants the license ID as username and password', async (t) => {
  const basic = (u: string, p: string): string => 'Basic ' + Buffer.from(`${u}:${p}`).toString('base64');
  t.is((await fetch(`http://${proxy.host}/token`)).status, 401);
  t.is((await fetch(`http://${proxy.host}/token`, { headers: { authorization: basic(LICENSE, 'other') } })).status, 401);
  t.is((await fetch(`http://${proxy.host}/token`, { headers: { authorization: basic('other', LICENSE) } })).status, 401);
  const ok = await fetch(`http://${proxy.host}/token?service=proxy`, { headers: { authorization: basic(LICENSE, LICENSE) } });
  t.is(ok.status, 200);
  const body = (await ok.json()) as { token: string; expires_in: number };
  t.true(body.token.length > 20);
  t.is(body.expires_in, 300);
  const v2 = await fetch(`http://${proxy.host}/v2/`, { headers: { authorization: `Bearer ${body.token}` } });
  t.is(v2.status, 200);
});

test('manifests and blobs are forwarded with status, type, length and digest headers', async (t) => {
  const get = await fetchThroughProxy(proxy.host, LICENSE, `${repoPath}/manifests/v1`, { headers: { accept: ACCEPT } });
  t.is(get.status, 200);
  const body = Buffer.from(await get.arrayBuffer());
  t.is(sha256(body), image.digest);
  t.is(get.headers.get('docker-content-digest'), image.digest);
  t.is(get.headers.get('content-type'), image.mediaType);
  t.is(get.headers.get('content-length'), String(body.length));

  const head = await fetchThroughProxy(proxy.host, LICENSE, `${repoPath}/manifests/${image.digest}`, { method: 'HEAD', headers: { accept: ACCEPT } });
  t.is(head.status, 200);
  t.is(head.headers.get('content-length'), String(body.length));
  t.is(head.headers.get('docker-content-digest'), image.digest);

  const layer = image.layers[0]!;
  const blob = await fetchThroughProxy(proxy.host, LICENSE, `${repoPath}/blobs/${layer}`);
  t.is(blob.status, 200);
  const bytes = Buffer.from(await blob.arrayBuffer());
  t.is(sha256(bytes), layer);
  t.is(blob.headers.get('docker-content-digest'), layer);

  const ranged = await fetchThroughProxy(proxy.host, LICENSE, `${repoPath}/blobs/${layer}`, { headers: { range: 'bytes=100-199' } });
  t.is(ranged.status, 206);
  t.is(ranged.headers.get('content-range'), `bytes 100-199/${bytes.length}`);
  t.deepEqual(Buffer.from(await ranged.arrayBuffer()), bytes.subarray(100, 200));
});

test('upstream errors pass through in the registry error shape', async (t) => {
  const res = await fetchThroughProxy(proxy.host, LICENSE, `${repoPath}/manifests/no-such-tag`, { headers: { accept: ACCEPT } });
  t.is(res.status, 404);
  t.is(await errorCode(res), 'MANIFEST_UNKNOWN');
});

test('another app slug is denied, an unlisted upstream is unknown, writes are refused', async (t) => {
  const other = await fetchThroughProxy(proxy.host, LICENSE, `/v2/proxy/other-app/${upstream.host}/org/api/manifests/v1`);
  t.is(other.status, 403);
  t.is(await errorCode(other), 'DENIED');
  const unlisted = await fetchThroughProxy(proxy.host, LICENSE, `/v2/proxy/${SLUG}/quay.io/org/api/manifests/v1`);
  t.is(unlisted.status, 404);
  t.is(await errorCode(unlisted), 'NAME_UNKNOWN');
  const notProxy = await fetchThroughProxy(proxy.host, LICENSE, '/v2/org/api/manifests/v1');
  t.is(notProxy.status, 404);
});

test('redirects from the upstream are relayed, made absolute, not followed', async (t) => {
  const res = await fetchThroughProxy(proxy.host, LICENSE, `/v2/proxy/${SLUG}/${redirectorHost}/org/api/blobs/sha256:${'a'.repeat(64)}`);
  t.is(res.status, 307);
  t.is(res.headers.get('location'), `http://${redirectorHost}/cdn/v2/org/api/blobs/sha256:${'a'.repeat(64)}?sig=abc`);
});

test('expired tokens are refused', async (t) => {
  const short = await startProxy({ licenseId: LICENSE, appSlug: SLUG, upstreams: { [upstream.host]: VENDOR }, tokenTtl: 0 });
  t.teardown(() => short.stop());
  const res = await fetchThroughProxy(short.host, LICENSE, `/v2/proxy/${SLUG}/${upstream.host}/org/api/manifests/v1`);
  t.is(res.status, 401);
});

test.serial('the vendor credentials stay behind the proxy; every request is counted', async (t) => {
  const before = proxy.count(`${repoPath}/manifests/v1`);
  const res = await fetchThroughProxy(proxy.host, LICENSE, `${repoPath}/manifests/v1`, { headers: { accept: ACCEPT } });
  const text = await res.text();
  t.false(text.includes(VENDOR.password));
  t.false([...res.headers.values()].some((v) => v.includes(VENDOR.password) || v.includes('Basic')));
  t.is(proxy.count(`${repoPath}/manifests/v1`), before + 1);
  t.true(proxy.count(/^\/token$/) >= 1);
  t.true((proxy.counts().get(`${repoPath}/manifests/v1`) ?? 0) >= 1);
  await new Promise((r) => setImmediate(r));
  t.true(proxy.requests.some((r) => r.path === `${repoPath}/manifests/v1` && r.status === 200 && r.method === 'GET'));
});
