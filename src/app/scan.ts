import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  LineCounter, isAlias, isMap, isSeq, isScalar, isNode, visit,
  type Document, type Node, type Scalar, type YAMLMap,
} from 'yaml';
import { AirgapError } from '../errors.js';
import { listManifestFiles, type NotRead } from './files.js';
import { parseReference, type Reference } from '../reference.js';
import type { Finding } from './findings.js';
import {
  child, duplicateKey, forEachObject, forEachStringValue, imageCandidate, str, walkNodes, yamlDocuments, type NodePath, type ValueContext,
} from './nodes.js';
import { duplicateFindings, imageLikeStrings, kotsFindings, objectSeen, undeclaredFindings, type ImageLikeString, type ObjectSeen } from './checks.js';
import { chartFindings, isArchiveName } from './charts.js';
import { isKustomizationName, KUSTOMIZE_RENDERED, renderKustomization } from './kustomize-render.js';
import { isKotsRelease, type ReleaseFile } from '../kots/release.js';
import { scanRelease, type ReleaseScanOptions } from '../kots/scan.js';
import { releaseScanOptions } from '../kots/facts.js';
import type { InstalledChart } from '../kots/charts.js';

// The node helpers live in nodes.ts; the rewrite reads them from here, with the walks they serve.
export { child, forEachObject, forEachStringValue, imageCandidate, str, walkNodes, type NodePath, type ValueContext };

/**
 * Finds every image an application runs, by the SHAPE of its manifests (never by kind, never in
 * free text). This file is the one definition of "where images are": the rewrite walks the same
 * nodes through forEachPodSpec / forEachImageNode.
 */

export type ImageOrigin = 'container' | 'initContainer' | 'ephemeralContainer' | 'additionalImages' | 'collector' | 'template' | 'chart';

export interface FoundImage {
  /** The value as written in the manifest. */
  raw: string;
  ref: Reference;
  /** Relative to the scanned directory, posix separators. */
  file: string;
  /** 1-based. */
  line: number;
  origin: ImageOrigin;
}

export interface ManifestFile {
  path: string;
  content: Buffer;
}

export interface ScanResult {
  images: FoundImage[];
  files: ManifestFile[];
  /** Files under the directory that are not manifests (README, archives, hidden): listed, not read. */
  notRead: NotRead[];
  /** Every metadata.namespace the manifests name, plus additionalNamespaces (without "*"); sorted. */
  namespaces: string[];
  application?: { name?: string; additionalNamespaces: string[] };
  /** Refusals (severity error) and warnings, with file:line and what to do. */
  findings: Finding[];
  /**
   * A KOTS release: what build carries under app/ (the release as written, chart archives
   * included), where `files` is its rendering.
   */
  carried?: ManifestFile[];
  /** A KOTS release: the rendered KOTS kinds (Application, Preflight…), under kots/, never applied. */
  kotsKinds?: ManifestFile[];
  /** A KOTS release rendered for a customer: its Helm charts as installed (their objects are among `files`). */
  charts?: InstalledChart[];
}

const CONTAINER_LISTS: [string, ImageOrigin][] = [
  ['containers', 'container'],
  ['initContainers', 'initContainer'],
  ['ephemeralContainers', 'ephemeralContainer'],
];

/**
 * A pod spec is a mapping with a `containers` sequence of mappings, one at least carrying a string
 * `image` (DESIGN.md "Where images are found"). Requiring that keeps a CR that merely has a
 * `containers` field of another shape (names, counts) out of the scan and the rewrite.
 */
function isPodSpec(node: unknown, doc?: Document): node is YAMLMap {
  if (!isMap(node)) return false;
  const list = containerList(node, 'containers', doc);
  return isSeq(list) && list.items.length > 0 && list.items.every((c) => isMap(c))
    && list.items.some((c) => str(child(c, 'image')) !== undefined);
}

/**
 * A pod spec's `containers` (or init/ephemeral) list, through a YAML alias (`containers: *ctrs`):
 * the anchored list is read, and rewritten where it is written, so every alias of it follows.
 */
export function containerList(podSpec: YAMLMap, key: string, doc?: Document): unknown {
  const list = podSpec.get(key, true);
  if (!isAlias(list) || doc === undefined) return list;
  const resolved = list.resolve(doc);
  return isSeq(resolved) && resolved.items.every((c) => isMap(c)) ? resolved : list;
}

