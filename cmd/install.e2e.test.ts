import anyTest, { type TestFn } from 'ava';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, writeFile, cp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { promisify } from 'node:util';
import { parseAllDocuments } from 'yaml';
import { bundledDigest, type World } from '../src/testing/world.js';
import { startRegistry, type TestRegistry } from '../src/testing/registry.js';
import { startStage, stopStage } from '../src/testing/stage.js';
import { buildBundle, resolveFlags, runCli, json } from '../src/testing/cli.js';
import { parseReference, taggedName, lastComponent } from '../src/reference.js';

const run = promisify(execFile);
interface Ctx { world: World; dir: string; bundle: string; customer: TestRegistry; user: { username: string; password: string } }
const test = anyTest as TestFn<Ctx>;

test.before(async (t) => {
  await startStage(t.context, 'install', { passwordPrefix: 'S3cret-pw-' });
  const bundle = join(t.context.dir, 'app.tar');
  await buildBundle(t.context.world, bundle);
  t.context.bundle = bundle;
});

test.after.always((t) => stopStage(t.context));

async function rawDigest(ref: string, creds: { username: string; password: string }, extra: string[] = ['--tls-verify=false']): Promise<string> {
  const { stdout } = await run('skopeo', ['inspect', '--raw', ...extra, '--creds', `${creds.username}:${creds.password}`, `docker://${ref}`],
    { encoding: 'buffer', maxBuffer: 1 << 24 });
  return 'sha256:' + createHash('sha256').update(stdout).digest('hex');
}

/** Pod specs by shape, written independently of src/app/scan.ts. */
function podSpecs(obj: Record<string, any>): Record<string, any>[] {
  if (!obj || typeof obj !== 'object') return [];
  if (typeof obj.kind === 'string' && obj.kind.endsWith('List') && Array.isArray(obj.items)) return obj.items.flatMap(podSpecs);
  const s = obj.spec;
  return [s, s?.template?.spec, s?.jobTemplate?.spec?.template?.spec].filter((x) => x && Array.isArray(x.containers));
}

async function loadDocs(dir: string): Promise<{ file: string; obj: Record<string, any> }[]> {
  const out: { file: string; obj: Record<string, any> }[] = [];
  const walk = async (d: string) => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else if (/\.ya?ml$/.test(e.name)) {
        for (const doc of parseAllDocuments(await readFile(p, 'utf8'))) {
          const obj = doc.toJS() as Record<string, any> | null;
          if (obj) out.push({ file: relative(dir, p), obj });
        }
      }
    }
  };
  await walk(dir);
  return out;
}

test.serial('install pushes byte-identical images and renders manifests that use them', async (t) => {
  const { world, bundle, customer, user, dir } = t.context;
  const out = join(dir, 'install');
  const registry = `${customer.host}/acme`;
  const r = await runCli(['install', bundle, '--registry', registry, '--username', user.username, '--password-stdin',
    '--out', out, '--namespace', 'shop', '--json'], { input: user.password + '\n' });
  t.is(r.code, 0, r.stderr);
  const res = json<{ push: { images: { source: string; target: string; digest: string }[]; bytesUploaded: number } }>(r);
  t.true(res.push.bytesUploaded > 0);
  t.false((r.stdout + r.stderr).includes(user.password), 'the password is never printed');

  // 1. Every image is in the customer registry under host/namespace/<last component>:<tag>, same digest.
  for (const img of world.images) {
    const ref = parseReference(img.ref);
    const target = `${registry}/${lastComponent(ref.repository)}:${ref.tag}`;
    t.is(await rawDigest(target, user), bundledDigest(img), target);
  }

  // 2. The rendered manifests: every image rewritten, every pod spec has the pull secret.
  const rendered = await loadDocs(join(out, 'rendered'));
  const secretName = `${world.appSlug}-registry`;
  let containers = 0;
  for (const { file, obj } of rendered) {
    for (const spec of podSpecs(obj)) {
      for (const c of [...spec.containers, ...(spec.initContainers ?? []), ...(spec.ephemeralContainers ?? [])]) {
        containers++;
        t.true((c.image as string).startsWith(`${registry}/`), `${file}: ${c.image}`);
        t.false((c.image as string).includes('@'), `rewritten by tag only: ${c.image}`);
      }
      t.true((spec.imagePullSecrets ?? []).some((s: { name: string }) => s.name === secretName), `${file}: imagePullSecrets`);
    }
    if (obj.kind === 'Application' && obj.apiVersion === 'kots.io/v1beta1') {
      for (const a of obj.spec.additionalImages ?? []) t.true((a as string).startsWith(`${registry}/`), a);
    }
  }
  t.true(containers >= 8, `found ${containers} containers`);

  // 3. A pull secret in the app's namespace and every other namespace, with working credentials.
  const secrets = rendered.filter((d) => d.obj.kind === 'Secret' && d.obj.metadata?.name === secretName);
  const namespaces = new Set(secrets.map((s) => s.obj.metadata.namespace));
  for (const ns of ['shop', ...world.namespaces]) t.true(namespaces.has(ns), `secret in namespace ${ns}`);
  const cfg = JSON.parse(Buffer.from(secrets[0]!.obj.data['.dockerconfigjson'], 'base64').toString()) as { auths: Record<string, { auth: string }> };
  t.is(Buffer.from(cfg.auths[customer.host]!.auth, 'base64').toString(), `${user.username}:${user.password}`);
  t.is(secrets[0]!.obj.type, 'kubernetes.io/dockerconfigjson');

  // 4. Free text is untouched.
  const all = (await Promise.all((await loadDocs(join(out, 'rendered'))).map(async (d) => JSON.stringify(d.obj)))).join('\n');
  for (const trap of world.traps) t.true(all.includes(JSON.stringify(trap).slice(1, -1)), `trap kept: ${trap}`);

  // 5. kustomize renders the same images and pull secrets from the overlay.
  const { stdout } = await run('kubectl', ['kustomize', join(out, 'midstream')], { maxBuffer: 1 << 24 });
  const viaKustomize = parseAllDocuments(stdout).map((d) => d.toJS() as Record<string, any>);
  const key = (o: Record<string, any>) => `${o.kind}/${o.metadata?.namespace ?? ''}/${o.metadata?.name}`;
  const imagesOf = (o: Record<string, any>) => podSpecs(o).flatMap((s) => [...s.containers, ...(s.initContainers ?? []), ...(s.ephemeralContainers ?? [])].map((c) => c.image)).sort();
  const secretsOf = (o: Record<string, any>) => podSpecs(o).map((s) => (s.imagePullSecrets ?? []).map((x: { name: string }) => x.name).sort());
  const flat = (objs: Record<string, any>[]) => objs.flatMap((o) => (o.kind?.endsWith('List') && Array.isArray(o.items) ? o.items : [o]));
  const byKey = new Map(flat(viaKustomize).map((o) => [key(o), o]));
  for (const o of flat(rendered.map((d) => d.obj))) {
    const k = byKey.get(key(o));
    t.truthy(k, `kustomize renders ${key(o)}`);
    t.deepEqual(imagesOf(k!), imagesOf(o), key(o));
    t.deepEqual(secretsOf(k!), secretsOf(o), key(o));
  }
});

