import anyTest, { type TestFn } from 'ava';
import { execFile } from 'node:child_process';
import { chmod, cp, mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { parseAllDocuments, stringify } from 'yaml';
import type { WorldImage } from '../src/testing/world.js';
import { startStage, stopStage, type Stage } from '../src/testing/stage.js';
import { json, resolveFlags, runCli, type CliResult } from '../src/testing/cli.js';
import { canRunContainerd, startContainerd } from '../src/testing/containerd.js';
import {
  chartWithMissingDependency, helm, helmChartV1beta1, helmChartV1beta2, packageChart, tarChart, testHelm, writeChart,
  writeHelmChart, type BuiltChart,
} from '../src/testing/charts.js';
import { parseReference, taggedName } from '../src/reference.js';

/**
 * A KOTS release made of Helm charts, through the built CLI with the real helm (issue 23, "Show
 * it"): a v1beta2 HelmChart whose chart has a subchart, a sidecar only its builder values switch
 * on (the customer may switch it on inside the gap, through a Config item and optionalValues),
 * values written with HasLocalRegistry and ImagePullSecretName; and a v1beta1 HelmChart. Every
 * image is bundled; installed, the chart and its values file name only the customer registry;
 * the pushed OCI chart is the archive; a node pulls a chart image by its rendered name. helm runs
 * once per chart and values set: a wrapper on PATH counts its runs.
 */

const run = promisify(execFile);
interface Ctx extends Stage {
  homes: string;
  release: string;
  shop: BuiltChart;
  tools: BuiltChart;
  images: Record<'api' | 'metrics' | 'cache' | 'tools', WorldImage>;
  bundle: string;
  registry: string;
  /** What the install test leaves for later ones (t.context itself is copied for each test). */
  installed: { out?: string; pushed?: { target: string; digest: string }[] };
}
const test = anyTest as TestFn<Ctx>;

type Values = Record<string, unknown>;

/** A Deployment whose containers are `name → image value expression`, with the chart's pull secrets. */
function deployment(name: string, containers: [string, string, string?][]): string {
  return [
    'apiVersion: apps/v1',
    'kind: Deployment',
    `metadata: {name: "{{ .Release.Name }}-${name}", namespace: "{{ .Release.Namespace }}"}`,
    'spec:',
    '  template:',
    '    spec:',
    '      {{- with .Values.imagePullSecrets }}',
    '      imagePullSecrets:',
    '      {{- range . }}',
    '      - name: {{ . }}',
    '      {{- end }}',
    '      {{- end }}',
    '      containers:',
    ...containers.flatMap(([c, image, condition]) => [
      ...(condition ? [`      {{- if ${condition} }}`] : []),
      `      - name: ${c}`,
      `        image: "${image}"`,
      ...(condition ? ['      {{- end }}'] : []),
    ]),
    '',
  ].join('\n');
}

const split = (img: WorldImage): Values => {
  const ref = parseReference(img.ref);
  return { registry: ref.registry, repository: ref.repository, tag: ref.tag };
};
const IMAGE = (v: string): string => `{{ ${v}.registry }}/{{ ${v}.repository }}:{{ ${v}.tag }}`;

/**
 * `shop` 1.0.0 (its subchart `cache` 0.3.0) and `tools` 0.1.0, packaged by helm; their defaults
 * name the world's registries (the private API image by its upstream name, as a chart does).
 */
async function buildCharts(dir: string, homes: string, images: Ctx['images']): Promise<{ shop: BuiltChart; tools: BuiltChart }> {
  const src = join(dir, 'src');
  const cache = await writeChart(src, {
    name: 'cache', version: '0.3.0', values: { image: split(images.cache) },
    templates: { 'deployment.yaml': deployment('cache', [['cache', IMAGE('.Values.image')]]) },
  });
  const cacheArchive = await packageChart(cache, join(src, 'packaged'), homes);
  const shop = await writeChart(src, {
    name: 'shop', version: '1.0.0',
    dependencies: [{ name: 'cache', version: '0.3.0', repository: 'file://../cache', condition: 'cache.enabled' }],
    values: {
      image: split(images.api),
      metrics: { enabled: false, image: split(images.metrics) },
      imagePullSecrets: [],
      cache: { enabled: true },
    },
    templates: { 'deployment.yaml': deployment('api', [['api', IMAGE('.Values.image')], ['metrics', IMAGE('.Values.metrics.image'), '.Values.metrics.enabled']]) },
  });
  await mkdir(join(shop, 'charts'), { recursive: true });
  await writeFile(join(shop, 'charts', 'cache-0.3.0.tgz'), cacheArchive.bytes);
  const tools = await writeChart(src, {
    name: 'tools', version: '0.1.0', values: { image: images.tools.ref, imagePullSecrets: [] },
    templates: { 'deployment.yaml': deployment('tools', [['tools', '{{ .Values.image }}']]) },
  });
  const release = join(dir, 'packaged');
  const [shopBuilt, toolsBuilt] = [await packageChart(shop, release, homes), await packageChart(tools, release, homes)];
  return { shop: { name: 'shop', version: '1.0.0', ...shopBuilt }, tools: { name: 'tools', version: '0.1.0', ...toolsBuilt } };
}

/** `repl{{ HasLocalRegistry | ternary A "B" }}`, as KOTS's documentation writes chart values. */
const local = (a: string, b: string): string => `repl{{ HasLocalRegistry | ternary ${a} "${b}" }}`;

/** The release: both archives (file names that are not the charts'), their HelmCharts, a Config. */
async function writeRelease(dir: string, c: Ctx, shopVersion = '1.0.0'): Promise<string> {
  const { world, images } = c;
  await mkdir(join(dir, 'charts'), { recursive: true });
  await writeFile(join(dir, 'charts', 'shop.tgz'), c.shop.bytes);
  await writeFile(join(dir, 'charts', 'tools-chart.tgz'), c.tools.bytes);
  const api = parseReference(images.api.ref);
  await writeHelmChart(join(dir, 'shop-chart.yaml'), helmChartV1beta2({
    name: 'shop', chartName: 'shop', chartVersion: shopVersion,
    values: {
      // Online: the private image through the vendor proxy; inside the gap: the customer registry.
      image: {
        registry: local('LocalRegistryHost', world.proxy),
        repository: `${local('LocalRegistryNamespace', `proxy/${world.appSlug}/private.registry.test/acme`)}/api`,
        tag: api.tag,
      },
      imagePullSecrets: ['repl{{ ImagePullSecretName }}'],
      cache: { image: { registry: local('LocalRegistryHost', world.public), repository: `${local('LocalRegistryNamespace', 'library')}/redis` } },
    },
    optionalValues: [{
      when: 'repl{{ ConfigOptionEquals "enable_metrics" "1" }}', recursiveMerge: true,
      values: { metrics: { enabled: true, image: { registry: local('LocalRegistryHost', world.public), repository: `${local('LocalRegistryNamespace', 'library')}/busybox` } } },
    }],
    // Only the builder switches the sidecar on: the airgap build must still carry its image.
    builder: { metrics: { enabled: true } },
  }));
  await writeHelmChart(join(dir, 'tools-chart.yaml'), helmChartV1beta1({
    name: 'tools', chartName: 'tools', chartVersion: '0.1.0',
    values: { image: `repl{{ LocalImageName "${images.tools.ref}" }}`, imagePullSecrets: ['repl{{ ImagePullSecretName }}'] },
  }));
  await writeFile(join(dir, 'config.yaml'), stringify({
    apiVersion: 'kots.io/v1beta1', kind: 'Config', metadata: { name: 'shop' },
    spec: { groups: [{ name: 'monitoring', title: 'Monitoring', items: [{ name: 'enable_metrics', title: 'Metrics sidecar', type: 'bool', default: '0' }] }] },
  }));
  return dir;
}

/**
 * A `helm` ahead of the real one on PATH that logs each run (its verb, release name, and hashes of
 * the chart and values files it is given) to `log`, then runs the real helm. airgap passes no
 * HELM_* variable on, so the log's path is written into the script.
 */
async function countingHelm(dir: string, log: string): Promise<string> {
  const bin = join(dir, 'bin');
  await mkdir(bin, { recursive: true });
  await writeFile(join(bin, 'helm'), [
    '#!/bin/sh',
    'chart=; values=; prev=',
    'for a in "$@"; do',
    '  case "$prev" in --values|-f) values=$(sha256sum < "$a" | cut -c1-16);; esac',
    '  case "$a" in *.tgz) chart=$(sha256sum < "$a" | cut -c1-16);; esac',
    '  prev=$a',
    'done',
    `echo "$1 $2 chart=$chart values=$values" >> '${log}'`,
    `exec '${testHelm()}' "$@"`,
    '',
  ].join('\n'));
  await chmod(join(bin, 'helm'), 0o755);
  return bin;
}

async function helmRuns(log: string): Promise<string[]> {
  return (await readFile(log, 'utf8').catch(() => '')).split('\n').filter((l) => l !== '');
}

const withPath = (bin: string): Record<string, string> => ({ PATH: `${bin}:${process.env['PATH'] ?? ''}` });

/** Every image of every pod spec (by shape: a mapping with a `containers` list), in a YAML stream. */
function podImages(text: string): string[] {
  const out: string[] = [];
  const walk = (v: unknown): void => {
    if (Array.isArray(v)) v.forEach(walk);
    else if (v !== null && typeof v === 'object') {
      const o = v as Record<string, unknown>;
      if (Array.isArray(o['containers'])) {
        for (const c of [o['containers'], o['initContainers'] ?? []].flat() as { image?: unknown }[]) if (typeof c.image === 'string') out.push(c.image);
      }
      Object.values(o).forEach(walk);
    }
  };
  for (const d of parseAllDocuments(text)) walk(d.toJS());
  return out;
}

function pullSecrets(text: string): string[] {
  const out: string[] = [];
  for (const d of parseAllDocuments(text)) {
    const spec = (d.toJS() as { spec?: { template?: { spec?: { imagePullSecrets?: { name: string }[] } } } } | null)?.spec?.template?.spec;
    for (const s of spec?.imagePullSecrets ?? []) out.push(s.name);
  }
  return out;
}

async function configValues(dir: string, name: string, metrics: '0' | '1'): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, stringify({
    apiVersion: 'kots.io/v1beta1', kind: 'ConfigValues', metadata: { name: 'acme-shop' },
    spec: { values: { enable_metrics: { value: metrics } } },
  }));
  return path;
}

