import test from 'ava';
import { charsetRanges, formatGoTime, staticFunctions, yamlMarshalString } from './static.js';
import { sprigFunctions } from './sprig.js';
import { KotsTemplateError, renderKots } from './template.js';

const functions = new Map([...sprigFunctions(), ...staticFunctions()]);
const render = (text: string): string => renderKots(text, { file: 'f.yaml', functions });

// Cases from KOTS's own pkg/template/builder_test.go, plus the corners of its source.
test('string functions as KOTS defines them', (t) => {
  t.is(render('{{repl ToLower "ABcd87-()"}}'), 'abcd87-()');
  t.is(render('repl{{ (ToUpper "ABcd87-()") }}'), 'ABCD87-()');
  t.is(render('{{repl TrimSpace "   maybe spaces,\tmaybe not \t  "}}'), 'maybe spaces,\tmaybe not');
  t.is(render('{{repl Trim "aaaaamaybe spaces,\tmaybe not \taaa" "a"}}'), 'maybe spaces,\tmaybe not \t');
  t.is(render('{{repl Trim "  x  "}}'), 'x');
  t.is(render('repl{{ UrlEncode "?some url unsafe=%value"}}'), '%3Fsome+url+unsafe%3D%25value');
  t.is(render("{{repl UrlEncode \"a!*'()~\"}}"), 'a%21%2A%27%28%29~');
  t.is(render('{{repl Base64Encode "clear text"}}'), 'Y2xlYXIgdGV4dA==');
  t.is(render('{{repl Base64Decode "Y2xlYXIgdGV4dA=="}}'), 'clear text');
  t.is(render('{{repl Base64Decode "not base64!"}}'), '');
  t.is(render('{{repl Split "1,2,3,4" ","}}'), '[1 2 3 4]');
  t.is(render('{{repl len (Split "" ",")}}'), '1');
});

test('Add, Sub, Mult, Div: float if either side is a float, else int by the first operand, else 0', (t) => {
  t.is(render('{{repl Mult 34 2}}'), '68');
  t.is(render('{{repl Add 2 3}}'), '5');
  t.is(render('{{repl Sub 1.5 1}}'), '0.5');
  t.is(render('{{repl Div 15.0 2}}'), '7.5');
  t.is(render('{{repl Div 7 2}}'), '3');
  t.is(render('{{repl Div 1 0.0}}'), '+Inf');
  t.is(render('{{repl Add "2" 3}}'), '0');
  t.is(render('{{repl Add 2 "3"}}'), '2');
  t.throws(() => render('{{repl Div 1 0}}'), { instanceOf: KotsTemplateError, message: /error calling Div: runtime error: integer divide by zero/ });
  t.throws(() => render('{{repl Add 1}}'), { message: /wrong number of args for Add: want 2 got 1/ });
});

test('ParseBool, ParseInt, ParseUint, ParseFloat swallow errors as KOTS does', (t) => {
  t.is(render('{{repl ParseBool "True"}} {{repl ParseBool "1"}} {{repl ParseBool "yes"}}'), 'true true false');
  t.is(render('{{repl ParseInt "-15"}} {{repl ParseInt "ff" 16}} {{repl ParseInt "0x10" 0}} {{repl ParseInt "x"}}'), '-15 255 16 0');
  t.is(render('{{repl ParseInt "99999999999999999999"}}'), '9223372036854775807'); // Go returns the limit with its error
  t.is(render('{{repl ParseUint "15"}} {{repl ParseUint "-1"}}'), '15 0');
  t.is(render('{{repl ParseFloat "1.5"}} {{repl ParseFloat "abc"}} {{repl ParseFloat "1e6"}}'), '1.5 0 1e+06');
  t.is(render('{{repl Add (ParseInt "2") 1}}'), '3');
  t.throws(() => render('{{repl ParseBool true}}'), { message: /expected string; got bool/ });
});

test('HumanSize: go-units decimal sizes with 4 significant digits', (t) => {
  t.is(render('{{repl HumanSize 387346587344}}'), '387.3GB');
  t.is(render('{{repl HumanSize 1000}} {{repl HumanSize 999}} {{repl HumanSize 1500000.0}} {{repl HumanSize "12"}}'), '1kB 999B 1.5MB 0B');
});

test('YamlEscape: yaml.v3 Marshal, indented 20 spaces (KOTS builder_test case)', (t) => {
  t.is(render('{{repl print "abc\\n123 456\\nabc\\n" | YamlEscape }}'),
    '                    |\n                        abc\n                        123 456\n                        abc\n                    ');
  t.is(yamlMarshalString('plain'), 'plain\n');
  t.is(yamlMarshalString('true'), '"true"\n');
  t.is(yamlMarshalString('123'), '"123"\n');
  t.is(yamlMarshalString(''), '""\n');
  t.is(yamlMarshalString('yes'), '"yes"\n');
  t.is(yamlMarshalString('a: b'), "'a: b'\n");
  t.is(yamlMarshalString("it's 1"), "it's 1\n");
  t.is(yamlMarshalString("it's #1"), "'it''s #1'\n");
  t.is(yamlMarshalString('x #y'), "'x #y'\n");
  t.is(yamlMarshalString('- x'), "'- x'\n");
  t.is(yamlMarshalString('no newline\nat end'), '|-\n    no newline\n    at end\n');
  t.is(yamlMarshalString('trailing \nspace'), '"trailing \\nspace"\n');
});

test('RandomString: length, default charset [_A-Za-z0-9], charset classes, invalid charsets give ""', (t) => {
  const s = render('{{repl RandomString 64}}');
  t.is(s.length, 64);
  t.regex(s, /^[_A-Za-z0-9]+$/);
  t.regex(render('{{repl RandomString 40 "[a-c]"}}'), /^[abc]{40}$/);
  t.regex(render('{{repl RandomString 40 "[[:digit:]x]"}}'), /^[0-9x]{40}$/);
  t.regex(render('{{repl RandomString 40 "\\\\d"}}'), /^[0-9]{40}$/);
  t.is(render('{{repl RandomString 5 "a"}}'), '');
  t.is(render('{{repl RandomString 5 "[a]"}}'), '');
  t.is(render('{{repl RandomString 5 "[a-z]+"}}'), '');
  t.deepEqual(charsetRanges('[^\\x00-\\x{10FFFF}]'), undefined);
  t.not(render('{{repl RandomString 16}}'), render('{{repl RandomString 16}}'));
  t.is(Buffer.from(render('{{repl RandomBytes 12}}'), 'base64').length, 12);
});

test('Now and NowFmt format UTC times with Go layouts', (t) => {
  t.regex(render('{{repl Now}}'), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
  t.regex(render('{{repl NowFmt "20060102"}}'), /^\d{8}$/);
  const d = new Date(Date.UTC(2024, 2, 5, 14, 7, 9, 120));
  t.is(formatGoTime(d, '2006-01-02T15:04:05Z07:00'), '2024-03-05T14:07:09Z');
  t.is(formatGoTime(d, 'Mon Jan _2 3:04PM MST 2006'), 'Tue Mar  5 2:07PM UTC 2024');
  t.is(formatGoTime(d, 'January 2, 06 .000 .999 -0700'), 'March 5, 24 .120 .12 +0000');
});
