import test, { type ExecutionContext } from 'ava';
import { generateKeyPairSync } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import { cosignTag, discoverAttached, kindOfTag, publishReferrers, referrersTag } from './attached.js';
import { loadGraph } from './copy.js';
import { RegistryClient } from './registry/client.js';
import { RegistryStore } from './registry/store.js';
import { pushCosignSignature, pushReferrer, getManifest } from './testing/cosign.js';
import { inspectRaw, seedImage } from './testing/fixtures.js';
import { startRegistry, type TestRegistry } from './testing/registry.js';
import { startReferrersFront } from './testing/referrers.js';
import { startFront, type Front } from './registry/testfront.js';

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

// ---- requests: what discovery asks, counted by a front that sees every request (testfront.ts)

interface Counted { front: Front; client: RegistryClient; count: (re: RegExp, method?: string) => number }

/** A counting front over the test registry, `answer` replying on its own where it returns true; a fresh client (nothing learnt yet). */
async function counted(t: ExecutionContext, answer: (url: string, res: ServerResponse) => boolean = () => false): Promise<Counted> {
  const front = await startFront(reg.host, async (req, res, ctx) => {
    if (!answer(req.url ?? '', res)) await ctx.forward();
  });
  t.teardown(() => front.stop());
  const c = new RegistryClient({ host: front.host, anonymous: true });
  t.teardown(() => c.close());
  const count = (re: RegExp, method?: string) => front.seen.filter((s) => re.test(s.url) && (!method || s.method === method)).length;
  return { front, client: c, count };
}

/** Three images in `repo` (tags 1, 2, 3); the first signed (cosign tag) and with an OCI referrer (fall-back tag). */
async function threeImages(repo: string): Promise<{ digests: string[]; sig: { tag: string; digest: string }; referrer: string }> {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const digests: string[] = [];
  for (const tag of ['1', '2', '3']) digests.push((await seedImage(reg, { repo, tag, layers: [{ seed: `${repo}-${tag}`, size: 256 }] })).digest);
  const sig = await pushCosignSignature(reg, repo, digests[0]!, privateKey);
  const raw = await inspectRaw(`${reg.host}/${repo}:1`);
  const referrer = (await pushReferrer(reg, repo, { digest: digests[0]!, size: raw.raw.length, mediaType: raw.mediaType })).digest;
  return { digests, sig, referrer };
}

async function discoverAll(c: RegistryClient, repo: string): Promise<string[][]> {
  const store = new RegistryStore(c, repo);
  const found = await Promise.all(['1', '2', '3'].map(async (tag) => discoverAttached(store, await loadGraph(store, await store.resolve(tag), tag), tag)));
  return found.flat().map((a) => [a.kind, a.subject, a.graph.descriptor.digest]).sort();
}

const TAGS = /\/tags\/list$/;
const SHA_TAG = /\/manifests\/sha256-[a-f0-9]{64}(\.[a-z]+)?$/;
const REFERRERS_API = /\/referrers\//;

test('discovery lists the tags once per repository, asks no tag that is not listed, and the registry without referrers API once', async (t) => {
  const { digests, sig, referrer } = await threeImages('count/listed');
  const { client: c, count } = await counted(t);
  const found = await discoverAll(c, 'count/listed');
  t.deepEqual(found, [['referrer', digests[0], referrer], ['signature', digests[0], sig.digest]].sort());
  t.is(count(TAGS, 'GET'), 1, 'one tag list for three images of one repository');
  t.is(count(REFERRERS_API), 1, 'distribution 2.8 answers 404: asked once for the registry');
  // Only the two listed tags are asked, each as before: HEAD (peek), then the manifest by digest.
  t.is(count(/\.sig$/, 'HEAD'), 1);
  t.is(count(/\/manifests\/sha256-[a-f0-9]{64}$/, 'HEAD'), 1);
  t.is(count(SHA_TAG, 'HEAD'), 2, 'no HEAD for a cosign or fall-back tag the list does not hold');
  // Another repository of the same registry: its own tag list, still no referrers request.
  await seedImage(reg, { repo: 'count/other', tag: '1', layers: [{ seed: 'other', size: 256 }] });
  const other = new RegistryStore(c, 'count/other');
  t.deepEqual(await discoverAttached(other, await loadGraph(other, await other.resolve('1'), 'o'), 'o'), []);
  t.is(count(TAGS, 'GET'), 2);
  t.is(count(REFERRERS_API), 1, 'the 404 is remembered for the registry');
});

