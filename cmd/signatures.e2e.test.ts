import anyTest, { type TestFn } from 'ava';
import { execFile } from 'node:child_process';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { KeyObject } from 'node:crypto';
import { inspectRaw, seedImage } from '../src/testing/fixtures.js';
import { startRegistry, type TestRegistry } from '../src/testing/registry.js';
import { buildBundle, json, resolveFlags, runCli } from '../src/testing/cli.js';
import { bundledDigest, startWorld, type World, type WorldImage } from '../src/testing/world.js';
import {
  SIGNATURE_ANNOTATION, cosignKeyPair, pushAttestation, pushCosignSignature, pushReferrer, pushSbom, type SeedRegistry,
} from '../src/testing/cosign.js';
import { canRunContainerd, startContainerd } from '../src/testing/containerd.js';
import { startReferrersFront } from '../src/testing/referrers.js';
import { parseReference, taggedName } from '../src/reference.js';

/**
 * Issue 14, part 1: signatures, attestations and SBOMs travel with their images. The test world
 * publishes cosign-format signatures (and an attestation, an SBOM, an OCI 1.1 referrer) next to
 * its images; after `airgap push` each is checked against the customer registry with skopeo and
 * openssl alone: the signature next to each pushed image signs the digest its tag serves.
 */
const run = promisify(execFile);
type Creds = { username: string; password: string };
interface Signed { image: WorldImage; subject: string; tags: string[]; upstream: Record<string, string> }
interface Ctx {
  world: World;
  dir: string;
  key: KeyObject;
  pubFile: string;
  bundle: string;
  customer: TestRegistry;
  user: Creds;
  /** Images signed upstream: the digest signed and the cosign tags written (tag → manifest digest). */
  signed: Signed[];
  /** The OCI referrer of redis: its subject and digest. */
  referrer: { image: WorldImage; subject: string; digest: string };
  /** nginx's index digest: signed upstream, but not bundled by a linux/amd64 build. */
  nginxIndexSig: string;
}
const test = anyTest as TestFn<Ctx>;

const find = (w: World, part: string): WorldImage => {
  const img = w.images.find((i) => i.ref.includes(part) && !i.pinned) ?? w.images.find((i) => i.ref.includes(part));
  if (!img) throw new Error(`no world image ${part}`);
  return img;
};
const repoOf = (img: WorldImage): string => img.name.slice(img.name.indexOf('/') + 1);
const seedTarget = (w: World, img: WorldImage): SeedRegistry =>
  img.kind === 'public' ? w.servers.public : img.kind === 'private' ? w.servers.private : w.servers.vendor;

test.before(async (t) => {
  const world = await startWorld();
  t.context.world = world;
  const dir = await mkdtemp(join(tmpdir(), 'airgap-signatures-e2e-'));
  t.context.dir = dir;
  const user = { username: 'deployer', password: 'pw-' + Math.random().toString(36).slice(2) };
  t.context.user = user;
  t.context.customer = await startRegistry({ users: [user] });
  const { privateKey, publicPem } = cosignKeyPair();
  t.context.key = privateKey;
  t.context.pubFile = join(dir, 'cosign.pub');
  await writeFile(t.context.pubFile, publicPem);

  // Signatures of the digests a linux/amd64 bundle holds: a multi-arch child (nginx), a plain
  // image with an attestation and an SBOM too (busybox), a private image behind the vendor proxy
  // (api), a vendor-registry image (frontend). redis gets an OCI 1.1 referrer instead.
  const signed: Signed[] = [];
  for (const part of ['/library/nginx:', '/library/busybox:', '/acme/api:', '/frontend:']) {
    const image = find(world, part);
    const reg = seedTarget(world, image);
    const subject = bundledDigest(image);
    const upstream: Record<string, string> = {};
    const sig = await pushCosignSignature(reg, repoOf(image), subject, privateKey);
    upstream[sig.tag] = sig.digest;
    if (part === '/library/busybox:') {
      const att = await pushAttestation(reg, repoOf(image), subject, privateKey);
      const sbom = await pushSbom(reg, repoOf(image), subject);
      upstream[att.tag] = att.digest;
      upstream[sbom.tag] = sbom.digest;
    }
    signed.push({ image, subject, tags: Object.keys(upstream), upstream });
  }
  t.context.signed = signed;
  const nginx = find(world, '/library/nginx:');
  t.context.nginxIndexSig = (await pushCosignSignature(world.servers.public, repoOf(nginx), nginx.digest, privateKey)).tag;
  const redis = find(world, '/library/redis:');
  const subject = { digest: redis.digest, size: (await inspectRaw(`${redis.name}:${redis.tag}`)).raw.length, mediaType: redis.mediaType };
  t.context.referrer = { image: redis, subject: redis.digest, digest: (await pushReferrer(world.servers.public, repoOf(redis), subject)).digest };

  t.context.bundle = join(dir, 'app.tar');
  await buildBundle(world, t.context.bundle, ['--release', '1.0']);
});

