import { LineCounter } from 'yaml';
import { AirgapError } from '../errors.js';
import { child, forEachObject, str, yamlDocuments } from './nodes.js';

/**
 * Credentials that must never travel in the application's manifests: the license (never in a
 * bundle) and the customer registry's password (only in the pull secret the rewrite generates).
 * A credential is found as written, or base64-encoded at any offset of the encoded value (each of
 * the three byte alignments has its own fixed inner text), also when the encoding is wrapped
 * over lines, and inside base64 that is itself base64-encoded (a docker config's `auth` in a
 * Secret's `data`). No message ever quotes the credential.
 */

export interface FileContent {
  path: string;
  content: Buffer;
}

export interface Found {
  /** 1-based line of the match (of the outer base64 value when nested). */
  line: number;
  how: 'as written' | 'base64-encoded';
}

const B64_CHAR = /[A-Za-z0-9+/=_-]/;
const ALNUM = /[A-Za-z0-9]/;
/** A base64 value worth decoding: long enough to hold a needle. */
const B64_RUN = /[A-Za-z0-9+/_-]{12,}={0,2}/g;
/** Shorter base64 needles would match ordinary text by chance. */
const MIN_NEEDLE = 8;
const NEST = 2;
/** Shorter registry passwords are not searched for (see refusePasswordInManifests). */
export const MIN_PASSWORD = 8;

function lineAt(text: string, pos: number): number {
  let n = 1;
  for (let i = text.indexOf('\n'); i !== -1 && i < pos; i = text.indexOf('\n', i + 1)) n++;
  return n;
}

/** The offset in `text` of the character at `index` of `text` without its whitespace. */
function originalOffset(text: string, index: number): number {
  let kept = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === ' ' || c === '\t' || c === '\r' || c === '\n') continue;
    if (kept === index) return i;
    kept++;
  }
  return text.length;
}

/** The first position of `needle` in `text` whose neighbours are not `boundary` characters, or -1. */
function indexOfBounded(text: string, needle: string, boundary: RegExp | undefined): number {
  for (let i = text.indexOf(needle); i !== -1; i = text.indexOf(needle, i + 1)) {
    if (boundary === undefined) return i;
    const before = text[i - 1] ?? '';
    const after = text[i + needle.length] ?? '';
    if (!boundary.test(before) && !boundary.test(after)) return i;
  }
  return -1;
}

interface Needles {
  raw: string;
  /** Must not sit inside a longer word: a short password must not match inside "latest". */
  rawBoundary: RegExp | undefined;
  /** The secret's inner base64 text at each byte alignment (standard and URL-safe alphabets). */
  inner: string[];
  /** The whole value encoded on its own, with padding, as a whole base64 token. */
  whole: string[];
}

function needlesOf(secret: string): Needles {
  const bytes = Buffer.from(secret, 'utf8');
  const inner: string[] = [];
  for (let s = 0; s < 3; s++) {
    const full = Math.floor((bytes.length - s) / 3) * 3;
    if (full <= 0) continue;
    const b64 = bytes.subarray(s, s + full).toString('base64');
    if (b64.length < MIN_NEEDLE) continue;
    inner.push(b64, bytes.subarray(s, s + full).toString('base64url'));
  }
  const std = bytes.toString('base64');
  const edgesAlnum = ALNUM.test(secret[0] ?? '') || ALNUM.test(secret[secret.length - 1] ?? '');
  return {
    raw: secret,
    rawBoundary: edgesAlnum ? ALNUM : undefined,
    inner: [...new Set(inner)],
    whole: [...new Set([std, bytes.toString('base64url')])],
  };
}

/** Where `secret` appears in `text`, or undefined. */
export function findSecret(text: string, secret: string): Found | undefined {
  if (secret === '') return undefined;
  return search(text, needlesOf(secret), NEST);
}

