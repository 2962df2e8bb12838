import test from 'ava';
import { mkdtemp, mkdir, rm, writeFile, copyFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { json, runCli } from '../src/testing/cli.js';
import { FixtureLayout } from '../src/testing/fixtures.js';
import { type TestRegistry, startRegistry } from '../src/testing/registry.js';
import { AccessLog } from '../src/testing/requests.js';
import { seedLayout } from '../src/testing/seed.js';

// What `airgap build` asks a registry for, counted from the registry's own access log: every blob
// is downloaded exactly once, the config too (it is read for its platform before the copy, and
// the copy takes those bytes from memory).

let registry: TestRegistry;
let dir: string;
test.before(async () => {
  registry = await startRegistry({ accessLog: true });
  dir = await mkdtemp(join(tmpdir(), 'airgap-requests-e2e-'));
});
test.after.always(async () => {
  await registry?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

test('build downloads each blob once, the config included, however many images share it', async (t) => {
  const layout = await FixtureLayout.create({ gzipLevel: 0 });
  t.teardown(() => layout.remove());
  const names = ['a', 'b', 'c', 'd'];
  const built = [];
  for (const [i, name] of names.entries()) {
    built.push(await layout.build(name, { layers: [
      { shared: 'base', size: 20_000 },
      { seed: `own-${i}`, size: 3000 + i },
    ] }));
  }
  await seedLayout(layout, registry.host, names.map((name) => ({ name, repo: `req/${name}`, tag: '1.0' })));
  const app = join(dir, 'app');
  await mkdir(app, { recursive: true });
  await writeFile(join(app, 'deployment.yaml'), [
    'apiVersion: apps/v1', 'kind: Deployment', 'metadata:', '  name: req', 'spec:', '  template:', '    spec:', '      containers:',
    ...names.map((n) => `        - name: ${n}\n          image: ${registry.host}/req/${n}:1.0`)].join('\n') + '\n');
  const license = join(dir, 'license.yaml');
  await copyFile(join(import.meta.dirname, '..', 'testdata', 'license.yaml'), license);
  const log = new AccessLog(registry.accessLog!);
  await log.mark();
  const out = join(dir, 'req.tar');
  const r = await runCli(['build', '--manifests', app, '--license', license, '--out', out, '--no-signatures', '--json']);
  t.is(r.code, 0, r.stderr);
  const counts = await log.counts();
  const summary = json<{ blobs: number; images: { digest: string }[] }>(r);
  t.deepEqual(summary.images.map((i) => i.digest).sort(), built.map((b) => b.digest).sort());
  // 1 shared base + 4 own layers, and 4 configs (each names its own layers): each downloaded once.
  const layers = new Set(built.flatMap((b) => b.layers)).size;
  t.is(layers, 5);
  t.is(summary.blobs, layers + 2 * names.length, 'the bundle holds the layers, 4 configs and 4 manifests');
  t.is(counts.get('GET blob 200'), layers + names.length);
  // No --concurrency: the default adapts (src/concurrency.ts), and the summary says how far.
  const c = json<{ concurrency: { adaptive: boolean; smallRequests: number; bulkStart: number; bulkPeak: number; bulkMax: number } }>(r).concurrency;
  t.like(c, { adaptive: true, smallRequests: 32, bulkStart: 8, bulkMax: 32 });
  t.true(c.bulkPeak >= 8 && c.bulkPeak <= 32);

  // An explicit --concurrency is a strict cap, and --debug says so on stderr.
  const fixed = await runCli(['build', '--manifests', app, '--license', license, '--out', join(dir, 'fixed.tar'), '--no-signatures',
    '--concurrency', '3', '--debug', '--json']);
  t.is(fixed.code, 0, fixed.stderr);
  t.deepEqual(json<{ concurrency: unknown }>(fixed).concurrency, { adaptive: false, smallRequests: 3, bulkStart: 3, bulkPeak: 3, bulkMax: 3 });
  t.regex(fixed.stderr, /airgap: debug: at most 3 requests of each kind at once \(--concurrency\)/);
});
