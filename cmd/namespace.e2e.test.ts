import anyTest, { type TestFn } from 'ava';
import { execFile } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { promisify } from 'node:util';
import { parseAllDocuments } from 'yaml';
import { startStage, stopStage, type Stage } from '../src/testing/stage.js';
import { buildBundle, runCli } from '../src/testing/cli.js';

/**
 * `install --namespace shop` (issue 25, item 1): applied as printed, the application lands in
 * shop, where its pull secret is — objects that name no namespace get shop in rendered/ and in
 * what kubectl kustomize makes of midstream/; objects that name theirs keep it; cluster-scoped
 * kinds get none.
 */

interface Ctx extends Stage { bundle: string }
const test = anyTest as TestFn<Ctx>;
const run = promisify(execFile);

test.before(async (t) => {
  await startStage(t.context, 'namespace');
  t.context.bundle = join(t.context.dir, 'app.tar');
  await buildBundle(t.context.world, t.context.bundle);
});

test.after.always((t) => stopStage(t.context));

interface Obj { kind?: string; metadata?: { name?: string; namespace?: string }; items?: Obj[] }

function objects(text: string): Obj[] {
  const flat = (o: Obj): Obj[] => (o.kind?.endsWith('List') && Array.isArray(o.items) ? o.items.flatMap(flat) : [o]);
  return parseAllDocuments(text).flatMap((d) => { const o = d.toJS() as Obj | null; return o ? flat(o) : []; });
}

async function treeObjects(dir: string): Promise<Map<string, Obj>> {
  const out = new Map<string, Obj>();
  const walk = async (d: string): Promise<void> => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else if (/\.(ya?ml|json)$/.test(e.name) && e.name !== 'kustomization.yaml') {
        for (const o of objects(await readFile(p, 'utf8'))) out.set(`${relative(dir, p)}#${o.kind}/${o.metadata?.name}`, o);
      }
    }
  };
  await walk(dir);
  return out;
}

const CLUSTER_SCOPED = new Set(['Namespace']);
const key = (o: Obj): string => `${o.kind}/${o.metadata?.namespace ?? '-'}/${o.metadata?.name}`;

test('install --namespace shop: every object lands in shop unless it names its own, in rendered/ and midstream/, and the printed command says so', async (t) => {
  const { bundle, customer, user, dir } = t.context;
  const out = join(dir, 'install');
  const r = await runCli(['install', bundle, '--registry', `${customer.host}/acme`, '--username', user.username, '--password-stdin',
    '--out', out, '--namespace', 'shop'], { input: user.password });
  t.is(r.code, 0, r.stderr);

  // What each object should become: the namespace it names, else shop; none for cluster-scoped kinds.
  const base = await treeObjects(join(out, 'base'));
  const expected = [...base.values()].map((o) => key({
    ...o, metadata: { ...o.metadata, ...(CLUSTER_SCOPED.has(o.kind ?? '') ? {} : { namespace: o.metadata?.namespace ?? 'shop' }) },
  })).sort();
  t.true(expected.some((k) => k.startsWith('Deployment/shop/')), 'the app has workloads that named no namespace');
  t.true(expected.some((k) => k.includes('/acme-edge/')), 'and objects that name their own');

  const rendered = [...(await treeObjects(join(out, 'rendered'))).values()].filter((o) => o.kind !== 'Secret' || o.metadata?.name !== `${t.context.world.appSlug}-registry`);
  t.deepEqual(rendered.map(key).sort(), expected, 'rendered/');
  const { stdout } = await run('kubectl', ['kustomize', join(out, 'midstream')], { maxBuffer: 64 << 20 });
  t.deepEqual(objects(stdout).filter((o) => o.kind !== 'Secret' || o.metadata?.name !== `${t.context.world.appSlug}-registry`).map(key).sort(), expected,
    'kubectl kustomize midstream/');
  // The pull secret is where the pods are.
  const secrets = objects(await readFile(join(out, 'rendered', 'airgap-pull-secret.yaml'), 'utf8')).map((o) => o.metadata?.namespace);
  t.true(secrets.includes('shop'));

  t.regex(r.stdout, new RegExp(`next: kubectl apply -f ${out}/rendered\\n  \\(objects that name no namespace are in shop; Kubernetes namespace\\(s\\) acme-edge, shop must exist`));
});
