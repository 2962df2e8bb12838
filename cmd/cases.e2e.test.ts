import anyTest, { type TestFn } from 'ava';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { cp, mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { promisify } from 'node:util';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { parseAllDocuments } from 'yaml';
import { type World, type WorldImage } from '../src/testing/world.js';
import type { TestRegistry } from '../src/testing/registry.js';
import { startStage, stopStage } from '../src/testing/stage.js';
import { resolveFlags, runCli, json, type CliResult } from '../src/testing/cli.js';
import { lastComponent, parseReference, taggedName } from '../src/reference.js';

/**
 * testdata/cases: the shapes real releases keep images in (deep pod specs, JSON, operators,
 * kustomize, already-proxied references) and what must be refused at build (testdata/cases/README.md).
 */
const run = promisify(execFile);
interface Ctx { world: World; dir: string; customer: TestRegistry; user: { username: string; password: string } }
const test = anyTest as TestFn<Ctx>;

test.before(async (t) => {
  await startStage(t.context, 'cases', { world: { app: 'cases' } });
});

test.after.always((t) => stopStage(t.context));

/** The world images a case names, by repository. */
function expected(world: World, repos: string[]): WorldImage[] {
  const out = world.images.filter((i) => repos.includes(i.repo));
  if (out.length !== repos.length) throw new Error(`catalog lacks one of ${repos.join(', ')}`);
  return out;
}

const REAL = ['library/nginx', 'library/busybox', 'bitnami/kubectl', 'library/redis', 'library/alpine',
  'prometheus-operator/prometheus-operator', 'prometheus-operator/prometheus-config-reloader', 'prometheus/prometheus',
  'acme/db-operand', 'acme/collector'];

async function bundleRefs(bundle: string): Promise<string[]> {
  const index = JSON.parse((await run('tar', ['-xOf', bundle, 'index.json'])).stdout) as
    { manifests: { annotations: Record<string, string> }[] };
  return index.manifests.map((m) => m.annotations['org.opencontainers.image.ref.name']!).sort();
}

async function build(t: { context: Ctx }, app: string, out: string, extra: string[] = [], env?: Record<string, string>): Promise<CliResult> {
  const { world } = t.context;
  return runCli(['build', '--manifests', join(world.appDir, app), '--license', world.licensePath, '--out', out,
    ...resolveFlags(world), ...extra], env ? { env } : {});
}

async function install(t: { context: Ctx }, bundle: string, out: string, ns: string): Promise<string> {
  const { customer, user } = t.context;
  const registry = `${customer.host}/${ns}`;
  const r = await runCli(['install', bundle, '--registry', registry, '--username', user.username, '--password', user.password,
    '--out', out, '--namespace', 'shop', '--json']);
  if (r.code !== 0) throw new Error(`install failed (${r.code}): ${r.stderr}`);
  return registry;
}

async function textFiles(dir: string): Promise<Map<string, string>> {
  const files = new Map<string, string>();
  for (const e of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (e.isFile()) files.set(relative(dir, join(e.parentPath, e.name)), await readFile(join(e.parentPath, e.name), 'utf8'));
  }
  return files;
}

type Obj = Record<string, any>;
const key = (o: Obj): string => `${o.apiVersion}/${o.kind}/${o.metadata?.namespace ?? ''}/${o.metadata?.name}`;

/** Every object of rendered/ (YAML and JSON files) and every object `kubectl kustomize midstream` gives: the same. */
async function assertMidstreamMatches(t: { deepEqual(a: unknown, b: unknown, m?: string): void; is(a: unknown, b: unknown, m?: string): void }, out: string): Promise<void> {
  const rendered: Obj[] = [];
  for (const [, text] of await textFiles(join(out, 'rendered'))) {
    for (const d of parseAllDocuments(text)) {
      const o = d.toJS() as Obj | null;
      if (o) rendered.push(...(String(o.kind).endsWith('List') && Array.isArray(o.items) ? o.items as Obj[] : [o]));
    }
  }
  const { stdout } = await run('kubectl', ['kustomize', join(out, 'midstream')], { maxBuffer: 1 << 26 });
  const viaKustomize = parseAllDocuments(stdout).map((d) => d.toJS() as Obj);
  t.deepEqual(viaKustomize.map(key).sort(), rendered.map(key).sort(), 'the same objects');
  const byKey = new Map(viaKustomize.map((o) => [key(o), o]));
  for (const o of rendered) t.deepEqual(byKey.get(key(o)), o, key(o));
}

test.serial('real: plan finds the images of deep pod specs, JSON, operators and the proxy; warns about the undeclared one', async (t) => {
  const { world } = t.context;
  const dir = join(world.appDir, 'real');
  const r = await runCli(['plan', '--manifests', dir, '--license', world.licensePath, ...resolveFlags(world), '--json']);
  t.is(r.code, 0, r.stderr);
  const plan = json<{ images: { ref: string; kind: string; pullFrom: string }[]; findings: Record<string, unknown>[] }>(r);
  const want = expected(world, REAL);
  t.deepEqual(plan.images.map((i) => taggedName(parseReference(i.ref))).sort(), want.map((i) => taggedName(parseReference(i.ref))).sort());
  const proxied = want.find((i) => i.proxied)!;
  const got = plan.images.find((i) => i.ref === taggedName(parseReference(proxied.ref)))!;
  t.is(got.kind, 'private');
  t.is(got.pullFrom, proxied.name, 'pulled as written, never proxied a second time');
  const thanos = `${world.public}/thanos/thanos:v0.34.0`;
  t.is(plan.findings.length, 1, JSON.stringify(plan.findings));
  t.like(plan.findings[0], { severity: 'warning', code: 'undeclared-image', file: 'operator.yaml' });
  const lines = (await readFile(join(dir, 'operator.yaml'), 'utf8')).split('\n');
  t.true(lines[(plan.findings[0]!.line as number) - 1]!.includes(thanos), 'the line named holds the reference');
  t.regex(String(plan.findings[0]!.hint), /additionalImages/);

  const text = await runCli(['plan', '--manifests', dir, '--license', world.licensePath, ...resolveFlags(world)]);
  t.is(text.code, 0, text.stderr);
  t.regex(text.stdout, new RegExp(`warning: operator\\.yaml:\\d+: ${thanos.replace(/[.]/g, '\\.')} .*additionalImages`));
});

test.serial('real: the bundle holds every expected image and no other; install rewrites every one of them', async (t) => {
  const { world, dir, customer, user } = t.context;
  const bundle = join(dir, 'real.tar');
  world.servers.proxy.reset();
  const b = await build(t, 'real', bundle, ['--json']);
  t.is(b.code, 0, b.stderr);
  const want = expected(world, REAL);
  t.deepEqual(await bundleRefs(bundle), want.map((i) => taggedName(parseReference(i.ref))).sort());
  t.like(json<{ findings: Record<string, unknown>[] }>(b).findings[0], { code: 'undeclared-image', file: 'operator.yaml' });
  // The already-proxied image went through the proxy once, by its own path; never /proxy/…/<proxy>/proxy/….
  t.true(world.servers.proxy.count('/proxy/acme-shop/private.registry.test/acme/collector/manifests/') > 0);
  t.is(world.servers.proxy.count(`/proxy/acme-shop/${world.proxy}/`), 0);

  const out = join(dir, 'real-install');
  const registry = await install(t, bundle, out, 'real');
  for (const img of want) {
    const target = `${registry}/${lastComponent(img.repo)}:${img.tag}`;
    const { stdout } = await run('skopeo', ['inspect', '--raw', '--tls-verify=false', '--creds', `${user.username}:${user.password}`, `docker://${target}`]);
    t.true(stdout.length > 0, target);
  }
  const files = await textFiles(join(out, 'rendered'));
  // The KOTS kinds (Application, Preflight, SupportBundle) are not applied: kept under kots/, rewritten too.
  const kinds = await textFiles(join(out, 'kots'));
  t.true(kinds.has('troubleshoot.yaml') && kinds.has('kots-app.yaml'), [...kinds.keys()].join(', '));
  const all = [...files.values(), ...kinds.values()].join('\n');
  for (const img of want) {
    t.false(all.includes(img.ref), `${img.ref} is rewritten everywhere`);
    t.true(all.includes(`${registry}/${lastComponent(img.repo)}:${img.tag}`), img.ref);
  }
  // What is not declared stays as written; the customer was warned at build.
  t.true(all.includes(`${world.public}/thanos/thanos:v0.34.0`));
  // Operator references: the CR field, the --flag=REF argument and the RELATED_IMAGE_* value.
  const docs = parseAllDocuments(files.get('operator.yaml')!).map((d) => d.toJS() as Obj);
  const op = docs.find((d) => d.kind === 'Deployment')!.spec.template.spec.containers[0];
  t.deepEqual(op.args, ['--kubelet-service=kube-system/kubelet', `--prometheus-config-reloader=${registry}/prometheus-config-reloader:v0.70.0`]);
  t.deepEqual(op.env, [{ name: 'RELATED_IMAGE_DB', value: `${registry}/db-operand:3.1` }]);
  t.is(docs.find((d) => d.kind === 'Prometheus')!.spec.image, `${registry}/prometheus:v2.48.0`);
  // Go-template text is content: the alert rules' lines are byte for byte the source's.
  const source = await readFile(join(world.appDir, 'real', 'operator.yaml'), 'utf8');
  const templated = (s: string) => s.split('\n').filter((l) => l.includes('{{'));
  t.deepEqual(templated(files.get('operator.yaml')!), templated(source));
  t.is(templated(source).length, 2);
  t.deepEqual(templated(files.get('rollouts.yaml')!), templated(await readFile(join(world.appDir, 'real', 'rollouts.yaml'), 'utf8')));
  // JSON stays JSON (kubectl and any JSON reader take it), with its image and pull secret.
  const cache = JSON.parse(files.get('cache.json')!) as Obj;
  t.is(cache.spec.template.spec.containers[0].image, `${registry}/redis:7.2.4`);
  t.deepEqual(cache.spec.template.spec.imagePullSecrets, [{ name: `${world.appSlug}-registry` }]);
  // kubectl reads the rewritten JSON file itself (kustomize loads resources as kubectl apply -k does).
  const jsonDir = join(dir, 'json-check');
  await mkdir(jsonDir);
  await cp(join(out, 'rendered', 'cache.json'), join(jsonDir, 'cache.json'));
  await writeFile(join(jsonDir, 'kustomization.yaml'), 'resources: [cache.json]\n');
  const viaKubectl = parseAllDocuments((await run('kubectl', ['kustomize', jsonDir])).stdout).map((d) => d.toJS() as Obj);
  t.deepEqual(viaKubectl, [cache]);
  // Deep pod specs get the pull secret too.
  const pf = parseAllDocuments(kinds.get('troubleshoot.yaml')!).map((d) => d.toJS() as Obj);
  t.deepEqual(pf[0]!.spec.collectors[0].runPod.podSpec.imagePullSecrets, [{ name: `${world.appSlug}-registry` }]);
  const analysis = parseAllDocuments(files.get('rollouts.yaml')!).map((d) => d.toJS() as Obj)[1]!;
  t.is(analysis.spec.metrics[0].provider.job.spec.template.spec.containers[0].image, `${registry}/busybox:1.36`);
  await assertMidstreamMatches(t, out);
  t.truthy(customer);
});

test.serial('helm: a HelmChart and its archive are rendered with helm; install writes the chart, its values and its objects, and pushes it as an OCI chart', async (t) => {
  const { world, dir, user } = t.context;
  const bundle = join(dir, 'helm.tar');
  const b = await build(t, 'helm', bundle);
  t.is(b.code, 0, b.stderr);
  // The chart's image (its values set the registry) is bundled beside the plain manifest's.
  t.deepEqual(await bundleRefs(bundle), expected(world, ['library/nginx', 'library/redis']).map((i) => taggedName(parseReference(i.ref))).sort());
  const out = join(dir, 'helm-install');
  const registry = await install(t, bundle, out, 'helm');
  const rendered = await textFiles(join(out, 'rendered'));
  t.true(rendered.get('helm/redis.yaml')?.includes(`image: "${registry}/redis:7.2.4"`) || rendered.get('helm/redis.yaml')?.includes(`image: ${registry}/redis:7.2.4`), rendered.get('helm/redis.yaml'));
  t.false([...rendered.keys()].some((f) => f.includes('redis-chart')), 'the HelmChart itself is not applied');
  const archive = await readFile(join(world.appDir, 'helm', 'redis-18.6.1.tgz'));
  t.deepEqual(await readFile(join(out, 'charts', 'redis-18.6.1.tgz')), archive);
  t.regex(await readFile(join(out, 'charts', 'redis', 'values.yaml'), 'utf8'), new RegExp(`registry: ${world.public.replace(/[.]/g, '\\.')}`));
  // helm pulls the pushed chart, byte for byte.
  const pulled = join(dir, 'helm-pulled');
  await mkdir(pulled);
  await run('helm', ['pull', `oci://${registry}/redis`, '--version', '18.6.1', '--plain-http', '--username', user.username,
    '--password', user.password, '--destination', pulled], { env: { ...process.env, HELM_REGISTRY_CONFIG: join(pulled, 'config.json') } });
  t.deepEqual(await readFile(join(pulled, 'redis-18.6.1.tgz')), archive);
  await assertMidstreamMatches(t, out);
});

test.serial('kustomize: the rendered tree is what is bundled, carried and rewritten', async (t) => {
  const { world, dir } = t.context;
  const bundle = join(dir, 'kustomize.tar');
  const b = await build(t, 'kustomize', bundle);
  t.is(b.code, 0, b.stderr);
  // The images: transformer's tags and names, not the sources' (nginx:0.0-placeholder, redis).
  t.deepEqual(await bundleRefs(bundle), expected(world, ['library/nginx', 'library/redis']).map((i) => taggedName(parseReference(i.ref))).sort());
  const { stdout } = await run('tar', ['-tf', bundle]);
  t.deepEqual(stdout.split('\n').filter((n) => n.startsWith('app/') && n !== 'app/'), ['app/kustomized.yaml']);
  const out = join(dir, 'kustomize-install');
  const registry = await install(t, bundle, out, 'kust');
  const rendered = (await textFiles(join(out, 'rendered'))).get('kustomized.yaml')!;
  t.true(rendered.includes(`image: ${registry}/nginx:1.25.3`) && rendered.includes(`image: ${registry}/redis:7.2.4`), rendered);
  t.true(rendered.includes('namespace: shop'), 'the kustomization\'s own transforms are kept');
  await assertMidstreamMatches(t, out);
});

test('a bundle holding a kustomization is refused by rewrite before anything renders it: no remote resource is fetched', async (t) => {
  const { dir, customer, user } = t.context;
  const good = join(dir, 'kz-good.tar');
  const b = await build(t, 'helm', good);
  t.is(b.code, 0, b.stderr);
  // A server the kustomization names as a remote resource: it must never be asked.
  let asked = 0;
  const server = createServer((_req, res) => { asked++; res.end('apiVersion: v1\nkind: ConfigMap\nmetadata: {name: fetched}\n'); });
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  t.teardown(() => server.close());
  const port = (server.address() as AddressInfo).port;
  const staging = join(dir, 'kz-staging');
  await mkdir(join(staging, 'app'), { recursive: true });
  await writeFile(join(staging, 'app', 'kustomization.yaml'), `resources:\n  - http://127.0.0.1:${port}/remote.yaml\n`);
  const hostile = join(dir, 'kz-hostile.tar');
  await cp(good, hostile);
  await run('tar', ['-rf', hostile, '-C', staging, 'app/kustomization.yaml']);
  const out = join(dir, 'kz-out');
  const r = await runCli(['rewrite', hostile, '--registry', `${customer.host}/kz`, '--username', user.username, '--password', user.password,
    '--skip-registry-check', '--out', out]);
  t.is(r.code, 3, r.stderr);
  t.regex(r.stderr, /holds a kustomization \(app\/kustomization\.yaml\), which airgap build never writes/);
  t.is(asked, 0);
  t.false(existsSync(out));
});

test('kustomize without kubectl on PATH is refused with that hint, nothing written', async (t) => {
  const { dir } = t.context;
  const empty = join(dir, 'no-bin');
  await mkdir(empty, { recursive: true });
  const out = join(dir, 'nokubectl', 'app.tar');
  await mkdir(join(dir, 'nokubectl'));
  const r = await build(t, 'kustomize', out, [], { PATH: empty });
  t.is(r.code, 2, r.stderr);
  t.regex(r.stderr, /kustomization\.yaml: .*kubectl, which is not on PATH.*kubectl kustomize/);
  t.deepEqual(await readdir(join(dir, 'nokubectl')), []);
});

const REFUSALS: { app: string; code: string; at: RegExp[] }[] = [
  { app: 'refused/kots', code: 'kots-template', at: [/web\.yaml:23: .*unknown config item "hostname": the release has no kind: Config/] },
  { app: 'refused/duplicates', code: 'duplicate-object', at: [/web-small\.yaml:\d+: Deployment\.apps\/web is defined again; first at web-large\.yaml:1/] },
  { app: 'refused/chart-only', code: 'helm-chart-archive', at: [/redis-18\.6\.1\.tgz:1: Helm chart archive redis 18\.6\.1 is not rendered.*helm template redis/] },
  { app: 'refused/nested', code: 'nested-kustomization', at: [/base\/kustomization\.yaml:1: /, /overlays\/prod\/kustomization\.yaml:1: /] },
];

for (const c of REFUSALS) {
  test(`${c.app}: build exits 2 naming file:line and writes nothing; plan lists the same`, async (t) => {
    const { world, dir } = t.context;
    const outDir = join(dir, c.app.replace('/', '-'));
    await mkdir(outDir);
    const out = join(outDir, 'app.tar');
    const r = await build(t, c.app, out, ['--json']);
    t.is(r.code, 2, r.stderr);
    for (const re of c.at) t.regex(r.stderr, re);
    t.is(r.stderr.trim().split('\n').length, 1, 'one line');
    t.like(json<{ error: { code: string } }>(r).error, { code: 'E_MANIFESTS' });
    t.false(existsSync(out));
    t.deepEqual(await readdir(outDir), [], 'no temp file left beside --out');

    const p = await runCli(['plan', '--manifests', join(world.appDir, c.app), ...resolveFlags(world), '--json']);
    t.is(p.code, 2, p.stderr);
    const findings = json<{ findings: { severity: string; code: string; file: string; line: number; hint: string }[] }>(p).findings;
    t.true(findings.some((f) => f.severity === 'error' && f.code === c.code), JSON.stringify(findings));
    for (const f of findings) t.true(f.hint.length > 0 && f.line >= 1);
    const text = await runCli(['plan', '--manifests', join(world.appDir, c.app), ...resolveFlags(world)]);
    t.is(text.code, 2);
    for (const re of c.at) t.regex(text.stdout, re);
  });
}

test('what would make the customer\'s rewrite fail is refused at build (the rewrite is rehearsed)', async (t) => {
  const { world, dir } = t.context;
  const app = join(dir, 'reserved-app');
  await cp(join(world.appDir, 'real'), app, { recursive: true });
  await writeFile(join(app, 'airgap-pull-secret.yaml'), 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: mine\n');
  const outDir = join(dir, 'reserved-out');
  await mkdir(outDir);
  const r = await runCli(['build', '--manifests', app, '--license', world.licensePath, '--out', join(outDir, 'app.tar'), ...resolveFlags(world)]);
  t.is(r.code, 2, r.stderr);
  t.regex(r.stderr, /airgap-pull-secret\.yaml: this name is reserved/);
  t.deepEqual(await readdir(outDir), []);
});
