import test from 'ava';
import { execFile } from 'node:child_process';
import { openSync, closeSync, writeSync, ftruncateSync } from 'node:fs';
import { mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { encodeTarHeader, paddedSize, tarHeaderLength, END_OF_ARCHIVE_SIZE } from './format.js';
import { indexTar } from './tarindex.js';

const run = promisify(execFile);

test('header lengths: one block normally, PAX first for a long or non-ASCII name', (t) => {
  t.is(tarHeaderLength({ name: 'blobs/sha256/' + 'a'.repeat(64), type: 'file', size: 1 }), 512);
  t.is(tarHeaderLength({ name: 'app/' + 'x'.repeat(120), type: 'file', size: 1 }), 3 * 512);
  t.is(tarHeaderLength({ name: 'app/café.yaml', type: 'file', size: 1 }), 3 * 512);
  const h = encodeTarHeader({ name: 'oci-layout', type: 'file', size: 30, mtime: new Date(1_700_000_000_000) });
  t.is(h.toString('latin1', 0, 10), 'oci-layout');
  t.is(h.toString('latin1', 100, 107), '0000644');
  t.is(h.toString('latin1', 257, 263), 'ustar\u0000');
});

test('an entry over 8 GiB gets a PAX size that GNU tar and our index read back', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'airgap-format-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, 'big.tar');
  const size = 9 * 1024 ** 3 + 7;
  const header = encodeTarHeader({ name: 'blobs/sha256/' + 'b'.repeat(64), type: 'file', size, mtime: new Date(0) });
  t.is(header.length, 3 * 512);
  // Sparse: the body is a hole, so this costs no disk space.
  const fd = openSync(file, 'w');
  writeSync(fd, header, 0, header.length, 0);
  ftruncateSync(fd, header.length + paddedSize(size) + END_OF_ARCHIVE_SIZE);
  closeSync(fd);

  const { stdout } = await run('tar', ['-tvf', file]);
  t.regex(stdout, new RegExp(` ${size} .*blobs/sha256/b{64}`));
  const fh = await open(file, 'r');
  t.teardown(() => fh.close());
  const entries = await indexTar(fh, (await fh.stat()).size, 'big.tar');
  t.deepEqual(entries.get('blobs/sha256/' + 'b'.repeat(64)), { type: 'file', offset: header.length, size });
});

test('a long ASCII name goes into ustar prefix and name (one block); one that cannot split takes a PAX path; GNU tar reads both', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'airgap-format-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const split = 'app/' + 'x'.repeat(60) + '/' + 'y'.repeat(70) + '/deployment.yaml';
  const unsplittable = 'app/' + 'z'.repeat(120) + '.yaml';
  const body = Buffer.from('kind: ConfigMap\n');
  const entry = (name: string) => [encodeTarHeader({ name, type: 'file', size: body.length, mtime: new Date(0) }), body, Buffer.alloc(512 - body.length)];
  t.is(encodeTarHeader({ name: split, type: 'file', size: 1, mtime: new Date(0) }).length, 512);
  t.true(encodeTarHeader({ name: unsplittable, type: 'file', size: 1, mtime: new Date(0) }).length > 512);
  await writeFile(join(dir, 'x.tar'), Buffer.concat([...entry(split), ...entry(unsplittable), Buffer.alloc(1024)]));
  const { stdout } = await run('tar', ['-tf', join(dir, 'x.tar')]);
  t.deepEqual(stdout.trim().split('\n'), [split, unsplittable]);
});
