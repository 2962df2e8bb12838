import test from 'ava';
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { constants, crc32, deflateRawSync, gunzipSync, gzipSync } from 'node:zlib';
import { openTemp, tempFile, type Teardown } from '../testing/tempfile.js';
import { BufferPool } from './buffers.js';
import { GzipWalk, InflateError, WalkAbandoned, buildTable, lookup, type Region } from './inflate.js';

/** Deterministic bytes: a small PRNG, so a failure can be replayed. */
function prng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => { x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0; return x; };
}

/** Text-like bytes (compress well), random bytes (stored blocks), and runs (long matches, overlapping copies). */
function mixed(seed: number, size: number): Buffer {
  const r = prng(seed);
  const parts: Buffer[] = [];
  let n = 0;
  while (n < size) {
    const kind = r() % 3;
    const len = Math.min(size - n, 1 + (r() % 90_000));
    let b: Buffer;
    if (kind === 0) b = Buffer.from(Array.from({ length: Math.ceil(len / 12) }, (_, i) => `key${(r() + i) % 50}: v\n`).join('').slice(0, len));
    else if (kind === 1) { b = Buffer.allocUnsafe(len); for (let i = 0; i < len; i++) b[i] = r() & 255; }
    else b = Buffer.alloc(len, r() & 255);
    parts.push(b);
    n += b.length;
  }
  return Buffer.concat(parts);
}

async function walk(t: Teardown, file: Buffer, opts = {}): Promise<{ out: Buffer; regions: Region[] }> {
  const fh = await open(await tempFile(t, file), 'r');
  try {
    const w = new GzipWalk(fh, 0, { keepRegions: Number.POSITIVE_INFINITY, ...opts });
    const chunks: Buffer[] = [];
    for await (const c of w) chunks.push(Buffer.from(c));
    return { out: Buffer.concat(chunks), regions: w.regions(0, Number.POSITIVE_INFINITY) };
  } finally {
    await fh.close();
  }
}

/** Regions tile the output; stored ones are the file's bytes at their offset. */
function checkRegions(t: { is: (a: unknown, b: unknown, m?: string) => void; true: (v: boolean, m?: string) => void }, file: Buffer, out: Buffer, regions: Region[]): void {
  let d = 0;
  for (const r of regions) {
    t.is(r.d, d, 'regions are contiguous');
    if (r.kind !== 'huffman') t.true(file.subarray(r.c, r.c + r.len).equals(out.subarray(r.d, r.d + r.len)), `stored region at ${r.c}`);
    d += r.len;
  }
  t.is(d, out.length);
}

const cases: [string, () => Buffer][] = [
  ['empty', () => Buffer.alloc(0)],
  ['text', () => Buffer.from('apiVersion: v1\nkind: ConfigMap\n'.repeat(5000))],
  ['random 3 MiB', () => randomBytes(3 << 20)],
  ['mixed 5 MB', () => mixed(7, 5_000_000)],
  ['mixed 300 kB', () => mixed(42, 300_000)],
];

for (const [name, make] of cases) {
  for (const opts of [{ level: 0 }, { level: 1 }, { level: 6 }, { level: 9 }, { level: 6, strategy: constants.Z_HUFFMAN_ONLY },
    { level: 6, strategy: constants.Z_FIXED }, { level: 6, strategy: constants.Z_RLE }]) {
    test(`${name}, ${JSON.stringify(opts)}: the same bytes as zlib, stored regions where the file holds them`, async (t) => {
      const body = make();
      const file = gzipSync(body, opts);
      const { out, regions } = await walk(t, file);
      t.true(out.equals(body));
      checkRegions(t, file, out, regions);
      if (opts.level === 0 && body.length > 0) t.true(regions.every((r) => r.kind !== 'huffman'));
    });
  }
}

test('a file written by GNU gzip (a name in the header) and members back to back, with sync flushes between', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'airgap-inflate-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const a = mixed(3, 2_000_000);
  await writeFile(join(dir, 'layer.tar'), a);
  execFileSync('gzip', ['-6', '-k', join(dir, 'layer.tar')]);
  const fromGzip = await readFile(join(dir, 'layer.tar.gz'));
  t.true((fromGzip[3]! & 8) !== 0, 'GNU gzip wrote FNAME');
  // A member with FEXTRA, FCOMMENT, FHCRC; and deflate data with full flushes (empty stored blocks).
  const b = mixed(4, 400_000);
  const raw = Buffer.concat([deflateRawSync(b.subarray(0, 100_000), { finishFlush: constants.Z_FULL_FLUSH }),
    deflateRawSync(b.subarray(100_000), { level: 1 })]);
  const head = Buffer.from([0x1f, 0x8b, 8, 4 | 16 | 2, 0, 0, 0, 0, 0, 255, 3, 0, 1, 2, 3, ...Buffer.from('comment\0')]);
  const hcrc = Buffer.alloc(2);
  hcrc.writeUInt16LE(crc32(head) & 0xffff);
  const header = Buffer.concat([head, hcrc]);
  const trailer = Buffer.alloc(8);
  trailer.writeUInt32LE(crc32(b) >>> 0, 0);
  trailer.writeUInt32LE(b.length, 4);
  const file = Buffer.concat([fromGzip, header, raw, trailer, gzipSync(Buffer.alloc(0))]);
  t.true(gunzipSync(file).equals(Buffer.concat([a, b])), 'zlib reads it too');
  const { out, regions } = await walk(t, file);
  t.true(out.equals(Buffer.concat([a, b])));
  checkRegions(t, file, out, regions);
});

