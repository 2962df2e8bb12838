import test from 'ava';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { tarHeader } from './writer.js';
import { pack, type Header } from 'tar-stream';
import { isAirgapError } from '../errors.js';
import { BLOCK, ByteSource, padding, parseHeader, walkTar, type StreamEntry } from './tar.js';

/** A tar made by tar-stream (another implementation than ours), as one buffer. */
async function tarOf(entries: { header: Partial<Header> & { name: string }; body?: Buffer | string }[]): Promise<Buffer> {
  const p = pack();
  const chunks: Buffer[] = [];
  p.on('data', (c: unknown) => { chunks.push(c as Buffer); });
  const done = new Promise<void>((resolve, reject) => { p.on('end', resolve); p.on('error', reject); });
  for (const e of entries) {
    await new Promise<void>((resolve, reject) => p.entry(e.header, e.body ?? '', (err) => (err ? reject(err) : resolve())));
  }
  p.finalize();
  await done;
  return Buffer.concat(chunks);
}

/** Chunks of `size` bytes, so every read crosses chunk boundaries. */
function source(bytes: Buffer, size = 7, end?: number): ByteSource {
  return new ByteSource((async function* () {
    for (let i = 0; i < bytes.length; i += size) yield bytes.subarray(i, i + size);
  })(), 'test.airgap', end);
}

async function walk(bytes: Buffer, opts: { symlinks?: boolean } = {}): Promise<{ entries: StreamEntry[]; bodies: Map<string, string> }> {
  const src = source(bytes);
  const entries: StreamEntry[] = [];
  const bodies = new Map<string, string>();
  for await (const e of walkTar(src, 'test.airgap', opts)) {
    entries.push(e);
    // Every other file is left unread: the walk skips what the consumer did not read.
    if (e.type === 'file' && entries.length % 2 === 0) bodies.set(e.name, (await src.read(e.size, e.name))?.toString() ?? '');
  }
  return { entries, bodies };
}

async function refused(bytes: Buffer, pattern: RegExp, opts: { symlinks?: boolean } = {}): Promise<void> {
  const e = await walk(bytes, opts).then(() => undefined, (err: unknown) => err);
  if (!isAirgapError(e, 'E_BUNDLE')) throw new Error(`expected E_BUNDLE, got ${String(e)}`);
  if (!pattern.test(e.message)) throw new Error(`"${e.message}" does not match ${pattern}`);
}

test('walkTar gives names, sizes and body offsets; unread bodies are skipped', async (t) => {
  const long = `images/docker/registry/v2/blobs/sha256/ab/${'ab'.repeat(32)}/data`;
  const pax = 'app/' + 'ü'.repeat(120) + '.yaml';
  const bytes = await tarOf([
    { header: { name: 'airgap.yaml', size: 5 }, body: 'a: 1\n' },
    { header: { name: 'images', type: 'directory' } },
    { header: { name: long, size: 3 }, body: 'abc' },
    { header: { name: pax, size: 600 }, body: Buffer.alloc(600, 'x') },
    { header: { name: 'empty', size: 0 }, body: '' },
  ]);
  const { entries, bodies } = await walk(bytes);
  t.deepEqual(entries.map((e) => [e.name, e.type, e.size]), [
    ['airgap.yaml', 'file', 5], ['images', 'dir', 0], [long, 'file', 3], [pax, 'file', 600], ['empty', 'file', 0],
  ]);
  for (const e of entries.filter((x) => x.type === 'file')) {
    t.is(bytes.subarray(e.offset, e.offset + Math.min(e.size, 3)).toString(), e.name === 'airgap.yaml' ? 'a: ' : e.name === long ? 'abc' : e.size ? 'xxx' : '');
  }
  t.is(bodies.get(pax), 'x'.repeat(600));
});

test('a tar that ends without its end-of-archive marker, or inside a header or a body, is truncated', async (t) => {
  const bytes = await tarOf([{ header: { name: 'a', size: 1000 }, body: Buffer.alloc(1000, 1) }, { header: { name: 'b', size: 1 }, body: 'b' }]);
  await t.notThrowsAsync(walk(bytes));
  // a's header and body, b's header and body: no zero blocks after them.
  await t.notThrowsAsync(refused(bytes.subarray(0, BLOCK + 1000 + padding(1000) + BLOCK + BLOCK), /without its end-of-archive marker/));
  await t.notThrowsAsync(refused(bytes.subarray(0, BLOCK + 200), /truncated/));
  await t.notThrowsAsync(refused(bytes.subarray(0, 100), /truncated/));
});

