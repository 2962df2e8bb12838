import type { Document, LineCounter, YAMLMap } from 'yaml';
import { parseReference, taggedName, type Reference } from '../reference.js';
import type { Finding } from './findings.js';
import { child, forEachStringValue, imageCandidate, str, type ValueContext } from './nodes.js';
import type { FoundImage } from './scan.js';

/**
 * The checks behind the scan's findings that are not about one file's shape: unrendered KOTS
 * syntax, duplicate objects, and image-like strings the bundle will not carry.
 */

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

/** An object's identity as kustomize sees it, and where it is: what the duplicate check keeps of it. */
export interface ObjectSeen { group: string; kind: string; ns: string; name: string; file: string; line: number }

/** The identity of `obj`, or undefined for an object without apiVersion, kind or name. */
export function objectSeen(obj: YAMLMap, file: string, line: number): ObjectSeen | undefined {
  const api = str(child(obj, 'apiVersion'));
  const kind = str(child(obj, 'kind'));
  const name = str(child(child(obj, 'metadata'), 'name'));
  if (api === undefined || kind === undefined || name === undefined) return undefined;
  const group = api.includes('/') ? api.slice(0, api.indexOf('/')) : '';
  // kustomize counts an object without a namespace as one in "default".
  const written = str(child(child(obj, 'metadata'), 'namespace')) ?? '';
  return { group, kind, ns: written === 'default' ? '' : written, name, file, line };
}

/** Two objects with one group, kind, namespace and name: kustomize (and kubectl apply) keep one. */
export function duplicateFindings(objects: ObjectSeen[]): Finding[] {
  const first = new Map<string, ObjectSeen>();
  const out: Finding[] = [];
  for (const o of objects) {
    const { group, kind, ns, name } = o;
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

/** A string value outside any pod spec that looks like an image reference, and where it is. */
export interface ImageLikeString { text: string; file: string; line: number }

/**
 * One document's image-like strings outside pod specs (`imageNodes` are the pod specs' own). Taken
 * document by document, so the scan need not keep parsed documents until every file is read.
 */
export function imageLikeStrings(path: string, doc: Document, lines: LineCounter, imageNodes: Set<unknown>): ImageLikeString[] {
  const out: ImageLikeString[] = [];
  forEachStringValue(doc, imageNodes, (node, obj, _path, context) => {
    // A KOTS Config's defaults are answers, not images: where one feeds an image the scan says so (config-image).
    if (str(child(obj, 'kind')) === 'Config' && str(child(obj, 'apiVersion'))?.startsWith('kots.io/')) return;
    const { text } = imageCandidate(node.value);
    if (looksLikeImage(text, context)) out.push({ text, file: path, line: lines.linePos(node.range?.[0] ?? 0).line });
  });
  return out;
}

/** Warnings for the image-like strings that the bundle does not carry as written. */
export function undeclaredFindings(strings: ImageLikeString[], images: FoundImage[]): Finding[] {
  const declared = new Set(images.map((i) => i.raw));
  const bundled = new Map(images.map((i) => [taggedName(i.ref), i]));
  return strings.filter((s) => !declared.has(s.text)).map(({ text, file, line }): Finding => {
    const same = bundled.get(taggedName(parseReference(text)));
    return same === undefined ? {
      severity: 'warning', code: 'undeclared-image', file, line,
      message: `${text} looks like an image outside any pod spec; it is neither bundled nor rewritten`,
      hint: 'if the application runs it (an operator image, a RELATED_IMAGE_* value), add it to the KOTS Application\'s spec.additionalImages',
    } : {
      severity: 'warning', code: 'undeclared-image', file, line,
      message: `${text} is the bundled image ${same.raw} (${same.file}:${same.line}) written another way; the rewrite replaces exact text only, so this one keeps pointing at its source`,
      hint: `write it as ${same.raw}, or add this spelling to the KOTS Application's spec.additionalImages`,
    };
  });
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
