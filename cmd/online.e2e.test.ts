import anyTest, { type TestFn } from 'ava';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, mkdir, readdir, readFile, rm, stat, writeFile, cp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { promisify } from 'node:util';
import { parse, parseAllDocuments } from 'yaml';
import { startWorld, type World } from '../src/testing/world.js';
import { startProxy, type TestProxy } from '../src/testing/proxy.js';
import { CLI, json, resolveFlags, runCli } from '../src/testing/cli.js';

/**
 * airgap online end to end: the world's app against the proxy emulator. The overlay is checked
 * against the vendor document's form, `kubectl kustomize` renders it, and skopeo pulls a private
 * image by the rendered name with the credentials read back from the rendered Secret.
 */

const run = promisify(execFile);
const NODNS = join(dirname(dirname(CLI)), 'src', 'testing', 'nodns.js');
/** An upstream without a port, known to the second proxy only; `.invalid` never resolves here (nodns). */
const ALIAS = 'registry.acme-vendor.invalid';

interface Ctx { world: World; dir: string; proxy: TestProxy }
const test = anyTest as TestFn<Ctx>;

test.before(async (t) => {
  const world = await startWorld();
  t.context.world = world;
  t.context.dir = await mkdtemp(join(tmpdir(), 'airgap-online-e2e-'));
  // The world's proxy knows the private registry by host:port; this one by a port-free name.
  t.context.proxy = await startProxy({
    licenseId: world.licenseId, appSlug: world.appSlug,
    upstreams: { [ALIAS]: { ...world.upstreamCredentials, address: world.private } },
  });
});

test.after.always(async (t) => {
  await t.context.proxy?.stop();
  await t.context.world?.stop();
  if (t.context.dir) await rm(t.context.dir, { recursive: true, force: true });
});

type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

function flat(objs: Obj[]): Obj[] {
  return objs.flatMap((o) => (typeof o.kind === 'string' && o.kind.endsWith('List') && Array.isArray(o.items) ? flat(o.items) : [o]));
}

function docs(text: string): Obj[] {
  return flat(parseAllDocuments(text).map((d) => d.toJS() as Obj | null).filter((o): o is Obj => o !== null));
}

/** Pod specs by shape, written independently of src/app/scan.ts. */
function podSpecs(o: Obj): Obj[] {
  const s = o.spec;
  return [s, s?.template?.spec, s?.jobTemplate?.spec?.template?.spec].filter((x) => x && Array.isArray(x.containers));
}

const imagesOf = (spec: Obj): string[] =>
  ['initContainers', 'containers', 'ephemeralContainers'].flatMap((k) => (spec[k] ?? []).map((c: Obj) => c.image as string));
const secretsOf = (spec: Obj): string[] => (spec.imagePullSecrets ?? []).map((s: Obj) => s.name as string);
const key = (o: Obj): string => `${o.kind}/${o.metadata?.namespace ?? ''}/${o.metadata?.name}`;

async function walk(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile()) out.push(join(e.parentPath, e.name));
  }
  return out.sort();
}

async function kustomize(dir: string): Promise<Obj[]> {
  const { stdout } = await run('kubectl', ['kustomize', dir], { maxBuffer: 64 << 20 });
  return docs(stdout);
}

/** The reference's tag/digest part exactly as written: what a newName-only rename keeps. */
function suffix(ref: string): string {
  const noDigest = ref.split('@')[0]!;
  const colon = noDigest.lastIndexOf(':');
  return ref.slice(colon > noDigest.lastIndexOf('/') ? colon : noDigest.length);
}
const nameOnly = (ref: string): string => ref.slice(0, ref.length - suffix(ref).length);