/**
 * Calls cb for every pod spec, found by shape at any depth of any kind (Deployment's
 * spec.template.spec as much as an AnalysisTemplate's spec.metrics[].provider.job.spec.template.spec
 * or a Preflight's collectors[].runPod.podSpec); `path` is relative to `object`.
 */
export function forEachPodSpec(doc: Document, cb: (podSpec: YAMLMap, object: YAMLMap, path: NodePath) => void): void {
  forEachObject(doc.contents, (obj) => {
    if (isPodSpec(obj, doc)) cb(obj, obj, []);
    walkNodes(obj, (node, path) => {
      if (isPodSpec(node, doc)) cb(node, obj, path);
    });
  });
}

/** True for the KOTS Application object. */
export function isKotsApplication(obj: unknown): obj is YAMLMap {
  const api = str(child(obj, 'apiVersion'));
  return str(child(obj, 'kind')) === 'Application' && api !== undefined && api.startsWith('kots.io/');
}

/** A troubleshoot.sh object (Preflight, SupportBundle, Collector…). */
function isTroubleshoot(obj: unknown): boolean {
  const api = str(child(obj, 'apiVersion'));
  return api !== undefined && (api.startsWith('troubleshoot.sh/') || api.startsWith('troubleshoot.replicated.com/'));
}

/**
 * Calls cb for every node holding an image: each container's `image` value and each item of the
 * KOTS Application's spec.additionalImages. The node may be a non-string (the caller decides).
 * `path` leads from `object` to the node.
 */
export function forEachImageNode(
  doc: Document,
  cb: (node: Node, origin: ImageOrigin, object: YAMLMap, path: NodePath) => void,
): void {
  forEachPodSpec(doc, (podSpec, obj, specPath) => {
    for (const [key, origin] of CONTAINER_LISTS) {
      const list = containerList(podSpec, key, doc);
      if (!isSeq(list)) continue;
      list.items.forEach((container, i) => {
        const image = child(container, 'image');
        if (isNode(image)) cb(image, origin, obj, [...specPath, key, i, 'image']);
      });
    }
  });
  forEachObject(doc.contents, (obj) => {
    if (!isTroubleshoot(obj)) return;
    // troubleshoot's run and copyFromHost collectors start a pod from a bare image field.
    for (const listKey of ['collectors', 'hostCollectors']) {
      const list = child(child(obj, 'spec'), listKey);
      if (!isSeq(list)) continue;
      list.items.forEach((collector, i) => {
        for (const kind of ['run', 'copyFromHost']) {
          const image = child(child(collector, kind), 'image');
          if (isNode(image)) cb(image, 'collector', obj, ['spec', listKey, i, kind, 'image']);
        }
      });
    }
  });
  forEachObject(doc.contents, (obj) => {
    if (!isKotsApplication(obj)) return;
    const extra = child(child(obj, 'spec'), 'additionalImages');
    if (!isSeq(extra)) return;
    extra.items.forEach((item, i) => {
      if (isNode(item)) cb(item, 'additionalImages', obj, ['spec', 'additionalImages', i]);
    });
  });
}

/** The string value of an image node, or an E_MANIFESTS error naming file:line. */
export function imageString(node: Node, file: string, line: number): string {
  if (isScalar(node) && typeof node.value === 'string') {
    if (node.value.includes('{{')) throw new TemplateError(file, line);
    return node.value;
  }
  const shown = isScalar(node) ? String(node.value) : isMap(node) ? 'a mapping' : isSeq(node) ? 'a list' : 'an alias (write the image out)';
  throw new AirgapError('E_MANIFESTS', `${file}:${line}: image must be a string, found ${shown}`,
    { hint: 'write the image as a plain string, e.g. image: quay.io/org/app:1.0' });
}

export function isImageScalar(node: Node): node is Scalar<string> {
  return isScalar(node) && typeof node.value === 'string';
}

/** Template text where YAML or an image must stand: the scan turns it into a finding. */
export class TemplateError extends AirgapError {
  readonly file: string;
  readonly line: number;
  constructor(file: string, line: number) {
    super('E_MANIFESTS', `${file}:${line}: ${TEMPLATE_MESSAGE}`, { hint: TEMPLATE_HINT });
    this.file = file;
    this.line = line;
  }
}
const TEMPLATE_MESSAGE = 'contains template expressions ({{ … }}); the manifests must be rendered first';
const TEMPLATE_HINT = 'render the chart or KOTS templates (e.g. helm template … --output-dir DIR) and pass the rendered DIR';

