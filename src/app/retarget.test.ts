import test from 'ava';
import { execFile } from 'node:child_process';
import { mkdtemp, mkdir, writeFile, readFile, rm, readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { promisify } from 'node:util';
import { parseAllDocuments } from 'yaml';
import { scanFiles, scanManifests } from './scan.js';
import { retargetApp, writeRetargeted, type RetargetOptions } from './retarget.js';
import { lastComponent, type Reference } from '../reference.js';
import { isAirgapError } from '../errors.js';

/**
 * The fixture's files scanned as plain manifests (what the retarget rewrites), without the KOTS
 * step that sets the Application apart (src/kots/, tested there): the retarget is under test here.
 */
function plainScan(files: Record<string, string>) {
  return scanFiles(Object.entries(files).filter(([p]) => /\.(ya?ml|json)$/.test(p)).sort(([a], [b]) => (a < b ? -1 : 1))
    .map(([path, text]) => ({ path, content: Buffer.from(text) })));
}

const run = promisify(execFile);
const D = 'sha256:' + 'c'.repeat(64);
const SLUG = 'my-app';
const SECRET = `${SLUG}-registry`;
const HOST = 'reg.local:5000';
const mapping = (ref: Reference): string => `reg.local:5000/airgap/${lastComponent(ref.repository)}:${ref.tag ?? 'latest'}`;
const creds = { username: 'cust', password: 'p@ss:word' };
const OPTS: RetargetOptions = { host: HOST, appSlug: SLUG, mapping, secret: creds, namespace: 'default' };

const FIXTURE: Record<string, string> = {
  'pod.yaml': `# a bare pod
apiVersion: v1
kind: Pod
metadata:
  name: p
  namespace: team-a # inline comment
spec:
  # containers first
  containers:
    - name: c
      image: redis:7   # comment after the image
  ephemeralContainers:
    - name: debug
      image: "busybox"
`,
  'workloads/deploy.yml': `apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  template:
    metadata:
      annotations:
        note: "image: quay.io/not/rewritten:1"
    spec:
      imagePullSecrets:
        - name: existing   # keep me
      initContainers:
        - name: init
          image: 'quay.io/my-org/init:1.0'
      containers:
        - name: web
          image: registry.example.com:5000/team/web:2@${D}
        - name: redis6
          image: docker.io/library/redis:6
---
apiVersion: batch/v1
kind: CronJob
metadata:
  name: nightly
  namespace: jobs
spec:
  schedule: "@daily"
  jobTemplate:
    spec:
      template:
        spec:
          imagePullSecrets: [{name: other}]
          containers:
            - name: job
              image: org/job:3
`,
  'list.yaml': `apiVersion: v1
kind: List
items:
  - apiVersion: apps/v1
    kind: StatefulSet
    metadata: {name: db, namespace: data}
    spec:
      template:
        spec: {containers: [{name: db, image: "postgres:16"}], imagePullSecrets: [{name: ${SECRET}}]}
  - apiVersion: v1
    kind: Pod
    metadata: {name: nested}
    spec: {containers: [{name: n, image: redis}]}
`,
  'trap.yaml': `apiVersion: v1
kind: ConfigMap
metadata: {name: trap}
data:
  config: |
    image: evil/not-an-image:1
  image: plain/string:3
`,
  'kots-app.yaml': `apiVersion: kots.io/v1beta1
kind: Application
metadata:
  name: my-app
spec:
  additionalImages:
    - docker.io/library/alpine:3.20   # extra
  additionalNamespaces: [extra, "*"]
`,
};

async function tree(t: { teardown(fn: () => Promise<void>): void }, files: Record<string, string>): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'airgap-rewrite-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  for (const [path, text] of Object.entries(files)) {
    await mkdir(dirname(join(dir, path)), { recursive: true });
    await writeFile(join(dir, path), text);
  }
  return dir;
}

interface Obj { kind?: string; metadata?: { name?: string; namespace?: string }; items?: Obj[]; [k: string]: unknown }

