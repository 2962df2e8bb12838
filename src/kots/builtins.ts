/**
 * Go text/template's predefined functions. `and` and `or` short-circuit, so the evaluator runs
 * them itself; they appear here so that parsing knows them. `call` is absent: templates here
 * never hold function values.
 */
import { sprint, sprintf, sprintln } from './fmt.js';
import {
  byteLength, compareGoStrings, goFunc, goTypeName, goVariadic, isTrue, kindOf,
  type GoMap, type TemplateFunction,
} from './values.js';


type BasicKind = 'bool' | 'int' | 'float' | 'string' | 'nil' | 'other';

function basicKind(v: unknown): BasicKind {
  const k = kindOf(v);
  return k === 'list' || k === 'map' ? 'other' : k;
}

function eq(a: unknown, ...rest: unknown[]): boolean {
  if (rest.length === 0) throw new Error('missing argument for comparison');
  const ka = basicKind(a);
  for (const b of rest) {
    const kb = basicKind(b);
    if (ka === 'nil' || kb === 'nil') {
      if (ka === kb) return true;
      continue;
    }
    if (ka !== kb) throw new Error(`incompatible types for comparison: ${goTypeName(a)} and ${goTypeName(b)}`);
    if (ka === 'other') throw new Error(`non-comparable type ${goTypeName(a)}`);
    if (a === b) return true;
  }
  return false;
}

function lt(a: unknown, b: unknown): boolean {
  const ka = basicKind(a);
  const kb = basicKind(b);
  if (ka === 'bool' || ka === 'other' || ka === 'nil') throw new Error(`invalid type for comparison: ${goTypeName(a)}`);
  if (ka !== kb) throw new Error(`incompatible types for comparison: ${goTypeName(a)} and ${goTypeName(b)}`);
  if (ka === 'string') return compareGoStrings(a as string, b as string) < 0;
  return (a as number) < (b as number);
}

function length(v: unknown): bigint {
  switch (kindOf(v)) {
    case 'string': return BigInt(byteLength(v as string));
    case 'list': return BigInt((v as unknown[]).length);
    case 'map': return BigInt((v as GoMap).size);
    case 'nil': throw new Error('len of nil pointer');
    default: throw new Error(`len of type ${goTypeName(v)}`);
  }
}

function index(item: unknown, ...keys: unknown[]): unknown {
  let v = item;
  for (const key of keys) {
    switch (kindOf(v)) {
      case 'nil': throw new Error('index of untyped nil');
      case 'map':
        if (typeof key !== 'string') throw new Error(`value has type ${goTypeName(key)}; should be string`);
        v = (v as GoMap).get(key) ?? null;
        break;
      case 'list': case 'string': {
        if (typeof key !== 'bigint') throw new Error(`cannot index slice/array with type ${goTypeName(key)}`);
        const bytes = typeof v === 'string' ? Buffer.from(v, 'utf8') : undefined;
        const len = bytes ? bytes.length : (v as unknown[]).length;
        if (key < 0n || key >= BigInt(len)) throw new Error(`index out of range: ${key}`);
        v = bytes ? BigInt(bytes[Number(key)]!) : (v as unknown[])[Number(key)];
        break;
      }
      default: throw new Error(`can't index item of type ${goTypeName(v)}`);
    }
  }
  return v;
}

function slice(item: unknown, ...idx: unknown[]): unknown {
  const k = kindOf(item);
  if (k !== 'string' && k !== 'list') throw new Error(`can't slice item of type ${goTypeName(item)}`);
  if (idx.length > 3 || (k === 'string' && idx.length > 2)) throw new Error('too many slice indexes');
  const len = k === 'string' ? byteLength(item as string) : (item as unknown[]).length;
  const bounds = idx.map((i) => {
    if (typeof i !== 'bigint') throw new Error(`cannot index slice/array with type ${goTypeName(i)}`);
    if (i < 0n || i > BigInt(len)) throw new Error(`index out of range: ${i}`);
    return Number(i);
  });
  const start = bounds[0] ?? 0;
  const end = bounds[1] ?? len;
  if (start > end) throw new Error(`invalid slice index: ${start} > ${end}`);
  if (k === 'string') return Buffer.from(item as string, 'utf8').subarray(start, end).toString('utf8');
  return (item as unknown[]).slice(start, end);
}

