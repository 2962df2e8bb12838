import anyTest, { type TestFn } from 'ava';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cosignKeyPair, pushCosignSignature } from '../src/testing/cosign.js';
import { seedImage } from '../src/testing/fixtures.js';
import { startRegistry, type TestRegistry } from '../src/testing/registry.js';
import { AccessLog, type RequestCounts } from '../src/testing/requests.js';
import { json, runCli } from '../src/testing/cli.js';

/**
 * Issue 13: the requests `airgap build` and `airgap plan` make per image, counted from the access
 * log of a real docker-registry (distribution 2.8: no referrers API). Three public images, each
 * its own repository: one signed (cosign tag), one pinned by tag and digest.
 */
interface Ctx {
  reg: TestRegistry;
  log: AccessLog;
  dir: string;
  app: string;
  digests: string[];
  sigDigest: string;
  /** An empty place for every credential file: nothing of the developer's own login. */
  env: Record<string, string>;
}
const test = anyTest as TestFn<Ctx>;
const LICENSE = (() => {
  let d = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(d, 'testdata', 'license.yaml')) && dirname(d) !== d) d = dirname(d);
  return join(d, 'testdata', 'license.yaml');
})();
const RESOLVE = ['--proxy-host', '127.0.0.1:9', '--replicated-registry', '127.0.0.1:9'];

test.before(async (t) => {
  const reg = await startRegistry({ accessLog: true });
  t.context.reg = reg;
  t.context.log = new AccessLog(reg.accessLog!);
  const dir = await mkdtemp(join(tmpdir(), 'airgap-buildrequests-'));
  t.context.dir = dir;
  const digests: string[] = [];
  for (const name of ['a', 'b', 'c']) {
    digests.push((await seedImage(reg, { repo: `req/${name}`, tag: '1.0', layers: [{ seed: `req-${name}-1`, size: 2048 }, { seed: `req-${name}-2`, size: 1024 }] })).digest);
  }
  t.context.digests = digests;
  t.context.sigDigest = (await pushCosignSignature(reg, 'req/a', digests[0]!, cosignKeyPair().privateKey)).digest;
  const app = join(dir, 'app');
  await mkdir(app);
  const images = [`${reg.host}/req/a:1.0`, `${reg.host}/req/b:1.0@${digests[1]}`, `${reg.host}/req/c:1.0`];
  await writeFile(join(app, 'deploy.yaml'), ['apiVersion: apps/v1', 'kind: Deployment', 'metadata:', '  name: req', 'spec:', '  template:',
    '    spec:', '      containers:', ...images.flatMap((image, i) => [`        - name: c${i}`, `          image: ${image}`]), ''].join('\n'));
  t.context.app = app;
  t.context.env = { DOCKER_CONFIG: join(dir, 'no-docker'), XDG_RUNTIME_DIR: join(dir, 'no-xdg'), REGISTRY_AUTH_FILE: join(dir, 'none.json') };
});

test.after.always(async (t) => {
  await t.context.reg?.stop();
  if (t.context.dir) await rm(t.context.dir, { recursive: true, force: true });
});

const get = (c: RequestCounts, kind: string): number => c.get(kind) ?? 0;
const manifestRequests = (c: RequestCounts): Record<string, number> =>
  Object.fromEntries([...c].filter(([k]) => !/ blob /.test(k)).sort(([a], [b]) => (a < b ? -1 : 1)));

test.serial('build: one anonymous GET per image (kept as its manifest), one tag list per repository, the referrers API asked once; no tag HEADs', async (t) => {
  const { log, app, dir, env, digests, sigDigest } = t.context;
  await log.mark();
  const r = await runCli(['build', '--manifests', app, '--license', LICENSE, '--out', join(dir, 'one.tar'), ...RESOLVE, '--json'], { env });
  t.is(r.code, 0, r.stderr);
  const c = await log.counts();
  const out = json<{ images: { digest: string; source: string }[]; attached: { subject: string; digest: string; tag?: string }[] }>(r);
  t.deepEqual(out.images.map((i) => [i.digest, i.source]).sort(), digests.map((d) => [d, 'public']).sort());
  t.deepEqual(out.attached.map((a) => [a.subject, a.digest]), [[digests[0], sigDigest]], 'the signature is found through the tag list');
  t.deepEqual(manifestRequests(c), {
    // The anonymous check of a:1.0 and c:1.0, a GET whose bytes are the root: not asked again.
    'GET manifest by tag 200': 2,
    // b:1.0@sha256:… is checked (and kept) by digest: what it serves must hash to it.
    // The signature's manifest is read by digest after the HEAD of its tag.
    'GET manifest by digest 200': 2,
    'GET tags 200': 3,
    'GET referrers 404': 1,
    // Once per registry and process: plain HTTP on loopback is found by a ping (transport.ts).
    'GET ping /v2/ 200': 1,
    'HEAD manifest by tag 200': 1,
  }, JSON.stringify([...c]));
  t.is(get(c, 'HEAD manifest by tag 404'), 0);
});

test.serial('plan keeps the quota-free anonymous HEAD and reads no manifest', async (t) => {
  const { log, app, env } = t.context;
  await log.mark();
  const r = await runCli(['plan', '--manifests', app, ...RESOLVE, '--json'], { env });
  t.is(r.code, 0, r.stderr);
  const c = await log.counts();
  t.is(get(c, 'HEAD manifest by tag 200'), 2);
  t.is(get(c, 'HEAD manifest by digest 200'), 1);
  t.is([...c.keys()].filter((k) => k.startsWith('GET manifest')).length, 0, JSON.stringify([...c]));
});

test.serial('build with the user\'s own credential for the registry: the check stays a HEAD (anonymous pull quota untouched), the build GETs as the user', async (t) => {
  const { log, app, dir, env, reg } = t.context;
  const docker = join(dir, 'docker');
  await mkdir(docker, { recursive: true });
  await writeFile(join(docker, 'config.json'), JSON.stringify({ auths: { [reg.host]: { auth: Buffer.from('someone:secret').toString('base64') } } }));
  await log.mark();
  const r = await runCli(['build', '--manifests', app, '--license', LICENSE, '--out', join(dir, 'creds.tar'), ...RESOLVE, '--json'], { env: { ...env, DOCKER_CONFIG: docker } });
  t.is(r.code, 0, r.stderr);
  const c = await log.counts();
  t.is(get(c, 'HEAD manifest by tag 200'), 2 + 1, 'two checks and the signature tag');
  t.is(get(c, 'HEAD manifest by digest 200'), 1);
  t.is(get(c, 'GET manifest by tag 200'), 2);
});