test.serial('a second push moves no blob', async (t) => {
  const { bundle, customer, user } = t.context;
  const r = await runCli(['push', bundle, '--registry', `${customer.host}/acme`, '--username', user.username, '--password', user.password, '--json']);
  t.is(r.code, 0, r.stderr);
  const s = json<{ bytesUploaded: number; blobsUploaded: number; blobsExisting: number }>(r);
  t.is(s.bytesUploaded, 0);
  t.is(s.blobsUploaded, 0);
  t.true(s.blobsExisting > 0);
});

test('wrong credentials give a one-line error without the password', async (t) => {
  const { bundle, customer } = t.context;
  const r = await runCli(['push', bundle, '--registry', `${customer.host}/acme`, '--username', 'deployer', '--password', 'not-the-password']);
  t.is(r.code, 1);
  t.is(r.stderr.trim().split('\n').filter((l) => l.startsWith('airgap:')).length, 1, r.stderr);
  t.regex(r.stderr, /401|unauthori[sz]ed|denied/i);
  t.false(r.stderr.includes('not-the-password'));
  t.false(r.stderr.includes('    at '), 'no stack trace');
});

test('a TLS registry with its own CA: works with --ca-file, refused without', async (t) => {
  const { bundle, user, world } = t.context;
  const tls = await startRegistry({ users: [user], tls: true });
  t.teardown(() => tls.stop());
  const base = [bundle, '--registry', `${tls.host}/acme`, '--username', user.username, '--password', user.password];
  const refused = await runCli(['push', ...base]);
  t.is(refused.code, 1);
  t.regex(refused.stderr, /certificate|TLS/i);
  t.regex(refused.stderr, /--ca-file/);
  const ok = await runCli(['push', ...base, '--ca-file', tls.caFile!]);
  t.is(ok.code, 0, ok.stderr);
  const img = world.images.find((i) => i.kind === 'public')!;
  const ref = parseReference(img.ref);
  // skopeo trusts the CA from a directory of its own (it would read a *.key there as a client key).
  const certDir = await mkdtemp(join(tmpdir(), 'airgap-ca-'));
  t.teardown(() => rm(certDir, { recursive: true, force: true }));
  await cp(tls.caFile!, join(certDir, 'ca.crt'));
  t.is(await rawDigest(`${tls.host}/acme/${lastComponent(ref.repository)}:${ref.tag}`, user, ['--cert-dir', certDir]), bundledDigest(img));
});

test('two sources landing on one name are refused before anything is pushed', async (t) => {
  const { world, dir, user } = t.context;
  const img = world.images.find((i) => i.kind === 'public' && i.children.length === 0)!;
  const ref = parseReference(img.ref);
  const twin = `${ref.registry}/other-org/${lastComponent(ref.repository)}:${ref.tag}`;
  await run('skopeo', ['copy', '--src-tls-verify=false', '--dest-tls-verify=false', `docker://${taggedName(ref)}`, `docker://${twin}`]);
  const app = join(dir, 'collide-app');
  await cp(world.appDir, app, { recursive: true });
  await writeFile(join(app, 'twin.yaml'), `apiVersion: v1\nkind: Pod\nmetadata:\n  name: twin\nspec:\n  containers:\n    - name: c\n      image: ${twin}\n`);
  const out = join(dir, 'collide.tar');
  const b = await runCli(['build', '--manifests', app, '--license', world.licensePath, '--out', out, ...resolveFlags(world)]);
  t.is(b.code, 0, b.stderr);
  const empty = await startRegistry({ users: [user] });
  t.teardown(() => empty.stop());
  const r = await runCli(['push', out, '--registry', `${empty.host}/acme`, '--username', user.username, '--password', user.password]);
  t.is(r.code, 2);
  t.true(r.stderr.includes(twin) && r.stderr.includes(taggedName(ref)), r.stderr);
  const catalog = await fetch(`http://${empty.host}/v2/_catalog`, { headers: { authorization: 'Basic ' + Buffer.from(`${user.username}:${user.password}`).toString('base64') } });
  t.deepEqual(((await catalog.json()) as { repositories: string[] }).repositories, [], 'nothing was pushed');
});