/** Objects of a YAML stream, Lists flattened (kustomize flattens them too). */
function objects(text: string): Obj[] {
  const flat = (o: Obj): Obj[] => (o.kind === 'List' && Array.isArray(o.items) ? o.items.flatMap(flat) : [o]);
  return parseAllDocuments(text).flatMap((d) => { const o = d.toJS() as Obj | null; return o ? flat(o) : []; });
}

/** kind/ns/name → the images and pull secrets that matter, per pod spec. */
function summary(objs: Obj[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const o of objs) {
    const spec = o['spec'] as Record<string, any> | undefined; // eslint-disable-line
    const specs = [spec, spec?.['template']?.['spec'], spec?.['jobTemplate']?.['spec']?.['template']?.['spec']]
      .filter((s) => s && Array.isArray(s['containers']));
    const pods = specs.map((s) => ({
      images: ['containers', 'initContainers', 'ephemeralContainers'].flatMap((k) => (s[k] ?? []).map((c: { image: string }) => c.image)),
      pullSecrets: (s['imagePullSecrets'] ?? []).map((p: { name: string }) => p.name),
    }));
    const extra = o.kind === 'Application' ? spec?.['additionalImages'] : undefined;
    const secret = o.kind === 'Secret' ? o['data'] : undefined;
    out[`${o.kind}/${o.metadata?.namespace ?? ''}/${o.metadata?.name}`] = { pods, extra, secret };
  }
  return out;
}

test('rewrites every image by tag and adds the pull secret everywhere, document by document', async (t) => {
  const scan = await plainScan(FIXTURE);
  const result = retargetApp(scan, OPTS);
  const rendered = Object.fromEntries(result.rendered.map((f) => [f.path, f.content.toString()]));
  t.deepEqual(Object.keys(rendered).sort(),
    ['airgap-pull-secret.yaml', 'kots-app.yaml', 'list.yaml', 'pod.yaml', 'trap.yaml', 'workloads/deploy.yml']);

  const s = summary(Object.values(rendered).flatMap(objects));
  const R = 'reg.local:5000/airgap';
  t.deepEqual(s['Pod/team-a/p'], { pods: [{ images: [`${R}/redis:7`, `${R}/busybox:latest`], pullSecrets: [SECRET] }], extra: undefined, secret: undefined });
  // Objects that name no namespace are put in --namespace (here "default"); the others keep theirs.
  t.deepEqual(s['Deployment/default/web'], { pods: [{ images: [`${R}/web:2`, `${R}/redis:6`, `${R}/init:1.0`], pullSecrets: ['existing', SECRET] }], extra: undefined, secret: undefined });
  t.deepEqual(s['CronJob/jobs/nightly'], { pods: [{ images: [`${R}/job:3`], pullSecrets: ['other', SECRET] }], extra: undefined, secret: undefined });
  t.deepEqual(s['StatefulSet/data/db'], { pods: [{ images: [`${R}/postgres:16`], pullSecrets: [SECRET] }], extra: undefined, secret: undefined });
  t.deepEqual(s['Pod/default/nested'], { pods: [{ images: [`${R}/redis:latest`], pullSecrets: [SECRET] }], extra: undefined, secret: undefined });
  t.deepEqual((s['Application/default/my-app'] as { extra: string[] }).extra, [`${R}/alpine:3.20`]);

  // One Secret per namespace: the app's, additionalNamespaces (not "*"), and every one named.
  const secrets = Object.keys(s).filter((k) => k.startsWith('Secret/')).sort();
  t.deepEqual(secrets, ['data', 'default', 'extra', 'jobs', 'team-a'].map((ns) => `Secret/${ns}/${SECRET}`));
  const secretObj = objects(rendered['airgap-pull-secret.yaml'] ?? '')[0] as Obj;
  t.is(secretObj['type'], 'kubernetes.io/dockerconfigjson');
  const cfg = JSON.parse(Buffer.from((secretObj['data'] as Record<string, string>)['.dockerconfigjson'] ?? '', 'base64').toString());
  t.deepEqual(cfg, { auths: { 'reg.local:5000': { username: 'cust', password: 'p@ss:word', auth: Buffer.from('cust:p@ss:word').toString('base64') } } });

  // Free text untouched; the ConfigMap file comes out byte for byte but for its namespace.
  t.is(rendered['trap.yaml'], FIXTURE['trap.yaml']!.replace('{name: trap}', '{namespace: default, name: trap}'));
  t.true(rendered['workloads/deploy.yml']?.includes('note: "image: quay.io/not/rewritten:1"'));

  t.deepEqual(result.images, [
    { from: 'docker.io/library/alpine:3.20', to: `${R}/alpine:3.20` },
    { from: 'docker.io/library/busybox:latest', to: `${R}/busybox:latest` },
    { from: 'docker.io/library/postgres:16', to: `${R}/postgres:16` },
    { from: 'docker.io/library/redis:6', to: `${R}/redis:6` },
    { from: 'docker.io/library/redis:7', to: `${R}/redis:7` },
    { from: 'docker.io/library/redis:latest', to: `${R}/redis:latest` },
    { from: 'docker.io/org/job:3', to: `${R}/job:3` },
    { from: 'quay.io/my-org/init:1.0', to: `${R}/init:1.0` },
    { from: 'registry.example.com:5000/team/web:2', to: `${R}/web:2` },
  ]);
  t.is(result.base.find((f) => f.path === 'pod.yaml')?.content.toString(), FIXTURE['pod.yaml']);
});

