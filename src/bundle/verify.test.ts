import test from 'ava';
import { readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { BundleReader } from './reader.js';
import { MediaType } from '../oci/mediatypes.js';
import { blobOf, imageOf, multiPlatformImage, type Blob, type TestImage } from './testimages.js';
import { verifyBundle, type VerifyProgress } from './verify.js';
import { BundleWriter } from './writer.js';

async function tempDir(t: { teardown: (fn: () => Promise<void>) => void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'airgap-verify-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** Writes the images but leaves out the blobs listed in `omit` (the writer does not walk graphs). */
async function write(out: string, images: { ref: string; image: TestImage }[], omit: Blob[] = []): Promise<void> {
  const seen = new Set<string>(omit.map((b) => b.descriptor.digest));
  const blobs = images.flatMap((i) => i.image.blobs).filter((b) => {
    if (seen.has(b.descriptor.digest)) return false;
    seen.add(b.descriptor.digest);
    return true;
  });
  const writer = await BundleWriter.create(out, { blobs: blobs.map((b) => b.descriptor), appFiles: [] });
  await Promise.all(blobs.map((b) => writer.push(b.descriptor, async () => Readable.from([b.bytes]))));
  for (const { ref, image } of images) await writer.tag(image.root.descriptor, image.root.bytes, ref);
  await writer.finish({
    schemaVersion: 1, tool: { name: 'airgap', version: '0' }, created: 'now', appFiles: [],
    images: images.map(({ ref, image }) => ({ ref, digest: image.root.descriptor.digest, mediaType: image.root.descriptor.mediaType, platforms: [], size: 0 })),
  });
}

async function open(t: { teardown: (fn: () => Promise<void>) => void }, file: string): Promise<BundleReader> {
  const r = await BundleReader.open(file);
  t.teardown(() => r.close());
  return r;
}

test('a complete bundle verifies, with progress up to every byte', async (t) => {
  const dir = await tempDir(t);
  const out = join(dir, 'ok.tar');
  const multi = await multiPlatformImage();
  const single = await imageOf({ docker: true, files: { a: 'b' } });
  await write(out, [{ ref: 'docker.io/library/multi:1', image: multi }, { ref: 'quay.io/org/single:2', image: single }]);
  const progress: VerifyProgress[] = [];
  const result = await verifyBundle(await open(t, out), (p) => progress.push(p));
  t.deepEqual(result.problems, []);
  t.true(result.ok);
  const all = [...multi.blobs, ...single.blobs];
  t.is(result.blobs, all.length);
  t.is(result.bytes, all.reduce((n, b) => n + b.bytes.length, 0));
  const last = progress[progress.length - 1]!;
  t.is(last.blobsDone, last.blobsTotal);
  t.is(last.bytesDone, result.bytes);
});

test('verify lists every problem: a flipped byte in a layer, a missing layer, a damaged manifest', async (t) => {
  const dir = await tempDir(t);
  const out = join(dir, 'bad.tar');
  const multi = await multiPlatformImage();
  const single = await imageOf({ files: { 'x.txt': 'hello there' } });
  const other = await imageOf({ files: { 'y.txt': 'another image' } });
  const missing = single.blobs[0]!; // single's only layer
  await write(out, [
    { ref: 'docker.io/library/multi:1', image: multi },
    { ref: 'quay.io/org/single:2', image: single },
    { ref: 'quay.io/org/other:3', image: other },
  ], [missing]);

  const bytes = readFileSync(out);
  const flipAt = (blob: Blob, at: number): void => {
    const off = bytes.indexOf(blob.bytes);
    t.true(off > 0);
    bytes[off + at] ^= 0xff;
  };
  const sharedLayer = multi.blobs[0]!;
  flipAt(sharedLayer, Math.floor(sharedLayer.bytes.length / 2));
  flipAt(other.root, other.root.bytes.indexOf('"layers"')); // the manifest no longer parses
  writeFileSync(out, bytes);

  const result = await verifyBundle(await open(t, out));
  t.false(result.ok);
  const byDigest = (d: string) => result.problems.filter((p) => p.digest === d);
  t.regex(byDigest(sharedLayer.descriptor.digest)[0]?.message ?? '', /is damaged: its content hashes to sha256:/);
  t.regex(byDigest(missing.descriptor.digest)[0]?.message ?? '', /layer sha256:[a-f0-9]{64} is missing from the bundle/);
  t.is(byDigest(missing.descriptor.digest)[0]?.ref, 'quay.io/org/single:2');
  t.regex(byDigest(other.root.descriptor.digest)[0]?.message ?? '', /is damaged/);
  t.is(result.problems.length, 3, JSON.stringify(result.problems, null, 1));
  // The damaged blob is still counted: every blob was read.
  t.is(result.blobs, new Set([...multi.blobs, ...single.blobs, ...other.blobs].map((b) => b.descriptor.digest)).size - 1);
});

test('verify reports a size that disagrees with the manifest, and airgap.json naming an absent image', async (t) => {
  const dir = await tempDir(t);
  const out = join(dir, 'meta.tar');
  const image = await imageOf({ files: { a: 'b' } });
  await write(out, [{ ref: 'docker.io/library/a:1', image }]);
  // Rewrite airgap.json in place with another ref of the same length.
  const bytes = readFileSync(out);
  const at = bytes.lastIndexOf('"ref": "docker.io/library/a:1"');
  t.true(at > 0);
  bytes.write('"ref": "docker.io/library/z:1"', at);
  writeFileSync(out, bytes);
  const result = await verifyBundle(await open(t, out));
  t.deepEqual(result.problems.map((p) => p.message), ['airgap.json lists docker.io/library/z:1 but index.json does not']);

  // A manifest that claims its layer is one byte bigger than the stored blob.
  const [layer, config] = image.blobs as [Blob, Blob];
  const liar = blobOf(Buffer.from(JSON.stringify({
    schemaVersion: 2, mediaType: MediaType.OciManifest, config: config.descriptor,
    layers: [{ ...layer.descriptor, size: layer.descriptor.size + 1 }],
  })), MediaType.OciManifest);
  const out2 = join(dir, 'size.tar');
  await write(out2, [{ ref: 'docker.io/library/liar:1', image: { root: liar, blobs: [layer, config, liar] } }]);
  const sized = await verifyBundle(await open(t, out2));
  t.deepEqual(sized.problems, [{
    digest: layer.descriptor.digest, ref: 'docker.io/library/liar:1',
    message: `layer ${layer.descriptor.digest} is stored with ${layer.descriptor.size} bytes but referenced with ${layer.descriptor.size + 1}`,
  }]);
});