test.serial('the overlay has the document\'s form, kustomize renders the proxy names, the secret holds the license for the proxy and vendor registry only', async (t) => {
  const { world, dir } = t.context;
  const out = join(dir, 'doc');
  const r = await runCli(['online', '--manifests', world.appDir, '--license', world.licensePath, '--out', out,
    ...resolveFlags(world), '--namespace', 'shop', '--json']);
  t.is(r.code, 0, r.stderr);
  const s = json<{ images: { ref: string; kind: string; pullAs: string; warning?: string }[]; warnings: string[];
    pullSecret: { name: string; namespaces: string[] } }>(r);
  const proxyOf = (ref: string): string => `${world.proxy}/proxy/${world.appSlug}/${nameOnly(ref)}`;

  // Resolution: the same public/private/vendor decision the world was built with.
  const distinct = new Map(world.images.map((i) => [i.ref, i]));
  t.deepEqual(s.images.map((i) => `${i.ref} ${i.kind}`).sort(), [...distinct.values()].map((i) => `${i.ref} ${i.kind}`).sort());

  // 1. midstream/kustomization.yaml: one `name:` (as written) + `newName:` (proxy) per private image, nothing else.
  const k = parse(await readFile(join(out, 'midstream', 'kustomization.yaml'), 'utf8')) as { images: Obj[]; resources: string[] };
  // The KOTS Application is not applied (KOTS consumes it): an image only it names needs no entry.
  const privates = [...distinct.values()].filter((i) => i.kind === 'private' && !i.additional);
  t.true(privates.length >= 4);
  t.deepEqual(k.images.map((e) => JSON.stringify(e)).sort(),
    privates.map((i) => JSON.stringify({ name: i.ref, newName: proxyOf(i.ref) })).sort());
  t.deepEqual(k.resources, ['../base', 'airgap-pull-secret.yaml']);

  // 2. base/ is the manifests as given, byte for byte.
  //    The KOTS Application is consumed by KOTS, never applied: it is kept under kots/.
  for (const f of await walk(world.appDir)) {
    const rel = relative(world.appDir, f);
    t.deepEqual(await readFile(join(out, rel === 'kots-app.yaml' ? 'kots' : 'base', rel)), await readFile(f), rel);
  }

  // 3. kubectl kustomize renders the proxy names (tag and digest as written), public and vendor images as they were,
  //    and the pull secret on exactly the pod specs that pull from the proxy or the vendor registry.
  const rendered = await kustomize(join(out, 'midstream'));
  const original = docs((await Promise.all((await walk(world.appDir)).map((f) => readFile(f, 'utf8')))).join('\n---\n'));
  const byKey = new Map(rendered.map((o) => [key(o), o]));
  const secret = `${world.appSlug}-registry`;
  let pods = 0;
  for (const given of original) {
    // An object that names no namespace is placed in --namespace (shop); a Namespace stays cluster-wide.
    const o = given.metadata?.namespace || given.kind === 'Namespace' ? given : { ...given, metadata: { ...given.metadata, namespace: 'shop' } };
    const specs = podSpecs(o);
    const after = podSpecs(byKey.get(key(o)) ?? {});
    t.is(after.length, specs.length, key(o));
    specs.forEach((spec, i) => {
      pods++;
      const want = imagesOf(spec).map((ref) => (distinct.get(ref)?.kind === 'private' ? proxyOf(ref) + suffix(ref) : ref));
      t.deepEqual(imagesOf(after[i]!), want, key(o));
      const licensed = imagesOf(spec).some((ref) => distinct.get(ref)?.kind !== 'public');
      t.deepEqual(secretsOf(after[i]!), licensed ? [secret] : [], `${key(o)} imagePullSecrets`);
    });
  }
  t.true(pods >= 8, `${pods} pod specs`);
  t.true(rendered.some((o) => imagesOf(podSpecs(o)[0] ?? { containers: [] }).some((i) => i.includes('@sha256:') && i.startsWith(`${world.proxy}/proxy/`))),
    'a tag+digest private image keeps its digest behind the proxy name');

  // 4. rendered/ is what kustomize gives (images and pull secrets of every object).
  const files = (await walk(join(out, 'rendered'))).filter((f) => /\.ya?ml$/.test(f));
  const fromRendered = docs((await Promise.all(files.map((f) => readFile(f, 'utf8')))).join('\n---\n'));
  t.deepEqual(fromRendered.map(key).sort(), rendered.map(key).sort());
  for (const o of fromRendered) {
    t.deepEqual(podSpecs(o).map(imagesOf), podSpecs(byKey.get(key(o))!).map(imagesOf), key(o));
    t.deepEqual(podSpecs(o).map(secretsOf), podSpecs(byKey.get(key(o))!).map(secretsOf), key(o));
  }

  // 5. The Secret: in the app's namespace and every other one, credentials for the proxy and the vendor registry only.
  const secrets = rendered.filter((o) => o.kind === 'Secret' && o.metadata?.name === secret);
  t.deepEqual(secrets.map((o) => o.metadata.namespace).sort(), ['shop', ...world.namespaces].sort());
  t.deepEqual(s.pullSecret.namespaces, ['shop', ...world.namespaces].sort());
  for (const o of secrets) {
    t.is(o.type, 'kubernetes.io/dockerconfigjson');
    const cfg = JSON.parse(Buffer.from(o.data['.dockerconfigjson'], 'base64').toString()) as { auths: Record<string, { auth: string }> };
    t.deepEqual(Object.keys(cfg.auths).sort(), [world.proxy, world.vendor].sort());
    for (const a of Object.values(cfg.auths)) t.is(Buffer.from(a.auth, 'base64').toString(), `${world.licenseId}:${world.licenseId}`);
  }

  // 6. The license ID is written in the two secret files only, each readable by its owner only; never printed.
  const holding = [];
  for (const f of await walk(out)) {
    const text = await readFile(f, 'utf8');
    const decoded = [...text.matchAll(/"([A-Za-z0-9+/=]{40,})"/g)].map((m) => Buffer.from(m[1]!, 'base64').toString());
    if (text.includes(world.licenseId) || decoded.some((d) => d.includes(world.licenseId))) holding.push(relative(out, f));
  }
  t.deepEqual(holding.sort(), ['midstream/airgap-pull-secret.yaml', 'rendered/airgap-pull-secret.yaml']);
  for (const f of holding) t.is((await stat(join(out, f))).mode & 0o777, 0o600, f);
  t.false((r.stdout + r.stderr).includes(world.licenseId));

  // 7. The world's private upstream has a port: every private image is warned about, by name and file:line.
  const allPrivates = [...distinct.values()].filter((i) => i.kind === 'private');
  for (const i of allPrivates) {
    const w = s.images.find((x) => x.ref === i.ref)?.warning ?? '';
    t.regex(w, /will refuse its proxy name/, i.ref);
    t.regex(w, /[a-z-]+\.yaml:\d+/, i.ref);
    t.true(w.includes(proxyOf(i.ref) + suffix(i.ref)), w);
  }
  t.is(s.warnings.length, allPrivates.length);
  t.false(s.images.some((i) => i.kind !== 'private' && i.warning !== undefined));
});

