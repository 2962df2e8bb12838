import anyTest, { type ExecutionContext, type TestFn } from 'ava';
import { execFile, execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFile, mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { parse } from 'yaml';
import { seedImage } from '../src/testing/fixtures.js';
import { pushForeignImage, startLayerServer, type ForeignImage, type LayerServer } from '../src/testing/foreign.js';
import { startRegistry, type TestRegistry } from '../src/testing/registry.js';
import { CLI, json, runCli, type CliResult } from '../src/testing/cli.js';

/**
 * What goes into a bundle from the release directory: the license never does (as a file, or its
 * ID inside a Secret); symlinked manifests inside the directory do, links out of it, loops and
 * FIFOs are refused; foreign layers are said at build and carried and pushed when asked.
 */

interface Ctx {
  dir: string;
  source: TestRegistry;
  customer: TestRegistry;
  layers: LayerServer;
  license: string;
  licenseId: string;
  image: string;
  windows: ForeignImage;
}
const test = anyTest as TestFn<Ctx>;
const LICENSE = join(dirname(dirname(dirname(CLI))), 'testdata', 'license.yaml');
const ENV = { AIRGAP_RETRY_BASE_MS: '5' };
const run = promisify(execFile);

function deployment(name: string, image: string): string {
  return `apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: ${name}\nspec:\n  template:\n    spec:\n      containers:\n        - name: ${name}\n          image: ${image}\n`;
}

test.before(async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'airgap-inputs-e2e-'));
  t.context.dir = dir;
  t.context.source = await startRegistry({ foreignUrls: true });
  t.context.customer = await startRegistry({ foreignUrls: true });
  t.context.layers = await startLayerServer();
  const license = join(dir, 'license.yaml');
  await copyFile(LICENSE, license);
  const licenseId = (parse(await readFile(license, 'utf8')) as { spec: { licenseID: string } }).spec.licenseID;
  const [img, windows] = await Promise.all([
    seedImage(t.context.source, { repo: 'shop/web', tag: '1.0', layers: [{ seed: 'web-1', size: 4096 }] }),
    pushForeignImage(t.context.source.host, 'shop/win', '1.0', t.context.layers),
  ]);
  Object.assign(t.context, { license, licenseId, image: img.ref, windows } satisfies Partial<Ctx>);
});

test.after.always(async (t) => {
  await Promise.allSettled([t.context.source?.stop(), t.context.customer?.stop(), t.context.layers?.stop()]);
  if (t.context.dir) await rm(t.context.dir, { recursive: true, force: true });
});

async function appWith(t: ExecutionContext<Ctx>, files: Record<string, string>): Promise<string> {
  const d = await mkdtemp(join(t.context.dir, 'app-'));
  for (const [name, text] of Object.entries(files)) {
    await mkdir(dirname(join(d, name)), { recursive: true });
    await writeFile(join(d, name), text);
  }
  return d;
}

/** Builds into a fresh directory; a failed build must leave that directory empty. */
async function build(t: ExecutionContext<Ctx>, app: string, extra: string[] = []): Promise<{ r: CliResult; out: string }> {
  const out = join(await mkdtemp(join(t.context.dir, 'out-')), 'b.tar');
  const r = await runCli(['build', '--manifests', app, '--license', t.context.license, '--out', out, ...extra], { env: ENV });
  if (r.code !== 0) t.deepEqual(await readdir(dirname(out)), [], 'a failed build writes nothing');
  return { r, out };
}

/** Exit 2, one `airgap:` line matching every pattern, and no license ID in any spelling. */
function refused(t: ExecutionContext<Ctx>, r: CliResult, ...patterns: RegExp[]): void {
  t.is(r.code, 2, r.stderr);
  const lines = r.stderr.split('\n').filter((l) => l.startsWith('airgap:'));
  t.is(lines.length, 1, r.stderr);
  for (const p of patterns) t.regex(lines[0] ?? '', p);
  const id = t.context.licenseId;
  for (const spelling of [id, Buffer.from(id).toString('base64').slice(0, 20)]) {
    t.false(r.stderr.includes(spelling) || r.stdout.includes(spelling), 'the license ID is never printed');
  }
}

test('a release directory holding the license file is refused, nothing written', async (t) => {
  const app = await appWith(t, { 'web.yaml': deployment('web', t.context.image) });
  await copyFile(t.context.license, join(app, 'license.yaml'));
  const { r } = await build(t, app);
  refused(t, r, /license\.yaml:\d+ \(a kind: License document\)/, /move the file out of the --manifests directory/);
});