test.after.always(async (t) => {
  await t.context.world?.stop();
  await t.context.customer?.stop();
  if (t.context.dir) await rm(t.context.dir, { recursive: true, force: true });
});

const hex = (d: string) => d.slice('sha256:'.length);
const shortName = (img: WorldImage) => img.name.slice(img.name.lastIndexOf('/') + 1);

/** index.json exactly as stored in the bundle, read with tar. */
async function bundleIndex(bundle: string): Promise<{ manifests: { digest: string; annotations?: Record<string, string> }[] }> {
  const { stdout } = await run('tar', ['-xOf', bundle, 'index.json'], { maxBuffer: 1 << 24 });
  return JSON.parse(stdout) as { manifests: { digest: string; annotations?: Record<string, string> }[] };
}

/**
 * Independently of airgap: skopeo reads the digest `repo:tag` serves and the cosign signature
 * next to it, and openssl checks that the signature signs that digest.
 */
async function verifyCosign(t: { is: (a: unknown, b: unknown, m?: string) => void; regex: (s: string, r: RegExp, m?: string) => void },
  repo: string, tag: string, pubFile: string, creds: Creds, work: string): Promise<string> {
  const served = (await inspectRaw(`${repo}:${tag}`, { creds })).digest;
  const sigRef = `${repo}:sha256-${hex(served)}.sig`;
  const manifest = JSON.parse((await inspectRaw(sigRef, { creds })).raw.toString()) as {
    layers: { digest: string; annotations: Record<string, string> }[];
  };
  const dest = await mkdtemp(join(work, 'sig-'));
  await run('skopeo', ['--insecure-policy', 'copy', '--quiet', '--src-tls-verify=false', '--src-creds', `${creds.username}:${creds.password}`,
    `docker://${sigRef}`, `dir:${dest}`]);
  const layer = manifest.layers[0]!;
  const payloadFile = join(dest, hex(layer.digest));
  const payload = JSON.parse(await readFile(payloadFile, 'utf8')) as { critical: { image: { 'docker-manifest-digest': string }; type: string } };
  t.is(payload.critical.image['docker-manifest-digest'], served, `${sigRef} signs what ${repo}:${tag} serves`);
  t.is(payload.critical.type, 'cosign container image signature');
  const sigFile = join(dest, 'signature.der');
  await writeFile(sigFile, Buffer.from(layer.annotations[SIGNATURE_ANNOTATION]!, 'base64'));
  const { stdout } = await run('openssl', ['dgst', '-sha256', '-verify', pubFile, '-signature', sigFile, payloadFile]);
  t.regex(stdout, /Verified OK/, sigRef);
  return served;
}