/** Lines of `after` that are not in `before`, and vice versa (a line multiset diff). */
function lineDiff(before: string, after: string): { removed: string[]; added: string[] } {
  const a = before.split('\n');
  const b = after.split('\n');
  return { removed: a.filter((l) => !b.includes(l)), added: b.filter((l) => !a.includes(l)) };
}

test('only image lines change and pull-secret and namespace lines are added; comments and formatting stay', async (t) => {
  const scan = await plainScan(FIXTURE);
  const rendered = Object.fromEntries(retargetApp(scan, OPTS).rendered.map((f) => [f.path, f.content.toString()]));
  t.deepEqual(lineDiff(FIXTURE['pod.yaml'] ?? '', rendered['pod.yaml'] ?? ''), {
    removed: ['      image: redis:7   # comment after the image', '      image: "busybox"'],
    added: [
      '  imagePullSecrets:', `    - name: ${SECRET}`,
      '      image: reg.local:5000/airgap/redis:7   # comment after the image',
      '      image: "reg.local:5000/airgap/busybox:latest"',
    ],
  });
  t.deepEqual(lineDiff(FIXTURE['workloads/deploy.yml'] ?? '', rendered['workloads/deploy.yml'] ?? ''), {
    removed: [
      'metadata: {name: web}',
      "          image: 'quay.io/my-org/init:1.0'",
      `          image: registry.example.com:5000/team/web:2@${D}`,
      '          image: docker.io/library/redis:6',
      '          imagePullSecrets: [{name: other}]',
      '              image: org/job:3',
    ],
    added: [
      'metadata: {namespace: default, name: web}',
      `        - name: ${SECRET}`,
      "          image: 'reg.local:5000/airgap/init:1.0'",
      '          image: reg.local:5000/airgap/web:2',
      '          image: reg.local:5000/airgap/redis:6',
      `          imagePullSecrets: [{name: other}, {name: ${SECRET}}]`,
      '              image: reg.local:5000/airgap/job:3',
    ],
  });
  t.true(rendered['workloads/deploy.yml']?.includes(`        - name: existing   # keep me\n        - name: ${SECRET}\n`));
  const list = lineDiff(FIXTURE['list.yaml'] ?? '', rendered['list.yaml'] ?? '');
  t.deepEqual(list.added, [
    `        spec: {containers: [{name: db, image: "reg.local:5000/airgap/postgres:16"}], imagePullSecrets: [{name: ${SECRET}}]}`,
    '    metadata: {namespace: default, name: nested}',
    `    spec: {imagePullSecrets: [{name: ${SECRET}}], containers: [{name: n, image: reg.local:5000/airgap/redis:latest}]}`,
  ]);
  t.deepEqual(lineDiff(FIXTURE['kots-app.yaml'] ?? '', rendered['kots-app.yaml'] ?? '').added,
    ['  namespace: default', '    - reg.local:5000/airgap/alpine:3.20   # extra']);
});

