import test from 'ava';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { imageOf } from '../src/bundle/testimages.js';
import { craftBundle, named } from '../src/testing/craft.js';
import { json, runCli } from '../src/testing/cli.js';

/**
 * inspect is linear in the number of index.json entries: each image is looked up by key, never
 * by searching the list (20,000 entries took 76 s). Asserted as a ratio, not a time: 8× the
 * entries must cost far less than 64× (quadratic) — measured 3.5–6× after the fix, 43–50× before.
 */

async function bundleOf(dir: string, n: number): Promise<string> {
  const img = await imageOf({ files: { 'bin/app': 'scale' } });
  const refs = Array.from({ length: n }, (_, i) => `example.com/acme/app${i}:1`);
  const path = join(dir, `b${n}.tar`);
  await writeFile(path, craftBundle({
    index: refs.map((r) => named(img.root.descriptor, r)), blobs: img.blobs,
    metadata: { schemaVersion: 1, tool: { name: 'airgap', version: '0' }, created: 'now', appFiles: [],
      images: refs.map((ref) => ({ ref, digest: img.root.descriptor.digest, mediaType: img.root.descriptor.mediaType, platforms: ['linux/amd64'], size: 1 })) },
  }));
  return path;
}

async function timed(path: string): Promise<{ ms: number; images: number }> {
  const start = process.hrtime.bigint();
  const r = await runCli(['inspect', path, '--json']);
  const ms = Number(process.hrtime.bigint() - start) / 1e6;
  return { ms, images: json<{ images: unknown[] }>(r).images.length };
}

test('inspect of 20,000 index entries costs about 8 times 2,500, not 64 times', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'airgap-inspectscale-e2e-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const [small, big] = [await bundleOf(dir, 2500), await bundleOf(dir, 20000)];
  const a = await timed(small);
  const b = await timed(big);
  t.is(a.images, 2500);
  t.is(b.images, 20000);
  t.log(`2,500 entries: ${a.ms.toFixed(0)} ms; 20,000: ${b.ms.toFixed(0)} ms (×${(b.ms / a.ms).toFixed(1)})`);
  t.true(b.ms / a.ms < 20, `20,000 entries took ${(b.ms / a.ms).toFixed(1)} times as long as 2,500`);
});
