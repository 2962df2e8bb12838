import test from 'ava';
import { createHash, randomBytes } from 'node:crypto';
import { BufferPool } from './buffers.js';
import { HashThread, HashThreadError } from './hashthread.js';

const sha = (b: Buffer) => 'sha256:' + createHash('sha256').update(b).digest('hex');

test('the thread hashes views of shared buffers where they lie, and copies of other bytes, in order, one blob each', async (t) => {
  const buffers = new BufferPool(1 << 20, true, 2);
  const thread = new HashThread(buffers);
  t.teardown(() => thread.close());
  const shared = Array.from({ length: 6 }, () => { const b = buffers.get(); randomBytes(b.length).copy(b); return b; });
  t.is(buffers.made, 6, 'two made at once, four more on demand');
  const plain = randomBytes(300_000);
  const a = thread.start();
  const b = thread.start();
  const partsA: Buffer[] = [];
  const partsB: Buffer[] = [];
  for (let i = 0; i < 40; i++) {
    const src = shared[i % shared.length]!;
    const view = i % 7 === 3 ? plain.subarray(i * 1000, i * 1000 + 5000) : src.subarray(i * 10_000, i * 10_000 + 200_000);
    a.update(view);
    partsA.push(Buffer.from(view));
    b.update(src.subarray(0, 1000));
    partsB.push(Buffer.from(src.subarray(0, 1000)));
  }
  t.is(await a.digest(), sha(Buffer.concat(partsA)));
  t.is(await b.digest(), sha(Buffer.concat(partsB)));
  t.is(await thread.start().digest(), sha(Buffer.alloc(0)));
  // Hashed: the thread holds no buffer any more; once their first holder lets go they are used again.
  for (const s of shared) buffers.release(s.buffer);
  const again = Array.from({ length: 6 }, () => buffers.get());
  t.is(buffers.made, 6);
  t.true(again.every((x) => shared.some((s) => s.buffer === x.buffer)));
});

test('a view of a buffer that is not one of the pool\'s shared ones is copied: changing it after update() does not change the digest', async (t) => {
  const thread = new HashThread(new BufferPool(1 << 20, true));
  t.teardown(() => thread.close());
  const b = Buffer.alloc(1000, 1);
  const h = thread.start();
  h.update(b);
  const expected = sha(Buffer.from(b));
  b.fill(2);
  t.is(await h.digest(), expected);
});

test('many bytes waiting for the thread make room() wait; closing fails what is left', async (t) => {
  const buffers = new BufferPool(1 << 20, true);
  const thread = new HashThread(buffers);
  const b = buffers.get();
  const h = thread.start();
  for (let i = 0; i < 40; i++) h.update(b);
  t.true(thread.full);
  await thread.room();
  t.false(thread.full);
  await h.digest();
  const h2 = thread.start();
  h2.update(Buffer.alloc(10));
  await thread.close();
  // The thread's own failure, which the scan answers by scanning again without it.
  await t.throwsAsync(h2.digest(), { instanceOf: HashThreadError, message: /stopped/ });
});
