import test from 'ava';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { BundleReader } from './bundle/reader.js';
import { imageOf, layerOf, type Blob, type TestImage } from './bundle/testimages.js';
import { verifyBundle } from './bundle/verify.js';
import { BundleWriter } from './bundle/writer.js';
import type { GraphNode } from './copy.js';
import { bundleId, loadBase, pruneGraph } from './delta.js';
import { isAirgapError } from './errors.js';

async function tempDir(t: { teardown: (fn: () => Promise<void>) => void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'airgap-delta-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** A bundle of `image` as `ref` without `omit`, declaring `fromBase` as expected from a base. */
async function writeDelta(out: string, ref: string, image: TestImage, omit: Blob[], fromBase: Blob[]): Promise<void> {
  const skip = new Set(omit.map((b) => b.descriptor.digest));
  const blobs = image.blobs.filter((b) => !skip.has(b.descriptor.digest));
  const writer = await BundleWriter.create(out, { blobs: blobs.map((b) => b.descriptor), appFiles: [] });
  await Promise.all(blobs.map((b) => writer.push(b.descriptor, async () => Readable.from([b.bytes]))));
  await writer.tag(image.root.descriptor, image.root.bytes, ref);
  await writer.finish({
    schemaVersion: 1, tool: { name: 'airgap', version: '0' }, created: 'now', appFiles: [], id: 'sha256:' + 'b'.repeat(64),
    images: [{ ref, digest: image.root.descriptor.digest, mediaType: image.root.descriptor.mediaType, platforms: ['linux/amd64'], size: 0 }],
    base: { id: 'sha256:' + 'a'.repeat(64), created: '2024-01-01T00:00:00Z', release: '1.0',
      blobs: fromBase.map((b) => ({ digest: b.descriptor.digest, size: b.descriptor.size })) },
  });
}

async function open(t: { teardown: (fn: () => Promise<void>) => void }, file: string): Promise<BundleReader> {
  const r = await BundleReader.open(file);
  t.teardown(() => r.close());
  return r;
}

test('bundle identity: stable, order-free, and different for a delta', (t) => {
  const imgs = [{ ref: 'a:1', digest: 'sha256:1' }, { ref: 'b:1', digest: 'sha256:2' }];
  const app = [{ path: 'x.yaml', content: Buffer.from('x') }];
  t.is(bundleId(imgs, app), bundleId([...imgs].reverse(), app));
  t.regex(bundleId(imgs, app), /^sha256:[a-f0-9]{64}$/);
  t.not(bundleId(imgs, app), bundleId(imgs, app, 'sha256:base'));
  t.not(bundleId(imgs, app), bundleId(imgs, [{ path: 'x.yaml', content: Buffer.from('y') }]));
});

test('pruneGraph drops the base blobs and keeps every manifest', (t) => {
  const leaf = (d: string): GraphNode => ({ descriptor: { mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: d, size: 1 }, children: [] });
  const manifest: GraphNode = {
    descriptor: { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: 'sha256:m', size: 1 }, bytes: Buffer.from('{}'),
    children: [leaf('sha256:config'), leaf('sha256:old'), leaf('sha256:new')],
  };
  const index: GraphNode = { descriptor: { mediaType: 'application/vnd.oci.image.index.v1+json', digest: 'sha256:i', size: 1 }, bytes: Buffer.from('{}'), children: [manifest] };
  const pruned = pruneGraph(index, (d) => d === 'sha256:old' || d === 'sha256:m');
  t.deepEqual(pruned.children[0]!.children.map((c) => c.descriptor.digest), ['sha256:config', 'sha256:new']);
  t.is(manifest.children.length, 3, 'the original graph is untouched');
});

test('a delta verifies: blobs declared from the base are expected, not missing; fetch says where they are', async (t) => {
  const dir = await tempDir(t);
  const shared = await layerOf({ 'base.txt': 'base' });
  const image = await imageOf({ sharedLayers: [shared], files: { 'new.txt': 'new' } });
  const out = join(dir, 'delta.tar');
  await writeDelta(out, 'quay.io/org/app:2', image, [shared.blob], [shared.blob]);
  const reader = await open(t, out);
  const r = await verifyBundle(reader);
  t.deepEqual(r.problems, []);
  t.deepEqual(r.expectedFromBase, { base: { id: 'sha256:' + 'a'.repeat(64), created: '2024-01-01T00:00:00Z', release: '1.0' }, blobs: 1, bytes: shared.blob.descriptor.size });
  const e = await t.throwsAsync(reader.fetch(shared.blob.descriptor));
  t.true(isAirgapError(e, 'E_NOT_FOUND') && e.message.includes('comes from its base bundle sha256:aaaa'), e?.message);

  // loadBase: what a delta on top of this one may leave out = what it carries + what it expects.
  const base = await loadBase(out);
  t.is(base.id, 'sha256:' + 'b'.repeat(64));
  t.deepEqual([...base.blobs.keys()].sort(), image.blobs.map((b) => b.descriptor.digest).sort());
});

test('a delta that leaves out a blob it does not declare has a problem', async (t) => {
  const dir = await tempDir(t);
  const shared = await layerOf({ 'base.txt': 'base' });
  const image = await imageOf({ sharedLayers: [shared], files: { 'new.txt': 'new' } });
  const config = image.blobs[image.blobs.length - 2]!;

  const undeclared = join(dir, 'undeclared.tar');
  await writeDelta(undeclared, 'quay.io/org/app:2', image, [shared.blob, config], [shared.blob]);
  const r1 = await verifyBundle(await open(t, undeclared));
  t.false(r1.ok);
  t.deepEqual(r1.problems.map((p) => p.digest), [config.descriptor.digest]);
  t.regex(r1.problems[0]!.message, /missing from the bundle/);

});
