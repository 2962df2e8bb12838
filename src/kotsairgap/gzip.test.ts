import test from 'ava';
import { randomBytes } from 'node:crypto';
import { open } from 'node:fs/promises';
import { crc32, deflateRawSync, gunzipSync, gzipSync } from 'node:zlib';
import { tempFile } from '../testing/tempfile.js';
import { MEMBER_HEADER_SIZE, memberAt, memberHeader, RangeReader, scanMembers, type Member } from './gzip.js';

/** One member as build --format kots writes it: the "AG" header with both lengths, raw deflate, CRC and size. */
function member(body: Buffer, level: number): Buffer {
  const deflated = deflateRawSync(body, { level });
  const trailer = Buffer.alloc(8);
  trailer.writeUInt32LE(crc32(body) >>> 0, 0);
  trailer.writeUInt32LE(body.length % 2 ** 32, 4);
  return Buffer.concat([memberHeader(MEMBER_HEADER_SIZE + deflated.length + 8, body.length), deflated, trailer]);
}

async function membersOf(path: string): Promise<Member[] | undefined> {
  const fh = await open(path, 'r');
  try {
    return await scanMembers(fh, (await fh.stat()).size);
  } finally {
    await fh.close();
  }
}

const bodies = [Buffer.from('a: 1\n'.repeat(300)), randomBytes(100_000), Buffer.alloc(0), randomBytes(70_000)];

test('members with the "AG" field are one ordinary gzip stream, and their boundaries are found from the headers alone', async (t) => {
  const file = Buffer.concat(bodies.map((b, i) => member(b, i === 1 ? 0 : 6)));
  // Any gzip reader reads the members back to back (RFC 1952 §2.2).
  t.deepEqual(gunzipSync(file), Buffer.concat(bodies));
  const members = await membersOf(await tempFile(t, file));
  let coff = 0;
  let doff = 0;
  t.deepEqual(members, bodies.map((b, i) => {
    const m = { coff, doff, data: coff + MEMBER_HEADER_SIZE };
    coff += member(b, i === 1 ? 0 : 6).length;
    doff += b.length;
    return m;
  }));
  t.is(memberAt(members!, 0), members![0]);
  t.is(memberAt(members!, bodies[0]!.length - 1), members![0]);
  t.is(memberAt(members!, bodies[0]!.length), members![1]);
  t.is(memberAt(members!, 10 ** 9), members![3]);
});

test('a file without the field, cut short, or whose lengths lie, is one stream (undefined)', async (t) => {
  const good = Buffer.concat(bodies.map((b) => member(b, 6)));
  t.is(await membersOf(await tempFile(t, gzipSync(Buffer.concat(bodies)))), undefined);
  t.is(await membersOf(await tempFile(t, good.subarray(0, good.length - 1))), undefined);
  const lie = Buffer.from(good);
  lie.writeBigUInt64LE(lie.readBigUInt64LE(16) + 1n, 16); // the first member says it is one byte longer
  t.is(await membersOf(await tempFile(t, lie)), undefined);
  // Another flag besides FEXTRA (a file name after the field): members, but no known start of the deflate data.
  const named = Buffer.from(good);
  named[3] = 4 | 8;
  const m = await membersOf(await tempFile(t, named));
  t.is(m?.[0]?.data, undefined);
});

test('RangeReader gives exact ranges across members, in any order; a file cut short fails with onShort', async (t) => {
  const all = Buffer.concat(bodies);
  const file = Buffer.concat(bodies.map((b) => member(b, 6)));
  const path = await tempFile(t, file);
  const ranges = new RangeReader(path, (await membersOf(path))!);
  t.teardown(() => ranges.close());
  const read = async (r: RangeReader, s: number, e: number) => {
    const chunks: Buffer[] = [];
    for await (const c of r.read(s, e, (got) => new Error(`short after ${got}`))) chunks.push(c as Buffer);
    return Buffer.concat(chunks);
  };
  for (const [s, e] of [[0, 10], [1400, 1600], [150_000, 170_000], [5, 100], [0, all.length], [all.length - 3, all.length]] as const) {
    t.deepEqual(await read(ranges, s, e), all.subarray(s, e), `[${s}, ${e})`);
  }
  const cutPath = await tempFile(t, gzipSync(all).subarray(0, 50_000));
  const cut = new RangeReader(cutPath, [{ coff: 0, doff: 0 }]);
  t.teardown(() => cut.close());
  await t.throwsAsync(read(cut, 0, all.length), { message: /short after|unexpected end/ });
});
