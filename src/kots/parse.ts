/**
 * Lexer and parser for Go's text/template language with custom delimiters, as KOTS runs it
 * (once with `{{repl` … `}}`, once with `repl{{` … `}}`). Follows Go's text/template/parse:
 * trim markers are `<left>- ` and ` -<right>` (the space is required), a comment must follow the
 * left delimiter directly (`{{repl/* … *\/}}`), actions may span lines, every identifier in
 * an action must name a known function, `else if` continues an `if`, `else with` a `with`.
 */

export interface Delims { readonly left: string; readonly right: string }

/** KOTS's first pass. */
export const CURLY_REPL: Delims = { left: '{{repl', right: '}}' };
/** KOTS's second pass, run over the first pass's output. */
export const REPL_CURLY: Delims = { left: 'repl{{', right: '}}' };

/** A template error before the file is known: a message and the 1-based line within the text. */
export class TemplateFault extends Error {
  constructor(readonly line: number, message: string, readonly hint?: string) {
    super(message);
    this.name = 'TemplateFault';
  }
}

// ---------------------------------------------------------------- AST

export type Operand =
  | { kind: 'identifier'; name: string; line: number }
  | { kind: 'string'; value: string; line: number }
  | { kind: 'number'; value: bigint | number; text: string; line: number }
  | { kind: 'bool'; value: boolean; line: number }
  | { kind: 'nil'; line: number }
  | { kind: 'dot'; line: number }
  | { kind: 'field'; names: string[]; line: number }
  | { kind: 'variable'; name: string; fields: string[]; line: number }
  | { kind: 'chain'; node: Operand; fields: string[]; line: number }
  | { kind: 'pipe'; pipe: Pipe; line: number };

export interface Command { args: Operand[]; line: number }
export interface Pipe { decl: string[]; isAssign: boolean; cmds: Command[]; line: number }

/** if, with or range; `elseChained` when the else list is one nested `else if` / `else with`. */
export interface ControlNode {
  kind: 'if' | 'with' | 'range'; pipe: Pipe; list: Node[]; elseList: Node[] | undefined; elseChained: boolean; line: number;
}

export type Node =
  | { kind: 'text'; text: string; line: number }
  | { kind: 'action'; pipe: Pipe; line: number }
  | ControlNode
  | { kind: 'break' | 'continue'; line: number };

// ---------------------------------------------------------------- lexer

type TokKind =
  | 'text' | 'left' | 'right' | 'space' | 'identifier' | 'keyword' | 'bool' | 'number' | 'char'
  | 'string' | 'rawstring' | 'variable' | 'field' | 'dot' | 'pipe' | 'assign' | 'declare'
  | 'lparen' | 'rparen' | 'comma' | 'other' | 'eof';

interface Token { kind: TokKind; val: string; line: number }

const KEYWORDS = new Set(['if', 'else', 'end', 'range', 'with', 'break', 'continue', 'define', 'template', 'block', 'nil']);
const SPACE = ' \t\r\n';
const isSpace = (c: string | undefined): boolean => c !== undefined && c !== '' && SPACE.includes(c);
const ALNUM = /[\p{L}\p{Nd}_]*/uy;