/**
 * One manifest file's documents, one at a time (yamlDocuments): a big rendered file costs its
 * largest document, not all of them. Each is checked before it is handed out; errors name
 * file:line and the parser's reason. `lines` fills as the file is read.
 */
export function* manifestDocuments(file: string, text: string, lines: LineCounter): Generator<Document> {
  for (const doc of yamlDocuments(text, lines)) {
    const err = doc.errors[0];
    if (err !== undefined) {
      const line = lines.linePos(err.pos[0]).line;
      if (text.includes('{{')) throw new TemplateError(file, line);
      const reason = err.message.split('\n')[0] ?? err.code;
      throw new AirgapError('E_MANIFESTS', `${file}:${line}: malformed YAML: ${reason}`,
        { hint: 'fix the YAML syntax at that line' });
    }
    const dup = duplicateKey(doc);
    if (dup !== undefined) {
      throw new AirgapError('E_MANIFESTS', `${file}:${lines.linePos(dup.offset).line}: malformed YAML: duplicate key ${JSON.stringify(dup.key)}`,
        { hint: 'keep one of the two keys: a YAML mapping takes each key once (kubectl would keep only one of them)' });
    }
    // Unquoted {{ … }} parses as a flow mapping: a Helm/KOTS template, never a real manifest.
    visit(doc, {
      Map(_k, node) {
        if (node.flow && node.range && text.startsWith('{{', node.range[0])) {
          throw new TemplateError(file, lines.linePos(node.range[0]).line);
        }
      },
    });
    yield doc;
  }
}

export async function scanManifests(dir: string, opts: { kots?: ReleaseScanOptions } = {}): Promise<ScanResult> {
  const { manifests: paths, notRead } = await listManifestFiles(dir);
  // Each file is read once: whether the directory is a KOTS release is decided on the same bytes.
  const contents = new Map<string, Buffer>();
  const read = async (path: string): Promise<Buffer> => {
    const known = contents.get(path);
    if (known !== undefined) return known;
    const content = await readFile(join(dir, path)).catch((e: unknown) => {
      throw new AirgapError('E_MANIFESTS', `cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`,
        { hint: 'check the file permissions', cause: e });
    });
    contents.set(path, content);
    return content;
  };
  const name = (path: string): string => path.slice(path.lastIndexOf('/') + 1);
  // The walker reads .yaml/.yml/.json; chart archives and `Kustomization` are among what it does not.
  const others = notRead.filter((n) => n.reason !== 'hidden' && !n.path.endsWith('/')).map((n) => n.path);

  const findings: Finding[] = [];
  let sources: ManifestFile[];
  const top = [...paths, ...others].find((p) => isKustomizationName(p));
  if (top !== undefined) {
    // A kustomize tree: what ships (and is scanned and rewritten) is what it renders.
    sources = [{ path: KUSTOMIZE_RENDERED, content: await renderKustomization(dir, top) }];
  } else if (await isReleaseDir(paths, read)) {
    // A KOTS release: rendered as KOTS renders it (src/kots/). Its charts are archives with a
    // HelmChart each; an unpacked chart is not something KOTS installs.
    const charts = await chartFindings(dir, paths, read);
    const release: ReleaseFile[] = [];
    for (const path of [...paths, ...others.filter((p) => isArchiveName(name(p)))]) {
      if (!charts.skip(path)) release.push({ path, content: await read(path) });
    }
    const scanned = await scanRelease(release, opts.kots ?? releaseScanOptions({
      mode: 'discover', proxyHost: 'proxy.replicated.com', replicatedRegistry: 'registry.replicated.com',
    }));
    const unpacked = charts.findings.map((f) => ({ ...f, hint: 'package it (helm package) into the release and name it in a HelmChart (kots.io/v1beta2)' }));
    return { ...scanned, findings: [...unpacked, ...scanned.findings], notRead: notRead.filter((n) => !isArchiveName(name(n.path))) };
  } else {
    const charts = await chartFindings(dir, [...paths, ...others.filter((p) => isArchiveName(name(p)))], read);
    findings.push(...charts.findings);
    for (const p of others) if (isKustomizationName(name(p)) && !charts.skip(p)) findings.push(nestedKustomization(p));
    sources = [];
    for (const path of paths) {
      if (charts.skip(path)) continue;
      if (isKustomizationName(name(path))) {
        findings.push(nestedKustomization(path));
        continue;
      }
      sources.push({ path, content: await read(path) });
    }
  }
  return { ...scanFiles(sources, findings), notRead };
}

