import { Readable } from 'node:stream';
import type { Descriptor } from '../oci/descriptor.js';
import { MediaType } from '../oci/mediatypes.js';
import { sha256Digest } from '../oci/verify.js';
import type { FetchOptions, PushOutcome, TargetStore } from '../store.js';
import type { TargetRegistry } from '../target.js';
import type { ChartArchive } from './chart.js';

/**
 * A chart as a Helm OCI artifact, what `helm push` writes and `helm pull oci://…` reads
 * (helm pkg/registry: client.go Push, chart.go): an OCI image manifest whose config is the
 * chart's Chart.yaml metadata as JSON and whose one layer is the archive, byte for byte.
 */

export const HELM_CONFIG_MEDIA_TYPE = 'application/vnd.cncf.helm.config.v1+json';
export const HELM_CHART_LAYER_MEDIA_TYPE = 'application/vnd.cncf.helm.chart.content.v1.tar+gzip';

export interface Blob {
  descriptor: Descriptor;
  bytes: Buffer;
}

export interface ChartArtifact {
  config: Blob;
  layer: Blob;
  manifest: Blob;
  /** The tag helm pushes a version under (`+` is not allowed in a tag: helm writes `_`). */
  tag: string;
}

/**
 * The blobs and manifest of a chart. `created` (RFC 3339) becomes the manifest's
 * org.opencontainers.image.created, as helm writes it; absent, the manifest depends on the chart
 * alone, so pushing the same chart twice writes the same digest.
 */
export function chartArtifact(chart: ChartArchive, archive: Buffer, opts: { created?: string } = {}): ChartArtifact {
  const config = blob(HELM_CONFIG_MEDIA_TYPE, Buffer.from(helmConfigJson(chart.metadata)));
  const layer = blob(HELM_CHART_LAYER_MEDIA_TYPE, archive);
  const manifest = {
    schemaVersion: 2,
    mediaType: MediaType.OciManifest,
    config: config.descriptor,
    layers: [layer.descriptor],
    annotations: sortedKeys(ociAnnotations(chart.metadata, opts.created)),
  };
  return { config, layer, manifest: blob(MediaType.OciManifest, Buffer.from(JSON.stringify(manifest))), tag: chartTag(chart.version) };
}

/** `1.2.3+build.4` → `1.2.3_build.4`, as helm push and pull map a version to a tag. */
export function chartTag(version: string): string {
  return version.replaceAll('+', '_');
}

/** Where a chart lands in the customer registry: `HOST/NAMESPACE/<chart>:<tag>`. */
export function chartTarget(target: TargetRegistry, chart: { name: string; version: string }): { repository: string; tag: string; full: string } {
  const repository = `${target.namespace}/${chart.name}`;
  const tag = chartTag(chart.version);
  return { repository, tag, full: `${target.host}/${repository}:${tag}` };
}

export interface PushedChart {
  tag: string;
  digest: string;
  config: PushOutcome;
  layer: PushOutcome;
}

/**
 * Pushes a chart artifact through the store contract (src/store.ts): its blobs, then the manifest
 * under its tag, only once both are stored (as src/copy.ts tags an image's root last).
 */
export async function pushChart(store: TargetStore, artifact: ChartArtifact, opts: FetchOptions = {}): Promise<PushedChart> {
  const send = async (b: Blob): Promise<PushOutcome> => {
    if (!store.pushFindsExisting && await store.exists(b.descriptor, opts)) return 'existed';
    return store.push(b.descriptor, async () => Readable.from([b.bytes]), opts);
  };
  const [config, layer] = await Promise.all([send(artifact.config), send(artifact.layer)]);
  const { descriptor, bytes } = artifact.manifest;
  if (!store.tagStoresManifest) await store.push(descriptor, async () => Readable.from([bytes]), opts);
  await store.tag(descriptor, bytes, artifact.tag, opts);
  return { tag: artifact.tag, digest: descriptor.digest, config, layer };
}

function blob(mediaType: string, bytes: Buffer): Blob {
  return { descriptor: { mediaType, digest: sha256Digest(bytes), size: bytes.length }, bytes };
}

/**
 * Chart.yaml as helm's config JSON: Go's json.Marshal of its chart.Metadata (fields in struct
 * order, empty ones left out, map keys sorted, strings sanitised as helm's loader does).
 */
