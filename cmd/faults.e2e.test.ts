import anyTest, { type ExecutionContext, type TestFn } from 'ava';
import { cp, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startWorld, type World } from '../src/testing/world.js';
import { startRegistry, type TestRegistry } from '../src/testing/registry.js';
import { startFaultFront, type FaultFront, type FaultRule } from '../src/testing/faults.js';
import { buildBundle, resolveFlags, runCli, json, type CliResult } from '../src/testing/cli.js';
import { MANIFEST_ACCEPT } from '../src/oci/mediatypes.js';

/**
 * Build and push through the fault front (src/testing/faults.ts): the run finishes with every
 * digest verified when finishing is possible, fails with one clear line when it is not, and never
 * leaves a bundle, a temporary file or a tag on incomplete content behind.
 */

interface Ctx {
  world: World;
  dir: string;
  /** A bundle built without faults, and the digests it holds. */
  bundle: string;
  digests: string[];
  user: { username: string; password: string };
}
const test = anyTest as TestFn<Ctx>;

/** Small backoff so that retries cost milliseconds, and a short stall timeout. */
const ENV = { AIRGAP_RETRY_BASE_MS: '5', AIRGAP_HTTP_TIMEOUT_MS: '1500' };

test.before(async (t) => {
  // Each resource goes into the context as soon as it exists, so that after.always stops it
  // even when a later step of this hook throws.
  const world = await startWorld();
  t.context.world = world;
  const dir = await mkdtemp(join(tmpdir(), 'airgap-faults-e2e-'));
  t.context.dir = dir;
  const bundle = join(dir, 'clean.tar');
  await buildBundle(world, bundle);
  t.context.bundle = bundle;
  t.context.digests = await digestsOf(bundle);
  t.context.user = { username: 'deployer', password: 'faults-pw-7' };
});

test.after.always(async (t) => {
  await t.context.world?.stop();
  if (t.context.dir) await rm(t.context.dir, { recursive: true, force: true });
});

async function digestsOf(bundle: string): Promise<string[]> {
  const r = await runCli(['inspect', bundle, '--json']);
  if (r.code !== 0) throw new Error(`inspect failed: ${r.stderr}`);
  return json<{ images: { digest: string }[] }>(r).images.map((i) => i.digest).sort();
}

interface Faulty {
  fronts: { public: FaultFront; vendor: FaultFront; proxy: FaultFront };
  all: FaultFront[];
  work: string;
  out: string;
  build(extra?: string[], opts?: Parameters<typeof runCli>[1]): Promise<CliResult>;
}

/** Fronts before the public registry, the vendor registry and the proxy, and the app rewritten to use them. */
async function faulty(t: ExecutionContext<Ctx>): Promise<Faulty> {
  const { world } = t.context;
  const [pub, vendor, proxy] = await Promise.all([
    startFaultFront(world.public), startFaultFront(world.vendor), startFaultFront(world.proxy),
  ]);
  const work = await mkdtemp(join(t.context.dir, 'run-'));
  t.teardown(async () => {
    await Promise.all([pub, vendor, proxy].map((f) => f.stop()));
  });
  const app = join(work, 'app');
  await cp(world.appDir, app, { recursive: true });
  for (const f of await readdir(app, { recursive: true })) {
    const p = join(app, f);
    if (!/\.ya?ml$/.test(f)) continue;
    const text = await readFile(p, 'utf8');
    await writeFile(p, text.split(world.public).join(pub.host).split(world.vendor).join(vendor.host));
  }
  const outDir = join(work, 'out');
  await cp(world.licensePath, join(work, 'license.yaml'));
  await mkdir(outDir);
  const out = join(outDir, 'app.tar');
  return {
    fronts: { public: pub, vendor, proxy },
    all: [pub, vendor, proxy],
    work,
    out,
    build: (extra = [], opts = {}) => runCli(['build', '--manifests', app, '--license', join(work, 'license.yaml'), '--out', out,
      ...resolveFlags({ proxy: proxy.host, vendor: vendor.host }), ...extra], { ...opts, env: { ...ENV, ...opts.env } }),
  };
}

function everywhere(f: Faulty, rules: FaultRule[]): void {
  for (const front of f.all) front.set(rules);
}

