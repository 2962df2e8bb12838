import { AirgapError } from '../errors.js';
import type { ChartArchive } from './chart.js';

/**
 * The KOTS `HelmChart` custom resource, kots.io/v1beta2 and the older v1beta1, as KOTS reads it
 * (replicatedhq/kotskinds apis/kots/v1beta{1,2}/helmchart_types.go; replicatedhq/kots
 * pkg/apparchive/helm-v1beta2.go and pkg/base/replicated.go). The object given here is already
 * rendered (its repl{{ }} evaluated by src/kots/): strings are final.
 */

export type ChartValues = Record<string, unknown>;

export interface OptionalValues {
  /** "true" or "false" once rendered (KOTS parses it with Go's strconv.ParseBool). */
  when: string;
  /** false (the default): each top-level key replaces that of values; true: deep merge (see mergeRecursive). */
  recursiveMerge: boolean;
  values: ChartValues;
}

export interface HelmChart {
  apiVersion: 'kots.io/v1beta1' | 'kots.io/v1beta2';
  /** metadata.name */
  name: string;
  /** Where the object was read, for messages. */
  file: string;
  line: number;
  chart: { name: string; chartVersion: string };
  /**
   * v1beta2 `spec.releaseName`, v1beta1 `spec.chart.releaseName`; both default to the chart name
   * (GetReleaseName in kotskinds).
   */
  releaseName: string;
  /** Absent: KOTS installs in the admin console's namespace, i.e. the application's. */
  namespace?: string;
  /**
   * `spec.exclude` as written (bool or string; KOTS's multitype.BoolOrString). See isExcluded.
   */
  exclude?: boolean | string;
  values: ChartValues;
  optionalValues: OptionalValues[];
  /**
   * `spec.builder`: the values the airgap builder renders the chart with to find its images.
   * Undefined when the HelmChart has none (not the same as `builder: {}`, see builderValues).
   */
  builder?: ChartValues;
  helmUpgradeFlags?: string[];
  weight?: number;
  /** v1beta1 only (v1beta2 dropped both): helmVersion (v3 when absent) and useHelmInstall. */
  helmVersion?: string;
  useHelmInstall?: boolean;
}

/** A KOTS HelmChart (either version): what parseHelmChart reads. */
export function isHelmChartObject(obj: unknown): boolean {
  if (!isMap(obj)) return false;
  return obj['kind'] === 'HelmChart' && (obj['apiVersion'] === 'kots.io/v1beta1' || obj['apiVersion'] === 'kots.io/v1beta2');
}