const tagged = (img: WorldImage): string => taggedName(parseReference(img.ref));

test.before(async (t) => {
  testHelm();
  await startStage(t.context, 'helm', { world: { app: 'kots' } });
  const { world, dir } = t.context;
  const find = (repo: string): WorldImage => {
    const img = world.images.find((i) => i.repo === repo && !i.pinned && !i.proxied);
    if (img === undefined) throw new Error(`the kots world has no ${repo}`);
    return img;
  };
  t.context.images = { api: find('acme/api'), metrics: find('library/busybox'), cache: find('library/redis'), tools: find('library/alpine') };
  t.context.homes = join(dir, 'helm-homes');
  Object.assign(t.context, await buildCharts(join(dir, 'charts'), t.context.homes, t.context.images));
  t.context.release = await writeRelease(join(dir, 'release'), t.context);
  t.context.bundle = join(dir, 'shop.tar');
  t.context.registry = `${t.context.customer.host}/shop`;
  t.context.installed = {};
});

test.after.always((t) => stopStage(t.context));

const chartImages = (c: Ctx): string[] => [c.images.api, c.images.metrics, c.images.cache, c.images.tools].map(tagged).sort();

test.serial('plan --offline lists every chart image (the builder-only sidecar and the subchart\'s too), running helm once per chart', async (t) => {
  const log = join(t.context.dir, 'plan-helm.log');
  const bin = await countingHelm(join(t.context.dir, 'plan-wrapper'), log);
  const r = await runCli(['plan', '--manifests', t.context.release, '--license', t.context.world.licensePath, '--offline', '--json'], { env: withPath(bin) });
  t.is(r.code, 0, r.stdout + r.stderr);
  const plan = json<{ images: { ref: string }[]; findings: { severity: string; message: string }[] }>(r);
  t.deepEqual(plan.images.map((i) => i.ref).sort(), chartImages(t.context));
  // Nothing to say: the image the v1beta1 HelmChart's values name (LocalImageName) is the one its chart renders.
  t.deepEqual(plan.findings, []);
  const runs = await helmRuns(log);
  t.deepEqual(runs.map((l) => l.split(' ').slice(0, 2).join(' ')).sort(), ['template shop', 'template tools'], runs.join('\n'));
});

