import test from 'ava';
import { Limits } from './concurrency.js';
import { type CopyEvent, Copier, flatten, loadGraph } from './copy.js';
import { type AirgapError, isAirgapError } from './errors.js';
import type { Descriptor } from './oci/descriptor.js';
import { type ClosableRegistryAccess, createRegistryAccess } from './registry/access.js';
import { type Front, startFront } from './registry/testfront.js';
import type { PushOutcome } from './store.js';
import { FixtureLayout, inspectRaw } from './testing/fixtures.js';
import { type TestRegistry, startRegistry } from './testing/registry.js';
import { AccessLog, totalRequests } from './testing/requests.js';
import { LayoutSource, seedLayout } from './testing/seed.js';

// The copy engine into a real registry (docker-registry), counted from its access log: what each
// request is for is written down in docs/performance.md.

let registry: TestRegistry;
test.before(async () => {
  registry = await startRegistry({ accessLog: true });
});
test.after.always(async () => {
  await registry?.stop();
});

test.serial('into a registry: one HEAD per blob, index children by digest without a HEAD, each root once by its tag', async (t) => {
  const layout = await FixtureLayout.create({ gzipLevel: 0 });
  t.teardown(() => layout.remove());
  const one = await layout.build('one', { layers: [{ seed: 'one-a', size: 3000 }, { seed: 'one-b', size: 4000 }] });
  const multi = await layout.build('multi', { layers: [{ seed: 'multi', size: 2000 }], platforms: ['linux/amd64', 'linux/arm64'] });
  const log = new AccessLog(registry.accessLog!);
  await log.mark();
  await seedLayout(layout, registry.host, [{ name: 'one', repo: 'req/one', tag: 'v1' }, { name: 'multi', repo: 'req/multi', tag: 'v1' }]);
  const counts = await log.counts();

  // skopeo reads back exactly what was built, under its tag.
  t.is((await inspectRaw(`${registry.host}/req/one:v1`)).digest, one.digest);
  t.is((await inspectRaw(`${registry.host}/req/multi:v1`)).digest, multi.digest);
  // Blobs: 2 layers + 1 config, and per platform 1 layer + 1 config: 7, each asked about once.
  t.is(counts.get('HEAD blob 404'), 7);
  t.is(counts.get('PUT upload 201'), 7);
  // One tag check per image. The index's 2 children are put by digest (no HEAD: a PUT over an
  // existing manifest is harmless and costs the same); each root goes once, by its tag, last.
  t.is(counts.get('HEAD manifest by tag 404'), 2);
  t.is(counts.get('HEAD manifest by digest 404'), undefined);
  t.is(counts.get('PUT manifest by digest 201'), 2);
  t.is(counts.get('PUT manifest by tag 201'), 2);
});

// --- Requests per image into a registry (issue 13): the push side -------------------------------

interface Pushed {
  events: CopyEvent[];
  outcome(image: string, digest: string): PushOutcome | undefined;
}

/**
 * Pushes layout images with the copy engine as `airgap push` does: one copier per repository, one
 * siblings map for the registry, one client per host. `sequential`: one image after the other.
 */
async function pushImages(host: string, layout: FixtureLayout, images: { name: string; repo: string; tag: string }[],
  opts: { sequential?: boolean; access?: ClosableRegistryAccess } = {}): Promise<Pushed> {
  const access = opts.access ?? createRegistryAccess({ credentialOptions: { configDir: '/nonexistent-airgap' } });
  const events: CopyEvent[] = [];
  try {
    const src = new LayoutSource(layout.dir);
    const limits = new Limits({ concurrency: 8 });
    const siblings = new Map<string, Promise<unknown>>();
    const copiers = new Map<string, Copier>();
    const one = async (img: { name: string; repo: string; tag: string }) => {
      const graph = await loadGraph(src, await src.resolve(img.name), img.name);
      let copier = copiers.get(img.repo);
      if (!copier) {
        copier = new Copier(access.open({ registry: host, repository: img.repo }), { limits, siblings, onEvent: (e) => events.push(e) });
        copiers.set(img.repo, copier);
      }
      await copier.copyImage(src, graph, img.name, [img.tag]);
    };
    if (opts.sequential) for (const img of images) await one(img);
    else await Promise.all(images.map(one));
  } finally {
    if (!opts.access) await access.close();
  }
  return {
    events,
    outcome: (image, digest) => {
      const e = events.find((x) => (x.type === 'blob-done' || x.type === 'manifest-done') && x.image === image && x.digest === digest);
      return e && 'outcome' in e ? e.outcome : undefined;
    },
  };
}