/** Reads a rendered HelmChart; E_MANIFESTS `file:line: …` for what KOTS could not use. */
export function parseHelmChart(obj: unknown, where: { file: string; line: number }): HelmChart {
  const at = `${where.file}:${where.line}`;
  const fail = (what: string, hint = 'see the HelmChart reference: https://docs.replicated.com/reference/custom-resource-helmchart-v2') =>
    new AirgapError('E_MANIFESTS', `${at}: ${what}`, { hint });
  if (!isMap(obj)) throw fail('a HelmChart must be a mapping');
  const apiVersion = obj['apiVersion'];
  if (apiVersion !== 'kots.io/v1beta1' && apiVersion !== 'kots.io/v1beta2') {
    throw fail(`HelmChart apiVersion ${JSON.stringify(apiVersion)} is not kots.io/v1beta2 or kots.io/v1beta1`);
  }
  const name = isMap(obj['metadata']) ? obj['metadata']['name'] : undefined;
  if (typeof name !== 'string' || name === '') throw fail('HelmChart has no metadata.name');
  const label = `HelmChart ${name}`;
  const spec = obj['spec'];
  if (!isMap(spec)) throw fail(`${label} has no spec`);
  const chart = spec['chart'];
  if (!isMap(chart)) throw fail(`${label} has no spec.chart (name and chartVersion of the chart archive it installs)`);
  const chartName = text(chart['name']);
  const chartVersion = text(chart['chartVersion']);
  if (chartName === undefined || chartName === '') throw fail(`${label} has no spec.chart.name`);
  if (chartVersion === undefined || chartVersion === '') throw fail(`${label} has no spec.chart.chartVersion`);

  // The field moved: v1beta1 spec.chart.releaseName, v1beta2 spec.releaseName. KOTS's v1beta2
  // chart struct has no releaseName, so one left at the old place is ignored there: so here.
  const v1 = apiVersion === 'kots.io/v1beta1';
  const releaseName = optionalText(v1 ? chart['releaseName'] : spec['releaseName'], v1 ? 'spec.chart.releaseName' : 'spec.releaseName', label, fail);
  const namespace = optionalText(spec['namespace'], 'spec.namespace', label, fail);

  const exclude = spec['exclude'];
  if (exclude !== undefined && exclude !== null && typeof exclude !== 'boolean' && typeof exclude !== 'string') {
    throw fail(`${label}: spec.exclude must be true, false or a template that renders to one`);
  }
  const values = valuesMap(spec['values'], 'spec.values', label, fail) ?? {};
  const builder = valuesMap(spec['builder'], 'spec.builder', label, fail);
  const optionalList = spec['optionalValues'] ?? [];
  if (!Array.isArray(optionalList)) throw fail(`${label}: spec.optionalValues must be a list`);
  const optionalValues = optionalList.map((o: unknown, i: number): OptionalValues => {
    const key = `spec.optionalValues[${i}]`;
    if (!isMap(o)) throw fail(`${label}: ${key} must be a mapping (when, recursiveMerge, values)`);
    const when = o['when'];
    if (typeof when !== 'string' && typeof when !== 'boolean') throw fail(`${label}: ${key}.when must be a string ("true" or "false" once rendered)`);
    const recursiveMerge = o['recursiveMerge'] ?? false;
    if (typeof recursiveMerge !== 'boolean') throw fail(`${label}: ${key}.recursiveMerge must be true or false`);
    return { when: String(when), recursiveMerge, values: valuesMap(o['values'], `${key}.values`, label, fail) ?? {} };
  });
  const flags = spec['helmUpgradeFlags'];
  if (flags !== undefined && flags !== null && !(Array.isArray(flags) && flags.every((f) => typeof f === 'string'))) {
    throw fail(`${label}: spec.helmUpgradeFlags must be a list of strings`);
  }
  const weight = spec['weight'];
  if (weight !== undefined && weight !== null && !Number.isInteger(weight)) throw fail(`${label}: spec.weight must be an integer`);
  const helmVersion = v1 ? optionalText(spec['helmVersion'], 'spec.helmVersion', label, fail) : undefined;
  // KOTS (pkg/base/helm.go) takes v2, v3, v4 or nothing and refuses anything else; a v2 chart
  // (Chart.yaml apiVersion v1) renders with helm 3 and 4 too, so all are rendered with the user's helm.
  if (helmVersion !== undefined && !['', 'v2', 'v3', 'v4'].includes(helmVersion.toLowerCase())) {
    throw fail(`${label}: spec.helmVersion ${helmVersion} is not v2, v3 or v4`, 'remove spec.helmVersion (v3 is the default)');
  }
  const useHelmInstall = v1 ? spec['useHelmInstall'] : undefined;

  return {
    apiVersion, name, file: where.file, line: where.line,
    chart: { name: chartName, chartVersion },
    releaseName: releaseName !== undefined && releaseName !== '' ? releaseName : chartName,
    ...(namespace !== undefined && namespace !== '' ? { namespace } : {}),
    ...(exclude !== undefined && exclude !== null && exclude !== '' ? { exclude } : {}),
    values, optionalValues,
    ...(builder !== undefined ? { builder } : {}),
    ...(Array.isArray(flags) ? { helmUpgradeFlags: flags as string[] } : {}),
    ...(typeof weight === 'number' ? { weight } : {}),
    ...(helmVersion !== undefined ? { helmVersion } : {}),
    ...(typeof useHelmInstall === 'boolean' ? { useHelmInstall } : {}),
  };
}

/**
 * Whether KOTS leaves the chart out: `exclude` parsed with strconv.ParseBool, empty = included;
 * a value that is not a boolean is an error (KOTS fails the render too). At build, an excluded
 * chart is a branch like any other (its images are bundled): this is for install.
 */
export function isExcluded(hc: HelmChart): boolean {
  if (hc.exclude === undefined) return false;
  if (typeof hc.exclude === 'boolean') return hc.exclude;
  return parseBool(hc.exclude, hc, 'spec.exclude');
}

/**
 * The chart archive a HelmChart installs: the one whose Chart.yaml has its name and version,
 * whatever its file name (KOTS's FindHelmChartArchiveInRelease). KOTS takes the first of two;
 * two are refused here, since which one the customer gets would depend on file order.
 */
export function matchChart(hc: HelmChart, archives: readonly ChartArchive[]): ChartArchive {
  const { name, chartVersion } = hc.chart;
  const found = archives.filter((a) => a.name === name && a.version === chartVersion);
  if (found.length === 1) return found[0]!;
  const at = `${hc.file}:${hc.line}: HelmChart ${hc.name}`;
  if (found.length === 0) {
    const have = archives.length === 0 ? 'the release has no chart archive'
      : `the release has ${archives.map((a) => `${a.name} ${a.version} (${a.path})`).join(', ')}`;
    return refuse(new AirgapError('E_MANIFESTS', `${at} installs chart ${name} version ${chartVersion}, and no chart archive is that chart (${have})`,
      { hint: `add ${name}-${chartVersion}.tgz (helm package) to the release, or make spec.chart name and chartVersion those of its Chart.yaml` }));
  }
  return refuse(new AirgapError('E_MANIFESTS', `${at}: ${found.length} chart archives are ${name} ${chartVersion}: ${found.map((a) => a.path).join(', ')}`,
    { hint: 'keep one archive of each chart version in the release' }));
}