test.serial('build bundles every chart image, running helm template once per chart and values set', async (t) => {
  const { world, release, bundle, dir } = t.context;
  const log = join(dir, 'build-helm.log');
  const bin = await countingHelm(join(dir, 'build-wrapper'), log);
  const r = await runCli(['build', '--manifests', release, '--license', world.licensePath, '--out', bundle, ...resolveFlags(world), '--json'], { env: withPath(bin) });
  t.is(r.code, 0, r.stderr);
  const inspected = json<{ images: { ref: string }[] }>(await runCli(['inspect', bundle, '--json']));
  t.deepEqual(inspected.images.map((i) => i.ref).sort(), chartImages(t.context));
  const runs = await helmRuns(log);
  t.true(runs.length >= 2, runs.join('\n'));
  t.is(new Set(runs).size, runs.length, `a chart rendered twice with the same values:\n${runs.join('\n')}`);
});

test.serial('install with ConfigValues: helm template of OUT/charts/<chart>-<version>.tgz with its values.yaml names only customer-registry images', async (t) => {
  const c = t.context;
  const { world, bundle, registry, user, dir } = c;
  const log = join(dir, 'install-helm.log');
  const bin = await countingHelm(join(dir, 'install-wrapper'), log);
  const out = join(dir, 'install');
  c.installed.out = out;
  const r = await runCli(['install', bundle, '--registry', registry, '--username', user.username, '--password-stdin', '--namespace', 'shop',
    '--config-values', await configValues(dir, 'metrics-on.yaml', '1'), '--license', world.licensePath, '--out', out, '--json'],
  { input: user.password, env: withPath(bin) });
  t.is(r.code, 0, r.stderr);
  const summary = json<{ push: { images: { target: string; digest: string }[] }; rewrite: { charts: { name: string; version: string; archive: string; values: string }[]; warnings: string[] } }>(r);
  const pushed = summary.push.images;
  c.installed.pushed = pushed;
  t.deepEqual(summary.rewrite.warnings, [], 'every chart image is set by the values: nothing left to the by-tag rewrite');
  t.deepEqual(summary.rewrite.charts.map((x) => `${x.archive} ${x.values}`).sort(),
    ['charts/shop-1.0.0.tgz charts/shop/values.yaml', 'charts/tools-0.1.0.tgz charts/tools/values.yaml']);
  const runs = await helmRuns(log);
  t.deepEqual(runs.map((l) => l.split(' ').slice(0, 2).join(' ')).sort(), ['template shop', 'template tools'], runs.join('\n'));

  const pushedName = (img: WorldImage): string => `${registry}/${parseReference(img.ref).repository.split('/').pop()!}:${parseReference(img.ref).tag!}`;
  const want: Record<string, string[]> = {
    shop: [c.images.api, c.images.metrics, c.images.cache].map(pushedName).sort(),
    tools: [pushedName(c.images.tools)],
  };
  for (const chart of [c.shop, c.tools]) {
    const archive = join(out, 'charts', `${chart.name}-${chart.version}.tgz`);
    t.deepEqual(await readFile(archive), chart.bytes, `${chart.name}: the archive as carried`);
    const { stdout } = await helm(['template', chart.name, archive, '-f', join(out, 'charts', chart.name, 'values.yaml'), '-n', 'shop'], c.homes);
    const images = podImages(stdout);
    t.deepEqual([...new Set(images)].sort(), want[chart.name], `${chart.name}: helm template names:\n${images.join('\n')}`);
    t.deepEqual([...new Set(pullSecrets(stdout))], [`${world.appSlug}-registry`], `${chart.name}: the pull secret from ImagePullSecretName`);
    // What airgap rendered for kubectl apply is what helm installs.
    const rendered = await readFile(join(out, 'rendered', 'helm', `${chart.name}.yaml`), 'utf8');
    t.deepEqual(podImages(rendered).sort(), images.sort(), `${chart.name}: rendered/ and helm template agree`);
  }
  for (const name of [...want['shop']!, ...want['tools']!]) t.true(pushed.some((p) => p.target === name), `${name} was pushed`);
});

