import test from 'ava';
import { generateKeyPairSync } from 'node:crypto';
import { cosignTag, discoverAttached, kindOfTag, publishReferrers, referrersTag } from './attached.js';
import { loadGraph } from './copy.js';
import { RegistryClient } from './registry/client.js';
import { RegistryStore } from './registry/store.js';
import { pushCosignSignature, pushReferrer, getManifest } from './testing/cosign.js';
import { inspectRaw, seedImage } from './testing/fixtures.js';
import { startRegistry, type TestRegistry } from './testing/registry.js';

let reg: TestRegistry;
let client: RegistryClient;
test.before(async () => {
  reg = await startRegistry();
  client = new RegistryClient({ host: reg.host, anonymous: true });
});
test.after.always(async () => {
  await client?.close();
  await reg?.stop();
});

const D = 'sha256:' + 'ab'.repeat(32);

test('cosign and fall-back tag names', (t) => {
  t.is(cosignTag(D, 'sig'), `sha256-${'ab'.repeat(32)}.sig`);
  t.is(referrersTag(D), `sha256-${'ab'.repeat(32)}`);
  t.is(kindOfTag(cosignTag(D, 'sig')), 'signature');
  t.is(kindOfTag(cosignTag(D, 'att')), 'attestation');
  t.is(kindOfTag(cosignTag(D, 'sbom')), 'sbom');
  for (const tag of ['1.0', 'latest', referrersTag(D), `${referrersTag(D)}.exe`, `sha256-${'ab'.repeat(31)}.sig`]) t.is(kindOfTag(tag), undefined, tag);
});

test('discovery: an image with nothing attached has nothing; one signed has its signature and referrer (distribution 2.8: fall-back tag)', async (t) => {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const plain = await seedImage(reg, { repo: 'lib/plain', tag: '1', layers: [{ seed: 'plain', size: 512 }] });
  const signed = await seedImage(reg, { repo: 'lib/signed', tag: '1', layers: [{ seed: 'signed', size: 512 }] });
  const sig = await pushCosignSignature(reg, 'lib/signed', signed.digest, privateKey);
  const raw = await inspectRaw(`${reg.host}/lib/signed:1`);
  const ref = await pushReferrer(reg, 'lib/signed', { digest: signed.digest, size: raw.raw.length, mediaType: raw.mediaType });

  const graphOf = async (store: RegistryStore) => loadGraph(store, await store.resolve('1'), 'test');
  const plainStore = new RegistryStore(client, 'lib/plain');
  t.deepEqual(await discoverAttached(plainStore, await graphOf(plainStore), 'plain'), []);
  const store = new RegistryStore(client, 'lib/signed');
  const found = await discoverAttached(store, await graphOf(store), 'signed');
  t.deepEqual(found.map((a) => [a.kind, a.tag, a.graph.descriptor.digest, a.subject]).sort(), [
    ['referrer', undefined, ref.digest, signed.digest],
    ['signature', sig.tag, sig.digest, signed.digest],
  ].sort());
  t.is(await store.referrers(signed.digest), undefined, 'docker-registry 2.8 has no referrers API');
});

test('publishReferrers merges into an existing fall-back index and never drops its entries', async (t) => {
  const img = await seedImage(reg, { repo: 'lib/merge', tag: '1', layers: [{ seed: 'merge', size: 512 }] });
  const raw = await inspectRaw(`${reg.host}/lib/merge:1`);
  const subject = { digest: img.digest, size: raw.raw.length, mediaType: raw.mediaType };
  const first = await pushReferrer(reg, 'lib/merge', subject, 'application/a');
  // A second referrer pushed by digest only, then published by us.
  const store = new RegistryStore(client, 'lib/merge');
  const second = await pushReferrer({ host: reg.host, users: [] }, 'lib/merge', subject, 'application/b', false);
  const desc = { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: second.digest, size: second.manifest.length, artifactType: 'application/b' };
  t.true(await publishReferrers(store, img.digest, [desc]));
  const index = JSON.parse((await getManifest(reg, 'lib/merge', referrersTag(img.digest)))!.toString()) as { manifests: { digest: string; artifactType: string }[] };
  t.deepEqual(index.manifests.map((m) => [m.digest, m.artifactType]), [[first.digest, 'application/a'], [second.digest, 'application/b']]);
  t.false(await publishReferrers(store, img.digest, [desc]), 'already listed: nothing written');
});
