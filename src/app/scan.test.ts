import test from 'ava';
import { testHelm } from '../testing/charts.js';
import { mkdtemp, mkdir, writeFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { scanManifests } from './scan.js';
import { taggedName } from '../reference.js';
import { isAirgapError } from '../errors.js';

/** Writes a fixture tree and removes it when the test ends. */
async function tree(t: { teardown(fn: () => Promise<void>): void }, files: Record<string, string>): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'airgap-scan-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  for (const [path, text] of Object.entries(files)) {
    await mkdir(dirname(join(dir, path)), { recursive: true });
    await writeFile(join(dir, path), text);
  }
  return dir;
}

const D = 'sha256:' + 'b'.repeat(64);

const FIXTURE: Record<string, string> = {
  'pod.yaml': `# a bare pod
apiVersion: v1
kind: Pod
metadata:
  name: p
  namespace: team-a
spec:
  containers:
    - name: c
      image: redis:7   # comment after the image
  ephemeralContainers:
    - name: debug
      image: busybox
`,
  'workloads/deploy.yml': `apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  template:
    spec:
      initContainers:
        - name: init
          image: "quay.io/my-org/init:1.0"
      containers:
        - name: web
          image: 'registry.example.com:5000/team/web:2@${D}'
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
          containers:
            - name: job
              image: org/job:3
`,
  'workloads/custom.yaml': `apiVersion: example.com/v1
kind: Widget
metadata: {name: w}
spec:
  containers:
    - image: ghcr.io/acme/widget:9
`,
  'list.yaml': `apiVersion: v1
kind: List
items:
  - apiVersion: apps/v1
    kind: StatefulSet
    metadata: {name: db, namespace: data}
    spec:
      template:
        spec:
          containers: [{name: db, image: "postgres:16"}]
  - apiVersion: v1
    kind: List
    items:
      - apiVersion: v1
        kind: Pod
        metadata: {name: nested}
        spec: {containers: [{name: n, image: nginx:1.27}]}
`,
  'trap.yaml': `apiVersion: v1
kind: ConfigMap
metadata: {name: trap}
data:
  config: |
    image: evil/not-an-image:1
    containers:
      - image: also/not:2
  image: plain/string:3
  alert: "{{ $labels.instance }} is down"
`,
  'kots-app.yaml': `apiVersion: kots.io/v1beta1
kind: Application
metadata:
  name: my-app
spec:
  title: My App
  additionalImages:
    - docker.io/library/alpine:3.20
  additionalNamespaces:
    - extra
    - "*"
`,
  'notes.txt': 'image: not/yaml:1\n',
  '.hidden/ignored.yaml': 'kind: Pod\nspec: {containers: [{image: hidden:1}]}\n',
  'empty.yaml': '# nothing here\n',
};

test('finds every image by shape, with file and line', async (t) => {
  const dir = await tree(t, FIXTURE);
  const scan = await scanManifests(dir);
  const found = scan.images.map((i) => `${i.file}:${i.line} ${i.origin} ${taggedName(i.ref)}`);
  t.deepEqual(found, [
    'kots-app.yaml:8 additionalImages docker.io/library/alpine:3.20',
    'list.yaml:10 container docker.io/library/postgres:16',
    'list.yaml:17 container docker.io/library/nginx:1.27',
    'pod.yaml:10 container docker.io/library/redis:7',
    'pod.yaml:13 ephemeralContainer docker.io/library/busybox:latest',
    'workloads/custom.yaml:6 container ghcr.io/acme/widget:9',
    'workloads/deploy.yml:9 initContainer quay.io/my-org/init:1.0',
    'workloads/deploy.yml:12 container registry.example.com:5000/team/web:2',
    'workloads/deploy.yml:27 container docker.io/org/job:3',
  ]);
  const web = scan.images.find((i) => i.raw.includes('team/web'));
  t.is(web?.ref.digest, D);
  t.is(web?.raw, `registry.example.com:5000/team/web:2@${D}`);
  t.deepEqual(scan.namespaces, ['data', 'extra', 'jobs', 'team-a']);
  t.deepEqual(scan.application, { name: 'my-app', additionalNamespaces: ['extra', '*'] });
  t.deepEqual(scan.carried?.map((f) => f.path),
    ['empty.yaml', 'kots-app.yaml', 'list.yaml', 'pod.yaml', 'trap.yaml', 'workloads/custom.yaml', 'workloads/deploy.yml']);
  t.is(scan.files.find((f) => f.path === 'trap.yaml')?.content.toString(), FIXTURE['trap.yaml']);
});

