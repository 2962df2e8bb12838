import test from 'ava';
import { Readable } from 'node:stream';
import type { Descriptor } from '../oci/descriptor.js';
import { RegistryClient } from '../registry/client.js';
import { seedImage } from './fixtures.js';
import { Pacer, startLink, type Link } from './link.js';
import { type TestRegistry, startRegistry } from './registry.js';

let registry: TestRegistry;
let link: Link;

test.before(async () => {
  registry = await startRegistry();
  link = await startLink({ upstream: registry.host, delayMs: 5, bytesPerSecond: 50e6 });
});

test.after.always(async () => {
  await link?.stop();
  await registry?.stop();
});

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

test('the pacer spaces slices at the configured rate on an exact virtual clock', (t) => {
  const p = new Pacer(1e6); // 1000 bytes per ms
  t.is(p.reserve(1000, 0), 1); // an idle link has sent nothing yet: the first 1000 bytes end at 1 ms
  t.is(p.reserve(1000, 0), 2);
  t.is(p.reserve(3000, 1.5), 3.5); // waits stack up, and late wake-ups do not add to them
  t.is(p.reserve(1000, 100), 0); // after an idle spell, one slice may go at once
  t.throws(() => new Pacer(0));
});

test('bytes, ranges, uploads and pushes go through the link unchanged', async (t) => {
  const seeded = await seedImage({ host: link.host, users: [] }, { repo: 'link/app', tag: 'v1', layers: [{ seed: 'link', size: 1_500_000 }] });
  const client = new RegistryClient({ host: link.host, credentialOptions: { configDir: '/nonexistent-airgap', env: {} } });
  t.teardown(() => client.close());
  const layer: Descriptor = { mediaType: 'application/octet-stream', digest: seeded.layers[0]!, size: -1 };
  const head = await client.headBlob('link/app', layer.digest);
  layer.size = head!.size;
  const whole = await readAll(await client.getBlob('link/app', layer));
  t.is(whole.length, layer.size);
  t.true(await client.servesRanges('link/app', layer));
  const part = await readAll(await client.getBlobRange('link/app', layer, 1000, 300_000));
  t.true(part.equals(whole.subarray(1000, 300_000)));
  const s = link.stats();
  t.true(s.requests > 5);
  t.true(s.bytesDown >= layer.size + part.length);
  t.true(s.bytesUp >= layer.size); // the seed pushed the layer through the link
});
