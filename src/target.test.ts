import test from 'ava';
import { parseTargetRegistry, targetName, checkCollisions } from './target.js';
import { parseReference } from './reference.js';
import { isAirgapError } from './errors.js';

test('parses HOST[:PORT]/NAMESPACE', (t) => {
  t.deepEqual(parseTargetRegistry('reg.local:5000/team/app'), { host: 'reg.local:5000', namespace: 'team/app' });
  t.deepEqual(parseTargetRegistry('localhost/acme/'), { host: 'localhost', namespace: 'acme' });
  t.deepEqual(parseTargetRegistry('https://reg.example.com/acme'), { host: 'reg.example.com', namespace: 'acme', scheme: 'https' });
  t.deepEqual(parseTargetRegistry('HTTP://reg.example.com/acme'), { host: 'reg.example.com', namespace: 'acme', scheme: 'http' });
  for (const bad of ['reg.local', '/ns', 'reg.local/', 'reg.local/Acme', 'reg local/ns', 'acme', 'oci://reg.local/acme']) {
    t.true(isAirgapError(t.throws(() => parseTargetRegistry(bad)), 'E_USAGE'), bad);
  }
});

test('an upper-case registry path is refused with the lower-case rule, and the lower-case spelling', (t) => {
  const e = t.throws(() => parseTargetRegistry('reg.local/Corp'));
  t.true(isAirgapError(e, 'E_USAGE'));
  t.regex(e!.message, /registry namespace \(path\) "Corp" .*must be lower case/);
  t.regex((e as { hint?: string }).hint ?? '', /reg\.local\/corp/);
});

test('pushed names keep the last path component and the tag, never the digest', (t) => {
  const reg = parseTargetRegistry('reg.local:5000/acme');
  const d = 'sha256:' + 'b'.repeat(64);
  t.is(targetName(reg, parseReference('quay.io/my-org/api:v1.0.1')).full, 'reg.local:5000/acme/api:v1.0.1');
  t.is(targetName(reg, parseReference('redis:7')).full, 'reg.local:5000/acme/redis:7');
  t.is(targetName(reg, parseReference(`quay.io/a/b/c:1@${d}`)).full, 'reg.local:5000/acme/c:1');
  t.true(isAirgapError(t.throws(() => targetName(reg, parseReference(`quay.io/a/c@${d}`))), 'E_DIGEST_ONLY'));
});

test('two sources on one pushed name are a collision; one source under two refs is not', (t) => {
  const reg = parseTargetRegistry('reg.local/acme');
  const n = (r: string) => targetName(reg, parseReference(r));
  t.notThrows(() => checkCollisions([n('quay.io/a/api:1'), n('quay.io/a/api:2'), n('quay.io/a/api:1')]));
  const e = t.throws(() => checkCollisions([n('quay.io/a/api:1'), n('docker.io/b/api:1')]));
  t.true(isAirgapError(e, 'E_COLLISION'));
  t.regex(e!.message, /quay\.io\/a\/api:1 and docker\.io\/b\/api:1 → reg\.local\/acme\/api:1/);
});

test('--keep-path keeps the whole source repository path under the namespace', (t) => {
  const reg = parseTargetRegistry('reg.local:5000/acme');
  t.is(targetName(reg, parseReference('quay.io/acme/api:1'), true).full, 'reg.local:5000/acme/acme/api:1');
  t.is(targetName(reg, parseReference('redis:7'), true).full, 'reg.local:5000/acme/library/redis:7');
  const n = (r: string) => targetName(reg, parseReference(r), true);
  t.notThrows(() => checkCollisions([n('quay.io/a/api:1'), n('docker.io/b/api:1')]), 'the familiar collision is gone');
  t.true(isAirgapError(t.throws(() => checkCollisions([n('quay.io/a/api:1'), n('ghcr.io/a/api:1')])), 'E_COLLISION'),
    'the same path on two source registries still lands on one name, and is refused');
});
