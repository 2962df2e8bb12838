import { isAirgapError } from '../errors.js';
import { parseReference } from '../reference.js';
import { scanFiles, type FoundImage, type ManifestFile, type ScanResult } from '../app/scan.js';
import { errorFinding, type Finding } from '../app/findings.js';
import { discoverRelease } from './discover.js';
import { chartOutputs, discoverCharts, installCharts } from './charts.js';
import { KOTS_KINDS_PREFIX, renderForInstall, type ReleaseFile, type RenderOptions } from './release.js';
import { hasKotsTemplate, templateCalls } from './template.js';
import type { ConfigState } from './config.js';

/**
 * The scan of a KOTS release: the plain-manifest scan (scan.ts) run over its rendering.
 * 'discover' (plan, build): the defaults' rendering, plus every branch and every object switched
 * off, for images; the release as written is what build carries. 'install' (online): the
 * customer's rendering only.
 */

export interface ReleaseScanOptions {
  mode: 'discover' | 'install';
  render: RenderOptions;
  /** Install: the Config as evaluated (its values are written back for the next run). */
  onConfig?: (config: ConfigState) => void;
}

export type ReleaseScan = Omit<ScanResult, 'notRead'>;

/**
 * Splits the scan's files into the applied ones and the KOTS kinds (under kots/), and names
 * every image and finding by its release file (without the kots/ prefix), in release order.
 */
function splitKinds(result: ScanResult, order: string[]): ReleaseScan {
  const { notRead: _notRead, ...rest } = result;
  const kotsKinds = rest.files.filter((f) => f.path.startsWith(KOTS_KINDS_PREFIX));
  const unprefix = (file: string): string => (file.startsWith(KOTS_KINDS_PREFIX) && !order.includes(file) ? file.slice(KOTS_KINDS_PREFIX.length) : file);
  const rank = new Map(order.map((p, i) => [p, i]));
  const images = rest.images.map((i) => ({ ...i, file: unprefix(i.file) }))
    .sort((a, b) => (rank.get(a.file) ?? order.length) - (rank.get(b.file) ?? order.length) || a.line - b.line);
  const findings = rest.findings.map((f) => ({ ...f, file: unprefix(f.file) }));
  return { ...rest, images, findings, files: rest.files.filter((f) => !f.path.startsWith(KOTS_KINDS_PREFIX)), kotsKinds };
}

export async function scanRelease(files: ReleaseFile[], opts: ReleaseScanOptions): Promise<ReleaseScan> {
  const namespace = opts.render.facts.namespace;
  const order = files.map((f) => f.path);
  if (opts.mode === 'install') {
    const r = renderForInstall(files, opts.render);
    opts.onConfig?.(r.config);
    const charts = await installCharts(files, r.documents, namespace);
    const rendered = charts.map((c) => ({ path: chartOutputs(c).rendered, content: Buffer.from(c.rendered) }));
    return { ...splitKinds(scanFiles([...r.manifests, ...rendered, ...r.kotsKinds]), order), charts };
  }
  const d = discoverRelease(files, opts.render);
  const charts = await discoverCharts(files, d.documents, namespace);
  const findings: Finding[] = [...d.findings, ...charts.findings];
  const result = splitKinds(scanFiles([...d.manifests, ...d.kotsKinds], findings), order);
  const seen = new Set(result.images.map((i) => `${i.raw}\0${i.file}`));
  const add = (img: FoundImage): void => {
    const key = `${img.raw}\0${img.file}`;
    if (seen.has(key)) return;
    seen.add(key);
    result.images.push(img);
  };
  for (const alt of d.alternatives) {
    let images: FoundImage[];
    try {
      images = scanFiles([alt]).images;
    } catch (e) {
      if (isAirgapError(e)) continue; // an alternative that is not valid on its own: the default rendering speaks for the file
      throw e;
    }
    for (const img of images) add(img);
  }
  for (const img of localImageNames(files)) add(img);
  for (const chart of charts.rendered) {
    try {
      const scanned = scanFiles([chart]);
      const where = chartSource(chart.path, chart.content.toString('utf8'));
      for (const img of scanned.images) add({ ...img, ...where(img.line) });
      // What the chart's output holds that cannot be read would hide its images: said, never dropped.
      result.findings.push(...scanned.findings.filter((f) => f.severity === 'error' || f.code === 'undeclared-image')
        .map((f) => ({ ...f, ...where(f.line) })));
    } catch (e) {
      if (!isAirgapError(e)) throw e;
      result.findings.push(errorFinding(e, 'helm-render', { file: chart.path, line: 1 }, 'fix the chart'));
    }
  }
  for (const { image, file } of charts.annotated) {
    add({ raw: image, ref: parseReference(image, `${file} (helm.sh/images)`), file, line: 1, origin: 'chart' });
  }
  // The scan above judged image-like strings before the charts were rendered: one that a chart,
  // a branch or a LocalImageName bundles as written (a HelmChart's values naming its chart's
  // image) is declared, not "neither bundled nor rewritten".
  const found = new Set(result.images.map((i) => i.raw));
  const declared = result.findings.filter((f) => f.code !== 'undeclared-image' || !found.has(f.message.slice(0, f.message.indexOf(' '))));
  return { ...result, findings: declared, carried: files.map((f): ManifestFile => ({ path: f.path, content: f.content })) };
}

/**
 * Where a line of a chart's `helm template` output comes from: the archive and the template that
 * helm names in its `# Source:` comment, the line counted in that template's output.
 */
function chartSource(archive: string, text: string): (line: number) => { file: string; line: number } {
  const lines = text.split('\n');
  return (line) => {
    for (let i = Math.min(line, lines.length) - 1; i >= 0; i--) {
      const m = /^# Source: (.+)$/.exec(lines[i]!);
      if (m) return { file: `${archive}#${m[1]!.trim()}`, line: line - i - 1 };
    }
    return { file: archive, line };
  };
}

/** `LocalImageName "REF"` literals: images wherever they stand (an env value, an argument). */
function localImageNames(files: ReleaseFile[]): FoundImage[] {
  const out: FoundImage[] = [];
  for (const f of files) {
    if (!/\.(ya?ml|json)$/i.test(f.path)) continue;
    const text = f.content.toString('utf8');
    if (!hasKotsTemplate(text)) continue;
    let calls: ReturnType<typeof templateCalls>;
    try {
      calls = templateCalls(text, f.path);
    } catch {
      continue; // the rendering names what is wrong with the file
    }
    for (const call of calls) {
      const raw = call.args[0];
      if (call.name !== 'LocalImageName' || typeof raw !== 'string') continue;
      out.push({ raw, ref: parseReference(raw, `${f.path}:${call.line}`), file: f.path, line: call.line, origin: 'template' });
    }
  }
  return out;
}
