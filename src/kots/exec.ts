/**
 * Executes a parsed template as Go's text/template does with nil data (KOTS passes none): dot
 * starts as nil, `.X` on nil is nil, a nil prints as `<no value>`, pipelines pass their value as
 * the last argument of the next command, `and`/`or` stop at the deciding operand.
 */
import { builtinAnd, builtinOr } from './builtins.js';
import { formatValue } from './fmt.js';
import { TemplateFault, type Command, type ControlNode, type Node, type Operand, type Pipe } from './parse.js';
import { ArgumentError, goTypeName, isTrue, kindOf, sortedKeys, type GoMap, type TemplateFunction } from './values.js';

export interface ExecOptions {
  functions: ReadonlyMap<string, TemplateFunction>;
  /** Every if/else-if/else chain takes this branch (capped at its last) without evaluating conditions. */
  forceBranch?: number;
}

/** Collects output, and for every output line the template line it came from. */
export class Output {
  readonly #parts: string[] = [];
  readonly lineOf: number[] = [];

  #lines(s: string, line: number, advance: boolean): void {
    if (this.lineOf.length === 0) this.lineOf.push(line);
    for (let i = s.indexOf('\n'); i >= 0; i = s.indexOf('\n', i + 1)) {
      if (advance) line++;
      this.lineOf.push(line);
    }
  }

  text(s: string, line: number): void { this.#parts.push(s); this.#lines(s, line, true); }
  value(s: string, line: number): void { this.#parts.push(s); this.#lines(s, line, false); }
  toString(): string { return this.#parts.join(''); }
}

type Signal = 'break' | 'continue' | undefined;
const NO_FINAL: unique symbol = Symbol('no final');
type Final = unknown;

export function execute(nodes: Node[], opts: ExecOptions, out: Output): void {
  new Exec(opts, out).walk(null, nodes);
}

class Exec {
  #vars: { name: string; value: unknown }[] = [{ name: '$', value: null }];
  #opts: ExecOptions;
  #out: Output;

  constructor(opts: ExecOptions, out: Output) {
    this.#opts = opts;
    this.#out = out;
  }

  walk(dot: unknown, nodes: Node[]): Signal {
    for (const node of nodes) {
      const signal = this.#node(dot, node);
      if (signal) return signal;
    }
    return undefined;
  }

  #node(dot: unknown, node: Node): Signal {
    switch (node.kind) {
      case 'text': this.#out.text(node.text, node.line); return undefined;
      case 'action': {
        const v = this.#pipeline(dot, node.pipe);
        if (node.pipe.decl.length === 0) this.#out.value(kindOf(v) === 'nil' ? '<no value>' : formatValue(v), node.line);
        return undefined;
      }
      case 'break': case 'continue': return node.kind;
      case 'if': case 'with': return this.#ifOrWith(dot, node);
      case 'range': return this.#range(dot, node);
    }
  }

  #scoped<T>(f: () => T): T {
    const mark = this.#vars.length;
    try { return f(); } finally { this.#vars.length = mark; }
  }

  #ifOrWith(dot: unknown, node: ControlNode): Signal {
    return this.#scoped(() => {
      if (node.kind === 'if' && this.#opts.forceBranch !== undefined) return this.#forcedIf(dot, node);
      const v = this.#pipeline(dot, node.pipe);
      if (isTrue(v)) return this.walk(node.kind === 'with' ? v : dot, node.list);
      return node.elseList ? this.walk(dot, node.elseList) : undefined;
    });
  }

  /** Discovery mode: branch k of the chain, conditions not evaluated (their variables are nil). */
  #forcedIf(dot: unknown, node: ControlNode): Signal {
    const branches: Node[][] = [];
    let link: Node | undefined = node;
    while (link && link.kind === 'if') {
      for (const name of link.pipe.decl) this.#vars.push({ name, value: null });
      branches.push(link.list);
      if (link.elseChained && link.elseList) link = link.elseList[0];
      else { if (link.elseList) branches.push(link.elseList); link = undefined; }
    }
    const k = Math.min(this.#opts.forceBranch ?? 0, branches.length - 1);
    return this.walk(dot, branches[k]!);
  }

  #range(dot: unknown, node: ControlNode): Signal {
    return this.#scoped(() => {
      const val = this.#pipeline(dot, node.pipe);
      const mark = this.#vars.length;
      const decl = node.pipe.decl;
      const one = (key: unknown, elem: unknown): Signal => {
        if (node.pipe.isAssign) {
          if (decl.length > 1) { this.#setVar(decl[0]!, key, node.line); this.#setVar(decl[1]!, elem, node.line); }
          else if (decl.length === 1) this.#setVar(decl[0]!, elem, node.line);
        } else if (decl.length > 1) {
          this.#vars[mark - 2]!.value = key;
          this.#vars[mark - 1]!.value = elem;
        } else if (decl.length === 1) {
          this.#vars[mark - 1]!.value = elem;
        }
        try { return this.walk(elem, node.list); } finally { this.#vars.length = mark; }
      };
      let ran = false;
      switch (kindOf(val)) {
        case 'list':
          for (const [i, e] of (val as unknown[]).entries()) {
            ran = true;
            if (one(BigInt(i), e) === 'break') break;
          }
          break;
        case 'map': {
          const m = val as GoMap;
          for (const k of sortedKeys(m)) {
            ran = true;
            if (one(k, m.get(k)) === 'break') break;
          }
          break;
        }
        case 'int': {
          if (decl.length > 1) throw new TemplateFault(node.line, `can't use ${formatValue(val)} to iterate over more than one variable`);
          for (let i = 0n; i < (val as bigint); i++) {
            ran = true;
            if (one(i, i) === 'break') break;
          }
          break;
        }
        case 'nil': break;
        default: throw new TemplateFault(node.line, `range can't iterate over ${formatValue(val)} (${goTypeName(val)})`);
      }
      if (!ran && node.elseList) return this.walk(dot, node.elseList);
      return undefined;
    });
  }

  #setVar(name: string, value: unknown, line: number): void {
    for (let i = this.#vars.length - 1; i >= 0; i--) {
      if (this.#vars[i]!.name === name) { this.#vars[i]!.value = value; return; }
    }
    throw new TemplateFault(line, `undefined variable: ${name}`);
  }

  #varValue(name: string, line: number): unknown {
    for (let i = this.#vars.length - 1; i >= 0; i--) if (this.#vars[i]!.name === name) return this.#vars[i]!.value;
    throw new TemplateFault(line, `undefined variable: ${name}`);
  }

  #pipeline(dot: unknown, pipe: Pipe): unknown {
    let value: Final = NO_FINAL;
    for (const cmd of pipe.cmds) value = this.#command(dot, cmd, value);
    const v = value === undefined ? null : value;
    for (const name of pipe.decl) {
      if (pipe.isAssign) this.#setVar(name, v, pipe.line);
      else this.#vars.push({ name, value: v });
    }
    return v;
  }

  #notAFunction(args: Operand[], final: Final): void {
    if (args.length > 1 || final !== NO_FINAL) {
      throw new TemplateFault(args[0]!.line, `can't give argument to non-function ${describe(args[0]!)}`);
    }
  }

  #command(dot: unknown, cmd: Command, final: Final): unknown {
    const first = cmd.args[0]!;
    switch (first.kind) {
      case 'field': return this.#fieldChainOn(dot, first.names, first.line, cmd.args, final);
      case 'chain': {
        const receiver = this.#arg(dot, first.node);
        return this.#fieldChainOn(receiver, first.fields, first.line, cmd.args, final);
      }
      case 'identifier': return this.#call(dot, first.name, first.line, cmd.args.slice(1), final);
      case 'variable': {
        const v = this.#varValue(first.name, first.line);
        if (first.fields.length > 0) return this.#fieldChainOn(v, first.fields, first.line, cmd.args, final);
        this.#notAFunction(cmd.args, final);
        return v;
      }
      case 'pipe':
        this.#notAFunction(cmd.args, final);
        return this.#pipeline(dot, first.pipe);
      case 'nil': throw new TemplateFault(first.line, 'nil is not a command');
      default:
        this.#notAFunction(cmd.args, final);
        return this.#arg(dot, first);
    }
  }

  #arg(dot: unknown, n: Operand): unknown {
    switch (n.kind) {
      case 'dot': return dot;
      case 'nil': return null;
      case 'string': case 'number': case 'bool': return n.value;
      case 'field': return this.#fieldChainOn(dot, n.names, n.line, [n], NO_FINAL);
      case 'variable': {
        const v = this.#varValue(n.name, n.line);
        return n.fields.length ? this.#fieldChainOn(v, n.fields, n.line, [n], NO_FINAL) : v;
      }
      case 'pipe': return this.#pipeline(dot, n.pipe);
      case 'identifier': return this.#call(dot, n.name, n.line, [], NO_FINAL);
      case 'chain': return this.#fieldChainOn(this.#arg(dot, n.node), n.fields, n.line, [n], NO_FINAL);
    }
  }

  #fieldChainOn(receiver: unknown, names: string[], line: number, args: Operand[], final: Final): unknown {
    let v = receiver;
    names.forEach((name, i) => {
      const last = i === names.length - 1;
      const hasArgs = last && (args.length > 1 || final !== NO_FINAL);
      switch (kindOf(v)) {
        case 'nil': v = null; return;
        case 'map':
          if (hasArgs) throw new TemplateFault(line, `${name} is not a method but has arguments`);
          v = (v as GoMap).get(name) ?? null;
          return;
        default:
          throw new TemplateFault(line, `can't evaluate field ${name} in type ${goTypeName(v)}`);
      }
    });
    return v;
  }

  #call(dot: unknown, name: string, line: number, argNodes: Operand[], final: Final): unknown {
    const fn = this.#opts.functions.get(name);
    if (!fn) throw new TemplateFault(line, `${JSON.stringify(name)} is not a defined function`);
    if (fn === builtinAnd || fn === builtinOr) return this.#andOr(dot, fn === builtinOr, line, argNodes, final);
    const args = argNodes.map((a) => this.#arg(dot, a));
    if (final !== NO_FINAL) args.push(final);
    try {
      const v = fn(...args);
      return v === undefined ? null : v;
    } catch (e) {
      if (e instanceof TemplateFault) throw e;
      const msg = e instanceof Error ? e.message : String(e);
      if (e instanceof ArgumentError) throw new TemplateFault(line, msg, 'check the arguments of this call against the function\'s documentation');
      throw new TemplateFault(line, `error calling ${name}: ${msg}`);
    }
  }

  #andOr(dot: unknown, isOr: boolean, line: number, argNodes: Operand[], final: Final): unknown {
    if (argNodes.length === 0 && final === NO_FINAL) {
      throw new TemplateFault(line, `wrong number of args for ${isOr ? 'or' : 'and'}: want at least 1 got 0`);
    }
    const stopWhen = isOr;
    let v: unknown = null;
    for (const a of argNodes) {
      v = this.#arg(dot, a);
      if (isTrue(v) === stopWhen) return v;
    }
    return final === NO_FINAL ? v : final;
  }
}

function describe(n: Operand): string {
  switch (n.kind) {
    case 'string': return JSON.stringify(n.value);
    case 'number': return n.text;
    case 'bool': return String(n.value);
    case 'dot': return '.';
    case 'field': return '.' + n.names.join('.');
    case 'variable': return n.name + n.fields.map((f) => '.' + f).join('');
    default: return n.kind;
  }
}
