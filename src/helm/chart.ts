import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { extract, type Header } from 'tar-stream';
import { parse } from 'yaml';
import { AirgapError } from '../errors.js';

/**
 * A Helm chart as a release carries it: a `.tgz` written by `helm package` (or an unpacked chart
 * directory). What is read is its Chart.yaml, the subcharts packaged under charts/ (to name the
 * dependencies `helm dependency build` did not bring), and its `helm.sh/images` annotation.
 */

/** A Chart.yaml bigger than this is refused (real ones are a few KiB). */
export const MAX_CHART_YAML_BYTES = 1 << 20;
/** A template read back to explain a render error (helm's own limit on a file is far larger). */
const MAX_TEMPLATE_BYTES = 4 << 20;
/** A packaged subchart (charts/x.tgz) is read into memory to be read on its own: charts are small. */
const MAX_SUBCHART_BYTES = 64 << 20;

export interface ChartDependency {
  name: string;
  version?: string;
  repository?: string;
  condition?: string;
  alias?: string;
}

export interface ChartArchive {
  /** Where it was found (relative to the manifests), for messages. */
  path: string;
  name: string;
  version: string;
  appVersion?: string;
  kubeVersion?: string;
  dependencies: ChartDependency[];
  /**
   * Dependencies with no chart of that name under charts/ (helm matches a dependency to a
   * subchart by the subchart's Chart.yaml name, whatever its file name or alias): `helm template`
   * refuses such a chart.
   */
  missing: string[];
  /** The `helm.sh/images` annotation of the chart and of its packaged subcharts, deduplicated. */
  images: string[];
  /** Chart.yaml as parsed (the OCI config is made from it, src/helm/oci.ts). */
  metadata: Record<string, unknown>;
}

interface ChartYaml {
  /** The directory holding it, relative to the archive's top: '' for the chart, 'charts/x' for a subchart. */
  dir: string;
  doc: Record<string, unknown>;
}

/**
 * Reads a chart archive. Undefined when `content` is not a gzip'd tar with a `<top>/Chart.yaml`
 * (not a chart: the caller decides what else it may be); E_MANIFESTS when it is one whose
 * Chart.yaml is unreadable or names no chart.
 */
export async function readChartArchive(content: Buffer, path: string): Promise<ChartArchive | undefined> {
  let charts: ChartYaml[];
  try {
    charts = await chartYamls(Readable.from([content]), path);
  } catch (e) {
    if (e instanceof AirgapError) throw e;
    return undefined; // not a gzip'd tar
  }
  return describe(charts, path);
}

/** Reads an unpacked chart directory (Chart.yaml, charts/); undefined when it holds no Chart.yaml. */
export async function readChartDirectory(dir: string, path: string): Promise<ChartArchive | undefined> {
  const charts: ChartYaml[] = [];
  const top = await readChartYamlFile(join(dir, 'Chart.yaml'), `${path}/Chart.yaml`);
  if (top === undefined) return undefined;
  charts.push({ dir: '', doc: top });
  const entries = await readdir(join(dir, 'charts'), { withFileTypes: true }).catch(() => []);
  for (const e of entries) {
    if (e.isDirectory()) {
      const doc = await readChartYamlFile(join(dir, 'charts', e.name, 'Chart.yaml'), `${path}/charts/${e.name}/Chart.yaml`);
      if (doc !== undefined) charts.push({ dir: `charts/${e.name}`, doc });
    } else if (e.isFile() && isArchiveName(e.name)) {
      const sub = await chartYamls(Readable.from([await readFile(join(dir, 'charts', e.name))]), `${path}/charts/${e.name}`).catch((err: unknown) => {
        if (err instanceof AirgapError) throw err;
        return [];
      });
      const first = sub.find((c) => c.dir === '');
      if (first) charts.push({ dir: `charts/${e.name}`, doc: first.doc });
    }
  }
  return describe(charts, path);
}

/** A chart archive, as `helm package` names it. */
export function isArchiveName(name: string): boolean {
  return /\.(tgz|tar\.gz)$/i.test(name);
}

/**
 * One file of a chart archive, by its path below the top directory (`templates/x.yaml`), or
 * undefined when absent or too big. Used to explain a render error from the template's text.
 */
export async function readArchiveFile(content: Buffer, file: string): Promise<Buffer | undefined> {
  let found: Buffer | undefined;
  await walkTar(Readable.from([content]), (header, body) => {
    if (found !== undefined || header.type !== 'file' || stripTop(header.name) !== file || (header.size ?? 0) > MAX_TEMPLATE_BYTES) return undefined;
    return collect(body, MAX_TEMPLATE_BYTES).then((b) => { found = b; });
  }).catch(() => undefined);
  return found;
}

