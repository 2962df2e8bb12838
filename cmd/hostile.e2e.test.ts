import anyTest, { type TestFn } from 'ava';
import { copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { basic } from '../src/registry/auth.js';
import { type Front, type FrontHandler, startFront } from '../src/registry/testfront.js';
import { type EgressProxy, startEgressProxy } from '../src/testing/egress.js';
import { seedImage } from '../src/testing/fixtures.js';
import { type TestRegistry, startRegistry } from '../src/testing/registry.js';
import { startSharedPort } from '../src/testing/sharedport.js';
import { type KeyPair, type TestCa, createTestCa } from '../src/testing/tlsca.js';
import { CLI, runCli } from '../src/testing/cli.js';

/**
 * Issue 24, item 1, through the built CLI: a customer registry on TLS whose load balancer sends
 * plain-HTTP URLs (a redirect, an upload Location) on the very host and port it serves TLS on.
 * Credentials never reach the plain side: on loopback the hop is followed without them; on a
 * host that is not loopback (a name only the egress proxy resolves) push stops with one line.
 */

interface Ctx {
  dir: string;
  source: TestRegistry;
  customer: TestRegistry;
  ca: TestCa;
  cert: KeyPair;
  egress: EgressProxy;
  bundle: string;
  stops: (() => Promise<unknown>)[];
}
const test = anyTest.serial as TestFn<Ctx>;
const LICENSE = join(dirname(dirname(dirname(CLI))), 'testdata', 'license.yaml');
const USER = { username: 'customer-admin', password: 'only-over-tls-4e2' };
const NAME = 'registry.lb.invalid';
const ENV = { AIRGAP_RETRY_BASE_MS: '5', NO_PROXY: '', no_proxy: '' };

test.before(async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'airgap-hostile-e2e-'));
  const [source, customer, ca] = await Promise.all([startRegistry(), startRegistry({ users: [USER] }), createTestCa()]);
  Object.assign(t.context, { dir, source, customer, ca, stops: [] });
  t.context.cert = await ca.server([NAME]);
  t.context.egress = await startEgressProxy({ [NAME]: '127.0.0.1' });
  const img = await seedImage(source, { repo: 'shop/web', tag: '1.0', layers: [{ seed: 'lb-web', size: 200_000 }] });
  const app = join(dir, 'app');
  await mkdir(app);
  await writeFile(join(app, 'web.yaml'),
    `apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  template:\n    spec:\n      containers:\n        - name: web\n          image: ${img.ref}\n`);
  const license = join(dir, 'license.yaml');
  await copyFile(LICENSE, license);
  t.context.bundle = join(dir, 'app.tar');
  const r = await runCli(['build', '--manifests', app, '--license', license, '--out', t.context.bundle], { env: ENV });
  if (r.code !== 0) throw new Error(`build failed: ${r.stderr}`);
});

test.after.always(async (t) => {
  for (const stop of (t.context.stops ?? []).reverse()) await stop().catch(() => undefined);
  await Promise.allSettled([t.context.source?.stop(), t.context.customer?.stop(), t.context.ca?.remove(), t.context.egress?.stop()]);
  if (t.context.dir) await rm(t.context.dir, { recursive: true, force: true });
});

/** The customer registry behind one port that speaks TLS (`onTls`) and plain HTTP (storage with its own access). */
async function loadBalancer(t: { context: Ctx }, onTls: FrontHandler): Promise<{ port: number; host: string; plain: Front }> {
  const plain = await startFront(t.context.customer.host, (req, res, ctx) => {
    if (req.url === '/v2/') return void res.writeHead(404).end();
    return ctx.forward({ headers: { authorization: basic(USER) } });
  });
  const secure = await startFront(t.context.customer.host, onTls, { tls: t.context.cert });
  const shared = await startSharedPort(secure.host, plain.host);
  t.context.stops.push(() => plain.stop(), () => secure.stop(), () => shared.stop());
  return { port: shared.port, host: shared.host, plain };
}

function push(t: { context: Ctx }, registry: string, extraEnv: Record<string, string> = {}) {
  return runCli(['push', t.context.bundle, '--registry', registry, '--ca-file', t.context.ca.caFile,
    '--username', USER.username, '--password-stdin'], { env: { ...ENV, ...extraEnv }, input: USER.password });
}

test('loopback: blob checks redirected to http on the same host and port are followed, and the http side never sees Authorization', async (t) => {
  const lb = await loadBalancer(t, (req, res, ctx) => {
    if (req.method === 'HEAD' && /\/blobs\/sha256:/.test(req.url ?? '')) {
      return void res.writeHead(307, { location: `http://${req.headers.host}${req.url}` }).end();
    }
    return ctx.forward();
  });
  const r = await push(t, `${lb.host}/team`);
  t.is(r.code, 0, r.stderr);
  const heads = lb.plain.seen.filter((s) => s.method === 'HEAD' && s.url.includes('/blobs/'));
  t.true(heads.length > 0);
  t.deepEqual(heads.filter((s) => s.headers.authorization !== undefined), [], 'no Authorization on plain HTTP');
});

test('not loopback: an upload Location on plain HTTP stops the push with one line; nothing reaches the http side', async (t) => {
  // The registry behind believes it was reached over http, as behind a misconfigured balancer.
  const lb = await loadBalancer(t, (_req, _res, ctx) => ctx.forward({ headers: { 'x-forwarded-proto': 'http' } }));
  const r = await push(t, `${NAME}:${lb.port}/other`, { HTTPS_PROXY: t.context.egress.url, HTTP_PROXY: t.context.egress.url });
  t.is(r.code, 1, r.stderr);
  t.regex(r.stderr, new RegExp(`refused to follow the registry's upload Location to http://${NAME.replace(/\./g, '\\.')}:${lb.port}/v2/other/web/blobs/uploads/[^ ]+: it leads from https://${NAME.replace(/\./g, '\\.')}:${lb.port} to plain HTTP`));
  t.notRegex(r.stderr, new RegExp(USER.password));
  t.deepEqual(lb.plain.seen, []);
  t.deepEqual(t.context.egress.forwarded, [], 'no plain-HTTP request left through the proxy');
});