/** Arguments as html/js/urlquery take them: one string as is, anything else through Sprint. */
function evalArgs(args: unknown[]): string {
  return args.length === 1 && typeof args[0] === 'string' ? args[0] : sprint(args);
}

function htmlEscape(s: string): string {
  return s.replace(/[\0"'&<>]/g, (c) => ({ '\0': '\uFFFD', '"': '&#34;', "'": '&#39;', '&': '&amp;', '<': '&lt;', '>': '&gt;' })[c]!);
}

function jsEscape(s: string): string {
  let out = '';
  for (const ch of s) {
    const cp = ch.codePointAt(0)!;
    switch (ch) {
      case '\\': out += '\\\\'; continue;
      case "'": out += "\\'"; continue;
      case '"': out += '\\"'; continue;
      case '<': out += '\\u003C'; continue;
      case '>': out += '\\u003E'; continue;
      case '&': out += '\\u0026'; continue;
      case '=': out += '\\u003D'; continue;
    }
    if (cp < 0x20) out += '\\u' + cp.toString(16).toUpperCase().padStart(4, '0');
    else if (cp < 0x80 || /^[\p{L}\p{M}\p{N}\p{P}\p{S} ]$/u.test(ch)) out += ch;
    else out += '\\u' + cp.toString(16).toUpperCase().padStart(4, '0');
  }
  return out;
}

/** url.QueryEscape: everything but A-Z a-z 0-9 - _ . ~ is %XX-escaped, space becomes +. */
export function queryEscape(s: string): string {
  let out = '';
  for (const b of Buffer.from(s, 'utf8')) {
    const c = String.fromCharCode(b);
    if (/[A-Za-z0-9\-_.~]/.test(c)) out += c;
    else if (c === ' ') out += '+';
    else out += '%' + b.toString(16).toUpperCase().padStart(2, '0');
  }
  return out;
}

/**
 * The builtin and/or. The evaluator recognises these objects and evaluates their operands
 * lazily; a caller's own "and" or "or" in the function map is called like any function, as in Go.
 */
export const builtinAnd: TemplateFunction = () => { throw new Error('and is evaluated by the template engine itself'); };
export const builtinOr: TemplateFunction = () => { throw new Error('or is evaluated by the template engine itself'); };

export function builtinFunctions(): Map<string, TemplateFunction> {
  return new Map<string, TemplateFunction>([
    ['and', builtinAnd],
    ['or', builtinOr],
    ['not', goFunc('not', ['any'], (v) => !isTrue(v))],
    ['len', goFunc('len', ['any'], length)],
    ['index', goVariadic('index', ['any'], 'any', index)],
    ['slice', goVariadic('slice', ['any'], 'any', slice)],
    ['print', goVariadic('print', [], 'any', (...a) => sprint(a))],
    ['println', goVariadic('println', [], 'any', (...a) => sprintln(a))],
    ['printf', goVariadic('printf', ['string'], 'any', (f, ...a) => sprintf(f, a))],
    ['html', goVariadic('html', [], 'any', (...a) => htmlEscape(evalArgs(a)))],
    ['js', goVariadic('js', [], 'any', (...a) => jsEscape(evalArgs(a)))],
    ['urlquery', goVariadic('urlquery', [], 'any', (...a) => queryEscape(evalArgs(a)))],
    ['eq', goVariadic('eq', ['any'], 'any', eq)],
    ['ne', goFunc('ne', ['any', 'any'], (a, b) => !eq(a, b))],
    ['lt', goFunc('lt', ['any', 'any'], lt)],
    ['le', goFunc('le', ['any', 'any'], (a, b) => lt(a, b) || eq(a, b))],
    ['gt', goFunc('gt', ['any', 'any'], (a, b) => !(lt(a, b) || eq(a, b)))],
    ['ge', goFunc('ge', ['any', 'any'], (a, b) => !lt(a, b))],
  ]);
}