function describe(charts: ChartYaml[], path: string): ChartArchive | undefined {
  const top = charts.find((c) => c.dir === '');
  if (top === undefined) return undefined;
  const doc = top.doc;
  const name = scalar(doc['name']);
  const version = scalar(doc['version']);
  if (name === undefined || name === '' || version === undefined || version === '') {
    throw new AirgapError('E_MANIFESTS', `${path}: Chart.yaml has no ${name ? 'version' : 'name'}`,
      { hint: 'a chart archive is what helm package writes: Chart.yaml with name and version' });
  }
  const dependencies = (Array.isArray(doc['dependencies']) ? doc['dependencies'] : []).flatMap((d): ChartDependency[] => {
    if (d === null || typeof d !== 'object') return [];
    const o = d as Record<string, unknown>;
    const depName = scalar(o['name']);
    if (depName === undefined) return [];
    return [{
      name: depName,
      ...optional('version', scalar(o['version'])),
      ...optional('repository', scalar(o['repository'])),
      ...optional('condition', scalar(o['condition'])),
      ...optional('alias', scalar(o['alias'])),
    }];
  });
  // Only subcharts directly under this chart's charts/ count (helm's CheckDependencies).
  const present = new Set(charts.filter((c) => /^charts\/[^/]+$/.test(c.dir)).map((c) => scalar(c.doc['name'])));
  const missing = dependencies.filter((d) => !present.has(d.name)).map((d) => d.name);
  const images = [...new Set(charts.flatMap((c) => imagesAnnotation(c.doc, path)))];
  return {
    path, name, version,
    ...optional('appVersion', scalar(doc['appVersion'])),
    ...optional('kubeVersion', scalar(doc['kubeVersion'])),
    dependencies, missing, images, metadata: doc,
  };
}

/**
 * The `helm.sh/images` annotation (Helm's HIP-0015 draft, after Artifact Hub's
 * `artifacthub.io/images`): a YAML list in a string, each item an image string or a mapping with
 * `image`. A value that is not such a list is refused: a vendor who wrote it meant it to be read.
 */
function imagesAnnotation(doc: Record<string, unknown>, path: string): string[] {
  const annotations = doc['annotations'];
  if (annotations === null || typeof annotations !== 'object') return [];
  const text = (annotations as Record<string, unknown>)['helm.sh/images'];
  if (typeof text !== 'string' || text.trim() === '') return [];
  let list: unknown;
  try {
    list = parse(text);
  } catch (e) {
    throw new AirgapError('E_MANIFESTS', `${path}: Chart.yaml annotation helm.sh/images is not YAML: ${firstLine(e)}`,
      { hint: 'write it as a YAML list of {name, image} entries' });
  }
  if (!Array.isArray(list)) {
    throw new AirgapError('E_MANIFESTS', `${path}: Chart.yaml annotation helm.sh/images is not a list`,
      { hint: 'write it as a YAML list of {name, image} entries' });
  }
  return list.flatMap((item): string[] => {
    if (typeof item === 'string') return [item.trim()];
    const image = item !== null && typeof item === 'object' ? (item as Record<string, unknown>)['image'] : undefined;
    return typeof image === 'string' && image.trim() !== '' ? [image.trim()] : [];
  });
}

/**
 * Every Chart.yaml of a chart archive that matters here: the chart's (`<top>/Chart.yaml`), its
 * unpacked subcharts' (`<top>/charts/<dir>/Chart.yaml`) and its packaged subcharts' (read by
 * streaming the inner archive). Rejects (not an AirgapError) when the stream is not a gzip'd tar.
 */
