import test from 'ava';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parse } from 'yaml';
import { createHash } from 'node:crypto';
import { inspectRaw } from './fixtures.js';
import { fetchThroughProxy } from './proxy.js';
import { PRIVATE_ALIAS, startWorld, type World, type WorldImage } from './world.js';

let world: World;

test.before(async () => {
  world = await startWorld();
});

test.after.always(async () => {
  await world?.stop();
});

/** skopeo cannot take tag+digest together: read a pinned reference by its digest. */
function readable(img: WorldImage): string {
  return img.pinned ? `${img.name}@${img.digest}` : img.ref;
}

function credsFor(img: WorldImage): { username: string; password: string } | undefined {
  if (img.kind === 'private') return world.upstreamCredentials;
  if (img.kind === 'vendor') return { username: world.licenseId, password: world.licenseId };
  return undefined;
}

async function renderedFiles(): Promise<Map<string, string>> {
  const files = new Map<string, string>();
  for (const e of await readdir(world.appDir, { recursive: true, withFileTypes: true })) {
    if (e.isFile()) files.set(join(e.parentPath, e.name), await readFile(join(e.parentPath, e.name), 'utf8'));
  }
  return files;
}

test('every image the rendered app names exists where expected, with the expected digest', async (t) => {
  t.true(world.images.length >= 12);
  await Promise.all(world.images.map(async (img) => {
    const creds = credsFor(img);
    const got = await inspectRaw(readable(img), creds ? { creds } : {});
    t.is(got.digest, img.digest, img.ref);
    t.is(got.mediaType, img.mediaType, img.ref);
    const host = img.kind === 'public' ? world.public : img.kind === 'private' ? world.private : world.vendor;
    t.true(img.ref.startsWith(`${host}/`), img.ref);
  }));
});