async function isReleaseDir(paths: string[], read: (path: string) => Promise<Buffer>): Promise<boolean> {
  for (const path of paths) if (isKotsRelease([{ path, content: await read(path) }])) return true;
  return false;
}

function nestedKustomization(path: string): Finding {
  const sub = path.slice(0, path.lastIndexOf('/'));
  return {
    severity: 'error', code: 'nested-kustomization', file: path, line: 1,
    message: 'a kustomize tree inside the manifests would be shipped unrendered',
    hint: `pass --manifests DIR/${sub} if that is the tree to ship (airgap renders it with kubectl kustomize), or ship its rendered output (kubectl kustomize DIR/${sub}) in a directory of its own`,
  };
}

/** Scans files already read: images, namespaces, the KOTS Application and the findings. */
export function scanFiles(sources: ManifestFile[], earlier: Finding[] = []): ScanResult {
  const images: FoundImage[] = [];
  const files: ManifestFile[] = [];
  const findings = [...earlier];
  const namespaces = new Set<string>();
  const objects: ObjectSeen[] = [];
  // What the checks after the loop need of each document, so that the parsed document can go.
  const imageLike: ImageLikeString[] = [];
  let application: ScanResult['application'];

  for (const { path, content } of sources) {
    files.push({ path, content });
    const text = content.toString('utf8');
    const kots = kotsFindings(path, text);
    if (kots.length > 0) {
      // Not parsed further: until rendered, its YAML means nothing reliable.
      findings.push(...kots);
      continue;
    }
    // What the file gives is kept aside until all of it has been read: a file refused halfway (a
    // template) contributes nothing but its finding.
    const lines = new LineCounter();
    const lineOf = (node: unknown): number => lines.linePos((isNode(node) ? node.range?.[0] : undefined) ?? 0).line;
    const inFile: FoundImage[] = [];
    const fileObjects: ObjectSeen[] = [];
    const fileNamespaces: string[] = [];
    const fileFindings: Finding[] = [];
    const fileImageLike: ImageLikeString[] = [];
    let fileApplication: ScanResult['application'];
    try {
      for (const doc of manifestDocuments(path, text, lines)) {
        const imageNodes = new Set<unknown>();
        forEachImageNode(doc, (node, origin) => {
          if (imageNodes.has(node)) return; // one list read through an alias again
          const line = lineOf(node);
          const raw = imageString(node, path, line);
          imageNodes.add(node);
          inFile.push({ raw, ref: parseReference(raw, `${path}:${line}`), file: path, line, origin });
        });
        forEachObject(doc.contents, (obj) => {
          const seen = objectSeen(obj, path, lineOf(obj));
          if (seen) fileObjects.push(seen);
          const ns = str(child(child(obj, 'metadata'), 'namespace'));
          if (ns) fileNamespaces.push(ns);
          if (!isKotsApplication(obj)) return;
          const spec = child(obj, 'spec');
          const extra = child(spec, 'additionalNamespaces');
          const additional = isSeq(extra) ? extra.items.map(str).filter((s): s is string => s !== undefined) : [];
          for (const n of additional) if (n !== '*') fileNamespaces.push(n);
          const name = str(child(child(obj, 'metadata'), 'name'));
          fileApplication = { additionalNamespaces: additional, ...(name !== undefined ? { name } : {}) };
        });
        fileImageLike.push(...imageLikeStrings(path, doc, lines, imageNodes));
      }
    } catch (e) {
      if (!(e instanceof TemplateError)) throw e;
      findings.push(templateFinding(e));
      continue;
    }
    images.push(...inFile.sort((a, b) => a.line - b.line));
    objects.push(...fileObjects);
    for (const ns of fileNamespaces) namespaces.add(ns);
    findings.push(...fileFindings);
    imageLike.push(...fileImageLike);
    if (fileApplication !== undefined) application = fileApplication;
  }

  findings.push(...duplicateFindings(objects));
  // Undeclared image-like strings: everything bundled counts as declared (see rewrite.ts).
  findings.push(...undeclaredFindings(imageLike, images));

  const result: ScanResult = { images, files, notRead: [], namespaces: [...namespaces].sort(), findings };
  if (application !== undefined) result.application = application;
  return result;
}

function templateFinding(e: TemplateError): Finding {
  return { severity: 'error', code: 'unrendered-template', file: e.file, line: e.line, message: TEMPLATE_MESSAGE, hint: TEMPLATE_HINT };
}


