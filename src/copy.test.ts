import test from 'ava';
import { Readable } from 'node:stream';
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

/** A target that records what the engine asks of it; `held` digests it already holds. */
function recordingTarget(flags: { pushFindsExisting?: boolean }, held: Set<string> = new Set()) {
  const calls: string[] = [];
  const stored = new Set<string>();
  const target: TargetStore = {
    label: 'recording target',
    verifiesContent: true,
    ...flags,
    exists: async (d) => { calls.push(`exists ${d.digest}`); return held.has(d.digest); },
    push: async (d, open) => {
      calls.push(`push ${d.digest}`);
      if (held.has(d.digest)) return 'existed';
      for await (const _ of await open()) { /* drain */ }
      stored.add(d.digest);
      return 'uploaded';
    },
    tag: async (d, _bytes, reference) => {
      calls.push(`tag ${reference} ${d.digest}`);
    },
  };
  return { target, calls, stored };
}

const zeros: SourceStore = {
  label: 'zeros',
  resolve: () => Promise.reject(new Error('not used')),
  fetch: async (d) => Readable.from([Buffer.alloc(d.size)]),
};

const index = (c: string, children: GraphNode[]): GraphNode => ({
  descriptor: { mediaType: 'application/vnd.oci.image.index.v1+json', digest: digest(c), size: 10 },
  bytes: new Uint8Array(10), children,
});

test('a target whose push looks first is not asked exists() as well; tags come after everything under them', async (t) => {
  const child1 = image('1', [blob('a', 10), blob('b', 20)]);
  const child2 = image('2', [blob('a', 10), blob('c', 30)]);
  const root = index('9', [child1, child2]);
  const { target, calls, stored } = recordingTarget({ pushFindsExisting: true }, new Set([digest('c')]));
  const events: CopyEvent[] = [];
  await new Copier(target, { concurrency: 2, onEvent: (e) => events.push(e) }).copyImage(zeros, root, 'app', ['1.0', 'latest']);

  t.false(calls.some((c) => c.startsWith('exists')), calls.join(', '));
  for (const d of ['a', 'b', '1', '2', '9']) t.true(stored.has(digest(d)), d);
  t.is(calls.filter((c) => c === `push ${digest('a')}`).length, 1);
  const firstTag = calls.indexOf(`tag 1.0 ${digest('9')}`);
  t.true(firstTag > Math.max(...['a', 'b', '1', '2', '9'].map((d) => calls.indexOf(`push ${digest(d)}`))));
  t.true(calls.indexOf(`tag latest ${digest('9')}`) > firstTag);
  // Only blobs whose bytes moved started; the one the target held is done as 'existed'.
  t.deepEqual(events.filter((e) => e.type === 'blob-start').map((e) => e.digest).sort(), [digest('a'), digest('b')]);
  t.deepEqual(events.filter((e) => e.type === 'blob-done' && e.outcome === 'existed').map((e) => e.digest), [digest('c')]);
});

test('a target whose push does not look first (a bundle) is asked exists() before push()', async (t) => {
  const root = image('1', [blob('a', 10), blob('b', 20)]);
  const { target, calls } = recordingTarget({}, new Set([digest('b')]));
  await new Copier(target, { concurrency: 2 }).copyImage(zeros, root, 'app', ['1.0']);
  t.true(calls.includes(`exists ${digest('a')}`));
  t.false(calls.includes(`push ${digest('b')}`), 'held: found by exists(), not pushed');
  t.true(calls.indexOf(`push ${digest('1')}`) >= 0);
  t.true(calls.indexOf(`tag 1.0 ${digest('1')}`) > calls.indexOf(`push ${digest('1')}`));
});

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

test('a blob is hashed while it streams, unless the source says it hashed those bytes before anything moved', async (t) => {
  // A layer whose bytes are not what its digest names: only the engine's hashing can tell.
  const layer = blob('d', 4);
  const root = image('e', [layer]);
  for (const verified of [false, true]) {
    const src: SourceStore = {
      label: 'lying source',
      resolve: () => Promise.reject(new Error('not used')),
      fetch: async () => Readable.from([Buffer.from('oops')]),
      ...(verified ? { verified: (d: string) => d === layer.descriptor.digest } : {}),
    };
    const { target, stored } = recordingTarget({ pushFindsExisting: true });
    const copier = new Copier({ ...target, verifiesContent: false }, { concurrency: 1 });
    const run = copier.copyImage(src, root, 'e', ['e']);
    if (verified) {
      // The target gets the bytes (a registry checks the digest of what it receives).
      await run;
      t.true(stored.has(layer.descriptor.digest));
    } else {
      await t.throwsAsync(run, { message: /sha256:d{64}/ });
      t.false(stored.has(layer.descriptor.digest));
    }
  }
});