test.serial('a port-free upstream: the rendered name and the rendered secret pull the image through the proxy (skopeo); digest-only works', async (t) => {
  const { world, dir, proxy } = t.context;
  const api = world.images.find((i) => i.name.endsWith('/acme/api'))!;
  const worker = world.images.find((i) => i.name.endsWith('/acme/worker'))!;
  const redis = world.images.find((i) => i.name.endsWith('/library/redis'))!;
  const app = join(dir, 'alias-app');
  await mkdir(app, { recursive: true });
  await writeFile(join(app, 'api.yaml'), `apiVersion: apps/v1
kind: Deployment
metadata:
  name: api
spec:
  selector:
    matchLabels: {app: api}
  template:
    metadata:
      labels: {app: api}
    spec:
      containers:
        - name: api
          image: ${ALIAS}/acme/api:${api.tag}
        - name: worker
          image: ${ALIAS}/acme/worker@${worker.digest}
        - name: cache
          image: ${redis.ref}
`);
  const out = join(dir, 'alias');
  const r = await runCli(['online', '--manifests', app, '--license', world.licensePath, '--out', out,
    '--proxy-host', proxy.host, '--replicated-registry', world.vendor, '--namespace', 'shop', '--json'],
  { env: { NODE_OPTIONS: `--import=${NODNS}`, AIRGAP_RETRY_BASE_MS: '5' } });
  t.is(r.code, 0, r.stderr);
  const s = json<{ images: { ref: string; kind: string; warning?: string }[]; warnings: string[] }>(r);
  t.deepEqual(s.images.map((i) => i.kind).sort(), ['private', 'private', 'public']);
  t.false(s.images.some((i) => i.warning !== undefined), 'a port-free upstream gives valid proxy names');
  t.deepEqual(s.warnings.length, 1);
  t.regex(s.warnings[0]!, new RegExp(`${ALIAS.replace(/\./g, '\\.')} does not resolve`));

  // What a cluster would get: the Deployment's images and the Secret, from kubectl kustomize.
  const rendered = await kustomize(join(out, 'midstream'));
  const deploy = rendered.find((o) => o.kind === 'Deployment')!;
  const images = imagesOf(podSpecs(deploy)[0]!);
  const base = `${proxy.host}/proxy/${world.appSlug}/${ALIAS}`;
  t.deepEqual(images, [`${base}/acme/api:${api.tag}`, `${base}/acme/worker@${worker.digest}`, redis.ref]);
  t.deepEqual(secretsOf(podSpecs(deploy)[0]!), [`${world.appSlug}-registry`]);
  const secret = rendered.find((o) => o.kind === 'Secret' && o.metadata?.namespace === 'shop')!;
  // The .dockerconfigjson is an auth file skopeo reads as it is.
  const authfile = join(dir, 'alias-auth.json');
  await writeFile(authfile, Buffer.from(secret.data['.dockerconfigjson'], 'base64'), { mode: 0o600 });

  proxy.reset();
  const inspect = async (ref: string, auth: string[]): Promise<string> => {
    const { stdout } = await run('skopeo', ['--insecure-policy', 'inspect', '--raw', '--tls-verify=false', ...auth, `docker://${ref}`],
      { encoding: 'buffer', maxBuffer: 1 << 24 });
    return 'sha256:' + createHash('sha256').update(stdout).digest('hex');
  };
  t.is(await inspect(images[0]!, ['--authfile', authfile]), api.digest);
  t.is(await inspect(images[1]!, ['--authfile', authfile]), worker.digest);
  await t.throwsAsync(inspect(images[0]!, ['--no-creds']), undefined, 'the proxy refuses the name without the secret');

  // A whole pull, layers included, by the rendered name.
  const layout = join(dir, 'alias-pulled');
  await run('skopeo', ['--insecure-policy', 'copy', '--src-tls-verify=false', '--authfile', authfile,
    `docker://${images[0]!}`, `oci:${layout}:api`]);
  for (const layer of api.layers) {
    t.true((await stat(join(layout, 'blobs', 'sha256', layer.slice('sha256:'.length)))).isFile(), layer);
  }
  t.true(proxy.count(`/v2/proxy/${world.appSlug}/${ALIAS}/acme/api/blobs/`) >= api.layers.length, 'the layers came through the proxy');
});

