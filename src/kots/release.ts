import { LineCounter, Parser, isMap, isScalar, parseDocument, type YAMLMap } from 'yaml';
import { AirgapError } from '../errors.js';
import { child, str, yamlDocuments } from '../app/nodes.js';
import { ConfigState, isConfigObject, parseConfig, parseGoBool, type ConfigValue, type KotsConfig } from './config.js';
import { kotsFunctions, type RenderFacts } from './functions.js';
import { hasKotsTemplate, renderKots } from './template.js';

/**
 * A KOTS release, rendered as KOTS renders it (replicatedhq/kots pkg/base, pkg/kotsutil):
 * every file's text through the template language first, then parsed; each document then kept,
 * left out (`kots.io/exclude: "true"`, `kots.io/when: "false"`), or set aside as a kind KOTS
 * consumes itself and never applies (kotsutil.IsKotsKind).
 */

export interface ReleaseFile { path: string; content: Buffer }

/** What KOTS consumes itself (kotsutil.IsKotsKind): never applied to the cluster. */
export function isKotsKind(apiVersion: string | undefined, kind: string | undefined): boolean {
  if (apiVersion === undefined) return false;
  if (apiVersion === 'velero.io/v1' && (kind === 'Backup' || kind === 'Restore')) return true;
  return ['kots.io/v1beta1', 'kots.io/v1beta2', 'troubleshoot.sh/v1beta2', 'troubleshoot.replicated.com/v1beta1',
    'cluster.kurl.sh/v1beta1', 'kurl.sh/v1beta1', 'embeddedcluster.replicated.com/v1beta1', 'app.k8s.io/v1beta1'].includes(apiVersion);
}

const MANIFEST = /\.(ya?ml|json)$/i;