async function assertCompleteBundle(t: ExecutionContext<Ctx>, f: Faulty, r: CliResult): Promise<void> {
  t.is(r.code, 0, r.stderr);
  t.deepEqual(await readdir(join(f.work, 'out')), ['app.tar'], 'only the bundle, no temporary file');
  const v = await runCli(['verify', f.out]);
  t.is(v.code, 0, v.stdout + v.stderr);
  t.deepEqual(await digestsOf(f.out), t.context.digests, 'the same images as a build without faults');
}

async function assertNothingLeft(t: ExecutionContext<Ctx>, f: Faulty): Promise<void> {
  t.deepEqual(await readdir(join(f.work, 'out')), [], 'neither the bundle nor a temporary file is left');
}

/** The error: exactly one `airgap:` line (progress lines may precede it), no stack trace. */
function oneLine(t: ExecutionContext<Ctx>, r: CliResult): string {
  const lines = r.stderr.trim().split('\n').filter((l) => l.startsWith('airgap:'));
  t.is(lines.length, 1, `one error line: ${r.stderr}`);
  t.notRegex(r.stderr, /\n\s+at /, 'no stack trace');
  t.notRegex(r.stderr, /internal error/);
  return lines[0]!;
}

test('build: blob bodies cut mid-stream are resumed with Range and every digest verifies', async (t) => {
  const f = await faulty(t);
  everywhere(f, [{ on: 'blob', fault: { kind: 'cut' }, limit: 'per-url' }]);
  await assertCompleteBundle(t, f, await f.build());
  for (const front of f.all) {
    t.true(front.injected.cut > 0, `cuts injected at ${front.host}`);
    const ranges = front.ranged().map((s) => String(s.headers.range));
    // A cut whose bytes never reached the reader (a loaded machine: the body stream is torn down
    // with its buffer) is rightly fetched again from 0, without Range; every other is resumed.
    t.true(ranges.length > 0, `cut blobs are resumed with Range (${ranges.length}/${front.injected.cut})`);
    for (const r of ranges) t.regex(r, /^bytes=[1-9]\d*-$/, 'resumes from where it stopped, not from 0');
  }
});

test('build: 500/502/503 and 429 with Retry-After are retried, and Retry-After is honoured', async (t) => {
  const f = await faulty(t);
  f.fronts.public.set([
    { on: 'manifest', fault: { kind: 'status', status: 503, html: true }, limit: 'per-url' },
    { on: 'blob', fault: { kind: 'status', status: 500 }, limit: 'per-url' },
  ]);
  f.fronts.vendor.set([{ on: 'repo', fault: { kind: 'status', status: 502, html: true }, limit: 'per-url' }]);
  f.fronts.proxy.set([{ on: 'manifest', fault: { kind: 'status', status: 429, retryAfter: '1' }, limit: 1 }]);
  await assertCompleteBundle(t, f, await f.build());
  t.true(f.fronts.public.injected.status > 2);
  t.true(f.fronts.vendor.injected.status > 0);
  t.is(f.fronts.proxy.injected.status, 1);
  // The 429'd request and its retry: at least the Retry-After second apart (backoff alone is ~5 ms).
  const manifests = f.fronts.proxy.seen.filter((s) => s.method === 'GET' && s.url.includes('/manifests/'));
  const first = manifests[0]!;
  const retry = manifests.find((s, i) => i > 0 && s.url === first.url)!;
  t.truthy(retry, 'the refused manifest request was sent again');
  t.true(retry.at - first.at >= 950, `waited ${retry.at - first.at} ms for Retry-After: 1`);
});

test('build: connections reset before any header are retried (the first contact included)', async (t) => {
  const f = await faulty(t);
  everywhere(f, [{ on: 'any', fault: { kind: 'reset' }, limit: 'per-url' }]);
  await assertCompleteBundle(t, f, await f.build());
  for (const front of f.all) t.true(front.injected.reset > 0);
});

test('build: a slow trickle still completes', async (t) => {
  const f = await faulty(t);
  everywhere(f, [{ on: 'blob', fault: { kind: 'slow', bytes: 8192, ms: 2 } }]);
  await assertCompleteBundle(t, f, await f.build());
  t.true(f.fronts.public.injected.slow > 0);
});

test('build: a registry that never recovers ends in one clear line, bounded, and leaves nothing', async (t) => {
  const f = await faulty(t);
  f.fronts.public.set([{ on: 'repo', fault: { kind: 'status', status: 503, html: true } }]);
  const started = Date.now();
  const r = await f.build();
  t.is(r.code, 1, r.stderr);
  const line = oneLine(t, r);
  t.true(line.includes(f.fronts.public.host), line);
  t.regex(line, /HTTP 503/);
  t.true(Date.now() - started < 30_000, 'bounded');
  await assertNothingLeft(t, f);
});