test('without credentials: no Secret and no imagePullSecrets', async (t) => {
  const scan = await plainScan(FIXTURE);
  const result = retargetApp(scan, { ...OPTS, secret: undefined });
  t.false(result.rendered.some((f) => f.path === 'airgap-pull-secret.yaml'));
  t.false(result.rendered.some((f) => f.content.toString().includes(SECRET) && f.path !== 'list.yaml'));
  t.true(result.rendered.find((f) => f.path === 'pod.yaml')?.content.toString().includes('image: reg.local:5000/airgap/redis:7'));
});

test('a block-scalar image (image: >-) is rewritten in place, and the file still parses', async (t) => {
  const text = 'apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n    - name: a\n      image: >-\n        quay.io/acme/folded:2.0\n    - name: c\n      image: |-\n        redis:7\n    - name: d\n      image: redis:6\n';
  const result = retargetApp(plainScan({ 'p.yaml': text }), OPTS);
  const out = result.rendered.find((f) => f.path === 'p.yaml')!.content.toString();
  const docs = parseAllDocuments(out);
  t.deepEqual(docs.flatMap((d) => d.errors), [], out);
  const pod = docs[0]!.toJS() as { spec: { containers: { name: string; image: string }[] } };
  t.deepEqual(pod.spec.containers.map((c) => `${c.name} ${c.image}`), [
    'a reg.local:5000/airgap/folded:2.0', 'c reg.local:5000/airgap/redis:7', 'd reg.local:5000/airgap/redis:6',
  ]);
});

test('containers behind a YAML alias are read and rewritten once, where the list is anchored', async (t) => {
  const text = 'apiVersion: v1\nkind: List\nitems:\n  - apiVersion: v1\n    kind: Pod\n    metadata: {name: a}\n    spec:\n      containers: &ctrs\n        - name: c\n          image: quay.io/acme/shared:1\n  - apiVersion: v1\n    kind: Pod\n    metadata: {name: b}\n    spec:\n      containers: *ctrs\n';
  const scan = plainScan({ 'l.yaml': text });
  t.deepEqual(scan.images.map((i) => `${i.raw} ${i.line}`), ['quay.io/acme/shared:1 10']);
  const result = retargetApp(scan, OPTS);
  const out = result.rendered.find((f) => f.path === 'l.yaml')!.content.toString();
  const list = parseAllDocuments(out)[0]!.toJS() as { items: { spec: { containers: { image: string }[]; imagePullSecrets: { name: string }[] } }[] };
  for (const pod of list.items) {
    t.deepEqual(pod.spec.containers.map((c) => c.image), ['reg.local:5000/airgap/shared:1']);
    t.deepEqual(pod.spec.imagePullSecrets, [{ name: SECRET }]);
  }
  t.is(out.split('reg.local:5000/airgap/shared:1').length, 2, 'written once, at the anchor');
});

test('CRLF files keep CRLF line endings', async (t) => {
  const crlf = (FIXTURE['workloads/deploy.yml'] ?? '').replace(/\n/g, '\r\n');
  const scan = await scanManifests(await tree(t, { 'd.yaml': crlf }));
  const out = retargetApp(scan, OPTS).rendered.find((f) => f.path === 'd.yaml')?.content.toString() ?? '';
  t.false(/[^\r]\n/.test(out));
  const lf = retargetApp(await scanManifests(await tree(t, { 'd.yaml': FIXTURE['workloads/deploy.yml'] ?? '' })), OPTS);
  t.is(out.replace(/\r\n/g, '\n'), lf.rendered.find((f) => f.path === 'd.yaml')?.content.toString() ?? '');
});

test('a digest-only image is refused with file:line', async (t) => {
  const scan = await scanManifests(await tree(t, { 'p.yaml': `kind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n    - image: redis@${D}\n` }));
  const e = t.throws(() => retargetApp(scan, OPTS));
  t.true(isAirgapError(e, 'E_DIGEST_ONLY'));
  t.regex(e?.message ?? '', /^p\.yaml:5: /);
});

