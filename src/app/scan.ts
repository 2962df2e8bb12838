import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  parseAllDocuments, LineCounter, isMap, isSeq, isScalar, isNode, visit,
  type Document, type Node, type Scalar, type YAMLMap,
} from 'yaml';
import { AirgapError } from '../errors.js';
import { parseReference, taggedName, type Reference } from '../reference.js';
import type { Finding } from './findings.js';
import { chartFindings, helmChartFinding, isArchiveName, isHelmChart } from './charts.js';
import { isKustomizationName, KUSTOMIZE_RENDERED, renderKustomization } from './kustomize-render.js';

/**
 * Finds every image an application runs, by the SHAPE of its manifests (never by kind, never in
 * free text). This file is the one definition of "where images are": the rewrite walks the same
 * nodes through forEachPodSpec / forEachImageNode.
 */

export type ImageOrigin = 'container' | 'initContainer' | 'ephemeralContainer' | 'additionalImages';

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
  /** Every metadata.namespace the manifests name, plus additionalNamespaces (without "*"); sorted. */
  namespaces: string[];
  application?: { name?: string; additionalNamespaces: string[] };
  /** Refusals (severity error) and warnings, with file:line and what to do. */
  findings: Finding[];
}

const CONTAINER_LISTS: [string, ImageOrigin][] = [
  ['containers', 'container'],
  ['initContainers', 'initContainer'],
  ['ephemeralContainers', 'ephemeralContainer'],
];

/** The value node under `key` of a mapping node, or undefined. */
export function child(node: unknown, key: string): unknown {
  return isMap(node) ? node.get(key, true) : undefined;
}

/** The string value of a scalar node, or undefined. */
export function str(node: unknown): string | undefined {
  return isScalar(node) && typeof node.value === 'string' ? node.value : undefined;
}

/**
 * A pod spec is a mapping with a `containers` sequence of mappings, one at least carrying a string
 * `image` (DESIGN.md "Where images are found"). Requiring that keeps a CR that merely has a
 * `containers` field of another shape (names, counts) out of the scan and the rewrite.
 */
function isPodSpec(node: unknown): node is YAMLMap {
  if (!isMap(node)) return false;
  const list = node.get('containers', true);
  return isSeq(list) && list.items.length > 0 && list.items.every((c) => isMap(c))
    && list.items.some((c) => str(child(c, 'image')) !== undefined);
}

/** Calls cb for each top-level object of a document: the document itself, or the items of a List. */
export function forEachObject(node: unknown, cb: (obj: YAMLMap) => void): void {
  if (!isMap(node)) return;
  const items = child(node, 'items');
  if (str(child(node, 'kind'))?.endsWith('List') && isSeq(items)) {
    for (const item of items.items) forEachObject(item, cb);
    return;
  }
  cb(node);
}

/** A path inside one object (a List item counts as its own object), as JSON-pointer segments. */
export type NodePath = (string | number)[];

/**
 * Calls cb for every node of a mapping/sequence tree, parents before children, with its path from
 * the object and the key it stands under (undefined for a sequence item).
 */
export function walkNodes(root: unknown, cb: (node: unknown, path: NodePath, key: string | number) => void,
  path: NodePath = []): void {
  if (isMap(root)) {
    for (const pair of root.items) {
      const k = isScalar(pair.key) ? pair.key.value : pair.key;
      if (typeof k !== 'string' && typeof k !== 'number') continue;
      const p = [...path, k];
      cb(pair.value, p, k);
      walkNodes(pair.value, cb, p);
    }
  } else if (isSeq(root)) {
    root.items.forEach((item, i) => {
      const p = [...path, i];
      cb(item, p, i);
      walkNodes(item, cb, p);
    });
  }
}

/**
 * Calls cb for every pod spec, found by shape at any depth of any kind (Deployment's
 * spec.template.spec as much as an AnalysisTemplate's spec.metrics[].provider.job.spec.template.spec
 * or a Preflight's collectors[].runPod.podSpec); `path` is relative to `object`.
 */
export function forEachPodSpec(doc: Document, cb: (podSpec: YAMLMap, object: YAMLMap, path: NodePath) => void): void {
  forEachObject(doc.contents, (obj) => {
    if (isPodSpec(obj)) cb(obj, obj, []);
    walkNodes(obj, (node, path) => {
      if (isPodSpec(node)) cb(node, obj, path);
    });
  });
}