test('the rendered app names exactly the catalog images, with placeholders filled', async (t) => {
  const text = [...(await renderedFiles()).values()].join('\n');
  t.false(text.includes('{{'), 'a placeholder was left unfilled');
  for (const placeholder of ['public.registry.test', 'private.registry.test', 'registry.replicated.com']) {
    t.false(text.includes(placeholder), placeholder);
  }
  const found = new Set(text.match(/127\.0\.0\.1:\d+\/[^\s"',\]]+/g) ?? []);
  for (const trap of world.traps) {
    t.true(text.includes(trap), trap);
    found.delete(trap);
  }
  t.deepEqual([...found].sort(), world.images.map((i) => i.ref).sort());
  // The Application lists the additional images.
  const app = parse(await readFile(join(world.appDir, 'kots-app.yaml'), 'utf8')) as {
    spec: { additionalImages: string[]; additionalNamespaces: string[] };
  };
  t.deepEqual([...app.spec.additionalImages].sort(), world.images.filter((i) => i.additional).map((i) => i.ref).sort());
  t.deepEqual(app.spec.additionalNamespaces, world.namespaces);
});

test('the license copy names the world license', async (t) => {
  const lic = parse(await readFile(world.licensePath, 'utf8')) as { kind: string; spec: { licenseID: string; appSlug: string } };
  t.is(lic.kind, 'License');
  t.is(lic.spec.licenseID, world.licenseId);
  t.is(lic.spec.appSlug, world.appSlug);
});

test('private and vendor images are not readable anonymously', async (t) => {
  for (const img of world.images.filter((i) => i.kind !== 'public' && !i.pinned)) {
    const err = await t.throwsAsync(inspectRaw(img.ref));
    t.regex(err?.message ?? '', /unauthorized|authentication required|401/i, img.ref);
  }
});

const ACCEPT = [
  'application/vnd.oci.image.index.v1+json', 'application/vnd.docker.distribution.manifest.list.v2+json',
  'application/vnd.oci.image.manifest.v1+json', 'application/vnd.docker.distribution.manifest.v2+json',
].join(', ');

async function proxyGet(path: string, licenseId = world.licenseId): Promise<{ status: number; body: Buffer; headers: Headers }> {
  const res = await fetchThroughProxy(world.proxy, licenseId, path, { headers: { accept: ACCEPT } });
  return { status: res.status, body: Buffer.from(await res.arrayBuffer()), headers: res.headers };
}

test('private images are readable through the proxy with the license ID', async (t) => {
  const proxy = world.servers.proxy;
  for (const img of world.images.filter((i) => i.kind === 'private' && !i.pinned)) {
    const repo = img.name.slice(world.private.length + 1);
    t.is(img.proxyRepository, `proxy/${world.appSlug}/${world.private}/${repo}`);
    const before = proxy.count(`/v2/${img.proxyRepository}/`);
    const top = await proxyGet(`/v2/${img.proxyRepository}/manifests/${img.tag}`);
    t.is(top.status, 200, img.ref);
    t.is(sha256(top.body), img.digest, img.ref);
    t.is(top.headers.get('docker-content-digest'), img.digest);
    t.is(top.headers.get('content-type'), img.mediaType);
    for (const child of img.children) {
      const c = await proxyGet(`/v2/${img.proxyRepository}/manifests/${child.digest}`);
      t.is(sha256(c.body), child.digest);
    }
    const layer = await proxyGet(`/v2/${img.proxyRepository}/blobs/${img.layers.at(-1)!}`);
    t.is(layer.status, 200);
    t.is(sha256(layer.body), img.layers.at(-1)!);
    t.true(proxy.count(`/v2/${img.proxyRepository}/`) >= before + 2 + img.children.length);
  }
});

test('the proxy refuses a wrong license and an anonymous client', async (t) => {
  const img = world.images.find((i) => i.kind === 'private')!;
  const path = `/v2/${img.proxyRepository!}/manifests/${img.tag}`;
  t.is((await proxyGet(path, 'not-the-license')).status, 401);
  const anonymous = await fetch(`http://${world.proxy}${path}`);
  t.is(anonymous.status, 401);
  t.regex(anonymous.headers.get('www-authenticate') ?? '', /^Bearer realm="http:\/\/127\.0\.0\.1:\d+\/token",service="proxy"/);
});

test('skopeo reads private images through the proxy with the license ID, and not with a wrong one', async (t) => {
  // skopeo cannot parse host:port inside a path: use the proxy's port-free alias of the upstream.
  const license = { username: world.licenseId, password: world.licenseId };
  for (const img of world.images.filter((i) => i.kind === 'private' && !i.pinned)) {
    const repo = img.name.slice(world.private.length + 1);
    const ref = `${world.proxy}/proxy/${world.appSlug}/${PRIVATE_ALIAS}/${repo}:${img.tag}`;
    t.is((await inspectRaw(ref, { creds: license })).digest, img.digest, ref);
  }
  const ref = `${world.proxy}/proxy/${world.appSlug}/${PRIVATE_ALIAS}/acme/api:1.4.2`;
  const wrong = await t.throwsAsync(inspectRaw(ref, { creds: { username: 'not-the-license', password: 'not-the-license' } }));
  t.regex(wrong?.message ?? '', /unauthorized|invalid license|401/i);
  const unknown = await t.throwsAsync(inspectRaw(`${world.proxy}/proxy/${world.appSlug}/upstream.invalid/acme/api:1.4.2`, { creds: license }));
  t.regex(unknown?.message ?? '', /not configured|name unknown/i);
  const otherApp = await t.throwsAsync(inspectRaw(`${world.proxy}/proxy/other-app/${PRIVATE_ALIAS}/acme/api:1.4.2`, { creds: license }));
  t.regex(otherApp?.message ?? '', /denied|does not grant/i);
});

test('the fixtures cover a multi-arch index, a Docker manifest list and shared base layers', (t) => {
  const byRepo = (repo: string): WorldImage => world.images.find((i) => i.name.endsWith(`/${repo}`) && !i.pinned)
    ?? world.images.find((i) => i.name.endsWith(`/${repo}`))!;
  const nginx = byRepo('library/nginx');
  t.is(nginx.mediaType, 'application/vnd.oci.image.index.v1+json');
  t.deepEqual(nginx.children.map((c) => c.platform), ['linux/amd64', 'linux/arm64/v8']);
  const agent = byRepo('acme/node-agent');
  t.is(agent.mediaType, 'application/vnd.docker.distribution.manifest.list.v2+json');
  t.is(agent.children.length, 2);
  t.is(byRepo('library/redis').mediaType, 'application/vnd.docker.distribution.manifest.v2+json');
  const [api, worker, migrate] = ['acme/api', 'acme/worker', 'acme/migrate'].map(byRepo);
  t.deepEqual(api!.layers.slice(0, 2), worker!.layers.slice(0, 2));
  t.deepEqual(api!.layers.slice(0, 2), migrate!.layers.slice(0, 2));
  t.notDeepEqual(api!.layers[2], worker!.layers[2]);
  // Every kind of reference form appears.
  for (const kind of ['public', 'private', 'vendor'] as const) {
    t.true(world.images.some((i) => i.kind === kind && i.pinned), `${kind} pinned`);
    t.true(world.images.some((i) => i.kind === kind && !i.pinned), `${kind} by tag`);
  }
});

function sha256(b: Buffer): string {
  return 'sha256:' + createHash('sha256').update(b).digest('hex');
}
