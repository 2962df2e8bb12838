import { readFile } from 'node:fs/promises';
import { LineCounter, isMap, isScalar, isSeq, parseAllDocuments, stringify, type YAMLMap } from 'yaml';
import { AirgapError } from '../errors.js';

/**
 * KOTS's Config screen (kots.io/v1beta1 `Config`) and the customer's answers to it
 * (kots.io/v1beta1 `ConfigValues`), evaluated as KOTS's config context does
 * (replicatedhq/kots pkg/template/config_context.go):
 * - an item's option is its value when it has one, else its default;
 * - an editable item takes the customer's value when ConfigValues gives one; a read-only item
 *   (`readonly: true`, or a type that is not an input: label, heading…) always takes the Config's;
 * - `default`, `value`, `when` are templates, rendered in dependency order (an item may read
 *   another through ConfigOption), each item once.
 * Unlike KOTS, an unknown item or a dependency cycle is an error, never a silent empty string.
 */

export interface ConfigItem {
  name: string;
  type: string;
  group: string;
  default?: string;
  value?: string;
  filename?: string;
  when?: string;
  required: boolean;
  hidden: boolean;
  readonly: boolean;
  /** select_one / radio choices (their names). */
  choices: string[];
  line: number;
}

export interface ConfigGroup { name: string; when?: string; items: ConfigItem[]; line: number }

export interface KotsConfig { file: string; groups: ConfigGroup[]; items: Map<string, ConfigItem> }

/** One item of a ConfigValues document. */
export interface ConfigValue { value?: string; valuePlaintext?: string; default?: string; filename?: string }

/** Types KOTS lets the customer edit (config_context.go isReadOnly); "" is text. */
const EDITABLE = new Set(['', 'bool', 'file', 'password', 'select', 'select_many', 'select_one', 'radio', 'dropdown', 'text', 'textarea']);

/**
 * A template that gives another answer each time it renders (KOTS's RandomString, sprig's rand*,
 * keys and certificates, the time): its first answer is kept, so a password never rotates. A
 * template that only reads other items is re-rendered instead, so it follows their changes.
 */
const GENERATES = /\b(RandomString|RandomBytes|randAlphaNum|randAlpha|randNumeric|randAscii|randBytes|uuidv4|genPrivateKey|genCA|genSelfSignedCert|genSignedCert|derivePassword|TLSCert|TLSKey|TLSCACert|TLSCertFromCA|TLSKeyFromCA|Now|NowFmt|now)\b/;

function scalarText(node: unknown): string | undefined {
  if (!isScalar(node)) return undefined;
  const v = node.value;
  if (v === null || v === undefined) return undefined;
  return typeof v === 'string' ? v : typeof v === 'number' || typeof v === 'boolean' ? String(v) : undefined;
}

function get(node: unknown, key: string): unknown {
  return isMap(node) ? node.get(key, true) : undefined;
}

function truthy(node: unknown): boolean {
  const v = isScalar(node) ? node.value : undefined;
  return v === true || v === 'true' || v === 1;
}

/** True for a kots.io Config object. */
export function isConfigObject(obj: unknown): obj is YAMLMap {
  const api = scalarText(get(obj, 'apiVersion'));
  return scalarText(get(obj, 'kind')) === 'Config' && api !== undefined && api.startsWith('kots.io/');
}

/** Reads the Config from its (unrendered) YAML document; templates stay as text in the strings. */
export function parseConfig(obj: YAMLMap, file: string, lines: LineCounter): KotsConfig {
  const lineOf = (n: unknown): number => lines.linePos((isMap(n) || isSeq(n) || isScalar(n) ? n.range?.[0] : undefined) ?? 0).line;
  const groups: ConfigGroup[] = [];
  const items = new Map<string, ConfigItem>();
  const groupList = get(get(obj, 'spec'), 'groups');
  if (groupList !== undefined && !isSeq(groupList)) {
    throw new AirgapError('E_MANIFESTS', `${file}:${lineOf(groupList)}: Config spec.groups must be a list`, { hint: 'write spec.groups as a list of groups with items' });
  }
  for (const g of isSeq(groupList) ? groupList.items : []) {
    const gname = scalarText(get(g, 'name')) ?? '';
    const group: ConfigGroup = { name: gname, items: [], line: lineOf(g) };
    const gwhen = scalarText(get(g, 'when'));
    if (gwhen !== undefined) group.when = gwhen;
    const list = get(g, 'items');
    for (const it of isSeq(list) ? list.items : []) {
      const name = scalarText(get(it, 'name'));
      if (name === undefined) {
        throw new AirgapError('E_MANIFESTS', `${file}:${lineOf(it)}: Config item without a name in group ${gname}`, { hint: 'give every Config item a name' });
      }
      if (items.has(name)) {
        throw new AirgapError('E_MANIFESTS', `${file}:${lineOf(it)}: Config item ${name} is defined twice (first at line ${items.get(name)!.line})`, { hint: 'give every Config item a unique name' });
      }
      const type = scalarText(get(it, 'type')) ?? 'text';
      const choices = get(it, 'items');
      const item: ConfigItem = {
        name, type, group: gname,
        required: truthy(get(it, 'required')),
        hidden: truthy(get(it, 'hidden')),
        readonly: truthy(get(it, 'readonly')) || !EDITABLE.has(type),
        choices: isSeq(choices) ? choices.items.map((c) => scalarText(get(c, 'name'))).filter((c): c is string => c !== undefined) : [],
        line: lineOf(it),
      };
      for (const key of ['default', 'value', 'filename', 'when'] as const) {
        const v = scalarText(get(it, key));
        if (v !== undefined) item[key] = v;
      }
      group.items.push(item);
      items.set(name, item);
    }
    groups.push(group);
  }
  return { file, groups, items };
}

