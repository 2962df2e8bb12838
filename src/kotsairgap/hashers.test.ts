import test from 'ava';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { HashPool } from './hashers.js';

test('workers hash stretches of the file and bytes given, in order, as one blob each', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'airgap-hashers-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const file = randomBytes(9 << 20);
  await writeFile(join(dir, 'f'), file);
  const pool = new HashPool(join(dir, 'f'), 2);
  t.teardown(() => pool.close());
  const extra = randomBytes(1000);
  // Blob A: stretches with 5-byte gaps (stored blocks' headers), bytes between, one stretch past 4 MiB.
  const a = pool.start();
  const partsA: Buffer[] = [];
  let c = 17;
  for (let i = 0; i < 300; i++) {
    const len = 1 + ((i * 7919) % 30_000);
    a.span(c, len);
    partsA.push(file.subarray(c, c + len));
    c += len + 5;
    if (i % 50 === 0) { a.bytes(extra); partsA.push(extra); }
  }
  a.span(1 << 20, 5 << 20);
  partsA.push(file.subarray(1 << 20, 6 << 20));
  // Blob B, on the other worker, interleaved with A.
  const b = pool.start();
  b.span(0, 10);
  b.span(10, 20);
  const expectA = 'sha256:' + createHash('sha256').update(Buffer.concat(partsA)).digest('hex');
  const expectB = 'sha256:' + createHash('sha256').update(file.subarray(0, 30)).digest('hex');
  const [da, db] = await Promise.all([a.digest(), b.digest()]);
  t.is(da, expectA);
  t.is(db, expectB);
  // An empty blob.
  t.is(await pool.start().digest(), 'sha256:' + createHash('sha256').digest('hex'));
});

test('a stretch past the end of the file fails the digest, and every one waiting with it', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'airgap-hashers-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  await writeFile(join(dir, 'f'), randomBytes(1000));
  const pool = new HashPool(join(dir, 'f'), 1);
  t.teardown(() => pool.close());
  const a = pool.start();
  a.span(900, 500);
  await t.throwsAsync(a.digest(), { message: /hashing failed: the file ends at byte 1000/ });
  await t.throwsAsync(pool.start().digest(), { message: /hashing failed/ });
});