test('reports each occurrence, leaving dedup to the caller', async (t) => {
  const pod = 'kind: Pod\nmetadata: {name: a}\nspec: {containers: [{image: redis:7}, {image: redis:7}]}\n';
  const dir = await tree(t, { 'a.yaml': pod, 'b.yaml': pod });
  t.is((await scanManifests(dir)).images.length, 4);
});

test('malformed YAML names file:line and the reason', async (t) => {
  const dir = await tree(t, { 'ok.yaml': 'kind: Pod\n', 'sub/bad.yaml': 'kind: Pod\nmetadata:\n  name: [unclosed\nspec: {}\n' });
  const e = await t.throwsAsync(scanManifests(dir));
  t.true(isAirgapError(e, 'E_MANIFESTS'));
  t.regex(e?.message ?? '', /^sub\/bad\.yaml:\d+: malformed YAML: \S/);
  t.false(e?.message.includes('\n'));
});

test('a malformed image reference names file:line', async (t) => {
  const dir = await tree(t, { 'd.yaml': 'kind: Deployment\nspec:\n  template:\n    spec:\n      containers:\n        - image: Bad/UPPER:1\n' });
  const e = await t.throwsAsync(scanManifests(dir));
  t.true(isAirgapError(e, 'E_REFERENCE'));
  t.regex(e?.message ?? '', /^d\.yaml:6: invalid image reference "Bad\/UPPER:1"/);
});

test('an image that is not a string, in a pod spec, names file:line', async (t) => {
  const dir = await tree(t, { 'p.yaml': 'kind: Pod\nspec:\n  containers:\n    - image: redis:7\n    - image: 42\n' });
  const e = await t.throwsAsync(scanManifests(dir));
  t.true(isAirgapError(e, 'E_MANIFESTS'));
  t.regex(e?.message ?? '', /^p\.yaml:5: image must be a string/);
});

test('a containers list without a string image is not a pod spec', async (t) => {
  const dir = await tree(t, { 'c.yaml': 'kind: Widget\nmetadata: {name: w}\nspec:\n  containers:\n    - image: {repository: redis, tag: "7"}\n' });
  const scan = await scanManifests(dir);
  t.deepEqual(scan.images, []);
  t.deepEqual(scan.findings, []);
});

test('Helm templates must be rendered first', async (t) => {
  for (const text of [
    'kind: Pod\nspec:\n  containers:\n    - image: {{ .Values.image }}\n',
    'kind: Pod\nmetadata:\n  labels:\n    {{- include "x.labels" . | nindent 4 }}\nspec: {}\n',
    'kind: Pod\nspec:\n  containers:\n    - image: "{{ .Values.image }}"\n',
  ]) {
    const dir = await tree(t, { 'templates/pod.yaml': text });
    const { findings } = await scanManifests(dir);
    t.is(findings.length, 1, text);
    t.like(findings[0], { severity: 'error', code: 'unrendered-template', file: 'templates/pod.yaml' }, text);
    t.regex(findings[0]!.message, /rendered first/);
  }
});

test('a missing directory is E_MANIFESTS', async (t) => {
  const e = await t.throwsAsync(scanManifests(join(tmpdir(), 'airgap-does-not-exist-' + process.pid)));
  t.true(isAirgapError(e, 'E_MANIFESTS'));
  t.regex(e?.message ?? '', /ENOENT/);
});

test('pod specs by shape at any depth, in any kind, and .json manifests', async (t) => {
  const dir = await tree(t, {
    'analysis.yaml': `apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata: {name: a}
spec:
  metrics:
    - name: m
      provider:
        job:
          spec:
            template:
              spec:
                containers:
                  - {name: j, image: "quay.io/org/job:1"}
`,
    'preflight.yaml': `apiVersion: troubleshoot.sh/v1beta2
kind: Preflight
metadata: {name: p}
spec:
  collectors:
    - runPod:
        podSpec:
          initContainers: [{name: i, image: busybox:1.36}]
          containers:
            - name: c
              image: ghcr.io/org/check:2
`,
    'web.json': '{\n  "apiVersion": "v1",\n  "kind": "Pod",\n  "metadata": {"name": "w"},\n  "spec": {"containers": [\n    {"name": "w", "image": "nginx:1.27"}\n  ]}\n}\n',
  });
  const scan = await scanManifests(dir);
  t.deepEqual(scan.images.map((i) => `${i.file}:${i.line} ${i.origin} ${i.raw}`), [
    'analysis.yaml:13 container quay.io/org/job:1',
    'preflight.yaml:8 initContainer busybox:1.36',
    'preflight.yaml:11 container ghcr.io/org/check:2',
    'web.json:6 container nginx:1.27',
  ]);
  t.deepEqual(scan.findings, []);
});