test.serial('the optionalValues entry follows its Config item: switched off, the sidecar is not rendered', async (t) => {
  const c = t.context;
  const out = join(c.dir, 'rewrite-off');
  const r = await runCli(['rewrite', c.bundle, '--registry', c.registry, '--username', c.user.username, '--password-stdin', '--namespace', 'shop',
    '--config-values', await configValues(c.dir, 'metrics-off.yaml', '0'), '--license', c.world.licensePath, '--out', out], { input: c.user.password });
  t.is(r.code, 0, r.stderr);
  const { stdout } = await helm(['template', 'shop', join(out, 'charts', 'shop-1.0.0.tgz'), '-f', join(out, 'charts', 'shop', 'values.yaml'), '-n', 'shop'], c.homes);
  const images = podImages(stdout);
  t.is(images.length, 2, images.join('\n'));
  t.false(images.some((i) => i.includes('busybox')), images.join('\n'));
  t.true(images.every((i) => i.startsWith(`${c.registry}/`)), images.join('\n'));
});

test.serial('helm pull of each pushed OCI chart returns the archive byte for byte', async (t) => {
  const { registry, user, dir, homes } = t.context;
  for (const chart of [t.context.shop, t.context.tools]) {
    const dest = join(dir, `pulled-${chart.name}`);
    await mkdir(dest);
    await helm(['pull', `oci://${registry}/${chart.name}`, '--version', chart.version, '--plain-http',
      '--username', user.username, '--password', user.password, '--destination', dest], homes);
    t.deepEqual(await readdir(dest), [`${chart.name}-${chart.version}.tgz`]);
    t.deepEqual(await readFile(join(dest, `${chart.name}-${chart.version}.tgz`)), chart.bytes, chart.name);
  }
});

