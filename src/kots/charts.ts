import { load as loadLenient } from 'js-yaml';
import { parse, parseDocument, stringify } from 'yaml';
import { isAirgapError, type AirgapError } from '../errors.js';
import { errorFinding, type Finding } from '../app/findings.js';
import { isArchiveName, readChartArchive, type ChartArchive } from '../helm/chart.js';
import {
  builderValues, installValues, isExcluded, isHelmChartObject, matchChart, parseHelmChart, withoutShadowedV1beta1,
  type HelmChart,
} from '../helm/helmchart.js';
import { findHelm, helmTemplate } from '../helm/template.js';
import type { ReleaseFile, RenderedDocument } from './release.js';

/**
 * The release's Helm charts (DESIGN.md "Helm charts in a release"): each HelmChart matched to its
 * archive by Chart.yaml, rendered with the user's helm (`helm template` only, offline) — with the
 * `builder` values at build, to find every image, and with `values` + `optionalValues` at install.
 */

export interface ReleaseChart { helmChart: HelmChart; archive: ChartArchive; content: Buffer }

/** The chart archives among the release files. */
export async function chartArchives(files: ReleaseFile[]): Promise<{ archive: ChartArchive; content: Buffer }[]> {
  const out: { archive: ChartArchive; content: Buffer }[] = [];
  for (const f of files) {
    if (!isArchiveName(f.path)) continue;
    const archive = await readChartArchive(f.content, f.path);
    if (archive !== undefined) out.push({ archive, content: f.content });
  }
  return out;
}

/** The HelmCharts among rendered documents (those switched off too: the caller decides). */
export function helmCharts(docs: RenderedDocument[]): { helmChart: HelmChart; doc: RenderedDocument }[] {
  const found: { helmChart: HelmChart; doc: RenderedDocument }[] = [];
  for (const doc of docs) {
    if (doc.kind !== 'HelmChart') continue;
    const obj = parse(doc.text) as unknown;
    if (!isHelmChartObject(obj)) continue;
    found.push({ helmChart: parseHelmChart(obj, { file: doc.file, line: doc.line }), doc });
  }
  const kept = new Set(withoutShadowedV1beta1(found.map((f) => f.helmChart)));
  return found.filter((f) => kept.has(f.helmChart));
}

function finding(e: AirgapError, file: string, line: number): Finding {
  return errorFinding(e, 'helm-render', { file, line }, 'fix the chart or its HelmChart; airgap renders it with helm template, offline');
}

/**
 * `helm template` output as our YAML reader can take it. Helm's templates are read by go-yaml,
 * which accepts some indentation the YAML spec (and the yaml package) refuses — istio 1.5's
 * ClusterRoles write a flow sequence at its key's own indentation. Such a document is read by
 * js-yaml, which is as lenient as go-yaml there, and written back as JSON (YAML too): its
 * objects are kept, not dropped, and every later step reads it. Other documents stay byte for byte.
 */
export function readableChartOutput(text: string): string {
  const docs = text.split(/^---[ \t]*$/m);
  let changed = false;
  const out = docs.map((doc) => {
    if (doc.trim() === '' || parseDocument(doc, { prettyErrors: false, uniqueKeys: false }).errors.length === 0) return doc;
    let obj: unknown;
    try {
      obj = loadLenient(doc);
    } catch {
      return doc; // neither reader takes it: the scan names it
    }
    changed = true;
    const source = /^# Source: .*$/m.exec(doc)?.[0];
    return `\n${source !== undefined ? `${source}\n` : ''}${JSON.stringify(obj, null, 2)}\n`;
  });
  return changed ? out.join('---') : text;
}

export interface ChartDiscovery {
  /** Each chart's rendering with its builder values, for images. */
  rendered: { path: string; content: Buffer }[];
  /** Images the charts declare in their helm.sh/images annotation. */
  annotated: { image: string; file: string }[];
  findings: Finding[];
}

/**
 * Build: every HelmChart (a switched-off one too: the customer may switch it on offline)
 * rendered with its builder values. A chart archive no HelmChart names is not deployed by KOTS:
 * said, not silently skipped.
 */
