import anyTest, { type TestFn } from 'ava';
import { execFile } from 'node:child_process';
import { cp, mkdtemp, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { promisify } from 'node:util';
import { parseAllDocuments } from 'yaml';
import type { World } from '../src/testing/world.js';
import type { TestRegistry } from '../src/testing/registry.js';
import { startStage, stopStage } from '../src/testing/stage.js';
import { buildBundle, json, resolveFlags, runCli } from '../src/testing/cli.js';
import { lastComponent, parseReference } from '../src/reference.js';
import { testHelm } from '../src/testing/charts.js';

/**
 * A KOTS release written in KOTS's template language (testdata/kots): build discovers every
 * image across every branch; install renders it with the customer's values, as KOTS would.
 */

const run = promisify(execFile);
interface Ctx { world: World; dir: string; bundle: string; customer: TestRegistry; user: { username: string; password: string } }
const test = anyTest as TestFn<Ctx>;

test.before(async (t) => {
  testHelm(); // the release has a chart: the CLI finds helm on PATH, as a user's
  await startStage(t.context, 'kots', { world: { app: 'kots' } });
  t.context.bundle = join(t.context.dir, 'release.tar');
  await buildBundle(t.context.world, t.context.bundle);
});

test.after.always((t) => stopStage(t.context));

type Obj = Record<string, any>;

async function loadDocs(dir: string): Promise<{ file: string; obj: Obj }[]> {
  const out: { file: string; obj: Obj }[] = [];
  const walk = async (d: string): Promise<void> => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else if (/\.ya?ml$/.test(e.name)) {
        for (const doc of parseAllDocuments(await readFile(p, 'utf8'))) {
          const obj = doc.toJS() as Obj | null;
          if (obj) out.push({ file: relative(dir, p), obj });
        }
      }
    }
  };
  await walk(dir);
  return out;
}

async function valuesFile(dir: string, name: string, values: Record<string, string>): Promise<string> {
  const path = join(dir, name);
  const lines = Object.entries(values).map(([k, v]) => `    ${k}:\n      value: ${JSON.stringify(v)}`);
  await writeFile(path, `apiVersion: kots.io/v1beta1\nkind: ConfigValues\nmetadata:\n  name: acme-shop\nspec:\n  values:\n${lines.join('\n')}\n`);
  return path;
}

const containerImages = (o: Obj): string[] => {
  const spec = o.spec?.template?.spec ?? o.spec;
  return [...(spec?.containers ?? []), ...(spec?.initContainers ?? [])].map((c: Obj) => c.image as string);
};

test.serial('plan --offline finds every image of every branch, and nothing is refused', async (t) => {
  const { world } = t.context;
  const r = await runCli(['plan', '--manifests', world.appDir, '--license', world.licensePath, '--offline', '--json']);
  t.is(r.code, 0, r.stderr);
  const plan = json<{ images: { ref: string }[]; findings: { severity: string; code: string; file: string }[] }>(r);
  const want = world.images.map((i) => parseReference(i.ref)).map((ref) => `${ref.registry}/${ref.repository}:${ref.tag}`).sort();
  t.deepEqual(plan.images.map((i) => i.ref).sort(), want);
  t.deepEqual(plan.findings.filter((f) => f.severity === 'error'), []);
});

test.serial('the bundle carries the release as written', async (t) => {
  const { world, bundle, dir } = t.context;
  const x = await mkdtemp(join(dir, 'x-'));
  await run('tar', ['-xf', bundle, '-C', x]);
  for (const f of await readdir(world.appDir)) {
    t.deepEqual(await readFile(join(x, 'app', f)), await readFile(join(world.appDir, f)), f);
  }
});