test.serial('build carries every bundled digest\'s signatures, attestations, SBOMs and referrers, apart from the images', async (t) => {
  const { world, bundle, signed, referrer, nginxIndexSig } = t.context;
  const info = json<{ images: { ref: string; digest: string; attached: { kind: string; tag?: string; digest: string; subject: string }[] }[] }>(
    await runCli(['inspect', bundle, '--json']));
  // The application's images are counted as before: one per name.
  const names = new Set(world.images.map((i) => taggedName(parseReference(i.ref))));
  t.is(info.images.length, names.size);
  for (const s of signed) {
    const img = info.images.find((i) => i.ref === taggedName(parseReference(s.image.ref)))!;
    t.deepEqual(img.attached.map((a) => a.tag).sort(), [...s.tags].sort(), img.ref);
    for (const a of img.attached) {
      t.is(a.subject, s.subject);
      t.is(a.digest, s.upstream[a.tag!], `${a.tag} carried byte for byte`);
    }
  }
  t.deepEqual(info.images.find((i) => i.ref.includes('/library/busybox:'))!.attached.map((a) => a.kind).sort(), ['attestation', 'sbom', 'signature']);
  const redis = info.images.find((i) => i.ref.includes('/library/redis:'))!;
  t.deepEqual(redis.attached.map((a) => [a.kind, a.digest, a.subject]), [['referrer', referrer.digest, referrer.subject]]);
  t.deepEqual(info.images.find((i) => i.ref.includes('/bitnami/kubectl:'))!.attached, [], 'no signature: nothing carried, no error');
  // nginx's index is not bundled for linux/amd64, so neither is its signature.
  t.false(JSON.stringify(info).includes(nginxIndexSig));

  const text = await runCli(['inspect', bundle]);
  t.regex(text.stdout, /\n {2}\+ signature sha256-[a-f0-9]{64}\.sig/);
  t.regex(text.stdout, /\n {2}\+ referrer \(referrer application\/spdx\+json\)/);

  // index.json: signatures carry no reference name (skopeo, ctr and older readers see only images).
  const index = await bundleIndex(bundle);
  const attachedEntries = index.manifests.filter((m) => m.annotations?.['io.airgap.subject']);
  t.is(attachedEntries.length, signed.reduce((n, s) => n + s.tags.length, 0) + 1);
  for (const e of attachedEntries) {
    t.is(e.annotations?.['org.opencontainers.image.ref.name'], undefined);
    t.is(e.annotations?.['io.containerd.image.name'], undefined);
  }
  const busybox = signed.find((s) => s.image.ref.includes('busybox'))!;
  const { stdout } = await run('skopeo', ['inspect', '--raw', `oci-archive:${bundle}:${taggedName(parseReference(busybox.image.ref))}`]);
  t.is((JSON.parse(stdout) as { schemaVersion: number }).schemaVersion, 2, 'skopeo still reads an image by name');
  const v = await runCli(['verify', bundle]);
  t.is(v.code, 0, v.stdout);
});

test.serial('push --keep-path writes them next to each image under its whole source path; each verifies with openssl', async (t) => {
  const { bundle, customer, user, signed, pubFile, dir } = t.context;
  const registry = `${customer.host}/kept`;
  const r = await runCli(['push', bundle, '--registry', registry, '--keep-path', '--username', user.username, '--password', user.password, '--json']);
  t.is(r.code, 0, r.stderr);
  const s = json<{ attached: { target: string }[] }>(r);
  for (const x of signed) {
    const repo = `${registry}/${repoOf(x.image)}`;
    t.is(await verifyCosign(t, repo, x.image.tag, pubFile, user, dir), x.subject);
    for (const tag of x.tags) {
      t.true(s.attached.some((a) => a.target === `${repo}:${tag}`), `${repo}:${tag} reported`);
      t.is((await inspectRaw(`${repo}:${tag}`, { creds: user })).digest, x.upstream[tag], `${repo}:${tag}`);
    }
  }
});

