/**
 * The part of Go's fmt and strconv that templates reach: how values print (%v), Sprint,
 * Sprintln, Sprintf with the common verbs, strconv.Quote and FormatFloat. Floats are
 * formatted from their exact binary value and rounded half to even, as strconv does.
 */
import { goTypeName, kindOf, sortedKeys, type GoMap } from './values.js';

// ---------------------------------------------------------------- floats

/** Decimal digits of a non-negative finite float: value = 0.d × 10^dp, no trailing zeros. */
interface Digits { d: string; dp: number }

function shortestDigits(a: number): Digits {
  if (a === 0) return { d: '', dp: 0 };
  const [mant, exp] = a.toExponential().split('e') as [string, string];
  const d = mant.replace('.', '').replace(/0+$/, '');
  return { d, dp: Number(exp) + 1 };
}

/** The exact decimal expansion of a finite positive float. */
function exactDigits(a: number): Digits {
  if (a === 0) return { d: '', dp: 0 };
  const view = new DataView(new ArrayBuffer(8));
  view.setFloat64(0, a);
  const hi = view.getUint32(0);
  const lo = view.getUint32(4);
  const biased = (hi >>> 20) & 0x7ff;
  let mant = (BigInt(hi & 0xfffff) << 32n) | BigInt(lo);
  let e2: number;
  if (biased === 0) e2 = -1074;
  else { mant |= 1n << 52n; e2 = biased - 1075; }
  if (e2 >= 0) {
    const s = (mant << BigInt(e2)).toString();
    return trimDigits({ d: s, dp: s.length });
  }
  const s = (mant * 5n ** BigInt(-e2)).toString();
  return trimDigits({ d: s, dp: s.length + e2 });
}

function trimDigits(x: Digits): Digits {
  const d = x.d.replace(/0+$/, '');
  return d === '' ? { d: '', dp: 0 } : { d, dp: x.dp };
}

/** Keeps the first `keep` digits, rounding half to even on the exact value. */
function roundDigits(x: Digits, keep: number): Digits {
  if (keep >= x.d.length) return x;
  if (keep < 0) return { d: '', dp: 0 };
  const next = x.d.charCodeAt(keep) - 48;
  let up = next > 5;
  if (next === 5) {
    up = /[1-9]/.test(x.d.slice(keep + 1)) || (keep > 0 && (x.d.charCodeAt(keep - 1) - 48) % 2 === 1);
  }
  const kept = x.d.slice(0, keep);
  if (!up) return trimDigits({ d: kept, dp: x.dp });
  let i = kept.length - 1;
  while (i >= 0 && kept[i] === '9') i--;
  if (i < 0) return { d: '1', dp: x.dp + 1 };
  return trimDigits({ d: kept.slice(0, i) + String.fromCharCode(kept.charCodeAt(i) + 1), dp: x.dp });
}

function fmtE(neg: boolean, x: Digits, prec: number, e: string): string {
  let s = (neg ? '-' : '') + (x.d.length ? x.d[0] : '0');
  if (prec > 0) s += '.' + x.d.slice(1, prec + 1).padEnd(prec, '0');
  const exp = x.d.length === 0 ? 0 : x.dp - 1;
  const abs = Math.abs(exp);
  return s + e + (exp < 0 ? '-' : '+') + (abs < 10 ? '0' + abs : String(abs));
}

function fmtF(neg: boolean, x: Digits, prec: number): string {
  let s = (neg ? '-' : '') + (x.dp > 0 ? x.d.slice(0, x.dp).padEnd(x.dp, '0') : '0');
  if (prec > 0) {
    let frac = '';
    for (let i = 0; i < prec; i++) {
      const j = x.dp + i;
      frac += j >= 0 && j < x.d.length ? x.d[j] : '0';
    }
    s += '.' + frac;
  }
  return s;
}

export type FloatFormat = 'e' | 'E' | 'f' | 'g' | 'G';

