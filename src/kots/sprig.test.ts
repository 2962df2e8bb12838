import test from 'ava';
import { sprigFunctions, toInt64 } from './sprig.js';
import { KotsTemplateError, renderKots } from './template.js';

const functions = sprigFunctions();
const render = (text: string): string => renderKots(text, { file: 'f.yaml', functions });

test('strings, with the piped value last', (t) => {
  t.is(render('{{repl "  x  " | trim}}|{{repl "abc" | upper}}|{{repl "ABC" | lower}}|{{repl "hello wide-world" | title}}'), 'x|ABC|abc|Hello Wide-World');
  t.is(render('{{repl "foobar" | trimPrefix "foo"}} {{repl "foobar" | trimSuffix "bar"}} {{repl "$$x$" | trimAll "$"}}'), 'bar foo x');
  t.is(render('{{repl "foobar" | contains "oba"}} {{repl "foobar" | hasPrefix "foo"}} {{repl "foobar" | hasSuffix "foo"}}'), 'true true false');
  t.is(render('{{repl "a-b-c" | replace "-" "_"}} {{repl "ab" | repeat 3}} {{repl " a b\tc " | nospace}}'), 'a_b_c ababab abc');
  t.is(render('{{repl "hello" | trunc 3}} {{repl "hello" | trunc -2}} {{repl "hello" | trunc 10}} {{repl substr 1 3 "hello"}} {{repl substr 2 -1 "hello"}}'), 'hel lo hello el llo');
  t.is(render('{{repl "a\\nb" | indent 2}}|{{repl "a" | nindent 2}}'), '  a\n  b|\n  a');
  t.is(render('{{repl quote "a\\"b" 1 nil}} {{repl squote "x" 2}} {{repl cat "a" 1 nil "b"}}'), '"a\\"b" "1" \'x\' \'2\' a 1 b');
  t.is(render('{{repl "x" | sha256sum}}'), '2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881');
  t.is(render('{{repl "hi" | b64enc}} {{repl "aGk=" | b64dec}} {{repl "a" | b64dec}}'), 'aGk= hi illegal base64 data at input byte 0');
  t.is(render('{{repl plural "one" "many" 1}} {{repl plural "one" "many" 2}}'), 'one many');
  t.throws(() => render('{{repl substr 4 9 "ab"}}'), { instanceOf: KotsTemplateError, message: /error calling substr: runtime error: slice bounds out of range/ });
  t.throws(() => render('{{repl upper 1}}'), { message: /wrong type for value in upper; expected string; got int/ });
});

test('default, empty, coalesce, ternary', (t) => {
  t.is(render('{{repl "x" | default "y"}} {{repl "" | default "y"}} {{repl 0 | default 5}} {{repl default "d"}}'), 'x y 5 d');
  t.is(render('{{repl empty ""}} {{repl empty 0}} {{repl empty (list)}} {{repl empty "a"}} {{repl empty false}}'), 'true true true false true');
  t.is(render('{{repl coalesce "" 0 "z" "w"}} {{repl coalesce "" 0}}'), 'z <no value>');
  t.is(render('{{repl ternary "yes" "no" true}} {{repl true | ternary "yes" "no"}} {{repl false | ternary "yes" "no"}}'), 'yes yes no');
});

test('conversions and int64 arithmetic', (t) => {
  t.is(render('{{repl atoi "42"}} {{repl atoi "x"}} {{repl int "0x10"}} {{repl int64 "3.0"}} {{repl int 3.9}} {{repl float64 "1.5"}} {{repl toString 5}}'), '42 0 16 3 3 1.5 5');
  t.is(render('{{repl add 1 2 "3"}} {{repl add1 1}} {{repl sub 5 7}} {{repl mul 2 3 4}} {{repl div 7 2}} {{repl mod -7 3}}'), '6 2 -2 24 3 -1');
  t.is(render('{{repl max 1 7 3}} {{repl min 4 2 8}} {{repl maxf 1 2.5}} {{repl floor 1.7}} {{repl ceil 1.2}}'), '7 2 2.5 1 2');
  t.throws(() => render('{{repl div 1 0}}'), { message: /integer divide by zero/ });
  t.is(toInt64('017'), 15n);
  t.is(toInt64('09'), 0n);
});