function lex(input: string, delims: Delims): Token[] {
  const { left, right } = delims;
  const tokens: Token[] = [];
  let line = 1;
  let nextNL = input.indexOf('\n');
  // Line of a position; positions only move forward, so the whole input is scanned once.
  const lineAt = (p: number): number => {
    while (nextNL !== -1 && nextNL < p) { line++; nextNL = input.indexOf('\n', nextNL + 1); }
    return line;
  };
  const leftTrim = (p: number): boolean => input[p] === '-' && isSpace(input[p + 1]);
  const atRight = (p: number): { at: boolean; trim: boolean } => {
    if (isSpace(input[p]) && input[p + 1] === '-' && input.startsWith(right, p + 2)) return { at: true, trim: true };
    return { at: input.startsWith(right, p), trim: false };
  };
  const skipSpace = (p: number): number => { while (isSpace(input[p])) p++; return p; };
  const atTerminator = (p: number): boolean => {
    const c = input[p];
    return c === undefined || isSpace(c) || '.,|:)('.includes(c) || input.startsWith(right, p);
  };

  let pos = 0;
  while (pos <= input.length) {
    const x = input.indexOf(left, pos);
    if (x < 0) {
      if (pos < input.length) tokens.push({ kind: 'text', val: input.slice(pos), line: lineAt(pos) });
      break;
    }
    let p = x + left.length;
    const trimBefore = leftTrim(p);
    let textEnd = x;
    if (trimBefore) while (textEnd > pos && isSpace(input[textEnd - 1])) textEnd--;
    if (textEnd > pos) tokens.push({ kind: 'text', val: input.slice(pos, textEnd), line: lineAt(pos) });
    const actionLine = lineAt(x);
    if (trimBefore) p += 2;

    if (input.startsWith('/*', p)) {
      const end = input.indexOf('*/', p + 2);
      if (end < 0) throw new TemplateFault(actionLine, 'unclosed comment');
      p = end + 2;
      const r = atRight(p);
      if (!r.at) throw new TemplateFault(actionLine, `comment ends before closing delimiter ${right}`);
      p += (r.trim ? 2 : 0) + right.length;
      pos = r.trim ? skipSpace(p) : p;
      continue;
    }

    tokens.push({ kind: 'left', val: left, line: actionLine });
    let depth = 0;
    for (;;) {
      const r = atRight(p);
      if (r.at) {
        if (depth > 0) throw new TemplateFault(actionLine, 'unclosed left paren');
        p += (r.trim ? 2 : 0) + right.length;
        tokens.push({ kind: 'right', val: right, line: lineAt(p) });
        if (r.trim) p = skipSpace(p);
        break;
      }
      if (p >= input.length) throw new TemplateFault(actionLine, `unclosed action: ${left} has no closing ${right}`);
      const c = input[p]!;
      const start = p;
      const tokLine = lineAt(p);
      const push = (kind: TokKind, end: number): void => {
        tokens.push({ kind, val: input.slice(start, end), line: tokLine });
        p = end;
      };
      if (isSpace(c)) {
        let e = skipSpace(p);
        // A space followed by "-}}" belongs to the closing trim marker.
        if (input[e] === '-' && input.startsWith(right, e + 1)) e--;
        if (e > p) push('space', e);
        else p = e;
        continue;
      }
      switch (c) {
        case '=': push('assign', p + 1); continue;
        case ':':
          if (input[p + 1] !== '=') throw new TemplateFault(tokLine, 'expected :=');
          push('declare', p + 2); continue;
        case '|': push('pipe', p + 1); continue;
        case ',': push('comma', p + 1); continue;
        case '(': depth++; push('lparen', p + 1); continue;
        case ')':
          if (--depth < 0) throw new TemplateFault(tokLine, 'unexpected right paren');
          push('rparen', p + 1); continue;
        case '"': case "'": {
          let e = p + 1;
          for (;;) {
            const d = input[e];
            if (d === undefined || d === '\n') {
              throw new TemplateFault(tokLine, c === '"' ? 'unterminated quoted string' : 'unterminated character constant');
            }
            if (d === '\\') { e += 2; continue; }
            e++;
            if (d === c) break;
          }
          push(c === '"' ? 'string' : 'char', e); continue;
        }
        case '`': {
          const e = input.indexOf('`', p + 1);
          if (e < 0) throw new TemplateFault(tokLine, 'unterminated raw quoted string');
          push('rawstring', e + 1); continue;
        }
        case '$': case '.': {
          if (c === '.' && /[0-9]/.test(input[p + 1] ?? '')) break; // a number like .5
          ALNUM.lastIndex = p + 1;
          ALNUM.exec(input);
          const e = ALNUM.lastIndex;
          if (!atTerminator(e)) throw new TemplateFault(tokLine, `bad character ${JSON.stringify(input[e])}`);
          push(c === '$' ? 'variable' : e === p + 1 ? 'dot' : 'field', e); continue;
        }
      }
      if (c === '+' || c === '-' || c === '.' || (c >= '0' && c <= '9')) {
        const e = scanNumber(input, p);
        if (e < 0) throw new TemplateFault(tokLine, `bad number syntax: ${JSON.stringify(input.slice(p, -e))}`);
        push('number', e);
        continue;
      }
      ALNUM.lastIndex = p;
      ALNUM.exec(input);
      if (ALNUM.lastIndex > p) {
        const e = ALNUM.lastIndex;
        if (!atTerminator(e)) throw new TemplateFault(tokLine, `bad character ${JSON.stringify(input[e])}`);
        const word = input.slice(p, e);
        push(KEYWORDS.has(word) ? 'keyword' : word === 'true' || word === 'false' ? 'bool' : 'identifier', e);
        continue;
      }
      if (c >= ' ' && c <= '~') { push('other', p + 1); continue; }
      throw new TemplateFault(tokLine, `unrecognized character in action: ${JSON.stringify(c)}`);
    }
    pos = p;
  }
  tokens.push({ kind: 'eof', val: '', line: lineAt(input.length) });
  return tokens;
}

