import test from 'ava';
import { readdirSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { BundleReader } from './bundle/reader.js';
import { BundleWriter } from './bundle/writer.js';
import { Copier, flatten, loadGraph, type CopyEvent, type GraphNode } from './copy.js';
import type { Descriptor } from './oci/descriptor.js';
import { splitRanges } from './parts.js';
import { RegistryClient } from './registry/client.js';
import { RegistryStore } from './registry/store.js';
import { type Front, startFront } from './registry/testfront.js';
import type { FetchOptions, SourceStore } from './store.js';
import { seedImage } from './testing/fixtures.js';
import { type TestRegistry, startRegistry } from './testing/registry.js';

const FAST = { attempts: 4, baseDelayMs: 10, maxDelayMs: 50, maxElapsedMs: 10_000, retryAfterCapMs: 300 };
const LAYER = 700_000;

let registry: TestRegistry;
let layer: Descriptor;
let layerBytes: Buffer;
const cleanups: (() => Promise<void>)[] = [];

test.before(async () => {
  registry = await startRegistry();
  await seedImage(registry, { repo: 'parts/app', tag: 'v1', layers: [{ seed: 'parts', size: LAYER }] });
  await seedImage(registry, { repo: 'parts/other', tag: 'v1', layers: [{ seed: 'parts', size: LAYER }] });
  const c = client(registry.host);
  const manifest = JSON.parse(Buffer.from((await c.getManifest('parts/app', 'v1')).bytes).toString('utf8')) as { layers: Descriptor[] };
  layer = manifest.layers[0]!;
  layerBytes = await readAll(await c.getBlob('parts/app', layer));
});

test.after.always(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => undefined);
  await registry?.stop();
});

function client(host: string): RegistryClient {
  const c = new RegistryClient({ host, retry: FAST, credentialOptions: { configDir: '/nonexistent-airgap', env: {} } });
  cleanups.push(() => c.close());
  return c;
}

async function front(handler: Parameters<typeof startFront>[1]): Promise<Front> {
  const f = await startFront(registry.host, handler);
  cleanups.push(() => f.stop());
  return f;
}

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

test('splitRanges covers the blob with parts of at most the part size', (t) => {
  t.deepEqual(splitRanges(10, 4), [[0, 4], [4, 8], [8, 10]]);
  t.deepEqual(splitRanges(8, 4), [[0, 4], [4, 8]]);
  t.deepEqual(splitRanges(0, 4), []);
});

test('docker-registry serves ranges: each part is exactly its bytes', async (t) => {
  const c = client(registry.host);
  t.true(await c.servesRanges('parts/app', layer));
  const parts = await Promise.all(splitRanges(layer.size, 100_000).map(([s, e]) => c.getBlobRange('parts/app', layer, s, e).then(readAll)));
  t.true(Buffer.concat(parts).equals(layerBytes));
  t.true((await readAll(await c.getBlobRange('parts/app', layer, layer.size - 5, layer.size))).equals(layerBytes.subarray(-5)));
});

test('a part cut mid-body resumes with a Range that starts where it stopped and still ends at the part end', async (t) => {
  let cut = false;
  const f = await front(async (req, _res, ctx) => {
    if (!cut && req.headers.range === 'bytes=200000-399999') {
      cut = true;
      await ctx.forward({ cutAfter: 50_000 });
      return;
    }
    await ctx.forward();
  });
  const got = await readAll(await client(f.host).getBlobRange('parts/app', layer, 200_000, 400_000));
  t.true(got.equals(layerBytes.subarray(200_000, 400_000)));
  t.true(cut);
  const ranges = f.seen.filter((r) => r.url.includes('/blobs/')).map((r) => r.headers.range);
  t.is(ranges[0], 'bytes=200000-399999');
  const resumed = ranges[1]!;
  const m = /^bytes=(\d+)-399999$/.exec(resumed);
  t.truthy(m, resumed);
  t.true(Number(m![1]) >= 200_000 + 1 && Number(m![1]) <= 250_000);
});

test('a registry that ignores Range is detected, and a part read from its 200 answer is still exact', async (t) => {
  const f = await front((_req, _res, ctx) => ctx.forward({ headers: { range: undefined } }));
  const c = client(f.host);
  t.false(await c.servesRanges('parts/app', layer));
  const got = await readAll(await c.getBlobRange('parts/app', layer, 300_000, 350_000));
  t.true(got.equals(layerBytes.subarray(300_000, 350_000)));
});