test('build: a registry that stops answering times out with a clear line instead of hanging', async (t) => {
  const f = await faulty(t);
  f.fronts.vendor.set([{ on: 'repo', fault: { kind: 'stall' } }]);
  const started = Date.now();
  // The same timeout as the other fault tests: short enough to stay bounded, long enough that the
  // registries that do answer are never the ones timing out on a loaded machine.
  const r = await f.build([], { env: { AIRGAP_HTTP_TIMEOUT_MS: '1500' } });
  t.is(r.code, 1, r.stderr);
  const line = oneLine(t, r);
  t.true(line.includes(f.fronts.vendor.host), line);
  t.regex(line, /timeout|timed out/i);
  t.true(Date.now() - started < 30_000, `bounded (${Date.now() - started} ms)`);
  await assertNothingLeft(t, f);
});

test('build: a blob whose bytes do not match its digest fails, naming the image and the digest', async (t) => {
  const f = await faulty(t);
  f.fronts.public.set([{ on: 'blob', fault: { kind: 'flip' } }]);
  const r = await f.build();
  t.is(r.code, 3, r.stderr);
  const line = oneLine(t, r);
  t.true(f.fronts.public.injected.flip > 0);
  t.regex(line, new RegExp(`${f.fronts.public.host}/[a-z/]+:[\\w.]+`), `names the image: ${line}`);
  t.regex(line, /sha256:[a-f0-9]{64}/, 'names the digest');
  await assertNothingLeft(t, f);
});