export async function discoverCharts(files: ReleaseFile[], docs: RenderedDocument[], namespace: string): Promise<ChartDiscovery> {
  const out: ChartDiscovery = { rendered: [], annotated: [], findings: [] };
  const archives = await chartArchives(files).catch((e: unknown) => {
    if (!isAirgapError(e)) throw e;
    out.findings.push(finding(e, 'release', 1));
    return [];
  });
  let charts: { helmChart: HelmChart; doc: RenderedDocument }[];
  try {
    charts = helmCharts(docs);
  } catch (e) {
    if (!isAirgapError(e)) throw e;
    out.findings.push(finding(e, docs[0]?.file ?? 'release', 1));
    return out;
  }
  // No helm is the user's to fix once, not a finding per chart: E_USAGE, one line with the hint.
  const helm = charts.length > 0 ? findHelm() : undefined;
  const used = new Set<ChartArchive>();
  for (const { helmChart: hc } of charts) {
    try {
      const archive = matchChart(hc, archives.map((a) => a.archive));
      used.add(archive);
      const content = archives.find((a) => a.archive === archive)!.content;
      const text = await helmTemplate({
        chart: content, releaseName: hc.releaseName, namespace: hc.namespace ?? namespace, ...(helm !== undefined ? { helm } : {}),
        values: builderValues(hc), valuesFrom: hc.builder !== undefined ? 'builder' : 'values',
        label: `HelmChart ${hc.name} (${hc.file}:${hc.line})`,
      });
      out.rendered.push({ path: archive.path, content: Buffer.from(readableChartOutput(text)) });
      for (const image of archive.images) out.annotated.push({ image, file: archive.path });
    } catch (e) {
      if (!isAirgapError(e)) throw e;
      out.findings.push(finding(e, hc.file, hc.line));
    }
  }
  for (const { archive } of archives) {
    if (used.has(archive)) continue;
    out.findings.push({
      severity: 'warning', code: 'helm-unused-chart', file: archive.path, line: 1,
      message: `chart ${archive.name} ${archive.version} is named by no HelmChart: KOTS does not deploy it, and its images are not bundled`,
      hint: `add a HelmChart (kots.io/v1beta2) with spec.chart name ${archive.name} and chartVersion ${archive.version}, or remove the archive`,
    });
  }
  return out;
}

export interface InstalledChart {
  chart: ReleaseChart;
  /** The values it is installed with (values + optionalValues), for `helm upgrade --install -f`. */
  values: Record<string, unknown>;
  namespace: string;
  /** `helm template` of the chart with those values. */
  rendered: string;
}

/** Install: each HelmChart not switched off, rendered with the customer's values. */
export async function installCharts(files: ReleaseFile[], docs: RenderedDocument[], namespace: string): Promise<InstalledChart[]> {
  const archives = await chartArchives(files);
  const out: InstalledChart[] = [];
  for (const { helmChart: hc, doc } of helmCharts(docs)) {
    if (doc.excluded || isExcluded(hc)) continue;
    const archive = matchChart(hc, archives.map((a) => a.archive));
    const content = archives.find((a) => a.archive === archive)!.content;
    const values = installValues(hc);
    const ns = hc.namespace ?? namespace;
    const rendered = await helmTemplate({
      chart: content, releaseName: hc.releaseName, namespace: ns, values, valuesFrom: 'values',
      label: `HelmChart ${hc.name} (${hc.file}:${hc.line})`,
    });
    out.push({ chart: { helmChart: hc, archive, content }, values, namespace: ns, rendered: readableChartOutput(rendered) });
  }
  return out;
}

/** Where an installed chart's files go under --out. */
export function chartOutputs(c: InstalledChart): { archive: string; values: string; rendered: string } {
  const { name, version } = c.chart.archive;
  return { archive: `charts/${name}-${version}.tgz`, values: `charts/${name}/values.yaml`, rendered: `helm/${c.chart.helmChart.releaseName}.yaml` };
}

export function valuesYaml(values: Record<string, unknown>): string {
  return stringify(values);
}