/** Counts without the ping (how often the client pings is the transport's business, not the copy's). */
function withoutPing(counts: Map<string, number>): Record<string, number> {
  return Object.fromEntries([...counts].filter(([k]) => !k.includes('ping')).sort(([a], [b]) => (a < b ? -1 : 1)));
}

/** Blobs only (configs and layers) of a built image, read back from the layout. */
async function blobsOf(layout: FixtureLayout, name: string): Promise<Descriptor[]> {
  const src = new LayoutSource(layout.dir);
  return flatten([await loadGraph(src, await src.resolve(name), name)]).filter((n) => n.bytes === undefined).map((n) => n.descriptor);
}

/** A front that forwards everything to the registry but strips `mount=`/`from=`: every mount is answered 202 (ECR, ACR). */
async function mountRefusingFront(): Promise<Front> {
  const front = await startFront(registry.host, async (req, _res, ctx) => {
    if (req.method === 'POST' && req.url?.includes('mount=')) req.url = req.url.split('?')[0];
    await ctx.forward();
  });
  return front;
}

const hexOf = (digest: string) => digest.slice('sha256:'.length);

test.serial('cold push of many small images over shared bases: a tag check, HEAD+POST+PUT per first-seen blob, one mount per sibling-known blob, the root once by tag; a re-push is one request per image', async (t) => {
  const layout = await FixtureLayout.create({ gzipLevel: 0 });
  t.teardown(() => layout.remove());
  // The bench's shape, smaller: a base shared by all 6, a middle shared by 3, a layer of its own.
  const names = [0, 1, 2, 3, 4, 5].map((i) => `many${i}`);
  const built = await Promise.all(names.map((n, i) => layout.build(n, {
    layers: [{ shared: 'many-base', size: 30_000 }, { shared: `many-mid-${i < 3 ? 'a' : 'b'}`, size: 10_000 }, { seed: n, size: 3000 }],
  })));
  const images = names.map((n) => ({ name: n, repo: `many/${n}`, tag: 'v1' }));
  const log = new AccessLog(registry.accessLog!);
  await log.mark();
  const cold = await pushImages(registry.host, layout, images);
  const counts = await log.counts();

  for (const [i, n] of names.entries()) t.is((await inspectRaw(`${registry.host}/many/${n}:v1`)).digest, built[i]!.digest);
  await log.counts(); // skopeo's reads
  // 6 configs + 6 own layers + the base + 2 middles are seen first: HEAD 404, POST, PUT each.
  // The other 5 bases and 4 middles are known in a sibling repository: one POST mount, no HEAD.
  // No manifest HEAD and no PUT by digest: each root goes once, by its tag, after its blobs.
  t.deepEqual(withoutPing(counts), {
    'HEAD blob 404': 15,
    'HEAD manifest by tag 404': 6,
    'POST mount 201': 9,
    'POST upload 202': 15,
    'PUT manifest by tag 201': 6,
    'PUT upload 201': 15,
  });
  t.is(totalRequests(new Map(Object.entries(withoutPing(counts)))) / names.length, 11);
  // Events stay truthful: the roots were sent (by tag), the shared blobs mounted once each elsewhere.
  for (const [i, n] of names.entries()) t.is(cold.outcome(n, built[i]!.digest), 'uploaded');
  const base = built[0]!.layers[0]!;
  t.deepEqual(names.map((n) => cold.outcome(n, base)).filter((o) => o !== undefined).sort(),
    ['mounted', 'mounted', 'mounted', 'mounted', 'mounted', 'uploaded']);

  await log.mark();
  const again = await pushImages(registry.host, layout, images);
  t.deepEqual(withoutPing(await log.counts()), { 'HEAD manifest by tag 200': 6 });
  t.true(again.events.filter((e) => e.type === 'image-done').every((e) => e.type === 'image-done' && e.existed));
});