test('refusals: duplicate objects, unpacked Helm charts, nested kustomize trees', async (t) => {
  const dep = (name: string, ns = '') => `apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: ${name}\n${ns ? `  namespace: ${ns}\n` : ''}spec:\n  template:\n    spec:\n      containers: [{name: c, image: "redis:7"}]\n`;
  const dir = await tree(t, {
    'kots.yaml': 'kind: ConfigMap\nmetadata: {name: k}\ndata:\n  a: "{{replicas}} {{ .replicas }}"\n',
    'd.yaml': `${dep('ns-default', 'default')}---\n${dep('ns-default')}`,
    'a.yaml': dep('web'),
    'b.yaml': `# comment\n${dep('web')}---\n${dep('web', 'other')}---\n${dep('api')}`,
    'c.yaml': dep('web').replace('apps/v1', 'apps/v2').replace('Deployment', 'StatefulSet'),
    'charts/mychart/Chart.yaml': 'apiVersion: v2\nname: mychart\nversion: 0.1.0\n',
    'charts/mychart/templates/d.yaml': 'kind: Pod\nmetadata:\n  name: {{ .Release.Name }}\n',
    'sub/kustomization.yaml': 'resources: []\n',
  });
  const scan = await scanManifests(dir);
  t.deepEqual(scan.findings.map((f) => `${f.severity} ${f.code} ${f.file}:${f.line}`), [
    'error helm-chart-directory charts/mychart/Chart.yaml:1',
    'error nested-kustomization sub/kustomization.yaml:1',
    'error duplicate-object b.yaml:2',
    'error duplicate-object d.yaml:11',
  ]);
  t.regex(scan.findings.find((f) => f.code === 'duplicate-object')!.message, /^Deployment.apps\/web is defined again; first at a\.yaml:1$/);
  for (const f of scan.findings) t.true(f.hint.length > 10, f.code);
});

test('a KOTS release is rendered, not refused: what does not render is named, with the file:line of the template', async (t) => {
  testHelm(); // its HelmChart is rendered with the helm on PATH
  const dir = await tree(t, {
    'kots.yaml': 'kind: ConfigMap\napiVersion: v1\nmetadata: {name: k}\ndata:\n  a: "{{replicas}} {{ .replicas }}"\n  b: repl{{ ConfigOption "b" }}\n',
    'helm.yaml': 'apiVersion: kots.io/v1beta1\nkind: HelmChart\nmetadata: {name: pg}\nspec:\n  chart: {name: postgresql, chartVersion: 12.1.0}\n',
    'charts/mychart/Chart.yaml': 'apiVersion: v2\nname: mychart\nversion: 0.1.0\n',
    'charts/mychart/templates/d.yaml': 'kind: Pod\nmetadata:\n  name: {{ .Release.Name }}\n',
    'pod.yaml': 'apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c, image: "redis:7"}]}\n',
  });
  const scan = await scanManifests(dir);
  t.deepEqual(scan.findings.map((f) => `${f.severity} ${f.code} ${f.file}:${f.line}`), [
    'error helm-chart-directory charts/mychart/Chart.yaml:1',
    'error kots-template kots.yaml:5',
    'error helm-render helm.yaml:1',
  ]);
  t.regex(scan.findings[1]!.message, /function "icas" not defined|icas/);
  t.regex(scan.findings[2]!.message, /installs chart postgresql version 12\.1\.0, and no chart archive is that chart/);
  t.regex(scan.findings[0]!.hint, /helm package/);
  t.deepEqual(scan.images.map((i) => i.raw), ['redis:7']);
  // What build carries is the release as written, and the unpacked chart is not part of it.
  t.deepEqual(scan.carried?.map((f) => f.path).sort(), ['helm.yaml', 'kots.yaml', 'pod.yaml']);
});

