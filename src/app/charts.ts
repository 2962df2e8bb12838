import { createReadStream } from 'node:fs';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { extract } from 'tar-stream';
import { parse } from 'yaml';
import type { YAMLMap } from 'yaml';
import type { Finding } from './findings.js';

/**
 * Helm charts in the manifests. We cannot render a chart honestly here (no helm), and a chart
 * left out would be a silent omission of every image it runs: each one is refused, named, with
 * the command that renders it (DESIGN.md "Caught at build, not at the customer").
 */

const RENDER_HINT = (name: string, chart: string): string =>
  `render it with the customer's values (helm template ${name} ${chart} --values VALUES.yaml --output-dir DIR), ` +
  'put the rendered manifests in place of the chart and build again';

/** A chart archive, as `helm package` writes it. */
export function isArchiveName(name: string): boolean {
  return /\.(tgz|tar\.gz)$/i.test(name);
}

function child(node: unknown, key: string): unknown {
  return node !== null && typeof node === 'object' && 'get' in node && typeof (node as YAMLMap).get === 'function'
    ? (node as YAMLMap).get(key, true) : undefined;
}

function text(node: unknown): string | undefined {
  const v = node !== null && typeof node === 'object' && 'value' in node ? (node as { value: unknown }).value : undefined;
  return typeof v === 'string' ? v : typeof v === 'number' ? String(v) : undefined;
}

/** The KOTS HelmChart CR (kots.io/v1beta1 and v1beta2). */
export function isHelmChart(obj: unknown): boolean {
  return text(child(obj, 'kind')) === 'HelmChart' && (text(child(obj, 'apiVersion')) ?? '').startsWith('kots.io/');
}

export function helmChartFinding(obj: unknown, file: string, line: number): Finding {
  const chart = child(child(obj, 'spec'), 'chart');
  const name = text(child(chart, 'name')) ?? text(child(child(obj, 'metadata'), 'name')) ?? 'CHART';
  const version = text(child(chart, 'chartVersion'));
  return {
    severity: 'error', code: 'helm-chart', file, line,
    message: `HelmChart ${name}${version ? ` ${version}` : ''} is not rendered: the images its templates run would not be found`,
    hint: RENDER_HINT(name, `${name}${version ? `-${version}` : ''}.tgz`),
  };
}

/** name and version from a chart archive's top-level Chart.yaml, or undefined when it holds none. */
async function archiveChart(path: string): Promise<{ name: string; version: string } | undefined> {
  let found: { name: string; version: string } | undefined;
  const ex = extract();
  ex.on('entry', (header, stream, next) => {
    const isChart = found === undefined && header.type === 'file' && /^[^/]+\/Chart\.yaml$/.test(header.name) && header.size !== undefined && header.size < 1 << 20;
    if (!isChart) {
      stream.on('end', next);
      stream.resume();
      return;
    }
    const chunks: Buffer[] = [];
    stream.on('data', (c: unknown) => chunks.push(c as Buffer));
    stream.on('end', () => {
      try {
        const doc = parse(Buffer.concat(chunks).toString('utf8')) as { name?: unknown; version?: unknown } | null;
        found = { name: String(doc?.name ?? header.name.split('/')[0]), version: String(doc?.version ?? '') };
      } catch {
        found = { name: header.name.split('/')[0] ?? 'CHART', version: '' };
      }
      next();
    });
  });
  try {
    await pipeline(createReadStream(path), createGunzip(), ex);
  } catch {
    return found; // not a gzip'd tar: not a chart archive (and not a manifest either)
  }
  return found;
}

/**
 * Refuses chart archives and unpacked charts (a directory with Chart.yaml); `skip` tells the scan
 * which files belong to an unpacked chart (its templates are not manifests).
 */
export async function chartFindings(dir: string, paths: string[],
  read: (path: string) => Promise<Buffer>): Promise<{ findings: Finding[]; skip: (path: string) => boolean }> {
  const findings: Finding[] = [];
  const chartDirs: string[] = [];
  for (const path of paths) {
    const name = path.slice(path.lastIndexOf('/') + 1);
    if (isArchiveName(name)) {
      const chart = await archiveChart(join(dir, path));
      if (chart === undefined) continue;
      findings.push({
        severity: 'error', code: 'helm-chart-archive', file: path, line: 1,
        message: `Helm chart archive ${chart.name}${chart.version ? ` ${chart.version}` : ''} is not rendered: the images its templates run would not be found`,
        hint: RENDER_HINT(chart.name, path),
      });
    } else if (name === 'Chart.yaml') {
      const sub = path.includes('/') ? path.slice(0, path.lastIndexOf('/')) : '.';
      let doc: { name?: unknown; version?: unknown; kind?: unknown } | null;
      try {
        doc = parse((await read(path)).toString('utf8')) as { name?: unknown; version?: unknown; kind?: unknown } | null;
      } catch {
        doc = null;
      }
      if (doc === null || typeof doc !== 'object' || doc.kind !== undefined || doc.name === undefined) continue;
      chartDirs.push(sub === '.' ? '' : `${sub}/`);
      findings.push({
        severity: 'error', code: 'helm-chart-directory', file: path, line: 1,
        message: `Helm chart ${String(doc.name)}${doc.version !== undefined ? ` ${String(doc.version)}` : ''} (${sub}) is not rendered: its templates are not manifests`,
        hint: RENDER_HINT(String(doc.name), sub),
      });
    }
  }
  return { findings, skip: (path) => chartDirs.some((d) => path.startsWith(d)) };
}