test('the same refusals as build, and errors that name the image', async (t) => {
  const { world, dir, proxy } = t.context;
  // Unrendered template syntax: refused before any network work, exit 2.
  const templated = join(dir, 'templated');
  await cp(world.appDir, templated, { recursive: true });
  await writeFile(join(templated, 'extra.yaml'),
    'apiVersion: v1\nkind: Pod\nmetadata:\n  name: t\nspec:\n  containers:\n    - name: c\n      image: {{repl ConfigOption "image"}}\n');
  const r1 = await runCli(['online', '--manifests', templated, '--license', world.licensePath, '--out', join(dir, 'templated-out'), ...resolveFlags(world)]);
  t.is(r1.code, 2, r1.stderr);
  t.regex(r1.stderr, /extra\.yaml:8/);
  await t.throwsAsync(stat(join(dir, 'templated-out')), undefined, 'nothing written');

  // A private image the proxy does not serve: one line naming the reference, its file:line and the proxy's answer.
  const missing = join(dir, 'missing');
  await mkdir(missing);
  await writeFile(join(missing, 'pod.yaml'), `apiVersion: v1\nkind: Pod\nmetadata:\n  name: m\nspec:\n  containers:\n    - name: c\n      image: ${ALIAS}/acme/nope:9\n`);
  const r2 = await runCli(['online', '--manifests', missing, '--license', world.licensePath, '--out', join(dir, 'missing-out'),
    '--proxy-host', proxy.host, '--replicated-registry', world.vendor],
  { env: { NODE_OPTIONS: `--import=${NODNS}`, AIRGAP_RETRY_BASE_MS: '5' } });
  t.is(r2.code, 1, r2.stderr);
  t.is(r2.stderr.trim().split('\n').length, 1, r2.stderr);
  t.true(r2.stderr.includes(`${ALIAS}/acme/nope:9 (pod.yaml:8): not found through the vendor proxy ${proxy.host}`), r2.stderr);
  t.regex(r2.stderr, /404/);
  t.false((r2.stdout + r2.stderr).includes(world.licenseId));
  await t.throwsAsync(stat(join(dir, 'missing-out')), undefined, 'nothing written');

  // A used output directory is refused before anything is resolved.
  const used = join(dir, 'used');
  await mkdir(used);
  await writeFile(join(used, 'keep.txt'), 'x');
  const r3 = await runCli(['online', '--manifests', world.appDir, '--license', world.licensePath, '--out', used, ...resolveFlags(world)]);
  t.is(r3.code, 1);
  t.regex(r3.stderr, /not empty/);
  t.deepEqual(await readdir(used), ['keep.txt']);
});

test('without --json: a table, one warning line per image whose proxy name the runtime will refuse, and the files not read', async (t) => {
  const { world, dir } = t.context;
  const app = join(dir, 'text-app');
  await cp(world.appDir, app, { recursive: true });
  await writeFile(join(app, 'NOTES.md'), 'image: not/an-image:1\n');
  const r = await runCli(['online', '--manifests', app, '--license', world.licensePath, '--out', join(dir, 'text'), ...resolveFlags(world)]);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stderr, /^not read: NOTES\.md \(/m);
  const warnings = r.stderr.split('\n').filter((l) => l.startsWith('airgap: warning:'));
  t.is(warnings.length, new Set(world.images.filter((i) => i.kind === 'private').map((i) => i.ref)).size, r.stderr);
  t.regex(r.stdout, /^IMAGE\s+KIND\s+PULLED AS/m);
  t.regex(r.stdout, /pull secret acme-shop-registry/);
  t.false((r.stdout + r.stderr).includes(world.licenseId));
});
