import test from 'ava';
import { execFile } from 'node:child_process';
import { mkdtemp, mkdir, writeFile, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { promisify } from 'node:util';
import { parse, parseAllDocuments } from 'yaml';
import { scanManifests } from './scan.js';
import { retargetApp, writeRetargeted, type RetargetOptions } from './retarget.js';
import { imageEntries } from './kustomize.js';
import { nameOf, parseReference, type Reference } from '../reference.js';

/** The rename form of the rewrite (`airgap online`): only private images change name, tag and digest stay. */

const run = promisify(execFile);
const D = 'sha256:' + 'd'.repeat(64);
const PROXY = 'proxy.replicated.com';
const VENDOR = 'registry.replicated.com';
const PRIVATE = new Set(['quay.io/my-org/api', 'quay.io/my-org/worker', 'docker.io/myorg/secret', 'quay.io/my-org/debug']);
const isPrivate = (ref: Reference): boolean => PRIVATE.has(nameOf(ref));
const licensed = (ref: Reference): boolean => isPrivate(ref) || ref.registry === VENDOR;
const OPTS: RetargetOptions = {
  host: [PROXY, VENDOR],
  appSlug: 'my-kots-app',
  form: 'rename',
  mapping: (ref) => (isPrivate(ref) ? `${PROXY}/proxy/my-kots-app/${nameOf(ref)}` : undefined),
  needsSecret: (refs) => refs.some(licensed),
  secret: { username: 'LICENSE-ID-1', password: 'LICENSE-ID-1' },
  namespace: 'shop',
};

const FILES: Record<string, string> = {
  'api.yaml': `apiVersion: apps/v1
kind: Deployment
metadata: {name: api}
spec:
  template:
    spec:
      initContainers:
        - name: migrate
          image: "quay.io/my-org/worker@${D}"   # digest only: fine online
      containers:
        - name: api
          image: quay.io/my-org/api:v1.0.1
        - name: api-pinned
          image: 'quay.io/my-org/api:v1.0.2@${D}'
        - name: hub
          image: myorg/secret:1
`,
  'public.yaml': `apiVersion: v1
kind: Pod
metadata: {name: cache}
spec:
  containers:
    - name: redis
      image: redis:7
`,
  'edge.yaml': `apiVersion: v1
kind: Pod
metadata: {name: front, namespace: edge}
spec:
  containers:
    - name: front
      image: registry.replicated.com/my-kots-app/front:2
    - name: plain
      image: redis:7
  ephemeralContainers:
    - name: debug
      image: quay.io/my-org/debug
`,
};

async function tree(t: { teardown(fn: () => Promise<void>): void }, files: Record<string, string>): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'airgap-rename-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  for (const [path, text] of Object.entries(files)) {
    await mkdir(dirname(join(dir, path)), { recursive: true });
    await writeFile(join(dir, path), text);
  }
  return dir;
}

interface Obj { kind?: string; metadata?: { name?: string; namespace?: string }; spec?: Record<string, any>; data?: Record<string, string> } // eslint-disable-line

function objects(text: string): Obj[] {
  return parseAllDocuments(text).flatMap((d) => { const o = d.toJS() as Obj | null; return o ? [o] : []; });
}

/** kind/ns/name → [images of every container list], [imagePullSecrets], independently of scan.ts. */
function pods(objs: Obj[]): Record<string, { images: string[]; secrets: string[] }> {
  const out: Record<string, { images: string[]; secrets: string[] }> = {};
  for (const o of objs) {
    const spec = o.spec?.['template']?.['spec'] ?? o.spec;
    if (!spec || !Array.isArray(spec['containers'])) continue;
    out[`${o.kind}/${o.metadata?.namespace ?? ''}/${o.metadata?.name}`] = {
      images: ['initContainers', 'containers', 'ephemeralContainers'].flatMap((k) => (spec[k] ?? []).map((c: { image: string }) => c.image)),
      secrets: (spec['imagePullSecrets'] ?? []).map((s: { name: string }) => s.name),
    };
  }
  return out;
}

// Objects that name no namespace are put in --namespace (shop); edge's Pod keeps its own.
const EXPECTED = {
  'Deployment/shop/api': {
    images: [`${PROXY}/proxy/my-kots-app/quay.io/my-org/worker@${D}`, `${PROXY}/proxy/my-kots-app/quay.io/my-org/api:v1.0.1`,
      `${PROXY}/proxy/my-kots-app/quay.io/my-org/api:v1.0.2@${D}`, `${PROXY}/proxy/my-kots-app/docker.io/myorg/secret:1`],
    secrets: ['my-kots-app-registry'],
  },
  'Pod/shop/cache': { images: ['redis:7'], secrets: [] },
  'Pod/edge/front': {
    images: ['registry.replicated.com/my-kots-app/front:2', 'redis:7', `${PROXY}/proxy/my-kots-app/quay.io/my-org/debug`],
    secrets: ['my-kots-app-registry'],
  },
};