/** Reads a ConfigValues file (--config-values). */
export async function readConfigValues(path: string): Promise<Map<string, ConfigValue>> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    throw new AirgapError('E_USAGE', `--config-values ${path}: cannot read it (${(e as NodeJS.ErrnoException).code ?? String(e)})`,
      { hint: 'pass a ConfigValues file (apiVersion: kots.io/v1beta1, kind: ConfigValues)' });
  }
  const hint = 'pass a ConfigValues file: apiVersion: kots.io/v1beta1, kind: ConfigValues, spec.values.<item>.value';
  const docs = parseAllDocuments(text, { prettyErrors: false });
  const list = Array.isArray(docs) ? docs : [];
  const broken = list.find((d) => d.errors.length > 0);
  if (broken) {
    const at = broken.errors[0]!.linePos?.[0]?.line;
    throw new AirgapError('E_USAGE', `--config-values ${path}${at !== undefined ? `:${at}` : ''}: not valid YAML`, { hint });
  }
  const doc = list.map((d) => d.contents).find((c) => scalarText(get(c, 'kind')) === 'ConfigValues');
  if (doc === undefined) throw new AirgapError('E_USAGE', `--config-values ${path}: no document with kind: ConfigValues`, { hint });
  const values = get(get(doc, 'spec'), 'values');
  const out = new Map<string, ConfigValue>();
  if (!isMap(values)) return out;
  for (const pair of values.items) {
    const name = scalarText(pair.key);
    if (name === undefined) continue;
    const v: ConfigValue = {};
    for (const key of ['value', 'valuePlaintext', 'default', 'filename'] as const) {
      const s = scalarText(get(pair.value, key));
      if (s !== undefined) v[key] = s;
    }
    out.set(name, v);
  }
  return out;
}

/** Go's strconv.ParseBool, as KOTS reads `when`. */
export function parseGoBool(s: string): boolean | undefined {
  if (['1', 't', 'T', 'TRUE', 'true', 'True'].includes(s)) return true;
  if (['0', 'f', 'F', 'FALSE', 'false', 'False'].includes(s)) return false;
  return undefined;
}

/** Renders one template string from the Config (where names file:line). */
export type ConfigRender = (text: string, where: { file: string; line: number }) => string;

interface Evaluated { value: string; default: string; filename: string; generated: boolean }

/**
 * The options of one Config with one set of customer values. ConfigOption and friends read it;
 * it renders each item's templates at most once, on first use.
 */
export class ConfigState {
  readonly #config: KotsConfig | undefined;
  readonly #values: Map<string, ConfigValue>;
  readonly #evaluated = new Map<string, Evaluated>();
  readonly #resolving: string[] = [];
  #render: ConfigRender = (t) => t;

  constructor(config: KotsConfig | undefined, values: Map<string, ConfigValue> = new Map()) {
    this.#config = config;
    this.#values = values;
  }

  /** The renderer for the Config's own templates (it needs this state's functions, so it comes after). */
  setRenderer(render: ConfigRender): void {
    this.#render = render;
  }

  get config(): KotsConfig | undefined {
    return this.#config;
  }

  has(name: string): boolean {
    return this.#config?.items.has(name) ?? false;
  }

