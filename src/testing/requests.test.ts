import test from 'ava';
import { FixtureLayout, inspectRaw } from './fixtures.js';
import { type TestRegistry, startRegistry } from './registry.js';
import { AccessLog, countRequests, requestKind, totalRequests } from './requests.js';
import { seedLayout } from './seed.js';

const digest = `sha256:${'a'.repeat(64)}`;

test('requests are named by method, what they address and status', (t) => {
  t.is(requestKind('GET', '/v2/', 200), 'GET ping /v2/ 200');
  t.is(requestKind('HEAD', `/v2/bench/app/blobs/${digest}`, 404), 'HEAD blob 404');
  t.is(requestKind('GET', `/v2/proxy/app/127.0.0.1:5000/org/api/manifests/${digest}`, 200), 'GET manifest by digest 200');
  t.is(requestKind('PUT', '/v2/bench/app/manifests/1.0', 201), 'PUT manifest by tag 201');
  t.is(requestKind('POST', `/v2/bench/app/blobs/uploads/?mount=${encodeURIComponent(digest)}&from=bench%2Fother`, 201), 'POST mount 201');
  t.is(requestKind('POST', '/v2/bench/app/blobs/uploads/', 202), 'POST upload 202');
  t.is(requestKind('PUT', `/v2/bench/app/blobs/uploads/0b1c?_state=x&digest=${encodeURIComponent(digest)}`, 201), 'PUT upload 201');
  t.is(requestKind('PATCH', '/v2/bench/app/blobs/uploads/0b1c', 202), 'PATCH upload 202');
  t.is(requestKind('GET', '/v2/bench/app/tags/list?n=1000', 200), 'GET tags 200');
  const counts = countRequests([
    '127.0.0.1 - - [01/Dec/2026:13:57:33 +0000] "HEAD /v2/foo/manifests/bar HTTP/1.1" 404 93 "" "curl/7.88.1"',
    '127.0.0.1 - - [01/Dec/2026:13:57:33 +0000] "GET /v2/ HTTP/1.1" 200 2 "" "curl/7.88.1"',
    'not a request line',
    '127.0.0.1 - - [01/Dec/2026:13:57:34 +0000] "GET /v2/ HTTP/1.1" 200 2 "" "skopeo/1.9.3"',
    '',
  ].join('\n'));
  t.deepEqual([...counts].sort(), [['GET ping /v2/ 200', 2], ['HEAD manifest by tag 404', 1]]);
  t.is(totalRequests(counts), 3);
});

let registry: TestRegistry;
test.before(async () => {
  registry = await startRegistry({ accessLog: true });
});
test.after.always(async () => {
  await registry?.stop();
});

test('seedLayout pushes a layout\'s images (skopeo reads them back), and the access log counts each request', async (t) => {
  const layout = await FixtureLayout.create({ gzipLevel: 0 });
  t.teardown(() => layout.remove());
  const shared = { shared: 'base', size: 20_000 };
  const a = await layout.build('a', { layers: [shared, { seed: 'a', size: 5000 }] });
  const b = await layout.build('b', { layers: [shared, { seed: 'b', size: 6000 }] });
  const log = new AccessLog(registry.accessLog!);
  await log.mark();
  await seedLayout(layout, registry.host, [{ name: 'a', repo: 'seed/a', tag: 'v1' }, { name: 'b', repo: 'seed/b', tag: 'v1' }]);
  const counts = await log.counts();

  t.is((await inspectRaw(`${registry.host}/seed/a:v1`)).digest, a.digest);
  t.is((await inspectRaw(`${registry.host}/seed/b:v1`)).digest, b.digest);
  // One tag per image; the shared layer is uploaded once and mounted into the other repository.
  t.is(counts.get('PUT manifest by tag 201'), 2);
  t.is(counts.get('POST mount 201'), 1);
  // 2 configs + 2 own layers + the shared layer uploaded; mounted blobs need no upload.
  t.is(counts.get('PUT upload 201'), 5);
  // The inspections above came after counts(): the next step sees them, and only them.
  const next = await log.counts();
  t.true((next.get('GET manifest by tag 200') ?? 0) >= 2);
  t.is(next.get('PUT manifest by tag 201'), undefined);
});