/** strconv.FormatFloat(x, fmt, prec, 64); prec -1 means the shortest representation that round-trips. */
export function formatFloat(x: number, fmt: FloatFormat, prec: number): string {
  if (Number.isNaN(x)) return 'NaN';
  if (x === Infinity) return '+Inf';
  if (x === -Infinity) return '-Inf';
  const neg = x < 0 || Object.is(x, -0);
  const a = Math.abs(x);
  const kind = fmt.toLowerCase();
  const e = fmt === 'E' || fmt === 'G' ? 'E' : 'e';
  const shortest = prec < 0;
  let digs: Digits;
  if (shortest) {
    digs = shortestDigits(a);
    const nd = digs.d.length;
    prec = kind === 'e' ? Math.max(nd - 1, 0) : kind === 'f' ? Math.max(nd - digs.dp, 0) : nd;
  } else {
    const exact = exactDigits(a);
    if (kind === 'e') digs = roundDigits(exact, prec + 1);
    else if (kind === 'f') digs = roundDigits(exact, exact.dp + prec);
    else {
      if (prec === 0) prec = 1;
      digs = roundDigits(exact, prec);
    }
  }
  if (kind === 'e') return fmtE(neg, digs, prec, e);
  if (kind === 'f') return fmtF(neg, digs, prec);
  // %g: exponent form when the exponent is < -4 or ≥ the precision (6 for shortest).
  let eprec = prec;
  if (eprec > digs.d.length && digs.d.length >= digs.dp) eprec = digs.d.length;
  if (shortest) eprec = 6;
  const exp = digs.dp - 1;
  if (exp < -4 || exp >= eprec) return fmtE(neg, digs, Math.min(prec, digs.d.length) - 1, e);
  return fmtF(neg, digs, Math.max((prec > digs.dp ? digs.d.length : prec) - digs.dp, 0));
}

// ---------------------------------------------------------------- quoting

const PRINTABLE = /^[\p{L}\p{M}\p{N}\p{P}\p{S} ]$/u;

function hex(n: number, width: number): string {
  return n.toString(16).padStart(width, '0');
}

/** One rune escaped as strconv.Quote does (`quote` is the surrounding quote character). */
function escapeRune(cp: number, quote: string, asciiOnly: boolean): string {
  const ch = String.fromCodePoint(cp);
  if (ch === quote || ch === '\\') return '\\' + ch;
  if (cp < 0x80 ? PRINTABLE.test(ch) : !asciiOnly && PRINTABLE.test(ch)) return ch;
  switch (ch) {
    case '\x07': return '\\a';
    case '\b': return '\\b';
    case '\f': return '\\f';
    case '\n': return '\\n';
    case '\r': return '\\r';
    case '\t': return '\\t';
    case '\v': return '\\v';
  }
  if (cp < 0x20 || cp === 0x7f) return '\\x' + hex(cp, 2);
  if (cp >= 0xd800 && cp <= 0xdfff) return '\\ufffd'; // a lone surrogate is not a valid rune
  if (cp < 0x10000) return '\\u' + hex(cp, 4);
  return '\\U' + hex(cp, 8);
}

/** strconv.Quote (or QuoteToASCII): a double-quoted Go string literal. */
export function quoteString(s: string, asciiOnly = false): string {
  let out = '"';
  for (const ch of s) out += escapeRune(ch.codePointAt(0)!, '"', asciiOnly);
  return out + '"';
}

/** strconv.QuoteRune: a single-quoted Go rune literal. */
export function quoteRune(cp: number): string {
  if (cp < 0 || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) cp = 0xfffd;
  return "'" + escapeRune(cp, "'", false) + "'";
}

// ---------------------------------------------------------------- %v

/** How fmt prints a value with %v (a nil prints as <nil>; templates print a top-level nil as <no value>). */
export function formatValue(v: unknown): string {
  switch (kindOf(v)) {
    case 'nil': return '<nil>';
    case 'string': return v as string;
    case 'int': return (v as bigint).toString();
    case 'float': return formatFloat(v as number, 'g', -1);
    case 'bool': return v ? 'true' : 'false';
    case 'list': return '[' + (v as unknown[]).map(formatValue).join(' ') + ']';
    case 'map': {
      const m = v as GoMap;
      return 'map[' + sortedKeys(m).map((k) => `${k}:${formatValue(m.get(k))}`).join(' ') + ']';
    }
    default: return String(v);
  }
}

/** fmt.Sprint: operands printed with %v, a space between two operands when neither is a string. */
export function sprint(args: readonly unknown[]): string {
  let out = '';
  args.forEach((a, i) => {
    if (i > 0 && typeof a !== 'string' && typeof args[i - 1] !== 'string') out += ' ';
    out += formatValue(a);
  });
  return out;
}

