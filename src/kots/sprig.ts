/**
 * The sprig v3 functions (Masterminds/sprig TxtFuncMap, which KOTS's static context starts from)
 * that release files use. Argument order is sprig's: the value a pipeline passes comes last
 * (`"x" | default "y"`, `"a-b" | replace "-" "_"`). Functions that need a clock, the network, the
 * environment or certificates (now, date, env, getHostByName, genCA, semver…) are left out.
 */
import { createHash, randomInt, randomUUID } from 'node:crypto';
import { posix } from 'node:path';
import { formatFloat, formatValue, quoteString } from './fmt.js';
import {
  byteLength, compareGoStrings, deepEqual, goFunc, goTypeName, goVariadic, GO_SPACE, int64, isTrue,
  kindOf, parseGoFloat, parseGoInt, sortedKeys, splitGo, trimCutset, trimSpace,
  type GoMap, type TemplateFunction,
} from './values.js';

// ---------------------------------------------------------------- conversions (spf13/cast)

/** sprig's strval: strings as they are, anything else as %v. */
export function strval(v: unknown): string {
  return typeof v === 'string' ? v : formatValue(v);
}

/** cast.ToInt64: ints, truncated floats, strings in Go syntax (base prefixes, "3.0"), bools; else 0. */
export function toInt64(v: unknown): bigint {
  switch (kindOf(v)) {
    case 'int': return v as bigint;
    case 'float': return Number.isFinite(v) ? int64(BigInt(Math.trunc(v as number))) : 0n;
    case 'bool': return v ? 1n : 0n;
    case 'string': {
      const s = (v as string).replace(/^(-?\d+)\.0*$/, '$1'); // cast's trimZeroDecimal
      const [n, err] = parseGoInt(s, 0);
      return err ? 0n : n;
    }
    default: return 0n;
  }
}

/** cast.ToFloat64. */
export function toFloat64(v: unknown): number {
  switch (kindOf(v)) {
    case 'int': return Number(v);
    case 'float': return v as number;
    case 'bool': return v ? 1 : 0;
    case 'string': { const [f, err] = parseGoFloat(v as string); return err ? 0 : f; }
    default: return 0;
  }
}

/** sprig's strslice: a list's non-nil elements as strings; nil → []; anything else → [strval]. */
function strslice(v: unknown): string[] {
  if (Array.isArray(v)) return v.filter((e) => kindOf(e) !== 'nil').map(strval);
  if (kindOf(v) === 'nil') return [];
  return [strval(v)];
}

/** sprig's empty: nil, false, 0, and empty strings, lists and maps. */
function empty(v: unknown): boolean {
  return !isTrue(v);
}

function asList(fn: string, v: unknown): unknown[] {
  if (Array.isArray(v)) return v;
  throw new Error(kindOf(v) === 'nil' ? `${fn} of nil` : `Cannot ${fn} on type ${goKind(v)}`);
}

/** reflect.Kind names, as sprig's kindOf and its error messages print them. */
function goKind(v: unknown): string {
  switch (kindOf(v)) {
    case 'nil': return 'invalid';
    case 'int': return 'int';
    case 'float': return 'float64';
    case 'list': return 'slice';
    case 'map': return 'map';
    default: return kindOf(v);
  }
}

// ---------------------------------------------------------------- strings

const GO_SPACE_RE = new RegExp(`[${GO_SPACE}]`);

/** strings.Title's word boundaries: anything but ASCII alphanumerics, '_', letters and digits … that is a space. */
function isSeparator(ch: string): boolean {
  if (ch.codePointAt(0)! <= 0x7f) return !/[0-9A-Za-z_]/.test(ch);
  if (/[\p{L}\p{Nd}]/u.test(ch)) return false;
  return GO_SPACE_RE.test(ch);
}

/** strings.Title: upper-cases the first letter of each word. */
function title(s: string): string {
  let prev = ' ';
  let out = '';
  for (const ch of s) {
    out += isSeparator(prev) ? ch.toUpperCase() : ch;
    prev = ch;
  }
  return out;
}

