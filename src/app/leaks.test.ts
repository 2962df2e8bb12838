import test from 'ava';
import { findSecret, licenseDocuments, refuseLicenseInManifests, refusePasswordInManifests } from './leaks.js';
import { isAirgapError } from '../errors.js';

const ID = '2Vz7QkQ1rT9wXbYp4LmN8sHdFgJ';
const b64 = (s: string) => Buffer.from(s).toString('base64');

test('the ID as written, with its line', (t) => {
  t.deepEqual(findSecret(`a: 1\nb: "${ID}"\n`, ID), { line: 2, how: 'as written' });
  t.is(findSecret('nothing here\n', ID), undefined);
});

test('base64 of the ID at every offset of the encoded value (all three alignments)', (t) => {
  for (const prefix of ['', 'x', 'xy', 'xyz', 'licenseID: ', '{"id":"']) {
    const value = b64(`${prefix}${ID}\nmore: text after it`);
    t.deepEqual(findSecret(`kind: Secret\ndata:\n  license: ${value}\n`, ID), { line: 3, how: 'base64-encoded' }, `prefix ${JSON.stringify(prefix)}`);
  }
  // The URL-safe alphabet too.
  const url = Buffer.from(`??>${ID}`).toString('base64url');
  t.is(findSecret(`v: ${url}\n`, ID)?.how, 'base64-encoded');
});

test('base64 wrapped over lines, and base64 inside base64 (a docker config auth in a Secret)', (t) => {
  const long = b64(`${'filler '.repeat(20)}${ID}${' end'.repeat(20)}`);
  const wrapped = long.match(/.{1,76}/g)!.join('\n    ');
  t.is(findSecret(`data:\n  license: |\n    ${wrapped}\n`, ID)?.how, 'base64-encoded');
  // Wrapped so narrowly that no line holds the encoded ID nor decodes to it: only the joined text does.
  const narrow = long.match(/.{1,8}/g)!.join('\n    ');
  const hit = findSecret(`data:\n  license: |\n    ${narrow}\n`, ID);
  t.is(hit?.how, 'base64-encoded');
  t.true((hit?.line ?? 0) > 3, 'a line of the block, where the ID starts');

  const config = JSON.stringify({ auths: { 'proxy.example.com': { auth: b64(`${ID}:${ID}`) } } });
  t.false(config.includes(ID));
  t.deepEqual(findSecret(`kind: Secret\ndata:\n  .dockerconfigjson: ${b64(config)}\n`, ID), { line: 3, how: 'base64-encoded' });
});

test('a short password does not match inside a word nor by chance in base64', (t) => {
  t.is(findSecret('image: nginx:latest\n', 'test'), undefined);
  t.is(findSecret('password: test\n', 'test')?.how, 'as written');
  t.is(findSecret(`x: ${b64('test')}\n`, 'test')?.how, 'base64-encoded');
  // Random base64 of unrelated data, with no encoding of the password in it.
  const noise = Buffer.from(Array.from({ length: 3000 }, (_, i) => (i * 7919) % 251)).toString('base64');
  t.is(findSecret(`x: ${noise}\n`, 'hunter22'), undefined);
});

test('KOTS License documents are found in any document and in Lists; another License kind is not', (t) => {
  t.deepEqual(licenseDocuments('a: 1\n---\napiVersion: kots.io/v1beta1\nkind: License\nspec: {}\n'), [3]);
  t.deepEqual(licenseDocuments('apiVersion: v1\nkind: List\nitems:\n  - apiVersion: kots.io/v1beta1\n    kind: License\n'), [4]);
  t.deepEqual(licenseDocuments('apiVersion: example.com/v1\nkind: License\n'), []);
});

test('the refusals name every file with its line, and never the secret', (t) => {
  const files = [
    { path: 'license.yaml', content: Buffer.from(`apiVersion: kots.io/v1beta1\nkind: License\nspec:\n  licenseID: ${ID}\n`) },
    { path: 'ok.yaml', content: Buffer.from('kind: ConfigMap\n') },
    { path: 'secret.yaml', content: Buffer.from(`kind: Secret\ndata:\n  id: ${b64(ID)}\n`) },
  ];
  const e = t.throws(() => refuseLicenseInManifests(files, ID));
  t.true(isAirgapError(e, 'E_MANIFESTS'));
  t.regex(e.message, /license\.yaml:1 \(a kind: License document\), secret\.yaml:3 \(the license ID, base64-encoded\)/);
  t.regex((e as { hint?: string }).hint ?? '', /move the file out of the --manifests directory/);
  t.false(`${e.message}${(e as { hint?: string }).hint}`.includes(ID));
  t.false(`${e.message}`.includes(b64(ID)));
  t.notThrows(() => refuseLicenseInManifests([files[1]!], ID));
  // Without a license (plan), the License document alone is found.
  t.throws(() => refuseLicenseInManifests(files, undefined), { message: /license\.yaml:1/ });

  const pw = 's3cr3t-Pa55word';
  const p = t.throws(() => refusePasswordInManifests([{ path: 'app/db.yaml', content: Buffer.from(`env:\n  - value: ${pw}\n`) }], pw));
  t.regex(p.message, /app\/db\.yaml:2 \(as written\)/);
  t.false(p.message.includes(pw));
  // Too short to tell from ordinary words: not searched.
  t.notThrows(() => refusePasswordInManifests([{ path: 'app/db.yaml', content: Buffer.from('user: admin\n') }], 'admin'));
});
