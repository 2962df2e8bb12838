import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { mkdir, readdir, rename, rm, rmdir } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { registerCleanup } from '../cleanup.js';
import { LineCounter, isMap, isScalar, isSeq, type Document, type Scalar, type Node, type YAMLMap } from 'yaml';
import { AirgapError } from '../errors.js';
import { formatReference, isDigestOnly, parseReference, taggedName, type Reference } from '../reference.js';
import { NamespaceScope } from './scope.js';
import {
  child, containerList, forEachImageNode, forEachObject, forEachPodSpec, forEachStringValue, imageCandidate, imageString, manifestDocuments, str,
  type ManifestFile, type NodePath, type ScanResult,
} from './scan.js';
import { refuseErrors } from './findings.js';
import {
  PULL_SECRET_FILE, pullSecretManifests, pullSecretName,
} from './pullsecret.js';
import type { Credentials } from '../registry/credentials.js';
import {
  baseKustomization, jsonPointer, midstreamOverlay, writtenName, type ImageRewrite, type JsonPatchOp, type ObjectPatch,
} from './kustomize.js';

/**
 * The retarget rule: points the application's images at another registry — the customer registry,
 * by tag, for the `airgap rewrite` phase (src/rewrite.ts), or the vendor proxy, by name, for
 * `airgap online` — with every image field, the pull secret in every pod spec, and the Secret itself. Edits are spliced into the original text at the
 * parser's offsets, so comments and formatting of every other line stay byte for byte.
 */

export interface RetargetOptions {
  /**
   * The registry the pull secret is for, `host[:port]` (the customer registry); several when the
   * same credentials serve them all (online: the vendor proxy and the vendor registry).
   */
  host: string | string[];
  appSlug: string;
  /**
   * Source reference → target `host/ns/name:tag` (by tag), or → the new name (`rename`);
   * undefined leaves the image as written.
   */
  mapping: (ref: Reference) => string | undefined;
  /**
   * 'by-tag' (default, the airgap rewrite): digests are dropped and a digest-only reference is
   * refused. 'rename' (`airgap online`): only the name changes; tag and digest stay as written.
   */
  form?: 'by-tag' | 'rename';
  /** Which pod specs get the pull secret, from the images they pull (default: every pod spec). */
  needsSecret?: (images: Reference[]) => boolean;
  /** Comment lines at the top of midstream/kustomization.yaml (default: the rewrite's own). */
  overlayHeader?: string;
  /**
   * Customer registry credentials. Without them no Secret is written and no imagePullSecrets
   * added: a dockerconfigjson entry without credentials would authenticate nobody, and a
   * reference to a Secret that cannot pull only hides that the registry is anonymous.
   */
  secret: Credentials | undefined;
  /** The application's namespace (where objects without metadata.namespace land). */
  namespace: string;
  /**
   * Files whose objects land in another namespace when they name none: a KOTS HelmChart's
   * rendered chart goes where the HelmChart says (its `namespace`), as KOTS installs it.
   */
  fileNamespaces?: Map<string, string>;
}

export interface RetargetResult {
  /** Same relative paths as the scan, plus the pull-secret manifest when credentials were given. */
  rendered: ManifestFile[];
  /** The manifests exactly as given, plus base/kustomization.yaml. */
  base: ManifestFile[];
  /** midstream/kustomization.yaml */
  kustomization: string;
  /** The overlay's other files: patches and the pull-secret manifest. */
  midstreamFiles: ManifestFile[];
  /** Distinct source (fully qualified; by tag without digest) → target, sorted by source. */
  images: { from: string; to: string }[];
}

interface Splice { start: number; end: number; text: string }

/**
 * Writes the new value in the style the old one was written in. A block scalar (`image: >-` and
 * the image on the next line) is written plain, and the line break its range ends with is kept.
 */
function scalarText(node: Scalar, value: string, written: string): string {
  if (node.type === 'QUOTE_DOUBLE') return JSON.stringify(value);
  if (node.type === 'QUOTE_SINGLE') return `'${value.replace(/'/g, "''")}'`;
  if (node.type === 'BLOCK_LITERAL' || node.type === 'BLOCK_FOLDED') return value + written.slice(written.trimEnd().length);
  return value;
}