/** fmt.Sprintln: operands with %v, always space-separated, and a newline. */
export function sprintln(args: readonly unknown[]): string {
  return args.map(formatValue).join(' ') + '\n';
}

// ---------------------------------------------------------------- Sprintf

interface Spec {
  minus: boolean; plus: boolean; sharp: boolean; space: boolean; zero: boolean;
  width: number | undefined; prec: number | undefined; verb: string;
}

function pad(s: string, spec: Spec, zeroOk: boolean): string {
  const width = spec.width ?? 0;
  const len = [...s].length;
  if (len >= width) return s;
  const fill = width - len;
  if (spec.minus) return s + ' '.repeat(fill);
  if (spec.zero && zeroOk) {
    const sign = /^[+\- ]/.test(s) ? s[0]! : '';
    return sign + '0'.repeat(fill) + s.slice(sign.length);
  }
  return ' '.repeat(fill) + s;
}

function badVerb(spec: Spec, v: unknown): string {
  if (kindOf(v) === 'nil') return `%!${spec.verb}(<nil>)`;
  return `%!${spec.verb}(${goTypeName(v)}=${formatValue(v)})`;
}

function signed(s: string, neg: boolean, spec: Spec): string {
  if (neg) return '-' + s;
  if (spec.plus) return '+' + s;
  if (spec.space) return ' ' + s;
  return s;
}

function formatInt(n: bigint, spec: Spec): string {
  const neg = n < 0n;
  const abs = neg ? -n : n;
  let digits: string;
  let prefix = '';
  switch (spec.verb) {
    case 'd': case 'v': digits = abs.toString(10); break;
    case 'b': digits = abs.toString(2); if (spec.sharp) prefix = '0b'; break;
    case 'o': digits = abs.toString(8); if (spec.sharp && digits[0] !== '0') prefix = '0'; break;
    case 'O': digits = abs.toString(8); prefix = '0o'; break;
    case 'x': digits = abs.toString(16); if (spec.sharp) prefix = '0x'; break;
    case 'X': digits = abs.toString(16).toUpperCase(); if (spec.sharp) prefix = '0X'; break;
    case 'c': return pad(String.fromCodePoint(Number(n) >= 0 && Number(n) <= 0x10ffff ? Number(n) : 0xfffd), spec, false);
    case 'q': return pad(quoteRune(Number(n)), spec, false);
    case 'U': {
      const cp = Number(n);
      let s = 'U+' + abs.toString(16).toUpperCase().padStart(4, '0');
      if (spec.sharp && cp >= 0 && cp <= 0x10ffff && PRINTABLE.test(String.fromCodePoint(cp))) {
        s += ` '${String.fromCodePoint(cp)}'`;
      }
      return pad(s, spec, false);
    }
    default: return badVerb(spec, n);
  }
  if (spec.prec !== undefined) {
    digits = spec.prec === 0 && abs === 0n ? '' : digits.padStart(spec.prec, '0');
    return pad(signed(prefix + digits, neg, spec), spec, false);
  }
  return pad(signed(prefix + digits, neg, spec), spec, true);
}

function formatFloatVerb(x: number, spec: Spec): string {
  let s: string;
  switch (spec.verb) {
    case 'v': s = formatFloat(x, 'g', spec.prec ?? -1); break;
    case 'g': case 'G': s = formatFloat(x, spec.verb, spec.prec ?? -1); break;
    case 'e': case 'E': s = formatFloat(x, spec.verb, spec.prec ?? 6); break;
    case 'f': case 'F': s = formatFloat(x, 'f', spec.prec ?? 6); break;
    default: return badVerb(spec, x);
  }
  if (s[0] !== '-' && s[0] !== '+') {
    if (spec.plus) s = '+' + s;
    else if (spec.space) s = ' ' + s;
  } else if (s === '+Inf' && !spec.plus) {
    s = spec.space ? ' Inf' : '+Inf';
  }
  return pad(s, spec, Number.isFinite(x));
}

