import anyTest, { type TestFn } from 'ava';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile, cp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { bundledDigest, startWorld, type World } from '../src/testing/world.js';
import { buildBundle, resolveFlags, runCli, json } from '../src/testing/cli.js';
import { parseReference, taggedName } from '../src/reference.js';

const run = promisify(execFile);
const test = anyTest as TestFn<{ world: World; dir: string; bundle: string; buildJson: Record<string, unknown> }>;

test.before(async (t) => {
  // Each resource goes into the context as soon as it exists, so that after.always stops it
  // even when a later step of this hook throws.
  const world = await startWorld();
  t.context.world = world;
  const dir = await mkdtemp(join(tmpdir(), 'airgap-build-e2e-'));
  t.context.dir = dir;
  const bundle = join(dir, 'app.tar');
  const r = await buildBundle(world, bundle, ['--json']);
  t.context.bundle = bundle;
  t.context.buildJson = json(r);
});

test.after.always(async (t) => {
  await t.context.world?.stop();
  if (t.context.dir) await rm(t.context.dir, { recursive: true, force: true });
});

test('plan resolves public, private (through the proxy) and vendor images', async (t) => {
  const { world } = t.context;
  const r = await runCli(['plan', '--manifests', world.appDir, '--license', world.licensePath, ...resolveFlags(world), '--json']);
  t.is(r.code, 0, r.stderr);
  const plan = json<{ images: { ref: string; kind: string; pullFrom: string }[] }>(r);
  for (const img of world.images) {
    const ref = parseReference(img.ref);
    const got = plan.images.find((i) => parseReference(i.ref).repository === ref.repository && parseReference(i.ref).tag === ref.tag);
    t.truthy(got, `plan lists ${img.ref}`);
    t.is(got!.kind, img.kind, img.ref);
    if (img.kind === 'private') t.is(got!.pullFrom, `${world.proxy}/proxy/${world.appSlug}/${ref.registry}/${ref.repository}`);
    else t.is(got!.pullFrom, `${ref.registry}/${ref.repository}`);
  }
  t.false(r.stdout.includes(world.licenseId), 'the license ID is not printed');
});

test('every image reads back from the bundle by the source digest (skopeo, tar)', async (t) => {
  const { world, bundle } = t.context;
  const index = JSON.parse((await run('tar', ['-xOf', bundle, 'index.json'])).stdout) as
    { manifests: { mediaType: string; digest: string; annotations: Record<string, string> }[] };
  for (const img of world.images) {
    const name = taggedName(parseReference(img.ref));
    const entry = index.manifests.find((m) => m.annotations['org.opencontainers.image.ref.name'] === name);
    t.truthy(entry, `index.json names ${name}`);
    t.is(entry!.annotations['io.containerd.image.name'], name);
    // GNU tar, an independent reader, gives the manifest bytes: they hash to the source digest.
    const blob = await run('tar', ['-xOf', bundle, `blobs/sha256/${bundledDigest(img).slice(7)}`], { encoding: 'buffer', maxBuffer: 1 << 24 });
    t.is('sha256:' + createHash('sha256').update(blob.stdout).digest('hex'), bundledDigest(img), name);
    t.is(entry!.digest, bundledDigest(img), name);
    // skopeo 1.9 looks up only OCI-typed index entries; Docker-typed ones are stored as received.
    if (!entry!.mediaType.startsWith('application/vnd.oci.')) continue;
    const { stdout } = await run('skopeo', ['inspect', '--raw', `oci-archive:${bundle}:${name}`], { encoding: 'buffer', maxBuffer: 1 << 24 });
    t.is('sha256:' + createHash('sha256').update(stdout).digest('hex'), bundledDigest(img), name);
    const info = await run('skopeo', ['inspect', `oci-archive:${bundle}:${name}`]);
    t.regex(info.stdout, /"Architecture": "amd64"/);
  }
});

test('shared layers are stored once, and the bundle holds the app manifests', async (t) => {
  const { bundle, world } = t.context;
  const { stdout } = await run('tar', ['-tf', bundle], { maxBuffer: 1 << 24 });
  const names = stdout.trim().split('\n');
  t.is(new Set(names).size, names.length, 'no duplicate entries');
  const layers = new Set(world.images.flatMap((i) => i.layers));
  const sharedCount = world.images.flatMap((i) => i.layers).length - layers.size;
  t.true(sharedCount > 0, 'the fixture app shares layers between images');
  t.true(names.includes('oci-layout') && names.includes('index.json') && names.includes('airgap.json'));
  t.true(names.some((n) => n.startsWith('app/') && n.endsWith('.yaml')));
});

test('verify passes on a fresh bundle and inspect lists every image', async (t) => {
  const { bundle, world } = t.context;
  const v = await runCli(['verify', bundle]);
  t.is(v.code, 0, v.stdout + v.stderr);
  const i = await runCli(['inspect', bundle, '--json']);
  t.is(i.code, 0, i.stderr);
  const info = json<{ images: { ref: string; digest: string; platforms: string[]; size: number }[]; appSlug: string }>(i);
  t.is(info.appSlug, world.appSlug);
  t.is(info.images.length, new Set(world.images.map((w) => taggedName(parseReference(w.ref)))).size);
  for (const img of info.images) {
    t.deepEqual(img.platforms, ['linux/amd64'], img.ref);
    t.true(img.size > 0);
  }
});