/** Go's scanNumber: returns the end of the number, or -end when the text is not a number. */
function scanNumber(s: string, p: number): number {
  const accept = (chars: string): boolean => {
    if (p < s.length && chars.includes(s[p]!)) { p++; return true; }
    return false;
  };
  const acceptRun = (chars: string): void => { while (p < s.length && chars.includes(s[p]!)) p++; };
  accept('+-');
  let digits = '0123456789_';
  if (accept('0')) {
    if (accept('xX')) digits = '0123456789abcdefABCDEF_';
    else if (accept('oO')) digits = '01234567_';
    else if (accept('bB')) digits = '01_';
  }
  acceptRun(digits);
  if (accept('.')) acceptRun(digits);
  if (digits.length === 11 && accept('eE')) { accept('+-'); acceptRun('0123456789_'); }
  if (digits.length === 23 && accept('pP')) { accept('+-'); acceptRun('0123456789_'); }
  if (accept('i')) return -(p); // complex numbers are not supported
  ALNUM.lastIndex = p;
  ALNUM.exec(s);
  if (ALNUM.lastIndex > p) return -(ALNUM.lastIndex);
  return p;
}

// ---------------------------------------------------------------- literals

/** Go's strconv.Unquote for "…" and '…' literals (escapes \a \b \f \n \r \t \v \\ \' \" \xHH \ooo \uXXXX \UXXXXXXXX). */
function unquote(lit: string, line: number): string {
  const quote = lit[0]!;
  const body = lit.slice(1, -1);
  const bytes: number[] = [];
  const pushCp = (cp: number): void => { bytes.push(...Buffer.from(String.fromCodePoint(cp), 'utf8')); };
  for (let i = 0; i < body.length;) {
    const cp = body.codePointAt(i)!;
    const ch = String.fromCodePoint(cp);
    if (ch !== '\\') { pushCp(cp); i += ch.length; continue; }
    const e = body[i + 1];
    i += 2;
    const simple: Record<string, number> = { a: 7, b: 8, f: 12, n: 10, r: 13, t: 9, v: 11, '\\': 92 };
    if (e !== undefined && e in simple) { bytes.push(simple[e]!); continue; }
    if (e === quote) { bytes.push(quote.charCodeAt(0)); continue; }
    const fixed = (len: number, radix: number, re: RegExp): number => {
      const digits = body.slice(i, i + len);
      if (digits.length !== len || !re.test(digits)) throw new TemplateFault(line, `invalid escape in string ${lit}`);
      i += len;
      return parseInt(digits, radix);
    };
    if (e === 'x') { bytes.push(fixed(2, 16, /^[0-9a-fA-F]+$/)); continue; }
    if (e !== undefined && e >= '0' && e <= '7') {
      i--;
      const v = fixed(3, 8, /^[0-7]+$/);
      if (v > 255) throw new TemplateFault(line, `invalid escape in string ${lit}`);
      bytes.push(v);
      continue;
    }
    if (e === 'u' || e === 'U') {
      const v = fixed(e === 'u' ? 4 : 8, 16, /^[0-9a-fA-F]+$/);
      if (v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff)) throw new TemplateFault(line, `invalid escape in string ${lit}`);
      pushCp(v);
      continue;
    }
    throw new TemplateFault(line, `invalid escape \\${e ?? ''} in string ${lit}`);
  }
  return Buffer.from(bytes).toString('utf8');
}

