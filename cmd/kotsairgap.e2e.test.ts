import anyTest, { type TestFn } from 'ava';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, readFile, readdir, writeFile, truncate, stat, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { parseAllDocuments } from 'yaml';
import { startStage, stopStage, type Stage } from '../src/testing/stage.js';
import { startRegistry, type TestRegistry } from '../src/testing/registry.js';
import { buildBundle, json, resolveFlags, runCli } from '../src/testing/cli.js';
import { dockerArchiveAirgap, serveStorageRoot, vendorPortalAirgap } from '../src/testing/kotsairgap.js';
import { parseReference, lastComponent } from '../src/reference.js';
import { canRunContainerd, startContainerd } from '../src/testing/containerd.js';

/**
 * A KOTS `.airgap` as the bundle: made with the real tools the way the vendor portal makes one
 * (skopeo into a docker-registry, its storage root tarred under images/) and the older way (one
 * skopeo docker archive per image), then installed: every image lands in the customer registry
 * under the name the rendered manifests use, and verify, inspect read it.
 */

const run = promisify(execFile);
interface Ctx extends Stage { bundle: string; refs: { ref: string; digest: string; platforms: string[] }[]; sources: { source: string; ref: string }[]; staging: TestRegistry }
const test = anyTest as TestFn<Ctx>;

test.before(async (t) => {
  await startStage(t.context, 'kotsairgap');
  t.context.bundle = join(t.context.dir, 'app.tar');
  await buildBundle(t.context.world, t.context.bundle, ['--platform', 'all']);
  const info = json<{ images: { ref: string; digest: string; platforms: string[] }[] }>(await runCli(['inspect', t.context.bundle, '--json']));
  t.context.refs = info.images;
  // Where the vendor's images are read from by skopeo (it reads only OCI-typed entries of an OCI archive).
  t.context.staging = await startRegistry();
  const p = await runCli(['push', t.context.bundle, '--registry', `${t.context.staging.host}/vendor`, '--json']);
  if (p.code !== 0) throw new Error(p.stderr);
  t.context.sources = json<{ images: { source: string; target: string }[] }>(p).images.map((i) => ({ source: `docker://${i.target}`, ref: i.source }));
});

test.after.always(async (t) => {
  await t.context.staging?.stop();
  await stopStage(t.context);
});

async function rawDigest(ref: string, creds: { username: string; password: string }): Promise<string> {
  const { stdout } = await run('skopeo', ['inspect', '--raw', '--tls-verify=false', '--creds', `${creds.username}:${creds.password}`, `docker://${ref}`],
    { encoding: 'buffer', maxBuffer: 1 << 24 });
  return 'sha256:' + createHash('sha256').update(stdout).digest('hex');
}

/** Images of the rendered pod specs, found by shape (containers with an image), independently of src/app. */
async function renderedImages(out: string): Promise<Set<string>> {
  const names = new Set<string>();
  const walk = (v: unknown): void => {
    if (Array.isArray(v)) v.forEach(walk);
    else if (v && typeof v === 'object') {
      const o = v as Record<string, unknown>;
      if (Array.isArray(o.containers)) {
        for (const c of [o.containers, o.initContainers ?? []].flat() as { image?: unknown }[]) if (typeof c.image === 'string') names.add(c.image);
      }
      Object.values(o).forEach(walk);
    }
  };
  for (const f of await readdir(join(out, 'rendered'), { recursive: true })) {
    if (!/\.ya?ml$/.test(f)) continue;
    for (const d of parseAllDocuments(await readFile(join(out, 'rendered', f), 'utf8'))) walk(d.toJS());
  }
  return names;
}

