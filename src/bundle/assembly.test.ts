import test from 'ava';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { isAirgapError } from '../errors.js';
import { BlobAssembly, type AssemblyIo } from './assembly.js';
import { BundleReader } from './reader.js';
import { BundleWriter } from './writer.js';

/** A blob's bytes and descriptor. */
function blob(size: number) {
  const bytes = randomBytes(size);
  return { bytes, desc: { mediaType: 'application/octet-stream', digest: `sha256:${createHash('sha256').update(bytes).digest('hex')}`, size } };
}

/** Streams `bytes` in small chunks, yielding to the event loop so that concurrent parts interleave. */
function chunks(bytes: Buffer, size = 4096): Readable {
  return Readable.from((async function* () {
    for (let i = 0; i < bytes.length; i += size) {
      await new Promise((r) => setImmediate(r));
      yield bytes.subarray(i, i + size);
    }
  })());
}

/** An in-memory file that counts what is read back. */
function memoryIo(size: number): AssemblyIo & { file: Buffer; readBack: number } {
  const io = {
    file: Buffer.alloc(size),
    readBack: 0,
    async write(chunks: Uint8Array[], position: number) {
      for (const c of chunks) {
        io.file.set(c, position);
        position += c.length;
      }
    },
    async read(into: Buffer, length: number, position: number) {
      io.readBack += length;
      io.file.copy(into, 0, position, position + length);
    },
  };
  return io;
}

test('one sequential part is hashed from memory as it passes: nothing is read back', async (t) => {
  const { bytes, desc } = blob(300_000);
  const io = memoryIo(desc.size);
  const a = new BlobAssembly(desc, 0, io, 'blob');
  await a.writePart(0, desc.size, chunks(bytes));
  await a.verify();
  t.is(io.readBack, 0);
  t.is(a.hashedBytes, desc.size);
  t.true(io.file.equals(bytes));
});

test('parts written concurrently and out of order are hashed once, in order; only bytes ahead of the frontier are read back', async (t) => {
  const { bytes, desc } = blob(1_000_000);
  const io = memoryIo(desc.size);
  const a = new BlobAssembly(desc, 0, io, 'blob');
  const cuts = [0, 250_000, 500_000, 750_000, 1_000_000];
  const parts = cuts.slice(0, -1).map((s, i) => [s, cuts[i + 1]!] as const).reverse();
  await Promise.all(parts.map(([s, e]) => a.writePart(s, e, chunks(bytes.subarray(s, e)))));
  await a.verify();
  t.true(io.file.equals(bytes));
  t.is(a.hashedBytes, desc.size);
  // The first part leads from the start, so at least its bytes are hashed without a read-back;
  // nothing is hashed twice (the hash would not match otherwise), nor read back twice.
  t.true(io.readBack <= desc.size - 250_000);
});

test('a part with a flipped byte fails verification with E_DIGEST_MISMATCH; short and long parts fail at once', async (t) => {
  const { bytes, desc } = blob(200_000);
  const bad = Buffer.from(bytes);
  bad[150_000] ^= 0xff;
  const a = new BlobAssembly(desc, 0, memoryIo(desc.size), 'blob');
  await Promise.all([a.writePart(100_000, 200_000, chunks(bad.subarray(100_000))), a.writePart(0, 100_000, chunks(bad.subarray(0, 100_000)))]);
  const err = await t.throwsAsync(a.verify());
  t.true(isAirgapError(err) && err.code === 'E_DIGEST_MISMATCH' && err.message.includes(desc.digest));

  const b = new BlobAssembly(desc, 0, memoryIo(desc.size), 'blob');
  await t.throwsAsync(b.writePart(0, 100_000, chunks(bytes.subarray(0, 100_001))), { code: 'E_DIGEST_MISMATCH', message: /more than 100000/ } as never);
  await t.throwsAsync(b.writePart(100_000, 200_000, chunks(bytes.subarray(100_000, 199_000))), { code: 'E_DIGEST_MISMATCH', message: /ended after 99000/ } as never);
  await t.throwsAsync(b.writePart(150_000, 250_000, chunks(bytes)), { code: 'E_OUTPUT', message: /outside/ } as never);
});

test('BundleWriter.pushParts writes each part at its offset; the bundle reads it back whole', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'airgap-parts-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const big = blob(3 * 1024 * 1024 + 17);
  const small = blob(1000);
  const out = join(dir, 'b.tar');
  const writer = await BundleWriter.create(out, { blobs: [small.desc, big.desc], appFiles: [] });
  try {
    t.true(writer.verifiesContent);
    const parts = (await writer.pushParts(big.desc))!;
    const step = 1024 * 1024;
    await Promise.all([3, 1, 2, 0].map((i) => {
      const s = i * step;
      const e = Math.min(big.desc.size, s + step + (i === 3 ? 17 : 0));
      return parts.write(s, e, chunks(big.bytes.subarray(s, e), 64 * 1024));
    }));
    t.false(await writer.exists(big.desc));
    t.is(await parts.commit(), 'uploaded');
    t.true(await writer.exists(big.desc));
    t.is(await writer.pushParts(big.desc), undefined);
    await writer.push(small.desc, async () => Readable.from([small.bytes]));
    await writer.finish({ schemaVersion: 1, tool: { name: 'airgap', version: '0.1.0' }, created: new Date().toISOString(), appSlug: 'a', images: [], appFiles: [] });
  } catch (e) {
    await writer.abort();
    throw e;
  }
  const reader = await BundleReader.open(out);
  try {
    const got: Buffer[] = [];
    for await (const c of await reader.fetch(big.desc)) got.push(c as Buffer);
    t.true(Buffer.concat(got).equals(big.bytes));
  } finally {
    await reader.close();
  }
  t.true(readFileSync(out).includes(big.bytes.subarray(0, 4096)));
});

test('a tampered part fails commit, the blob stays unwritten, and a second pushParts can write it whole', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'airgap-parts-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const big = blob(512 * 1024);
  const writer = await BundleWriter.create(join(dir, 'b.tar'), { blobs: [big.desc], appFiles: [] });
  t.teardown(() => writer.abort());
  const bad = Buffer.from(big.bytes);
  bad[400_000] ^= 1;
  const first = (await writer.pushParts(big.desc))!;
  await first.write(0, 256 * 1024, chunks(bad.subarray(0, 256 * 1024)));
  await first.write(256 * 1024, big.desc.size, chunks(bad.subarray(256 * 1024)));
  await t.throwsAsync(first.commit(), { code: 'E_DIGEST_MISMATCH' } as never);
  t.false(await writer.exists(big.desc));
  await t.throwsAsync(first.write(0, 10, chunks(big.bytes.subarray(0, 10))), { code: 'E_OUTPUT' } as never);

  const abandoned = (await writer.pushParts(big.desc))!;
  abandoned.abort();
  t.false(await writer.exists(big.desc));

  const second = (await writer.pushParts(big.desc))!;
  await second.write(0, big.desc.size, chunks(big.bytes));
  t.is(await second.commit(), 'uploaded');
  t.true(await writer.exists(big.desc));
});