(canRunContainerd() ? test.serial : test.skip)('containerd pulls a chart image by the name helm renders for it', async (t) => {
  const c = t.context;
  const { out, pushed } = c.installed;
  if (out === undefined || pushed === undefined) return t.fail('the install test did not run');
  const { stdout } = await helm(['template', 'shop', join(out, 'charts', 'shop-1.0.0.tgz'), '-f', join(out, 'charts', 'shop', 'values.yaml'), '-n', 'shop'], c.homes);
  const sidecar = podImages(stdout).find((i) => i.includes('/busybox:'));
  t.truthy(sidecar, stdout);
  const digest = pushed.find((p) => p.target === sidecar)?.digest;
  t.truthy(digest, `${sidecar} was pushed`);
  const containerd = await startContainerd();
  t.teardown(() => containerd.stop());
  const ctr = (...args: string[]) => containerd.ctr('-n', 'k8s.io', ...args);
  await ctr('images', 'pull', '--plain-http', '--user', `${c.user.username}:${c.user.password}`, sidecar!);
  const line = (await ctr('images', 'ls')).stdout.split('\n').find((l) => l.startsWith(`${sidecar!} `));
  t.truthy(line, `${sidecar!} pulled`);
  t.true(line!.includes(digest!), `${sidecar!} is ${digest!}: ${line!}`);
  const { stdout: check } = await ctr('images', 'check', `name==${sidecar!}`);
  t.regex(check, /\scomplete \((\d+)\/\1\)/, check);
});

/** plan --offline and build of a release, both expected to refuse it. */
async function refused(c: Ctx, release: string, env?: Record<string, string>): Promise<{ plan: CliResult; build: CliResult; out: string }> {
  const out = join(release, '..', 'refused.tar');
  const opts = env ? { env } : {};
  const plan = await runCli(['plan', '--manifests', release, '--license', c.world.licensePath, '--offline'], opts);
  const build = await runCli(['build', '--manifests', release, '--license', c.world.licensePath, '--out', out, ...resolveFlags(c.world)], opts);
  return { plan, build, out };
}

