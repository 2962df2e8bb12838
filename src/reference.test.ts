import test from 'ava';
import { parseReference, formatReference, familiarName, isDigestOnly, taggedName } from './reference.js';
import { isAirgapError } from './errors.js';

const D = 'sha256:' + 'a'.repeat(64);

const valid: [string, string][] = [
  ['redis', 'docker.io/library/redis:latest'],
  ['redis:7', 'docker.io/library/redis:7'],
  ['library/redis:7', 'docker.io/library/redis:7'],
  ['docker.io/redis:7', 'docker.io/library/redis:7'],
  ['index.docker.io/library/redis', 'docker.io/library/redis:latest'],
  ['registry-1.docker.io/bitnami/redis:7.2', 'docker.io/bitnami/redis:7.2'],
  ['org/app:1.0', 'docker.io/org/app:1.0'],
  ['quay.io/my-org/api:v1.0.1', 'quay.io/my-org/api:v1.0.1'],
  ['registry.example.com:5000/team/sub/app:2', 'registry.example.com:5000/team/sub/app:2'],
  ['localhost/app', 'localhost/app:latest'],
  ['localhost:5000/app:x', 'localhost:5000/app:x'],
  ['127.0.0.1:5000/a/b', '127.0.0.1:5000/a/b:latest'],
  ['[::1]:5000/app:1', '[::1]:5000/app:1'],
  ['Registry.Example.COM/app:1', 'Registry.Example.COM/app:1'],
  [`quay.io/org/app:1.0@${D}`, `quay.io/org/app:1.0@${D}`],
  [`quay.io/org/app@${D}`, `quay.io/org/app@${D}`],
  ['a/b__c/d-e.f:Tag_1.x-y', 'docker.io/a/b__c/d-e.f:Tag_1.x-y'],
  ['gcr.io/distroless/static-debian12:nonroot', 'gcr.io/distroless/static-debian12:nonroot'],
];

for (const [input, want] of valid) {
  test(`parses ${input}`, (t) => {
    t.is(formatReference(parseReference(input)), want);
  });
}

const invalidRefs: [string, RegExp][] = [
  ['', /empty/],
  [' redis', /spaces/],
  ['Redis:7', /lower-case/],
  ['quay.io/Org/app', /lower-case/],
  ['redis:', /not a valid tag/],
  ['redis:-bad', /not a valid tag/],
  [`redis:${'x'.repeat(129)}`, /not a valid tag/],
  ['redis@sha256:abc', /not a digest|64/],
  [`redis@sha256:${'A'.repeat(64)}`, /64 lower-case/],
  ['quay.io/', /no repository/],
  ['quay.io//app', /path component/],
  ['app/', /path component/],
  ['bad_host.io:99999x/app', /registry host|tag/],
  [`${'a'.repeat(260)}`, /longer than/],
  ['app:1:2', /path component|tag/],
];

for (const [input, why] of invalidRefs) {
  test(`rejects ${JSON.stringify(input)}`, (t) => {
    const err = t.throws(() => parseReference(input, 'deploy.yaml:12'));
    t.true(isAirgapError(err, 'E_REFERENCE'));
    t.regex(err!.message, why);
    t.true(err!.message.startsWith('deploy.yaml:12: '));
  });
}

test('digest-only and tagged forms', (t) => {
  t.true(isDigestOnly(parseReference(`quay.io/org/app@${D}`)));
  t.false(isDigestOnly(parseReference(`quay.io/org/app:1@${D}`)));
  t.false(isDigestOnly(parseReference('quay.io/org/app')));
  t.is(taggedName(parseReference(`quay.io/org/app:1@${D}`)), 'quay.io/org/app:1');
});

test('familiar names', (t) => {
  t.is(familiarName(parseReference('docker.io/library/redis:7')), 'redis');
  t.is(familiarName(parseReference('bitnami/redis')), 'bitnami/redis');
  t.is(familiarName(parseReference('quay.io/org/app')), 'quay.io/org/app');
});