test.serial('install renders the release with the customer values, pushes, and a re-run renders the same', async (t) => {
  const { world, bundle, customer, user, dir } = t.context;
  const registry = `${customer.host}/shop`;
  const values = await valuesFile(dir, 'values.yaml', { hostname: 'shop.acme.example', enable_worker: '1', replicas: '3' });
  const out = join(dir, 'install-1');
  const r = await runCli(['install', bundle, '--registry', registry, '--username', user.username, '--password-stdin',
    '--namespace', 'shop', '--config-values', values, '--license', world.licensePath, '--out', out, '--json'], { input: user.password });
  t.is(r.code, 0, r.stderr);

  const docs = await loadDocs(join(out, 'rendered'));
  const byName = new Map(docs.map((d) => [`${d.obj.kind}/${d.obj.metadata?.name}`, d.obj]));
  // The if-block is on, kots.io/when picks the embedded database, metrics stay off.
  t.truthy(byName.get('Deployment/worker'));
  t.truthy(byName.get('StatefulSet/postgres'));
  t.falsy(byName.get('DaemonSet/metrics'));
  const services = docs.filter((d) => d.obj.kind === 'Service' && d.obj.metadata.name === 'database');
  t.is(services.length, 1);
  t.is(services[0]!.obj.spec.type, undefined, 'the embedded alternative');
  // KOTS kinds are not applied; they are kept for reference.
  for (const d of docs) t.false(/^(kots\.io|troubleshoot\.sh)\//.test(d.obj.apiVersion), `${d.file}: ${d.obj.kind}`);
  t.truthy((await readdir(join(out, 'kots'))).length > 0);
  // Text became YAML: an integer, a quoted string, the license's customer name.
  const api = byName.get('Deployment/api')!;
  t.is(api.spec.replicas, 3);
  const env = Object.fromEntries((api.spec.template.spec.containers[0].env as Obj[]).map((e) => [e.name, e.value]));
  t.is(env.PUBLIC_HOST, 'shop.acme.example');
  t.is(env.CUSTOMER, 'Acme Corp');
  t.is(env.DATABASE_URL, 'postgres://acme@postgres:5432/shop');
  t.is((await stat(join(out, 'rendered', 'api.yaml'))).mode & 0o777, 0o600, 'it holds a license field');
  // Every image points at the customer registry, by tag, and is there.
  for (const d of docs) {
    for (const image of containerImages(d.obj)) t.true(image.startsWith(`${registry}/`), `${d.file}: ${image}`);
  }
  t.is(api.spec.template.spec.containers[0].image, `${registry}/api:1.4.2`);
  t.deepEqual(api.spec.template.spec.imagePullSecrets.map((s: Obj) => s.name), ['acme-shop-registry']);
  for (const img of world.images) {
    const ref = parseReference(img.ref);
    await run('skopeo', ['inspect', '--raw', '--tls-verify=false', '--creds', `${user.username}:${user.password}`,
      `docker://${registry}/${lastComponent(ref.repository)}:${ref.tag}`]);
  }
  // The chart: rendered with its values, which name the customer registry; kept for helm too.
  const status = byName.get('Deployment/status-page')!;
  t.is(status.spec.template.spec.containers[0].image, `${registry}/busybox:1.36`);
  t.deepEqual(status.spec.template.spec.containers[0].env, [{ name: 'TITLE', value: 'shop.acme.example' }]);
  t.deepEqual(await readFile(join(out, 'charts', 'status-page-0.3.0.tgz')), await readFile(join(world.appDir, 'status-page-0.3.0.tgz')));
  t.is((await stat(join(out, 'charts', 'status-page', 'values.yaml'))).mode & 0o777, 0o600);
  t.deepEqual(json<{ rewrite: { warnings: string[] } }>(r).rewrite.warnings, [], 'the chart\'s values name the customer registry themselves');
  // Helm and Prometheus text in a value is left as it was.
  t.regex(JSON.stringify(byName.get('ConfigMap/alert-rules')), /\{\{ \$labels\.instance \}\}/);

  // kustomize renders the same objects from the overlay.
  const { stdout } = await run('kubectl', ['kustomize', join(out, 'midstream')], { maxBuffer: 1 << 24 });
  const viaKustomize = parseAllDocuments(stdout).map((d) => d.toJS() as Obj);
  const key = (o: Obj): string => `${o.kind}/${o.metadata?.name}`;
  t.deepEqual(viaKustomize.map(key).sort(), docs.map((d) => key(d.obj)).sort());
  for (const o of viaKustomize) t.deepEqual(containerImages(o), containerImages(byName.get(key(o)) ?? {}), key(o));

  // The generated password is kept, readable by the owner only, and a re-run renders the same bytes.
  const kept = join(out, 'config-values.yaml');
  t.is((await stat(kept)).mode & 0o777, 0o600);
  t.regex(await readFile(kept, 'utf8'), /db_password:\n\s+valuePlaintext: \S{24}/);
  const out2 = join(dir, 'install-2');
  const r2 = await runCli(['rewrite', bundle, '--registry', registry, '--username', user.username, '--password-stdin',
    '--namespace', 'shop', '--config-values', kept, '--license', world.licensePath, '--out', out2], { input: user.password });
  t.is(r2.code, 0, r2.stderr);
  const files = (await readdir(join(out, 'rendered'), { recursive: true, withFileTypes: true })).filter((e) => e.isFile())
    .map((e) => relative(join(out, 'rendered'), join(e.parentPath, e.name)));
  t.true(files.includes('helm/status-page.yaml'));
  for (const f of files) t.deepEqual(await readFile(join(out2, 'rendered', f)), await readFile(join(out, 'rendered', f)), f);
});

test.serial('online renders the release for a connected cluster: private images through the vendor proxy, public ones as written', async (t) => {
  const { world, dir } = t.context;
  const values = await valuesFile(dir, 'online-values.yaml', { hostname: 'shop.acme.example' });
  const out = join(dir, 'online');
  const r = await runCli(['online', '--manifests', world.appDir, '--license', world.licensePath, ...resolveFlags(world),
    '--config-values', values, '--namespace', 'shop', '--out', out, '--json']);
  t.is(r.code, 0, r.stderr);
  const docs = await loadDocs(join(out, 'rendered'));
  const byName = new Map(docs.map((d) => [`${d.obj.kind}/${d.obj.metadata?.name}`, d.obj]));
  const api = byName.get('Deployment/api')!;
  t.regex(containerImages(api)[0]!, new RegExp(`^${world.proxy.replace(/[.]/g, '\\.')}/proxy/acme-shop/.*/acme/api:1\\.4\\.2$`));
  t.deepEqual(containerImages(byName.get('Deployment/web')!), [`${world.public}/library/nginx:1.25.3`, `${world.public}/library/redis:7.2.4`]);
  t.falsy(byName.get('Deployment/worker'), 'the worker is off by default');
  for (const d of docs) t.false(/^(kots\.io|troubleshoot\.sh)\//.test(d.obj.apiVersion), `${d.file}: ${d.obj.kind}`);
  t.regex(await readFile(join(out, 'config-values.yaml'), 'utf8'), /hostname:\n\s+value: shop\.acme\.example/);
});

test.serial('a required item without a value is refused before anything is pushed', async (t) => {
  const { bundle, user, dir } = t.context;
  const out = join(dir, 'install-required');
  const r = await runCli(['install', bundle, '--registry', '127.0.0.1:9/x', '--username', user.username, '--password-stdin',
    '--out', out], { input: user.password });
  t.is(r.code, 2, r.stderr);
  t.regex(r.stderr, /required config item\(s\) without a value: hostname \(config\.yaml:\d+\)/);
  await t.throwsAsync(stat(out));
});

test.serial('a function airgap does not implement is refused at plan, naming file:line', async (t) => {
  const { world, dir } = t.context;
  const app = await mkdtemp(join(dir, 'bad-'));
  await cp(world.appDir, app, { recursive: true });
  await writeFile(join(app, 'extra.yaml'), 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\ndata:\n  a: repl{{ NoSuchFunction "x" }}\n');
  await writeFile(join(app, 'extra2.yaml'), 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: y\ndata:\n  b: \'{{repl ConfigOption "no_such_item" }}\'\n');
  const r = await runCli(['plan', '--manifests', app, '--license', world.licensePath, '--offline']);
  t.is(r.code, 2, r.stderr);
  t.regex(r.stdout, /error: extra\.yaml:6: .*NoSuchFunction/);
  t.regex(r.stdout, /error: extra2\.yaml:6: .*unknown config item "no_such_item"/);
  // Without the license, a template that reads it says so.
  const bare = await runCli(['plan', '--manifests', world.appDir, '--offline']);
  t.is(bare.code, 2);
  t.regex(bare.stdout, /api\.yaml:\d+: .*LicenseFieldValue "customerName" needs the customer's license: pass --license FILE/);
});
