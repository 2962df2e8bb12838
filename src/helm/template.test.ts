import test from 'ava';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isAirgapError } from '../errors.js';
import { chartWithBuilderSidecar, chartWithMissingDependency, chartWithSubchart, packageChart, tarChart, testHelm, writeChart, type BuiltChart } from '../testing/charts.js';
import { findHelm, helmTemplate } from './template.js';

let dir: string;
let homes: string;
let api: BuiltChart;

test.before(async () => {
  testHelm();
  dir = await mkdtemp(join(tmpdir(), 'airgap-template-test-'));
  homes = join(dir, 'homes');
  api = await chartWithBuilderSidecar(join(dir, 'api'), homes);
});

test.after.always(async () => {
  await rm(dir, { recursive: true, force: true });
});

test('findHelm: the helm on PATH, or E_USAGE with the hint to install it', (t) => {
  t.regex(findHelm(), /\/helm$/);
  const e = t.throws(() => findHelm({ PATH: join(dir, 'nothing-here') }));
  t.true(isAirgapError(e, 'E_USAGE'));
  t.is(e!.message, 'the release has Helm charts, and rendering them needs helm, which is not on PATH');
  t.regex((e as { hint?: string }).hint ?? '', /install helm/);
});

test('renders with the values, release name and namespace; subcharts included', async (t) => {
  const web = await chartWithSubchart(join(dir, 'web'), homes);
  const out = await helmTemplate({ chart: web.bytes, releaseName: 'shop', namespace: 'store', values: { image: 'registry.corp/web:4.5' } });
  t.regex(out, /name: "shop-web", namespace: "store"/);
  t.regex(out, /image: "registry\.corp\/web:4\.5"/);
  t.regex(out, /image: "docker\.io\/library\/redis:7\.2"/); // the subchart's own default
  t.regex(out, /# Source: web\/charts\/cache\/templates\/deployment\.yaml/);
});

test('builder values switch on the optional sidecar; without them it is not rendered', async (t) => {
  const base = { db: { password: 'x' } };
  const plain = await helmTemplate({ chart: api.bytes, releaseName: 'api', namespace: 'default', values: base });
  t.notRegex(plain, /quay\.io\/acme\/metrics/);
  const built = await helmTemplate({ chart: api.bytes, releaseName: 'api', namespace: 'default', values: { ...base, metrics: { enabled: true } } });
  t.regex(built, /image: "quay\.io\/acme\/metrics:0\.9"/);
  t.regex(built, /image: "quay\.io\/acme\/api:2\.0"/);
});

test('a required value not given: names the value, the template and the builder remedy', async (t) => {
  const e = await t.throwsAsync(helmTemplate({ chart: api.bytes, releaseName: 'api', namespace: 'default', values: {}, label: 'HelmChart api (app/api.yaml:1)' }));
  t.true(isAirgapError(e, 'E_MANIFESTS'));
  t.is(e!.message, 'HelmChart api (app/api.yaml:1): value db.password is required (api/templates/deployment.yaml:11: set db.password)');
  t.is((e as { hint?: string }).hint, "give db.password in the HelmChart's builder values (spec.builder)");
  const install = await t.throwsAsync(helmTemplate({ chart: api.bytes, releaseName: 'api', namespace: 'default', values: {}, valuesFrom: 'values' }));
  t.is(install!.message, 'chart api 2.0.0: value db.password is required (api/templates/deployment.yaml:11: set db.password)');
  t.regex((install as { hint?: string }).hint ?? '', /spec\.values or spec\.optionalValues/);
});

test('missing subchart dependencies: the chart and each one, with the helm dependency build remedy', async (t) => {
  const broken = await chartWithMissingDependency(join(dir, 'broken'));
  const e = await t.throwsAsync(helmTemplate({ chart: broken.bytes, releaseName: 'b', namespace: 'default', values: {} }));
  t.true(isAirgapError(e, 'E_MANIFESTS'));
  t.is(e!.message, "chart broken 0.1.0: subcharts postgresql, redis (Chart.yaml dependencies) are not in the archive's charts/");
  t.regex((e as { hint?: string }).hint ?? '', /helm dependency build/);
});

test('a render error names the chart, the template file and helm\'s message, on one line', async (t) => {
  const cases: [string, string, RegExp][] = [
    ['unknown-fn', '{{ nosuchfunction }}', /^chart bad 0\.1\.0: bad\/templates\/x\.yaml: helm template failed: parse error at \(bad\/templates\/x\.yaml:1\): function "nosuchfunction" not defined$/],
    ['nil', 'a: {{ .Values.x.y.z }}', /^chart bad 0\.1\.0: bad\/templates\/x\.yaml: helm template failed: bad\/templates\/x\.yaml:1:\d+ executing .* nil pointer/],
    ['yaml', 'a: [b', /^chart bad 0\.1\.0: bad\/templates\/x\.yaml: helm template failed: YAML parse error on bad\/templates\/x\.yaml: /],
    ['fail', '{{ fail "no way" }}', /^chart bad 0\.1\.0: bad\/templates\/x\.yaml:1: no way$/],
  ];
  for (const [name, template, expected] of cases) {
    const root = await writeChart(join(dir, `bad-${name}`), { name: 'bad', version: '0.1.0', templates: { 'x.yaml': template } });
    const bytes = await tarChart(root, join(dir, `bad-${name}.tgz`));
    const e = await t.throwsAsync(helmTemplate({ chart: bytes, releaseName: 'b', namespace: 'default', values: {} }));
    t.true(isAirgapError(e, 'E_MANIFESTS'), name);
    t.regex(e!.message, expected, name);
    t.false(e!.message.includes('\n'), name);
    t.false(e!.message.includes('--debug'), name);
  }
});

test('kubeVersion: given to helm; a chart that refuses it says so', async (t) => {
  const root = await writeChart(join(dir, 'kv'), { name: 'kv', version: '0.1.0', kubeVersion: '>=1.25.0-0', templates: { 'x.yaml': 'v: "{{ .Capabilities.KubeVersion.Version }}"\n' } });
  const { bytes } = await packageChart(root, join(dir, 'kv-out'), homes);
  t.regex(await helmTemplate({ chart: bytes, releaseName: 'k', namespace: 'default', values: {}, kubeVersion: '1.27.3' }), /v: "v1\.27\.3"/);
  const e = await t.throwsAsync(helmTemplate({ chart: bytes, releaseName: 'k', namespace: 'default', values: {}, kubeVersion: '1.20.0' }));
  t.regex(e!.message, /^chart kv 0\.1\.0: chart requires kubeVersion: >=1\.25\.0-0 which is incompatible with Kubernetes v1\.20\.0$/);
});

test('helm runs with private homes and values file (0600), without the user\'s HELM_* or KUBECONFIG; all removed after', async (t) => {
  // A stand-in helm that reports what it was given.
  const fake = join(dir, 'fake-helm');
  await writeFile(fake, '#!/bin/sh\nenv | grep -E "^(HELM_|KUBECONFIG)" | sort\nfor a in "$@"; do case "$a" in */values.json) echo "values $(stat -c %a "$a") $(cat "$a")"; echo "tmp ${a%/values.json}";; esac; done\necho "args $*"\n', { mode: 0o755 });
  const saved = { ...process.env };
  process.env['HELM_NAMESPACE'] = 'from-user';
  process.env['HELM_REGISTRY_CONFIG'] = '/home/user/registry.json';
  process.env['KUBECONFIG'] = '/home/user/.kube/config';
  let out: string;
  try {
    out = await helmTemplate({ chart: api.bytes, releaseName: 'r', namespace: 'mine', values: { a: 1 }, helm: fake, kubeVersion: '1.30.0' });
  } finally {
    process.env = saved;
  }
  t.notRegex(out, /from-user|\/home\/user/);
  const tmp = /^tmp (.+)$/m.exec(out)![1]!;
  t.regex(out, new RegExp(`^HELM_CACHE_HOME=${tmp}/cache$`, 'm'));
  t.regex(out, new RegExp(`^HELM_CONFIG_HOME=${tmp}/config$`, 'm'));
  t.regex(out, new RegExp(`^HELM_DATA_HOME=${tmp}/data$`, 'm'));
  t.regex(out, new RegExp(`^KUBECONFIG=${tmp}/no-kubeconfig$`, 'm'));
  t.regex(out, /^values 600 \{"a":1\}$/m);
  t.regex(out, new RegExp(`^args template r ${tmp}/chart.tgz --namespace mine --values ${tmp}/values.json --include-crds --kube-version 1.30.0$`, 'm'));
  t.false(existsSync(tmp));
});

test('not a chart archive: E_MANIFESTS before helm runs', async (t) => {
  const e = await t.throwsAsync(helmTemplate({ chart: Buffer.from('nope'), releaseName: 'x', namespace: 'default', values: {}, label: 'app/x.tgz', helm: '/nonexistent/helm' }));
  t.true(isAirgapError(e, 'E_MANIFESTS'));
  t.regex(e!.message, /^app\/x\.tgz: not a chart archive/);
});