/**
 * The values the airgap build renders the chart with to find its images. KOTS's own builder
 * (findV1Beta2HelmChartImages) writes `spec.builder` alone as the values file, so helm merges it
 * over the chart's values.yaml; `spec.values` are not used. With no `builder` at all we render
 * `spec.values` instead (as rendered for the build) rather than bare defaults, so image overrides
 * the vendor put in values are still seen (our choice, DESIGN.md; KOTS would use the defaults).
 */
export function builderValues(hc: HelmChart): ChartValues {
  return structuredClone(hc.builder ?? hc.values);
}

/**
 * The values KOTS installs the chart with: `values`, then each `optionalValues` entry whose
 * `when` is true, in order (WriteV1Beta2HelmCharts; renderReplicatedHelmChart for v1beta1, the same):
 * recursiveMerge false replaces top-level keys, true merges deeply (mergeRecursive).
 * `whenTrue` decides each `when`; the default parses it as KOTS does (strconv.ParseBool).
 */
export function installValues(hc: HelmChart, whenTrue?: (when: string) => boolean): ChartValues {
  let merged: ChartValues = structuredClone(hc.values);
  hc.optionalValues.forEach((o, i) => {
    const on = whenTrue ? whenTrue(o.when) : parseBool(o.when, hc, `spec.optionalValues[${i}].when`);
    if (!on) return;
    const overlay = structuredClone(o.values);
    if (o.recursiveMerge) merged = mergeRecursive(merged, overlay);
    else for (const [k, v] of Object.entries(overlay)) merged[k] = v;
  });
  return merged;
}

/**
 * KOTS's MergeHelmChartValues (kotskinds): every key of both; on a key in both, a mapping in the
 * base is merged with the overlay's mapping, anything else in the base is replaced by the
 * overlay's value. One quirk is kept, so a release renders as KOTS renders it: a mapping in the
 * base met by a non-mapping (a string, a list, null) in the overlay stays the base's mapping.
 */
export function mergeRecursive(base: ChartValues, overlay: ChartValues): ChartValues {
  const out: ChartValues = {};
  for (const [k, v] of Object.entries(base)) {
    if (!(k in overlay)) out[k] = v;
    else if (!isMap(v)) out[k] = overlay[k];
    else out[k] = mergeRecursive(v, isMap(overlay[k]) ? overlay[k] : {});
  }
  for (const [k, v] of Object.entries(overlay)) if (!(k in base)) out[k] = v;
  return out;
}

/**
 * KOTS renders a v1beta1 HelmChart only when no v1beta2 one has the same release name
 * (FilterV1Beta1ChartsWithV1Beta2Charts, kots pkg/kotsutil): a release may carry both while
 * customers upgrade. The v1beta1 ones shadowed so are left out here.
 */
export function withoutShadowedV1beta1(charts: readonly HelmChart[]): HelmChart[] {
  const v2 = new Set(charts.filter((c) => c.apiVersion === 'kots.io/v1beta2').map((c) => c.releaseName));
  return charts.filter((c) => c.apiVersion === 'kots.io/v1beta2' || !v2.has(c.releaseName));
}

/** Go's strconv.ParseBool, which KOTS applies to `when` and `exclude`; anything else is an error. */
function parseBool(s: string, hc: HelmChart, field: string): boolean {
  if (['1', 't', 'T', 'TRUE', 'true', 'True'].includes(s)) return true;
  if (['0', 'f', 'F', 'FALSE', 'false', 'False'].includes(s)) return false;
  throw new AirgapError('E_MANIFESTS', `${hc.file}:${hc.line}: HelmChart ${hc.name}: ${field} is ${JSON.stringify(s)}, not true or false`,
    { hint: `make ${field} render to true or false (e.g. repl{{ ConfigOptionEquals "x" "1" }})` });
}

function refuse(e: AirgapError): never {
  throw e;
}

function isMap(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function text(v: unknown): string | undefined {
  return typeof v === 'string' ? v : typeof v === 'number' ? String(v) : undefined;
}

function optionalText(v: unknown, field: string, label: string, fail: (what: string) => AirgapError): string | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string') throw fail(`${label}: ${field} must be a string`);
  return v;
}

function valuesMap(v: unknown, field: string, label: string, fail: (what: string) => AirgapError): ChartValues | undefined {
  if (v === undefined || v === null) return undefined;
  if (!isMap(v)) throw fail(`${label}: ${field} must be a mapping of Helm values`);
  return v;
}