test.serial('push writes them next to each image under the same tags; each upstream signature verifies with openssl against the customer registry', async (t) => {
  const { world, bundle, customer, user, signed, referrer, pubFile, dir } = t.context;
  const registry = `${customer.host}/acme`;
  const r = await runCli(['push', bundle, '--registry', registry, '--username', user.username, '--password', user.password, '--json']);
  t.is(r.code, 0, r.stderr);
  const s = json<{ images: unknown[]; attached: { target: string; kind: string }[] }>(r);
  t.is(s.images.length, new Set(world.images.map((i) => taggedName(parseReference(i.ref)))).size);
  t.is(s.attached.length, signed.reduce((n, x) => n + x.tags.length, 0) + 1);
  for (const x of signed) {
    const repo = `${registry}/${shortName(x.image)}`;
    const served = await verifyCosign(t, repo, x.image.tag, pubFile, user, dir);
    t.is(served, x.subject);
    // Byte for byte: every carried tag serves the upstream manifest digest.
    for (const tag of x.tags) t.is((await inspectRaw(`${repo}:${tag}`, { creds: user })).digest, x.upstream[tag], `${repo}:${tag}`);
  }
  // The OCI referrer: docker-registry 2.8 has no referrers API, so the sha256-<hex> tag lists it.
  const redisRepo = `${registry}/${shortName(referrer.image)}`;
  const served = (await inspectRaw(`${redisRepo}:${referrer.image.tag}`, { creds: user })).digest;
  const list = JSON.parse((await inspectRaw(`${redisRepo}:sha256-${hex(served)}`, { creds: user })).raw.toString()) as { manifests: { digest: string; artifactType?: string }[] };
  t.deepEqual(list.manifests.map((m) => [m.digest, m.artifactType]), [[referrer.digest, 'application/spdx+json']]);
  const ref = JSON.parse((await inspectRaw(`${redisRepo}@${referrer.digest}`, { creds: user })).raw.toString()) as { subject: { digest: string } };
  t.is(ref.subject.digest, served, 'the referrer names the digest redis serves');

  // A second push moves nothing and leaves the referrers index as it was.
  const again = await runCli(['push', bundle, '--registry', registry, '--username', user.username, '--password', user.password, '--json']);
  t.is(again.code, 0, again.stderr);
  t.is(json<{ bytesUploaded: number }>(again).bytesUploaded, 0);
  const list2 = JSON.parse((await inspectRaw(`${redisRepo}:sha256-${hex(served)}`, { creds: user })).raw.toString()) as { manifests: unknown[] };
  t.is(list2.manifests.length, 1);
});

test.serial('rewrite ignores them: only the application\'s images are rewritten', async (t) => {
  const { bundle, customer, dir, world } = t.context;
  const out = join(dir, 'rewrite');
  // About which names are rewritten, not the registry: no credentials here for rewrite's registry check.
  const r = await runCli(['rewrite', bundle, '--registry', `${customer.host}/acme`, '--out', out, '--json', '--skip-registry-check']);
  t.is(r.code, 0, r.stderr);
  const s = json<{ images: { from: string; to: string }[] }>(r);
  t.true(s.images.length > 0);
  t.false(s.images.some((i) => /sha256-[a-f0-9]{64}/.test(i.to)), JSON.stringify(s.images));
  const { stdout } = await run('grep', ['-rho', 'image: .*', join(out, 'rendered')]);
  t.false(/sha256-[a-f0-9]{64}\.(sig|att|sbom)/.test(stdout));
  t.true(stdout.includes(`${customer.host}/acme/`), 'rewritten to the customer registry');
  t.truthy(world);
});

test.serial('--no-signatures: build carries none, push writes none', async (t) => {
  const { world, dir, bundle, user } = t.context;
  const bare = join(dir, 'bare.tar');
  const b = await runCli(['build', '--manifests', world.appDir, '--license', world.licensePath, '--out', bare, '--no-signatures', ...resolveFlags(world), '--json']);
  t.is(b.code, 0, b.stderr);
  t.deepEqual(json<{ attached: unknown[] }>(b).attached, []);
  t.false(JSON.stringify(await bundleIndex(bare)).includes('io.airgap.subject'));

  const fresh = await startRegistry({ users: [user] });
  t.teardown(() => fresh.stop());
  const p = await runCli(['push', bundle, '--registry', `${fresh.host}/acme`, '--username', user.username, '--password', user.password, '--no-signatures', '--json']);
  t.is(p.code, 0, p.stderr);
  t.deepEqual(json<{ attached: unknown[] }>(p).attached, []);
  const busybox = t.context.signed.find((s) => s.image.ref.includes('busybox'))!;
  await t.throwsAsync(inspectRaw(`${fresh.host}/acme/busybox:sha256-${hex(busybox.subject)}.sig`, { creds: user }));
});

