import anyTest, { type ExecutionContext, type TestFn } from 'ava';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { imageOf, type TestImage } from '../src/bundle/testimages.js';
import { craftBundle, named } from '../src/testing/craft.js';
import { startCountingFront, type CountingFront } from '../src/testing/counting.js';
import { startRegistry, type TestRegistry } from '../src/testing/registry.js';
import { runCli } from '../src/testing/cli.js';

/**
 * Issue 24 item 4: --concurrency N bounds the requests in flight to a registry host, counted by
 * a front between the tool and a real docker-registry (src/testing/counting.ts), not by the
 * tool's own report: build, push and re-push, every kind of request (manifests, tag checks,
 * blob checks, uploads, signatures). Without the flag the default still bounds them. A 429 with
 * Retry-After pauses the whole host, not only the request that got it.
 */

interface Ctx { dir: string; registry: TestRegistry; bundle: string; images: TestImage[] }
const test = anyTest as TestFn<Ctx>;
const IMAGES = 30;

test.before(async (t) => {
  t.context.dir = await mkdtemp(join(tmpdir(), 'airgap-concurrencycap-e2e-'));
  t.context.registry = await startRegistry();
  const images = await Promise.all(Array.from({ length: IMAGES }, (_, i) => imageOf({ files: { 'bin/app': `image ${i}` } })));
  t.context.images = images;
  t.context.bundle = join(t.context.dir, 'bundle.tar');
  await writeFile(t.context.bundle, craftBundle({
    index: images.map((img, i) => named(img.root.descriptor, `example.com/acme/app${i}:1`)),
    blobs: images.flatMap((img) => img.blobs),
  }));
});

test.after.always(async (t) => {
  await t.context.registry?.stop();
  if (t.context.dir) await rm(t.context.dir, { recursive: true, force: true });
});

async function front(t: ExecutionContext<Ctx>, opts: { throttle?: { at: number; retryAfterSeconds: number } } = {}): Promise<CountingFront> {
  const f = await startCountingFront({ upstream: t.context.registry.host, delayMs: 15, ...opts });
  t.teardown(() => f.stop());
  return f;
}

async function push(t: ExecutionContext<Ctx>, host: string, ns: string, extra: string[] = []): Promise<void> {
  const r = await runCli(['push', t.context.bundle, '--registry', `${host}/${ns}`, ...extra]);
  t.is(r.code, 0, r.stderr);
}

test('push and re-push with --concurrency 2 never have more than 2 requests in flight to the registry', async (t) => {
  const f = await front(t);
  await push(t, f.host, 'capped', ['--concurrency', '2']);
  t.log(`push: ${f.requests()} requests, peak ${f.peak()}, ${f.connections()} connections`);
  t.true(f.requests() > IMAGES * 3);
  t.true(f.peak() <= 2, `push: ${f.peak()} requests in flight at once`);
  f.reset();
  await push(t, f.host, 'capped', ['--concurrency', '2']);
  t.log(`re-push: ${f.requests()} requests, peak ${f.peak()}`);
  t.true(f.peak() <= 2, `re-push: ${f.peak()} requests in flight at once`);
});

test('without --concurrency requests do run at once (the front sees it), within the default bound', async (t) => {
  const f = await front(t);
  await push(t, f.host, 'default');
  t.log(`push: ${f.requests()} requests, peak ${f.peak()}`);
  t.true(f.peak() > 2, 'the front counts requests in flight at once');
  t.true(f.peak() <= 64, `at most 64 in flight by default: ${f.peak()}`);
});

test('build with --concurrency 2 reads its sources with at most 2 requests in flight', async (t) => {
  const seed = await front(t);
  await push(t, seed.host, 'src');
  const f = await front(t);
  const app = join(t.context.dir, 'app');
  await mkdir(app);
  const containers = Array.from({ length: IMAGES }, (_, i) => `        - name: c${i}\n          image: ${f.host}/src/app${i}:1\n`).join('');
  await writeFile(join(app, 'deploy.yaml'), `apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: many\nspec:\n  template:\n    spec:\n      containers:\n${containers}`);
  const license = join(t.context.dir, 'license.yaml');
  await writeFile(license, 'apiVersion: kots.io/v1beta1\nkind: License\nspec:\n  licenseID: cap-license\n  appSlug: cap\n');
  const r = await runCli(['build', '--manifests', app, '--license', license, '--out', join(t.context.dir, 'built.tar'), '--concurrency', '2']);
  t.is(r.code, 0, r.stderr);
  t.log(`build: ${f.requests()} requests, peak ${f.peak()}`);
  t.true(f.requests() > IMAGES * 2);
  t.true(f.peak() <= 2, `build: ${f.peak()} requests in flight at once`);
});

test('a 429 with Retry-After pauses every request to that registry, not only the one refused', async (t) => {
  const f = await front(t, { throttle: { at: 40, retryAfterSeconds: 2 } });
  await push(t, f.host, 'throttled', ['--concurrency', '4']);
  const at = f.throttledAt();
  t.not(at, undefined, 'the front refused one request');
  // Requests already sent when the 429 came back may arrive a moment later; after that, nothing until the pause ends.
  const during = f.arrivals().filter((a) => a > at! + 250 && a < at! + 1700);
  t.deepEqual(during, [], `${during.length} request(s) arrived during the pause`);
});