/** True when the files are a KOTS release: template syntax, or a kind only KOTS reads. */
export function isKotsRelease(files: ReleaseFile[]): boolean {
  for (const f of files) {
    if (!MANIFEST.test(f.path)) continue;
    const text = f.content.toString('utf8');
    if (hasKotsTemplate(text)) return true;
    if (/^\s*apiVersion:\s*["']?kots\.io\//m.test(text) || /"apiVersion"\s*:\s*"kots\.io\//.test(text)) return true;
  }
  return false;
}

/** One document of a rendered file. */
export interface RenderedDocument {
  file: string;
  /** 1-based line of the document in the rendered text. */
  line: number;
  text: string;
  apiVersion?: string;
  kind?: string;
  name?: string;
  /** `kots.io/exclude` true or `kots.io/when` false. */
  excluded: boolean;
  kotsKind: boolean;
}

export interface RenderedRelease {
  config: ConfigState;
  /** Every document of every manifest file, in order. */
  documents: RenderedDocument[];
  /** Each manifest file's whole rendered text: what is written when all of its documents are kept. */
  texts: Map<string, string>;
}

export interface RenderOptions {
  /** Facts of this rendering; `config` is made here from the release's Config and `values`. */
  facts: Omit<RenderFacts, 'config'>;
  values?: Map<string, ConfigValue>;
  /** Build-time discovery: every if-chain takes this branch (template.ts). */
  forceBranch?: number;
}

/** Finds and reads the release's Config (its templates stay unrendered until an item is asked for). */
export function findConfig(files: ReleaseFile[]): KotsConfig | undefined {
  let found: KotsConfig | undefined;
  for (const f of files) {
    if (!MANIFEST.test(f.path)) continue;
    const text = f.content.toString('utf8');
    if (!/kind:\s*["']?Config\b|"kind"\s*:\s*"Config"/.test(text)) continue;
    const lines = new LineCounter();
    for (const doc of yamlDocuments(text, lines)) {
      if (!isConfigObject(doc.contents)) continue;
      const err = doc.errors[0];
      if (err !== undefined) {
        throw new AirgapError('E_MANIFESTS', `${f.path}:${lines.linePos(err.pos[0]).line}: the Config is not valid YAML before rendering`,
          { hint: 'quote template expressions in the Config: when: \'{{repl ConfigOptionEquals "a" "b" }}\'' });
      }
      if (found !== undefined) {
        throw new AirgapError('E_MANIFESTS', `${f.path}: a second kind: Config (the first is in ${found.file})`,
          { hint: 'a release has one Config: merge the groups into one' });
      }
      found = parseConfig(doc.contents as YAMLMap, f.path, lines);
    }
  }
  return found;
}

/** A ConfigState for `config` and `values`, whose templates render with this rendering's functions. */
export function configState(config: KotsConfig | undefined, opts: RenderOptions): { state: ConfigState; render: (text: string, file: string, line?: number) => string } {
  const state = new ConfigState(config, opts.values ?? new Map());
  const functions = kotsFunctions({ ...opts.facts, config: state });
  const render = (text: string, file: string, line = 1): string => renderKots(text, {
    file, line, functions, ...(opts.forceBranch !== undefined ? { forceBranch: opts.forceBranch } : {}),
  });
  // The Config's own templates render as they are (a forced branch applies to release files only).
  state.setRenderer((text, where) => renderKots(text, { file: where.file, line: where.line, functions }));
  return { state, render };
}

/** Renders every manifest file of the release and classifies its documents. */
export function renderRelease(files: ReleaseFile[], opts: RenderOptions, config = findConfig(files),
  before?: (state: ConfigState) => void): RenderedRelease {
  const { state, render } = configState(config, opts);
  before?.(state);
  const documents: RenderedDocument[] = [];
  const texts = new Map<string, string>();
  for (const f of files) {
    if (!MANIFEST.test(f.path)) continue;
    const raw = f.content.toString('utf8');
    const text = hasKotsTemplate(raw) ? render(raw, f.path) : raw;
    texts.set(f.path, text);
    documents.push(...splitDocuments(f.path, text));
  }
  return { config: state, documents, texts };
}

/**
 * The documents of a rendered text, each as its own slice of the text (so what is kept stays
 * byte for byte), with what KOTS reads of it: apiVersion, kind, name, the annotations that
 * switch it off. A document left empty by the templates (all of it inside a false `if`) is dropped.
 */
export function splitDocuments(file: string, text: string): RenderedDocument[] {
  const starts: number[] = [];
  for (const token of new Parser().parse(text)) {
    if (token.type === 'document') starts.push(token.offset);
  }
  const out: RenderedDocument[] = [];
  let line = 1;
  let counted = 0;
  starts.forEach((start, i) => {
    const from = i === 0 ? 0 : start;
    const slice = text.slice(from, starts[i + 1] ?? text.length);
    for (let at = text.indexOf('\n', counted); at !== -1 && at < from; at = text.indexOf('\n', at + 1)) line++;
    counted = Math.max(counted, from);
    const doc = parseDocument(slice, { prettyErrors: false, uniqueKeys: false });
    if (doc.errors.length > 0) {
      const e = doc.errors[0]!;
      const at = line + (e.linePos?.[0]?.line ?? 1) - 1;
      throw new AirgapError('E_MANIFESTS', `${file}:${at}: malformed YAML after rendering the KOTS templates: ${e.message.split('\n')[0]}`,
        { hint: 'check the templates of that line render valid YAML (quote values that may be empty or start with a special character)' });
    }
    const contents = doc.contents;
    if (contents === null || (isScalar(contents) && (contents.value === null || contents.value === ''))) return;
    const metadata = child(contents, 'metadata');
    const annotations = child(metadata, 'annotations');
    const apiVersion = str(child(contents, 'apiVersion'));
    const kind = str(child(contents, 'kind'));
    const name = str(child(metadata, 'name'));
    const rendered: RenderedDocument = {
      file, line, text: slice, excluded: isExcluded(annotations, file, line), kotsKind: isKotsKind(apiVersion, kind),
      ...(apiVersion !== undefined ? { apiVersion } : {}), ...(kind !== undefined ? { kind } : {}), ...(name !== undefined ? { name } : {}),
    };
    out.push(rendered);
  });
  return out;
}

/** kots.io/exclude true, or kots.io/when false (pkg/base isExcludedByAnnotation; exclude wins). */
function isExcluded(annotations: unknown, file: string, line: number): boolean {
  if (!isMap(annotations)) return false;
  for (const [key, negate] of [['kots.io/exclude', false], ['kots.io/when', true]] as const) {
    const node = annotations.get(key, true);
    if (node === undefined) continue;
    const v = isScalar(node) ? node.value : undefined;
    const b = typeof v === 'boolean' ? v : typeof v === 'string' ? parseGoBool(v.trim()) : undefined;
    if (b === undefined) {
      throw new AirgapError('E_MANIFESTS', `${file}:${line}: annotation ${key} is ${JSON.stringify(v ?? null)}, not true or false after rendering`,
        { hint: `make ${key} render to "true" or "false"` });
    }
    return negate ? !b : b;
  }
  return false;
}

/**
 * The text of the documents kept of one file: the whole rendered text when none was left out
 * (comments and empty documents stay byte for byte), else the kept documents joined.
 */
export function keptText(kept: RenderedDocument[], all: RenderedDocument[], whole: string | undefined): string {
  return kept.length === all.length && whole !== undefined ? whole : joinDocuments(kept);
}

/** Joins documents of one file back into a text, each as it was written. */
export function joinDocuments(docs: RenderedDocument[]): string {
  return docs.map((d, i) => {
    let t = d.text;
    if (i > 0 && !/^---/.test(t.trimStart())) t = `---\n${t}`;
    if (!t.endsWith('\n')) t += '\n';
    return t;
  }).join('');
}

/** Groups documents by file, keeping file order. */
export function byFile(docs: RenderedDocument[]): Map<string, RenderedDocument[]> {
  const out = new Map<string, RenderedDocument[]>();
  for (const d of docs) {
    const list = out.get(d.file) ?? [];
    list.push(d);
    out.set(d.file, list);
  }
  return out;
}

/** The release rendered for one customer: what is applied, and the KOTS kinds kept for reference. */
export interface InstallRendering {
  config: ConfigState;
  /** Applied documents, one text per release file that keeps any. */
  manifests: ReleaseFile[];
  /** KOTS kinds that are not switched off, under `kots/<path>`. */
  kotsKinds: ReleaseFile[];
  documents: RenderedDocument[];
}

export const KOTS_KINDS_PREFIX = 'kots/';

/** Renders the release with the customer's values: the objects to apply, the KOTS kinds apart. */
export function renderForInstall(files: ReleaseFile[], opts: RenderOptions): InstallRendering {
  const config = findConfig(files);
  // Every item first: a required item without a value, or a broken default, is what to fix first.
  const rendered = renderRelease(files, opts, config, (state) => {
    state.evaluateAll();
    state.refuseMissingRequired();
  });
  const manifests: ReleaseFile[] = [];
  const kotsKinds: ReleaseFile[] = [];
  for (const [path, docs] of byFile(rendered.documents)) {
    const applied = docs.filter((d) => !d.excluded && !d.kotsKind);
    const kinds = docs.filter((d) => !d.excluded && d.kotsKind);
    if (applied.length > 0) manifests.push({ path, content: Buffer.from(keptText(applied, docs, rendered.texts.get(path))) });
    if (kinds.length > 0) kotsKinds.push({ path: `${KOTS_KINDS_PREFIX}${path}`, content: Buffer.from(keptText(kinds, docs, rendered.texts.get(path))) });
  }
  return { config: rendered.config, manifests, kotsKinds, documents: rendered.documents };
}