test('no credential or license ID inside the bundle', async (t) => {
  const { bundle, world } = t.context;
  const bytes = await readFile(bundle);
  for (const secret of [world.licenseId, world.upstreamCredentials.password]) {
    t.is(bytes.indexOf(Buffer.from(secret)), -1, 'secret found in the bundle');
  }
});

test('--platform all keeps the whole index; two platforms store a new index of both', async (t) => {
  const { world, dir } = t.context;
  const multi = world.images.find((i) => i.children.length > 1)!;
  t.truthy(multi, 'the fixture app has a multi-platform image');
  const name = taggedName(parseReference(multi.ref));
  const all = join(dir, 'all.tar');
  const r = await runCli(['build', '--manifests', world.appDir, '--license', world.licensePath, '--out', all, ...resolveFlags(world), '--platform', 'all']);
  t.is(r.code, 0, r.stderr);
  const { stdout } = await run('skopeo', ['inspect', '--raw', `oci-archive:${all}:${name}`], { encoding: 'buffer', maxBuffer: 1 << 24 });
  t.is('sha256:' + createHash('sha256').update(stdout).digest('hex'), multi.digest);
  const two = join(dir, 'two.tar');
  // The whole app mixes in single-platform amd64 images, which lack arm64: refused (DESIGN.md "Platforms").
  const mixed = await runCli(['build', '--manifests', world.appDir, '--license', world.licensePath, '--out', two, ...resolveFlags(world),
    '--platform', 'linux/amd64', '--platform', 'linux/arm64']);
  t.is(mixed.code, 1, mixed.stderr);
  t.regex(mixed.stderr, /has no linux\/arm64 image: it is a single-platform linux\/amd64 image/);
  const app = join(dir, 'multi-only-app');
  await mkdir(app, { recursive: true });
  await writeFile(join(app, 'pod.yaml'), `apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  containers:\n    - name: c\n      image: ${multi.ref}\n`);
  const r2 = await runCli(['build', '--manifests', app, '--license', world.licensePath, '--out', two, ...resolveFlags(world),
    '--platform', 'linux/amd64', '--platform', 'linux/arm64']);
  t.is(r2.code, 0, r2.stderr);
  const i = json<{ images: { ref: string; platforms: string[] }[] }>(await runCli(['inspect', two, '--json']));
  t.deepEqual(i.images.find((x) => x.ref === name)!.platforms, ['linux/amd64', 'linux/arm64/v8']);
  t.is((await runCli(['verify', two])).code, 0);
});

test('a digest-only reference is refused before any download, naming file:line', async (t) => {
  const { world, dir } = t.context;
  const app = join(dir, 'digest-only-app');
  await cp(world.appDir, app, { recursive: true });
  const img = world.images.find((i) => i.kind === 'public')!;
  const ref = parseReference(img.ref);
  const pinned = `${ref.registry}/${ref.repository}@${img.digest}`;
  await writeFile(join(app, 'pinned.yaml'), `# pinned\napiVersion: v1\nkind: Pod\nmetadata:\n  name: pinned\nspec:\n  containers:\n    - name: c\n      image: ${pinned}\n`);
  const out = join(dir, 'pinned.tar');
  const r = await runCli(['build', '--manifests', app, '--license', world.licensePath, '--out', out, ...resolveFlags(world)]);
  t.is(r.code, 2);
  t.regex(r.stderr, /pinned by digest only/);
  t.true(r.stderr.includes('pinned.yaml:9'), r.stderr);
  t.true(r.stderr.includes(`tag "${ref.tag}"`), `suggests the tag: ${r.stderr}`);
  t.is(r.stderr.trim().split('\n').length, 1, 'one line');
  t.false((await readdir(dir)).some((n) => n.startsWith('pinned') || n.includes('.pinned.tar')));
});

test('a build killed half-way leaves nothing behind', async (t) => {
  const world = await startWorld({ sizeFactor: 60 });
  const dir = await mkdtemp(join(tmpdir(), 'airgap-kill-'));
  t.teardown(async () => {
    await world.stop();
    await rm(dir, { recursive: true, force: true });
  });
  const out = join(dir, 'app.tar');
  let sawTemp = false;
  const r = await runCli(['build', '--manifests', world.appDir, '--license', world.licensePath, '--out', out, ...resolveFlags(world), '--concurrency', '1'], {
    onSpawn: (child) => {
      const poll = setInterval(() => {
        readdir(dir).then((names) => {
          if (names.some((n) => n.includes('airgap-partial'))) {
            sawTemp = true;
            clearInterval(poll);
            child.kill('SIGINT');
          }
        }).catch(() => undefined);
      }, 2);
      child.on('close', () => clearInterval(poll));
    },
  });
  t.true(sawTemp, `the build was interrupted while writing (exit ${r.code}: ${r.stderr})`);
  t.is(r.code, 130, r.stderr);
  t.deepEqual(await readdir(dir), [], 'neither the bundle nor a temporary file is left');
});