test('stored blocks in a row are chained: each one\'s data is 5 bytes after the last one\'s', async (t) => {
  const body = randomBytes(1_000_000);
  const file = gzipSync(body, { level: 6 });
  const { regions } = await walk(t, file);
  const starts = regions.filter((r) => r.kind === 'start');
  t.true(starts.length > 10);
  let chained = 0;
  for (let i = 1; i < regions.length; i++) {
    const r = regions[i]!;
    if (r.kind !== 'start' || !r.chained) continue;
    const p = regions[i - 1]!;
    t.is(r.c, p.c + p.len + 5);
    chained++;
  }
  t.true(chained > 10);
});

test('damaged or cut-short files are errors, never a short output; where zlib reads a damaged file, the walk gives the same bytes', async (t) => {
  const body = mixed(11, 600_000);
  const good = gzipSync(body, { level: 6 });
  const r = prng(99);
  for (let i = 0; i < 60; i++) {
    const bad = Buffer.from(good);
    if (i % 3 === 0) {
      const cut = good.subarray(0, r() % good.length);
      await t.throwsAsync(walk(t, cut), { instanceOf: InflateError }, `cut at ${cut.length}`);
      continue;
    }
    const at = 10 + (r() % (good.length - 10));
    bad[at] ^= 1 << (r() % 8);
    let zlib: Buffer | undefined;
    try { zlib = gunzipSync(bad); } catch { zlib = undefined; }
    if (zlib === undefined) await t.throwsAsync(walk(t, bad), { instanceOf: InflateError }, `bit flipped at ${at}`);
    else t.true((await walk(t, bad)).out.equals(zlib), `bit flipped at ${at}`);
  }
  const crc = Buffer.from(good);
  crc[crc.length - 6] ^= 1;
  await t.throwsAsync(walk(t, crc), { instanceOf: InflateError, message: /data check/ });
  const len = Buffer.from(good);
  len[len.length - 2] ^= 1;
  await t.throwsAsync(walk(t, len), { instanceOf: InflateError, message: /length check/ });
  await t.throwsAsync(walk(t, Buffer.from('not gzip at all')), { instanceOf: InflateError, message: /header/ });
});

test('bits flipped in Huffman-coded data (block headers, code lengths, codes): the walk errs where zlib errs, else gives what zlib gives', async (t) => {
  const good = gzipSync(Buffer.from(Array.from({ length: 4000 }, (_, i) => `line ${i % 97}: value ${(i * 7919) % 1013}\n`).join('')), { level: 9 });
  const r = prng(2024);
  let refused = 0;
  for (let i = 0; i < 200; i++) {
    const bad = Buffer.from(good);
    // Past the 10-byte gzip header, before the 8-byte trailer: the deflate data.
    const at = 10 + (r() % (good.length - 18));
    bad[at] ^= 1 << (r() % 8);
    let zlib: Buffer | undefined;
    try { zlib = gunzipSync(bad); } catch { zlib = undefined; }
    if (zlib === undefined) { await t.throwsAsync(walk(t, bad), { instanceOf: InflateError }, `bit flipped at ${at}`); refused++; }
    else t.true((await walk(t, bad)).out.equals(zlib), `bit flipped at ${at}`);
  }
  t.true(refused > 150, `${refused} of 200 refused`);
});

test('past its budget of Huffman output the walk gives up (zlib reads such a file better)', async (t) => {
  const text = Buffer.from('x: y\n'.repeat(400_000));
  await t.throwsAsync(walk(t, gzipSync(text), { huffmanBudget: 1 << 20 }), { instanceOf: WalkAbandoned });
  const { out } = await walk(t, gzipSync(randomBytes(3 << 20)), { huffmanBudget: 1 << 20 });
  t.is(out.length, 3 << 20);
});

