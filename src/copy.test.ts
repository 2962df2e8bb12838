import test from 'ava';
import { Copier, loadGraph, type CopyEvent, type GraphNode } from './copy.js';
import { imageOf, layerOf } from './bundle/testimages.js';
import type { Descriptor } from './oci/descriptor.js';
import type { SourceStore, TargetStore } from './store.js';

const digest = (c: string): string => `sha256:${c.repeat(64)}`;
const blob = (c: string, size: number): GraphNode => ({
  descriptor: { mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: digest(c), size }, children: [],
});
const image = (c: string, children: GraphNode[]): GraphNode => ({
  descriptor: { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: digest(c), size: 10 },
  bytes: new Uint8Array(10), children,
});

/** A target that already holds every digest; `tags` says what each tag points at now. */
function fullTarget(tags: Map<string, string>): TargetStore {
  return {
    label: 'fake target',
    exists: async () => true,
    push: async () => 'existed',
    tag: async (desc: Descriptor, _bytes: Uint8Array, reference: string) => { tags.set(reference, desc.digest); },
    taggedAs: async (reference: string) => tags.get(reference),
  };
}

const source: SourceStore = {
  label: 'fake source',
  resolve: () => Promise.reject(new Error('not used')),
  fetch: () => Promise.reject(new Error('the target holds everything: nothing is fetched')),
};

// Two images of one repository share a layer; one of them is already tagged. The shared layer is
// one digest in that repository, so it is reported (and counted as skipped) once, whichever
// image gets to it first.
for (const order of ['tagged first', 'untagged first', 'concurrently'] as const) {
  test(`a layer shared with an already-tagged image is reported once (${order})`, async (t) => {
    const shared = blob('a', 1000);
    const a = image('1', [shared, blob('b', 10)]);
    const b = image('2', [shared, blob('c', 20)]);
    const events: CopyEvent[] = [];
    const copier = new Copier(fullTarget(new Map([['a', a.descriptor.digest]])), { concurrency: 2, onEvent: (e) => events.push(e) });
    const copyA = () => copier.copyImage(source, a, 'a', ['a']);
    const copyB = () => copier.copyImage(source, b, 'b', ['b']);
    if (order === 'tagged first') { await copyA(); await copyB(); }
    else if (order === 'untagged first') { await copyB(); await copyA(); }
    else await Promise.all([copyA(), copyB()]);

    const done = events.filter((e) => e.type === 'blob-done' || e.type === 'manifest-done').map((e) => e.digest).sort();
    t.deepEqual(done, [digest('1'), digest('2'), digest('a'), digest('b'), digest('c')].sort());
    t.is(events.filter((e) => e.type === 'image-done').length, 2);
  });
}

test('loadGraph leaves foreign layers out (listed on their manifest) unless asked to carry them', async (t) => {
  const foreign = await layerOf({ 'base.dll': 'x' }, 'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip');
  foreign.blob.descriptor.urls = ['https://example.invalid/layer'];
  const img = await imageOf({ docker: true, sharedLayers: [foreign], files: { app: 'y' } });
  const root = { descriptor: img.root.descriptor, bytes: img.root.bytes };
  const fd = foreign.blob.descriptor.digest;

  const left = await loadGraph(source, root, 'img');
  t.false(left.children.some((c) => c.descriptor.digest === fd));
  t.deepEqual(left.foreign?.map((d) => d.digest), [fd]);
  t.is(left.children.length, 2, 'config and the ordinary layer');

  const carried = await loadGraph(source, root, 'img', undefined, () => true);
  t.true(carried.children.some((c) => c.descriptor.digest === fd));
  t.is(carried.foreign, undefined);
});