/** Builds a bundle of parts/app:v1 from `src` with a small part size; returns the events and the path. */
async function tempDir(t: { teardown: (fn: () => Promise<void>) => void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'airgap-parts-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

async function buildWithParts(dir: string, src: SourceStore, engine: { concurrency: number; partSize: number; signal?: AbortSignal } = { concurrency: 3, partSize: 128 * 1024 }) {
  const root = await src.resolve('v1');
  const graph: GraphNode = await loadGraph(src, root, 'parts/app:v1');
  const out = join(dir, 'b.tar');
  const writer = await BundleWriter.create(out, {
    blobs: flatten([graph]).map((n) => ({ digest: n.descriptor.digest, size: n.descriptor.size })), appFiles: [],
  });
  const events: CopyEvent[] = [];
  const copier = new Copier(writer, { ...engine, onEvent: (e) => events.push(e) });
  try {
    await copier.copyImage(src, graph, 'parts/app:v1', ['127.0.0.1/parts/app:v1']);
    await writer.finish({ schemaVersion: 1, tool: { name: 'airgap', version: '0.1.0' }, created: new Date().toISOString(), appSlug: 'a', images: [], appFiles: [] });
  } catch (e) {
    await writer.abort();
    throw e;
  }
  return { out, events };
}

test('the engine fetches a big blob as parallel ranges into its place in the bundle', async (t) => {
  const f = await front((_req, _res, ctx) => ctx.forward());
  const src = new RegistryStore(client(f.host), 'parts/app');
  const { out, events } = await buildWithParts(await tempDir(t), src);
  const ranged = f.seen.filter((r) => r.url.endsWith(layer.digest) && r.headers.range !== undefined).map((r) => r.headers.range);
  // The one-byte probe, then one request per 128 KiB part.
  t.is(ranged[0], 'bytes=0-0');
  t.is(ranged.length, 1 + splitRanges(layer.size, 128 * 1024).length);
  t.false(f.seen.some((r) => r.url.endsWith(layer.digest) && r.method === 'GET' && r.headers.range === undefined));
  const progress = events.filter((e): e is Extract<CopyEvent, { type: 'blob-progress' }> => e.type === 'blob-progress' && e.digest === layer.digest);
  t.is(progress.reduce((n, e) => n + e.bytes, 0), layer.size);
  const reader = await BundleReader.open(out);
  try {
    t.true((await readAll(await reader.fetch(layer))).equals(layerBytes));
  } finally {
    await reader.close();
  }
});

test('many parts in flight on one signal: no listener-leak warning reaches the user', async (t) => {
  const warnings: string[] = [];
  const onWarning = (w: Error): void => { warnings.push(`${w.name}: ${w.message}`); };
  process.on('warning', onWarning);
  t.teardown(() => { process.off('warning', onWarning); });
  const src = new RegistryStore(client(registry.host), 'parts/app');
  const partSize = 16 * 1024;
  t.true(splitRanges(layer.size, partSize).length > 20);
  const { out } = await buildWithParts(await tempDir(t), src, { concurrency: 20, partSize, signal: new AbortController().signal });
  const reader = await BundleReader.open(out);
  try {
    t.true((await readAll(await reader.fetch(layer))).equals(layerBytes));
  } finally {
    await reader.close();
  }
  await new Promise((r) => setImmediate(r)); // warnings are emitted on the next tick
  t.deepEqual(warnings, []);
});

test('range support is known per repository: one that ignores Range does not stop parts for another on the same host', async (t) => {
  // A pull-through proxy that serves ranges for one upstream and not for another.
  const f = await front((req, _res, ctx) => (req.url ?? '').startsWith('/v2/parts/other/')
    ? ctx.forward({ headers: { range: undefined } }) : ctx.forward());
  const c = client(f.host);
  t.false(await c.servesRanges('parts/other', layer));
  t.true(await c.servesRanges('parts/app', layer));
  const { out } = await buildWithParts(await tempDir(t), new RegistryStore(c, 'parts/app'));
  const appRanges = f.seen.filter((r) => r.url === `/v2/parts/app/blobs/${layer.digest}` && r.headers.range !== undefined);
  t.is(appRanges.length, 1 + splitRanges(layer.size, 128 * 1024).length);
  // The repository without ranges is read whole, once, not its prefix again for every part.
  const { out: out2 } = await buildWithParts(await tempDir(t), new RegistryStore(c, 'parts/other'));
  const otherGets = f.seen.filter((r) => r.url === `/v2/parts/other/blobs/${layer.digest}` && r.method === 'GET');
  t.is(otherGets.length, 2, 'the one-byte probe, then one whole download');
  for (const file of [out, out2]) {
    const reader = await BundleReader.open(file);
    try {
      t.true((await readAll(await reader.fetch(layer))).equals(layerBytes));
    } finally {
      await reader.close();
    }
  }
});

/** A source that flips one byte in the part holding `at`. */
class TamperingSource implements SourceStore {
  readonly label = 'tampering source';
  readonly #inner: RegistryStore;
  readonly #at: number;
  constructor(inner: RegistryStore, at: number) {
    this.#inner = inner;
    this.#at = at;
  }
  resolve(reference: string, opts?: FetchOptions) { return this.#inner.resolve(reference, opts); }
  fetch(desc: Descriptor, opts?: FetchOptions) { return this.#inner.fetch(desc, opts); }
  servesRanges(desc: Descriptor, opts?: FetchOptions) { return this.#inner.servesRanges(desc, opts); }
  async fetchRange(desc: Descriptor, start: number, end: number, opts?: FetchOptions): Promise<Readable> {
    const body = await this.#inner.fetchRange(desc, start, end, opts);
    if (this.#at < start || this.#at >= end) return body;
    let offset = start;
    const at = this.#at;
    return body.pipe(new Transform({
      transform(chunk: Buffer, _e, cb) {
        const copy = Buffer.from(chunk);
        if (at >= offset && at < offset + copy.length) copy[at - offset] ^= 0xff;
        offset += copy.length;
        cb(null, copy);
      },
    }));
  }
}

test('a tampered part fails the build with E_DIGEST_MISMATCH and leaves nothing behind', async (t) => {
  const src = new TamperingSource(new RegistryStore(client(registry.host), 'parts/app'), 500_000);
  const dir = await tempDir(t);
  const err = await t.throwsAsync(buildWithParts(dir, src));
  t.is((err as { code?: string }).code, 'E_DIGEST_MISMATCH');
  t.regex(err!.message, new RegExp(layer.digest.slice(7, 20)));
  t.deepEqual(readdirSync(dir), []);
});
