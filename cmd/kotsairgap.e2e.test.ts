import anyTest, { type TestFn } from 'ava';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { parseAllDocuments } from 'yaml';
import { gzipSync, gunzipSync } from 'node:zlib';
import { startStage, stopStage, type Stage } from '../src/testing/stage.js';
import { startRegistry, type TestRegistry } from '../src/testing/registry.js';
import { buildBundle, json, runCli } from '../src/testing/cli.js';
import { dockerArchiveAirgap, vendorPortalAirgap } from '../src/testing/kotsairgap.js';
import { parseReference, lastComponent } from '../src/reference.js';

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

test.serial('a .airgap for another app than the license is refused before anything is pushed', async (t) => {
  const { world, dir, refs, customer, user } = t.context;
  const airgap = join(dir, 'other.airgap');
  await vendorPortalAirgap({ appSlug: 'someone-else', appDir: world.appDir, images: t.context.sources.slice(0, 1) }, airgap);
  const r = await runCli(['install', airgap, '--registry', `${customer.host}/wrongapp`, '--username', user.username, '--password-stdin',
    '--out', join(dir, 'wrongapp'), '--license', world.licensePath], { input: user.password + '\n' });
  t.not(r.code, 0);
  t.regex(r.stderr, /someone-else/);
});

void gzipSync; void gunzipSync; void writeFile;
