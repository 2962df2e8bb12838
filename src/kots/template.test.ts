import test from 'ava';
import { isAirgapError } from '../errors.js';
import { sprigFunctions } from './sprig.js';
import { branchCount, hasKotsTemplate, KotsTemplateError, renderKots, templateCalls, type TemplateFunction } from './template.js';

const calls: string[] = [];
const fns = new Map<string, TemplateFunction>([
  ...sprigFunctions(),
  ['ConfigOption', (k: unknown) => ({ a: 'A', empty: '', multi: 'x\ny', tmpl: 'repl{{ upper "inner" }}' } as Record<string, string>)[k as string] ?? ''],
  ['upper', (s: unknown) => String(s).toUpperCase()],
  ['boom', () => { throw new Error('boom was called'); }],
  ['track', (s: unknown) => { calls.push(String(s)); return s; }],
  ['num', () => 1000000],
  ['nothing', () => undefined],
]);

const render = (text: string, extra: { forceBranch?: number; line?: number } = {}): string =>
  renderKots(text, { file: 'app/deploy.yaml', functions: fns, ...extra });

function fails(t: import('ava').ExecutionContext, text: string, message: RegExp, extra: { line?: number } = {}): KotsTemplateError {
  const e = t.throws(() => render(text, extra), { instanceOf: KotsTemplateError })!;
  t.regex(e.message, message);
  t.is(e.code, 'E_MANIFESTS');
  t.true(isAirgapError(e, 'E_MANIFESTS'));
  t.truthy(e.hint);
  t.false(e.message.includes('\n'));
  return e;
}

// ---------------------------------------------------------------- delimiters and plain text

test('text outside the two KOTS forms is left byte for byte, Helm and Prometheus templates included', (t) => {
  const text = 'a: {{ .Values.x }}\nb: "{{ $labels.instance }}"\nc: {{- include "x" . }}\n{{replicaCount}}x\n';
  t.is(render(text.replace('{{replicaCount}}', '{{ replicaCount }}')), text.replace('{{replicaCount}}', '{{ replicaCount }}'));
  t.is(render('no templates at all\r\n\ttabs'), 'no templates at all\r\n\ttabs');
});

test('both delimiter forms render, mixed with Helm text', (t) => {
  t.is(render('x: {{repl ConfigOption "a"}} y: repl{{ ConfigOption "a" }} z: {{ .Values.z }}'), 'x: A y: A z: {{ .Values.z }}');
  t.is(render("image: '{{repl ConfigOption \"a\" }}'"), "image: 'A'");
  t.is(render('{{replConfigOption "a"}}'), 'A'); // no space needed after repl, as in Go's lexer
});

test('KOTS runs the repl{{ pass over the {{repl pass output', (t) => {
  t.is(render('{{repl ConfigOption "tmpl"}}'), 'INNER');
  // and an if opened in one form cannot be closed in the other
  fails(t, '{{repl if true}}x repl{{ end }}', /never closed/);
});

test('{{replicas}} is read by KOTS as {{repl icas}}: an error, and not reported as a KOTS template', (t) => {
  fails(t, 'replicas: {{replicas}}', /function "icas" not defined/);
  t.false(hasKotsTemplate('replicas: {{replicas}} {{ .Values.repl }}'));
  t.true(hasKotsTemplate('{{repl ConfigOption "a"}}'));
  t.true(hasKotsTemplate('x repl{{ ConfigOption "a" }}'));
  t.true(hasKotsTemplate('{{replConfigOption "a"}}'));
  t.true(hasKotsTemplate('{{repl- if true -}}'));
});

test('trim markers need a space and trim all white space on their side', (t) => {
  t.is(render('a \n\t {{repl- "x" -}} \n b'), 'axb');
  t.is(render('a {{repl- "x" }} b'), 'ax b');
  t.is(render('a {{repl "x" -}} b'), 'a xb');
  t.is(render('a {{repl -3}} b'), 'a -3 b'); // "-3" is a number, not a trim marker
  t.is(render('a\n  repl{{- "x" -}}\n  b'), 'axb');
});

test('comments are dropped, trim markers included; a comment must touch the delimiter', (t) => {
  t.is(render('a{{repl/* a comment\nover lines */}}b'), 'ab');
  t.is(render('a {{repl- /* c */ -}} b'), 'ab');
  fails(t, '{{repl /* c */}}', /unexpected|unrecognized/);
});