/** True for the KOTS Application object. */
export function isKotsApplication(obj: unknown): obj is YAMLMap {
  const api = str(child(obj, 'apiVersion'));
  return str(child(obj, 'kind')) === 'Application' && api !== undefined && api.startsWith('kots.io/');
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
      const list = podSpec.get(key, true);
      if (!isSeq(list)) continue;
      list.items.forEach((container, i) => {
        const image = child(container, 'image');
        if (isNode(image)) cb(image, origin, obj, [...specPath, key, i, 'image']);
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

/** Parses one manifest file's documents; errors name file:line and the parser's reason. */
export function parseManifestFile(file: string, text: string): { docs: Document[]; lines: LineCounter } {
  const lines = new LineCounter();
  const docs = parseAllDocuments(text, { lineCounter: lines, prettyErrors: false });
  const list = Array.isArray(docs) ? docs : [];
  for (const doc of list) {
    const err = doc.errors[0];
    if (err === undefined) continue;
    const line = lines.linePos(err.pos[0]).line;
    if (text.includes('{{')) throw new TemplateError(file, line);
    const reason = err.message.split('\n')[0] ?? err.code;
    throw new AirgapError('E_MANIFESTS', `${file}:${line}: malformed YAML: ${reason}`,
      { hint: 'fix the YAML syntax at that line' });
  }
  for (const doc of list) {
    // Unquoted {{ … }} parses as a flow mapping: a Helm/KOTS template, never a real manifest.
    visit(doc, {
      Map(_k, node) {
        if (node.flow && node.range && text.startsWith('{{', node.range[0])) {
          throw new TemplateError(file, lines.linePos(node.range[0]).line);
        }
      },
    });
  }
  return { docs: list, lines };
}

/** Recursively lists manifest files and chart archives, sorted by code point, skipping hidden entries. */
async function listManifestFiles(root: string, rel = ''): Promise<string[]> {
  const entries = await readdir(join(root, rel), { withFileTypes: true });
  entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const out: string[] = [];
  for (const e of entries) {
    if (e.name.startsWith('.')) continue;
    const path = rel === '' ? e.name : `${rel}/${e.name}`;
    if (e.isDirectory()) out.push(...await listManifestFiles(root, path));
    else if (e.isFile() && (isManifestName(e.name) || isArchiveName(e.name) || isKustomizationName(e.name))) out.push(path);
  }
  return out;
}

/** Manifests are .yaml, .yml and .json files (YAML is a superset of JSON: one parser reads both). */
export function isManifestName(name: string): boolean {
  return /\.(ya?ml|json)$/i.test(name);
}

export async function scanManifests(dir: string): Promise<ScanResult> {
  let paths: string[];
  try {
    paths = await listManifestFiles(dir);
  } catch (e) {
    const why = (e as NodeJS.ErrnoException).code ?? String(e);
    throw new AirgapError('E_MANIFESTS', `cannot read manifests directory ${dir}: ${why}`,
      { hint: 'pass --manifests DIR pointing at a readable directory of rendered YAML', cause: e });
  }
  const read = async (path: string): Promise<Buffer> => readFile(join(dir, path)).catch((e: unknown) => {
    throw new AirgapError('E_MANIFESTS', `cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`,
      { hint: 'check the file permissions', cause: e });
  });

  const findings: Finding[] = [];
  let sources: ManifestFile[];
  const top = paths.find((p) => isKustomizationName(p));
  if (top !== undefined) {
    // A kustomize tree: what ships (and is scanned and rewritten) is what it renders.
    sources = [{ path: KUSTOMIZE_RENDERED, content: await renderKustomization(dir, top) }];
  } else {
    const charts = await chartFindings(dir, paths, read);
    findings.push(...charts.findings);
    sources = [];
    for (const path of paths) {
      if (charts.skip(path) || isArchiveName(path)) continue;
      if (isKustomizationName(path.slice(path.lastIndexOf('/') + 1))) {
        findings.push(nestedKustomization(path));
        continue;
      }
      sources.push({ path, content: await read(path) });
    }
  }
  return scanFiles(sources, findings);
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
  const parsed: { path: string; docs: Document[]; lines: LineCounter; imageNodes: Set<unknown> }[] = [];
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
    let docs: Document[];
    let lines: LineCounter;
    try {
      ({ docs, lines } = parseManifestFile(path, text));
    } catch (e) {
      if (!(e instanceof TemplateError)) throw e;
      findings.push(templateFinding(e));
      continue;
    }
    const lineOf = (node: unknown): number => lines.linePos((isNode(node) ? node.range?.[0] : undefined) ?? 0).line;

    const inFile: FoundImage[] = [];
    const imageNodes = new Set<unknown>();
    try {
      for (const doc of docs) {
        forEachImageNode(doc, (node, origin) => {
          const line = lineOf(node);
          const raw = imageString(node, path, line);
          imageNodes.add(node);
          inFile.push({ raw, ref: parseReference(raw, `${path}:${line}`), file: path, line, origin });
        });
      }
    } catch (e) {
      if (!(e instanceof TemplateError)) throw e;
      findings.push(templateFinding(e));
      continue;
    }
    for (const doc of docs) {
      forEachObject(doc.contents, (obj) => {
        objects.push({ obj, file: path, line: lineOf(obj) });
        const ns = str(child(child(obj, 'metadata'), 'namespace'));
        if (ns) namespaces.add(ns);
        if (isHelmChart(obj)) findings.push(helmChartFinding(obj, path, lineOf(obj)));
        if (!isKotsApplication(obj)) return;
        const spec = child(obj, 'spec');
        const extra = child(spec, 'additionalNamespaces');
        const additional = isSeq(extra) ? extra.items.map(str).filter((s): s is string => s !== undefined) : [];
        for (const n of additional) if (n !== '*') namespaces.add(n);
        const name = str(child(child(obj, 'metadata'), 'name'));
        application = { additionalNamespaces: additional, ...(name !== undefined ? { name } : {}) };
      });
    }
    images.push(...inFile.sort((a, b) => a.line - b.line));
    parsed.push({ path, docs, lines, imageNodes });
  }

  findings.push(...duplicateFindings(objects));
  // Undeclared image-like strings: everything bundled counts as declared (see rewrite.ts).
  const declared = new Set(images.map((i) => i.raw));
  const bundled = new Map(images.map((i) => [taggedName(i.ref), i]));
  for (const { path, docs, lines, imageNodes } of parsed) {
    for (const doc of docs) {
      forEachStringValue(doc, imageNodes, (node, _obj, _path, context) => {
        const candidate = imageCandidate(node.value);
        if (declared.has(candidate.text) || !looksLikeImage(candidate.text, context)) return;
        const line = lines.linePos(node.range?.[0] ?? 0).line;
        const same = bundled.get(taggedName(parseReference(candidate.text)));
        findings.push(same === undefined ? {
          severity: 'warning', code: 'undeclared-image', file: path, line,
          message: `${candidate.text} looks like an image outside any pod spec; it is neither bundled nor rewritten`,
          hint: 'if the application runs it (an operator image, a RELATED_IMAGE_* value), add it to the KOTS Application\'s spec.additionalImages',
        } : {
          severity: 'warning', code: 'undeclared-image', file: path, line,
          message: `${candidate.text} is the bundled image ${same.raw} (${same.file}:${same.line}) written another way; the rewrite replaces exact text only, so this one keeps pointing at its source`,
          hint: `write it as ${same.raw}, or add this spelling to the KOTS Application's spec.additionalImages`,
        });
      });
    }
  }

  const result: ScanResult = { images, files, namespaces: [...namespaces].sort(), findings };
  if (application !== undefined) result.application = application;
  return result;
}

function templateFinding(e: TemplateError): Finding {
  return { severity: 'error', code: 'unrendered-template', file: e.file, line: e.line, message: TEMPLATE_MESSAGE, hint: TEMPLATE_HINT };
}

/**
 * KOTS template markers (`repl{{ … }}`, `{{repl … }}`); `{{ … }}` alone is Go-template text (alert
 * rules, troubleshoot messages) and passes, and so does `{{replicas}}`.
 */
const KOTS_MARKER = /repl\{\{|\{\{repl(?![\w.])/;

/** Every line of a file that still holds KOTS template syntax. */
export function kotsFindings(file: string, text: string): Finding[] {
  const out: Finding[] = [];
  text.split('\n').forEach((l, i) => {
    const m = KOTS_MARKER.exec(l);
    if (m === null) return;
    const snippet = l.slice(m.index, m.index + 60).trim();
    out.push({
      severity: 'error', code: 'unrendered-kots', file, line: i + 1,
      message: `unrendered KOTS template syntax: ${snippet}${l.length > m.index + 60 ? '…' : ''}`,
      hint: 'render the release for this customer first: KOTS evaluates ConfigOption, LicenseFieldValue… at install time, and an offline install has no KOTS',
    });
  });
  return out;
}

interface ObjectSeen { obj: YAMLMap; file: string; line: number }

/** Two objects with one group, kind, namespace and name: kustomize (and kubectl apply) keep one. */
function duplicateFindings(objects: ObjectSeen[]): Finding[] {
  const first = new Map<string, ObjectSeen>();
  const out: Finding[] = [];
  for (const o of objects) {
    const api = str(child(o.obj, 'apiVersion'));
    const kind = str(child(o.obj, 'kind'));
    const name = str(child(child(o.obj, 'metadata'), 'name'));
    if (api === undefined || kind === undefined || name === undefined) continue;
    const group = api.includes('/') ? api.slice(0, api.indexOf('/')) : '';
    // kustomize counts an object without a namespace as one in "default".
    const written = str(child(child(o.obj, 'metadata'), 'namespace')) ?? '';
    const ns = written === 'default' ? '' : written;
    const key = JSON.stringify([group, kind, ns, name]);
    const seen = first.get(key);
    if (seen === undefined) {
      first.set(key, o);
      continue;
    }
    out.push({
      severity: 'error', code: 'duplicate-object', file: o.file, line: o.line,
      message: `${kind}${group ? `.${group}` : ''}/${name}${ns ? ` in namespace ${ns}` : ''} is defined again; first at ${seen.file}:${seen.line}`,
      hint: 'keep one object per name: alternatives meant for kots.io/when must be resolved by rendering the release for this customer',
    });
  }
  return out;
}

/** Where a string value stands: its key, and the `name` beside it (env entries: RELATED_IMAGE_X). */
export interface ValueContext { key: string | number; siblingName: string | undefined }

/**
 * Calls cb for every string scalar in value position (never a key) of every object, except the
 * image nodes already read by shape. Block scalars (`|`, `>`) are free text and never visited.
 */
export function forEachStringValue(doc: Document, skip: Set<unknown>,
  cb: (node: Scalar<string>, object: YAMLMap, path: NodePath, context: ValueContext) => void): void {
  forEachObject(doc.contents, (obj) => {
    walkNodes(obj, (node, path, key) => {
      if (skip.has(node) || !isScalar(node) || typeof node.value !== 'string') return;
      if (node.type === 'BLOCK_LITERAL' || node.type === 'BLOCK_FOLDED') return;
      const parent = path.slice(0, -1).reduce<unknown>((n, k) => (isSeq(n) ? n.items[Number(k)] : child(n, String(k))), obj);
      cb(node as Scalar<string>, obj, path, { key, siblingName: typeof key === 'string' ? str(child(parent, 'name')) : undefined });
    });
  });
}

/** The reference part of a string value: the whole value, or the value of a `--flag=REF` argument. */
export function imageCandidate(value: string): { prefix: string; text: string } {
  const m = /^(--?[A-Za-z0-9][\w.-]*=)(\S+)$/.exec(value);
  return m ? { prefix: m[1]!, text: m[2]! } : { prefix: '', text: value };
}

/**
 * Whether an undeclared string is worth a warning: a reference that names its registry host and a
 * tag or digest (quay.io/org/x:v1), or any tagged reference under an image-ish key or env name.
 * Conservative on purpose: a warning nobody can act on teaches people to ignore warnings.
 */
export function looksLikeImage(text: string, context: ValueContext): boolean {
  if (text.length > 255 || /\s|:\/\/|\{\{/.test(text) || !text.includes(':') && !text.includes('@')) return false;
  let ref: Reference;
  try {
    ref = parseReference(text);
  } catch {
    return false;
  }
  const tagged = /[:@]/.test(text.slice(text.lastIndexOf('/') + 1));
  if (!tagged) return false;
  const first = text.slice(0, Math.max(0, text.indexOf('/')));
  const hosted = first !== '' && (first.includes('.') || first.includes(':') || first === 'localhost') && ref.registry === first;
  if (hosted) return true;
  const key = typeof context.key === 'string' ? context.key : '';
  const imageish = /image$/i.test(key) || /(^|_)IMAGE(_|$)/.test(context.siblingName ?? '') || /(^|_)IMAGE(_|$)/.test(key);
  return imageish;
}