test('a blob known in a sibling repository is mounted with one POST, no HEAD first; the tag is written after every blob of its image', async (t) => {
  const layout = await FixtureLayout.create({ gzipLevel: 0 });
  t.teardown(() => layout.remove());
  const a = await layout.build('sib-a', { layers: [{ shared: 'sib-base', size: 20_000 }, { seed: 'sib-a', size: 2000 }] });
  const b = await layout.build('sib-b', { layers: [{ shared: 'sib-base', size: 20_000 }, { seed: 'sib-b', size: 2000 }] });
  const front = await startFront(registry.host, (_req, _res, ctx) => ctx.forward());
  t.teardown(() => front.stop());
  const pushed = await pushImages(front.host, layout, [{ name: 'sib-a', repo: 'sib/a', tag: 'v1' }, { name: 'sib-b', repo: 'sib/b', tag: 'v1' }], { sequential: true });
  const base = a.layers[0]!;
  const aboutBase = front.seen.filter((s) => s.url.startsWith('/v2/sib/b/') && s.url.includes(hexOf(base)));
  t.deepEqual(aboutBase.map((s) => `${s.method} ${s.url.split('?')[0]}`), ['POST /v2/sib/b/blobs/uploads/']);
  t.true(aboutBase[0]!.url.includes('mount='));
  t.is(pushed.outcome('sib-b', base), 'mounted');
  t.is((await inspectRaw(`${registry.host}/sib/b:v1`)).digest, b.digest);
  // The tag (the root's only PUT) comes after every upload and mount into its repository.
  for (const repo of ['sib/a', 'sib/b']) {
    const mine = front.seen.filter((s) => s.url.startsWith(`/v2/${repo}/`));
    const tagAt = mine.findIndex((s) => s.method === 'PUT' && s.url.startsWith(`/v2/${repo}/manifests/v1`));
    t.true(tagAt > 0);
    t.is(mine.findIndex((s, i) => i > tagAt && s.url.includes('/blobs/')), -1, `${repo}: nothing after the tag`);
    t.false(mine.some((s) => s.url.includes('/manifests/sha256:')), `${repo}: the root is never put or looked for by digest`);
  }
});

test('a mount answered 202 (refused): HEAD in the target, then the upload goes into the session the 202 opened; no DELETE, no second POST', async (t) => {
  const layout = await FixtureLayout.create({ gzipLevel: 0 });
  t.teardown(() => layout.remove());
  const a = await layout.build('ref-a', { layers: [{ shared: 'ref-base', size: 20_000 }, { seed: 'ref-a', size: 2000 }] });
  const b = await layout.build('ref-b', { layers: [{ shared: 'ref-base', size: 20_000 }, { seed: 'ref-b', size: 2000 }] });
  const front = await mountRefusingFront();
  t.teardown(() => front.stop());
  const pushed = await pushImages(front.host, layout, [{ name: 'ref-a', repo: 'refused/a', tag: 'v1' }, { name: 'ref-b', repo: 'refused/b', tag: 'v1' }], { sequential: true });
  const base = a.layers[0]!;
  const intoB = front.seen.filter((s) => s.url.startsWith('/v2/refused/b/blobs/'));
  const baseSeq = intoB.filter((s) => s.url.includes(hexOf(base)));
  t.deepEqual(baseSeq.map((s) => s.method), ['POST', 'HEAD', 'PUT']);
  t.true(baseSeq[0]!.url.includes('mount='));
  // config + own layer: POST each; the base: its mount POST only (the session it opened took the bytes).
  t.is(intoB.filter((s) => s.method === 'POST').length, 3);
  t.is(intoB.filter((s) => s.method === 'DELETE').length, 0);
  t.is(pushed.outcome('ref-b', base), 'uploaded');
  t.is((await inspectRaw(`${registry.host}/refused/b:v1`)).digest, b.digest);
  const head = await fetch(`http://${registry.host}/v2/refused/b/blobs/${base}`, { method: 'HEAD' });
  t.is(head.status, 200);
});