test.serial('--platform all keeps the index, so the index\'s signature travels too, next to the child\'s', async (t) => {
  const { world, dir, nginxIndexSig, signed } = t.context;
  const all = join(dir, 'all.tar');
  const b = await runCli(['build', '--manifests', world.appDir, '--license', world.licensePath, '--out', all, '--platform', 'all', ...resolveFlags(world), '--json']);
  t.is(b.code, 0, b.stderr);
  const nginx = json<{ attached: { image: string; tag?: string; subject: string }[] }>(b).attached.filter((a) => a.image.includes('/library/nginx:'));
  const child = signed.find((s) => s.image.ref.includes('/library/nginx:'))!;
  t.deepEqual(nginx.map((a) => a.tag).sort(), [nginxIndexSig, ...child.tags].sort());
  t.true(nginx.some((a) => a.subject === child.image.digest), 'the index digest is a subject');
});

test.serial('a signature travels through a delta bundle', async (t) => {
  const { world, dir, bundle, customer, user, key, pubFile } = t.context;
  // v2: worker moves to 1.5.0, signed upstream; the delta carries its signature.
  const worker = await seedImage(world.servers.private, { repo: 'acme/worker', tag: '1.5.0',
    layers: [{ shared: 'acme-base', size: 96 * 1024 }, { seed: 'worker-1.5', size: 24 * 1024 }] });
  const sig = await pushCosignSignature(world.servers.private, 'acme/worker', worker.digest, key);
  const v2app = join(dir, 'v2app');
  await cp(world.appDir, v2app, { recursive: true });
  const workers = join(v2app, 'workers.yaml');
  await writeFile(workers, (await readFile(workers, 'utf8')).replace('/acme/worker:1.4.2', '/acme/worker:1.5.0'));
  const delta = join(dir, 'v2-delta.tar');
  const b = await runCli(['build', '--manifests', v2app, '--license', world.licensePath, '--out', delta, '--since', bundle, '--release', '2.0',
    ...resolveFlags(world), '--json']);
  t.is(b.code, 0, b.stderr);
  const built = json<{ attached: { tag?: string; digest: string }[]; delta: { blobsFromBase: number } }>(b);
  t.true(built.delta.blobsFromBase > 0);
  t.true(built.attached.some((a) => a.tag === sig.tag && a.digest === sig.digest), JSON.stringify(built.attached));
  t.is(built.attached.length, t.context.signed.reduce((n, x) => n + x.tags.length, 0) + 2, 'v1\'s signatures are listed again, worker\'s is new');

  const registry = `${customer.host}/acme`;
  const p = await runCli(['push', delta, '--registry', registry, '--username', user.username, '--password', user.password, '--json']);
  t.is(p.code, 0, p.stderr);
  t.is(await verifyCosign(t, `${registry}/worker`, '1.5.0', pubFile, user, dir), worker.digest);
});

