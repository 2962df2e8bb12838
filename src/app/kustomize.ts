import { stringify } from 'yaml';
import { DOCKER_HUB, type Reference } from '../reference.js';
import { AirgapError } from '../errors.js';

/**
 * The kustomize form of the rewrite: `base/` (the manifests as given) and `midstream/` (an
 * overlay with `images:` entries and patches) so `kubectl kustomize DIR/midstream` renders what
 * `rendered/` holds.
 */

export interface JsonPatchOp {
  op: 'add' | 'replace';
  /** JSON pointer inside the object. */
  path: string;
  value: unknown;
}

/** One object (a List item counts as one: kustomize flattens Lists) and the ops it needs. */
export interface ObjectPatch {
  target: { group?: string; version: string; kind: string; name: string; namespace?: string };
  ops: JsonPatchOp[];
}

/** One image occurrence: the name and tag as written, and where it goes. */
export interface ImageRewrite {
  written: string;
  ref: Reference;
  /** `host[:port]/ns/name:tag`; with `rename`, a new name only (no tag). */
  target: string;
  /**
   * Only the name changes (`airgap online`, the vendor's proxy): the tag and digest stay as
   * written, and the entry is the document's `name: <image as written>` + `newName:`.
   */
  rename?: boolean;
}

export function jsonPointer(path: (string | number)[]): string {
  return path.map((p) => '/' + String(p).replace(/~/g, '~0').replace(/\//g, '~1')).join('');
}

/** `base/kustomization.yaml`: lists the files and changes nothing. */
export function baseKustomization(paths: string[]): string {
  return '# The application manifests exactly as given; the changes live in ../midstream.\n' +
    stringify({ apiVersion: 'kustomize.config.k8s.io/v1beta1', kind: 'Kustomization', resources: paths });
}

/** Splits `host/ns/name:tag` at the tag (a colon after the last slash). */
function splitTarget(target: string): { name: string; tag: string } {
  const colon = target.lastIndexOf(':');
  if (colon <= target.lastIndexOf('/')) {
    throw new AirgapError('E_USAGE', `rewrite target "${target}" has no tag`, { hint: 'the mapping must return HOST/NS/NAME:TAG' });
  }
  return { name: target.slice(0, colon), tag: target.slice(colon + 1) };
}

/** The name part of an image as written, cut the way kustomize's image.Split cuts it. */
export function writtenName(written: string): { name: string; tag: string | undefined } {
  const noDigest = written.split('@')[0] ?? written;
  const colon = noDigest.lastIndexOf(':');
  return colon > noDigest.lastIndexOf('/')
    ? { name: noDigest.slice(0, colon), tag: noDigest.slice(colon + 1) }
    : { name: noDigest, tag: undefined };
}

/**
 * Every spelling kustomize could meet for one image: it matches `name` literally (as a regular
 * expression anchored at the start, followed by optional :tag and @digest), never normalising
 * Docker Hub names, so each Docker Hub form gets its own entry.
 */
function nameForms(written: string, ref: Reference): string[] {
  const forms = [written];
  if (ref.registry === DOCKER_HUB) {
    const r = ref.repository;
    const short = r.startsWith('library/') && r.split('/').length === 2 ? r.slice('library/'.length) : undefined;
    for (const host of ['', 'docker.io/', 'index.docker.io/']) {
      if (short !== undefined) forms.push(host + short);
      forms.push(host + r);
    }
  }
  return [...new Set(forms)];
}

/** kustomize compiles `name` into a regular expression: escape what an IPv6 host could bring. */
function escapeName(name: string): string {
  return name.replace(/[[\]()*+?^$|\\{}]/g, (c) => '\\' + c);
}

export interface KustomizeImage { name: string; newName: string; newTag?: string }

/**
 * The `images:` list. Names carry the tag as written, so two tags of one repository map to two
 * targets (kustomize matches `name` then an optional tag, so `redis:6` never matches `redis:7`).
 * An image written without a tag can only be matched by the bare name, which also matches every
 * tag: those entries go last, after the tagged ones have already moved their images away.
 * `newTag` is always set: kustomize then drops the digest of a `name:tag@digest` reference,
 * which is what a by-tag rewrite wants (the `digest:` field would pin the source digest instead).
 * A `rename` entry names the image exactly as written, digest included (kustomize's pattern then
 * matches that one text), and sets only `newName`: kustomize keeps the tag and digest.
 */
export function imageEntries(images: ImageRewrite[]): KustomizeImage[] {
  const tagged = new Map<string, KustomizeImage>();
  const bare = new Map<string, KustomizeImage>();
  const add = (into: Map<string, KustomizeImage>, entry: KustomizeImage): void => {
    const seen = into.get(entry.name);
    if (seen !== undefined && (seen.newName !== entry.newName || seen.newTag !== entry.newTag)) {
      const show = (e: KustomizeImage): string => e.newName + (e.newTag !== undefined ? `:${e.newTag}` : '');
      throw new AirgapError('E_COLLISION', `image ${entry.name} maps to both ${show(seen)} and ${show(entry)}`,
        { hint: 'the mapping must send one source to one target' });
    }
    into.set(entry.name, entry);
  };
  for (const img of images) {
    const { name, tag } = writtenName(img.written);
    if (img.rename) {
      add(tag === undefined && !img.written.includes('@') ? bare : tagged, { name: escapeName(img.written), newName: img.target });
      continue;
    }
    const { name: newName, tag: newTag } = splitTarget(img.target);
    for (const form of nameForms(name, img.ref)) {
      const key = escapeName(tag === undefined ? form : `${form}:${tag}`);
      add(tag === undefined ? bare : tagged, { name: key, newName, newTag });
    }
  }
  const byName = (a: { name: string }, b: { name: string }): number => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
  return [...[...tagged.values()].sort(byName), ...[...bare.values()].sort(byName)];
}

function patchFileName(t: ObjectPatch['target'], taken: Set<string>): string {
  const base = [t.kind, t.namespace, t.name].filter((s): s is string => !!s).join('-').toLowerCase().replace(/[^a-z0-9.-]+/g, '-');
  let name = `patches/${base}.yaml`;
  for (let i = 2; taken.has(name); i++) name = `patches/${base}-${i}.yaml`;
  taken.add(name);
  return name;
}

/** `midstream/kustomization.yaml` and the files it refers to. */
export function midstreamOverlay(opts: {
  images: ImageRewrite[];
  patches: ObjectPatch[];
  /** Extra resources beside ../base, e.g. the pull-secret manifest. */
  resources: { path: string; content: Buffer }[];
  /** Comment lines at the top of the file (default: the airgap rewrite's). */
  header?: string;
}): { kustomization: string; files: { path: string; content: Buffer }[] } {
  const taken = new Set<string>();
  const files = [...opts.resources];
  const patches = opts.patches.filter((p) => p.ops.length > 0).map((p) => {
    const path = patchFileName(p.target, taken);
    files.push({ path, content: Buffer.from(stringify(p.ops)) });
    return { path, target: p.target };
  });
  const doc: Record<string, unknown> = {
    apiVersion: 'kustomize.config.k8s.io/v1beta1',
    kind: 'Kustomization',
    resources: ['../base', ...opts.resources.map((r) => r.path)],
  };
  const images = imageEntries(opts.images);
  if (images.length > 0) doc['images'] = images;
  if (patches.length > 0) doc['patches'] = patches;
  const header = opts.header ?? '# Generated by airgap: images point at the customer registry (by tag), pods get the pull secret.\n' +
    '# kustomize covers containers and initContainers through images:, the patches cover\n' +
    '# ephemeralContainers, the KOTS Application\'s additionalImages and imagePullSecrets.\n';
  return { kustomization: header + stringify(doc), files };
}
