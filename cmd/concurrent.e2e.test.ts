import anyTest, { type TestFn } from 'ava';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { FixtureLayout, pushImage } from '../src/testing/fixtures.js';
import { startRegistry, type TestRegistry } from '../src/testing/registry.js';
import { CLI, runCli } from '../src/testing/cli.js';

/**
 * Two pushes of one bundle into one registry at the same moment (two CI jobs, a retried job that
 * overlaps the first): both finish, and every tag names the bundle's image. docker-registry
 * rewrites a repository's link to a blob on each upload of it, and a manifest PUT that reads the
 * link meanwhile is refused (DIGEST_INVALID, MANIFEST_BLOB_UNKNOWN); before the push put such a
 * manifest again, most runs of this test failed (8 of 10 rounds by hand).
 */

const LICENSE = join(dirname(dirname(dirname(CLI))), 'testdata', 'license.yaml');
const IMAGES = 30;

interface Ctx { dir: string; bundle: string; customer: TestRegistry; digests: Map<string, string> }
const test = anyTest as TestFn<Ctx>;

test.before(async (t) => {
  t.context.dir = await mkdtemp(join(tmpdir(), 'airgap-concurrent-e2e-'));
  const source = await startRegistry();
  const layout = await FixtureLayout.create({ gzipLevel: 0 });
  try {
    // Many small images over two shared layers: many manifests, each naming blobs the others upload too.
    const names = Array.from({ length: IMAGES }, (_, i) => `svc-${i}`);
    for (const n of names) {
      await layout.build(n, { layers: [{ shared: 'base', size: 300_000 }, { shared: 'runtime', size: 100_000 }, { seed: n, size: 20_000 }] });
      await pushImage(layout, n, source, `race/${n}`, '1.0');
    }
    const app = join(t.context.dir, 'app');
    await mkdir(app);
    await writeFile(join(app, 'deployment.yaml'), ['apiVersion: apps/v1', 'kind: Deployment', 'metadata:', '  name: many', 'spec:',
      '  template:', '    spec:', '      containers:', ...names.map((n) => `        - name: ${n}\n          image: ${source.host}/race/${n}:1.0`)].join('\n') + '\n');
    t.context.bundle = join(t.context.dir, 'many.tar');
    const b = await runCli(['build', '--manifests', app, '--license', LICENSE, '--out', t.context.bundle, '--json']);
    if (b.code !== 0) throw new Error(`build failed: ${b.stderr}`);
    t.context.digests = new Map((JSON.parse(b.stdout) as { images: { ref: string; digest: string }[] }).images
      .map((i) => [i.ref.split('/').pop()!, i.digest]));
  } finally {
    await layout.remove();
    await source.stop();
  }
  t.context.customer = await startRegistry();
});

test.after.always(async (t) => {
  await t.context.customer?.stop();
  if (t.context.dir) await rm(t.context.dir, { recursive: true, force: true });
});

test('two pushes of one bundle into one registry at once both finish, every tag on the bundle\'s image', async (t) => {
  const { customer, bundle, digests } = t.context;
  t.is(digests.size, IMAGES);
  for (let round = 0; round < 3; round++) {
    const ns = `r${round}`;
    const [a, b] = await Promise.all([1, 2].map(() => runCli(['push', bundle, '--registry', `${customer.host}/${ns}`, '--json'])));
    t.is(a!.code, 0, `round ${round}, first push: ${a!.stderr}`);
    t.is(b!.code, 0, `round ${round}, second push: ${b!.stderr}`);
    for (const [name, digest] of digests) {
      const [repo, tag] = name.split(':');
      const res = await fetch(`http://${customer.host}/v2/${ns}/${repo}/manifests/${tag}`, {
        method: 'HEAD', headers: { accept: 'application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json' } });
      t.is(res.headers.get('docker-content-digest'), digest, `${ns}/${name}`);
    }
  }
});
