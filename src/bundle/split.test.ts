import test from 'ava';
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { isAirgapError } from '../errors.js';
import { parseSize } from './format.js';
import { splitBundle, type SplitManifest } from './split.js';
import { BundleReader } from './reader.js';
import { imageOf, multiPlatformImage, type TestImage } from './testimages.js';
import { verifyBundle } from './verify.js';
import { BundleWriter } from './writer.js';

async function tempDir(t: { teardown: (fn: () => Promise<void>) => void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'airgap-split-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

async function writeBundle(out: string, publishTo?: (tempPath: string) => Promise<void>): Promise<{ ref: string; image: TestImage }[]> {
  const images = [
    { ref: 'quay.io/org/api:1', image: await imageOf({ files: { 'big.bin': Buffer.alloc(40_000, 7), 'a.txt': 'a' } }) },
    { ref: 'docker.io/library/multi:2', image: await multiPlatformImage() },
  ];
  const seen = new Set<string>();
  const blobs = images.flatMap((i) => i.image.blobs).filter((b) => !seen.has(b.descriptor.digest) && seen.add(b.descriptor.digest));
  const writer = await BundleWriter.create(out, { blobs: blobs.map((b) => b.descriptor), appFiles: [{ path: 'app.yaml', content: Buffer.from('a: 1\n') }], mtime: new Date(0) });
  await Promise.all(blobs.map((b) => writer.push(b.descriptor, async () => Readable.from([b.bytes]))));
  for (const { ref, image } of images) await writer.tag(image.root.descriptor, image.root.bytes, ref);
  try {
    await writer.finish({ schemaVersion: 1, tool: { name: 'airgap', version: '0' }, created: 'now', images: [], appFiles: ['app.yaml'] }, publishTo);
  } finally {
    await writer.abort(); // a no-op once finished; what a test that fails finish would call
  }
  return images;
}

/** A bundle, and the same bundle split into parts of `size` bytes under another name. */
async function splitFixture(dir: string, size: number) {
  const plain = join(dir, 'plain.tar');
  const images = await writeBundle(plain);
  const whole = join(dir, '.whole');
  writeFileSync(whole, readFileSync(plain));
  const out = join(dir, 'app.tar');
  const manifest = await splitBundle(whole, out, size, 'sha256:test');
  return { plain, out, images, manifest };
}

test('sizes: decimal and binary units', (t) => {
  t.is(parseSize('4GB'), 4_000_000_000);
  t.is(parseSize('700MB'), 700_000_000);
  t.is(parseSize('700m'), 700_000_000);
  t.is(parseSize('1.5G'), 1_500_000_000);
  t.is(parseSize('512KiB'), 512 * 1024);
  t.is(parseSize('4GiB'), 4 * 1024 ** 3);
  t.is(parseSize('65536'), 65536);
  for (const bad of ['', 'big', '4 XB', '-1GB', '12']) {
    t.throws(() => parseSize(bad), { code: 'E_USAGE' } as never, bad);
  }
});

test('split: parts no larger than the size, sha256 each, cat gives the tar back, nothing else left', async (t) => {
  const dir = await tempDir(t);
  const { plain, out, manifest } = await splitFixture(dir, 4096);
  const original = readFileSync(plain);
  t.true(manifest.parts.length >= 3, `${manifest.parts.length} parts`);
  t.is(manifest.size, original.length);
  const joined = Buffer.concat(manifest.parts.map((p) => readFileSync(join(dir, p.name))));
  t.true(joined.equals(original), 'cat app.tar.part* is the plain tar');
  for (const [i, p] of manifest.parts.entries()) {
    t.is(p.name, `app.tar.part${String(i + 1).padStart(3, '0')}`);
    t.true(p.size <= 4096 && p.size > 0);
    t.is(statSync(join(dir, p.name)).size, p.size);
    t.is(createHash('sha256').update(readFileSync(join(dir, p.name))).digest('hex'), p.sha256);
  }
  t.deepEqual(JSON.parse(readFileSync(out, 'utf8')) as SplitManifest, manifest);
  t.deepEqual(readdirSync(dir).sort(), ['app.tar', ...manifest.parts.map((p) => p.name), 'plain.tar'].sort(), 'no temp files left');
});

test('a split bundle reads as one file: every blob, ranges across part boundaries, verify per part', async (t) => {
  const dir = await tempDir(t);
  const { out, images, manifest } = await splitFixture(dir, 5000); // smaller than the big layer
  const reader = await BundleReader.open(out);
  t.teardown(() => reader.close());
  t.is(reader.file.size, manifest.size);
  t.deepEqual(reader.images().map((i) => i.ref).sort(), images.map((i) => i.ref).sort());
  let spanning = 0;
  for (const blob of images.flatMap((i) => i.image.blobs)) {
    if (reader.partsOfBlob(blob.descriptor.digest).length > 1) spanning++;
    const chunks: Buffer[] = [];
    for await (const c of await reader.fetch(blob.descriptor)) chunks.push(c as Buffer);
    t.true(Buffer.concat(chunks).equals(blob.bytes), blob.descriptor.digest);
  }
  t.true(spanning > 0, 'some blob crosses a part boundary');
  t.is((await reader.readAppFile('app.yaml')).toString(), 'a: 1\n');
  const r = await verifyBundle(reader);
  t.deepEqual(r.problems, []);
  t.is(r.parts, manifest.parts.length);
});

test('a missing part, a truncated part and a damaged part are each named', async (t) => {
  const dir = await tempDir(t);
  const { out, manifest, images } = await splitFixture(dir, 5000);
  const big = images[0]!.image.blobs.reduce((a, b) => (b.bytes.length > a.bytes.length ? b : a));
  const second = manifest.parts[1]!.name;

  renameSync(join(dir, second), join(dir, 'elsewhere'));
  const missing = await t.throwsAsync(BundleReader.open(out));
  t.true(isAirgapError(missing) && missing.message.includes(`part ${second} is missing`), missing?.message);
  renameSync(join(dir, 'elsewhere'), join(dir, second));

  const bytes = readFileSync(join(dir, second));
  writeFileSync(join(dir, second), bytes.subarray(0, bytes.length - 1));
  const short = await t.throwsAsync(BundleReader.open(out));
  t.regex(short?.message ?? '', new RegExp(`part ${second.replace(/\./g, '\\.')} is ${bytes.length - 1} bytes, expected ${bytes.length}`));

  // Same size, one flipped byte inside the big layer: verify names the part and the blob.
  const reader0 = await BundleReader.open(join(dir, 'plain.tar'));
  const holder = await (async () => { try { return reader0.partsOfBlob(big.descriptor.digest); } finally { await reader0.close(); } })();
  t.deepEqual(holder, ['plain.tar']);
  writeFileSync(join(dir, second), bytes);
  const r1 = await BundleReader.open(out);
  const parts = r1.partsOfBlob(big.descriptor.digest);
  await r1.close();
  const victim = parts[parts.length - 1]!;
  const vb = readFileSync(join(dir, victim));
  vb[10] = vb[10]! ^ 0xff;
  writeFileSync(join(dir, victim), vb);
  const reader = await BundleReader.open(out);
  t.teardown(() => reader.close());
  const r = await verifyBundle(reader);
  t.false(r.ok);
  t.true(r.problems.some((p) => p.message.startsWith(`part ${victim} is damaged`)), JSON.stringify(r.problems));
  t.true(r.problems.some((p) => p.digest === big.descriptor.digest && p.message.includes(`part ${victim}`)), JSON.stringify(r.problems));
});

test('the parts manifest is checked: not JSON of ours, names outside the directory', async (t) => {
  const dir = await tempDir(t);
  const { out, manifest } = await splitFixture(dir, 16 * 1024);
  writeFileSync(out, JSON.stringify({ hello: 'world' }));
  await t.throwsAsync(BundleReader.open(out), { code: 'E_BUNDLE', message: /not a parts manifest/ } as never);
  writeFileSync(out, JSON.stringify({ ...manifest, parts: [{ ...manifest.parts[0]!, name: '../etc/passwd' }, ...manifest.parts.slice(1)] }));
  await t.throwsAsync(BundleReader.open(out), { code: 'E_BUNDLE', message: /malformed/ } as never);
});

test('a split that cannot publish leaves nothing: no part, no manifest, no temp file, the old file untouched', async (t) => {
  const dir = await tempDir(t);
  await writeBundle(join(dir, 'plain.tar'));
  const whole = join(dir, '.whole');
  writeFileSync(whole, readFileSync(join(dir, 'plain.tar')));
  writeFileSync(join(dir, 'app.tar.part002'), 'someone else\'s file');
  const e = await t.throwsAsync(splitBundle(whole, join(dir, 'app.tar'), 4096));
  t.true(isAirgapError(e, 'E_OUTPUT') && e.message.includes('app.tar.part002 already exists'), e?.message);
  t.deepEqual(readdirSync(dir).sort(), ['app.tar.part002', 'plain.tar']);
  t.is(readFileSync(join(dir, 'app.tar.part002'), 'utf8'), 'someone else\'s file');
});


test('the writer hands its temp tar to splitBundle: only the parts and the manifest are left, or nothing', async (t) => {
  const dir = await tempDir(t);
  const plain = join(dir, 'plain.tar');
  await writeBundle(plain);
  const out = join(dir, 'app.tar');
  let manifest: SplitManifest | undefined;
  await writeBundle(out, async (tar) => { manifest = await splitBundle(tar, out, 4096); });
  t.true(manifest !== undefined && manifest.parts.length >= 3);
  t.true(Buffer.concat(manifest!.parts.map((p) => readFileSync(join(dir, p.name)))).equals(readFileSync(plain)));
  t.deepEqual(readdirSync(dir).sort(), ['app.tar', ...manifest!.parts.map((p) => p.name), 'plain.tar'].sort(), 'no temp file left');

  // A split that fails part-way (the writer's temp tar truncated, then gone) still leaves nothing.
  const other = join(dir, 'other.tar');
  writeFileSync(join(dir, 'other.tar.part002'), 'someone else\'s file');
  const e = await t.throwsAsync(writeBundle(other, (tar) => splitBundle(tar, other, 4096).then(() => undefined)));
  t.true(isAirgapError(e, 'E_OUTPUT') && e.message.includes('other.tar.part002 already exists'), e?.message);
  t.deepEqual(readdirSync(dir).sort(), ['app.tar', ...manifest!.parts.map((p) => p.name), 'other.tar.part002', 'plain.tar'].sort());
});