test('a partial earlier push: blobs already in the target move no byte, neither after a HEAD nor after a refused mount', async (t) => {
  const layout = await FixtureLayout.create({ gzipLevel: 0 });
  t.teardown(() => layout.remove());
  const a = await layout.build('part-a', { layers: [{ shared: 'part-base', size: 20_000 }, { seed: 'part-a', size: 2000 }] });
  const b = await layout.build('part-b', { layers: [{ shared: 'part-base', size: 20_000 }, { seed: 'part-b', size: 2000 }] });
  // The earlier run stored every blob of both images and was cut before any manifest or tag.
  const access = createRegistryAccess({ credentialOptions: { configDir: '/nonexistent-airgap' } });
  const src = new LayoutSource(layout.dir);
  for (const [name, repo] of [['part-a', 'partial/a'], ['part-b', 'partial/b']] as const) {
    const store = access.open({ registry: registry.host, repository: repo });
    for (const d of await blobsOf(layout, name)) t.not(await store.push(d, () => src.fetch(d)), 'existed');
  }
  await access.close();

  // Plain registry: every blob is asked about (HEAD 200) or mounted (moves nothing); no upload.
  const plain = await startFront(registry.host, (_req, _res, ctx) => ctx.forward());
  t.teardown(() => plain.stop());
  const first = await pushImages(plain.host, layout, [{ name: 'part-a', repo: 'partial/a', tag: 'v1' }, { name: 'part-b', repo: 'partial/b', tag: 'v1' }], { sequential: true });
  t.false(plain.seen.some((s) => s.method === 'PATCH' || (s.method === 'PUT' && s.url.includes('/blobs/uploads/'))), 'no blob byte moved');
  t.is(first.outcome('part-a', a.layers[0]!), 'existed');
  t.is(first.outcome('part-b', b.layers[1]!), 'existed');
  t.is((await inspectRaw(`${registry.host}/partial/b:v1`)).digest, b.digest);

  // Mounts refused: the base is known in partial/a, the mount into partial/b is answered 202, the
  // HEAD finds it there, the session is given back. (New tags, so the images are not skipped whole.)
  const refusing = await mountRefusingFront();
  t.teardown(() => refusing.stop());
  const second = await pushImages(refusing.host, layout, [{ name: 'part-a', repo: 'partial/a', tag: 'v2' }, { name: 'part-b', repo: 'partial/b', tag: 'v2' }], { sequential: true });
  t.false(refusing.seen.some((s) => s.method === 'PATCH' || (s.method === 'PUT' && s.url.includes('/blobs/uploads/'))), 'no blob byte moved');
  const baseSeq = refusing.seen.filter((s) => s.url.startsWith('/v2/partial/b/blobs/') && s.url.includes(hexOf(a.layers[0]!)));
  t.deepEqual(baseSeq.map((s) => s.method), ['POST', 'HEAD']);
  t.is(refusing.seen.filter((s) => s.method === 'DELETE' && s.url.startsWith('/v2/partial/b/blobs/uploads/')).length, 1, 'the 202 session is cancelled');
  t.is(second.outcome('part-b', a.layers[0]!), 'existed');
  t.is((await inspectRaw(`${registry.host}/partial/b:v2`)).digest, b.digest);
});

