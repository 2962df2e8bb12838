import test from 'ava';
import { createHash, randomBytes } from 'node:crypto';
import { crc32 } from 'node:zlib';
import { BufferPool } from './buffers.js';
import { HashPool } from './hashers.js';

test('workers hash views of shared buffers and copies of other bytes, in order, one blob each; the CRC-32 from the mark on', async (t) => {
  const buffers = new BufferPool(1 << 20, true);
  const pool = new HashPool(buffers, 2);
  t.teardown(() => pool.close());
  const shared = Array.from({ length: 6 }, () => { const b = buffers.get(); randomBytes(b.length).copy(b); return b; });
  const plain = randomBytes(300_000);
  const a = pool.start();
  const b = pool.start();
  const partsA: Buffer[] = [];
  const crcPartsA: Buffer[] = [];
  let crc: Promise<number> | undefined;
  for (let i = 0; i < 40; i++) {
    const src = shared[i % shared.length]!;
    const view = i % 7 === 3 ? plain.subarray(i * 1000, i * 1000 + 5000) : src.subarray(i * 10_000, i * 10_000 + 200_000);
    a.update(view);
    partsA.push(Buffer.from(view));
    if (crc) crcPartsA.push(Buffer.from(view));
    if (i === 20) crc = a.crcFrom();
    b.update(src.subarray(0, 1000));
  }
  const [da, db] = await Promise.all([a.digest(), b.digest()]);
  t.is(da, 'sha256:' + createHash('sha256').update(Buffer.concat(partsA)).digest('hex'));
  t.is(db, 'sha256:' + createHash('sha256').update(Buffer.concat(Array.from({ length: 40 }, (_, i) => shared[i % shared.length]!.subarray(0, 1000)))).digest('hex'));
  t.is(await crc!, crc32(Buffer.concat(crcPartsA)) >>> 0);
  t.is(await pool.start().digest(), 'sha256:' + createHash('sha256').digest('hex'));
  // Hashed: the workers hold no buffer now; released by their first holder, they are used again.
  for (const s of shared) buffers.release(s.buffer);
  const again = Array.from({ length: 6 }, () => buffers.get());
  t.is(buffers.made, 6);
  t.true(again.every((x) => shared.some((s) => s.buffer === x.buffer)));
});

test('many bytes waiting for a worker make room() wait; closing fails what is left', async (t) => {
  const buffers = new BufferPool(1 << 20, true);
  const pool = new HashPool(buffers, 1);
  const b = buffers.get();
  const h = pool.start();
  for (let i = 0; i < 48; i++) h.update(b);
  t.true(pool.full);
  await pool.room();
  t.false(pool.full);
  const d = h.digest();
  await d;
  const h2 = pool.start();
  await pool.close();
  await t.throwsAsync(h2.digest(), { message: /stopped/ });
});