test('actions may span lines', (t) => {
  t.is(render('{{repl ConfigOption\n  "a"}}'), 'A');
});

// ---------------------------------------------------------------- literals and printing

test('literals: strings with Go escapes and raw strings, numbers, bools, chars', (t) => {
  t.is(render('{{repl "a\\tb\\n\\u00e9\\x41\\101\\\\"}}'), 'a\tb\né' + 'AA\\');
  t.is(render('{{repl `raw \\n "q"`}}'), 'raw \\n "q"');
  t.is(render('{{repl "has }} inside"}}'), 'has }} inside');
  t.is(render('{{repl 42}} {{repl -7}} {{repl 0x1F}} {{repl 0o17}} {{repl 017}} {{repl 1_000}}'), '42 -7 31 15 15 1000');
  t.is(render('{{repl 1.5}} {{repl 3.0}} {{repl 1e3}} {{repl .5}}'), '1.5 3 1000 0.5');
  t.is(render('{{repl true}} {{repl false}} {{repl \'a\'}}'), 'true false 97');
});

test('values print as Go prints them: <no value>, floats as %v, lists and maps Go-style', (t) => {
  t.is(render('{{repl .}} {{repl .Values.x}} {{repl nothing}}'), '<no value> <no value> <no value>');
  t.is(render('{{repl 1000000.0}} {{repl 123456.0}} {{repl 0.0001}} {{repl 0.00001}} {{repl num}}'), '1e+06 123456 0.0001 1e-05 1e+06');
  t.is(render('{{repl list 1 "a" 2.5 true nil}}'), '[1 a 2.5 true <nil>]');
  t.is(render('{{repl dict "b" 2 "a" (list "x" "y")}}'), 'map[a:[x y] b:2]');
  t.is(render('{{repl dict}} {{repl list}}'), 'map[] []');
});

// ---------------------------------------------------------------- pipelines, variables, parentheses

test('a pipeline passes its value as the last argument', (t) => {
  t.is(render('{{repl "x" | printf "%s-%s" "a"}}'), 'a-x');
  t.is(render('{{repl ConfigOption "a" | printf "<%s>" | upper}}'), '<A>');
  t.is(render('{{repl printf "%s" (ConfigOption "a" | upper)}}'), 'A');
});

test('variables: declare, assign, scope ends with the control structure', (t) => {
  t.is(render('{{repl $x := ConfigOption "a"}}{{repl $x}}{{repl $x = "b"}}{{repl $x}}'), 'Ab');
  t.is(render('{{repl $x := 1}}{{repl if true}}{{repl $x = 2}}{{repl end}}{{repl $x}}'), '2');
  t.is(render('{{repl $}}'), '<no value>');
  fails(t, '{{repl if true}}{{repl $y := 1}}{{repl end}}{{repl $y}}', /undefined variable "\$y"/);
  fails(t, '{{repl $z = 1}}', /undefined variable/);
});

