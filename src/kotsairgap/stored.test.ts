import test from 'ava';
import { randomBytes } from 'node:crypto';
import { open } from 'node:fs/promises';
import { deflateRawSync, gzipSync } from 'node:zlib';
import { tempFile } from '../testing/tempfile.js';
import { GzipWalk } from './inflate.js';
import { GAP_MAX, PieceBuilder, readBlocks, readPieces, readStored, STORED_BLOCK, storedHeader, type Piece } from './stored.js';

async function collect(it: AsyncIterable<Buffer>): Promise<Buffer> {
  const out: Buffer[] = [];
  for await (const c of it) out.push(c);
  return Buffer.concat(out);
}

test('storedHeader reads BFINAL, BTYPE 00 and LEN = ~NLEN, and nothing else', (t) => {
  t.deepEqual(storedHeader(Buffer.from([0x00, 0x34, 0x12, 0xcb, 0xed]), 0), { len: 0x1234, final: false });
  t.deepEqual(storedHeader(Buffer.from([0x01, 0x00, 0x00, 0xff, 0xff]), 0), { len: 0, final: true });
  t.is(storedHeader(Buffer.from([0x02, 0x34, 0x12, 0xcb, 0xed]), 0), undefined); // fixed Huffman
  t.is(storedHeader(Buffer.from([0x00, 0x34, 0x12, 0xcb, 0xec]), 0), undefined); // NLEN is not ~LEN
  t.is(storedHeader(Buffer.from([0x00, 0x34, 0x12]), 0), undefined); // cut short
});

test('readStored gives any range of a level-0 deflate stream straight from the file, and stops where blocks are not stored', async (t) => {
  const body = randomBytes(300_000);
  const raw = deflateRawSync(body, { level: 0 });
  const path = await tempFile(t, Buffer.concat([Buffer.from('pad'), raw]));
  const a = { c: 3, d: 0, left: 0 };
  for (const [s, e] of [[0, body.length], [1, 2], [65_530, 65_540], [200_000, 300_000]] as const) {
    const gen = readStored(path, a, s, e);
    t.deepEqual(await collect(gen), body.subarray(s, e), `[${s}, ${e})`);
  }
  // A compressible stream: its first block is not stored; nothing is read, the stop is where it started.
  const packed = await tempFile(t, deflateRawSync(Buffer.alloc(100_000, 'a'), { level: 6 }));
  const gen = readStored(packed, { c: 0, d: 0, left: 0 }, 0, 100_000);
  let r = await gen.next();
  t.true(r.done);
  t.is(r.value, 0);
  // A level-0 stream that ends (BFINAL) before the range does: stops at its end.
  const short = readStored(path, a, 0, body.length + 10);
  for (r = await short.next(); !r.done; r = await short.next()) { /* the whole body */ }
  t.is(r.value, body.length);
});

/** A one-stream .tar.gz-like file: compressible bytes, a random blob, compressible bytes; gzip level 6. */
async function oneStream(t: { teardown: (fn: () => Promise<void>) => void }, blob: Buffer): Promise<{ path: string; offset: number }> {
  const before = Buffer.concat([Buffer.alloc(5000), Buffer.from('ustar header text '.repeat(300))]);
  const after = Buffer.concat([Buffer.from('next entry '.repeat(500)), Buffer.alloc(10_000)]);
  return { path: await tempFile(t, gzipSync(Buffer.concat([before, blob, after]), { level: 6 })), offset: before.length };
}

/** The scan's way: walk the file's deflate blocks, and feed the blob's bytes and their regions to a PieceBuilder. */
async function find(path: string, offset: number, size: number): Promise<{ pieces: Piece[] | undefined; kept: number }> {
  const fh = await open(path, 'r');
  try {
    const walk = new GzipWalk(fh, 0);
    const builder = new PieceBuilder(offset, size);
    let pos = 0;
    for await (const c of walk) {
      // Fed in odd pieces, as the tar walk hands them on.
      const from = Math.max(pos, offset);
      const to = Math.min(pos + c.length, offset + size);
      for (let i = from; i < to; i += 50_001) {
        const e = Math.min(to, i + 50_001);
        builder.push(c.subarray(i - pos, e - pos), walk.regions(i, e));
      }
      pos += c.length;
    }
    const pieces = builder.finish();
    return { pieces, kept: builder.kept };
  } finally {
    await fh.close();
  }
}

