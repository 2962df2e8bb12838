import test from 'ava';
import { createHash, randomBytes } from 'node:crypto';
import { open } from 'node:fs/promises';
import { gzipSync } from 'node:zlib';
import { pack } from 'tar-stream';
import { tempFile, type Teardown } from '../testing/tempfile.js';
import { RangeReader } from './gzip.js';
import { scanAirgap, STORAGE_ROOT } from './scan.js';
import { readPieces } from './stored.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** A vendor-portal-like .airgap: airgap.yaml, app.tar.gz, blobs in a registry storage tree, as one gzip stream (tar -czf). */
async function portal(blobs: { bytes: Buffer; name?: string }[]): Promise<Buffer> {
  const p = pack();
  const chunks: Buffer[] = [];
  const done = (async () => { for await (const c of p as AsyncIterable<Buffer>) chunks.push(c); })();
  p.entry({ name: 'airgap.yaml' }, 'apiVersion: kots.io/v1beta1\nkind: Airgap\nspec:\n  appSlug: acme\n  format: docker\n  savedImages: []\n');
  p.entry({ name: 'app.tar.gz' }, gzipSync(Buffer.from('not looked at here')));
  for (const b of blobs) {
    const hex = b.name ?? sha(b.bytes);
    p.entry({ name: `${STORAGE_ROOT}blobs/sha256/${hex.slice(0, 2)}/${hex}/data` }, b.bytes);
  }
  p.finalize();
  await done;
  return gzipSync(Buffer.concat(chunks), { level: 6 });
}

async function scanFile(t: Teardown, file: Buffer, hashThread = false) {
  const path = await tempFile(t, file, 'x.airgap');
  const fh = await open(path, 'r');
  try {
    return { path, scan: await scanAirgap(path, fh, file.length, 'test', { hashThread }) };
  } finally {
    await fh.close();
  }
}

const layers = [randomBytes(3_000_000), randomBytes(700_000), Buffer.from('{"config":true}\n'.repeat(100)), randomBytes(5_000_000)];

for (const thread of [false, true]) {
  const how = thread ? 'layers hashed on a second thread' : 'one thread';
  test(`a one-stream .airgap: every blob hashed before the push, layers located in stored blocks (${how})`, async (t) => {
    const { path, scan } = await scanFile(t, await portal(layers.map((bytes) => ({ bytes }))), thread);
    t.is(scan.blobs.size, layers.length);
    for (const bytes of layers) {
      const hex = sha(bytes);
      const blob = scan.blobs.get(`blobs/sha256/${hex.slice(0, 2)}/${hex}/data`)!;
      t.is(blob.digest, `sha256:${hex}`);
      if (bytes.length > 256 << 10) {
        t.truthy(blob.stored, 'a layer is read from its stored blocks');
        const out: Buffer[] = [];
        for await (const c of readPieces(path, blob.stored!, () => { throw new Error('fell back to zlib'); })) out.push(Buffer.from(c));
        t.is(sha(Buffer.concat(out)), hex);
      }
    }
  });

  test(`a layer whose bytes do not match its name is found by the scan (${how})`, async (t) => {
    const liar = 'ab'.repeat(32);
    const { scan } = await scanFile(t, await portal([{ bytes: layers[0]! }, { bytes: layers[3]!, name: liar }]), thread);
    const blob = scan.blobs.get(`blobs/sha256/ab/${liar}/data`)!;
    t.is(blob.digest, `sha256:${sha(layers[3]!)}`);
  });

  test(`a one-stream file cut short, or with a flipped bit in a layer, is refused by the scan (${how})`, async (t) => {
    const good = await portal(layers.map((bytes) => ({ bytes })));
    await t.throwsAsync(scanFile(t, good.subarray(0, good.length - 5000), thread), { message: /truncated/ });
    const flipped = Buffer.from(good);
    flipped[Math.floor(good.length * 0.6)] ^= 0x10;
    // Inside a layer's stored blocks: the gzip CRC-32 catches it.
    await t.throwsAsync(scanFile(t, flipped, thread), { message: /not a valid gzip stream \(incorrect data check\)/ });
  });
}

test('a file that is mostly compressible data is read with zlib instead of the walk, with the same results', async (t) => {
  const text = Buffer.from('uncompressed layer tar, as docker save writes it\n'.repeat(900_000));
  const { path, scan } = await scanFile(t, await portal([{ bytes: text }, { bytes: layers[0]! }]));
  const hex = sha(text);
  const blob = scan.blobs.get(`blobs/sha256/${hex.slice(0, 2)}/${hex}/data`)!;
  t.is(blob.digest, `sha256:${hex}`);
  t.is(blob.stored, undefined, 'nothing located: zlib read the file');
  const ranges = new RangeReader(path, scan.members);
  const out: Buffer[] = [];
  for await (const c of ranges.read(blob.offset, blob.offset + blob.size, () => new Error('short'))) out.push(c as Buffer);
  t.is(sha(Buffer.concat(out)), hex);
});