  #item(name: string): ConfigItem {
    const item = this.#config?.items.get(name);
    if (item === undefined) {
      const known = this.#config === undefined ? 'the release has no kind: Config' : `the Config (${this.#config.file}) has no item "${name}"`;
      throw new Error(`unknown config item "${name}": ${known}`);
    }
    return item;
  }

  #eval(name: string): Evaluated {
    const done = this.#evaluated.get(name);
    if (done !== undefined) return done;
    const item = this.#item(name);
    if (this.#resolving.includes(name)) {
      throw new Error(`config items depend on each other in a cycle: ${[...this.#resolving.slice(this.#resolving.indexOf(name)), name].join(' -> ')}`);
    }
    this.#resolving.push(name);
    try {
      const file = this.#config!.file;
      const render = (t: string | undefined): string => (t === undefined ? '' : this.#render(t, { file, line: item.line }));
      const generates = (t: string | undefined): boolean => t !== undefined && GENERATES.test(t);
      const given = this.#values.get(name);
      const givenValue = given?.valuePlaintext !== undefined && given.valuePlaintext !== '' ? given.valuePlaintext : given?.value;
      const def = render(item.default);
      let ev: Evaluated;
      // A read-only item keeps the Config's value, except a generated one written back earlier
      // (a RandomString shown read-only must not rotate on the next run).
      const useGiven = givenValue !== undefined && givenValue !== ''
        && (!item.readonly || generates(item.value) || generates(item.default));
      if (useGiven) {
        ev = { value: givenValue, default: def, filename: given?.filename ?? '', generated: false };
      } else {
        const value = render(item.value);
        ev = {
          value, default: def, filename: render(item.filename),
          generated: (value !== '' && generates(item.value)) || (value === '' && def !== '' && generates(item.default)),
        };
      }
      this.#evaluated.set(name, ev);
      return ev;
    } finally {
      this.#resolving.pop();
    }
  }

  /** ConfigOption: the value, else the default. Throws for an unknown item. */
  option(name: string): string {
    const ev = this.#eval(name);
    return ev.value !== '' ? ev.value : ev.default;
  }

  filename(name: string): string {
    return this.#eval(name).filename;
  }

  /** Whether the item is shown: its group's and its own `when` (rendered, Go ParseBool; empty is true). */
  shown(name: string): boolean {
    const item = this.#item(name);
    const group = this.#config!.groups.find((g) => g.name === item.group);
    return this.#when(group?.when, group?.line ?? item.line) && this.#when(item.when, item.line);
  }

  #when(text: string | undefined, line: number): boolean {
    if (text === undefined) return true;
    const file = this.#config!.file;
    const s = this.#render(text, { file, line }).trim();
    if (s === '') return true;
    const b = parseGoBool(s);
    if (b === undefined) {
      throw new AirgapError('E_MANIFESTS', `${file}:${line}: when renders to "${s.slice(0, 40)}", not true or false`,
        { hint: 'make the when expression render to true or false (e.g. repl{{ ConfigOptionEquals "item" "value" }})' });
    }
    return b;
  }

  /** Every item evaluated, so that generated values exist and errors surface now. */
  evaluateAll(): void {
    for (const name of this.#config?.items.keys() ?? []) this.option(name);
  }

  /** Shown, required items without a value: what the customer must give before anything is done. */
  missingRequired(): ConfigItem[] {
    const out: ConfigItem[] = [];
    for (const item of this.#config?.items.values() ?? []) {
      if (item.required && this.shown(item.name) && this.option(item.name) === '') out.push(item);
    }
    return out;
  }

  /** Refuses the run when a required item is missing, naming each. */
  refuseMissingRequired(): void {
    const missing = this.missingRequired();
    if (missing.length === 0) return;
    throw new AirgapError('E_USAGE',
      `required config item(s) without a value: ${missing.map((m) => `${m.name} (${this.#config!.file}:${m.line})`).join(', ')}`,
      { hint: 'give each in --config-values (kind: ConfigValues, spec.values.<item>.value)' });
  }

  /**
   * The ConfigValues document to keep: every value the customer gave and every generated one, so
   * that a later run given this file renders the same (a password never rotates).
   */
  valuesDocument(appSlug: string): string {
    const values: Record<string, Record<string, string>> = {};
    const names = [...new Set([...this.#values.keys(), ...this.#evaluated.keys()])].sort();
    for (const name of names) {
      const ev = this.#evaluated.get(name);
      const given = this.#values.get(name);
      const item = this.#config?.items.get(name);
      const entry: Record<string, string> = {};
      if (ev !== undefined && (ev.generated || (given !== undefined && !item?.readonly))) {
        const v = ev.value !== '' ? ev.value : ev.default;
        if (item?.type === 'password') entry.valuePlaintext = v;
        else entry.value = v;
        if (ev.filename !== '') entry.filename = ev.filename;
      } else if (given !== undefined && ev === undefined) {
        // An answer to an item this release does not have: kept, so an upgrade that brings it back finds it.
        Object.assign(entry, given);
      }
      if (Object.keys(entry).length > 0) values[name] = entry;
    }
    return stringify({ apiVersion: 'kots.io/v1beta1', kind: 'ConfigValues', metadata: { name: appSlug }, spec: { values } });
  }
}