test('field access on maps; missing keys and nil receivers give <no value>', (t) => {
  t.is(render('{{repl (dict "a" (dict "b" "deep")).a.b}}'), 'deep');
  t.is(render('{{repl $d := dict "k" "v"}}{{repl $d.k}} {{repl $d.missing}} {{repl $d.missing.more}}'), 'v <no value> <no value>');
  fails(t, '{{repl $s := "str"}}{{repl $s.Field}}', /can't evaluate field Field in type string/);
});

// ---------------------------------------------------------------- if / else / with / range

test('truthiness: false, 0, nil, empty string, list and map are false', (t) => {
  const truth = (expr: string): string => render(`{{repl if ${expr}}}T{{repl else}}F{{repl end}}`);
  for (const f of ['false', '0', '0.0', 'nothing', '""', 'ConfigOption "empty"', 'list', 'dict', '.Missing']) t.is(truth(f), 'F', f);
  for (const tr of ['true', '1', '-1', '0.5', '" "', '"0"', '"false"', 'list 0', 'dict "a" ""']) t.is(truth(tr), 'T', tr);
  fails(t, '{{repl if nil}}{{repl end}}', /nil is not a command/); // Go's rule for a bare nil
});

test('if / else if / else chains, nested, across lines and both forms', (t) => {
  const chain = (a: string, b: string): string =>
    render(`{{repl if ${a}}}one{{repl else if ${b}}}two{{repl else}}three{{repl end}}`);
  t.is(chain('true', 'true'), 'one');
  t.is(chain('false', 'true'), 'two');
  t.is(chain('false', 'false'), 'three');
  const nested = `{{repl if eq (ConfigOption "a") "A"}}
  {{repl- if false}}x{{repl else}}inner{{repl end}}
{{repl else}}outer-else{{repl end}}`;
  t.is(render(nested), 'inner\n'); // {{repl- trims the newline and indentation before it
  t.is(render('repl{{ if true }}r{{ .Helm }}repl{{ else }}s repl{{ end }}'), 'r{{ .Helm }}');
});

test('with sets dot when the value is non-empty; else with chains', (t) => {
  t.is(render('{{repl with ConfigOption "a"}}[{{repl .}}]{{repl else}}none{{repl end}}'), '[A]');
  t.is(render('{{repl with ConfigOption "empty"}}[{{repl .}}]{{repl else}}none{{repl end}}'), 'none');
  t.is(render('{{repl with ""}}1{{repl else with "b"}}{{repl .}}{{repl end}}'), 'b');
});

test('range over lists, maps (sorted keys), ints; else; break and continue', (t) => {
  t.is(render('{{repl range list "a" "b"}}<{{repl .}}>{{repl end}}'), '<a><b>');
  t.is(render('{{repl range $i, $e := list "a" "b"}}{{repl $i}}={{repl $e}};{{repl end}}'), '0=a;1=b;');
  t.is(render('{{repl range $k, $v := dict "z" 1 "a" 2}}{{repl $k}}{{repl $v}}{{repl end}}'), 'a2z1');
  t.is(render('{{repl range $e := list 1 2}}{{repl $e}}{{repl end}}'), '12');
  t.is(render('{{repl range 3}}{{repl .}}{{repl end}}'), '012');
  t.is(render('{{repl range list}}x{{repl else}}empty{{repl end}}'), 'empty');
  t.is(render('{{repl range list 1 2 3 4}}{{repl if eq . 2}}{{repl continue}}{{repl end}}{{repl if eq . 4}}{{repl break}}{{repl end}}{{repl .}}{{repl end}}'), '13');
  fails(t, '{{repl break}}', /outside/);
  fails(t, '{{repl range "str"}}{{repl end}}', /range can't iterate over str/);
});

// ---------------------------------------------------------------- builtins

test('and/or short-circuit and return the deciding operand; the other side is never called', (t) => {
  calls.length = 0;
  t.is(render('{{repl and 0 (boom)}}'), '0');
  t.is(render('{{repl and 1 "" (boom)}}'), '');
  t.is(render('{{repl and 1 "last"}}'), 'last');
  t.is(render('{{repl or "" "x" (boom)}}'), 'x');
  t.is(render('{{repl or 0 ""}}'), '');
  t.is(render('{{repl or (track "first") (track "second")}}'), 'first');
  t.deepEqual(calls, ['first']);
  t.is(render('{{repl if and (ConfigOption "empty") (boom)}}y{{repl else}}n{{repl end}}'), 'n');
  t.is(render('{{repl "piped" | and true}}'), 'piped');
  fails(t, '{{repl and}}', /wrong number of args for and: want at least 1 got 0/);
});

test('not, eq with several arguments, ne, lt, le, gt, ge', (t) => {
  t.is(render('{{repl not ""}} {{repl not 1}}'), 'true false');
  t.is(render('{{repl eq "b" "a" "b"}} {{repl eq 1 2 3}} {{repl eq "a" "a"}}'), 'true false true');
  t.is(render('{{repl ne 1 2}} {{repl lt 1 2}} {{repl le 2 2}} {{repl gt "b" "a"}} {{repl ge 1.5 2.5}}'), 'true true true true false');
  t.is(render('{{repl eq .Missing "x"}}'), 'false');
  fails(t, '{{repl eq 1 "1"}}', /error calling eq: incompatible types for comparison/);
  fails(t, '{{repl eq 1 1.0}}', /incompatible types/);
  fails(t, '{{repl lt true false}}', /invalid type for comparison/);
});

test('len, index, slice, print, println, printf, html, js, urlquery', (t) => {
  t.is(render('{{repl len "héllo"}} {{repl len (list 1 2)}} {{repl len (dict "a" 1)}}'), '6 2 1');
  t.is(render('{{repl index (list "a" "b") 1}} {{repl index (dict "k" "v") "k"}} {{repl index (dict) "x"}} {{repl index "abc" 0}}'), 'b v <no value> 97');
  fails(t, '{{repl index (list 1) 5}}', /index out of range: 5/);
  t.is(render('{{repl print 1 2 "a" "b" 3}}'), '1 2ab3');
  t.is(render('{{repl println 1 "a"}}'), '1 a\n');
  t.is(render('{{repl html "<a href=\'x\'>&"}}'), '&lt;a href=&#39;x&#39;&gt;&amp;');
  t.is(render('{{repl js "it\'s <b>"}}'), 'it\\\'s \\u003Cb\\u003E');
  t.is(render('{{repl urlquery "a b&c"}}'), 'a+b%26c');
});

test('printf verbs', (t) => {
  const p = (args: string): string => render(`{{repl printf ${args}}}`);
  t.is(p('"%s|%v|%q" "x" "y" "z\\n"'), 'x|y|"z\\n"');
  t.is(p('"%d|%5d|%-5d|%05d|%+d|%x|%X|%o|%b|%c" 42 42 42 42 42 255 255 8 5 65'), '42|   42|42   |00042|+42|ff|FF|10|101|A');
  t.is(p('"%f|%.2f|%8.3f|%e|%g|%v" 3.14159 3.14159 3.14159 1234.5678 0.000012 2.5'), '3.141590|3.14|   3.142|1.234568e+03|1.2e-05|2.5');
  t.is(p('"%t|%v|%%" true false'), 'true|false|%');
  t.is(p('"%.2f %.1f %.0f" 0.125 0.25 2.5'), '0.12 0.2 2'); // round half to even on the exact value
  t.is(p('"%d %s"'), '%!d(MISSING) %!s(MISSING)');
  t.is(p('"%d" "x"'), '%!d(string=x)');
  t.is(p('"%s" 1'), '%!s(int=1)');
  t.is(p('"x" 1'), 'x%!(EXTRA int=1)');
  t.is(p('"%v %s" (list 1 2) (list "a" "b")'), '[1 2] [a b]');
  t.is(p('"%x" "hi"'), '6869');
  t.is(p('"%q" 97'), "'a'");
  t.is(p('"%6.2s|" "abc"'), '    ab|');
  t.is(p('"%T %T %T %T" 1 "s" (list) .Missing'), 'int string []interface {} <nil>');
});

// ---------------------------------------------------------------- errors

test('errors name the function or construct and the line in the file', (t) => {
  let e = fails(t, 'a\nb\nc: {{repl Nope 1}}', /^app\/deploy\.yaml:3: function "Nope" not defined$/);
  t.is(e.line, 3);
  t.is(e.file, 'app/deploy.yaml');
  e = fails(t, 'x\n{{repl if true}}\nunclosed', /^app\/deploy\.yaml:2: \{\{repl if …\}\} is never closed with \{\{repl end\}\}$/);
  fails(t, '{{repl ConfigOption "a"', /unclosed action/);
  fails(t, 'a: {{repl upper (ConfigOption "a"}}', /unclosed left paren/);
  fails(t, '{{repl end}}', /unexpected \{\{repl end\}\}/);
  fails(t, '{{repl else}}', /unexpected \{\{repl else\}\}/);
  fails(t, '{{repl "unterminated}}', /unterminated quoted string/);
  fails(t, '{{repl boom}}', /error calling boom: boom was called/);
  fails(t, '{{repl "x" 1}}', /can't give argument to non-function "x"/);
  fails(t, '{{repl nil}}', /nil is not a command/);
  fails(t, '{{repl }}', /missing value/);
  fails(t, '{{repl 1 | 2}}', /unexpected|non-function/);
  fails(t, '{{repl define "x"}}{{repl end}}', /not supported/);
  // an unknown function fails even in a branch not taken, as Go checks at parse time
  fails(t, '{{repl if false}}{{repl Nope}}{{repl end}}', /function "Nope" not defined/);
});

test('error lines honour the starting line, and map back through the first pass', (t) => {
  fails(t, 'a\n{{repl Nope}}', /^app\/deploy\.yaml:11:/, { line: 10 });
  // pass one adds lines (a multi-line value); the pass-two error still points at the source line
  const e = fails(t, '{{repl ConfigOption "multi"}}\n{{repl ConfigOption "multi"}}\nrepl{{ Nope }}', /Nope/);
  t.is(e.line, 3);
});

// ---------------------------------------------------------------- discovery helpers

test('forceBranch takes branch k of every chain without evaluating conditions', (t) => {
  const text = '{{repl if boom}}A{{repl else if boom}}B{{repl else}}C{{repl end}}|{{repl if boom}}X{{repl end}}|{{repl if boom}}P{{repl else}}Q{{repl end}}';
  t.is(render(text, { forceBranch: 0 }), 'A|X|P');
  t.is(render(text, { forceBranch: 1 }), 'B|X|Q');
  t.is(render(text, { forceBranch: 2 }), 'C|X|Q');
  t.is(render(text, { forceBranch: 9 }), 'C|X|Q');
  t.is(branchCount(text), 3);
  t.is(render('{{repl if $v := boom}}[{{repl $v}}]{{repl end}}', { forceBranch: 0 }), '[<no value>]');
  // nested chains inside a forced branch are forced too
  t.is(render('{{repl if boom}}{{repl if boom}}a{{repl else}}b{{repl end}}{{repl end}}', { forceBranch: 1 }), 'b');
});

test('branchCount: the longest if-chain in either form, 0 without any', (t) => {
  t.is(branchCount('plain {{ if .Values.x }}{{ end }}'), 0);
  t.is(branchCount('{{repl if a}}{{repl end}}'), 1);
  t.is(branchCount('{{repl range list}}{{repl if a}}{{repl else if b}}{{repl else if c}}{{repl end}}{{repl end}} repl{{ if x }}repl{{ else }}repl{{ end }}'), 3);
  t.is(branchCount('repl{{ if x }}repl{{ else if y }}repl{{ else }}repl{{ end }}'), 3);
  t.throws(() => branchCount('{{repl if a}}'), { instanceOf: KotsTemplateError });
});

test('templateCalls finds every call with its literal arguments, in both forms and all branches', (t) => {
  const text = [
    'image: {{repl LocalImageName "quay.io/x:1"}}',
    '{{repl if ConfigOptionEquals "mode" "ha"}}',
    '  b: repl{{ "docker.io/y:2" | LocalImageName }}',
    '{{repl else}}c: {{repl LocalImageName (ConfigOption "db_image") }}{{repl end}}',
    'n: {{repl ParseInt "5" 10 | Add 1.5 true}}',
  ].join('\n');
  const found = templateCalls(text);
  t.deepEqual(found.filter((c) => c.name === 'LocalImageName'), [
    { name: 'LocalImageName', args: ['quay.io/x:1'], line: 1 },
    { name: 'LocalImageName', args: [undefined], line: 4 },
    { name: 'LocalImageName', args: ['docker.io/y:2'], line: 3 },
  ]);
  t.deepEqual(found.find((c) => c.name === 'ConfigOption'), { name: 'ConfigOption', args: ['db_image'], line: 4 });
  t.deepEqual(found.find((c) => c.name === 'ConfigOptionEquals'), { name: 'ConfigOptionEquals', args: ['mode', 'ha'], line: 2 });
  t.deepEqual(found.find((c) => c.name === 'Add'), { name: 'Add', args: [1.5, true, undefined], line: 5 });
  t.deepEqual(found.find((c) => c.name === 'ParseInt'), { name: 'ParseInt', args: ['5', 10], line: 5 });
  t.deepEqual(templateCalls('{{ .Values.image }}'), []);
});

test('rendering is linear: a large file with many actions renders quickly', (t) => {
  const line = 'key: {{repl ConfigOption "a"}} {{ .Values.keep }}\n';
  const text = line.repeat(50_000);
  const start = performance.now();
  const out = render(text);
  const ms = performance.now() - start;
  t.is(out.length, 'key: A {{ .Values.keep }}\n'.length * 50_000);
  t.true(ms < 5000, `took ${ms} ms`);
  const oneLine = ('{{repl "x"}}').repeat(50_000);
  t.is(render(oneLine).length, 50_000);
});
