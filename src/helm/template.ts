import { execFile } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { AirgapError } from '../errors.js';
import { readArchiveFile, readChartArchive } from './chart.js';

/**
 * Renders a chart with the user's own `helm` (DESIGN.md "Helm charts in a release"): `helm
 * template` only, one run per call, with no network: the chart is a local archive (no repository,
 * no `dependency update`), helm's cache, config and data homes are a private temporary directory,
 * and the user's HELM_* and KUBECONFIG settings are not passed on (they would change the namespace,
 * the registry config, the plugins). Its failures become one-line errors naming the chart.
 */

/** helm's output is held in memory: charts render to MBs at most, this bounds a runaway template. */
export const MAX_RENDERED_BYTES = 256 << 20;
const DEFAULT_TIMEOUT_MS = 5 * 60_000;

/** The `helm` on PATH, or E_USAGE with the hint to install it (as for kubectl and kustomize). */
export function findHelm(env: NodeJS.ProcessEnv = process.env): string {
  for (const dir of (env['PATH'] ?? '').split(delimiter)) {
    if (dir === '') continue;
    const candidate = join(dir, 'helm');
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  throw new AirgapError('E_USAGE', 'the release has Helm charts, and rendering them needs helm, which is not on PATH',
    { hint: 'install helm 3.8 or later (https://helm.sh/docs/intro/install/); airgap runs only helm template, offline' });
}

export interface HelmTemplateOptions {
  /** The chart archive (.tgz) as carried. */
  chart: Buffer;
  releaseName: string;
  /** --namespace; KOTS installs a chart with no namespace in the application's (admin console's). */
  namespace: string;
  /** The values file: merged by helm over the chart's values.yaml (null deletes a default). */
  values: Record<string, unknown>;
  /** --kube-version (.Capabilities.KubeVersion); helm's own default when absent. */
  kubeVersion?: string;
  /** --api-versions (.Capabilities.APIVersions). */
  apiVersions?: string[];
  /** What the values are, for the remedy of a missing `required` value (default 'builder'). */
  valuesFrom?: 'builder' | 'values';
  /** Names the chart in messages (e.g. `HelmChart app (manifests/app.yaml:1)`); Chart.yaml's name and version otherwise. */
  label?: string;
  /** Path of helm; findHelm() when absent. */
  helm?: string;
  timeoutMs?: number;
  signal?: AbortSignal;
}

/** `helm template` of one chart with one set of values: the rendered YAML stream. */
export async function helmTemplate(opts: HelmTemplateOptions): Promise<string> {
  const meta = await readChartArchive(opts.chart, opts.label ?? 'chart');
  if (meta === undefined) {
    throw new AirgapError('E_MANIFESTS', `${opts.label ?? 'chart'}: not a chart archive (a gzip'd tar with <chart>/Chart.yaml)`,
      { hint: 'give the archive helm package writes' });
  }
  const label = opts.label ?? `chart ${meta.name} ${meta.version}`;
  // Checked here too, before helm is run: its own message names only the first problem's kind.
  if (meta.missing.length > 0) throw missingDependencies(label, meta.missing);
  const helm = opts.helm ?? findHelm();
  const dir = await mkdtemp(join(tmpdir(), 'airgap-helm-'));
  try {
    const chartFile = join(dir, 'chart.tgz');
    const valuesFile = join(dir, 'values.json'); // JSON is YAML: no ambiguity about types
    await writeFile(chartFile, opts.chart, { mode: 0o600 });
    await writeFile(valuesFile, JSON.stringify(opts.values), { mode: 0o600 });
    const homes = { HELM_CACHE_HOME: join(dir, 'cache'), HELM_CONFIG_HOME: join(dir, 'config'), HELM_DATA_HOME: join(dir, 'data') };
    await Promise.all(Object.values(homes).map((h) => mkdir(h)));
    const args = ['template', opts.releaseName, chartFile, '--namespace', opts.namespace, '--values', valuesFile,
      // KOTS renders with IncludeCRDs (pkg/apparchive/helm-v1beta2.go): a CRD's images count too.
      '--include-crds',
      ...(opts.kubeVersion !== undefined ? ['--kube-version', opts.kubeVersion] : []),
      ...(opts.apiVersions ?? []).flatMap((a) => ['--api-versions', a])];
    const env = { ...privateEnv(process.env), ...homes, KUBECONFIG: join(dir, 'no-kubeconfig') };
    return await new Promise<string>((resolve, reject) => {
      execFile(helm, args, {
        encoding: 'buffer', maxBuffer: MAX_RENDERED_BYTES, env, timeout: opts.timeoutMs ?? DEFAULT_TIMEOUT_MS,
        ...(opts.signal ? { signal: opts.signal } : {}),
      }, (err, stdout, stderr) => {
        if (err === null) {
          resolve(stdout.toString('utf8'));
          return;
        }
        const e = err as NodeJS.ErrnoException & { killed?: boolean };
        if (e.code === 'ENOENT') {
          reject(new AirgapError('E_USAGE', `${label}: helm (${helm}) cannot be run: not found`,
            { hint: 'install helm 3.8 or later and put it on PATH' }));
        } else if (e.code === 'ERR_CHILD_PROCESS_STDIO_MAXBUFFER') {
          reject(new AirgapError('E_MANIFESTS', `${label}: helm template wrote more than ${MAX_RENDERED_BYTES} bytes`,
            { hint: 'check the values: a chart renders to a few MB at most' }));
        } else if (e.name === 'AbortError') {
          reject(err);
        } else if (e.killed) {
          reject(new AirgapError('E_MANIFESTS', `${label}: helm template did not finish in ${(opts.timeoutMs ?? DEFAULT_TIMEOUT_MS) / 1000} s`,
            { hint: 'check the chart\'s templates for a loop that does not end' }));
        } else {
          explain(label, stderr.toString('utf8'), opts).then(reject, reject);
        }
      });
    });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** The environment without what would make helm read or reach anything of the user's. */
function privateEnv(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(env).filter(([k]) => !/^HELM_/.test(k) && k !== 'KUBECONFIG'));
}

function missingDependencies(label: string, missing: string[]): AirgapError {
  const list = missing.join(', ');
  return new AirgapError('E_MANIFESTS',
    `${label}: subchart${missing.length > 1 ? 's' : ''} ${list} (Chart.yaml dependencies) ${missing.length > 1 ? 'are' : 'is'} not in the archive's charts/`,
    { hint: 'run helm dependency build in the chart directory before helm package, and put the new archive in the release' });
}

/** helm's error, as one line naming the chart, the template file and what to do. */
async function explain(label: string, stderr: string, opts: HelmTemplateOptions): Promise<AirgapError> {
  const lines = stderr.split('\n').map((l) => l.trim())
    .filter((l) => l !== '' && !/^Use --debug flag/.test(l)).map((l) => l.replace(/^Error: /, ''));
  const text = lines.join(' ');
  const missing = /missing in charts\/ directory: (.+?)(?:$| Error)/.exec(text);
  if (missing) return missingDependencies(label, missing[1]!.split(/,\s*/));
  const exec = /execution error at \(([^:()]+):(\d+):(\d+)\): (.*)$/.exec(text);
  if (exec) {
    const [, file, line, col, message] = exec;
    const value = await requiredValue(opts.chart, file!, Number(line), Number(col));
    if (value !== undefined) {
      const where = opts.valuesFrom === 'values' ? 'values (spec.values or spec.optionalValues)' : 'builder values (spec.builder)';
      return new AirgapError('E_MANIFESTS', `${label}: value ${value} is required (${file}:${line}: ${message})`,
        { hint: `give ${value} in the HelmChart's ${where}` });
    }
    return new AirgapError('E_MANIFESTS', `${label}: ${file}:${line}: ${message}`,
      { hint: opts.valuesFrom === 'values' ? 'the chart refused these values: change them in the HelmChart' : 'the chart refused the builder values: set the values it asks for in the HelmChart\'s spec.builder' });
  }
  if (/is incompatible with Kubernetes/.test(text)) {
    return new AirgapError('E_MANIFESTS', `${label}: ${text}`, { hint: 'render it with a Kubernetes version the chart accepts' });
  }
  const file = /(?:^|[\s(])((?:[^\s:()]+\/)?(?:templates|crds)\/[^\s:()]+)/.exec(text)?.[1];
  return new AirgapError('E_MANIFESTS', `${label}: ${file ? `${file}: ` : ''}helm template failed: ${text || 'no message'}`,
    { hint: 'fix the chart (helm lint shows the problem) and package it again' });
}

/**
 * The value a `required` call at FILE:LINE:COL asks for, read from the template itself: helm's
 * message is the chart author's text, which may not name it. `(.Values.a.b)`, `$.Values.a.b` and
 * `.Values.a.b | required "…"` are understood; a subchart's value is named from the parent
 * (`sub.a.b`). Undefined when the call is not a `required` or its argument is not so plain.
 */
async function requiredValue(chart: Buffer, file: string, line: number, col: number): Promise<string | undefined> {
  // helm names a file `<chart>/templates/x.yaml`, `<chart>/charts/<sub>/templates/x.yaml`.
  const inArchive = file.slice(file.indexOf('/') + 1);
  const content = await readArchiveFile(chart, inArchive);
  const source = content?.toString('utf8').split('\n')[line - 1];
  if (source === undefined) return undefined;
  const at = source.indexOf('required', Math.max(0, col - 2));
  if (at < 0 || at > col + 2) return undefined;
  const after = /^required\s+(?:"(?:[^"\\]|\\.)*"|`[^`]*`)\s+\(?\s*\$?\.Values((?:\.[A-Za-z0-9_-]+)+)/.exec(source.slice(at));
  const before = /\$?\.Values((?:\.[A-Za-z0-9_-]+)+)\s*\|\s*$/.exec(source.slice(0, at));
  const path = (after ?? before)?.[1]?.slice(1);
  if (path === undefined) return undefined;
  const parents = [...inArchive.matchAll(/charts\/([^/]+)\//g)].map((m) => m[1]!);
  return [...parents, path].join('.');
}