test('kubectl kustomize OUT/midstream renders the same images and pull secrets as rendered/', async (t) => {
  const scan = await plainScan(FIXTURE);
  const out = join(await mkdtemp(join(tmpdir(), 'airgap-out-')), 'out');
  t.teardown(() => rm(dirname(out), { recursive: true, force: true }));
  await writeRetargeted(retargetApp(scan, OPTS), out);
  t.deepEqual((await readdir(out)).sort(), ['base', 'midstream', 'rendered']);

  const { stdout } = await run('kubectl', ['kustomize', join(out, 'midstream')], { maxBuffer: 64 << 20 });
  const renderedText = await Promise.all(scan.files.map((f) => readFile(join(out, 'rendered', f.path), 'utf8')));
  const secretText = await readFile(join(out, 'rendered', 'airgap-pull-secret.yaml'), 'utf8');
  const fromKustomize = objects(stdout);
  const fromRendered = [...renderedText, secretText].flatMap(objects);
  t.deepEqual(summary(fromKustomize), summary(fromRendered));
  // Stronger than the brief asks: every object is identical, not just its images.
  const byId = (objs: Obj[]): [string, Obj][] => objs
    .map((o): [string, Obj] => [`${o.kind}/${o.metadata?.namespace ?? ''}/${o.metadata?.name}`, o])
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  t.deepEqual(byId(fromKustomize), byId(fromRendered));

  // base/ renders the manifests unchanged.
  const base = await run('kubectl', ['kustomize', join(out, 'base')], { maxBuffer: 64 << 20 });
  t.deepEqual(summary(objects(base.stdout)), summary(Object.values(FIXTURE).flatMap(objects)));
});

test('writeRetargeted refuses a non-empty output directory', async (t) => {
  const scan = await plainScan(FIXTURE);
  const out = await tree(t, { 'keep.txt': 'x' });
  const e = await t.throwsAsync(writeRetargeted(retargetApp(scan, OPTS), out));
  t.true(isAirgapError(e, 'E_OUTPUT'));
  t.deepEqual(await readdir(out), ['keep.txt']);
});

const OPERATOR: Record<string, string> = {
  'kots-app.yaml': 'apiVersion: kots.io/v1beta1\nkind: Application\nmetadata: {name: my-app}\nspec:\n  additionalImages:\n    - quay.io/org/prometheus:v2\n    - "quay.io/org/reloader:v1"\n',
  'op.yaml': `apiVersion: apps/v1
kind: Deployment
metadata: {name: op}
spec:
  template:
    spec:
      containers:
        - name: op
          image: quay.io/org/operator:v1
          args:
            - --reloader=quay.io/org/reloader:v1
            - "--not-this=quay.io/org/reloader:v1-suffix"
            - quay.io/org/reloader:v1 and text
          env:
            - name: RELATED_IMAGE_PROM
              value: 'quay.io/org/prometheus:v2'
---
apiVersion: monitoring.coreos.com/v1
kind: Prometheus
metadata: {name: p}
spec:
  image: quay.io/org/prometheus:v2
  note: |
    quay.io/org/prometheus:v2
  summary: "{{ $labels.instance }} runs quay.io/org/prometheus:v2"
`,
  'web.json': '{\n  "apiVersion": "v1",\n  "kind": "Pod",\n  "metadata": {"name": "w"},\n  "spec": {\n    "containers": [{"name": "w", "image": "quay.io/org/operator:v1"}]\n  }\n}\n',
  'pre.json': '{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}, "spec": {"imagePullSecrets": [{"name": "other"}], "containers": [{"name": "x", "image": "quay.io/org/operator:v1"}]}}\n',
};