test.serial('with the referrers API (an emulating front over docker-registry): found through it at build, listed by it after push, no fall-back tag', async (t) => {
  const { world, dir, user } = t.context;
  const upstream = await startRegistry();
  t.teardown(() => upstream.stop());
  const src = await startReferrersFront(upstream.host);
  t.teardown(() => src.stop());
  const image = await seedImage(upstream, { repo: 'tools/probe', tag: '1.0', layers: [{ seed: 'probe', size: 8 * 1024 }] });
  const raw = await inspectRaw(`${upstream.host}/tools/probe:1.0`);
  const referrer = await pushReferrer({ host: src.host, users: [] }, 'tools/probe', { digest: image.digest, size: raw.raw.length, mediaType: raw.mediaType },
    'application/vnd.example.scan+json', false);
  const app = join(dir, 'api-app');
  await cp(world.appDir, app, { recursive: true });
  await writeFile(join(app, 'probe.yaml'), ['apiVersion: batch/v1', 'kind: Job', 'metadata:', '  name: probe', 'spec:', '  template:', '    spec:',
    '      restartPolicy: Never', '      containers:', '        - name: probe', `          image: ${src.host}/tools/probe:1.0`, ''].join('\n'));
  const bundle = join(dir, 'api.tar');
  const b = await runCli(['build', '--manifests', app, '--license', world.licensePath, '--out', bundle, ...resolveFlags(world), '--json']);
  t.is(b.code, 0, b.stderr);
  const carried = json<{ attached: { image: string; kind: string; digest: string; subject: string }[] }>(b).attached.filter((a) => a.image.includes('/tools/probe:'));
  t.deepEqual(carried.map((a) => [a.kind, a.digest, a.subject]), [['referrer', referrer.digest, image.digest]]);
  t.true(src.apiCalls() > 0, 'asked the referrers API');
  t.is(src.fallbackTagCalls(), 0, 'no fall-back tag needed where the API answers');

  const customer = await startRegistry({ users: [user] });
  t.teardown(() => customer.stop());
  const dst = await startReferrersFront(customer.host);
  t.teardown(() => dst.stop());
  const p = await runCli(['push', bundle, '--registry', `${dst.host}/acme`, '--username', user.username, '--password', user.password]);
  t.is(p.code, 0, p.stderr);
  const auth = { authorization: 'Basic ' + Buffer.from(`${user.username}:${user.password}`).toString('base64') };
  const listed = await (await fetch(`http://${dst.host}/v2/acme/probe/referrers/${image.digest}`, { headers: auth })).json() as { manifests: { digest: string; artifactType: string }[] };
  t.deepEqual(listed.manifests.map((m) => [m.digest, m.artifactType]), [[referrer.digest, 'application/vnd.example.scan+json']]);
  t.is((await inspectRaw(`${customer.host}/acme/probe@${referrer.digest}`, { creds: user })).digest, referrer.digest, 'byte for byte');
  await t.throwsAsync(inspectRaw(`${customer.host}/acme/probe:sha256-${hex(image.digest)}`, { creds: user }), undefined,
    'the registry lists referrers itself: no fall-back tag written');
});

test.serial('an index.json that attaches a tag other than a signature\'s is refused before anything moves', async (t) => {
  const { bundle, dir, user, signed } = t.context;
  const busybox = signed.find((s) => s.image.ref.includes('busybox'))!;
  const tar = await readFile(bundle);
  // Same length (JSON whitespace pads it): the tar stays well formed, the tag now names the image's own.
  const from = `"sha256-${hex(busybox.subject)}.sig"`;
  const to = `"${busybox.image.tag}"`.padEnd(from.length, ' ');
  const at = tar.indexOf(from);
  t.true(at > 0);
  tar.write(to, at, 'latin1');
  const evil = join(dir, 'evil.tar');
  await writeFile(evil, tar);
  const fresh = await startRegistry({ users: [user] });
  t.teardown(() => fresh.stop());
  const r = await runCli(['push', evil, '--registry', `${fresh.host}/acme`, '--username', user.username, '--password', user.password]);
  t.is(r.code, 3, r.stderr);
  t.regex(r.stderr, /under the tag "1\.36", which is not that digest's signature, attestation or SBOM tag/);
  const res = await fetch(`http://${fresh.host}/v2/_catalog`, { headers: { authorization: 'Basic ' + Buffer.from(`${user.username}:${user.password}`).toString('base64') } });
  t.deepEqual(((await res.json()) as { repositories: string[] }).repositories, []);
});

(canRunContainerd() ? test.serial : test.skip)('ctr images import loads a bundle with signatures as its images only', async (t) => {
  const { world, bundle } = t.context;
  const containerd = await startContainerd();
  t.teardown(() => containerd.stop());
  await containerd.ctr('-n', 'k8s.io', 'images', 'import', '--all-platforms', bundle);
  const { stdout } = await containerd.ctr('-n', 'k8s.io', 'images', 'ls', '-q');
  const listed = stdout.split('\n').filter(Boolean).sort();
  t.deepEqual(listed, [...new Set(world.images.map((i) => taggedName(parseReference(i.ref))))].sort());
});
