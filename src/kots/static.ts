/**
 * KOTS's static-context functions that need no cluster, config, license or registry
 * (replicatedhq/kots pkg/template/static_context.go, random.go). Like KOTS, the parse functions
 * swallow their errors (ParseInt "x" is 0) and Base64Decode of bad input is "".
 */
import { randomBytes, randomInt } from 'node:crypto';
import { queryEscape } from './builtins.js';
import { formatFloat } from './fmt.js';
import { base64DecodeGo } from './sprig.js';
import {
  goFunc, goVariadic, int64, kindOf, parseGoFloat, parseGoInt, splitGo, trimCutset, trimSpace,
  type TemplateFunction,
} from './values.js';

// ---------------------------------------------------------------- arithmetic (StaticCtx.add & co)

type Op = { int: (a: bigint, b: bigint) => bigint; float: (a: number, b: number) => number };

/** KOTS's numeric rule: float if either side is a float, else int by the first operand; anything else is 0. */
function arith(op: Op): (a: unknown, b: unknown) => unknown {
  const toFloat = (v: unknown): number => (kindOf(v) === 'float' ? (v as number) : kindOf(v) === 'int' ? Number(v) : 0);
  const toInt = (v: unknown): bigint => (kindOf(v) === 'int' ? (v as bigint) : 0n);
  return (a, b) => {
    if (kindOf(a) === 'float' || kindOf(b) === 'float') return op.float(toFloat(a), toFloat(b));
    if (kindOf(a) === 'int') return int64(op.int(a as bigint, toInt(b)));
    return 0n;
  };
}

const add = arith({ int: (a, b) => a + b, float: (a, b) => a + b });
const sub = arith({ int: (a, b) => a - b, float: (a, b) => a - b });
const mult = arith({ int: (a, b) => a * b, float: (a, b) => a * b });
const div = arith({
  int: (a, b) => { if (b === 0n) throw new Error('runtime error: integer divide by zero'); return a / b; },
  float: (a, b) => a / b,
});

/** docker/go-units HumanSize: decimal units, 4 significant digits ("387.3GB"). */
function humanSize(size: unknown): string {
  let n = kindOf(size) === 'float' ? (size as number) : kindOf(size) === 'int' ? Number(size) : 0;
  const units = ['B', 'kB', 'MB', 'GB', 'TB', 'PB', 'EB', 'ZB', 'YB'];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
  return formatFloat(n, 'g', 4) + units[i];
}

// ---------------------------------------------------------------- YamlEscape (yaml.v3 Marshal, indented 20)

const YAML_NON_STRING = [
  /^(|~|null|Null|NULL|true|True|TRUE|false|False|FALSE)$/,
  /^(y|Y|yes|Yes|YES|n|N|no|No|NO|on|On|ON|off|Off|OFF)$/, // YAML 1.1 booleans yaml.v3 still quotes
  /^[-+]?(0b[01_]+|0o?[0-7_]+|0x[0-9a-fA-F_]+|[0-9][0-9_]*)$/,
  /^[-+]?(\.[0-9]+|[0-9][0-9_]*(\.[0-9_]*)?)([eE][-+]?[0-9]+)?$/,
  /^[-+]?\.(inf|Inf|INF)$|^\.(nan|NaN|NAN)$/,
  /^[-+]?[0-9][0-9_]*(:[0-5]?[0-9])+(\.[0-9_]*)?$/, // base-60 floats
  /^\d{4}-\d\d?-\d\d?([Tt ]|$)/, // timestamps
  /^<<$/,
];
const SPECIAL = /[^\t\n\x20-\x7e\u0085\u00a0-\ud7ff\ue000-\ufffd\u{10000}-\u{10ffff}]|\ufeff/u;

function yamlDoubleQuoted(s: string): string {
  const named: Record<string, string> = {
    '\0': '\\0', '\x07': '\\a', '\b': '\\b', '\t': '\\t', '\n': '\\n', '\v': '\\v', '\f': '\\f',
    '\r': '\\r', '\x1b': '\\e', '"': '\\"', '\\': '\\\\', '\u0085': '\\N', '\u00a0': '\\_',
    '\u2028': '\\L', '\u2029': '\\P',
  };
  let out = '"';
  for (const ch of s) {
    const cp = ch.codePointAt(0)!;
    if (named[ch]) out += named[ch];
    else if (SPECIAL.test(ch)) out += cp <= 0xff ? '\\x' + cp.toString(16).toUpperCase().padStart(2, '0') : '\\u' + cp.toString(16).toUpperCase().padStart(4, '0');
    else out += ch;
  }
  return out + '"';
}