/** Go's s[a:b] on bytes; panics (an error here) out of bounds, as Go does. */
function byteSlice(s: string, a: number, b?: number): string {
  const buf = Buffer.from(s, 'utf8');
  const end = b ?? buf.length;
  if (a < 0 || end > buf.length || a > end) {
    throw new Error(`runtime error: slice bounds out of range [${a}:${end}] with length ${buf.length}`);
  }
  return buf.subarray(a, end).toString('utf8');
}

function trunc(c: bigint, s: string): string {
  const n = Number(c);
  const len = byteLength(s);
  if (n < 0 && len + n > 0) return byteSlice(s, len + n);
  if (n >= 0 && len > n) return byteSlice(s, 0, n);
  return s;
}

function substr(start: bigint, end: bigint, s: string): string {
  const a = Number(start);
  const b = Number(end);
  if (a < 0) return byteSlice(s, 0, b);
  if (b < 0 || b > byteLength(s)) return byteSlice(s, a);
  return byteSlice(s, a, b);
}

function indent(spaces: bigint, v: string): string {
  const pad = ' '.repeat(Math.max(0, Number(spaces)));
  return pad + v.replaceAll('\n', '\n' + pad);
}

function repeat(count: bigint, s: string): string {
  if (count < 0n) throw new Error('strings: negative Repeat count');
  return s.repeat(Number(count));
}

const NOT_SPACE = new RegExp(`[${GO_SPACE}]`, 'g');

/** base64.StdEncoding.DecodeString: strict padding; line breaks are ignored. */
export function base64DecodeGo(v: string): { ok: true; text: string } | { ok: false; error: string } {
  const s = v.replace(/[\r\n]/g, '');
  const bad = /[^A-Za-z0-9+/=]/.exec(s);
  if (bad) return { ok: false, error: `illegal base64 data at input byte ${bad.index}` };
  const pad = s.indexOf('=');
  if (s.length % 4 !== 0 || (pad >= 0 && (pad < s.length - 2 || !/^=*$/.test(s.slice(pad))))) {
    const at = pad >= 0 ? pad : s.length - (s.length % 4);
    return { ok: false, error: `illegal base64 data at input byte ${at}` };
  }
  return { ok: true, text: Buffer.from(s, 'base64').toString('utf8') };
}

function randomFrom(chars: string, count: bigint): string {
  let out = '';
  for (let i = 0n; i < count; i++) out += chars[randomInt(chars.length)];
  return out;
}

const ALPHA = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
const DIGITS = '0123456789';
const ASCII = Array.from({ length: 95 }, (_, i) => String.fromCharCode(32 + i)).join('');

// ---------------------------------------------------------------- JSON (encoding/json)

function jsonString(s: string, escapeHTML: boolean): string {
  let out = '"';
  for (const ch of s) {
    const cp = ch.codePointAt(0)!;
    if (ch === '"' || ch === '\\') out += '\\' + ch;
    else if (ch === '\n') out += '\\n';
    else if (ch === '\r') out += '\\r';
    else if (ch === '\t') out += '\\t';
    else if (ch === '\b') out += '\\b';
    else if (ch === '\f') out += '\\f';
    else if (cp < 0x20 || (escapeHTML && (ch === '<' || ch === '>' || ch === '&')) || cp === 0x2028 || cp === 0x2029) {
      out += '\\u' + cp.toString(16).padStart(4, '0');
    } else if (cp >= 0xd800 && cp <= 0xdfff) out += '\\ufffd';
    else out += ch;
  }
  return out + '"';
}