test.serial('install of a vendor-portal .airgap (format docker, multi-arch) pushes every savedImage under the rendered names', async (t) => {
  const { world, dir, refs, customer, user } = t.context;
  const airgap = join(dir, 'portal.airgap');
  await vendorPortalAirgap({ appSlug: world.appSlug, appDir: world.appDir, images: t.context.sources }, airgap);

  const v = await runCli(['verify', airgap, '--json']);
  t.is(v.code, 0, v.stderr + v.stdout);
  const info = json<{ appSlug: string; images: { ref: string; digest: string }[]; appFiles: string[] }>(await runCli(['inspect', airgap, '--json']));
  t.is(info.appSlug, world.appSlug);
  t.deepEqual(info.images.map((i) => [i.ref, i.digest]).sort(), refs.map((r) => [r.ref, r.digest]).sort());
  t.true(info.appFiles.length > 0);

  const out = join(dir, 'portal-install');
  const r = await runCli(['install', airgap, '--registry', `${customer.host}/shop`, '--username', user.username, '--password-stdin',
    '--out', out, '--namespace', 'shop', '--license', world.licensePath, '--json'], { input: user.password + '\n' });
  t.is(r.code, 0, r.stderr);
  const pushed = json<{ push: { images: { source: string; target: string; digest: string }[] } }>(r).push.images;
  t.is(pushed.length, refs.length);
  for (const p of pushed) {
    t.is(p.digest, refs.find((x) => x.ref === p.source)!.digest, p.source);
    t.is(p.target, `${customer.host}/shop/${lastComponent(parseReference(p.source).repository)}:${parseReference(p.source).tag}`);
    t.is(await rawDigest(p.target, user), p.digest, `${p.target} serves what the .airgap holds`);
  }
  for (const name of await renderedImages(out)) {
    if (name.startsWith(customer.host)) t.true(pushed.some((p) => p.target === name), `${name} (rendered) was pushed`);
    else t.fail(`rendered manifest still names ${name}`);
  }
});

test.serial('install of a docker-archive .airgap (skopeo docker-archive:, uncompressed layers) pushes every image', async (t) => {
  const { world, dir, refs, customer, user } = t.context;
  const airgap = join(dir, 'archive.airgap');
  await dockerArchiveAirgap({ appSlug: world.appSlug, appDir: world.appDir, images: t.context.sources }, airgap);
  const v = await runCli(['verify', airgap]);
  t.is(v.code, 0, v.stderr + v.stdout);
  const out = join(dir, 'archive-install');
  const r = await runCli(['install', airgap, '--registry', `${customer.host}/old`, '--username', user.username, '--password-stdin',
    '--out', out, '--namespace', 'shop', '--json'], { input: user.password + '\n' });
  t.is(r.code, 0, r.stderr);
  const pushed = json<{ push: { images: { source: string; target: string; digest: string }[] } }>(r).push.images;
  t.is(pushed.length, refs.length);
  for (const p of pushed) {
    t.is(await rawDigest(p.target, user), p.digest);
    // The layers skopeo wrote (uncompressed tars) are what the registry serves, by their diff_ids.
    const { stdout } = await run('skopeo', ['inspect', '--tls-verify=false', '--creds', `${user.username}:${user.password}`, `docker://${p.target}`]);
    t.true((JSON.parse(stdout) as { Layers: string[] }).Layers.length > 0);
  }
  for (const name of await renderedImages(out)) t.true(pushed.some((p) => p.target === name), `${name} (rendered) was pushed`);
});

// The customer's node: containerd pulls and unpacks an image installed from each kind of .airgap
// (the docker-archive one's layers pushed as stored: uncompressed tars, by their diff_ids).
(canRunContainerd() ? test.serial : test.skip)('containerd pulls and unpacks an image installed from a vendor-portal .airgap and one from a docker-archive .airgap', async (t) => {
  const { world, dir, customer, user } = t.context;
  const containerd = await startContainerd();
  t.teardown(() => containerd.stop());
  for (const [name, make] of [['portal', vendorPortalAirgap], ['archive', dockerArchiveAirgap]] as const) {
    const airgap = join(dir, `node-${name}.airgap`);
    await make({ appSlug: world.appSlug, appDir: world.appDir, images: t.context.sources }, airgap);
    const r = await runCli(['install', airgap, '--registry', `${customer.host}/node-${name}`, '--username', user.username, '--password-stdin',
      '--out', join(dir, `node-${name}-install`), '--namespace', 'shop', '--json'], { input: user.password + '\n' });
    t.is(r.code, 0, r.stderr);
    // One of them, as a node pulls what a pod names.
    const [img] = json<{ push: { images: { target: string; digest: string }[] } }>(r).push.images;
    await containerd.ctr('-n', 'k8s.io', 'images', 'pull', '--plain-http', '--user', `${user.username}:${user.password}`, img!.target);
    const { stdout } = await containerd.ctr('-n', 'k8s.io', 'images', 'ls');
    const line = stdout.split('\n').find((l) => l.startsWith(img!.target + ' '));
    t.truthy(line, `${name}: ${img!.target} pulled:\n${stdout}`);
    t.true(line!.includes(img!.digest), `${name}: ${img!.target} is ${img!.digest}`);
    const { stdout: check } = await containerd.ctr('-n', 'k8s.io', 'images', 'check', `name==${img!.target}`);
    t.regex(check, /\scomplete \((\d+)\/\1\)/, `${name}: ${check}`);
  }
});