function formatString(s: string, spec: Spec): string {
  switch (spec.verb) {
    case 'v': case 's': {
      const t = spec.prec !== undefined ? [...s].slice(0, spec.prec).join('') : s;
      return pad(t, spec, false);
    }
    case 'q': {
      const t = spec.prec !== undefined ? [...s].slice(0, spec.prec).join('') : s;
      if (spec.sharp && !/[`\x00-\x08\x0a-\x1f\x7f\ufeff]/.test(t)) return pad('`' + t + '`', spec, false);
      return pad(quoteString(t, spec.plus), spec, false);
    }
    case 'x': case 'X': {
      const bytes = [...Buffer.from(s, 'utf8')].map((b) => {
        const h = hex(b, 2);
        return (spec.sharp ? (spec.verb === 'x' ? '0x' : '0X') : '') + (spec.verb === 'X' ? h.toUpperCase() : h);
      });
      const joined = spec.space ? bytes.join(' ') : (spec.sharp && bytes.length ? bytes[0]! + bytes.slice(1).map((b) => b.slice(2)).join('') : bytes.join(''));
      return pad(joined, spec, false);
    }
    default: return badVerb(spec, s);
  }
}

/** One operand under one verb; lists and maps apply the verb to each element, as fmt does. */
function formatArg(v: unknown, spec: Spec): string {
  switch (kindOf(v)) {
    case 'nil':
      return spec.verb === 'v' ? pad('<nil>', spec, false) : badVerb(spec, v);
    case 'bool':
      return spec.verb === 't' || spec.verb === 'v' ? pad(v ? 'true' : 'false', spec, false) : badVerb(spec, v);
    case 'int': return formatInt(v as bigint, spec);
    case 'float': return formatFloatVerb(v as number, spec);
    case 'string': return formatString(v as string, spec);
    case 'list': return '[' + (v as unknown[]).map((e) => formatArg(e, spec)).join(' ') + ']';
    case 'map': {
      const m = v as GoMap;
      return 'map[' + sortedKeys(m).map((k) => `${formatArg(k, spec)}:${formatArg(m.get(k), spec)}`).join(' ') + ']';
    }
    default: return spec.verb === 'v' || spec.verb === 's' ? pad(String(v), spec, false) : badVerb(spec, v);
  }
}

/** fmt.Sprintf for the verbs b c d e E f F g G o O q s t T U v x X and flags + - # 0 space, width, precision. */
export function sprintf(format: string, args: readonly unknown[]): string {
  let out = '';
  let argi = 0;
  let i = 0;
  const n = format.length;
  const takeStar = (): number | undefined => {
    const a = args[argi++];
    if (typeof a === 'bigint') return Number(a);
    out += '%!(BADWIDTH)';
    return undefined;
  };
  while (i < n) {
    const pct = format.indexOf('%', i);
    if (pct < 0) { out += format.slice(i); break; }
    out += format.slice(i, pct);
    i = pct + 1;
    const spec: Spec = { minus: false, plus: false, sharp: false, space: false, zero: false, width: undefined, prec: undefined, verb: '' };
    for (; i < n; i++) {
      const c = format[i];
      if (c === '-') { spec.minus = true; spec.zero = false; }
      else if (c === '+') spec.plus = true;
      else if (c === '#') spec.sharp = true;
      else if (c === ' ') spec.space = true;
      else if (c === '0') spec.zero = !spec.minus;
      else break;
    }
    if (format[i] === '*') { i++; spec.width = takeStar(); if (spec.width !== undefined && spec.width < 0) { spec.minus = true; spec.width = -spec.width; } }
    else { const m = /^\d+/.exec(format.slice(i, i + 10)); if (m) { spec.width = Number(m[0]); i += m[0].length; } }
    if (format[i] === '.') {
      i++;
      if (format[i] === '*') { i++; spec.prec = takeStar(); if (spec.prec !== undefined && spec.prec < 0) spec.prec = undefined; }
      else { const m = /^\d+/.exec(format.slice(i, i + 10)); spec.prec = m ? Number(m[0]) : 0; if (m) i += m[0].length; }
    }
    if (i >= n) { out += '%!(NOVERB)'; break; }
    const verb = String.fromCodePoint(format.codePointAt(i)!);
    i += verb.length;
    spec.verb = verb;
    if (verb === '%') { out += '%'; continue; }
    if (argi >= args.length) { out += `%!${verb}(MISSING)`; continue; }
    if (verb === 'T') { out += pad(goTypeName(args[argi++]), spec, false); continue; }
    out += formatArg(args[argi++], spec);
  }
  if (argi < args.length) {
    out += '%!(EXTRA ' + args.slice(argi).map((a) => kindOf(a) === 'nil' ? '<nil>' : `${goTypeName(a)}=${formatValue(a)}`).join(', ') + ')';
  }
  return out;
}