test('lists and dicts', (t) => {
  t.is(render('{{repl list 1 2 | len}} {{repl first (list "a" "b")}} {{repl last (list "a" "b")}} {{repl rest (list 1 2 3)}} {{repl initial (list 1 2 3)}}'), '2 a b [2 3] [1 2]');
  t.is(render('{{repl join "," (list "a" 1 nil "b")}} {{repl splitList "," "a,b"}} {{repl split "," "a,b"}}'), 'a,1,b [a b] map[_0:a _1:b]');
  t.is(render('{{repl has 2 (list 1 2)}} {{repl has "2" (list 1 2)}} {{repl uniq (list 1 1 2)}} {{repl without (list 1 2 3) 2}} {{repl reverse (list 1 2)}}'), 'true false [1 2] [1 3] [2 1]');
  t.is(render('{{repl append (list 1) 2}} {{repl prepend (list 1) 0}} {{repl concat (list 1) (list 2 3)}} {{repl compact (list 1 "" 0 "a")}} {{repl slice (list 1 2 3) 1}}'), '[1 2] [0 1] [1 2 3] [1 a] [2 3]');
  t.is(render('{{repl $d := dict "a" 1 "b"}}{{repl $d}} {{repl get $d "a"}} {{repl get $d "zz"}} {{repl hasKey $d "b"}} {{repl keys $d | sortAlpha}}'), 'map[a:1 b:] 1  true [a b]');
  t.is(render('{{repl $d := dict "a" 1}}{{repl $_ := set $d "c" 3}}{{repl $d}} {{repl pick $d "a"}} {{repl omit $d "a"}} {{repl dig "a" "x" "def" (dict "a" (dict "x" 5))}}'), 'map[a:1 c:3] map[a:1] map[c:3] 5');
  t.is(render('{{repl until 3}} {{repl untilStep 0 10 4}}'), '[0 1 2] [0 4 8]');
  t.throws(() => render('{{repl first "str"}}'), { message: /Cannot find first on type string/ });
});

test('toJson and fromJson follow encoding/json', (t) => {
  t.is(render('{{repl dict "b" (list 1 2.5 "<x>") "a" nil | toJson}}'), '{"a":null,"b":[1,2.5,"\\u003cx\\u003e"]}');
  t.is(render('{{repl dict "a" "<x>" | toRawJson}}'), '{"a":"<x>"}');
  t.is(render('{{repl dict "a" (list 1) | toPrettyJson}}'), '{\n  "a": [\n    1\n  ]\n}');
  t.is(render('{{repl $v := fromJson "{\\"k\\": [1, \\"x\\"]}"}}{{repl $v.k}} {{repl index $v.k 0 | printf "%T"}}'), '[1 x] float64');
  t.is(render('{{repl fromJson "not json"}}'), '<no value>');
});

test('regular expressions', (t) => {
  t.is(render('{{repl regexMatch "^[a-z]+$" "abc"}} {{repl regexMatch "(" "abc"}} {{repl regexFind "[0-9]+" "ab12cd34"}}'), 'true false 12');
  t.is(render('{{repl regexFindAll "[0-9]" "a1b2c3" 2}} {{repl regexReplaceAll "a(x*)b" "-ab-axxb-" "${1}W"}} {{repl regexReplaceAllLiteral "a(x*)b" "-ab-" "$1"}}'), '[1 2] -W-xxW- -$1-');
  t.is(render('{{repl regexSplit "z+" "pizza" -1}} {{repl regexSplit "z+" "pizza" 1}}'), '[pi a] [pizza]');
});

test('random functions and uuidv4', (t) => {
  t.regex(render('{{repl randAlphaNum 50}}'), /^[A-Za-z0-9]{50}$/);
  t.regex(render('{{repl randNumeric 5}}'), /^[0-9]{5}$/);
  t.regex(render('{{repl uuidv4}}'), /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
});