test('operator references are rewritten where their exact text stands: whole values and --flag=REF; nothing else', async (t) => {
  const scan = await scanManifests(await tree(t, OPERATOR));
  const result = retargetApp(scan, OPTS);
  const op = result.rendered.find((f) => f.path === 'op.yaml')!.content.toString();
  t.deepEqual(lineDiff(OPERATOR['op.yaml']!, op), {
    removed: [
      'metadata: {name: op}',
      '          image: quay.io/org/operator:v1',
      '            - --reloader=quay.io/org/reloader:v1',
      "              value: 'quay.io/org/prometheus:v2'",
      'metadata: {name: p}',
      '  image: quay.io/org/prometheus:v2',
    ],
    added: [
      'metadata: {namespace: default, name: op}',
      '      imagePullSecrets:', `        - name: ${SECRET}`,
      '          image: reg.local:5000/airgap/operator:v1',
      '            - --reloader=reg.local:5000/airgap/reloader:v1',
      "              value: 'reg.local:5000/airgap/prometheus:v2'",
      'metadata: {namespace: default, name: p}',
      '  image: reg.local:5000/airgap/prometheus:v2',
    ],
  });
  t.deepEqual(result.images.map((i) => i.from), ['quay.io/org/operator:v1', 'quay.io/org/prometheus:v2', 'quay.io/org/reloader:v1']);
});

test('JSON manifests stay JSON: image and pull secret written in JSON syntax', async (t) => {
  const scan = await scanManifests(await tree(t, OPERATOR));
  const result = retargetApp(scan, OPTS);
  for (const name of ['web.json', 'pre.json']) {
    const text = result.rendered.find((f) => f.path === name)!.content.toString();
    const obj = JSON.parse(text) as { spec: { containers: { image: string }[]; imagePullSecrets: { name: string }[] } };
    t.is(obj.spec.containers[0]!.image, 'reg.local:5000/airgap/operator:v1', name);
    t.deepEqual(obj.spec.imagePullSecrets.map((s) => s.name), name === 'pre.json' ? ['other', SECRET] : [SECRET], name);
  }
});

test('operator references and JSON files: kubectl kustomize OUT/midstream renders every object as rendered/', async (t) => {
  const scan = await scanManifests(await tree(t, OPERATOR));
  const out = join(await mkdtemp(join(tmpdir(), 'airgap-out-')), 'out');
  t.teardown(() => rm(dirname(out), { recursive: true, force: true }));
  await writeRetargeted(retargetApp(scan, OPTS), out);
  const { stdout } = await run('kubectl', ['kustomize', join(out, 'midstream')], { maxBuffer: 64 << 20 });
  const rendered = (await Promise.all([...scan.files.map((f) => f.path), 'airgap-pull-secret.yaml']
    .map((p) => readFile(join(out, 'rendered', p), 'utf8')))).flatMap(objects);
  const byId = (objs: Obj[]): [string, Obj][] => objs
    .map((o): [string, Obj] => [`${o.kind}/${o.metadata?.namespace ?? ''}/${o.metadata?.name}`, o])
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  t.deepEqual(byId(objects(stdout)), byId(rendered));
});

test('the rewrite refuses manifests with refusals (a bundle from before they were caught at build)', async (t) => {
  const scan = await scanManifests(await tree(t, { 'p.yaml': 'kind: Pod\nmetadata: {name: p}\nspec:\n  containers: [{image: "redis:7"}]\n  x: repl{{ ConfigOption "x" }}\n' }));
  const e = t.throws(() => retargetApp(scan, OPTS));
  t.true(isAirgapError(e, 'E_MANIFESTS'));
  t.regex(e?.message ?? '', /p\.yaml:5: .*unknown config item "x": the release has no kind: Config/);
});

test('a file with thousands of images: every one rewritten in place, every other byte kept', async (t) => {
  const n = 3000;
  const containers = Array.from({ length: n }, (_, i) => `    - name: c${i} # #${i}\n      image: quay.io/org/img-${i}:${i}.0\n`).join('');
  const text = `apiVersion: v1\nkind: Pod\nmetadata: {name: big}\nspec:\n  containers:\n${containers}`;
  const scan = await scanManifests(await tree(t, { 'big.yaml': text }));
  const out = retargetApp(scan, OPTS).rendered.find((f) => f.path === 'big.yaml')?.content.toString();
  const expected = text
    .replace(/image: quay\.io\/org\/img-(\d+):/g, 'image: reg.local:5000/airgap/img-$1:')
    .replace('spec:\n', `spec:\n  imagePullSecrets:\n    - name: ${SECRET}\n`)
    .replace('{name: big}', '{namespace: default, name: big}');
  t.is(out, expected);
});

