import test from 'ava';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LineCounter, parse, parseDocument, type YAMLMap } from 'yaml';
import { ConfigState, parseConfig, readConfigValues, type ConfigValue } from './config.js';

const CONFIG = `apiVersion: kots.io/v1beta1
kind: Config
metadata:
  name: c
spec:
  groups:
    - name: db
      items:
        - name: db_type
          type: select_one
          default: embedded
          items:
            - name: embedded
            - name: external
        - name: db_host
          type: text
          when: 'repl{{ eq db_type external }}'
          required: true
        - name: password
          type: password
          default: 'repl{{ RandomString }}'
        - name: url
          type: label
          value: 'repl{{ opt db_type }}://host'
        - name: a
          default: 'repl{{ opt b }}'
        - name: b
          default: 'repl{{ opt a }}'
        - name: count
          default: 3
`;

/**
 * A stand-in for the template engine, so that these tests are about the Config alone:
 * `repl{{ opt X }}` reads item X, `repl{{ eq X V }}` compares, `repl{{ RandomString }}` counts up.
 */
function state(values: Record<string, ConfigValue> = {}): ConfigState {
  const lines = new LineCounter();
  const doc = parseDocument(CONFIG, { lineCounter: lines });
  const s = new ConfigState(parseConfig(doc.contents as YAMLMap, 'config.yaml', lines), new Map(Object.entries(values)));
  let n = 0;
  s.setRenderer((text) => text.replace(/repl\{\{ (\w+) ?(\w*) ?(\w*) \}\}/g, (_m, fn: string, a: string, b: string) => {
    if (fn === 'opt') return s.option(a);
    if (fn === 'eq') return String(s.option(a) === b);
    if (fn === 'RandomString') return `generated-${++n}`;
    throw new Error(fn);
  }));
  return s;
}

test('an option is its value, else its default; a number default reads as text', (t) => {
  const s = state();
  t.is(s.option('db_type'), 'embedded');
  t.is(s.option('count'), '3');
  t.is(s.option('url'), 'embedded://host');
});

test('the customer value wins over the default, not over a read-only item', (t) => {
  const s = state({ db_type: { value: 'external' }, url: { value: 'typed://by-hand' } });
  t.is(s.option('db_type'), 'external');
  t.is(s.option('url'), 'external://host', 'a label keeps the Config\'s value, rendered with the customer\'s choice');
});

test('valuePlaintext counts as the value', (t) => {
  t.is(state({ password: { valuePlaintext: 'pw-given' } }).option('password'), 'pw-given');
});

test('a generated default is generated once and written back; a re-run given it renders the same', (t) => {
  const s = state({ db_type: { value: 'embedded' } });
  const first = s.option('password');
  t.is(s.option('password'), first, 'each item is rendered once');
  s.option('url');
  s.option('count');
  const doc = parse(s.valuesDocument("shop")) as { kind: string; spec: { values: Record<string, Record<string, string> | undefined> } };
  t.is(doc.kind, 'ConfigValues');
  t.deepEqual(doc.spec.values.password, { valuePlaintext: first });
  t.deepEqual(doc.spec.values.db_type, { value: 'embedded' });
  t.is(doc.spec.values.count, undefined, 'a plain default is not pinned: a new release may change it');
  t.is(doc.spec.values.url, undefined, 'a value derived from other items follows them');
  const again = state(Object.fromEntries(Object.entries(doc.spec.values).filter((e): e is [string, Record<string, string>] => e[1] !== undefined)));
  t.is(again.option('password'), first);
});

test('when hides an item; a shown required item without a value is named', (t) => {
  t.false(state().shown('db_host'));
  t.deepEqual(state().missingRequired().map((i) => i.name), []);
  const ext = state({ db_type: { value: 'external' } });
  t.true(ext.shown('db_host'));
  t.deepEqual(ext.missingRequired().map((i) => i.name), ['db_host']);
  t.throws(() => ext.refuseMissingRequired(), { message: /required config item\(s\) without a value: db_host \(config\.yaml:15\)/ });
  t.notThrows(() => state({ db_type: { value: 'external' }, db_host: { value: 'pg' } }).refuseMissingRequired());
});

test('an unknown item and a cycle are errors, never an empty string', (t) => {
  t.throws(() => state().option('nope'), { message: /unknown config item "nope"/ });
  t.throws(() => state().option('a'), { message: /cycle: a -> b -> a/ });
});

test('ConfigValues files are read; other documents are refused with the fix', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'airgap-config-'));
  const good = join(dir, 'v.yaml');
  await writeFile(good, 'apiVersion: kots.io/v1beta1\nkind: ConfigValues\nspec:\n  values:\n    a:\n      value: "1"\n    b:\n      valuePlaintext: secret\n      filename: b.txt\n');
  const v = await readConfigValues(good);
  t.deepEqual(v.get('a'), { value: '1' });
  t.deepEqual(v.get('b'), { valuePlaintext: 'secret', filename: 'b.txt' });
  const bad = join(dir, 'bad.yaml');
  await writeFile(bad, 'kind: Secret\n');
  await t.throwsAsync(readConfigValues(bad), { message: /no document with kind: ConfigValues/ });
  await t.throwsAsync(readConfigValues(join(dir, 'missing.yaml')), { message: /cannot read it \(ENOENT\)/ });
});