test('a chart archive is refused by name; a .tgz that is not a chart is not', async (t) => {
  const { pack } = await import('tar-stream');
  const { gzipSync } = await import('node:zlib');
  const tgz = async (files: Record<string, string>): Promise<Buffer> => {
    const p = pack();
    for (const [name, text] of Object.entries(files)) p.entry({ name }, text);
    p.finalize();
    const chunks: Buffer[] = [];
    for await (const c of p) chunks.push(c as Buffer);
    return gzipSync(Buffer.concat(chunks));
  };
  const dir = await tree(t, { 'pod.yaml': 'kind: Pod\nmetadata: {name: p}\nspec: {containers: [{image: "redis:7"}]}\n' });
  await writeFile(join(dir, 'nginx-15.0.0.tgz'), await tgz({ 'nginx/Chart.yaml': 'apiVersion: v2\nname: nginx\nversion: 15.0.0\n', 'nginx/templates/x.yaml': '{{ x }}' }));
  await writeFile(join(dir, 'docs.tar.gz'), await tgz({ 'README.md': 'hello' }));
  await writeFile(join(dir, 'junk.tgz'), 'not gzip at all');
  const scan = await scanManifests(dir);
  t.deepEqual(scan.findings.map((f) => `${f.code} ${f.file}:${f.line}`), ['helm-chart-archive nginx-15.0.0.tgz:1']);
  t.regex(scan.findings[0]!.message, /Helm chart archive nginx 15\.0\.0 is not rendered/);
  t.deepEqual(scan.files.map((f) => f.path), ['pod.yaml'], 'archives are not carried as manifests');
});

test('undeclared image-like strings outside pod specs are warnings; free text and Go templates are not', async (t) => {
  const dir = await tree(t, {
    'kots-app.yaml': 'apiVersion: kots.io/v1beta1\nkind: Application\nmetadata: {name: a}\nspec:\n  additionalImages: [quay.io/org/declared:1]\n',
    'op.yaml': `apiVersion: example.com/v1
kind: Operator
metadata: {name: o}
spec:
  image: quay.io/org/declared:1
  sidecarImage: quay.io/org/sidecar:2
  args: ["--reloader-image=ghcr.io/org/reloader:3", "--other=quay.io/org/declared:1", "--level=info"]
  env:
    - {name: RELATED_IMAGE_DB, value: "postgres:16"}
    - {name: GREETING, value: "hello:1"}
  apiGroup: rbac.authorization.k8s.io/v1
  url: https://quay.io/org/x:1
  note: "see quay.io/org/inline:1 for details"
  summary: "{{ $labels.instance }} is down"
  spelled: docker.io/library/redis:7
  script: |
    quay.io/org/in-a-block:1
---
apiVersion: v1
kind: Pod
metadata: {name: p}
spec:
  containers: [{name: c, image: "redis:7"}]
`,
  });
  const scan = await scanManifests(dir);
  const warnings = scan.findings.map((f) => `${f.severity} ${f.code} ${f.file}:${f.line} ${f.message.split(' ')[0]}`);
  t.deepEqual(warnings, [
    'warning undeclared-image op.yaml:6 quay.io/org/sidecar:2',
    'warning undeclared-image op.yaml:7 ghcr.io/org/reloader:3',
    'warning undeclared-image op.yaml:9 postgres:16',
    'warning undeclared-image op.yaml:15 docker.io/library/redis:7',
  ]);
  t.regex(scan.findings[0]!.hint, /additionalImages/);
  t.regex(scan.findings[3]!.message, /is the bundled image redis:7 \(op\.yaml:23\) written another way/);
});