test('a chart whose subcharts are missing from its archive is refused, naming the chart and each missing dependency', async (t) => {
  const dir = join(t.context.dir, 'missing-dependency');
  const broken = await chartWithMissingDependency(join(dir, 'chart'));
  const release = join(dir, 'release');
  await mkdir(release, { recursive: true });
  await cp(broken.path, join(release, 'broken-0.1.0.tgz'));
  await writeHelmChart(join(release, 'broken.yaml'), helmChartV1beta2({ name: 'broken', chartName: 'broken', chartVersion: '0.1.0' }));
  const r = await refused(t.context, release);
  t.is(r.plan.code, 2, r.plan.stdout + r.plan.stderr);
  t.regex(r.plan.stdout, /broken\.yaml:1: HelmChart broken .*subcharts postgresql, redis \(Chart\.yaml dependencies\) are not in the archive's charts\//);
  t.regex(r.plan.stdout, /helm dependency build/);
  t.is(r.build.code, 2, r.build.stderr);
  t.regex(r.build.stderr, /HelmChart broken .*postgresql, redis/);
  await t.throwsAsync(readFile(r.out));
});

test('a HelmChart naming a chart version no archive has is refused, naming the chart and the version', async (t) => {
  const dir = join(t.context.dir, 'no-such-version');
  const release = await writeRelease(dir, t.context, '1.0.1');
  const r = await refused(t.context, release);
  t.is(r.plan.code, 2, r.plan.stdout + r.plan.stderr);
  t.regex(r.plan.stdout, /shop-chart\.yaml:1: HelmChart shop installs chart shop version 1\.0\.1, and no chart archive is that chart \(the release has shop 1\.0\.0 \(charts\/shop\.tgz\), tools 0\.1\.0 \(charts\/tools-chart\.tgz\)\)/);
  t.is(r.build.code, 2, r.build.stderr);
  t.regex(r.build.stderr, /shop version 1\.0\.1/);
  await t.throwsAsync(readFile(r.out));
});

test('without helm on PATH: one line with the hint, exit 2', async (t) => {
  const empty = join(t.context.dir, 'no-helm-bin');
  await mkdir(empty, { recursive: true });
  const r = await refused(t.context, t.context.release, { PATH: empty });
  for (const [what, res] of [['plan', r.plan], ['build', r.build]] as const) {
    t.is(res.code, 2, `${what}: ${res.stdout}${res.stderr}`);
    t.is(res.stdout, '', what);
    t.is(res.stderr.trim().split('\n').length, 1, `${what}: one line, not one per chart: ${res.stderr}`);
    t.regex(res.stderr, /helm, which is not on PATH.*install helm/, what);
  }
  await t.throwsAsync(readFile(r.out));
});

test('plan of a release of 20 charts runs helm template 20 times, once per chart', async (t) => {
  const dir = join(t.context.dir, 'twenty');
  const release = join(dir, 'release');
  await mkdir(release, { recursive: true });
  for (let i = 0; i < 20; i++) {
    const name = `c${String(i).padStart(2, '0')}`;
    const root = await writeChart(join(dir, 'src'), {
      name, version: '1.0.0', values: { image: t.context.images.tools.ref },
      templates: { 'deployment.yaml': deployment(name, [[name, '{{ .Values.image }}']]) },
    });
    await tarChart(root, join(release, `${name}-1.0.0.tgz`));
    await writeHelmChart(join(release, `${name}.yaml`), helmChartV1beta2({ name, chartName: name, chartVersion: '1.0.0', builder: {} }));
  }
  const log = join(dir, 'helm.log');
  const bin = await countingHelm(dir, log);
  const r = await runCli(['plan', '--manifests', release, '--offline', '--json'], { env: withPath(bin) });
  t.is(r.code, 0, r.stdout + r.stderr);
  t.deepEqual(json<{ images: { ref: string }[] }>(r).images.map((i) => i.ref), [tagged(t.context.images.tools)]);
  const runs = await helmRuns(log);
  t.deepEqual(runs.map((l) => l.split(' ')[1]).sort(), Array.from({ length: 20 }, (_, i) => `c${String(i).padStart(2, '0')}`), runs.join('\n'));
});

test('a chart image its HelmChart values leave at the source is rewritten in rendered/ and named in a warning, since helm with values.yaml would pull it from the source', async (t) => {
  const c = t.context;
  const dir = join(c.dir, 'unset-image');
  const release = join(dir, 'release');
  await mkdir(release, { recursive: true });
  await writeFile(join(release, 'tools-0.1.0.tgz'), c.tools.bytes);
  await writeHelmChart(join(release, 'tools.yaml'), helmChartV1beta1({ name: 'tools', chartName: 'tools', chartVersion: '0.1.0' }));
  const bundle = join(dir, 'tools.tar');
  const b = await runCli(['build', '--manifests', release, '--license', c.world.licensePath, '--out', bundle, ...resolveFlags(c.world)]);
  t.is(b.code, 0, b.stderr);
  const out = join(dir, 'out');
  const r = await runCli(['rewrite', bundle, '--registry', c.registry, '--skip-registry-check', '--namespace', 'shop', '--out', out, '--json']);
  t.is(r.code, 0, r.stderr);
  const source = c.images.tools.ref;
  t.deepEqual(json<{ warnings: string[] }>(r).warnings.map((w) => w.replace(source, 'SOURCE')), [
    'chart tools 0.1.0 (HelmChart tools, tools.yaml): image SOURCE is rewritten in rendered/ only; installed with helm and charts/tools/values.yaml ' +
    'it would be pulled from its source registry: the vendor should set it in the HelmChart\'s values with LocalImageName or HasLocalRegistry',
  ]);
  // What the warning says: rendered/ points at the customer registry, helm with the values file at the source.
  t.deepEqual(podImages(await readFile(join(out, 'rendered', 'helm', 'tools.yaml'), 'utf8')), [`${c.registry}/alpine:3.19`]);
  const { stdout } = await helm(['template', 'tools', join(out, 'charts', 'tools-0.1.0.tgz'), '-f', join(out, 'charts', 'tools', 'values.yaml')], c.homes);
  t.deepEqual(podImages(stdout), [source]);
});