test.serial('a .airgap for another app than the license is refused before anything is pushed', async (t) => {
  const { world, dir, refs, customer, user } = t.context;
  const airgap = join(dir, 'other.airgap');
  await vendorPortalAirgap({ appSlug: 'someone-else', appDir: world.appDir, images: t.context.sources.slice(0, 1) }, airgap);
  const r = await runCli(['install', airgap, '--registry', `${customer.host}/wrongapp`, '--username', user.username, '--password-stdin',
    '--out', join(dir, 'wrongapp'), '--license', world.licensePath], { input: user.password + '\n' });
  t.not(r.code, 0);
  t.regex(r.stderr, /someone-else/);
});


test.serial('build --format kots writes a .airgap that docker-registry serves as is (every savedImage, multi-arch intact) and install reads', async (t) => {
  const { world, dir, refs, customer, user } = t.context;
  const airgap = join(dir, 'built.airgap');
  const b = await runCli(['build', '--manifests', world.appDir, '--license', world.licensePath, '--out', airgap, ...resolveFlags(world), '--format', 'kots', '--json']);
  t.is(b.code, 0, b.stderr);
  const summary = json<{ savedImages: string[] }>(b);
  t.deepEqual([...summary.savedImages].sort(), refs.map((r) => r.ref).sort());
  // GNU tar reads it as one .tar.gz (its gzip members back to back); the metadata comes first.
  const { stdout: listing } = await run('tar', ['-tzf', airgap], { maxBuffer: 1 << 26 });
  t.deepEqual(listing.split('\n').slice(0, 2), ['airgap.yaml', 'app.tar.gz']);
  const x = join(dir, 'built-extracted');
  await mkdir(x);
  await run('tar', ['-xzf', airgap, '-C', x]);
  const meta = (await import('yaml')).parse(await readFile(join(x, 'airgap.yaml'), 'utf8')) as { spec: { appSlug: string; format: string; savedImages: string[] } };
  t.is(meta.spec.format, 'docker');
  t.is(meta.spec.appSlug, world.appSlug);

  // The release, byte for byte.
  const rel = join(dir, 'built-release');
  await mkdir(rel);
  await run('tar', ['-xzf', join(x, 'app.tar.gz'), '-C', rel]);
  await run('diff', ['-r', world.appDir, rel]);

  // docker-registry with the storage root as its rootdirectory; skopeo reads every image from it.
  const served = await serveStorageRoot(join(x, 'images'));
  await mkdir(join(dir, 'skopeo-copy'), { recursive: true });
  try {
    let multi = 0;
    for (const r of refs) {
      const ref = parseReference(r.ref);
      const name = `${served.host}/${lastComponent(ref.repository)}:${ref.tag}`;
      const { stdout } = await run('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${name}`], { encoding: 'buffer', maxBuffer: 1 << 24 });
      t.is('sha256:' + createHash('sha256').update(stdout).digest('hex'), r.digest, name);
      if (r.platforms.length > 1) multi++;
      const copy = join(dir, 'skopeo-copy', lastComponent(ref.repository) + '-' + ref.tag);
      await run('skopeo', ['copy', '--quiet', '--insecure-policy', '--all', '--src-tls-verify=false', `docker://${name}`, `dir:${copy}`], { maxBuffer: 1 << 24 });
      await rm(copy, { recursive: true, force: true });
    }
    t.true(multi > 0, 'a multi-arch image went through whole');
  } finally {
    await served.stop();
  }

  const v = await runCli(['verify', airgap]);
  t.is(v.code, 0, v.stderr + v.stdout);
  const out = join(dir, 'built-install');
  const r = await runCli(['install', airgap, '--registry', `${customer.host}/built`, '--username', user.username, '--password-stdin',
    '--out', out, '--namespace', 'shop', '--json'], { input: user.password + '\n' });
  t.is(r.code, 0, r.stderr);
  for (const p of json<{ push: { images: { target: string; digest: string }[] } }>(r).push.images) t.is(await rawDigest(p.target, user), p.digest);

  // A delta on top of it leaves out every image it carried.
  const delta = join(dir, 'delta.airgap');
  const d = await runCli(['build', '--manifests', world.appDir, '--license', world.licensePath, '--out', delta, ...resolveFlags(world), '--format', 'kots', '--since', airgap, '--json']);
  t.is(d.code, 0, d.stderr);
  t.deepEqual(json<{ savedImages: string[] }>(d).savedImages, []);
  t.true((await stat(delta)).size < (await stat(airgap)).size / 4);
});

/** Repositories the customer registry holds under a namespace. */
async function reposUnder(customer: TestRegistry, user: { username: string; password: string }, ns: string): Promise<string[]> {
  const res = await fetch(`http://${customer.host}/v2/_catalog?n=1000`, { headers: { authorization: 'Basic ' + Buffer.from(`${user.username}:${user.password}`).toString('base64') } });
  const body = await res.json() as { repositories?: string[] };
  return (body.repositories ?? []).filter((r) => r.startsWith(ns + '/'));
}

const hostile: [string, (stage: string) => Promise<void>, RegExp][] = [
  ['a tag link to a blob the storage does not hold', async (stage) => {
    const repos = join(stage, 'images/docker/registry/v2/repositories');
    const repo = (await readdir(repos))[0]!;
    const tags = join(repos, repo, '_manifests/tags');
    const tag = (await readdir(tags))[0]!;
    await writeFile(join(tags, tag, 'current/link'), 'sha256:' + 'ab'.repeat(32));
  }, /does not hold/],
  ['a blob whose content does not hash to its name', async (stage) => {
    const blobs = join(stage, 'images/docker/registry/v2/blobs/sha256');
    const prefix = (await readdir(blobs))[0]!;
    const hex = (await readdir(join(blobs, prefix)))[0]!;
    const data = join(blobs, prefix, hex, 'data');
    const bytes = await readFile(data);
    bytes[bytes.length - 1] ^= 0xff;
    await writeFile(data, bytes);
  }, /damaged|hashes to/],
  ['a symbolic link in the storage tree', async (stage) => {
    const blobs = join(stage, 'images/docker/registry/v2/blobs/sha256');
    const prefix = (await readdir(blobs))[0]!;
    const hex = (await readdir(join(blobs, prefix)))[0]!;
    const data = join(blobs, prefix, hex, 'data');
    await rm(data);
    await (await import('node:fs/promises')).symlink('/etc/passwd', data);
  }, /symbolic link/],
];

for (const [name, mutate, message] of hostile) {
  test.serial(`hostile .airgap: ${name} → exit 3, nothing pushed`, async (t) => {
    const { world, dir, customer, user } = t.context;
    const airgap = join(dir, `hostile-${name.replace(/\W+/g, '-')}.airgap`);
    await vendorPortalAirgap({ appSlug: world.appSlug, appDir: world.appDir, images: t.context.sources }, airgap, { mutate });
    const ns = 'h' + Math.random().toString(36).slice(2, 8);
    const r = await runCli(['push', airgap, '--registry', `${customer.host}/${ns}`, '--username', user.username, '--password-stdin'], { input: user.password + '\n' });
    t.is(r.code, 3, r.stderr);
    t.regex(r.stderr, message);
    t.deepEqual(await reposUnder(customer, user, ns), []);
  });
}

test.serial('hostile .airgap: cut short, or not a KOTS bundle at all → exit 3, nothing pushed', async (t) => {
  const { world, dir, customer, user } = t.context;
  const airgap = join(dir, 'cut.airgap');
  await vendorPortalAirgap({ appSlug: world.appSlug, appDir: world.appDir, images: t.context.sources }, airgap);
  await truncate(airgap, Math.floor((await stat(airgap)).size / 2));
  const notKots = join(dir, 'plain.tar.gz');
  await run('tar', ['-czf', notKots, '-C', world.appDir, '.']);
  const traversal = join(dir, 'traversal.airgap');
  await run('python3', ['-c', `
import tarfile, io, sys
with tarfile.open(sys.argv[1], 'w:gz') as t:
    for name, body in [('airgap.yaml', b'apiVersion: kots.io/v1beta1\\nkind: Airgap\\nspec:\\n  format: docker\\n'), ('../escape', b'x')]:
        i = tarfile.TarInfo(name); i.size = len(body); t.addfile(i, io.BytesIO(body))
`, traversal]);
  for (const [file, message] of [[airgap, /truncated/], [notKots, /no airgap.yaml/], [traversal, /\.\./]] as const) {
    const ns = 'h' + Math.random().toString(36).slice(2, 8);
    const r = await runCli(['push', file, '--registry', `${customer.host}/${ns}`, '--username', user.username, '--password-stdin'], { input: user.password + '\n' });
    t.is(r.code, 3, `${file}: ${r.stderr}`);
    t.regex(r.stderr, message);
    t.deepEqual(await reposUnder(customer, user, ns), []);
  }
});
