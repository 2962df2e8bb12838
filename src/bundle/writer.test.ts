import test from 'ava';
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { promisify } from 'node:util';
import { runCleanupsSync } from '../cleanup.js';
import { verifyBundle } from './verify.js';
import { isAirgapError } from '../errors.js';
import { blobPath, type BundleMetadata } from './format.js';
import { BundleReader } from './reader.js';
import { blobOf, imageOf, multiPlatformImage, type Blob, type TestImage } from './testimages.js';
import { BundleWriter } from './writer.js';

const run = promisify(execFile);

async function tempDir(t: { teardown: (fn: () => Promise<void>) => void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'airgap-bundle-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** Streams in small chunks so positional writes interleave across concurrent pushes. */
function opener(b: Blob): () => Promise<Readable> {
  return async () => Readable.from(function* () {
    for (let i = 0; i < b.bytes.length; i += 1000) yield b.bytes.subarray(i, i + 1000);
  }());
}

function metadata(images: { ref: string; image: TestImage }[], appFiles: string[]): BundleMetadata {
  return {
    schemaVersion: 1, tool: { name: 'airgap', version: '0.1.0' }, created: new Date().toISOString(), appSlug: 'my-app',
    images: images.map(({ ref, image }) => ({
      ref, digest: image.root.descriptor.digest, mediaType: image.root.descriptor.mediaType, platforms: ['linux/amd64'],
      size: image.blobs.reduce((n, b) => n + b.bytes.length, 0),
    })),
    appFiles,
  };
}

async function writeBundle(out: string, images: { ref: string; image: TestImage }[],
  appFiles: { path: string; content: Uint8Array }[] = []): Promise<void> {
  const all = images.flatMap((i) => i.image.blobs);
  const writer = await BundleWriter.create(out, {
    blobs: all.map((b) => ({ digest: b.descriptor.digest, size: b.descriptor.size })), appFiles,
  });
  try {
    await Promise.all(all.map((b) => writer.push(b.descriptor, opener(b))));
    for (const { ref, image } of images) await writer.tag(image.root.descriptor, image.root.bytes, ref);
    await writer.finish(metadata(images, appFiles.map((f) => f.path)));
  } catch (e) {
    await writer.abort();
    throw e;
  }
}

async function skopeoInspect(bundle: string, ref: string, raw: boolean): Promise<string> {
  const args = ['inspect', ...(raw ? ['--raw'] : []), `oci-archive:${bundle}:${ref}`];
  const { stdout } = await run('skopeo', args, { env: { ...process.env, TMPDIR: tmpdir() }, maxBuffer: 1 << 24 });
  return stdout;
}

const sha = (s: string | Buffer): string => 'sha256:' + createHash('sha256').update(s).digest('hex');

test('a bundle of an OCI image, a two-platform index and a Docker v2 image is read by skopeo and by BundleReader', async (t) => {
  const dir = await tempDir(t);
  const out = join(dir, 'app.tar');
  const single = await imageOf({ files: { 'hello.txt': 'hello' } });
  const multi = await multiPlatformImage();
  const docker = await imageOf({ docker: true, files: { 'docker.txt': 'v2' } });
  const images = [
    { ref: 'quay.io/my-org/api:v1.0.1', image: single },
    { ref: 'docker.io/library/redis:7', image: multi },
    { ref: 'registry.example.com:5000/team/worker:2', image: docker },
  ];
  const app = [{ path: 'deployment.yaml', content: Buffer.from('kind: Deployment\n') }];
  await writeBundle(out, images, app);

  // containers/image (skopeo) looks a name up in index.json only among OCI manifest/index
  // descriptors, so the Docker v2 image, stored as received, is checked with our reader alone.
  for (const { ref, image } of images.filter((i) => i.image !== docker)) {
    const raw = await skopeoInspect(out, ref, true);
    t.is(sha(raw), image.root.descriptor.digest, `skopeo --raw of ${ref} gives the stored bytes`);
    const info = JSON.parse(await skopeoInspect(out, ref, false)) as { Digest: string; Layers: string[]; Architecture: string };
    t.is(info.Architecture, 'amd64');
    t.true(info.Layers.length > 0);
  }

  const reader = await BundleReader.open(out);
  t.teardown(() => reader.close());
  t.deepEqual(reader.images().map((i) => i.ref), images.map((i) => i.ref));
  t.deepEqual(reader.appFiles(), ['deployment.yaml']);
  t.is((await reader.readAppFile('deployment.yaml')).toString(), 'kind: Deployment\n');
  t.is(reader.metadata()?.appSlug, 'my-app');
  for (const { ref, image } of images) {
    const resolved = await reader.resolve(ref);
    t.is(resolved.descriptor.digest, image.root.descriptor.digest);
    t.deepEqual(Buffer.from(resolved.bytes), image.root.bytes);
    t.is(resolved.descriptor.annotations?.['io.containerd.image.name'], ref);
    for (const b of image.blobs) {
      const chunks: Buffer[] = [];
      for await (const c of await reader.fetch(b.descriptor)) chunks.push(c as Buffer);
      t.deepEqual(Buffer.concat(chunks), b.bytes);
    }
  }
  const byDigest = await reader.resolve(multi.blobs[3]!.descriptor.digest); // the amd64 child manifest, not in index.json
  t.is(byDigest.descriptor.mediaType, 'application/vnd.oci.image.manifest.v1+json');
  await t.throwsAsync(reader.resolve('docker.io/library/nope:1'), { code: 'E_NOT_FOUND' } as never);
  await t.throwsAsync(reader.fetch({ mediaType: 'x', digest: sha('absent'), size: 6 }), { code: 'E_NOT_FOUND' } as never);
});

test('a blob shared by two images (and planned twice) is stored once', async (t) => {
  const dir = await tempDir(t);
  const out = join(dir, 'shared.tar');
  const multi = await multiPlatformImage();
  const again = await imageOf({ files: { 'x': 'y' } });
  const shared = multi.blobs[0]!; // the base layer both platforms use
  const withShared: TestImage = { root: again.root, blobs: [shared, ...again.blobs] };
  await writeBundle(out, [{ ref: 'docker.io/library/a:1', image: multi }, { ref: 'docker.io/library/b:1', image: withShared }]);
  const { stdout } = await run('tar', ['-tf', out]);
  const names = stdout.split('\n');
  t.is(names.filter((n) => n === blobPath(shared.descriptor.digest)).length, 1);
  t.is(new Set(names).size, names.length);
});

test('a 100+ character app path round-trips through tar -tf and the reader', async (t) => {
  const dir = await tempDir(t);
  const out = join(dir, 'long.tar');
  const long = `charts/${'very-long-directory-name/'.repeat(6)}and-a-deployment-manifest-with-a-long-name.yaml`;
  t.true(long.length > 100);
  const image = await imageOf({ files: { a: 'b' } });
  await writeBundle(out, [{ ref: 'docker.io/library/long:1', image }], [{ path: long, content: Buffer.from('x: 1\n') }]);
  const { stdout } = await run('tar', ['-tf', out]);
  t.true(stdout.split('\n').includes(`app/${long}`));
  const reader = await BundleReader.open(out);
  t.teardown(() => reader.close());
  t.deepEqual(reader.appFiles(), [long]);
  t.is((await reader.readAppFile(long)).toString(), 'x: 1\n');
});

test('an aborted bundle leaves neither the output nor a temp file', async (t) => {
  const dir = await tempDir(t);
  const out = join(dir, 'aborted.tar');
  const image = await imageOf({ files: { a: 'b' } });
  const writer = await BundleWriter.create(out, { blobs: image.blobs.map((b) => b.descriptor), appFiles: [] });
  await writer.push(image.blobs[0]!.descriptor, opener(image.blobs[0]!));
  t.true(await writer.exists(image.blobs[0]!.descriptor));
  t.false(await writer.exists(image.blobs[1]!.descriptor));
  t.is(readdirSync(dir).length, 1, 'the temp file is beside the output');
  t.regex(readdirSync(dir)[0]!, /^\.aborted\.tar\.airgap-partial-/);
  await writer.abort();
  t.deepEqual(readdirSync(dir), []);
});

test('a push whose content does not match fails with E_DIGEST_MISMATCH naming the digest, and leaves no file', async (t) => {
  const dir = await tempDir(t);
  const out = join(dir, 'bad.tar');
  const image = await imageOf({ files: { a: 'b' } });
  const layer = image.blobs[0]!;
  const writer = await BundleWriter.create(out, { blobs: image.blobs.map((b) => b.descriptor), appFiles: [] });
  const tampered = Buffer.from(layer.bytes);
  tampered[tampered.length - 1] ^= 0xff;
  const err = await t.throwsAsync(writer.push(layer.descriptor, async () => Readable.from([tampered])));
  t.true(isAirgapError(err, 'E_DIGEST_MISMATCH'));
  t.true(err!.message.includes(layer.descriptor.digest));
  t.false(await writer.exists(layer.descriptor));
  const tooLong = await t.throwsAsync(writer.push(layer.descriptor, async () => Readable.from([layer.bytes, Buffer.from('x')])));
  t.true(isAirgapError(tooLong, 'E_DIGEST_MISMATCH'));
  const unplanned = blobOf(Buffer.from('not planned'), 'application/octet-stream');
  await t.throwsAsync(writer.push(unplanned.descriptor, opener(unplanned)), { code: 'E_OUTPUT' } as never);
  // finish refuses while a planned blob is missing, and cleans up after itself.
  await t.throwsAsync(writer.finish(metadata([], [])), { code: 'E_OUTPUT', message: /never written/ } as never);
  t.deepEqual(readdirSync(dir), []);
});

test('an existing output is refused at create and at finish', async (t) => {
  const dir = await tempDir(t);
  const out = join(dir, 'exists.tar');
  writeFileSync(out, 'precious');
  await t.throwsAsync(BundleWriter.create(out, { blobs: [], appFiles: [] }), { code: 'E_OUTPUT', message: /already exists/ } as never);

  const later = join(dir, 'later.tar');
  const image = await imageOf({ files: { a: 'b' } });
  const writer = await BundleWriter.create(later, { blobs: image.blobs.map((b) => b.descriptor), appFiles: [] });
  for (const b of image.blobs) await writer.push(b.descriptor, opener(b));
  await writer.tag(image.root.descriptor, image.root.bytes, 'docker.io/library/x:1');
  writeFileSync(later, 'someone else wrote this meanwhile');
  await t.throwsAsync(writer.finish(metadata([], [])), { code: 'E_OUTPUT', message: /already exists/ } as never);
  t.is(readFileSync(later, 'utf8'), 'someone else wrote this meanwhile');
  t.is(readFileSync(out, 'utf8'), 'precious');
  t.deepEqual(readdirSync(dir).sort(), ['exists.tar', 'later.tar']);
});

// Serial: runCleanupsSync is process-wide and would remove the other tests' temp files.
test.serial('tag refuses a manifest that was not pushed; runCleanupsSync removes the temp file', async (t) => {
  const dir = await tempDir(t);
  const out = join(dir, 'int.tar');
  const image = await imageOf({ files: { a: 'b' } });
  const writer = await BundleWriter.create(out, { blobs: image.blobs.map((b) => b.descriptor), appFiles: [] });
  await t.throwsAsync(writer.tag(image.root.descriptor, image.root.bytes, 'docker.io/library/x:1'), { code: 'E_OUTPUT' } as never);
  t.is(readdirSync(dir).length, 1);
  runCleanupsSync(); // what the CLI does on SIGINT
  t.deepEqual(readdirSync(dir), []);
  t.false(existsSync(out));
  await writer.abort();
});

test('an unwritable output directory is E_OUTPUT naming the path', async (t) => {
  const out = join(await tempDir(t), 'no-such-dir', 'x.tar');
  const err = await t.throwsAsync(BundleWriter.create(out, { blobs: [], appFiles: [] }));
  t.true(isAirgapError(err, 'E_OUTPUT'));
  t.true(err!.message.includes(out));
  t.false(err!.message.includes('\n'));
});

test('concurrent multi-MB pushes land at their planned offsets; a push cut mid-stream can be retried', async (t) => {
  const dir = await tempDir(t);
  const out = join(dir, 'big.tar');
  const layers = Array.from({ length: 6 }, (_, i) => blobOf(randomBytes(3_000_000 + i * 777), 'application/vnd.oci.image.layer.v1.tar'));
  const writer = await BundleWriter.create(out, { blobs: layers.map((b) => b.descriptor), appFiles: [] });
  const cut = layers[2]!;
  const failing = async () => Readable.from(async function* () {
    yield cut.bytes.subarray(0, 100_000);
    throw new Error('connection reset by peer');
  }());
  await t.throwsAsync(writer.push(cut.descriptor, failing), { message: /connection reset/ });
  t.false(await writer.exists(cut.descriptor));
  const stop = new AbortController();
  const stalled = async () => Readable.from(async function* () {
    yield cut.bytes.subarray(0, 1000);
    stop.abort();
    await new Promise((resolve) => setTimeout(resolve, 50));
    yield cut.bytes.subarray(1000);
  }());
  await t.throwsAsync(writer.push(cut.descriptor, stalled, { signal: stop.signal }), { name: 'AbortError' });
  t.false(await writer.exists(cut.descriptor));
  const outcomes = await Promise.all(layers.map((b) => writer.push(b.descriptor, opener(b))));
  t.deepEqual(outcomes, layers.map(() => 'uploaded'));
  t.is(await writer.push(cut.descriptor, opener(cut)), 'existed');
  await writer.finish(metadata([], []));
  const reader = await BundleReader.open(out);
  t.teardown(() => reader.close());
  const result = await verifyBundle(reader);
  t.is(result.blobs, layers.length);
  t.deepEqual(result.problems.map((p) => p.message), ['index.json lists no images']);
});

// A 1 MiB tmpfs gives a real ENOSPC; mounting needs root, so elsewhere this is skipped.
(process.getuid?.() === 0 ? test : test.skip)('running out of space is E_OUTPUT naming the path, and abort leaves nothing', async (t) => {
  const dir = await tempDir(t);
  try {
    await run('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', dir]);
  } catch {
    t.pass('cannot mount a tmpfs here');
    return;
  }
  let writer: BundleWriter | undefined;
  // Lazy unmount: a failed assertion may leave the writer's file open on the tmpfs.
  t.teardown(async () => { await writer?.abort(); await run('umount', ['-l', dir]); });
  const out = join(dir, 'full.tar');
  const big = blobOf(randomBytes(2_000_000), 'application/octet-stream');
  writer = await BundleWriter.create(out, { blobs: [big.descriptor], appFiles: [] });
  const err = await t.throwsAsync(writer.push(big.descriptor, opener(big)));
  t.true(isAirgapError(err, 'E_OUTPUT'), String(err));
  t.is(err!.message, `cannot write bundle ${out}: no space left on device (ENOSPC)`);
  await writer.abort();
  t.deepEqual(readdirSync(dir), []);
});
