/**
 * Go values as the template engine sees them. KOTS templates run Go's text/template, whose
 * behaviour depends on Go types, so the engine keeps the distinctions that change output:
 *
 *   string → string          Go int (any integer kind) → bigint      float64 → number
 *   bool → boolean           nil → null or undefined                 slice → unknown[]
 *   map[string]any → Map<string, unknown>
 *
 * A function that returns a JS number returns a float64 (it prints as Go prints floats:
 * 1000000 → 1e+06); return a bigint for an integer.
 */

export type TemplateFunction = (...args: unknown[]) => unknown;

export type GoMap = Map<string, unknown>;

export type GoKind = 'nil' | 'string' | 'int' | 'float' | 'bool' | 'list' | 'map' | 'other';

export function kindOf(v: unknown): GoKind {
  if (v === null || v === undefined) return 'nil';
  switch (typeof v) {
    case 'string': return 'string';
    case 'bigint': return 'int';
    case 'number': return 'float';
    case 'boolean': return 'bool';
    default:
      if (Array.isArray(v)) return 'list';
      if (v instanceof Map) return 'map';
      return 'other';
  }
}

/** Go's truth for if/with/and/or/not: false, 0, nil and empty strings, lists and maps are false. */
export function isTrue(v: unknown): boolean {
  switch (kindOf(v)) {
    case 'nil': return false;
    case 'string': return (v as string).length > 0;
    case 'int': return (v as bigint) !== 0n;
    case 'float': return (v as number) !== 0;
    case 'bool': return v as boolean;
    case 'list': return (v as unknown[]).length > 0;
    case 'map': return (v as GoMap).size > 0;
    default: return true;
  }
}

/** The Go type name fmt and error messages use for a value. */
export function goTypeName(v: unknown): string {
  switch (kindOf(v)) {
    case 'nil': return '<nil>';
    case 'string': return 'string';
    case 'int': return 'int';
    case 'float': return 'float64';
    case 'bool': return 'bool';
    case 'list': return '[]interface {}';
    case 'map': return 'map[string]interface {}';
    default: return typeof v;
  }
}

/** Wraps an int64 result the way Go's arithmetic does (overflow wraps around). */
export function int64(n: bigint): bigint {
  return BigInt.asIntN(64, n);
}

/**
 * A call with the wrong number or type of arguments. The engine reports it as
 * `wrong number of args for X: …` rather than `error calling X: …`, as Go does.
 */
export class ArgumentError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ArgumentError';
  }
}

/** Parameter types of a Go function, for argument checking and conversion. */
export type Param = 'string' | 'int' | 'float' | 'bool' | 'any' | 'list' | 'map';

type TsOf<P> = P extends 'string' ? string
  : P extends 'int' ? bigint
  : P extends 'float' ? number
  : P extends 'bool' ? boolean
  : P extends 'list' ? unknown[]
  : P extends 'map' ? GoMap
  : unknown;
type TsList<P extends readonly Param[]> = { -readonly [K in keyof P]: TsOf<P[K]> };

/** Converts one argument as Go's template engine would assign it to a parameter of type `p`. */
export function convertArg(fn: string, p: Param, v: unknown): unknown {
  const k = kindOf(v);
  switch (p) {
    case 'any': return v === undefined ? null : v;
    case 'string': if (k === 'string') return v; break;
    case 'bool': if (k === 'bool') return v; break;
    case 'int':
      if (k === 'int') return v;
      // An integral float reaches an int parameter only as a literal like 3.0, which Go accepts.
      if (k === 'float' && Number.isInteger(v)) return BigInt(v as number);
      break;
    case 'float':
      if (k === 'float') return v;
      if (k === 'int') return Number(v);
      break;
    case 'list':
      if (k === 'list') return v;
      if (k === 'nil') return [];
      break;
    case 'map':
      if (k === 'map') return v;
      if (k === 'nil') return new Map<string, unknown>();
      break;
  }
  const want = p === 'float' ? 'float64' : p === 'list' ? '[]interface {}' : p === 'map' ? 'map[string]interface {}' : p;
  if (k === 'nil') throw new ArgumentError(`invalid value for ${fn}; expected ${want}`);
  throw new ArgumentError(`wrong type for value in ${fn}; expected ${want}; got ${goTypeName(v)}`);
}

/** A template function with Go's fixed signature: checks the count and types of its arguments. */
export function goFunc<const P extends readonly Param[]>(
  name: string, params: P, impl: (...args: TsList<P>) => unknown,
): TemplateFunction {
  return (...args: unknown[]) => {
    if (args.length !== params.length) {
      throw new ArgumentError(`wrong number of args for ${name}: want ${params.length} got ${args.length}`);
    }
    return impl(...(args.map((a, i) => convertArg(name, params[i]!, a)) as TsList<P>));
  };
}

/** A variadic Go function: fixed parameters, then any number of `rest`. */
export function goVariadic<const P extends readonly Param[], const R extends Param>(
  name: string, params: P, rest: R, impl: (...args: [...TsList<P>, ...TsOf<R>[]]) => unknown,
): TemplateFunction {
  return (...args: unknown[]) => {
    if (args.length < params.length) {
      throw new ArgumentError(`wrong number of args for ${name}: want at least ${params.length} got ${args.length}`);
    }
    const converted = args.map((a, i) => convertArg(name, i < params.length ? params[i]! : rest, a));
    return impl(...(converted as [...TsList<P>, ...TsOf<R>[]]));
  };
}