const SCOPED: Record<string, string> = {
  'app.yaml': `apiVersion: apps/v1
kind: Deployment
metadata:
  # the app's own
  name: web
spec:
  template:
    spec:
      containers: [{name: web, image: redis:7}]
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: extra-config
  namespace: extra
---
apiVersion: v1
kind: Namespace
metadata: {name: extra}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: reader}
rules: []
---
apiVersion: example.com/v1
kind: Widget
metadata: {name: w}
---
apiVersion: example.com/v1
kind: ClusterWidget
metadata: {name: cw}
`,
  'crd.yaml': `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: clusterwidgets.example.com}
spec:
  group: example.com
  scope: Cluster
  names: {kind: ClusterWidget, plural: clusterwidgets}
  versions: [{name: v1, served: true, storage: true, schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}}]
`,
  'svc.json': '{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}]}}\n',
};

test('objects that name no namespace land in --namespace in rendered/ and midstream/; named ones and cluster-scoped kinds stay', async (t) => {
  const scan = await scanManifests(await tree(t, SCOPED));
  const out = join(await mkdtemp(join(tmpdir(), 'airgap-ns-out-')), 'out');
  t.teardown(() => rm(dirname(out), { recursive: true, force: true }));
  await writeRetargeted(retargetApp(scan, { ...OPTS, namespace: 'shop' }), out);
  const expected = {
    'ClusterRole/reader': undefined, 'ClusterWidget/cw': undefined, 'ConfigMap/extra-config': 'extra',
    'CustomResourceDefinition/clusterwidgets.example.com': undefined, 'Deployment/web': 'shop', 'Namespace/extra': undefined,
    'Service/web': 'shop', 'Widget/w': 'shop',
  };
  const namespaces = (objs: Obj[]) => Object.fromEntries(objs.filter((o) => o.kind !== 'Secret')
    .map((o) => [`${o.kind}/${o.metadata?.name}`, o.metadata?.namespace]).sort(([a], [b]) => (a! < b! ? -1 : 1)));
  const rendered = (await Promise.all(Object.keys(SCOPED).map((f) => readFile(join(out, 'rendered', f), 'utf8')))).flatMap(objects);
  t.deepEqual(namespaces(rendered), expected);
  const { stdout } = await run('kubectl', ['kustomize', join(out, 'midstream')], { maxBuffer: 64 << 20 });
  t.deepEqual(namespaces(objects(stdout)), expected, 'kubectl kustomize midstream/ agrees');
  // Written in each file's own style: a block line before the first key, JSON stays JSON.
  t.true((await readFile(join(out, 'rendered', 'app.yaml'), 'utf8')).includes('metadata:\n  # the app\'s own\n  namespace: shop\n  name: web\n'));
  t.true((await readFile(join(out, 'rendered', 'svc.json'), 'utf8')).includes('"metadata": {"namespace": "shop", "name": "web"}'));
});

test('a HelmChart\'s rendered objects that name no namespace go to the chart\'s namespace, with the pull secret there', async (t) => {
  const scan = await scanManifests(await tree(t, {
    'app.yaml': 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: app}\n',
    'helm/metrics.yaml': 'apiVersion: v1\nkind: Pod\nmetadata: {name: m}\nspec:\n  containers: [{name: m, image: redis:7}]\n',
  }));
  const result = retargetApp(scan, { ...OPTS, namespace: 'shop', fileNamespaces: new Map([['helm/metrics.yaml', 'monitoring']]) });
  const ns = (path: string) => objects(result.rendered.find((f) => f.path === path)!.content.toString()).map((o) => o.metadata?.namespace);
  t.deepEqual(ns('app.yaml'), ['shop']);
  t.deepEqual(ns('helm/metrics.yaml'), ['monitoring']);
  t.deepEqual(ns('airgap-pull-secret.yaml'), ['monitoring', 'shop']);
});
