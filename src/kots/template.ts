/**
 * KOTS's template language: Go text/template applied twice, first with the delimiters
 * `{{repl` `}}`, then with `repl{{` `}}` over the first pass's output (KOTS's
 * Builder.RenderTemplate). All other text, including Helm's and Prometheus's `{{ … }}`, passes
 * through byte for byte. Each pass parses its whole text first: an unknown function anywhere, even
 * in a branch not taken, is an error, as in KOTS.
 */
import { AirgapError } from '../errors.js';
import { builtinFunctions } from './builtins.js';
import { execute, Output } from './exec.js';
import { CURLY_REPL, parseTemplate, REPL_CURLY, TemplateFault, type Delims, type Node, type Operand, type Pipe } from './parse.js';
import type { TemplateFunction } from './values.js';

export type { TemplateFunction } from './values.js';
export { ArgumentError } from './values.js';

export interface RenderOptions {
  /** The file, for error messages (file:line). */
  file: string;
  /** 1-based line of text[0] in the file; default 1. */
  line?: number;
  /** Functions beyond Go's builtins (which are always there and may be overridden). */
  functions: ReadonlyMap<string, TemplateFunction>;
  /**
   * Build-time discovery: every if / else if / else chain takes branch
   * min(forceBranch, branches-1) without evaluating its conditions (an `if` without else takes
   * its body). `with` and `range` run as usual.
   */
  forceBranch?: number;
}

/** A template that KOTS would fail to render, located in its file. */
export class KotsTemplateError extends AirgapError {
  readonly file: string;
  readonly line: number;

  constructor(file: string, line: number, what: string, opts: { hint?: string; cause?: unknown } = {}) {
    super('E_MANIFESTS', `${file}:${line}: ${what.replace(/\s*\n\s*/g, ' ')}`, {
      hint: opts.hint ?? 'fix the KOTS template expression at that line of the release; KOTS fails on it too',
      ...(opts.cause === undefined ? {} : { cause: opts.cause }),
    });
    this.name = 'KotsTemplateError';
    this.file = file;
    this.line = line;
  }
}

/**
 * Whether text holds a KOTS template: `repl{{`, or `{{repl` not followed by a lower-case letter
 * (`{{replicas}}` is Helm's or Prometheus's; note that KOTS itself would read it as `{{repl icas}}`
 * and fail, so renderKots reports it).
 */
export function hasKotsTemplate(text: string): boolean {
  if (text.includes(REPL_CURLY.left)) return true;
  for (let i = text.indexOf(CURLY_REPL.left); i >= 0; i = text.indexOf(CURLY_REPL.left, i + 1)) {
    const next = text[i + CURLY_REPL.left.length];
    if (next === undefined || !(next >= 'a' && next <= 'z')) return true;
  }
  return false;
}

function allFunctions(extra: ReadonlyMap<string, TemplateFunction>): Map<string, TemplateFunction> {
  const all = builtinFunctions();
  for (const [name, fn] of extra) all.set(name, fn);
  return all;
}

function fault(e: unknown, file: string, mapLine: (local: number) => number): unknown {
  if (!(e instanceof TemplateFault)) return e;
  return new KotsTemplateError(file, mapLine(e.line), e.message, e.hint === undefined ? {} : { hint: e.hint });
}

/** Renders one pass; `lineOf` maps the pass's own line numbers to the file's. */
function renderPass(text: string, delims: Delims, opts: RenderOptions, functions: Map<string, TemplateFunction>,
  lineOf: (local: number) => number): Output {
  const out = new Output();
  try {
    const nodes = parseTemplate(text, { delims, hasFunction: (name) => functions.has(name) });
    execute(nodes, { functions, ...(opts.forceBranch === undefined ? {} : { forceBranch: opts.forceBranch }) }, out);
  } catch (e) {
    throw fault(e, opts.file, lineOf);
  }
  return out;
}

/** Renders text as KOTS does; throws KotsTemplateError (code E_MANIFESTS) naming file:line. */
export function renderKots(text: string, opts: RenderOptions): string {
  const base = (opts.line ?? 1) - 1;
  const functions = allFunctions(opts.functions);
  let current = text;
  // Lines of the second pass's input, mapped back to the file through the first pass's output.
  let lineOf = (local: number): number => base + local;
  if (current.includes(CURLY_REPL.left)) {
    const out = renderPass(current, CURLY_REPL, opts, functions, lineOf);
    current = out.toString();
    const first = lineOf;
    lineOf = (local) => first(out.lineOf[local - 1] ?? out.lineOf[out.lineOf.length - 1] ?? local);
  }
  if (current.includes(REPL_CURLY.left)) {
    current = renderPass(current, REPL_CURLY, opts, functions, lineOf).toString();
  }
  return current;
}