function objectTarget(obj: YAMLMap, where: string): ObjectPatch['target'] {
  const apiVersion = str(child(obj, 'apiVersion'));
  const kind = str(child(obj, 'kind'));
  const name = str(child(child(obj, 'metadata'), 'name'));
  if (apiVersion === undefined || kind === undefined || name === undefined) {
    throw new AirgapError('E_MANIFESTS', `${where}: object has no apiVersion, kind or metadata.name`,
      { hint: 'every Kubernetes object needs apiVersion, kind and metadata.name' });
  }
  const slash = apiVersion.indexOf('/');
  const target: ObjectPatch['target'] = slash < 0
    ? { version: apiVersion, kind, name }
    : { group: apiVersion.slice(0, slash), version: apiVersion.slice(slash + 1), kind, name };
  const namespace = str(child(child(obj, 'metadata'), 'namespace'));
  if (namespace !== undefined) target.namespace = namespace;
  return target;
}

/**
 * How far this file indents a block sequence under its key (`containers:\n  - …` or
 * `containers:\n- …`), read from the pod spec's own containers list, so inserted lines match.
 */
function seqIndent(text: string, col: (offset: number) => number, podSpec: YAMLMap): string {
  const pair = podSpec.items.find((p) => str(p.key) === 'containers');
  const seq = pair?.value;
  const key = pair?.key as Node | undefined;
  const first = isSeq(seq) && !seq.flow ? (seq.items[0] as Node | undefined) : undefined;
  if (key?.range == null || first?.range == null) return '';
  const dash = text.lastIndexOf('-', first.range[0]);
  return ' '.repeat(Math.max(0, col(dash) - col(key.range[0])));
}

/** Adds `- name: <secret>` to a pod spec's imagePullSecrets in the text; returns the JSON-patch op. */
function addPullSecret(text: string, lines: LineCounter, podSpec: YAMLMap, specPath: NodePath,
  secret: string, where: string, json: boolean): { splice: Splice; op: JsonPatchOp } | undefined {
  const col = (offset: number): number => lines.linePos(offset).col - 1;
  const nl = text.includes('\r\n') ? '\r\n' : '\n';
  const existing = podSpec.get('imagePullSecrets', true);
  const path = [...specPath, 'imagePullSecrets'];
  if (existing === undefined) {
    const first = podSpec.items[0]?.key as Node | undefined;
    const at = first?.range?.[0];
    if (at === undefined) throw new AirgapError('E_MANIFESTS', `${where}: cannot place imagePullSecrets in this pod spec`);
    const indent = ' '.repeat(col(at));
    const insert = json
      ? `"imagePullSecrets": [{"name": ${JSON.stringify(secret)}}], `
      : podSpec.flow
      ? `imagePullSecrets: [{name: ${secret}}], `
      : `imagePullSecrets:${nl}${indent}${seqIndent(text, col, podSpec)}- name: ${secret}${nl}${indent}`;
    return { splice: { start: at, end: at, text: insert }, op: { op: 'add', path: jsonPointer(path), value: [{ name: secret }] } };
  }
  if (!isSeq(existing) || existing.range === undefined || existing.range === null) {
    throw new AirgapError('E_MANIFESTS', `${where}: imagePullSecrets must be a list`, { hint: 'write imagePullSecrets: [{name: …}]' });
  }
  if (existing.items.some((i) => str(child(i, 'name')) === secret)) return undefined;
  const op: JsonPatchOp = { op: 'add', path: jsonPointer([...path, '-']), value: { name: secret } };
  if (existing.flow) {
    const close = text.lastIndexOf(']', existing.range[1] - 1);
    const item = json ? `{"name": ${JSON.stringify(secret)}}` : `{name: ${secret}}`;
    const insert = existing.items.length > 0 ? `, ${item}` : item;
    return { splice: { start: close, end: close, text: insert }, op };
  }
  const firstItem = existing.items[0] as Node;
  const lastItem = existing.items[existing.items.length - 1] as Node;
  const dash = text.lastIndexOf('-', firstItem.range?.[0] ?? 0);
  const lastEnd = lastItem.range?.[1] ?? existing.range[1];
  let eol = text.indexOf('\n', lastEnd - 1);
  if (eol < 0) eol = text.length;
  else if (text[eol - 1] === '\r') eol -= 1;
  return { splice: { start: eol, end: eol, text: `${nl}${' '.repeat(col(dash))}- name: ${secret}` }, op };
}

/**
 * Puts `namespace: <ns>` first in an object's metadata, in the text's own style, for an object of a
 * namespaced kind that names no namespace; returns the JSON-patch op that does the same in the
 * overlay. Objects that name their namespace (additionalNamespaces) and cluster-scoped kinds are
 * left as they are.
 */
