import test from 'ava';
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { extract } from 'tar-stream';
import { FixtureLayout, inspectRaw, seedImage } from './fixtures.js';
import { startRegistry, type TestRegistry } from './registry.js';

const layouts: FixtureLayout[] = [];
let registry: TestRegistry | undefined;

test.after.always(async () => {
  await Promise.all(layouts.map((l) => l.remove()));
  await registry?.stop();
});

async function layout(): Promise<FixtureLayout> {
  const l = await FixtureLayout.create();
  layouts.push(l);
  return l;
}

function blob(l: FixtureLayout, digest: string): Promise<Buffer> {
  return readFile(join(l.dir, 'blobs', 'sha256', digest.slice('sha256:'.length)));
}

function sha256(b: Buffer): string {
  return 'sha256:' + createHash('sha256').update(b).digest('hex');
}

async function tarEntries(tar: Buffer): Promise<{ name: string; size: number }[]> {
  const out: { name: string; size: number }[] = [];
  const ex = extract();
  const done = (async () => {
    for await (const entry of ex) {
      let size = 0;
      for await (const chunk of entry) size += (chunk as Buffer).length;
      out.push({ name: entry.header.name, size });
    }
  })();
  ex.end(tar);
  await done;
  return out;
}

test('the same spec gives the same digests; another seed does not', async (t) => {
  const spec = { layers: [{ seed: 'a', size: 10_000 }, { shared: 'base' }] };
  const [a, b] = await Promise.all([layout(), layout()]);
  const one = await a.build('x', spec);
  const two = await b.build('y', spec);
  t.is(one.digest, two.digest);
  t.deepEqual(one.layers, two.layers);
  const other = await a.build('z', { layers: [{ seed: 'b', size: 10_000 }, { shared: 'base' }] });
  t.not(other.layers[0], one.layers[0]);
  t.is(other.layers[1], one.layers[1], 'a shared layer has one digest in every image');
});

test('a layer is a gzip tar of one file of the requested size, about as big compressed, with a true diff_id', async (t) => {
  const l = await layout();
  const img = await l.build('x', { layers: [{ seed: 'big', size: 300_000 }] });
  const manifest = JSON.parse((await blob(l, img.digest)).toString('utf8')) as {
    mediaType: string; config: { digest: string }; layers: { digest: string; size: number; mediaType: string }[];
  };
  t.is(manifest.mediaType, 'application/vnd.oci.image.manifest.v1+json');
  const layer = manifest.layers[0]!;
  t.is(layer.mediaType, 'application/vnd.oci.image.layer.v1.tar+gzip');
  const gz = await blob(l, layer.digest);
  t.is(gz.length, layer.size);
  t.is(sha256(gz), layer.digest);
  t.true(gz.length > 300_000 && gz.length < 300_000 * 1.01 + 4096, `compressed ${gz.length}`);
  const tar = gunzipSync(gz);
  t.deepEqual((await tarEntries(tar)).map((e) => e.size), [300_000]);
  const config = JSON.parse((await blob(l, manifest.config.digest)).toString('utf8')) as {
    architecture: string; os: string; rootfs: { type: string; diff_ids: string[] };
  };
  t.is(config.architecture, 'amd64');
  t.is(config.os, 'linux');
  t.deepEqual(config.rootfs, { type: 'layers', diff_ids: [sha256(tar)] });
});

test('a multi-platform image is an index of per-platform manifests with their own layers', async (t) => {
  const l = await layout();
  const img = await l.build('x', { layers: [{ seed: 's', size: 1000 }], platforms: ['linux/amd64', 'linux/arm64/v8'] });
  t.is(img.mediaType, 'application/vnd.oci.image.index.v1+json');
  const index = JSON.parse((await blob(l, img.digest)).toString('utf8')) as {
    manifests: { digest: string; platform: { os: string; architecture: string; variant?: string } }[];
  };
  t.deepEqual(index.manifests.map((m) => m.platform), [
    { os: 'linux', architecture: 'amd64' }, { os: 'linux', architecture: 'arm64', variant: 'v8' },
  ]);
  t.deepEqual(index.manifests.map((m) => m.digest), img.children.map((c) => c.digest));
  t.is(new Set(img.layers).size, 2);
  const arm = JSON.parse((await blob(l, img.children[1]!.digest)).toString('utf8')) as { config: { digest: string } };
  const armConfig = JSON.parse((await blob(l, arm.config.digest)).toString('utf8')) as { architecture: string; variant: string };
  t.is(armConfig.architecture, 'arm64');
  t.is(armConfig.variant, 'v8');
});

test('seedImage pushes OCI and Docker images, single and multi-arch, with the digests it computed', async (t) => {
  registry = await startRegistry({ users: [{ username: 'seeder', password: 'seed-pass-1' }] });
  const reg = registry;
  const creds = reg.users[0]!;
  const cases = [
    { repo: 'oci/single', tag: '1', layers: [{ seed: 'o1', size: 2000 }] },
    { repo: 'oci/multi', tag: '1', layers: [{ seed: 'o2', size: 2000 }], platforms: ['linux/amd64', 'linux/arm64/v8'] },
    { repo: 'docker/single', tag: '1', layers: [{ seed: 'd1', size: 2000 }], format: 'v2s2' as const },
    { repo: 'docker/multi', tag: '1', layers: [{ seed: 'd2', size: 2000 }], format: 'v2s2' as const, platforms: ['linux/amd64', 'linux/arm64/v8'] },
  ];
  const expected = [
    'application/vnd.oci.image.manifest.v1+json',
    'application/vnd.oci.image.index.v1+json',
    'application/vnd.docker.distribution.manifest.v2+json',
    'application/vnd.docker.distribution.manifest.list.v2+json',
  ];
  const seeded = await Promise.all(cases.map((c) => seedImage(reg, c)));
  for (const [i, s] of seeded.entries()) {
    t.is(s.ref, `${reg.host}/${cases[i]!.repo}:1`);
    const got = await inspectRaw(s.ref, { creds });
    t.is(got.digest, s.digest, s.ref);
    t.is(got.mediaType, expected[i]!);
    for (const child of s.children) {
      t.is((await inspectRaw(`${reg.host}/${cases[i]!.repo}@${child.digest}`, { creds })).digest, child.digest);
    }
  }
  // Anonymous reads of a registry with users fail: the seeding really used the credentials.
  await t.throwsAsync(inspectRaw(seeded[0]!.ref));
});

test('a failed push names the reference but not the password', async (t) => {
  const reg = await startRegistry({ users: [{ username: 'u1', password: 'right-password' }] });
  t.teardown(() => reg.stop());
  const err = await t.throwsAsync(seedImage({ host: reg.host, users: [{ username: 'u1', password: 'wrong-password' }] },
    { repo: 'a/b', tag: '1', layers: [{ seed: 'x', size: 100 }] }));
  t.regex(err?.message ?? '', new RegExp(`seeding ${reg.host}/a/b:1 with skopeo failed`));
  t.false((err?.message ?? '').includes('wrong-password'));
});
