import anyTest, { type ExecutionContext, type TestFn } from 'ava';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { imageOf, type TestImage } from '../src/bundle/testimages.js';
import { craftBundle, entriesOf, named } from '../src/testing/craft.js';
import { startRegistry, type TestRegistry } from '../src/testing/registry.js';
import { startWorld } from '../src/testing/world.js';
import { buildBundle, json, runCli } from '../src/testing/cli.js';

/**
 * Issue 24 item 9: a delta whose image moved to another repository since its base. The base's
 * push put the shared layer in <ns>/old-web; the delta's image goes to <ns>/web. airgap.json
 * records which of the base's images held each blob it leaves to the base, so push finds the
 * layer where the base put it and mounts it; when it cannot, the message names the repositories
 * it looked in.
 */

interface Ctx { dir: string; registry: TestRegistry; image: TestImage }
const test = anyTest as TestFn<Ctx>;

test.before(async (t) => {
  t.context.dir = await mkdtemp(join(tmpdir(), 'airgap-deltamoved-e2e-'));
  t.context.registry = await startRegistry();
  t.context.image = await imageOf({ files: { 'bin/web': 'web that moved' } });
});

test.after.always(async (t) => {
  await t.context.registry?.stop();
  if (t.context.dir) await rm(t.context.dir, { recursive: true, force: true });
});

const metadata = (images: { ref: string; image: TestImage }[], base?: unknown) => ({
  schemaVersion: 1, tool: { name: 'airgap', version: '0' }, created: '2026-12-01T00:00:00Z', appFiles: [],
  images: images.map(({ ref, image }) => ({ ref, digest: image.root.descriptor.digest, mediaType: image.root.descriptor.mediaType, platforms: ['linux/amd64'], size: 1 })),
  ...(base ? { base } : {}),
});

/** The base (old-web:1, pushed) and a delta naming the same image as web:2 that leaves its layer to the base. */
async function pushBaseAndWriteDelta(t: ExecutionContext<Ctx>, ns: string, recordWhere: boolean): Promise<string> {
  const { image, dir, registry } = t.context;
  const base = join(dir, `${ns}-base.tar`);
  await writeFile(base, craftBundle({ index: [named(image.root.descriptor, 'example.com/acme/old-web:1')], blobs: image.blobs,
    metadata: metadata([{ ref: 'example.com/acme/old-web:1', image }]) }));
  const r = await runCli(['push', base, '--registry', `${registry.host}/${ns}`]);
  t.is(r.code, 0, r.stderr);
  const layer = image.blobs[0]!;
  const delta = join(dir, `${ns}-delta.tar`);
  await writeFile(delta, craftBundle({ index: [named(image.root.descriptor, 'example.com/acme/web:2')], blobs: image.blobs.slice(1),
    metadata: metadata([{ ref: 'example.com/acme/web:2', image }], { id: 'sha256:' + 'b'.repeat(64), created: '2026-11-01T00:00:00Z', release: '1.0',
      blobs: [{ digest: layer.descriptor.digest, size: layer.descriptor.size, ...(recordWhere ? { images: ['example.com/acme/old-web:1'] } : {}) }] }) }));
  return delta;
}

test('a delta whose image moved repository finds its base layer where the base put it, and mounts it', async (t) => {
  const delta = await pushBaseAndWriteDelta(t, 'moved', true);
  const r = await runCli(['push', delta, '--registry', `${t.context.registry.host}/moved`, '--json']);
  t.is(r.code, 0, r.stderr);
  const s = json<{ delta: { blobsFromBase: number }; blobsMounted: number }>(r);
  t.is(s.delta.blobsFromBase, 1);
  t.is(s.blobsMounted, 1, 'the layer was mounted from moved/old-web, not uploaded');
  const res = await fetch(`http://${t.context.registry.host}/v2/moved/web/blobs/${t.context.image.blobs[0]!.descriptor.digest}`, { method: 'HEAD' });
  t.is(res.status, 200, 'moved/web holds the layer');
  const tags = (await (await fetch(`http://${t.context.registry.host}/v2/moved/web/tags/list`)).json()) as { tags: string[] };
  t.deepEqual(tags.tags, ['2']);
});

test('a delta that cannot find its base layer names the repositories it looked in', async (t) => {
  const delta = await pushBaseAndWriteDelta(t, 'unrecorded', false);
  const r = await runCli(['push', delta, '--registry', `${t.context.registry.host}/unrecorded`]);
  t.is(r.code, 1, r.stderr);
  t.regex(r.stderr, new RegExp(`looked in ${t.context.registry.host.replace(/\./g, '\\.')}/unrecorded/web;`));
  t.regex(r.stderr, /same --registry path and --keep-path choice/);
  t.regex(r.stderr, /does not record where its base put them/);
});

test('build --since records, for each blob left to the base, the base\'s images that hold it', async (t) => {
  const world = await startWorld();
  t.teardown(() => world.stop());
  const base = join(t.context.dir, 'world-base.tar');
  const delta = join(t.context.dir, 'world-delta.tar');
  await buildBundle(world, base);
  await buildBundle(world, delta, ['--since', base]);
  const baseRefs = new Set(json<{ images: { ref: string }[] }>(await runCli(['inspect', base, '--json'])).images.map((i) => i.ref));
  const meta = JSON.parse(entriesOf(await readFile(delta)).find((e) => e.name === 'airgap.json')!.body.toString()) as
    { base: { blobs: { digest: string; images?: string[] }[] } };
  t.true(meta.base.blobs.length > 0);
  for (const b of meta.base.blobs) {
    t.true((b.images ?? []).length > 0, `${b.digest} records where the base put it`);
    for (const ref of b.images ?? []) t.true(baseRefs.has(ref), `${ref} is one of the base's images`);
  }
});