function addNamespace(text: string, lines: LineCounter, obj: YAMLMap, namespace: string, scope: NamespaceScope,
  json: boolean): { splice: Splice; op: JsonPatchOp } | undefined {
  const apiVersion = str(child(obj, 'apiVersion'));
  const kind = str(child(obj, 'kind'));
  const metadata = child(obj, 'metadata');
  if (apiVersion === undefined || kind === undefined || !isMap(metadata) || !scope.isNamespaced(apiVersion, kind)) return undefined;
  // No name, no object kustomize or kubectl apply would take: left for them to refuse.
  if (metadata.has('namespace') || str(metadata.get('name', true)) === undefined) return undefined;
  const at = (metadata.items[0]?.key as Node | undefined)?.range?.[0];
  if (at === undefined) return undefined;
  const nl = text.includes('\r\n') ? '\r\n' : '\n';
  const insert = json
    ? `"namespace": ${JSON.stringify(namespace)}, `
    : metadata.flow
    ? `namespace: ${namespace}, `
    : `namespace: ${namespace}${nl}${' '.repeat(lines.linePos(at).col - 1)}`;
  return { splice: { start: at, end: at, text: insert }, op: { op: 'add', path: '/metadata/namespace', value: namespace } };
}

/** The application's CustomResourceDefinitions: which of its own kinds are cluster-scoped. */
function namespaceScope(files: ManifestFile[]): NamespaceScope {
  const scope = new NamespaceScope();
  for (const file of files) {
    const text = file.content.toString('utf8');
    if (!text.includes('CustomResourceDefinition')) continue;
    for (const doc of manifestDocuments(file.path, text, new LineCounter())) {
      forEachObject(doc.contents, (obj) => {
        if (str(child(obj, 'kind')) !== 'CustomResourceDefinition') return;
        const spec = child(obj, 'spec');
        scope.addDefinition(str(child(spec, 'group')), str(child(child(spec, 'names'), 'kind')), str(child(spec, 'scope')));
      });
    }
  }
  return scope;
}

/** The images a pod spec's containers, initContainers and ephemeralContainers pull. */
function podSpecImages(podSpec: YAMLMap, doc: Document): Reference[] {
  const refs: Reference[] = [];
  for (const key of ['containers', 'initContainers', 'ephemeralContainers']) {
    const list = containerList(podSpec, key, doc);
    if (!isSeq(list)) continue;
    for (const c of list.items) {
      const image = str(child(c, 'image'));
      if (image !== undefined) refs.push(parseReference(image));
    }
  }
  return refs;
}