test('code lengths that over-subscribe or leave a code incomplete are refused as zlib refuses them; every code decodes to its symbol', (t) => {
  t.throws(() => buildTable(new Uint8Array([1, 1, 1]), 'test'), { message: /over-subscribed/ });
  t.throws(() => buildTable(new Uint8Array([1, 2]), 'test'), { message: /incomplete/ });
  t.throws(() => buildTable(new Uint8Array([1]), 'code length'), { message: /incomplete/ });
  // As zlib allows: one code of one bit, or none.
  t.is(buildTable(new Uint8Array([0, 1]), 'distance').t[0]! >>> 8, 1);
  t.is(buildTable(new Uint8Array(30), 'distance').t[0], 0);
  // A complete code with lengths 1 to 15 (and two of 15): codes past the root go through subtables.
  const lens = new Uint8Array([...Array.from({ length: 15 }, (_, i) => i + 1), 15, 0]);
  const table = buildTable(lens, 'test');
  t.true(table.bits <= 9);
  t.true(table.t.length < 1 << 12, `${table.t.length} entries`);
  // The canonical code of each symbol, sent most significant bit first, read least first.
  const next = new Map<number, number>();
  let code = 0;
  for (let l = 1; l <= 15; l++) {
    code = (code + lens.filter((x) => x === l - 1 && l - 1 > 0).length) << 1;
    next.set(l, code);
  }
  for (let s = 0; s < lens.length; s++) {
    const l = lens[s]!;
    if (l === 0) continue;
    const c = next.get(l)!;
    next.set(l, c + 1);
    let r = 0;
    for (let i = 0; i < l; i++) r |= ((c >> i) & 1) << (l - 1 - i);
    // Whatever follows the code in the input, it decodes to s with length l.
    for (const after of [0, 0x7fff, 0x1234]) {
      const e = lookup(table, r | ((after << l) & 0x7fff));
      t.is(e >>> 8, s, `symbol ${s}`);
      t.is(e & 15, l);
    }
  }
});

test('the walk reads a large file in constant memory and hands stored data out uncopied', async (t) => {
  const body = randomBytes(24 << 20);
  const file = gzipSync(body, { level: 1 });
  const fh = await openTemp(t, file);
  const w = new GzipWalk(fh, 0);
  const h = createHash('sha256');
  for await (const c of w) h.update(c);
  t.is(h.digest('hex'), createHash('sha256').update(body).digest('hex'));
  // Regions far behind the output are forgotten.
  t.is(w.regions(0, 1 << 20).length, 0);
  t.true(w.regions((24 << 20) - 1000, 24 << 20).length > 0);
});

test('skip passes over stretches with the region each lies in, and read and skip can take turns', async (t) => {
  const body = mixed(21, 3_000_000);
  const file = gzipSync(body, { level: 6 });
  const fh = await openTemp(t, file);
  const w = new GzipWalk(fh, 0, { keepRegions: Number.POSITIVE_INFINITY });
  const got: Buffer[] = [];
  let d = 0;
  let waited = 0;
  for (let turn = 0; d < body.length; turn++) {
    if (turn % 2 === 0) {
      const b = await w.read(1000 + turn * 7);
      if (!b) break;
      got.push(Buffer.from(b));
      d += b.length;
    } else {
      const n = Math.min(200_000 + turn * 13, body.length - d);
      const skipped = await w.skip(n, async (b, region) => {
        t.truthy(region);
        // The region holds the chunk: stored data is the file's bytes at region.c + the offset in it.
        t.true(region!.d <= d && d + b.length <= region!.d + region!.len);
        if (region!.kind !== 'huffman') t.true(file.subarray(region!.c + d - region!.d, region!.c + d - region!.d + b.length).equals(b));
        got.push(Buffer.from(b));
        d += b.length;
        // A visitor's promise is waited for.
        await new Promise((r) => setImmediate(r));
        waited++;
      });
      t.is(skipped, n);
    }
  }
  t.true(waited > 0);
  t.is(await w.read(), undefined);
  t.true(Buffer.concat(got).equals(body));
  t.is(await w.skip(10, () => undefined), 0, 'nothing left to skip');
});

test('with a buffer pool, chunks read promptly are right though buffers are read into again, and few are made', async (t) => {
  // Stored and Huffman-coded stretches, so block headers and codes fall across read boundaries.
  const body = Buffer.concat([randomBytes(12 << 20), mixed(77, 6 << 20), randomBytes(12 << 20)]);
  const file = gzipSync(body, { level: 6 });
  const fh = await openTemp(t, file);
  // Small buffers: many reads end inside a block header or a run of codes.
  const pool = new BufferPool(64 << 10);
  const w = new GzipWalk(fh, 0, { pool });
  const h = createHash('sha256');
  await w.skip(5 << 20, (b) => { h.update(b); });
  for (;;) { const b = await w.read(); if (!b) break; h.update(b); }
  t.is(h.digest('hex'), createHash('sha256').update(body).digest('hex'));
  // 30 MiB read through a handful of buffers: the one being read and the few behind it.
  t.true(pool.made <= 7, `${pool.made} buffers`);
});