function parseStatic(text: string, delims: Delims, file: string): Node[] {
  if (!text.includes(delims.left)) return [];
  try {
    return parseTemplate(text, { delims });
  } catch (e) {
    throw fault(e, file, (l) => l);
  }
}

/** Every if-chain (if, else if…, else) in a node list, with its number of branches. */
function* ifChains(nodes: Node[]): Generator<number> {
  for (const n of nodes) {
    if (n.kind !== 'if' && n.kind !== 'with' && n.kind !== 'range') continue;
    if (n.kind === 'if') {
      let count = 0;
      let link: Node | undefined = n;
      while (link && link.kind === 'if') {
        count++;
        yield* ifChains(link.list);
        if (link.elseChained) link = link.elseList![0];
        else { if (link.elseList) { count++; yield* ifChains(link.elseList); } link = undefined; }
      }
      yield count;
      continue;
    }
    yield* ifChains(n.list);
    if (n.elseList) yield* ifChains(n.elseList);
  }
}

/**
 * The most branches any if-chain in text has (0 when none): how many forceBranch variants
 * build-time discovery renders. Throws KotsTemplateError when the text does not parse.
 */
export function branchCount(text: string, file = '<template>'): number {
  let most = 0;
  for (const delims of [CURLY_REPL, REPL_CURLY]) {
    for (const n of ifChains(parseStatic(text, delims, file))) most = Math.max(most, n);
  }
  return most;
}

export interface TemplateCall {
  name: string;
  /** Literal arguments; undefined where an argument is not a literal (a call, a variable, a piped value). */
  args: (string | number | boolean | undefined)[];
  /** 1-based line of the call in text. */
  line: number;
}

function literal(op: Operand): string | number | boolean | undefined {
  switch (op.kind) {
    case 'string': case 'bool': return op.value;
    case 'number': return typeof op.value === 'bigint' ? Number(op.value) : op.value;
    default: return undefined;
  }
}

function collectPipe(pipe: Pipe, calls: TemplateCall[]): void {
  pipe.cmds.forEach((cmd, i) => {
    const head = cmd.args[0]!;
    if (head.kind !== 'identifier') {
      for (const op of cmd.args) collectOperand(op, calls);
      return;
    }
    const args = cmd.args.slice(1).map(literal);
    if (i > 0) {
      // The previous command's value is the last argument; it is a literal only when that command is one.
      const prev = pipe.cmds[i - 1]!;
      args.push(prev.args.length === 1 ? literal(prev.args[0]!) : undefined);
    }
    calls.push({ name: head.name, args, line: head.line });
    for (const op of cmd.args.slice(1)) collectOperand(op, calls);
  });
}

function collectOperand(op: Operand, calls: TemplateCall[]): void {
  if (op.kind === 'identifier') calls.push({ name: op.name, args: [], line: op.line });
  else if (op.kind === 'pipe') collectPipe(op.pipe, calls);
  else if (op.kind === 'chain') collectOperand(op.node, calls);
}

function collectNodes(nodes: Node[], calls: TemplateCall[]): void {
  for (const n of nodes) {
    switch (n.kind) {
      case 'action': collectPipe(n.pipe, calls); break;
      case 'if': case 'with': case 'range':
        collectPipe(n.pipe, calls);
        collectNodes(n.list, calls);
        if (n.elseList) collectNodes(n.elseList, calls);
        break;
    }
  }
}

/**
 * Every function call in text, with its literal arguments, found without evaluating anything
 * (both delimiter forms, all branches). An identifier used as an argument (`list Now`) is a call
 * with no arguments. Calls are in order of appearance within each delimiter form.
 */
export function templateCalls(text: string, file = '<template>'): TemplateCall[] {
  const calls: TemplateCall[] = [];
  for (const delims of [CURLY_REPL, REPL_CURLY]) collectNodes(parseStatic(text, delims, file), calls);
  return calls;
}