test('rename: private images get the proxy name with tag and digest as written; the secret only where licensed images are pulled', async (t) => {
  const scan = await scanManifests(await tree(t, FILES));
  const result = retargetApp(scan, OPTS);
  const text = Object.fromEntries(result.rendered.map((f) => [f.path, f.content.toString()]));
  t.deepEqual(pods(Object.values(text).flatMap(objects)), EXPECTED);
  t.is(text['public.yaml'], FILES['public.yaml']!.replace('{name: cache}', '{namespace: shop, name: cache}'),
    'a file with public images only gets its namespace and nothing else');
  t.true(text['api.yaml']?.includes(`image: "${PROXY}/proxy/my-kots-app/quay.io/my-org/worker@${D}"   # digest only: fine online`));

  const secrets = objects(text['airgap-pull-secret.yaml'] ?? '');
  t.deepEqual(secrets.map((s) => s.metadata?.namespace), ['edge', 'shop']);
  const cfg = JSON.parse(Buffer.from(secrets[0]?.data?.['.dockerconfigjson'] ?? '', 'base64').toString()) as { auths: Record<string, { auth: string }> };
  t.deepEqual(Object.keys(cfg.auths).sort(), [PROXY, VENDOR]);
  for (const a of Object.values(cfg.auths)) t.is(Buffer.from(a.auth, 'base64').toString(), 'LICENSE-ID-1:LICENSE-ID-1');
});

test('rename: the images: entries are the document\'s form, name as written and newName only', async (t) => {
  const scan = await scanManifests(await tree(t, FILES));
  const k = parse(retargetApp(scan, OPTS).kustomization) as { images: Record<string, string>[] };
  t.deepEqual(k.images, [
    { name: 'myorg/secret:1', newName: `${PROXY}/proxy/my-kots-app/docker.io/myorg/secret` },
    { name: 'quay.io/my-org/api:v1.0.1', newName: `${PROXY}/proxy/my-kots-app/quay.io/my-org/api` },
    { name: `quay.io/my-org/api:v1.0.2@${D}`, newName: `${PROXY}/proxy/my-kots-app/quay.io/my-org/api` },
    { name: `quay.io/my-org/worker@${D}`, newName: `${PROXY}/proxy/my-kots-app/quay.io/my-org/worker` },
    { name: 'quay.io/my-org/debug', newName: `${PROXY}/proxy/my-kots-app/quay.io/my-org/debug` },
  ]);
});

test('rename entries: one written name with two new names is a collision', (t) => {
  const img = (written: string, target: string) => ({ written, ref: parseReference(written), target, rename: true });
  t.throws(() => imageEntries([img('quay.io/a/b:1', 'p/x'), img('quay.io/a/b:1', 'p/y')]), { code: 'E_COLLISION' });
  t.deepEqual(imageEntries([img('[::1]:5000/a:1', 'p/a')]), [{ name: '\\[::1\\]:5000/a:1', newName: 'p/a' }]);
});

test('rename: kubectl kustomize OUT/midstream renders what rendered/ holds; the secret files are 0600', async (t) => {
  const scan = await scanManifests(await tree(t, FILES));
  const out = join(await mkdtemp(join(tmpdir(), 'airgap-rename-out-')), 'out');
  t.teardown(() => rm(dirname(out), { recursive: true, force: true }));
  await writeRetargeted(retargetApp(scan, OPTS), out);
  const { stdout } = await run('kubectl', ['kustomize', join(out, 'midstream')], { maxBuffer: 64 << 20 });
  t.deepEqual(pods(objects(stdout)), EXPECTED);
  const rendered = await Promise.all([...Object.keys(FILES), 'airgap-pull-secret.yaml'].map((f) => readFile(join(out, 'rendered', f), 'utf8')));
  const byId = (objs: Obj[]) => objs.map((o) => [`${o.kind}/${o.metadata?.namespace ?? ''}/${o.metadata?.name}`, o] as const)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  t.deepEqual(byId(objects(stdout)), byId(rendered.flatMap(objects)));
  for (const dir of ['rendered', 'midstream']) {
    t.is((await stat(join(out, dir, 'airgap-pull-secret.yaml'))).mode & 0o777, 0o600, dir);
  }
});
