import test from 'ava';
import { FixtureLayout, inspectRaw } from './testing/fixtures.js';
import { type TestRegistry, startRegistry } from './testing/registry.js';
import { AccessLog } from './testing/requests.js';
import { seedLayout } from './testing/seed.js';

// The copy engine into a real registry (docker-registry), counted from its access log: what each
// request is for is written down in docs/performance.md.

let registry: TestRegistry;
test.before(async () => {
  registry = await startRegistry({ accessLog: true });
});
test.after.always(async () => {
  await registry?.stop();
});

test('into a registry: one HEAD per blob and per manifest, manifests by digest, then the tag', async (t) => {
  const layout = await FixtureLayout.create({ gzipLevel: 0 });
  t.teardown(() => layout.remove());
  const one = await layout.build('one', { layers: [{ seed: 'one-a', size: 3000 }, { seed: 'one-b', size: 4000 }] });
  const multi = await layout.build('multi', { layers: [{ seed: 'multi', size: 2000 }], platforms: ['linux/amd64', 'linux/arm64'] });
  const log = new AccessLog(registry.accessLog!);
  await log.mark();
  await seedLayout(layout, registry.host, [{ name: 'one', repo: 'req/one', tag: 'v1' }, { name: 'multi', repo: 'req/multi', tag: 'v1' }]);
  const counts = await log.counts();

  // skopeo reads back exactly what was built, under its tag.
  t.is((await inspectRaw(`${registry.host}/req/one:v1`)).digest, one.digest);
  t.is((await inspectRaw(`${registry.host}/req/multi:v1`)).digest, multi.digest);
  // Blobs: 2 layers + 1 config, and per platform 1 layer + 1 config: 7, each asked about once.
  t.is(counts.get('HEAD blob 404'), 7);
  t.is(counts.get('PUT upload 201'), 7);
  // One tag check per image; 4 manifests (2 roots, 2 index children) looked for once and put by
  // digest (content is never visible under a tag before everything under it is stored), then the tags.
  t.is(counts.get('HEAD manifest by tag 404'), 2);
  t.is(counts.get('HEAD manifest by digest 404'), 4);
  t.is(counts.get('PUT manifest by digest 201'), 4);
  t.is(counts.get('PUT manifest by tag 201'), 2);
});
