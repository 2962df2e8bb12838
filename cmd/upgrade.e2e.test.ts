import anyTest, { type TestFn } from 'ava';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { cp, mkdir, mkdtemp, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { inspectRaw, seedImage } from '../src/testing/fixtures.js';
import { startRegistry, type TestRegistry } from '../src/testing/registry.js';
import { buildBundle, resolveFlags, runCli, json } from '../src/testing/cli.js';
import { bundledDigest, startWorld, type World } from '../src/testing/world.js';
import { lastComponent, parseReference, taggedName } from '../src/reference.js';
import { canRunContainerd, startContainerd } from '../src/testing/containerd.js';

/**
 * Upgrades across the gap: a v2 delta on top of a pushed v1, split bundles for size-limited
 * media, and `ctr images import` of a bundle on a node without a registry.
 */
const run = promisify(execFile);
const FACTOR = 4;
const KiB = 1024;
interface Ctx {
  world: World;
  dir: string;
  v1: string;
  v2app: string;
  /** Every v2 image: the bundled reference and the digest the registry must serve. */
  v2images: { ref: string; digest: string }[];
  customer: TestRegistry;
  user: { username: string; password: string };
}
const test = anyTest as TestFn<Ctx>;

test.before(async (t) => {
  // Each resource goes into the context as soon as it exists, so that after.always stops it
  // even when a later step of this hook throws.
  const world = await startWorld({ sizeFactor: FACTOR });
  t.context.world = world;
  const dir = await mkdtemp(join(tmpdir(), 'airgap-upgrade-e2e-'));
  t.context.dir = dir;
  const user = { username: 'deployer', password: 'pw-' + Math.random().toString(36).slice(2) };
  t.context.user = user;
  const customer = await startRegistry({ users: [user] });
  Object.assign(t.context, { customer, v1: join(dir, 'v1.tar'), v2app: join(dir, 'v2app'), v2images: [] } satisfies Partial<Ctx>);

  await buildBundle(world, t.context.v1, ['--release', '1.4.2']);
  const p = await runCli(['push', t.context.v1, '--registry', `${customer.host}/acme`, '--username', user.username, '--password', user.password]);
  if (p.code !== 0) throw new Error(`v1 push failed: ${p.stderr}`);

  // v2: worker gets a new top layer; a new image (reporter) shares the acme base layers, so its
  // repository in the customer registry is new but most of its blobs are already elsewhere there.
  const base = [{ shared: 'acme-base', size: 96 * KiB * FACTOR }, { shared: 'acme-runtime', size: 48 * KiB * FACTOR }];
  const priv = world.servers.private;
  const worker = await seedImage(priv, { repo: 'acme/worker', tag: '1.5.0', layers: [...base, { seed: 'worker-1.5', size: 24 * KiB * FACTOR }] });
  const reporter = await seedImage(priv, { repo: 'acme/reporter', tag: '1.0.0', layers: [...base, { seed: 'reporter', size: 16 * KiB * FACTOR }] });
  await cp(world.appDir, t.context.v2app, { recursive: true });
  const workers = join(t.context.v2app, 'workers.yaml');
  await writeFile(workers, (await readFile(workers, 'utf8')).replace('/acme/worker:1.4.2', '/acme/worker:1.5.0'));
  await writeFile(join(t.context.v2app, 'reporter.yaml'), [
    'apiVersion: apps/v1', 'kind: Deployment', 'metadata:', '  name: reporter', 'spec:', '  template:', '    spec:',
    '      containers:', '        - name: reporter', `          image: ${world.private}/acme/reporter:1.0.0`, ''].join('\n'));
  // One entry per name: testdata writes busybox both by tag and pinned.
  t.context.v2images = [...new Map([
    ...world.images.filter((i) => !i.ref.includes('/acme/worker:')).map((i) => ({ ref: taggedName(parseReference(i.ref)), digest: bundledDigest(i) })),
    { ref: `${world.private}/acme/worker:1.5.0`, digest: worker.digest },
    { ref: `${world.private}/acme/reporter:1.0.0`, digest: reporter.digest },
  ].map((i) => [i.ref, i])).values()];
});

test.after.always(async (t) => {
  await t.context.world?.stop();
  await t.context.customer?.stop();
  if (t.context.dir) await rm(t.context.dir, { recursive: true, force: true });
});

/** The digest of the manifest a registry serves for `ref`, as skopeo reads it. */
async function rawDigest(ref: string, creds: { username: string; password: string }): Promise<string> {
  return (await inspectRaw(ref, { creds })).digest;
}

async function catalog(reg: TestRegistry, user: { username: string; password: string }): Promise<string[]> {
  const res = await fetch(`http://${reg.host}/v2/_catalog`, { headers: { authorization: 'Basic ' + Buffer.from(`${user.username}:${user.password}`).toString('base64') } });
  return ((await res.json()) as { repositories: string[] }).repositories;
}

const target = (registry: string, ref: string) => {
  const r = parseReference(ref);
  return `${registry}/${lastComponent(r.repository)}:${r.tag}`;
};

test.serial('a v2 delta carries only what v1 lacks, and lands byte-identical images on top of a pushed v1', async (t) => {
  const { world, dir, v1, v2app, v2images, customer, user } = t.context;
  const full = join(dir, 'v2-full.tar');
  const delta = join(dir, 'v2-delta.tar');
  const fb = await runCli(['build', '--manifests', v2app, '--license', world.licensePath, '--out', full, '--release', '1.5.0', ...resolveFlags(world), '--json']);
  t.is(fb.code, 0, fb.stderr);
  const db = await runCli(['build', '--manifests', v2app, '--license', world.licensePath, '--out', delta, '--release', '1.5.0',
    '--since', v1, ...resolveFlags(world), '--json']);
  t.is(db.code, 0, db.stderr);
  const fj = json<{ bytes: number; id: string }>(fb);
  const dj = json<{ bytes: number; id: string; delta: { base: { id: string; release: string }; blobsFromBase: number; bytesFromBase: number } }>(db);

  // Sizes: the delta carries the changed blobs only; with the base it accounts for every byte.
  const fullSize = (await stat(full)).size;
  const deltaSize = (await stat(delta)).size;
  t.log(`v2 full bundle ${fullSize} bytes (${fj.bytes} blob bytes); delta ${deltaSize} bytes (${dj.bytes} blob bytes, ${dj.delta.bytesFromBase} left to v1)`);
  t.is(dj.bytes + dj.delta.bytesFromBase, fj.bytes);
  t.true(deltaSize < fullSize / 4, `delta ${deltaSize} vs full ${fullSize}`);
  t.true(dj.bytes < (24 + 16 + 8) * KiB * FACTOR, `delta blobs ${dj.bytes}: the two new layers, configs and manifests`);
  t.not(dj.id, fj.id, 'a delta is not the full bundle');

  // inspect names the base by identity; verify checks what it carries and reports what it expects.
  const v1info = json<{ id: string }>(await runCli(['inspect', v1, '--json']));
  const info = json<{ delta: { base: { id: string; release: string }; blobsFromBase: number }; images: { ref: string }[] }>(await runCli(['inspect', delta, '--json']));
  t.is(info.delta.base.id, v1info.id);
  t.is(info.delta.base.release, '1.4.2');
  t.is(info.images.length, v2images.length, 'the delta lists every image of v2');
  const text = await runCli(['inspect', delta]);
  t.regex(text.stdout, new RegExp(`delta: +on top of bundle ${v1info.id.slice(0, 19)}`));
  t.regex(text.stdout, /ctr images import cannot read a delta alone/);
  const v = await runCli(['verify', delta, '--json']);
  t.is(v.code, 0, v.stdout);
  const vr = json<{ ok: boolean; problems: unknown[]; expectedFromBase: { blobs: number; base: { id: string } } }>(v);
  t.deepEqual(vr.problems, []);
  t.is(vr.expectedFromBase.blobs, dj.delta.blobsFromBase);
  t.is(vr.expectedFromBase.base.id, v1info.id);

  // Refused on a registry without v1: names the missing blobs and the base, tags nothing.
  const empty = await startRegistry({ users: [user] });
  t.teardown(() => empty.stop());
  const refused = await runCli(['push', delta, '--registry', `${empty.host}/acme`, '--username', user.username, '--password', user.password, '--json']);
  t.is(refused.code, 1, refused.stderr);
  const err = json<{ error: { code: string; message: string; hint: string } }>(refused).error;
  t.is(err.code, 'E_BASE_MISSING');
  t.true(err.message.includes(v1info.id.slice(0, 19)) && err.hint.includes(v1info.id), err.message);
  t.regex(err.message, /lacks \d+ blob\(s\) .*sha256:[a-f0-9]{64}/);
  t.deepEqual(await catalog(empty, user), [], 'nothing pushed, nothing tagged');

  // On top of v1: every v2 image lands with its exact digest; reporter's shared layers are mounted.
  const registry = `${customer.host}/acme`;
  const pushed = await runCli(['push', delta, '--registry', registry, '--username', user.username, '--password', user.password, '--json']);
  t.is(pushed.code, 0, pushed.stderr);
  const ps = json<{ bytesUploaded: number; blobsMounted: number; delta: { blobsFromBase: number } }>(pushed);
  t.true(ps.blobsMounted >= 2, `mounted ${ps.blobsMounted}`);
  t.true(ps.bytesUploaded <= dj.bytes);
  for (const img of v2images) t.is(await rawDigest(target(registry, img.ref), user), img.digest, img.ref);
  // Every blob of the changed and the new image is really there (skopeo re-verifies each digest).
  for (const name of ['worker:1.5.0', 'reporter:1.0.0']) {
    const dest = join(dir, `copy-${name.replace(':', '-')}`);
    await run('skopeo', ['copy', '--insecure-policy', '--src-tls-verify=false', '--src-creds', `${user.username}:${user.password}`,
      `docker://${registry}/${name}`, `oci:${dest}`]);
    t.true(existsSync(join(dest, 'index.json')), name);
  }
});

test.serial('a split bundle: parts within the size, verified and pushed; a missing or damaged part is named', async (t) => {
  const { world, dir, user } = t.context;
  const out = join(dir, 'media', 'app.tar');
  await mkdir(join(dir, 'media'));
  const b = await runCli(['build', '--manifests', world.appDir, '--license', world.licensePath, '--out', out, '--split-size', '700KB',
    ...resolveFlags(world), '--json']);
  t.is(b.code, 0, b.stderr);
  const parts = json<{ parts: { name: string; size: number; sha256: string }[] }>(b).parts;
  t.true(parts.length >= 3, `${parts.length} parts`);
  const files = (await readdir(join(dir, 'media'))).sort();
  t.deepEqual(files, ['app.tar', ...parts.map((p) => p.name)].sort(), 'the manifest and its parts, nothing else');
  for (const p of parts) {
    const bytes = await readFile(join(dir, 'media', p.name));
    t.true(bytes.length <= 700_000, `${p.name} is ${bytes.length} bytes`);
    t.is(createHash('sha256').update(bytes).digest('hex'), p.sha256, `${p.name} checks on its own`);
  }

  const v = await runCli(['verify', out]);
  t.is(v.code, 0, v.stdout + v.stderr);
  t.regex(v.stdout, new RegExp(`${parts.length} part\\(s\\) match their sha256`));
  const info = json<{ parts: unknown[]; images: unknown[] }>(await runCli(['inspect', out, '--json']));
  t.is(info.parts.length, parts.length);

  const fresh = await startRegistry({ users: [user] });
  t.teardown(() => fresh.stop());
  const registry = `${fresh.host}/acme`;
  const installDir = join(dir, 'split-install');
  const inst = await runCli(['install', out, '--registry', registry, '--username', user.username, '--password', user.password, '--out', installDir]);
  t.is(inst.code, 0, inst.stderr);
  for (const img of world.images) {
    const expected = bundledDigest(img);
    t.is(await rawDigest(target(registry, img.ref), user), expected, img.ref);
  }

  // A part left behind: named by every command, before anything happens.
  const second = join(dir, 'media', parts[1]!.name);
  await rename(second, second + '.away');
  for (const cmd of [['inspect', out], ['verify', out], ['push', out, '--registry', registry, '--username', user.username, '--password', user.password]]) {
    const r = await runCli(cmd);
    t.not(r.code, 0);
    t.true(r.stderr.includes(`part ${parts[1]!.name} is missing`), `${cmd[0]}: ${r.stderr}`);
  }
  await rename(second + '.away', second);

  // A damaged part (same size, flipped bytes in the middle): verify names it.
  const victim = parts[parts.length - 2]!;
  const vpath = join(dir, 'media', victim.name);
  const bytes = await readFile(vpath);
  bytes[bytes.length >> 1] ^= 0xff;
  await writeFile(vpath, bytes);
  const bad = await runCli(['verify', out]);
  t.is(bad.code, 3);
  t.true(bad.stdout.includes(`part ${victim.name} is damaged`), bad.stdout);
  // push reads it too, into a registry that needs every blob: the failing blob's part is named.
  const other = await startRegistry({ users: [user] });
  t.teardown(() => other.stop());
  const badPush = await runCli(['push', out, '--registry', `${other.host}/acme`, '--username', user.username, '--password', user.password]);
  t.is(badPush.code, 3, badPush.stderr);
  t.true(badPush.stderr.includes(`part ${victim.name}`), badPush.stderr);
});

(canRunContainerd() ? test.serial : test.skip)('ctr images import loads a bundle under the original image names', async (t) => {
  const { world, v1 } = t.context;
  const containerd = await startContainerd();
  t.teardown(() => containerd.stop());
  const ctr = (...args: string[]) => containerd.ctr('-n', 'k8s.io', ...args);

  // The command docs/bundle-format.md documents, unpacking included.
  await ctr('images', 'import', '--all-platforms', v1);
  const { stdout } = await ctr('images', 'ls');
  const lines = stdout.split('\n');
  for (const img of world.images) {
    const ref = taggedName(parseReference(img.ref));
    const expected = bundledDigest(img);
    const line = lines.find((l) => l.startsWith(ref + ' '));
    t.truthy(line, `${ref} imported:\n${stdout}`);
    t.true(line!.includes(expected), `${ref} has digest ${expected}`);
  }
});
