import test from 'ava';
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
  t.deepEqual(scan.files.map((f) => f.path),
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
