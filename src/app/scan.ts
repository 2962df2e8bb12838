import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  parseAllDocuments, LineCounter, isMap, isSeq, isScalar, isNode, visit,
  type Document, type Node, type Scalar, type YAMLMap,
} from 'yaml';
import { AirgapError } from '../errors.js';
import { listManifestFiles, type NotRead } from './files.js';
import { parseReference, type Reference } from '../reference.js';

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
  /** Files under the directory that are not manifests (README, archives, hidden): listed, not read. */
  notRead: NotRead[];
  /** Every metadata.namespace the manifests name, plus additionalNamespaces (without "*"); sorted. */
  namespaces: string[];
  application?: { name?: string; additionalNamespaces: string[] };
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

function isPodSpec(node: unknown): node is YAMLMap {
  // A pod spec without a containers list is not valid Kubernetes; requiring one keeps CRDs that
  // happen to have spec.template.spec (and are not pods) out of the rewrite.
  return isMap(node) && isSeq(node.get('containers', true));
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

const POD_SPEC_PATHS: NodePath[] = [
  ['spec'],
  ['spec', 'template', 'spec'],
  ['spec', 'jobTemplate', 'spec', 'template', 'spec'],
];

/**
 * Calls cb for every pod spec: spec (Pod shape), spec.template.spec,
 * spec.jobTemplate.spec.template.spec; `path` is relative to `object`.
 */
export function forEachPodSpec(doc: Document, cb: (podSpec: YAMLMap, object: YAMLMap, path: NodePath) => void): void {
  forEachObject(doc.contents, (obj) => {
    for (const path of POD_SPEC_PATHS) {
      const node = path.reduce<unknown>((n, k) => child(n, String(k)), obj);
      if (isPodSpec(node)) cb(node, obj, path);
    }
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
export function imageString(node: Node, where: string): string {
  if (isScalar(node) && typeof node.value === 'string') {
    if (node.value.includes('{{')) throw templated(where);
    return node.value;
  }
  const shown = isScalar(node) ? String(node.value) : isMap(node) ? 'a mapping' : isSeq(node) ? 'a list' : 'an alias (write the image out)';
  throw new AirgapError('E_MANIFESTS', `${where}: image must be a string, found ${shown}`,
    { hint: 'write the image as a plain string, e.g. image: quay.io/org/app:1.0' });
}

export function isImageScalar(node: Node): node is Scalar<string> {
  return isScalar(node) && typeof node.value === 'string';
}

function templated(where: string): AirgapError {
  return new AirgapError('E_MANIFESTS', `${where}: contains template expressions ({{ … }}); the manifests must be rendered first`,
    { hint: 'render the chart or KOTS templates (e.g. helm template … --output-dir DIR) and pass the rendered DIR' });
}

/** Parses one manifest file's documents; errors name file:line and the parser's reason. */
export function parseManifestFile(file: string, text: string): { docs: Document[]; lines: LineCounter } {
  const lines = new LineCounter();
  const docs = parseAllDocuments(text, { lineCounter: lines, prettyErrors: false });
  const list = Array.isArray(docs) ? docs : [];
  for (const doc of list) {
    const err = doc.errors[0];
    if (err === undefined) continue;
    const where = `${file}:${lines.linePos(err.pos[0]).line}`;
    if (text.includes('{{')) throw templated(where);
    const reason = err.message.split('\n')[0] ?? err.code;
    throw new AirgapError('E_MANIFESTS', `${where}: malformed YAML: ${reason}`,
      { hint: 'fix the YAML syntax at that line' });
  }
  for (const doc of list) {
    // Unquoted {{ … }} parses as a flow mapping: a Helm/KOTS template, never a real manifest.
    visit(doc, {
      Map(_k, node) {
        if (node.flow && node.range && text.startsWith('{{', node.range[0])) {
          throw templated(`${file}:${lines.linePos(node.range[0]).line}`);
        }
      },
    });
  }
  return { docs: list, lines };
}

export async function scanManifests(dir: string): Promise<ScanResult> {
  const { manifests: paths, notRead } = await listManifestFiles(dir);

  const images: FoundImage[] = [];
  const files: ManifestFile[] = [];
  const namespaces = new Set<string>();
  let application: ScanResult['application'];

  for (const path of paths) {
    let content: Buffer;
    try {
      content = await readFile(join(dir, path));
    } catch (e) {
      throw new AirgapError('E_MANIFESTS', `cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`,
        { hint: 'check the file permissions', cause: e });
    }
    files.push({ path, content });
    const { docs, lines } = parseManifestFile(path, content.toString('utf8'));
    const at = (node: Node): string => `${path}:${node.range ? lines.linePos(node.range[0]).line : 1}`;

    const inFile: FoundImage[] = [];
    for (const doc of docs) {
      forEachImageNode(doc, (node, origin) => {
        const where = at(node);
        const raw = imageString(node, where);
        inFile.push({ raw, ref: parseReference(raw, where), file: path, line: lines.linePos(node.range?.[0] ?? 0).line, origin });
      });
      forEachObject(doc.contents, (obj) => {
        const ns = str(child(child(obj, 'metadata'), 'namespace'));
        if (ns) namespaces.add(ns);
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
  }

  const result: ScanResult = { images, files, notRead, namespaces: [...namespaces].sort() };
  if (application !== undefined) result.application = application;
  return result;
}