function search(text: string, n: Needles, depth: number): Found | undefined {
  const raw = indexOfBounded(text, n.raw, n.rawBoundary);
  if (raw !== -1) return { line: lineAt(text, raw), how: 'as written' };
  for (const needle of n.inner) {
    const i = text.indexOf(needle);
    if (i !== -1) return { line: lineAt(text, i), how: 'base64-encoded' };
  }
  for (const needle of n.whole) {
    const i = indexOfBounded(text, needle, B64_CHAR);
    if (i !== -1) return { line: lineAt(text, i), how: 'base64-encoded' };
  }
  // Base64 wrapped over lines (a block scalar, `base64` output at 76 columns).
  const compact = text.replace(/[ \t\r\n]+/g, '');
  if (compact.length !== text.length) {
    for (const needle of n.inner) {
      const i = compact.indexOf(needle);
      if (i !== -1) return { line: lineAt(text, originalOffset(text, i)), how: 'base64-encoded' };
    }
  }
  if (depth === 0) return undefined;
  for (const m of text.matchAll(B64_RUN)) {
    const decoded = Buffer.from(m[0], 'base64').toString('utf8');
    if (search(decoded, n, depth - 1) !== undefined) return { line: lineAt(text, m.index), how: 'base64-encoded' };
  }
  return undefined;
}

/** Lines of `kind: License` objects of KOTS (apiVersion kots.io/…), in any document or List. */
export function licenseDocuments(text: string): number[] {
  if (!/\bLicense\b/.test(text)) return [];
  const lines = new LineCounter();
  const out: number[] = [];
  for (const doc of yamlDocuments(text, lines)) {
    if (doc.errors.length > 0) continue;
    forEachObject(doc.contents, (obj) => {
      if (str(child(obj, 'kind')) !== 'License') return;
      if (!(str(child(obj, 'apiVersion')) ?? '').startsWith('kots.io/')) return;
      out.push(lines.linePos(obj.range?.[0] ?? 0).line);
    });
  }
  return out;
}

/**
 * Refuses manifests that would carry the license into the bundle: a KOTS License document, or
 * any file holding the license ID. Every such file is named in the one error.
 */
export function refuseLicenseInManifests(files: FileContent[], licenseId: string | undefined): void {
  const found: string[] = [];
  for (const f of files) {
    const text = f.content.toString('utf8');
    const docs = licenseDocuments(text);
    if (docs.length > 0) {
      found.push(`${f.path}:${docs[0]} (a kind: License document)`);
      continue;
    }
    const hit = licenseId !== undefined ? findSecret(text, licenseId) : undefined;
    if (hit) found.push(`${f.path}:${hit.line} (the license ID, ${hit.how})`);
  }
  if (found.length === 0) return;
  throw new AirgapError('E_MANIFESTS',
    `the license must never ship in a bundle, and ${found.length === 1 ? 'this file' : 'these files'} under --manifests would carry it: ${found.join(', ')}`,
    { hint: 'move the file out of the --manifests directory (pass the license with --license only; the installer creates what it needs from it)' });
}

/**
 * Refuses, at rewrite, application manifests that hold the customer registry's password: it
 * belongs only in the pull secret the rewrite generates.
 */
export function refusePasswordInManifests(files: FileContent[], password: string): void {
  // A short password (`admin`) has no distinctive spelling: found in `user: admin`, it would
  // refuse a rewrite for a coincidence the customer can do nothing about.
  if (password.length < MIN_PASSWORD) return;
  const found: string[] = [];
  for (const f of files) {
    const hit = findSecret(f.content.toString('utf8'), password);
    if (hit) found.push(`${f.path}:${hit.line} (${hit.how})`);
  }
  if (found.length === 0) return;
  throw new AirgapError('E_MANIFESTS',
    `the password given for the customer registry appears in the bundle's manifests, where it does not belong (only in the generated pull secret): ${found.join(', ')}`,
    { hint: 'nothing was written; use a registry account whose password is not in the application, or have the bundle rebuilt without it' });
}