test('a registry whose answer to the tag PUT names another digest: E_DIGEST_MISMATCH naming the image, the registry and both digests', async (t) => {
  const layout = await FixtureLayout.create({ gzipLevel: 0 });
  t.teardown(() => layout.remove());
  const img = await layout.build('liar', { layers: [{ seed: 'liar', size: 2000 }] });
  const other = `sha256:${'0'.repeat(64)}`;
  const front = await startFront(registry.host, (req, _res, ctx) => ctx.forward(
    req.method === 'PUT' && /\/manifests\/[^/]+$/.test(req.url ?? '') ? { responseHeaders: { 'docker-content-digest': other } } : {}));
  t.teardown(() => front.stop());
  const e = await t.throwsAsync(pushImages(front.host, layout, [{ name: 'liar', repo: 'liar/app', tag: 'v1' }]));
  t.true(isAirgapError(e, 'E_DIGEST_MISMATCH'), String(e));
  for (const part of ['liar', front.host, img.digest, other]) t.true(e!.message.includes(part), `${part} in: ${e!.message}`);
  t.truthy((e as AirgapError).hint);
});

test.serial('an untagged root (a referrer): children first, the root by digest with no HEAD before it; again, one HEAD by digest stands for the whole graph', async (t) => {
  const layout = await FixtureLayout.create({ gzipLevel: 0 });
  t.teardown(() => layout.remove());
  const ref = await layout.build('untagged', { layers: [{ seed: 'untagged', size: 2000 }] });
  const src = new LayoutSource(layout.dir);
  const graph = await loadGraph(src, await src.resolve('untagged'), 'untagged');
  const log = new AccessLog(registry.accessLog!);
  const copyOnce = async (): Promise<CopyEvent[]> => {
    const access = createRegistryAccess({ credentialOptions: { configDir: '/nonexistent-airgap' } });
    const events: CopyEvent[] = [];
    try {
      const copier = new Copier(access.open({ registry: registry.host, repository: 'untagged/app' }), { concurrency: 4, onEvent: (e) => events.push(e) });
      await copier.copyImage(src, graph, 'untagged', [], true);
    } finally {
      await access.close();
    }
    return events;
  };
  await log.mark();
  const cold = await copyOnce();
  t.deepEqual(withoutPing(await log.counts()), {
    'HEAD blob 404': 2, 'HEAD manifest by digest 404': 1, 'POST upload 202': 2, 'PUT manifest by digest 201': 1, 'PUT upload 201': 2,
  });
  t.true(cold.some((e) => e.type === 'manifest-done' && e.digest === ref.digest && e.outcome === 'uploaded'));
  await log.mark();
  const again = await copyOnce();
  t.deepEqual(withoutPing(await log.counts()), { 'HEAD manifest by digest 200': 1 });
  t.true(again.filter((e) => e.type === 'blob-done' || e.type === 'manifest-done').every((e) => 'outcome' in e && e.outcome === 'existed'));
});

test('a tag PUT answered 200 by a web page (no Docker-Content-Digest) is not taken as stored', async (t) => {
  const layout = await FixtureLayout.create({ gzipLevel: 0 });
  t.teardown(() => layout.remove());
  await layout.build('portal', { layers: [{ seed: 'portal', size: 2000 }] });
  const front = await startFront(registry.host, async (req, res, ctx) => {
    if (req.method === 'PUT' && /\/manifests\/[^/]+$/.test(req.url ?? '')) {
      await ctx.body();
      res.writeHead(200, { 'content-type': 'text/html' }).end('<!doctype html><html><body>Sign in</body></html>');
      return;
    }
    await ctx.forward();
  });
  t.teardown(() => front.stop());
  const e = await t.throwsAsync(pushImages(front.host, layout, [{ name: 'portal', repo: 'portal/app', tag: 'v1' }]));
  t.true(isAirgapError(e, 'E_REGISTRY'), String(e));
  t.true(e!.message.includes(front.host) && e!.message.includes('200'), e!.message);
});