test('a kustomize tree is rendered with kubectl kustomize and scanned as rendered', async (t) => {
  const dir = await tree(t, {
    'kustomization.yaml': 'resources: [d.yaml]\nnamespace: shop\nimages:\n  - {name: redis, newName: quay.io/org/redis, newTag: "7.2"}\n',
    'd.yaml': 'apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec:\n  template:\n    spec:\n      containers: [{name: c, image: redis}]\n',
    'not-listed.yaml': 'apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c, image: "nginx:1"}]}\n',
  });
  const scan = await scanManifests(dir);
  t.deepEqual(scan.files.map((f) => f.path), ['kustomized.yaml']);
  t.deepEqual(scan.images.map((i) => i.raw), ['quay.io/org/redis:7.2']);
  t.deepEqual(scan.namespaces, ['shop']);
  const broken = await tree(t, { 'kustomization.yaml': 'resources: [missing.yaml]\n' });
  const e = await t.throwsAsync(scanManifests(broken));
  t.true(isAirgapError(e, 'E_MANIFESTS'));
  t.regex(e?.message ?? '', /^kustomization\.yaml: kubectl kustomize .* failed: .*missing\.yaml/);
});

test('image-like strings are judged against the images of every file, those read after them too', async (t) => {
  const dir = await tree(t, {
    'a-operator.yaml': 'apiVersion: example.com/v1\nkind: Operator\nmetadata: {name: o}\nspec:\n'
      + '  workerImage: quay.io/org/worker:4\n  cacheImage: docker.io/library/redis:7\n  otherImage: quay.io/org/other:1\n',
    'z-pods.yaml': 'apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n'
      + '    - {name: w, image: quay.io/org/worker:4}\n    - {name: r, image: "redis:7"}\n',
  });
  const scan = await scanManifests(dir);
  t.deepEqual(scan.findings.map((f) => `${f.file}:${f.line} ${f.message}`), [
    'a-operator.yaml:6 docker.io/library/redis:7 is the bundled image redis:7 (z-pods.yaml:7) written another way; the rewrite replaces exact text only, so this one keeps pointing at its source',
    'a-operator.yaml:7 quay.io/org/other:1 looks like an image outside any pod spec; it is neither bundled nor rewritten',
  ]);
});

test('a file read document by document: a template in a later document leaves nothing of the file but its finding', async (t) => {
  const dir = await tree(t, {
    'a.yaml': 'apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: early}\nspec:\n  containers: [{name: c, image: "redis:7"}]\n'
      + '---\napiVersion: v1\nkind: Pod\nmetadata: {name: q}\nspec:\n  containers:\n    - name: c\n      image: {{ .Values.image }}\n',
    'b.yaml': 'apiVersion: v1\nkind: Pod\nmetadata: {name: r, namespace: kept}\nspec:\n  containers: [{name: c, image: "nginx:1.27"}]\n',
  });
  const scan = await scanManifests(dir);
  t.deepEqual(scan.images.map((i) => `${i.file}:${i.line} ${i.raw}`), ['b.yaml:5 nginx:1.27']);
  t.deepEqual(scan.namespaces, ['kept']);
  t.deepEqual(scan.findings.map((f) => `${f.severity} ${f.file}:${f.line}`), ['error a.yaml:13']);
  t.regex(scan.findings[0]!.message, /template expressions/);
});

test('a file read document by document: malformed YAML in a later document is still an error at its line', async (t) => {
  const dir = await tree(t, {
    'a.yaml': 'apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers: [{name: c, image: "redis:7"}]\n'
      + '---\napiVersion: v1\nkind: Pod\nmetadata: {name: q\nspec: {}\n',
  });
  const e = await scanManifests(dir).then(() => undefined, (x: unknown) => x as Error);
  t.true(isAirgapError(e, 'E_MANIFESTS'));
  t.regex(e?.message ?? '', /^a\.yaml:\d+: malformed YAML/);
});

test('a ConfigMap of 40,000 keys is read in one pass; a repeated key is still refused at its line', async (t) => {
  const keys = Array.from({ length: 40000 }, (_, i) => `  k${i}: v${i}`).join('\n');
  const big = `apiVersion: v1\nkind: ConfigMap\nmetadata: {name: big}\ndata:\n${keys}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers: [{name: c, image: "redis:7"}]\n`;
  const started = process.hrtime.bigint();
  const scan = await scanManifests(await tree(t, { 'big.yaml': big }));
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  t.deepEqual(scan.images.map((i) => i.raw), ['redis:7']);
  t.log(`40,000 keys read in ${ms.toFixed(0)} ms`);
  const dup = 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: d}\ndata:\n  a: "1"\n  b: "2"\n  a: "3"\n';
  await t.throwsAsync(scanManifests(await tree(t, { 'dup.yaml': dup })), { message: /dup\.yaml:7: malformed YAML: duplicate key "a"/ });
});
