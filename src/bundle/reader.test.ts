import test from 'ava';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { promisify } from 'node:util';
import tar from 'tar-stream';
import { isAirgapError } from '../errors.js';
import { encodeTarHeader, paddedSize, refAnnotations } from './format.js';
import { BundleReader } from './reader.js';
import { imageOf } from './testimages.js';
import { BundleWriter } from './writer.js';

const run = promisify(execFile);

async function tempDir(t: { teardown: (fn: () => Promise<void>) => void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'airgap-reader-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

type Entry = { name: string; content?: string; type?: 'symlink' | 'link' | 'character-device' | 'directory'; linkname?: string };

/** A tar written by tar-stream (an implementation independent of ours). */
async function packed(entries: Entry[]): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  pack.on('data', (c: unknown) => { chunks.push(c as Buffer); });
  const done = new Promise<void>((resolve, reject) => { pack.on('end', resolve); pack.on('error', reject); });
  for (const e of entries) {
    if (e.type) pack.entry({ name: e.name, type: e.type, ...(e.linkname ? { linkname: e.linkname } : {}) });
    else pack.entry({ name: e.name }, e.content ?? '');
  }
  pack.finalize();
  await done;
  return Buffer.concat(chunks);
}

/** A tar written with our own header encoder, for names tar-stream would not write as given. */
function raw(entries: { name: string; content: string }[]): Buffer {
  const parts: Buffer[] = [];
  for (const e of entries) {
    const body = Buffer.from(e.content);
    parts.push(encodeTarHeader({ name: e.name, type: 'file', size: body.length, mtime: new Date(0) }));
    const padded = Buffer.alloc(paddedSize(body.length));
    body.copy(padded);
    parts.push(padded);
  }
  parts.push(Buffer.alloc(1024));
  return Buffer.concat(parts);
}

const LAYOUT = { name: 'oci-layout', content: '{"imageLayoutVersion":"1.0.0"}' };
const INDEX = { name: 'index.json', content: '{"schemaVersion":2,"manifests":[]}' };

async function refusal(t: { teardown: (fn: () => Promise<void>) => void }, bytes: Buffer): Promise<unknown> {
  const file = join(await tempDir(t), 'bad.tar');
  writeFileSync(file, bytes);
  try {
    const r = await BundleReader.open(file);
    await r.close();
    return undefined;
  } catch (e) {
    return e;
  }
}

async function validBundle(dir: string): Promise<string> {
  const out = join(dir, 'ok.tar');
  const image = await imageOf({ files: { 'random.bin': randomBytes(20000) } }); // incompressible: a big first blob
  const writer = await BundleWriter.create(out, { blobs: image.blobs.map((b) => b.descriptor), appFiles: [] });
  for (const b of image.blobs) await writer.push(b.descriptor, async () => Readable.from([b.bytes]));
  await writer.tag(image.root.descriptor, image.root.bytes, 'docker.io/library/ok:1');
  await writer.finish({ schemaVersion: 1, tool: { name: 'airgap', version: '0' }, created: 'now', images: [], appFiles: [] });
  return out;
}

const cases: Array<[string, () => Promise<Buffer>, RegExp]> = [
  ['a ../ path', async () => raw([LAYOUT, INDEX, { name: 'app/../../etc/passwd', content: 'x' }]), /"app\/\.\.\/\.\.\/etc\/passwd" has a "\.\." path component/],
  ['an absolute path', async () => raw([LAYOUT, INDEX, { name: '/etc/cron.d/x', content: 'x' }]), /"\/etc\/cron\.d\/x" has an absolute path/],
  ['a symbolic link', async () => packed([LAYOUT, INDEX, { name: 'blobs/sha256/abc', type: 'symlink', linkname: '/etc/shadow' }]), /"blobs\/sha256\/abc" is a symbolic link/],
  ['a hard link', async () => packed([LAYOUT, INDEX, { name: 'app/x', type: 'link', linkname: 'oci-layout' }]), /"app\/x" is a hard link/],
  ['a device', async () => packed([LAYOUT, INDEX, { name: 'app/tty', type: 'character-device' }]), /"app\/tty" is a character device/],
  ['a duplicate name', async () => packed([LAYOUT, INDEX, { name: 'index.json', content: '{}' }]), /duplicate entry "index\.json"/],
  ['a duplicate after normalisation', async () => raw([LAYOUT, INDEX, { name: './oci-layout', content: '{}' }]), /duplicate entry "oci-layout"/],
  ['index.json that is not JSON', async () => packed([LAYOUT, { name: 'index.json', content: '{"manifests": [' }]), /index\.json is not valid JSON/],
  ['index.json without manifests', async () => packed([LAYOUT, { name: 'index.json', content: '{"schemaVersion":2}' }]), /index\.json has no "manifests" array/],
  ['no oci-layout', async () => packed([INDEX]), /no oci-layout/],
  ['an airgap.json of another schema', async () => packed([LAYOUT, INDEX, { name: 'airgap.json', content: '{"schemaVersion":9}' }]), /airgap\.json has schemaVersion 9/],
];

for (const [what, make, message] of cases) {
  test(`the reader refuses a tar with ${what}`, async (t) => {
    const err = await refusal(t, await make());
    t.true(isAirgapError(err, 'E_BUNDLE'), String(err));
    t.regex((err as Error).message, message);
    t.false((err as Error).message.includes('\n'));
  });
}

test('the reader refuses a truncated bundle and a header with a bad checksum', async (t) => {
  const dir = await tempDir(t);
  const good = readFileSync(await validBundle(dir));
  const cut = await refusal(t, good.subarray(0, 3000)); // inside the first blob's body
  t.true(isAirgapError(cut, 'E_BUNDLE'));
  t.regex((cut as Error).message, /truncated: entry "blobs\/sha256\/[a-f0-9]{64}" needs \d+ bytes/);

  const partialHeader = await refusal(t, good.subarray(0, 512 + 512 + 100));
  t.regex((partialHeader as Error).message, /truncated: a partial tar header at byte 1024/);

  const noEnd = await refusal(t, good.subarray(0, good.length - 1024)); // every entry, no end marker
  t.regex((noEnd as Error).message, /truncated: the archive ends at byte \d+ without its end-of-archive marker/);

  const flipped = Buffer.from(good);
  flipped[2] ^= 0x01; // inside the first header's name
  const sum = await refusal(t, flipped);
  t.true(isAirgapError(sum, 'E_BUNDLE'));
  t.regex((sum as Error).message, /bad tar header checksum at byte 0/);
});

test('the reader accepts PAX and GNU long names and layouts written by other tools', async (t) => {
  const dir = await tempDir(t);
  const bundle = await validBundle(dir);
  // skopeo writes its own oci-archive (Go archive/tar) from ours: we must read it back.
  const theirs = join(dir, 'skopeo.tar');
  await run('skopeo', ['copy', '-q', `oci-archive:${bundle}:docker.io/library/ok:1`, `oci-archive:${theirs}:docker.io/library/ok:1`],
    { env: { ...process.env, TMPDIR: dir } });
  const r = await BundleReader.open(theirs);
  t.teardown(() => r.close());
  t.deepEqual(r.images().map((i) => i.ref), ['docker.io/library/ok:1']);
  const resolved = await r.resolve('docker.io/library/ok:1');
  t.is(resolved.descriptor.annotations?.['org.opencontainers.image.ref.name'], 'docker.io/library/ok:1');

  // GNU tar's long-name ('L') and PAX headers.
  const long = `app/${'deeply-nested-directory/'.repeat(6)}manifest.yaml`;
  const src = join(dir, 'src');
  mkdirSync(join(src, long, '..'), { recursive: true });
  writeFileSync(join(src, 'oci-layout'), LAYOUT.content);
  writeFileSync(join(src, 'index.json'), INDEX.content);
  writeFileSync(join(src, long), 'kind: ConfigMap\n');
  for (const format of ['gnu', 'pax']) {
    const file = join(dir, `${format}.tar`);
    await run('tar', [`--format=${format}`, '-cf', file, '-C', src, 'oci-layout', 'index.json', 'app']);
    const g = await BundleReader.open(file);
    t.deepEqual(g.appFiles(), [long.slice('app/'.length)], format);
    t.is((await g.readAppFile(long.slice('app/'.length))).toString(), 'kind: ConfigMap\n');
    await g.close();
  }
});

test('resolve verifies the manifest bytes against the index.json descriptor', async (t) => {
  const dir = await tempDir(t);
  const image = await imageOf({ files: { a: 'b' } });
  const wrong = { ...image.root.descriptor, size: image.root.descriptor.size + 1, annotations: refAnnotations('docker.io/library/w:1') };
  const entries = [LAYOUT, { name: 'index.json', content: JSON.stringify({ schemaVersion: 2, manifests: [wrong] }) },
    { name: `blobs/sha256/${image.root.descriptor.digest.slice(7)}`, content: image.root.bytes.toString() }];
  const file = join(dir, 'w.tar');
  writeFileSync(file, await packed(entries));
  const r = await BundleReader.open(file);
  t.teardown(() => r.close());
  await t.throwsAsync(r.resolve('docker.io/library/w:1'), { code: 'E_DIGEST_MISMATCH' } as never);
  await t.throwsAsync(r.fetch(wrong), { code: 'E_DIGEST_MISMATCH' } as never);
});