test('build: a manifest that does not match the digest it was asked for fails, naming image and digest', async (t) => {
  const f = await faulty(t);
  f.fronts.proxy.set([{ on: 'manifest-by-digest', fault: { kind: 'flip' } }]);
  const r = await f.build();
  t.is(r.code, 3, r.stderr);
  const line = oneLine(t, r);
  t.true(f.fronts.proxy.injected.flip > 0);
  t.regex(line, /acme\//, `names the image: ${line}`);
  t.regex(line, /sha256:[a-f0-9]{64}/, 'names the digest');
  await assertNothingLeft(t, f);
});

test('build: SIGTERM mid-download leaves neither the bundle nor a temporary file', async (t) => {
  const f = await faulty(t);
  everywhere(f, [{ on: 'blob', fault: { kind: 'slow', bytes: 1024, ms: 20 } }]);
  let sawTemp = false;
  const r = await f.build(['--concurrency', '2'], {
    onSpawn: (child) => {
      const poll = setInterval(() => {
        readdir(join(f.work, 'out')).then((names) => {
          if (names.some((n) => n.includes('airgap-partial')) && f.fronts.public.injected.slow > 0) {
            sawTemp = true;
            clearInterval(poll);
            child.kill('SIGTERM');
          }
        }).catch(() => undefined);
      }, 5);
      child.on('close', () => clearInterval(poll));
    },
  });
  t.true(sawTemp, `interrupted while writing (exit ${r.code}: ${r.stderr})`);
  t.is(r.code, 130, r.stderr);
  t.regex(r.stderr, /interrupted by SIGTERM/);
  await assertNothingLeft(t, f);
});

// ---- push ----

interface Customer { registry: TestRegistry; front: FaultFront; auth: string }

async function customer(t: ExecutionContext<Ctx>): Promise<Customer> {
  const registry = await startRegistry({ users: [t.context.user] });
  const front = await startFaultFront(registry.host);
  t.teardown(async () => {
    await front.stop();
    await registry.stop();
  });
  const { username, password } = t.context.user;
  return { registry, front, auth: 'Basic ' + Buffer.from(`${username}:${password}`).toString('base64') };
}

function push(t: ExecutionContext<Ctx>, c: Customer, opts: Parameters<typeof runCli>[1] = {}): Promise<CliResult> {
  return runCli(['push', t.context.bundle, '--registry', `${c.front.host}/acme`, '--username', t.context.user.username,
    '--password-stdin', '--json', '--concurrency', '4'], { ...opts, input: t.context.user.password + '\n', env: ENV });
}

async function registryGet(c: Customer, path: string, method = 'GET'): Promise<Response> {
  return fetch(`http://${c.registry.host}${path}`, { method, headers: { authorization: c.auth, accept: MANIFEST_ACCEPT } });
}

/** Every tag in the registry: its manifest graph must be complete (every child manifest and blob present). */
async function assertTagsComplete(t: ExecutionContext<Ctx>, c: Customer): Promise<number> {
  const catalog = (await (await registryGet(c, '/v2/_catalog')).json()) as { repositories: string[] | null };
  let tags = 0;
  for (const repo of catalog.repositories ?? []) {
    const list = (await (await registryGet(c, `/v2/${repo}/tags/list`)).json()) as { tags: string[] | null };
    for (const tag of list.tags ?? []) {
      tags++;
      const check = async (ref: string): Promise<void> => {
        const res = await registryGet(c, `/v2/${repo}/manifests/${ref}`);
        t.is(res.status, 200, `${repo}:${tag} → manifest ${ref}`);
        const m = (await res.json()) as { manifests?: { digest: string }[]; config?: { digest: string }; layers?: { digest: string }[] };
        for (const child of m.manifests ?? []) await check(child.digest);
        for (const b of [...(m.config ? [m.config] : []), ...(m.layers ?? [])]) {
          t.is((await registryGet(c, `/v2/${repo}/blobs/${b.digest}`, 'HEAD')).status, 200, `${repo}:${tag} has blob ${b.digest}`);
        }
      };
      await check(tag);
    }
  }
  return tags;
}

async function assertPushed(t: ExecutionContext<Ctx>, c: Customer, r: CliResult): Promise<void> {
  t.is(r.code, 0, r.stderr);
  const images = json<{ images: { target: string; digest: string }[] }>(r).images;
  t.is(images.length, t.context.digests.length);
  for (const img of images) {
    const [, path, tag] = /^[^/]+\/(.+):([^:]+)$/.exec(img.target)!;
    const res = await registryGet(c, `/v2/${path}/manifests/${tag}`, 'HEAD');
    t.is(res.headers.get('docker-content-digest'), img.digest, img.target);
  }
  t.is(await assertTagsComplete(t, c), images.length);
}

test('push: uploads cut half-way, 5xx and 429 are retried and every image lands complete', async (t) => {
  const c = await customer(t);
  c.front.set([
    { on: 'upload', fault: { kind: 'cut' }, limit: 'per-url', methods: ['PUT'] },
    { on: 'upload', fault: { kind: 'status', status: 503 }, limit: 3, methods: ['POST'] },
    { on: 'manifest-put', fault: { kind: 'status', status: 502, html: true }, limit: 'per-url' },
    { on: 'blob', fault: { kind: 'status', status: 429, retryAfter: '0' }, limit: 2, methods: ['HEAD'] },
  ]);
  await assertPushed(t, c, await push(t, c));
  t.true(c.front.injected.cut > 0, 'uploads were cut');
  t.true(c.front.injected.status > 3, 'errors were answered');
});

test('push: a registry that never accepts an upload ends in a clear line and tags nothing', async (t) => {
  const c = await customer(t);
  c.front.set([{ on: 'upload', fault: { kind: 'status', status: 503 }, methods: ['PUT', 'PATCH'] }]);
  const r = await push(t, c);
  t.is(r.code, 1, r.stderr);
  const line = oneLine(t, r);
  t.regex(line, /HTTP 503/);
  t.true(line.includes(c.front.host), line);
  t.is(await assertTagsComplete(t, c), 0, 'no tag was written');
});

test('push: SIGINT mid-push leaves no tag on incomplete content, and a re-run finishes the job', async (t) => {
  const c = await customer(t);
  // One upload hangs, so the push is certainly in the middle of its work when interrupted.
  c.front.set([{ on: 'upload', fault: { kind: 'stall' }, limit: 1, methods: ['PUT'] }]);
  const r = await push(t, c, {
    onSpawn: (child) => {
      const poll = setInterval(() => {
        if (c.front.injected.stall > 0) {
          clearInterval(poll);
          setTimeout(() => child.kill('SIGINT'), 100);
        }
      }, 5);
      child.on('close', () => clearInterval(poll));
    },
  });
  t.is(r.code, 130, r.stderr);
  const tagged = await assertTagsComplete(t, c);
  t.true(tagged < t.context.digests.length, `interrupted before the end (${tagged} tags)`);
  c.front.set([]);
  await assertPushed(t, c, await push(t, c));
});