export function retargetApp(scan: ScanResult, opts: RetargetOptions): RetargetResult {
  const secretName = pullSecretName(opts.appSlug);
  const rendered: ManifestFile[] = [];
  const rewrites: ImageRewrite[] = [];
  const patches: ObjectPatch[] = [];
  const images = new Map<string, string>();
  refuseErrors(scan.findings);
  // Operator images: every bundled reference is rewritten wherever its exact text stands as a
  // whole string value or a --flag=REF value (DESIGN.md "Operator images"); nothing else is.
  // A rename (online) keeps the tag and digest exactly as written, as kustomize's newName does.
  const rename = opts.form === 'rename';
  const renamed = (raw: string, newName: string): string => newName + raw.slice(writtenName(raw).name.length);
  const scope = namespaceScope(scan.files);
  const declared = new Map<string, { ref: Reference; target: string }>();
  for (const img of scan.images) {
    if (declared.has(img.raw) || (!rename && isDigestOnly(img.ref))) continue;
    const mapped = opts.mapping(img.ref);
    if (mapped !== undefined) declared.set(img.raw, { ref: img.ref, target: rename ? renamed(img.raw, mapped) : mapped });
  }

  for (const file of scan.files) {
    if (file.path === PULL_SECRET_FILE || /^kustomization\.ya?ml$|^Kustomization$/.test(file.path)) {
      throw new AirgapError('E_MANIFESTS', `${file.path}: this name is reserved for the rewrite's own output`,
        { hint: 'rename the file in the manifests directory' });
    }
    const text = file.content.toString('utf8');
    // JSON stays JSON: inserted text is written in JSON syntax, which YAML reads too.
    const json = /\.json$/i.test(file.path);
    const lines = new LineCounter();
    const at = (node: Node | YAMLMap): string => `${file.path}:${lines.linePos(node.range?.[0] ?? 0).line}`;
    const splices: Splice[] = [];
    // By the object's offset in the file, not the node: a parsed document is let go once read.
    const patchOf = new Map<number, ObjectPatch>();
    const patchFor = (obj: YAMLMap): ObjectPatch => {
      const key = obj.range?.[0] ?? -1;
      let p = patchOf.get(key);
      if (p === undefined) {
        p = { target: objectTarget(obj, at(obj)), ops: [] };
        patchOf.set(key, p);
        patches.push(p);
      }
      return p;
    };

    for (const doc of manifestDocuments(file.path, text, lines)) {
      const imageNodes = new Set<unknown>();
      forEachImageNode(doc, (node, origin, obj, path) => {
        imageNodes.add(node);
        const where = at(node);
        const raw = imageString(node, file.path, lines.linePos(node.range?.[0] ?? 0).line);
        const ref = parseReference(raw, where);
        if (!rename && isDigestOnly(ref)) {
          throw new AirgapError('E_DIGEST_ONLY', `${where}: image ${raw} is pinned by digest only; an airgap install rewrites by tag`,
            { hint: 'write it as NAME:TAG@DIGEST' });
        }
        const mapped = opts.mapping(ref);
        const range = node.range;
        if (mapped === undefined || !isScalar(node) || range === undefined || range === null) return;
        const target = rename ? renamed(raw, mapped) : mapped;
        splices.push({ start: range[0], end: range[1], text: scalarText(node, target, text.slice(range[0], range[1])) });
        rewrites.push({ written: raw, ref, target: mapped, ...(rename ? { rename: true } : {}) });
        images.set(rename ? formatReference(ref) : taggedName(ref), target);
        // kustomize's images: transformer only knows containers/initContainers; patch the rest.
        if (origin === 'ephemeralContainer' || origin === 'additionalImages' || origin === 'collector') {
          patchFor(obj).ops.push({ op: 'replace', path: jsonPointer(path), value: target });
        }
      });
      forEachStringValue(doc, imageNodes, (node, obj, path) => {
        const { prefix, text: written } = imageCandidate(node.value);
        const hit = declared.get(written);
        const range = node.range;
        if (hit === undefined || range === undefined || range === null) return;
        const value = prefix + hit.target;
        splices.push({ start: range[0], end: range[1], text: scalarText(node, value, text.slice(range[0], range[1])) });
        images.set(rename ? formatReference(hit.ref) : taggedName(hit.ref), hit.target);
        patchFor(obj).ops.push({ op: 'replace', path: jsonPointer(path), value });
      });
      // Applied as printed (kubectl apply -f rendered/, or -k midstream/), an object that names no
      // namespace lands in --namespace, where the pull secret is, not in the context's namespace.
      forEachObject(doc.contents, (obj) => {
        const added = addNamespace(text, lines, obj, opts.fileNamespaces?.get(file.path) ?? opts.namespace, scope, json);
        if (added === undefined) return;
        splices.push(added.splice);
        patchFor(obj).ops.push(added.op);
      });
      if (opts.secret === undefined) continue;
      forEachPodSpec(doc, (podSpec, obj, path) => {
        if (opts.needsSecret !== undefined && !opts.needsSecret(podSpecImages(podSpec, doc))) return;
        const added = addPullSecret(text, lines, podSpec, path, secretName, at(podSpec), json);
        if (added === undefined) return;
        splices.push(added.splice);
        patchFor(obj).ops.push(added.op);
      });
    }
    rendered.push({ path: file.path, content: Buffer.from(applySplices(text, splices)) });
  }

  const midstreamResources: ManifestFile[] = [];
  if (opts.secret !== undefined) {
    const namespaces = [opts.namespace, ...scan.namespaces, ...(opts.fileNamespaces?.values() ?? [])];
    const secret = Buffer.from(pullSecretManifests({ appSlug: opts.appSlug, host: opts.host, credentials: opts.secret, namespaces }));
    rendered.push({ path: PULL_SECRET_FILE, content: secret });
    midstreamResources.push({ path: PULL_SECRET_FILE, content: secret });
  }
  const overlay = midstreamOverlay({
    images: rewrites, patches, resources: midstreamResources, ...(opts.overlayHeader !== undefined ? { header: opts.overlayHeader } : {}),
  });
  const base = [...scan.files, { path: 'kustomization.yaml', content: Buffer.from(baseKustomization(scan.files.map((f) => f.path))) }];
  return {
    rendered,
    base,
    kustomization: overlay.kustomization,
    midstreamFiles: overlay.files,
    images: [...images].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([from, to]) => ({ from, to })),
  };
}