/** json.Marshal / MarshalIndent(v, "", indent). Throws on NaN and infinities, as Go does. */
export function toGoJson(v: unknown, opts: { indent?: string; escapeHTML: boolean }, depth = 0): string {
  const nl = opts.indent === undefined ? '' : '\n' + opts.indent.repeat(depth + 1);
  const close = opts.indent === undefined ? '' : '\n' + opts.indent.repeat(depth);
  const colon = opts.indent === undefined ? ':' : ': ';
  switch (kindOf(v)) {
    case 'nil': return 'null';
    case 'string': return jsonString(v as string, opts.escapeHTML);
    case 'int': return (v as bigint).toString();
    case 'float':
      if (!Number.isFinite(v)) throw new Error(`json: unsupported value: ${formatFloat(v as number, 'g', -1)}`);
      return String(v);
    case 'bool': return String(v);
    case 'list': {
      const items = v as unknown[];
      if (items.length === 0) return '[]';
      return '[' + items.map((e) => nl + toGoJson(e, opts, depth + 1)).join(',') + close + ']';
    }
    case 'map': {
      const m = v as GoMap;
      if (m.size === 0) return '{}';
      return '{' + sortedKeys(m).map((k) => nl + jsonString(k, opts.escapeHTML) + colon + toGoJson(m.get(k), opts, depth + 1)).join(',') + close + '}';
    }
    default: throw new Error(`json: unsupported type: ${typeof v}`);
  }
}

/** JSON text to template values: objects → Map, numbers → float64, as Go unmarshals into interface{}. */
export function fromGoJson(text: string): unknown {
  const convert = (x: unknown): unknown => {
    if (Array.isArray(x)) return x.map(convert);
    if (x !== null && typeof x === 'object') return new Map(Object.entries(x).map(([k, e]) => [k, convert(e)]));
    return x;
  };
  return convert(JSON.parse(text));
}

// ---------------------------------------------------------------- regular expressions

