import test from 'ava';
import { Readable } from 'node:stream';
import { isAirgapError } from '../errors.js';
import { childrenOf, parseManifest } from '../oci/manifest.js';
import { MediaType } from '../oci/mediatypes.js';
import { sha256Digest } from '../oci/verify.js';
import { seedImage } from '../testing/fixtures.js';
import { type TestRegistry, startRegistry } from '../testing/registry.js';
import { createRegistryAccess } from './access.js';
import { RegistryClient } from './client.js';
import { RegistryStore, isManifestMediaType } from './store.js';

const USER = { username: 'dave', password: 'store-pw' };
let pub: TestRegistry;
let priv: TestRegistry;

test.before(async () => {
  [pub, priv] = await Promise.all([startRegistry(), startRegistry({ users: [USER] })]);
});

test.after.always(async () => {
  await Promise.all([pub, priv].filter(Boolean).map((r) => r.stop()));
});

async function readAll(s: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of s as AsyncIterable<Buffer>) chunks.push(c);
  return Buffer.concat(chunks);
}

test('repository paths are taken raw (a proxied path carries host:port)', (t) => {
  const c = new RegistryClient({ host: 'proxy.example.com' });
  const s = new RegistryStore(c, 'proxy/my-app/127.0.0.1:5001/org/api');
  t.is(s.label, 'registry proxy.example.com/proxy/my-app/127.0.0.1:5001/org/api');
  t.true(isAirgapError(t.throws(() => new RegistryStore(c, '')), 'E_REFERENCE'));
  t.true(isAirgapError(t.throws(() => new RegistryStore(c, 'a b')), 'E_REFERENCE'));
});

test('manifest media types go to the manifest endpoint, the rest to blobs', (t) => {
  const configs: string[] = [MediaType.OciConfig, MediaType.DockerConfig];
  for (const mt of Object.values(MediaType)) t.is(isManifestMediaType(mt), !configs.includes(mt), mt);
  t.false(isManifestMediaType('application/vnd.oci.image.layer.v1.tar+gzip'));
});

test('access: open + resolve/fetch/exists/push/tag across registries, probe, tagFor', async (t) => {
  const img = await seedImage(pub, { repo: 'lib/web', tag: '2.1', layers: [{ seed: 'w', size: 10_000 }] });
  await seedImage(pub, { repo: 'lib/web', tag: 'other', layers: [{ seed: 'other', size: 100 }] });
  const access = createRegistryAccess({
    credentials: { [priv.host]: USER },
    retry: { attempts: 2, baseDelayMs: 10, maxDelayMs: 20 },
    credentialOptions: { configDir: '/nonexistent-airgap', env: {} },
  });
  t.teardown(() => access.close());

  t.is(await access.probe.probe(pub.host, 'lib/web', '2.1'), 'readable');
  t.is(await access.probe.probe(pub.host, 'lib/web', '9.9'), 'not-found');
  t.is(await access.probe.tagFor(pub.host, 'lib/web', img.digest), '2.1');
  t.is(await access.probe.tagFor(pub.host, 'lib/web', 'sha256:' + 'f'.repeat(64)), undefined);

  const src = access.open({ registry: pub.host, repository: 'lib/web' });
  const dst = access.open({ registry: priv.host, repository: 'customer/web' });
  const root = await src.resolve('2.1');
  t.is(root.descriptor.digest, img.digest);
  const fetched = await readAll(await src.fetch(root.descriptor));
  t.is(sha256Digest(fetched), img.digest);

  t.false(await dst.exists(root.descriptor));
  for (const d of childrenOf(parseManifest(root.bytes))) {
    t.is(await dst.push(d, () => src.fetch(d)), 'uploaded');
    t.true(await dst.exists(d));
  }
  t.is(await dst.push(root.descriptor, () => src.fetch(root.descriptor)), 'uploaded');
  // A manifest is PUT without a HEAD first: again is harmless (same bytes, same digest) and says so.
  t.is(await dst.push(root.descriptor, () => src.fetch(root.descriptor)), 'uploaded');
  // Pushed by digest only: no tag yet.
  t.is(await access.probe.probe(priv.host, 'customer/web', '2.1'), 'unauthorized');
  const before = await dst.resolve(root.descriptor.digest);
  t.deepEqual(Buffer.from(before.bytes), Buffer.from(root.bytes));
  await t.throwsAsync(dst.resolve('2.1'), { code: 'E_NOT_FOUND' } as never);
  await dst.tag(root.descriptor, root.bytes, '2.1');
  t.is((await dst.resolve('2.1')).descriptor.digest, img.digest);

  // A manifest whose bytes do not match its descriptor is refused before it is sent.
  const bogus = { ...root.descriptor, digest: 'sha256:' + 'e'.repeat(64) };
  const e = await t.throwsAsync(dst.push(bogus, async () => Readable.from([Buffer.from(root.bytes)])));
  t.true(isAirgapError(e, 'E_DIGEST_MISMATCH'));
});