async function chartYamls(source: Readable, path: string): Promise<ChartYaml[]> {
  const found: ChartYaml[] = [];
  await walkTar(source, (header, body) => {
    const rel = stripTop(header.name);
    if (header.type !== 'file' || rel === undefined) return undefined;
    const sub = /^charts\/([^/]+)\/Chart\.yaml$/.exec(rel);
    if (rel === 'Chart.yaml' || sub) {
      const dir = sub ? `charts/${sub[1]}` : '';
      return readChartYaml(body, header, `${path}: ${dir ? `${dir}/` : ''}Chart.yaml`).then((doc) => { found.push({ dir, doc }); });
    }
    const packed = /^charts\/([^/]+)$/.exec(rel);
    if (packed && isArchiveName(packed[1]!) && (header.size ?? 0) <= MAX_SUBCHART_BYTES) {
      // A packaged subchart, read on its own (its own Chart.yaml is its top one): one that is
      // not a chart archive does not make the outer one unreadable; it shows as missing.
      const dir = `charts/${packed[1]}`;
      return collect(body, MAX_SUBCHART_BYTES)
        .then((inner) => chartYamls(Readable.from([inner]), `${path}: ${dir}`))
        .then((inner) => {
          const first = inner.find((c) => c.dir === '');
          if (first) found.push({ dir, doc: first.doc });
        }, (e: unknown) => {
          if (e instanceof AirgapError) throw e;
        });
    }
    return undefined;
  });
  return found;
}

/**
 * Streams a gzip'd tar, handing each file to `take`; an entry it does not take (undefined) is
 * skipped. A taken body is consumed by the promise `take` returns; the walk ends when the tar
 * and every such promise have, and fails with the first of their errors.
 */
async function walkTar(source: Readable, take: (header: Header, body: Readable) => Promise<void> | undefined): Promise<void> {
  const ex = extract();
  const taken: Promise<void>[] = [];
  const failures: unknown[] = [];
  ex.on('entry', (header, entry, next) => {
    const stream = entry as unknown as Readable;
    stream.on('end', () => next());
    const p = take(header, stream);
    if (p === undefined) {
      stream.resume();
      return;
    }
    // A taker that fails half-way must not stall the tar: drain what it left.
    taken.push(p.catch((e: unknown) => {
      failures.push(e);
      stream.resume();
    }));
  });
  await pipeline(source, createGunzip(), ex as unknown as Writable);
  await Promise.all(taken);
  if (failures.length > 0) throw failures[0];
}

async function readChartYaml(body: Readable, header: Header, what: string): Promise<Record<string, unknown>> {
  if ((header.size ?? 0) > MAX_CHART_YAML_BYTES) {
    body.resume();
    throw new AirgapError('E_MANIFESTS', `${what} is ${header.size} bytes, more than the ${MAX_CHART_YAML_BYTES}-byte limit`);
  }
  return parseChartYaml(await collect(body, MAX_CHART_YAML_BYTES), what);
}

async function readChartYamlFile(file: string, what: string): Promise<Record<string, unknown> | undefined> {
  const s = await stat(file).catch(() => undefined);
  if (s === undefined || !s.isFile()) return undefined;
  if (s.size > MAX_CHART_YAML_BYTES) {
    throw new AirgapError('E_MANIFESTS', `${what} is ${s.size} bytes, more than the ${MAX_CHART_YAML_BYTES}-byte limit`);
  }
  return parseChartYaml(await readFile(file), what);
}

function parseChartYaml(bytes: Buffer, what: string): Record<string, unknown> {
  let doc: unknown;
  try {
    doc = parse(bytes.toString('utf8'));
  } catch (e) {
    throw new AirgapError('E_MANIFESTS', `${what} is not YAML: ${firstLine(e)}`,
      { hint: 'fix Chart.yaml and package the chart again (helm lint shows the problem)' });
  }
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) {
    throw new AirgapError('E_MANIFESTS', `${what} is not a mapping`,
      { hint: 'fix Chart.yaml and package the chart again (helm lint shows the problem)' });
  }
  return doc as Record<string, unknown>;
}

/** Reads a stream whole, up to `limit` bytes (more is an error: the header lied about the size). */
async function collect(body: Readable, limit: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of body as AsyncIterable<Buffer>) {
    total += chunk.length;
    if (total > limit) throw new AirgapError('E_MANIFESTS', `a chart file is more than ${limit} bytes`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

/** `top/a/b` → `a/b`; undefined for the top directory itself. Helm drops the first component, whatever it is named. */
function stripTop(name: string): string | undefined {
  const clean = name.replace(/^\.\//, '');
  const slash = clean.indexOf('/');
  return slash < 0 || slash === clean.length - 1 ? undefined : clean.slice(slash + 1);
}

function scalar(v: unknown): string | undefined {
  return typeof v === 'string' ? v : typeof v === 'number' || typeof v === 'boolean' ? String(v) : undefined;
}

function optional<K extends string>(key: K, v: string | undefined): { [P in K]?: string } {
  return (v === undefined ? {} : { [key]: v }) as { [P in K]?: string };
}

function firstLine(e: unknown): string {
  return (e instanceof Error ? e.message : String(e)).split('\n')[0] ?? '';
}