/**
 * Runs the customer's rewrite at build time against a stand-in registry, so that what would make
 * it fail (a reserved file name, an object it cannot patch, a malformed imagePullSecrets) is
 * refused before the bundle ships rather than found inside the air gap.
 */
export function rehearseRetarget(scan: ScanResult, form: RetargetOptions['form'] = 'by-tag'): void {
  const name = (ref: Reference): string => `registry.airgap.invalid/app/${ref.repository.slice(ref.repository.lastIndexOf('/') + 1)}`;
  retargetApp(scan, {
    host: 'registry.airgap.invalid', appSlug: 'app', namespace: 'default', form,
    mapping: (ref) => (form === 'rename' ? name(ref) : `${name(ref)}:${ref.tag ?? 'latest'}`),
    secret: { username: 'rehearsal', password: 'rehearsal' },
  });
}

function applySplices(text: string, splices: Splice[]): string {
  // In text order, equal starts in the order given; each stretch of the text is copied once, so a
  // file with thousands of images costs its length, not its length times the number of images.
  // A splice inside one already made is the same edit met again (a list read through two aliases).
  const ordered = splices.map((s, i) => ({ s, i })).sort((a, b) => a.s.start - b.s.start || a.i - b.i);
  const pieces: string[] = [];
  let at = 0;
  for (const { s } of ordered) {
    if (s.start < at) continue;
    pieces.push(text.slice(at, s.start), s.text);
    at = s.end;
  }
  pieces.push(text.slice(at));
  return pieces.join('');
}

/**
 * Writes rendered/, base/ and midstream/ into outDir. Everything goes to a temporary directory
 * beside it first and is renamed into place, so a failure never leaves a half-written outDir.
 */
export async function writeRetargeted(result: RetargetResult, outDir: string,
  more: { extras?: { path: string; content: Buffer; mode?: number }[]; private?: Set<string> } = {}): Promise<void> {
  let entries: string[] | undefined;
  try {
    entries = await readdir(outDir);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT') throw new AirgapError('E_OUTPUT', `cannot use output directory ${outDir}: ${code ?? String(e)}`, { cause: e });
  }
  if (entries !== undefined && entries.length > 0) {
    throw new AirgapError('E_OUTPUT', `output directory ${outDir} is not empty`, { hint: 'choose a new --out directory or empty this one' });
  }
  const parent = dirname(outDir);
  let tmp: string;
  try {
    await mkdir(parent, { recursive: true });
    // Synchronous with the registration below: no signal can fall between the two.
    tmp = mkdtempSync(join(parent, `.${basename(outDir)}.tmp-`));
  } catch (e) {
    throw new AirgapError('E_OUTPUT', `cannot write beside ${outDir}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`, { cause: e });
  }
  // It holds the pull secret: removed on an interrupt too, not only on an error.
  const unregister = registerCleanup(() => rmSync(tmp, { recursive: true, force: true }));
  try {
    const all: [string, (ManifestFile & { mode?: number })[]][] = [
      ['rendered', result.rendered],
      ['base', result.base],
      ['midstream', [...result.midstreamFiles, { path: 'kustomization.yaml', content: Buffer.from(result.kustomization) }]],
      ['.', more.extras ?? []],
    ];
    const modeOf = (f: ManifestFile & { mode?: number }): number | undefined =>
      f.mode ?? (basename(f.path) === PULL_SECRET_FILE || more.private?.has(f.path) ? 0o600 : undefined);
    for (const [dir, files] of all) {
      mkdirSync(join(tmp, dir), { recursive: true });
      for (const f of files) {
        if (f.path.split('/').some((c) => c === '..' || c === '') || f.path.startsWith('/')) {
          throw new AirgapError('E_OUTPUT', `refusing to write outside ${outDir}: ${f.path}`);
        }
        // Synchronous, so no write is in flight when an interrupt's cleanup removes tmp.
        mkdirSync(dirname(join(tmp, dir, f.path)), { recursive: true });
        // The pull secret holds the registry password: readable by its owner only.
        const mode = modeOf(f);
        writeFileSync(join(tmp, dir, f.path), f.content, mode !== undefined ? { mode } : {});
      }
    }
    if (entries !== undefined) await rmdir(outDir);
    await rename(tmp, outDir);
  } catch (e) {
    await rm(tmp, { recursive: true, force: true });
    if (e instanceof AirgapError) throw e;
    throw new AirgapError('E_OUTPUT', `cannot write ${outDir}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`, { cause: e });
  } finally {
    unregister();
  }
}