test('links, devices, absolute paths, ".." and duplicates are refused; symlinks only where asked for', async (t) => {
  await t.notThrowsAsync(refused(await tarOf([{ header: { name: 'l', type: 'symlink', linkname: '/etc/passwd' } }]), /symbolic link/));
  await t.notThrowsAsync(refused(await tarOf([{ header: { name: 'h', type: 'link', linkname: 'x' } }]), /hard link/));
  await t.notThrowsAsync(refused(await tarOf([{ header: { name: 'c', type: 'character-device' } }]), /character device/));
  await t.notThrowsAsync(refused(await tarOf([{ header: { name: '/etc/x', size: 1 }, body: 'x' }]), /absolute path/));
  await t.notThrowsAsync(refused(await tarOf([{ header: { name: 'a/../../x', size: 1 }, body: 'x' }]), /"\.\." path component/));
  await t.notThrowsAsync(refused(await tarOf([{ header: { name: 'a', size: 1 }, body: 'x' }, { header: { name: './a', size: 1 }, body: 'y' }]), /duplicate entry "a"/));
  const { entries } = await walk(await tarOf([{ header: { name: 'l', type: 'symlink', linkname: '../x' } }]), { symlinks: true });
  t.deepEqual(entries.map((e) => [e.name, e.type, e.link]), [['l', 'symlink', '../x']]);
});

test('a header whose checksum does not add up is refused, naming where it is', async (t) => {
  const bytes = Buffer.from(await tarOf([{ header: { name: 'a', size: 1 }, body: 'x' }]));
  bytes[10] ^= 1;
  await t.notThrowsAsync(refused(bytes, /bad tar header checksum at byte 0/));
  t.throws(() => parseHeader(bytes.subarray(0, BLOCK), 'x', 0), { message: /checksum/ });
});

test('ByteSource reads exactly, counts its position, and a limit() view ends where it says', async (t) => {
  const bytes = Buffer.from(Array.from({ length: 100 }, (_, i) => i));
  const src = source(bytes, 9);
  t.deepEqual([...(await src.read(3, 'x'))!], [0, 1, 2]);
  const view = src.limit(10, 'inner');
  t.deepEqual([...(await view.read(10, 'x'))!], [3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
  await t.throwsAsync(view.read(1, 'more'), { message: /runs past the end/ });
  t.is(src.position, 13);
  await src.skip(80, 'skip');
  t.deepEqual([...(await src.read(7, 'rest'))!], [93, 94, 95, 96, 97, 98, 99]);
  t.is(await src.read(1, 'after the end'), undefined);
  await t.throwsAsync(source(bytes, 9).read(101, 'too much'), { message: /truncated: the archive ends inside too much/ });
  const chunks: number[] = [];
  await t.throwsAsync((async () => { for await (const c of source(bytes, 9).chunks(150, 'blob')) chunks.push(c.length); })(), { message: /50 of 150 bytes missing/ });
  t.is(chunks.reduce((a, b) => a + b, 0), 100);
});

test('a body of 8 GiB or more gets a PAX size (base-256 in the field): walkTar and GNU tar read its size', async (t) => {
  const size = 9 * 2 ** 30 + 123;
  const name = `images/docker/registry/v2/blobs/sha256/ab/${'ab'.repeat(32)}/data`;
  const header = tarHeader(name, size, '0');
  t.true(header.length > 512, 'a PAX header first');
  const src = new ByteSource((async function* () { yield header; })(), 'test');
  const first = await walkTar(src, 'test').next();
  t.deepEqual(first.value && { name: first.value.name, size: first.value.size }, { name, size });
  // GNU tar, over a sparse file holding the header, a body of zeros and the end-of-archive marker.
  const dir = await mkdtemp(join(tmpdir(), 'airgap-bigtar-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, 'big.tar');
  await writeFile(file, header);
  await truncate(file, header.length + Math.ceil(size / 512) * 512 + 1024);
  const { stdout } = await promisify(execFile)('tar', ['-tvf', file]);
  t.regex(stdout, new RegExp(`\\s${size}\\s.*${name}`));
  // Below 8 GiB the header stays plain ustar.
  t.is(tarHeader(name, 2 ** 33 - 1, '0').length, 512);
});
