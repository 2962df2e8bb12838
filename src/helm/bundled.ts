import { AirgapError } from '../errors.js';
import type { BundleSource as BundleReader } from '../bundle/source.js';
import type { FetchOptions, TargetStore } from '../store.js';
import type { TargetName, TargetRegistry } from '../target.js';
import { isArchiveName, readChartArchive } from './chart.js';
import { chartArtifact, chartTarget, pushChart, type ChartArtifact } from './oci.js';

/**
 * The chart archives a bundle carries (a KOTS release's, under app/), pushed beside the images
 * as Helm OCI charts, so that `helm pull oci://HOST/NAMESPACE/<chart> --version V` works inside
 * the gap. A chart has no source repository path: `--keep-path` names it the same way.
 */

export interface BundledChart {
  name: string;
  version: string;
  /** app/<path> in the bundle. */
  file: string;
  artifact: ChartArtifact;
  target: { repository: string; tag: string; full: string };
}

export async function bundledCharts(reader: BundleReader, target: TargetRegistry): Promise<BundledChart[]> {
  const out: BundledChart[] = [];
  for (const file of reader.appFiles()) {
    if (!isArchiveName(file)) continue;
    const content = await reader.readAppFile(file);
    const chart = await readChartArchive(content, `app/${file}`);
    if (chart === undefined) continue;
    if (out.some((c) => c.name === chart.name && c.version === chart.version)) continue;
    out.push({ name: chart.name, version: chart.version, file: `app/${file}`, artifact: chartArtifact(chart, content), target: chartTarget(target, chart) });
  }
  return out;
}

/** A chart and an image landing on one name is refused before anything is pushed. */
export function refuseChartCollisions(charts: BundledChart[], images: TargetName[]): void {
  for (const c of charts) {
    const image = images.find((i) => i.full === c.target.full);
    if (image !== undefined) {
      throw new AirgapError('E_COLLISION', `chart ${c.name} ${c.version} (${c.file}) and image ${image.source} would both be pushed as ${c.target.full}`,
        { hint: 'push with --keep-path, so that the image keeps its source path' });
    }
  }
}

export interface PushedChartSummary { name: string; version: string; target: string; digest: string; status: 'pushed' | 'already there' }

export async function pushBundledCharts(charts: BundledChart[], storeFor: (repository: string) => TargetStore,
  opts: FetchOptions = {}): Promise<PushedChartSummary[]> {
  const out: PushedChartSummary[] = [];
  for (const c of charts) {
    const store = storeFor(c.target.repository);
    const there = store.taggedAs !== undefined ? await store.taggedAs(c.target.tag, opts) : undefined;
    if (there === c.artifact.manifest.descriptor.digest) {
      out.push({ name: c.name, version: c.version, target: c.target.full, digest: there, status: 'already there' });
      continue;
    }
    const pushed = await pushChart(store, c.artifact, opts);
    out.push({ name: c.name, version: c.version, target: c.target.full, digest: pushed.digest, status: 'pushed' });
  }
  return out;
}