/** Go RE2 syntax to a JS RegExp, for the common subset: (?P<name>…) groups and leading (?i)/(?s)/(?m) flags. */
function goRegExp(re: string, global: boolean): RegExp {
  let flags = 'u' + (global ? 'g' : '');
  let src = re;
  const lead = /^\(\?([ims]+)\)/.exec(src);
  if (lead) { flags += lead[1]!; src = src.slice(lead[0].length); }
  src = src.replace(/\(\?P</g, '(?<');
  try {
    return new RegExp(src, flags);
  } catch (e) {
    throw new Error(`regexp: Compile(${quoteString(re)}): ${e instanceof Error ? e.message : String(e)}`);
  }
}

/** Regexp.Expand's template: $1, ${1}, $name, ${name}, $$. */
function expand(template: string, m: RegExpExecArray): string {
  return template.replace(/\$(\$|\{([A-Za-z0-9_]+)\}|([A-Za-z0-9_]+))/g, (_, all: string, braced?: string, bare?: string) => {
    if (all === '$') return '$';
    const name = braced ?? bare!;
    const v = /^\d+$/.test(name) ? m[Number(name)] : m.groups?.[name];
    return v ?? '';
  });
}

function findAll(re: string, s: string, n: bigint): RegExpExecArray[] {
  const out: RegExpExecArray[] = [];
  if (n === 0n) return out;
  for (const m of s.matchAll(goRegExp(re, true))) {
    out.push(m);
    if (n > 0n && BigInt(out.length) >= n) break;
  }
  return out;
}

function regexSplit(re: string, s: string, n: bigint): string[] {
  if (n === 0n) return [];
  if (re.length > 0 && s.length === 0) return [''];
  const parts: string[] = [];
  let beg = 0;
  let end = 0;
  for (const m of findAll(re, s, n)) {
    if (n > 0n && BigInt(parts.length) === n - 1n) break;
    end = m.index;
    const mEnd = m.index + m[0].length;
    if (mEnd !== 0) parts.push(s.slice(beg, end));
    beg = mEnd;
  }
  if (end !== s.length) parts.push(s.slice(beg));
  return parts;
}

// ---------------------------------------------------------------- the map

function splitToMap(parts: string[]): GoMap {
  return new Map(parts.map((p, i) => [`_${i}`, p]));
}

function until(start: bigint, stop: bigint, step: bigint): bigint[] {
  const v: bigint[] = [];
  if (stop < start) {
    if (step >= 0n) return v;
    for (let i = start; i > stop; i += step) v.push(i);
    return v;
  }
  if (step <= 0n) return v;
  for (let i = start; i < stop; i += step) v.push(i);
  return v;
}

function intDiv(a: bigint, b: bigint, op: (x: bigint, y: bigint) => bigint): bigint {
  if (b === 0n) throw new Error('runtime error: integer divide by zero');
  return int64(op(a, b));
}

export function sprigFunctions(): Map<string, TemplateFunction> {
  const f = new Map<string, TemplateFunction>();
  const def = (name: string, fn: TemplateFunction): void => { f.set(name, fn); };

  def('hello', goFunc('hello', [], () => 'Hello!'));
  // strings
  def('trunc', goFunc('trunc', ['int', 'string'], trunc));
  def('trim', goFunc('trim', ['string'], trimSpace));
  def('upper', goFunc('upper', ['string'], (s) => s.toUpperCase()));
  def('lower', goFunc('lower', ['string'], (s) => s.toLowerCase()));
  def('title', goFunc('title', ['string'], title));
  def('untitle', goFunc('untitle', ['string'], (s) => (s ? [...s][0]!.toLowerCase() + [...s].slice(1).join('') : s)));
  def('substr', goFunc('substr', ['int', 'int', 'string'], substr));
  def('repeat', goFunc('repeat', ['int', 'string'], repeat));
  def('trimall', goFunc('trimall', ['string', 'string'], (a, b) => trimCutset(b, a)));
  def('trimAll', goFunc('trimAll', ['string', 'string'], (a, b) => trimCutset(b, a)));
  def('trimSuffix', goFunc('trimSuffix', ['string', 'string'], (a, b) => (a !== '' && b.endsWith(a) ? b.slice(0, b.length - a.length) : b)));
  def('trimPrefix', goFunc('trimPrefix', ['string', 'string'], (a, b) => (b.startsWith(a) ? b.slice(a.length) : b)));
  def('nospace', goFunc('nospace', ['string'], (s) => s.replace(NOT_SPACE, '')));
  def('randAlphaNum', goFunc('randAlphaNum', ['int'], (n) => randomFrom(ALPHA + DIGITS, n)));
  def('randAlpha', goFunc('randAlpha', ['int'], (n) => randomFrom(ALPHA, n)));
  def('randNumeric', goFunc('randNumeric', ['int'], (n) => randomFrom(DIGITS, n)));
  def('randAscii', goFunc('randAscii', ['int'], (n) => randomFrom(ASCII, n)));
  def('contains', goFunc('contains', ['string', 'string'], (sub, s) => s.includes(sub)));
  def('hasPrefix', goFunc('hasPrefix', ['string', 'string'], (p, s) => s.startsWith(p)));
  def('hasSuffix', goFunc('hasSuffix', ['string', 'string'], (p, s) => s.endsWith(p)));
  def('quote', goVariadic('quote', [], 'any', (...a) => a.filter((x) => kindOf(x) !== 'nil').map((x) => quoteString(strval(x))).join(' ')));
  def('squote', goVariadic('squote', [], 'any', (...a) => a.filter((x) => kindOf(x) !== 'nil').map((x) => `'${formatValue(x)}'`).join(' ')));
  def('cat', goVariadic('cat', [], 'any', (...a) => a.filter((x) => kindOf(x) !== 'nil').map(formatValue).join(' ')));
  def('indent', goFunc('indent', ['int', 'string'], indent));
  def('nindent', goFunc('nindent', ['int', 'string'], (n, v) => '\n' + indent(n, v)));
  def('replace', goFunc('replace', ['string', 'string', 'string'], (o, n, src) => replaceAllGo(src, o, n)));
  def('plural', goFunc('plural', ['string', 'string', 'int'], (one, many, c) => (c === 1n ? one : many)));
  def('sha1sum', goFunc('sha1sum', ['string'], (s) => createHash('sha1').update(s, 'utf8').digest('hex')));
  def('sha256sum', goFunc('sha256sum', ['string'], (s) => createHash('sha256').update(s, 'utf8').digest('hex')));
  def('sha512sum', goFunc('sha512sum', ['string'], (s) => createHash('sha512').update(s, 'utf8').digest('hex')));
  def('toString', goFunc('toString', ['any'], strval));
  def('atoi', goFunc('atoi', ['string'], (s) => { const [n, err] = parseGoInt(s, 10); return err ? 0n : n; }));
  def('int64', goFunc('int64', ['any'], toInt64));
  def('int', goFunc('int', ['any'], toInt64));
  def('float64', goFunc('float64', ['any'], toFloat64));
  def('split', goFunc('split', ['string', 'string'], (sep, s) => splitToMap(splitGo(s, sep))));
  def('splitList', goFunc('splitList', ['string', 'string'], (sep, s) => splitGo(s, sep)));
  def('splitn', goFunc('splitn', ['string', 'int', 'string'], (sep, n, s) => splitToMap(splitN(s, sep, Number(n)))));
  def('toStrings', goFunc('toStrings', ['any'], strslice));
  def('until', goFunc('until', ['int'], (n) => until(0n, n, n < 0n ? -1n : 1n)));
  def('untilStep', goFunc('untilStep', ['int', 'int', 'int'], until));
  // arithmetic: sprig's is int64 throughout
  def('add1', goFunc('add1', ['any'], (a) => int64(toInt64(a) + 1n)));
  def('add', goVariadic('add', [], 'any', (...a) => a.reduce<bigint>((s, x) => int64(s + toInt64(x)), 0n)));
  def('sub', goFunc('sub', ['any', 'any'], (a, b) => int64(toInt64(a) - toInt64(b))));
  def('div', goFunc('div', ['any', 'any'], (a, b) => intDiv(toInt64(a), toInt64(b), (x, y) => x / y)));
  def('mod', goFunc('mod', ['any', 'any'], (a, b) => intDiv(toInt64(a), toInt64(b), (x, y) => x % y)));
  def('mul', goVariadic('mul', ['any'], 'any', (a, ...r) => r.reduce<bigint>((s, x) => int64(s * toInt64(x)), toInt64(a))));
  const max = goVariadic('max', ['any'], 'any', (a, ...r) => r.map(toInt64).reduce((m, x) => (x > m ? x : m), toInt64(a)));
  def('max', max);
  def('biggest', max);
  def('min', goVariadic('min', ['any'], 'any', (a, ...r) => r.map(toInt64).reduce((m, x) => (x < m ? x : m), toInt64(a))));
  def('maxf', goVariadic('maxf', ['any'], 'any', (a, ...r) => r.map(toFloat64).reduce((m, x) => Math.max(m, x), toFloat64(a))));
  def('minf', goVariadic('minf', ['any'], 'any', (a, ...r) => r.map(toFloat64).reduce((m, x) => Math.min(m, x), toFloat64(a))));
  def('floor', goFunc('floor', ['any'], (a) => Math.floor(toFloat64(a))));
  def('ceil', goFunc('ceil', ['any'], (a) => Math.ceil(toFloat64(a))));
  // lists and strings of lists
  def('join', goFunc('join', ['string', 'any'], (sep, v) => strslice(v).join(sep)));
  def('sortAlpha', goFunc('sortAlpha', ['any'], (v) => (Array.isArray(v) ? strslice(v).sort(compareGoStrings) : [strval(v)])));
  // defaults
  def('default', goVariadic('default', ['any'], 'any', (d, ...given) => (given.length === 0 || empty(given[0]) ? d : given[0])));
  def('empty', goFunc('empty', ['any'], empty));
  def('coalesce', goVariadic('coalesce', [], 'any', (...v) => v.find((x) => !empty(x)) ?? null));
  def('all', goVariadic('all', [], 'any', (...v) => v.every((x) => !empty(x))));
  def('any', goVariadic('any', [], 'any', (...v) => v.some((x) => !empty(x))));
  def('compact', goFunc('compact', ['any'], (l) => asList('compact', l).filter((x) => !empty(x))));
  def('ternary', goFunc('ternary', ['any', 'any', 'bool'], (t, fv, c) => (c ? t : fv)));
  def('fromJson', goFunc('fromJson', ['string'], (s) => { try { return fromGoJson(s); } catch { return null; } }));
  def('toJson', goFunc('toJson', ['any'], (v) => { try { return toGoJson(v, { escapeHTML: true }); } catch { return ''; } }));
  def('toPrettyJson', goFunc('toPrettyJson', ['any'], (v) => { try { return toGoJson(v, { indent: '  ', escapeHTML: true }); } catch { return ''; } }));
  def('toRawJson', goFunc('toRawJson', ['any'], (v) => toGoJson(v, { escapeHTML: false })));
  // encoding
  def('b64enc', goFunc('b64enc', ['string'], (s) => Buffer.from(s, 'utf8').toString('base64')));
  def('b64dec', goFunc('b64dec', ['string'], (s) => { const r = base64DecodeGo(s); return r.ok ? r.text : r.error; }));
  // data structures
  const list = goVariadic('list', [], 'any', (...v) => v);
  def('list', list);
  def('tuple', list);
  def('dict', goVariadic('dict', [], 'any', (...v) => {
    const m: GoMap = new Map();
    for (let i = 0; i < v.length; i += 2) m.set(strval(v[i]), i + 1 < v.length ? v[i + 1] : '');
    return m;
  }));
  def('get', goFunc('get', ['map', 'string'], (d, k) => (d.has(k) ? d.get(k) : '')));
  def('set', goFunc('set', ['map', 'string', 'any'], (d, k, v) => d.set(k, v)));
  def('unset', goFunc('unset', ['map', 'string'], (d, k) => { d.delete(k); return d; }));
  def('hasKey', goFunc('hasKey', ['map', 'string'], (d, k) => d.has(k)));
  def('pluck', goVariadic('pluck', ['string'], 'map', (k, ...ds) => ds.filter((d) => d.has(k)).map((d) => d.get(k))));
  def('keys', goVariadic('keys', [], 'map', (...ds) => ds.flatMap((d) => [...d.keys()])));
  def('pick', goVariadic('pick', ['map'], 'string', (d, ...ks) => new Map(ks.filter((k) => d.has(k)).map((k) => [k, d.get(k)]))));
  def('omit', goVariadic('omit', ['map'], 'string', (d, ...ks) => new Map([...d].filter(([k]) => !ks.includes(k)))));
  def('values', goFunc('values', ['map'], (d) => [...d.values()]));
  const push = goFunc('append', ['any', 'any'], (l, v) => [...asList('push', l), v]);
  def('append', push);
  def('push', push);
  def('prepend', goFunc('prepend', ['any', 'any'], (l, v) => [v, ...asList('prepend', l)]));
  def('first', goFunc('first', ['any'], (l) => asList('find first', l)[0] ?? null));
  def('last', goFunc('last', ['any'], (l) => { const a = asList('find last', l); return a.length ? a[a.length - 1] : null; }));
  def('rest', goFunc('rest', ['any'], (l) => { const a = asList('find rest', l); return a.length ? a.slice(1) : null; }));
  def('initial', goFunc('initial', ['any'], (l) => { const a = asList('find initial', l); return a.length ? a.slice(0, -1) : null; }));
  def('reverse', goFunc('reverse', ['any'], (l) => [...asList('find reverse', l)].reverse()));
  def('uniq', goFunc('uniq', ['any'], (l) => asList('find uniq', l).filter((x, i, a) => a.findIndex((y) => deepEqual(x, y)) === i)));
  def('without', goVariadic('without', ['any'], 'any', (l, ...omit) => asList('find without', l).filter((x) => !omit.some((o) => deepEqual(o, x)))));
  def('has', goFunc('has', ['any', 'any'], (needle, hay) => (kindOf(hay) === 'nil' ? false : asList('find has', hay).some((x) => deepEqual(needle, x)))));
  def('concat', goVariadic('concat', [], 'any', (...ls) => ls.flatMap((l) => asList('concat', l))));
  def('slice', goVariadic('slice', ['any'], 'any', (l, ...idx) => {
    const a = asList('slice', l);
    if (a.length === 0) return null;
    const start = idx.length > 0 ? Number(toInt64(idx[0])) : 0;
    const end = idx.length > 1 ? Number(toInt64(idx[1])) : a.length;
    if (start < 0 || end > a.length || start > end) throw new Error(`reflect: slice index out of range`);
    return a.slice(start, end);
  }));
  def('dig', goVariadic('dig', [], 'any', (...args) => {
    if (args.length < 3) throw new Error('dig needs at least three arguments');
    const dict = args[args.length - 1];
    const fallback = args[args.length - 2];
    let cur: unknown = dict;
    for (const k of args.slice(0, -2)) {
      if (!(cur instanceof Map) || !cur.has(strval(k))) return fallback;
      cur = cur.get(strval(k));
    }
    return cur;
  }));
  def('uuidv4', goFunc('uuidv4', [], () => randomUUID()));
  def('fail', goFunc('fail', ['string'], (msg) => { throw new Error(msg); }));
  // regular expressions (RE2 syntax, evaluated with JS RegExp: the common subset agrees)
  def('regexMatch', goFunc('regexMatch', ['string', 'string'], (re, s) => { try { return goRegExp(re, false).test(s); } catch { return false; } }));
  def('regexFind', goFunc('regexFind', ['string', 'string'], (re, s) => goRegExp(re, false).exec(s)?.[0] ?? ''));
  def('regexFindAll', goFunc('regexFindAll', ['string', 'string', 'int'], (re, s, n) => findAll(re, s, n).map((m) => m[0])));
  def('regexReplaceAll', goFunc('regexReplaceAll', ['string', 'string', 'string'], (re, s, r) => s.replace(goRegExp(re, true), (...m) => expand(r, toExec(m)))));
  def('regexReplaceAllLiteral', goFunc('regexReplaceAllLiteral', ['string', 'string', 'string'], (re, s, r) => s.replace(goRegExp(re, true), () => r)));
  def('regexSplit', goFunc('regexSplit', ['string', 'string', 'int'], regexSplit));
  // paths
  def('base', goFunc('base', ['string'], (p) => (p === '' ? '.' : posix.basename(p.replace(/\/+$/, '')) || '/')));
  def('dir', goFunc('dir', ['string'], (p) => posix.dirname(p)));
  def('ext', goFunc('ext', ['string'], (p) => posix.extname(p)));
  def('clean', goFunc('clean', ['string'], (p) => (p === '' ? '.' : posix.normalize(p).replace(/(.)\/$/, '$1'))));
  def('isAbs', goFunc('isAbs', ['string'], (p) => p.startsWith('/')));
  // reflection
  def('kindOf', goFunc('kindOf', ['any'], goKind));
  def('kindIs', goFunc('kindIs', ['string', 'any'], (k, v) => goKind(v) === k));
  def('typeOf', goFunc('typeOf', ['any'], goTypeName));
  def('typeIs', goFunc('typeIs', ['string', 'any'], (t, v) => goTypeName(v) === t));
  def('deepEqual', goFunc('deepEqual', ['any', 'any'], deepEqual));
  return f;
}

/** The arguments of a String.replace callback, back as a match with groups. */
function toExec(m: unknown[]): RegExpExecArray {
  const last = m[m.length - 1];
  const hasGroups = typeof last === 'object' && last !== null;
  const groups = hasGroups ? (last as Record<string, string>) : undefined;
  const caps = m.slice(0, hasGroups ? -3 : -2) as string[];
  const arr = Object.assign([...caps], { index: 0, input: '', groups }) as unknown as RegExpExecArray;
  return arr;
}

/** strings.Replace(s, old, new, -1): an empty old inserts new around every rune. */
function replaceAllGo(s: string, old: string, repl: string): string {
  if (old === '') return repl + [...s].join(repl) + (s === '' ? '' : repl);
  return s.split(old).join(repl);
}

/** strings.SplitN. */
function splitN(s: string, sep: string, n: number): string[] {
  if (n === 0) return [];
  const all = splitGo(s, sep);
  if (n < 0 || all.length <= n) return all;
  return [...all.slice(0, n - 1), all.slice(n - 1).join(sep)];
}