/** A number literal's value as Go's template engine gives it: int when integral, else float64. */
function parseNumber(text: string, line: number): bigint | number {
  const clean = text.replace(/_/g, '');
  const neg = clean.startsWith('-');
  const unsigned = clean.replace(/^[+-]/, '');
  const isHexInt = /^0[xX]/.test(unsigned) && !/[pP]/.test(unsigned);
  if (/^(0[xX][0-9a-fA-F]+|0[oO][0-7]+|0[bB][01]+|0[0-7]*|[1-9][0-9]*)$/.test(unsigned)) {
    const v = /^0[0-7]+$/.test(unsigned) ? BigInt('0o' + unsigned.slice(1)) : BigInt(unsigned);
    const n = neg ? -v : v;
    if (n > 0x7fffffffffffffffn || n < -0x8000000000000000n) throw new TemplateFault(line, `${text} overflows int`);
    return n;
  }
  if (isHexInt || !/^(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(unsigned)) {
    throw new TemplateFault(line, `illegal number syntax: ${JSON.stringify(text)}`);
  }
  const f = Number(clean);
  return f;
}

// ---------------------------------------------------------------- parser

export interface ParseOptions {
  delims: Delims;
  /** Rejects unknown function names at parse time, as Go does; omit for static inspection. */
  hasFunction?: (name: string) => boolean;
}

export function parseTemplate(input: string, opts: ParseOptions): Node[] {
  return new Parser(lex(input, opts.delims), opts).parseAll();
}

class Parser {
  #toks: Token[];
  #i = 0;
  #vars: string[] = ['$'];
  #rangeDepth = 0;
  #opts: ParseOptions;

  constructor(toks: Token[], opts: ParseOptions) {
    this.#toks = toks;
    this.#opts = opts;
  }

  #name(kw: string): string {
    const { left, right } = this.#opts.delims;
    return left.endsWith('repl') ? `${left} ${kw}${right}` : `${left} ${kw} ${right}`;
  }

  #next(): Token { return this.#toks[this.#i++] ?? this.#toks[this.#toks.length - 1]!; }
  #peek(): Token { return this.#toks[this.#i] ?? this.#toks[this.#toks.length - 1]!; }
  #nextNonSpace(): Token { let t = this.#next(); while (t.kind === 'space') t = this.#next(); return t; }
  #peekNonSpace(): Token { const save = this.#i; const t = this.#nextNonSpace(); this.#i = save; return t; }

  #unexpected(t: Token, context: string): never {
    const what = t.kind === 'eof' ? 'end of text' : t.kind === 'right' ? `closing ${t.val}` : JSON.stringify(t.val);
    throw new TemplateFault(t.line, `unexpected ${what} in ${context}`);
  }

  parseAll(): Node[] {
    const { list, end } = this.#itemList(true);
    if (end) {
      throw new TemplateFault(end.line, `unexpected ${this.#name(end.kind)}: nothing to close`);
    }
    return list;
  }

  /** Nodes up to an {{else}} or {{end}} (returned as `end`), or to EOF when `top`. */
  #itemList(top: boolean, opener?: { kw: string; line: number }): { list: Node[]; end: { kind: 'else' | 'end'; line: number } | undefined } {
    const list: Node[] = [];
    for (;;) {
      const t = this.#next();
      if (t.kind === 'eof') {
        if (top) return { list, end: undefined };
        throw new TemplateFault(opener!.line, `${this.#name(opener!.kw + ' …')} is never closed with ${this.#name('end')}`);
      }
      if (t.kind === 'text') { list.push({ kind: 'text', text: t.val, line: t.line }); continue; }
      // t is a left delimiter
      const kw = this.#peekNonSpace();
      if (kw.kind === 'keyword' && (kw.val === 'else' || kw.val === 'end')) {
        this.#nextNonSpace();
        if (kw.val === 'end') { this.#expectRight('end'); return { list, end: { kind: 'end', line: kw.line } }; }
        // "else if" / "else with" leave the keyword pending for the caller.
        const after = this.#peekNonSpace();
        if (!(after.kind === 'keyword' && (after.val === 'if' || after.val === 'with'))) this.#expectRight('else');
        return { list, end: { kind: 'else', line: kw.line } };
      }
      list.push(this.#action(t.line));
    }
  }

  #expectRight(context: string): void {
    const t = this.#nextNonSpace();
    if (t.kind !== 'right') this.#unexpected(t, this.#name(context));
  }

  #action(line: number): Node {
    const t = this.#nextNonSpace();
    if (t.kind === 'keyword') {
      switch (t.val) {
        case 'if': case 'with': case 'range': return this.#control(t.val, t.line);
        case 'break': case 'continue':
          if (this.#rangeDepth === 0) throw new TemplateFault(t.line, `${this.#name(t.val)} outside ${this.#name('range')}`);
          this.#expectRight(t.val);
          return { kind: t.val, line: t.line };
        case 'define': case 'template': case 'block':
          throw new TemplateFault(t.line, `${this.#name(t.val)} is not supported: KOTS release files do not use named templates`);
      }
    }
    this.#i--;
    return { kind: 'action', pipe: this.#pipeline('command', 'right'), line };
  }

  #control(kw: 'if' | 'with' | 'range', line: number): Node {
    const mark = this.#vars.length;
    const pipe = this.#pipeline(kw, 'right');
    if (kw === 'range') this.#rangeDepth++;
    const { list, end } = this.#itemList(false, { kw, line });
    if (kw === 'range') this.#rangeDepth--;
    let elseList: Node[] | undefined;
    let elseChained = false;
    if (end?.kind === 'else') {
      const pending = this.#peekNonSpace();
      if (pending.kind === 'keyword' && (pending.val === 'if' || pending.val === 'with')) {
        if (pending.val !== kw) this.#unexpected(pending, this.#name(`${kw} … else`));
        this.#nextNonSpace();
        elseList = [this.#control(kw, pending.line)];
        elseChained = true;
      } else {
        const rest = this.#itemList(false, { kw, line });
        if (rest.end?.kind !== 'end') throw new TemplateFault(rest.end!.line, `expected ${this.#name('end')}; found a second ${this.#name('else')}`);
        elseList = rest.list;
      }
    }
    this.#vars.length = mark;
    return { kind: kw, pipe, list, elseList, elseChained, line };
  }

  #pipeline(context: string, end: 'right' | 'rparen'): Pipe {
    const first = this.#peekNonSpace();
    const pipe: Pipe = { decl: [], isAssign: false, cmds: [], line: first.line };
    // Declarations: "$x :=", "$x =", and for range "$i, $e :=".
    for (;;) {
      const save = this.#i;
      const v = this.#nextNonSpace();
      if (v.kind !== 'variable') { this.#i = save; break; }
      const next = this.#nextNonSpace();
      if (next.kind === 'assign' || next.kind === 'declare') {
        pipe.isAssign = next.kind === 'assign';
        if (pipe.isAssign && !this.#vars.includes(v.val)) throw new TemplateFault(v.line, `undefined variable ${JSON.stringify(v.val)}`);
        pipe.decl.push(v.val);
        this.#vars.push(v.val);
        break;
      }
      if (next.kind === 'comma' && context === 'range' && pipe.decl.length === 0) {
        pipe.decl.push(v.val);
        this.#vars.push(v.val);
        continue;
      }
      if (next.kind === 'comma') throw new TemplateFault(v.line, `too many declarations in ${context}`);
      this.#i = save;
      break;
    }
    for (;;) {
      const t = this.#peekNonSpace();
      if (t.kind === end) {
        this.#nextNonSpace();
        if (pipe.cmds.length === 0) throw new TemplateFault(t.line, `missing value for ${context}`);
        return pipe;
      }
      pipe.cmds.push(this.#command(context, end));
    }
  }

  #command(context: string, end: 'right' | 'rparen'): Command {
    const cmd: Command = { args: [], line: this.#peekNonSpace().line };
    for (;;) {
      const op = this.#operand();
      if (op) cmd.args.push(op);
      const t = this.#next();
      if (t.kind === 'space') continue;
      if (t.kind === end) { this.#i--; break; }
      if (t.kind === 'pipe') {
        const after = this.#peekNonSpace();
        if (after.kind === end) throw new TemplateFault(after.line, `missing command after | in ${context}`);
        break;
      }
      this.#unexpected(t, context === 'command' ? 'operand' : context);
    }
    if (cmd.args.length === 0) throw new TemplateFault(cmd.line, `empty command in ${context}`);
    return cmd;
  }

  #operand(): Operand | undefined {
    const term = this.#term();
    if (!term) return undefined;
    if (this.#peek().kind !== 'field') return term;
    const fields: string[] = [];
    while (this.#peek().kind === 'field') fields.push(this.#next().val.slice(1));
    switch (term.kind) {
      case 'field': return { ...term, names: [...term.names, ...fields] };
      case 'variable': return { ...term, fields: [...term.fields, ...fields] };
      case 'bool': case 'string': case 'number': case 'nil': case 'dot':
        throw new TemplateFault(term.line, `unexpected . after term`);
      default: return { kind: 'chain', node: term, fields, line: term.line };
    }
  }

  #term(): Operand | undefined {
    const t = this.#nextNonSpace();
    switch (t.kind) {
      case 'identifier':
        if (this.#opts.hasFunction && !this.#opts.hasFunction(t.val)) {
          throw new TemplateFault(t.line, `function ${JSON.stringify(t.val)} not defined`);
        }
        return { kind: 'identifier', name: t.val, line: t.line };
      case 'dot': return { kind: 'dot', line: t.line };
      case 'keyword':
        if (t.val === 'nil') return { kind: 'nil', line: t.line };
        break;
      case 'variable':
        if (!this.#vars.includes(t.val)) throw new TemplateFault(t.line, `undefined variable ${JSON.stringify(t.val)}`);
        return { kind: 'variable', name: t.val, fields: [], line: t.line };
      case 'field': return { kind: 'field', names: [t.val.slice(1)], line: t.line };
      case 'bool': return { kind: 'bool', value: t.val === 'true', line: t.line };
      case 'number': return { kind: 'number', value: parseNumber(t.val, t.line), text: t.val, line: t.line };
      case 'char': {
        const s = unquote(t.val, t.line);
        const cps = [...s];
        if (cps.length !== 1) throw new TemplateFault(t.line, `malformed character constant: ${t.val}`);
        return { kind: 'number', value: BigInt(cps[0]!.codePointAt(0)!), text: t.val, line: t.line };
      }
      case 'lparen': return { kind: 'pipe', pipe: this.#pipeline('parenthesized pipeline', 'rparen'), line: t.line };
      case 'string': return { kind: 'string', value: unquote(t.val, t.line), line: t.line };
      case 'rawstring': return { kind: 'string', value: t.val.slice(1, -1).replace(/\r/g, ''), line: t.line };
    }
    this.#i--;
    return undefined;
  }
}