test('the walk locates a random blob of a one-stream gzip in its stored blocks; readPieces gives it back byte for byte', async (t) => {
  const blob = randomBytes(3_000_000);
  const { path, offset } = await oneStream(t, blob);
  const { pieces, kept } = await find(path, offset, blob.length);
  t.truthy(pieces);
  // Mostly read from the file: what is kept is the blocks the blob shares with its neighbours.
  t.true(kept < 200_000, `kept ${kept}`);
  t.true(pieces!.some((p) => 'anchor' in p));
  const fallback = () => { throw new Error('fell back to zlib'); };
  t.deepEqual(await collect(readPieces(path, pieces!, fallback)), blob);
});

test('a blob deflate compresses (no stored blocks) is left to zlib; one whose file changed falls back where the blocks stop', async (t) => {
  const text = Buffer.from('compressible text, not a layer\n'.repeat(Math.ceil((GAP_MAX + 500_000) / 31)));
  const { path, offset } = await oneStream(t, text);
  t.is((await find(path, offset, text.length)).pieces, undefined);

  const blob = randomBytes(1_000_000);
  const one = await oneStream(t, blob);
  const { pieces } = await find(one.path, one.offset, blob.length);
  const stored = pieces!.find((p): p is Extract<Piece, { anchor: unknown }> => 'anchor' in p)!;
  // The stored stretch now starts somewhere that is no block header: its first header check fails.
  const moved: Piece[] = pieces!.map((p) => (p === stored ? { ...stored, anchor: { ...stored.anchor, left: 0, c: stored.anchor.c + 7 } } : p));
  let asked: number | undefined;
  const got = await collect(readPieces(one.path, moved, async function* (at) { asked = at; yield blob.subarray(at - one.offset); }));
  t.is(asked, stored.anchor.d);
  t.deepEqual(got, blob);
});

/** Stored blocks of STORED_BLOCK bytes but the last, as build --format kots writes a layer's member. */
function fullBlocks(body: Buffer): Buffer {
  const out: Buffer[] = [];
  for (let i = 0; i === 0 || i < body.length; i += STORED_BLOCK) {
    const data = body.subarray(i, i + STORED_BLOCK);
    const final = i + STORED_BLOCK >= body.length;
    out.push(Buffer.from([final ? 1 : 0, data.length & 0xff, data.length >> 8, ~data.length & 0xff, (~data.length >> 8) & 0xff]), data);
  }
  return Buffer.concat(out);
}

test('readBlocks reads runs of full stored blocks in one read each, and hands blocks of other sizes to readStored', async (t) => {
  const body = randomBytes(3 * 1024 * 1024 + 12_345);
  const full = await tempFile(t, Buffer.concat([Buffer.from('xy'), fullBlocks(body)]));
  const zlib = await tempFile(t, Buffer.concat([Buffer.from('xy'), deflateRawSync(body, { level: 0 })]));
  for (const path of [full, zlib]) {
    for (const [s, e] of [[0, body.length], [512, 700_000], [1_048_000, 2_200_000], [body.length - 10, body.length]] as const) {
      t.deepEqual(await collect(readBlocks(path, { c: 2, d: 0, left: 0 }, s, e)), body.subarray(s, e), `${path === full ? 'full blocks' : 'zlib level 0'} [${s}, ${e})`);
    }
  }
  // Past the final block: stops there, for the caller to fall back.
  const gen = readBlocks(full, { c: 2, d: 0, left: 0 }, 0, body.length + 100);
  let r = await gen.next();
  while (!r.done) r = await gen.next();
  t.is(r.value, body.length);
  // Cut short inside a block: stops where the file ends.
  const cut = await tempFile(t, Buffer.concat([Buffer.from('xy'), fullBlocks(body)]).subarray(0, 2 + 5 + 100_000));
  const g2 = readBlocks(cut, { c: 2, d: 0, left: 0 }, 0, body.length);
  let r2 = await g2.next();
  let got = 0;
  while (!r2.done) { got += r2.value.length; r2 = await g2.next(); }
  t.is(r2.value, got);
  t.true(got < body.length);
});

test('readBlocks stops at a member\'s last block when it is full size too, for the caller to fall back', async (t) => {
  const body = randomBytes(2 * STORED_BLOCK);
  const path = await tempFile(t, Buffer.concat([Buffer.from('xy'), fullBlocks(body), Buffer.from('trailer!')]));
  t.deepEqual(await collect(readBlocks(path, { c: 2, d: 0, left: 0 }, 0, body.length)), body);
  const gen = readBlocks(path, { c: 2, d: 0, left: 0 }, 0, body.length + 100);
  const chunks: Buffer[] = [];
  let r = await gen.next();
  while (!r.done) { chunks.push(r.value); r = await gen.next(); }
  t.is(r.value, body.length);
  t.deepEqual(Buffer.concat(chunks), body);
});