for (const [name, answer] of [
  ['refused (403 DENIED, as ECR without ecr:ListImages)', (res: ServerResponse) => {
    const body = JSON.stringify({ errors: [{ code: 'DENIED', message: 'not authorized to perform: ecr:ListImages' }] });
    res.writeHead(403, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }).end(body);
  }],
  ['paginated (a Link header)', (res: ServerResponse) => {
    const body = JSON.stringify({ name: 'x', tags: ['1'] });
    res.writeHead(200, { 'content-type': 'application/json', link: '</v2/x/tags/list?last=1&n=1>; rel="next"', 'content-length': Buffer.byteLength(body) }).end(body);
  }],
  ['not a tag list', (res: ServerResponse) => {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': 9 }).end('{"tags":1');
  }],
] as const) {
  test(`a tag list ${name}: asked once, then each cosign and fall-back tag with a HEAD as before; nothing lost`, async (t) => {
    const repo = `count/${name.split(' ')[0]}`;
    const { digests, sig, referrer } = await threeImages(repo);
    const { client: c, count } = await counted(t, (url, res) => {
      if (!TAGS.test(url.split('?')[0]!)) return false;
      answer(res);
      return true;
    });
    t.deepEqual(await discoverAll(c, repo), [['referrer', digests[0], referrer], ['signature', digests[0], sig.digest]].sort());
    t.is(count(/\/tags\/list/, 'GET'), 1, 'the unusable answer is remembered for the repository');
    t.is(count(SHA_TAG, 'HEAD'), 3 * 4, 'sig, att, sbom and the fall-back tag of each of the three images');
  });
}

test('a registry with the referrers API is asked per subject; no fall-back tag is asked', async (t) => {
  const upstream = await startRegistry();
  t.teardown(() => upstream.stop());
  const front = await startReferrersFront(upstream.host);
  t.teardown(() => front.stop());
  const c = new RegistryClient({ host: front.host, anonymous: true });
  t.teardown(() => c.close());
  const digests: string[] = [];
  for (const tag of ['1', '2', '3']) digests.push((await seedImage(upstream, { repo: 'api/x', tag, layers: [{ seed: `api-${tag}`, size: 256 }] })).digest);
  const raw = await inspectRaw(`${upstream.host}/api/x:2`);
  const ref = await pushReferrer({ host: front.host, users: [] }, 'api/x', { digest: digests[1]!, size: raw.raw.length, mediaType: raw.mediaType }, 'application/x', false);
  const found = await discoverAll(c, 'api/x');
  t.deepEqual(found, [['referrer', digests[1], ref.digest]]);
  t.is(front.apiCalls(), 3, 'one referrers request per subject');
  t.is(front.fallbackTagCalls(), 0);
  t.is(front.seen.filter((s) => SHA_TAG.test(s.url)).length, 0, 'no tag HEAD: the tag list holds none of them');
});

test('a 404 NAME_UNKNOWN from the referrers endpoint is not taken for "no API": asked again, and the fall-back tag still read', async (t) => {
  const { digests, referrer } = await threeImages('count/unknown');
  const { client: c, count } = await counted(t, (url, res) => {
    if (!REFERRERS_API.test(url)) return false;
    const body = JSON.stringify({ errors: [{ code: 'NAME_UNKNOWN', message: 'repository name not known to registry' }] });
    res.writeHead(404, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }).end(body);
    return true;
  });
  const found = await discoverAll(c, 'count/unknown');
  t.true(found.some((f) => f[0] === 'referrer' && f[1] === digests[0] && f[2] === referrer));
  t.is(count(REFERRERS_API), 3, 'not remembered: each subject asks');
});

test('concurrent lookups on a registry without referrers API wait for the first: one request for many subjects', async (t) => {
  const digests: string[] = [];
  for (let i = 0; i < 6; i++) digests.push((await seedImage(reg, { repo: `count/many${i}`, tag: '1', layers: [{ seed: `many-${i}`, size: 128 }] })).digest);
  const { client: c, count } = await counted(t);
  const lists = await Promise.all(digests.map((d, i) => c.getReferrers(`count/many${i}`, d)));
  t.deepEqual(lists, digests.map(() => undefined));
  t.is(count(REFERRERS_API), 1);
  // Another client on another transport knows nothing yet: it asks (per process and transport).
  const fresh = new RegistryClient({ host: c.host, anonymous: true });
  t.teardown(() => fresh.close());
  t.is(await fresh.getReferrers('count/many0', digests[0]!), undefined);
  t.is(count(REFERRERS_API), 2);
});