/** yaml.v3's Marshal of one string (without line folding past 80 columns). */
export function yamlMarshalString(s: string): string {
  const special = SPECIAL.test(s);
  if (s.includes('\n')) {
    const spaceBreak = / \n|[ ]$/.test(s);
    if (special || spaceBreak) return yamlDoubleQuoted(s) + '\n';
    const indentHint = s[0] === ' ' || s[0] === '\n' ? '4' : '';
    const chomp = !s.endsWith('\n') ? '-' : s.endsWith('\n\n') ? '+' : '';
    const body = (s.endsWith('\n') ? s.slice(0, -1) : s).split('\n').map((l) => (l === '' ? '' : '    ' + l)).join('\n');
    return `|${indentHint}${chomp}\n${body}\n`;
  }
  if (YAML_NON_STRING.some((re) => re.test(s)) || special) return yamlDoubleQuoted(s) + '\n';
  const plain = !(/^(---|\.\.\.)/.test(s) || /^\s|\s$/.test(s) || /\t/.test(s)
    || /^[#,[\]{}&*!|>'"%@`]/.test(s) || /^[-?:](\s|$)/.test(s) || /:(\s|$)| #/.test(s));
  if (plain) return s + '\n';
  return `'${s.replaceAll("'", "''")}'\n`;
}

function yamlEscape(plain: string): string {
  const pad = ' '.repeat(20);
  return pad + yamlMarshalString(plain).replaceAll('\n', '\n' + pad);
}

// ---------------------------------------------------------------- RandomString (random.go)

const CLASSES: Record<string, [number, number][]> = {
  d: [[0x30, 0x39]],
  w: [[0x30, 0x39], [0x41, 0x5a], [0x5f, 0x5f], [0x61, 0x7a]],
  s: [[0x09, 0x0a], [0x0c, 0x0d], [0x20, 0x20]],
};
const POSIX: Record<string, [number, number][]> = {
  alnum: [[0x30, 0x39], [0x41, 0x5a], [0x61, 0x7a]], alpha: [[0x41, 0x5a], [0x61, 0x7a]],
  ascii: [[0, 0x7f]], blank: [[9, 9], [0x20, 0x20]], cntrl: [[0, 0x1f], [0x7f, 0x7f]], digit: [[0x30, 0x39]],
  graph: [[0x21, 0x7e]], lower: [[0x61, 0x7a]], print: [[0x20, 0x7e]],
  punct: [[0x21, 0x2f], [0x3a, 0x40], [0x5b, 0x60], [0x7b, 0x7e]], space: [[9, 13], [0x20, 0x20]],
  upper: [[0x41, 0x5a]], word: [[0x30, 0x39], [0x41, 0x5a], [0x5f, 0x5f], [0x61, 0x7a]], xdigit: [[0x30, 0x39], [0x41, 0x46], [0x61, 0x66]],
};

function normalize(ranges: [number, number][]): [number, number][] {
  const sorted = [...ranges].sort((a, b) => a[0] - b[0]);
  const out: [number, number][] = [];
  for (const r of sorted) {
    const last = out[out.length - 1];
    if (last && r[0] <= last[1] + 1) last[1] = Math.max(last[1], r[1]);
    else out.push([r[0], r[1]]);
  }
  return out;
}

/**
 * The character class a RandomString charset denotes, or undefined when the pattern is not a
 * single class of more than one rune (KOTS then returns ""). Handles [...] with ranges, ^,
 * escapes, \d \w \s and [:posix:] classes, and a bare \d \w \s.
 */
export function charsetRanges(pattern: string): [number, number][] | undefined {
  const bare = /^\\([dws])$/.exec(pattern);
  if (bare) return CLASSES[bare[1]!];
  if (!pattern.startsWith('[') || !pattern.endsWith(']') || pattern.length < 3) return undefined;
  const runes = [...pattern.slice(1, -1)];
  let i = 0;
  const negate = runes[0] === '^';
  if (negate) i++;
  const ranges: [number, number][] = [];
  const single = (): number | undefined => {
    const c = runes[i++];
    if (c === undefined) return undefined;
    if (c !== '\\') return c.codePointAt(0)!;
    const e = runes[i++];
    if (e === undefined) return undefined;
    const esc: Record<string, number> = { n: 10, t: 9, r: 13, f: 12, v: 11, a: 7 };
    if (esc[e] !== undefined) return esc[e];
    if (/[A-Za-z0-9]/.test(e)) return undefined;
    return e.codePointAt(0)!;
  };
  let first = true;
  while (i < runes.length) {
    if (runes[i] === ']' && !first) return undefined; // a ']' inside ends the class early: more pattern follows
    first = false;
    if (runes[i] === '[' && runes[i + 1] === ':') {
      const end = runes.indexOf(']', i);
      const name = runes.slice(i + 2, end - 1).join('');
      if (runes[end - 1] !== ':' || !POSIX[name]) return undefined;
      ranges.push(...POSIX[name]);
      i = end + 1;
      continue;
    }
    if (runes[i] === '\\' && /^[dws]$/.test(runes[i + 1] ?? '')) {
      ranges.push(...CLASSES[runes[i + 1]!]!);
      i += 2;
      continue;
    }
    const lo = single();
    if (lo === undefined) return undefined;
    if (runes[i] === '-' && i + 1 < runes.length) {
      i++;
      const hi = single();
      if (hi === undefined || hi < lo) return undefined;
      ranges.push([lo, hi]);
    } else {
      ranges.push([lo, lo]);
    }
  }
  let set = normalize(ranges);
  if (negate) {
    const comp: [number, number][] = [];
    let next = 0;
    for (const [lo, hi] of set) { if (lo > next) comp.push([next, lo - 1]); next = hi + 1; }
    if (next <= 0x10ffff) comp.push([next, 0x10ffff]);
    set = comp;
  }
  if (set.length === 0 || (set.length === 1 && set[0]![0] === set[0]![1])) return undefined; // a one-rune class is a literal
  return set;
}

function randomString(length: bigint, ...charset: string[]): string {
  const ranges = charsetRanges(charset[0] ?? '[_A-Za-z0-9]');
  if (!ranges) return '';
  const total = ranges.reduce((s, [lo, hi]) => s + hi - lo + 1, 0);
  let out = '';
  for (let n = 0n; n < length; n++) {
    let nth = randomInt(total);
    for (const [lo, hi] of ranges) {
      if (nth <= hi - lo) {
        const cp = lo + nth;
        out += cp >= 0xd800 && cp <= 0xdfff ? '\ufffd' : String.fromCodePoint(cp);
        break;
      }
      nth -= hi - lo + 1;
    }
  }
  return out;
}

// ---------------------------------------------------------------- Now / NowFmt (Go time layouts, UTC)

const MONTHS = ['January', 'February', 'March', 'April', 'May', 'June', 'July', 'August', 'September', 'October', 'November', 'December'];
const DAYS = ['Sunday', 'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday'];

/** time.Time.Format for a UTC time: the reference-time layout elements (2006 01 02 15 04 05 Jan Mon MST Z07:00 .000 …). */
export function formatGoTime(t: Date, layout: string): string {
  const p2 = (n: number): string => String(n).padStart(2, '0');
  const h12 = t.getUTCHours() % 12 === 0 ? 12 : t.getUTCHours() % 12;
  const yday = Math.floor((Date.UTC(t.getUTCFullYear(), t.getUTCMonth(), t.getUTCDate()) - Date.UTC(t.getUTCFullYear(), 0, 1)) / 86400000) + 1;
  const nanos = String(t.getUTCMilliseconds()).padStart(3, '0') + '000000';
  // Longest elements first where one is a prefix of another, as Go's nextStdChunk decides.
  const elements: [string, () => string][] = [
    ['January', () => MONTHS[t.getUTCMonth()]!], ['Jan', () => MONTHS[t.getUTCMonth()]!.slice(0, 3)],
    ['Monday', () => DAYS[t.getUTCDay()]!], ['Mon', () => DAYS[t.getUTCDay()]!.slice(0, 3)], ['MST', () => 'UTC'],
    ['2006', () => String(t.getUTCFullYear()).padStart(4, '0')], ['002', () => String(yday).padStart(3, '0')],
    ['01', () => p2(t.getUTCMonth() + 1)], ['02', () => p2(t.getUTCDate())], ['03', () => p2(h12)],
    ['04', () => p2(t.getUTCMinutes())], ['05', () => p2(t.getUTCSeconds())], ['06', () => p2(t.getUTCFullYear() % 100)],
    ['15', () => p2(t.getUTCHours())], ['__2', () => String(yday).padStart(3, ' ')], ['_2006', () => '_' + String(t.getUTCFullYear()).padStart(4, '0')], ['_2', () => String(t.getUTCDate()).padStart(2, ' ')],
    ['1', () => String(t.getUTCMonth() + 1)], ['2', () => String(t.getUTCDate())], ['3', () => String(h12)],
    ['4', () => String(t.getUTCMinutes())], ['5', () => String(t.getUTCSeconds())],
    ['PM', () => (t.getUTCHours() >= 12 ? 'PM' : 'AM')], ['pm', () => (t.getUTCHours() >= 12 ? 'pm' : 'am')],
    ['Z07:00:00', () => 'Z'], ['Z070000', () => 'Z'], ['Z07:00', () => 'Z'], ['Z0700', () => 'Z'], ['Z07', () => 'Z'],
    ['-07:00:00', () => '+00:00:00'], ['-070000', () => '+000000'], ['-07:00', () => '+00:00'], ['-0700', () => '+0000'], ['-07', () => '+00'],
  ];
  let out = '';
  for (let i = 0; i < layout.length;) {
    const frac = /^[.,](0+|9+)(?![0-9])/.exec(layout.slice(i));
    if (frac) {
      const digits = nanos.slice(0, frac[1]!.length);
      if (frac[1]![0] === '0') out += layout[i] + digits;
      else { const trimmed = digits.replace(/0+$/, ''); if (trimmed) out += layout[i] + trimmed; }
      i += frac[0].length;
      continue;
    }
    const hit = elements.find(([name]) => layout.startsWith(name, i));
    if (hit) { out += hit[1](); i += hit[0].length; continue; }
    out += layout[i];
    i++;
  }
  return out;
}

// ---------------------------------------------------------------- the map

export function staticFunctions(): Map<string, TemplateFunction> {
  return new Map<string, TemplateFunction>([
    ['Now', goFunc('Now', [], () => formatGoTime(new Date(), '2006-01-02T15:04:05Z07:00'))],
    ['NowFmt', goFunc('NowFmt', ['string'], (f) => formatGoTime(new Date(), f === '' ? '2006-01-02T15:04:05Z07:00' : f))],
    ['ToLower', goFunc('ToLower', ['string'], (s) => s.toLowerCase())],
    ['ToUpper', goFunc('ToUpper', ['string'], (s) => s.toUpperCase())],
    ['TrimSpace', goFunc('TrimSpace', ['string'], trimSpace)],
    ['Trim', goVariadic('Trim', ['string'], 'string', (s, ...cut) => (cut.length === 0 ? trimSpace(s) : trimCutset(s, cut[0]!)))],
    ['UrlEncode', goFunc('UrlEncode', ['string'], queryEscape)],
    ['Base64Encode', goFunc('Base64Encode', ['string'], (s) => Buffer.from(s, 'utf8').toString('base64'))],
    ['Base64Decode', goFunc('Base64Decode', ['string'], (s) => { const r = base64DecodeGo(s); return r.ok ? r.text : ''; })],
    ['Split', goFunc('Split', ['string', 'string'], splitGo)],
    ['RandomBytes', goFunc('RandomBytes', ['int'], (n) => randomBytes(Number(n)).toString('base64'))],
    ['RandomString', goVariadic('RandomString', ['int'], 'string', randomString)],
    ['Add', goFunc('Add', ['any', 'any'], add)],
    ['Sub', goFunc('Sub', ['any', 'any'], sub)],
    ['Mult', goFunc('Mult', ['any', 'any'], mult)],
    ['Div', goFunc('Div', ['any', 'any'], div)],
    ['ParseBool', goFunc('ParseBool', ['string'], (s) => ['1', 't', 'T', 'TRUE', 'true', 'True'].includes(s))],
    ['ParseFloat', goFunc('ParseFloat', ['string'], (s) => { const [f, err] = parseGoFloat(s); return err === 'invalid syntax' ? 0 : f; })],
    ['ParseInt', goVariadic('ParseInt', ['string'], 'int', (s, ...base) => parseGoInt(s, Number(base[0] ?? 10n))[0])],
    ['ParseUint', goVariadic('ParseUint', ['string'], 'int', (s, ...base) => parseGoInt(s, Number(base[0] ?? 10n), 64, true)[0])],
    ['HumanSize', goFunc('HumanSize', ['any'], humanSize)],
    ['YamlEscape', goFunc('YamlEscape', ['string'], yamlEscape)],
  ]);
}