/** Byte-wise ordering of strings, as Go sorts map keys. */
export function compareGoStrings(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

/** Keys of a Go map in the order fmt and range visit them. */
export function sortedKeys(m: GoMap): string[] {
  return [...m.keys()].sort(compareGoStrings);
}

/** Go's reflect.DeepEqual for the values templates handle. */
export function deepEqual(a: unknown, b: unknown): boolean {
  const ka = kindOf(a);
  if (ka !== kindOf(b)) return false;
  if (ka === 'list') {
    const x = a as unknown[]; const y = b as unknown[];
    return x.length === y.length && x.every((v, i) => deepEqual(v, y[i]));
  }
  if (ka === 'map') {
    const x = a as GoMap; const y = b as GoMap;
    if (x.size !== y.size) return false;
    for (const [k, v] of x) if (!y.has(k) || !deepEqual(v, y.get(k))) return false;
    return true;
  }
  if (ka === 'nil') return true;
  return a === b;
}

/** Go's len for strings: bytes, not UTF-16 units. */
export function byteLength(s: string): number {
  return Buffer.byteLength(s, 'utf8');
}

/** unicode.IsSpace: the characters Go's strings.TrimSpace and strings.Fields treat as white space. */
export const GO_SPACE = '\\t\\n\\v\\f\\r \\u0085\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000';
const TRIM_SPACE = new RegExp(`^[${GO_SPACE}]+|[${GO_SPACE}]+$`, 'g');

/** strings.TrimSpace. */
export function trimSpace(s: string): string {
  return s.replace(TRIM_SPACE, '');
}

/** strings.Trim(s, cutset): strips leading and trailing runes found in cutset. */
export function trimCutset(s: string, cutset: string): string {
  if (s === '' || cutset === '') return s;
  const cut = new Set(cutset);
  const runes = [...s];
  let a = 0;
  let b = runes.length;
  while (a < b && cut.has(runes[a]!)) a++;
  while (b > a && cut.has(runes[b - 1]!)) b--;
  return runes.slice(a, b).join('');
}

/** strings.Split: an empty separator splits into runes; an empty string gives [""]. */
export function splitGo(s: string, sep: string): string[] {
  return sep === '' ? [...s] : s.split(sep);
}

/**
 * strconv.ParseInt(s, base, 64) → [value, error]. On overflow Go returns the nearest limit
 * along with the error; on a syntax error, 0.
 */
export function parseGoInt(s: string, base: number, bits = 64, unsigned = false): [bigint, string | undefined] {
  let t = s;
  let neg = false;
  if (!unsigned && (t[0] === '+' || t[0] === '-')) { neg = t[0] === '-'; t = t.slice(1); }
  let b = base;
  let underscores = false;
  if (b === 0) {
    b = 10;
    if (t[0] === '0') {
      const p = t[1]?.toLowerCase();
      if (t.length >= 3 && p === 'b') { b = 2; t = t.slice(2); }
      else if (t.length >= 3 && p === 'o') { b = 8; t = t.slice(2); }
      else if (t.length >= 3 && p === 'x') { b = 16; t = t.slice(2); }
      else { b = 8; t = t.slice(1) || '0'; }
    }
    underscores = true;
  } else if (b < 2 || b > 36) {
    return [0n, `invalid base ${base}`];
  }
  if (underscores) {
    if (/^_|__|_$/.test(t)) return [0n, 'invalid syntax'];
    t = t.replace(/_/g, '');
  }
  if (t === '') return [0n, 'invalid syntax'];
  const digits = '0123456789abcdefghijklmnopqrstuvwxyz'.slice(0, b);
  let v = 0n;
  for (const c of t.toLowerCase()) {
    const d = digits.indexOf(c);
    if (d < 0) return [0n, 'invalid syntax'];
    v = v * BigInt(b) + BigInt(d);
  }
  const max = unsigned ? (1n << BigInt(bits)) - 1n : (1n << BigInt(bits - 1)) - 1n;
  const min = unsigned ? 0n : -(1n << BigInt(bits - 1));
  const signedV = neg ? -v : v;
  if (signedV > max) return [max, 'value out of range'];
  if (signedV < min) return [min, 'value out of range'];
  return [signedV, undefined];
}

/** strconv.ParseFloat(s, 64) → [value, error] for decimal forms, inf/infinity and nan. */
export function parseGoFloat(s: string): [number, string | undefined] {
  const t = s.toLowerCase();
  const m = /^([+-]?)(inf|infinity|nan)$/.exec(t);
  if (m) return [m[2] === 'nan' ? NaN : m[1] === '-' ? -Infinity : Infinity, undefined];
  if (/^[+-]?(\d+(_\d+)*\.?(\d+(_\d+)*)?|\.\d+(_\d+)*)(e[+-]?\d+)?$/.test(t) && /\d/.test(t)) {
    const f = Number(t.replace(/_/g, ''));
    return Number.isFinite(f) ? [f, undefined] : [f, 'value out of range'];
  }
  if (/^[+-]?0x[0-9a-f]*\.?[0-9a-f]*p[+-]?\d+$/.test(t)) {
    const h = /^([+-]?)0x([0-9a-f]*)\.?([0-9a-f]*)p([+-]?\d+)$/.exec(t)!;
    const mant = parseInt((h[2] || '0') + (h[3] || ''), 16) / 16 ** (h[3]?.length ?? 0);
    const f = mant * 2 ** Number(h[4]);
    return [h[1] === '-' ? -f : f, undefined];
  }
  return [0, 'invalid syntax'];
}