test('a Secret holding the license ID base64-encoded is refused, naming file:line', async (t) => {
  const b64 = Buffer.from(`id=${t.context.licenseId}\n`).toString('base64');
  const secret = `apiVersion: v1\nkind: Secret\nmetadata:\n  name: license\ntype: Opaque\ndata:\n  license: ${b64}\n`;
  const app = await appWith(t, { 'web.yaml': deployment('web', t.context.image), 'secrets/license.yaml': secret });
  const { r } = await build(t, app);
  refused(t, r, /secrets\/license\.yaml:7 \(the license ID, base64-encoded\)/);
  // plan says the same, before any registry is asked.
  const p = await runCli(['plan', '--manifests', app, '--license', t.context.license], { env: ENV });
  refused(t, p, /secrets\/license\.yaml:7/);
});

test('a symlinked manifest and a symlinked directory inside the directory are bundled and rewritten; plan lists what it does not read', async (t) => {
  const app = await appWith(t, {
    'web.yaml': deployment('web', t.context.image),
    '.versions/worker-1.4.yaml': deployment('worker', t.context.image),
    '.versions/jobs/migrate.yaml': deployment('migrate', t.context.image),
    'README.md': 'how to release\n',
  });
  await symlink('.versions/worker-1.4.yaml', join(app, 'worker.yaml'));
  await symlink('.versions/jobs', join(app, 'jobs'));
  const { r, out } = await build(t, app);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stderr, /not read: README\.md \(not a manifest/, 'build says what it leaves out too');
  const info = json<{ appFiles: string[] }>(await runCli(['inspect', out, '--json']));
  t.deepEqual(info.appFiles, ['jobs/migrate.yaml', 'web.yaml', 'worker.yaml']);

  const rw = join(t.context.dir, `rewrite-${Date.now()}`);
  const w = await runCli(['rewrite', out, '--registry', `${t.context.customer.host}/shop`, '--out', rw]);
  t.is(w.code, 0, w.stderr);
  for (const f of ['worker.yaml', 'jobs/migrate.yaml']) {
    const rendered = await readFile(join(rw, 'rendered', f), 'utf8');
    t.regex(rendered, new RegExp(`image: ${t.context.customer.host}/shop/web:1\\.0`), f);
  }

  const p = await runCli(['plan', '--manifests', app, '--license', t.context.license]);
  t.is(p.code, 0, p.stderr);
  t.regex(p.stdout, /not read: \.versions\/ \(hidden\)/);
  t.regex(p.stdout, /not read: README\.md \(not a manifest/);
  const pj = json<{ notRead: { path: string }[] }>(await runCli(['plan', '--manifests', app, '--license', t.context.license, '--json']));
  t.deepEqual(pj.notRead.map((n) => n.path), ['.versions/', 'README.md']);
});

test('a link out of the directory, a link loop and a FIFO are refused, naming them', async (t) => {
  const outside = join(t.context.dir, 'outside.yaml');
  await writeFile(outside, deployment('worker', t.context.image));
  const a = await appWith(t, { 'web.yaml': deployment('web', t.context.image) });
  await symlink(outside, join(a, 'worker.yaml'));
  refused(t, (await build(t, a)).r, /^airgap: worker\.yaml \(under --manifests\): symbolic link to .*outside\.yaml leaves the manifests directory/);

  const b = await appWith(t, { 'web.yaml': deployment('web', t.context.image) });
  await symlink('loop-b.yaml', join(b, 'loop-a.yaml'));
  await symlink('loop-a.yaml', join(b, 'loop-b.yaml'));
  refused(t, (await build(t, b)).r, /loop-a\.yaml .*symbolic link loop/);

  const c = await appWith(t, { 'web.yaml': deployment('web', t.context.image), 'sub/ok.yaml': 'kind: ConfigMap\n' });
  await symlink('..', join(c, 'sub', 'parent'));
  refused(t, (await build(t, c)).r, /sub\/parent .*symbolic link loop/);

  const d = await appWith(t, { 'web.yaml': deployment('web', t.context.image) });
  execFileSync('mkfifo', [join(d, 'worker.yaml')]);
  refused(t, (await build(t, d)).r, /worker\.yaml .*is a FIFO \(named pipe\)/);
});

test('rewrite refuses manifests holding the customer registry password, writing nothing', async (t) => {
  const password = `Cust-${Math.random().toString(36).slice(2)}-pw`;
  const cm = `apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: db\ndata:\n  url: postgres://app:${password}@db:5432/app\n`;
  const app = await appWith(t, { 'web.yaml': deployment('web', t.context.image), 'db.yaml': cm });
  const { r, out } = await build(t, app);
  t.is(r.code, 0, r.stderr);
  const rw = join(t.context.dir, `rewrite-pw-${Date.now()}`);
  const w = await runCli(['rewrite', out, '--registry', `${t.context.customer.host}/shop`, '--out', rw,
    '--username', 'deployer', '--password-stdin'], { input: password });
  t.is(w.code, 2, w.stderr);
  t.regex(w.stderr, /app\/db\.yaml:6 \(as written\)/);
  t.false(w.stderr.includes(password));
  await t.throwsAsync(readdir(rw), { code: 'ENOENT' });
});

async function bundleBlobs(bundle: string): Promise<string[]> {
  const { stdout } = await run('tar', ['-tf', bundle], { maxBuffer: 16 * 1024 * 1024 });
  return stdout.split('\n').filter((l) => l.startsWith('blobs/sha256/')).map((l) => `sha256:${l.slice('blobs/sha256/'.length)}`);
}

test('foreign layers: a warning per image without the flag; carried, verified and pushed with it', async (t) => {
  const { windows, layers, customer } = t.context;
  const app = await appWith(t, { 'win.yaml': deployment('win', windows.ref) });
  const foreign = windows.foreign.descriptor.digest;

  const plain = await build(t, app);
  t.is(plain.r.code, 0, plain.r.stderr);
  t.regex(plain.r.stderr, new RegExp(`warning: ${windows.ref.replace(/[.]/g, '\\.')}: 1 foreign layer\\(s\\) not carried.*${foreign}.*--include-foreign-layers`));
  t.false((await bundleBlobs(plain.out)).includes(foreign));
  t.deepEqual(layers.requests, [], 'nothing fetched from the layer URL without the flag');

  const carried = await build(t, app, ['--include-foreign-layers', '--json']);
  t.is(carried.r.code, 0, carried.r.stderr);
  const summary = json<{ foreignLayers: { digest: string; carried: boolean; image: string }[] }>(carried.r);
  t.deepEqual(summary.foreignLayers.map((l) => [l.image, l.digest, l.carried]), [[windows.ref, foreign, true]]);
  t.true((await bundleBlobs(carried.out)).includes(foreign));
  t.true(layers.requests.some((p) => foreign.endsWith(p.split('/').pop()!)), 'fetched from its URL (the registry does not hold it)');
  const v = await runCli(['verify', carried.out]);
  t.is(v.code, 0, v.stdout + v.stderr);

  const p = await runCli(['push', carried.out, '--registry', `${customer.host}/shop`], { env: ENV });
  t.is(p.code, 0, p.stderr);
  // The URL is gone: skopeo must find the layer in the customer registry.
  await layers.stop();
  const copy = join(t.context.dir, 'skopeo-win');
  await run('skopeo', ['--insecure-policy', 'copy', '--src-tls-verify=false', `docker://${customer.host}/shop/win:1.0`, `dir:${copy}`]);
  const bytes = await readFile(join(copy, foreign.slice('sha256:'.length)));
  t.is(`sha256:${createHash('sha256').update(bytes).digest('hex')}`, foreign);
  const { stdout } = await run('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${customer.host}/shop/win:1.0`]);
  t.is(`sha256:${createHash('sha256').update(stdout).digest('hex')}`, windows.digest, 'the manifest is pushed unchanged');

  // Neither in the registry nor at its URL (the server is gone): an error naming the layer, nothing written.
  const lost = await build(t, app, ['--include-foreign-layers']);
  t.is(lost.r.code, 1, lost.r.stderr);
  t.regex(lost.r.stderr, new RegExp(`foreign layer ${foreign} is neither on registry .* nor at its URLs \\(GET http://127\\.0\\.0\\.1:\\d+/layers/`));

  // A registry that refuses foreign URLs (distribution's default) gets a line that says why.
  const strict = await startRegistry();
  t.teardown(() => strict.stop());
  const refusedPush = await runCli(['push', carried.out, '--registry', `${strict.host}/shop`], { env: ENV });
  t.is(refusedPush.code, 1, refusedPush.stderr);
  t.regex(refusedPush.stderr, /the manifest has foreign layers that name URLs.*validation\.manifests\.urls\.allow/);
});