export function helmConfigJson(meta: Record<string, unknown>): string {
  const s = (k: string) => sanitize(str(meta[k]));
  const list = (k: string) => (Array.isArray(meta[k]) ? (meta[k] as unknown[]).map((v) => sanitize(str(v))) : []);
  const maintainers = (Array.isArray(meta['maintainers']) ? meta['maintainers'] : []).filter(isMap).map((m) =>
    compact({ name: sanitize(str(m['name'])), email: sanitize(str(m['email'])), url: sanitize(str(m['url'])) }));
  const dependencies = (Array.isArray(meta['dependencies']) ? meta['dependencies'] : []).filter(isMap).map((d) => ({
    name: sanitize(str(d['name'])),
    ...compact({ version: sanitize(str(d['version'])) }),
    repository: sanitize(str(d['repository'])),
    ...compact({
      condition: sanitize(str(d['condition'])),
      tags: Array.isArray(d['tags']) ? d['tags'].map((t) => sanitize(str(t))) : [],
      enabled: d['enabled'] === true,
      'import-values': Array.isArray(d['import-values']) ? sortedKeys(d['import-values']) : [],
      alias: str(d['alias']),
    }),
  }));
  const annotations = isMap(meta['annotations'])
    ? Object.fromEntries(Object.entries(meta['annotations']).map(([k, v]) => [k, str(v)])) : {};
  const out = compact({
    name: s('name'), home: s('home'), sources: list('sources'), version: s('version'), description: s('description'),
    keywords: list('keywords'), maintainers, icon: s('icon'), apiVersion: str(meta['apiVersion']), condition: s('condition'),
    tags: s('tags'), appVersion: s('appVersion'), deprecated: meta['deprecated'] === true, annotations,
    kubeVersion: s('kubeVersion'), dependencies, type: str(meta['type']),
  });
  return goJson(out);
}

/** helm's generateOCIAnnotations: the chart's annotations, then title and version that they may not override. */
function ociAnnotations(meta: Record<string, unknown>, created: string | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  const add = (k: string, v: string) => { if (v.trim() !== '') out[k] = v; };
  add('org.opencontainers.image.description', sanitize(str(meta['description'])));
  add('org.opencontainers.image.title', sanitize(str(meta['name'])));
  add('org.opencontainers.image.version', sanitize(str(meta['version'])));
  add('org.opencontainers.image.url', sanitize(str(meta['home'])));
  if (created !== undefined) add('org.opencontainers.image.created', created);
  const sources = Array.isArray(meta['sources']) ? meta['sources'] : [];
  if (sources.length > 0) add('org.opencontainers.image.source', sanitize(str(sources[0])));
  const maintainers = (Array.isArray(meta['maintainers']) ? meta['maintainers'] : []).filter(isMap)
    .map((m) => `${str(m['name'])}${str(m['email']) ? ` (${str(m['email'])})` : ''}`);
  if (maintainers.length > 0) add('org.opencontainers.image.authors', maintainers.join(', '));
  if (isMap(meta['annotations'])) {
    for (const [k, v] of Object.entries(meta['annotations'])) {
      if (k !== 'org.opencontainers.image.version' && k !== 'org.opencontainers.image.title') out[k] = str(v);
    }
  }
  return out;
}

/** Go's sanitizeString: white space becomes a space, what is not printable goes. */
function sanitize(s: string): string {
  return s.replace(/\s/gu, ' ').replace(/[\p{C}\p{Zl}\p{Zp}]/gu, '');
}

/** encoding/json's string escaping: <, >, &, U+2028, U+2029 as \uXXXX (maps are sorted by the caller). */
function goJson(v: unknown): string {
  return JSON.stringify(v).replace(/[<>&\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

function sortedKeys<T>(v: T): T {
  if (Array.isArray(v)) return v.map(sortedKeys) as T;
  if (!isMap(v)) return v;
  return Object.fromEntries(Object.keys(v).sort().map((k) => [k, sortedKeys(v[k])])) as T;
}

/** Struct order kept; Go's omitempty: '', false, [] and {} left out. */
function compact(o: Record<string, unknown>): Record<string, unknown> {
  const keep = (v: unknown) => v !== '' && v !== false && v !== undefined &&
    !(Array.isArray(v) && v.length === 0) && !(isMap(v) && Object.keys(v).length === 0);
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(o)) if (keep(v)) out[k] = isMap(v) && k === 'annotations' ? sortedKeys(v) : v;
  return out;
}

function str(v: unknown): string {
  return typeof v === 'string' ? v : typeof v === 'number' || typeof v === 'boolean' ? String(v) : '';
}

function isMap(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}
