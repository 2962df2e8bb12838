import anyTest, { type TestFn } from 'ava';
import { copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { type EgressProxy, startEgressProxy } from '../src/testing/egress.js';
import { inspectRaw, seedImage } from '../src/testing/fixtures.js';
import { type EcrLike, startEcrLike } from '../src/testing/ecrlike.js';
import { type HubLike, startHubLike } from '../src/testing/hublike.js';
import { type TestProxy, startProxy } from '../src/testing/proxy.js';
import { type TestRegistry, startRegistry } from '../src/testing/registry.js';
import { type TestCa, createTestCa } from '../src/testing/tlsca.js';
import { CLI, type CliResult, runCli } from '../src/testing/cli.js';

/**
 * The built CLI against registries that behave like the hosted ones, on a network like a
 * corporate one: a Docker-Hub-like registry whose names only an egress proxy resolves (token realm
 * and blob storage on origins of their own, storage behind its own certificate), an ECR-like
 * registry for the push (chunks of at least 5 MiB, repositories that must exist), and a registry
 * that wants a client certificate.
 */

interface Ctx {
  dir: string;
  ca: TestCa;
  storageCa: TestCa;
  backend: TestRegistry;
  hub: HubLike;
  /** Same registry, its storage signed by storageCa (a corporate inspection CA, say). */
  hub2: HubLike;
  egress: EgressProxy;
  vendorProxy: TestProxy;
  ecr: EcrLike;
  license: string;
}
const test = anyTest.serial as TestFn<Ctx>;
const LICENSE = join(dirname(dirname(dirname(CLI))), 'testdata', 'license.yaml');
const NODNS = join(dirname(dirname(CLI)), 'src', 'testing', 'nodns.js');
const ECR_USER = { username: 'AWS', password: 'ecr-password-1' };
const MiB = 1024 * 1024;
const NAMES = { registry: 'registry.hub.invalid', auth: 'auth.hub.invalid', storage: 'storage.hub.invalid' };
const NAMES2 = { registry: 'registry2.hub.invalid', auth: 'auth2.hub.invalid', storage: 'storage2.hub.invalid' };
const PLAIN_NAME = 'plain.corp.invalid';

test.before(async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'airgap-hosted-e2e-'));
  t.context.dir = dir;
  const [ca, storageCa, backend] = await Promise.all([createTestCa(), createTestCa('corporate inspection CA'), startRegistry()]);
  Object.assign(t.context, { ca, storageCa, backend });
  await Promise.all([
    seedImage(backend, { repo: 'library/app', tag: '1', layers: [{ seed: 'hosted-app', size: 300_000 }] }),
    seedImage(backend, { repo: 'library/big', tag: '1', layers: [{ seed: 'hosted-big', size: 12 * MiB }] }),
  ]);
  t.context.hub = await startHubLike({ backend: backend.host, ca, names: NAMES });
  t.context.hub2 = await startHubLike({ backend: backend.host, ca, storageCa, names: NAMES2 });
  const loopback = Object.fromEntries([...Object.values(NAMES), ...Object.values(NAMES2), PLAIN_NAME].map((n) => [n, '127.0.0.1']));
  t.context.egress = await startEgressProxy(loopback);
  const license = join(dir, 'license.yaml');
  await copyFile(LICENSE, license);
  t.context.license = license;
  // The vendor's proxy knows no upstream here: whatever is sent to it is not found.
  t.context.vendorProxy = await startProxy({ licenseId: '2aTqVbXkFz9LmN3pR7sW0yC4dE1', appSlug: 'acme-shop', upstreams: {} });
  t.context.ecr = await startEcrLike({ backend: backend.host, ca, user: ECR_USER, repositories: ['acme/app', 'acme/big'] });
});

test.after.always(async (t) => {
  const c = t.context;
  await Promise.all([c.hub?.stop(), c.hub2?.stop(), c.egress?.stop(), c.vendorProxy?.stop(), c.ecr?.stop()].map((p) => p?.catch(() => undefined)));
  await c.backend?.stop();
  await c.ca?.remove();
  await c.storageCa?.remove();
  if (c.dir) await rm(c.dir, { recursive: true, force: true });
});

/** An app directory whose one pod runs these images. */
async function app(t: { context: Ctx }, name: string, images: string[]): Promise<string> {
  const dir = join(t.context.dir, name);
  await mkdir(dir, { recursive: true });
  const containers = images.map((img, i) => `    - name: c${i}\n      image: ${img}\n`).join('');
  await writeFile(join(dir, 'pod.yaml'), `apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n  containers:\n${containers}`);
  return dir;
}

function resolveFlags(t: { context: Ctx }): string[] {
  return ['--proxy-host', t.context.vendorProxy.host, '--replicated-registry', 'registry.replicated.invalid', '--ca-file', t.context.ca.caFile];
}

function proxied(t: { context: Ctx }, extra: Record<string, string> = {}): Record<string, string> {
  return { HTTPS_PROXY: t.context.egress.url, NODE_OPTIONS: `--import=${NODNS}`, AIRGAP_RETRY_BASE_MS: '5', ...extra };
}

function jsonError(r: CliResult): { code: string; message: string; hint?: string } {
  const parsed = JSON.parse(r.stdout) as { error?: { code: string; message: string; hint?: string } };
  if (!parsed.error) throw new Error(`no error: ${r.stdout} ${r.stderr}`);
  return parsed.error;
}

test('build through an egress proxy from a hub-like registry: HEAD probes only, token realm and storage on their own origins, all through the proxy', async (t) => {
  const { hub, egress } = t.context;
  const images = [`${hub.host}/library/app:1`, `${hub.host}/library/big:1`];
  const dir = await app(t, 'hub-app', images);
  hub.reset();
  egress.reset();

  const plan = await runCli(['plan', '--manifests', dir, ...resolveFlags(t), '--json'], { env: proxied(t) });
  t.is(plan.code, 0, plan.stderr + plan.stdout);
  // The public/private decision spent no pull: HEADs only.
  t.is(hub.counts.manifestGet, 0);
  t.true(hub.counts.manifestHead >= 2);
  t.true(egress.tunnels.includes(hub.host), `CONNECT to the registry: ${egress.tunnels.join(' ')}`);
  t.true(egress.tunnels.includes(hub.authHost), 'CONNECT to the token realm');

  const bundle = join(t.context.dir, 'hub.tar');
  const build = await runCli(['build', '--manifests', dir, '--license', t.context.license, '--out', bundle, ...resolveFlags(t), '--json'],
    { env: proxied(t) });
  t.is(build.code, 0, build.stderr + build.stdout);
  const result = JSON.parse(build.stdout) as { images: { ref: string; kind: string }[] };
  t.deepEqual(result.images.map((i) => i.kind), ['public', 'public']);
  t.true(egress.tunnels.includes(hub.storageHost), 'CONNECT to the blob storage');
  t.true(hub.counts.storageServed >= 2);
  t.is(hub.counts.storageRefused, 0, 'no Authorization reached the storage, every signature held');
  t.is(t.context.vendorProxy.requests.length, 0);
  // An independent reader opens what was bundled.
  const raw = await inspectRaw(`${t.context.backend.host}/library/big:1`);
  const { execFile } = await import('node:child_process');
  const { promisify } = await import('node:util');
  const { stdout } = await promisify(execFile)('skopeo', ['inspect', '--raw', `oci-archive:${bundle}:${hub.host}/library/big:1`]);
  t.is(Buffer.from(stdout).toString(), raw.raw.toString());
});

test('push to an ecr-like registry: chunks of at least 5 MiB, no mount, repositories that exist; a re-push moves no blob byte', async (t) => {
  const { ecr } = t.context;
  const bundle = join(t.context.dir, 'hub.tar');
  const registry = `${ecr.host}/acme`;
  const args = ['push', bundle, '--registry', registry, '--username', ECR_USER.username, '--password-stdin', '--ca-file', t.context.ca.caFile, '--json'];
  ecr.reset();
  // The proxy variables are set: a loopback registry is still reached directly.
  const r = await runCli(args, { input: ECR_USER.password, env: { HTTPS_PROXY: t.context.egress.url } });
  t.is(r.code, 0, r.stderr + r.stdout);
  const patches = ecr.events.filter((e) => e.method === 'PATCH').map((e) => e.range);
  t.true(patches.includes(`0-${5 * MiB - 1}`), patches.join(' '));
  // Within each upload session every chunk but the last is at least 5 MiB.
  const sessions = new Map<string, number[]>();
  for (const e of ecr.events.filter((x) => x.method === 'PATCH')) {
    const [a, b] = (e.range ?? '').split('-').map(Number);
    sessions.set(e.path, [...(sessions.get(e.path) ?? []), b! - a! + 1]);
  }
  for (const sizes of sessions.values()) t.true(sizes.slice(0, -1).every((n) => n >= 5 * MiB), sizes.join(' '));
  // What the registry behind the front holds is the image, byte for byte (read by skopeo).
  const pushed = await inspectRaw(`${t.context.backend.host}/acme/big:1`);
  const source = await inspectRaw(`${t.context.backend.host}/library/big:1`);
  t.is(pushed.digest, source.digest);

  ecr.reset();
  const again = await runCli(args, { input: ECR_USER.password });
  t.is(again.code, 0, again.stderr + again.stdout);
  t.false(ecr.events.some((e) => e.method === 'PATCH' || e.method === 'POST' || (e.method === 'PUT' && e.path.includes('/blobs/'))),
    'a re-push uploads nothing');

  const missing = await runCli(['push', bundle, '--registry', `${ecr.host}/nosuch`, '--username', ECR_USER.username,
    '--password-stdin', '--ca-file', t.context.ca.caFile, '--json'], { input: ECR_USER.password });
  t.not(missing.code, 0);
  const err = jsonError(missing);
  t.is(err.code, 'E_NOT_FOUND');
  t.regex(err.message, /nosuch\/(app|big)/);
  t.regex(err.message, /NAME_UNKNOWN/);
  t.regex(err.hint ?? '', /created first/);
});

test('plain HTTP through the proxy (HTTP_PROXY, lower case): absolute-URI requests, no CONNECT', async (t) => {
  const { egress, backend } = t.context;
  const port = backend.host.split(':')[1]!;
  egress.reset();
  const r = await runCli(['push', join(t.context.dir, 'hub.tar'), '--registry', `${PLAIN_NAME}:${port}/viaproxy`, '--plain-http', '--json'],
    { env: { http_proxy: egress.url, NODE_OPTIONS: `--import=${NODNS}`, AIRGAP_RETRY_BASE_MS: '5' } });
  t.is(r.code, 0, r.stderr + r.stdout);
  t.true(egress.forwarded.some((u) => u.startsWith(`http://${PLAIN_NAME}:${port}/v2/viaproxy/big/`)), egress.forwarded.slice(0, 5).join(' '));
  t.deepEqual(egress.tunnels, []);
  const pushed = await inspectRaw(`${backend.host}/viaproxy/big:1`);
  t.is(pushed.digest, (await inspectRaw(`${backend.host}/library/big:1`)).digest);
});

test('NO_PROXY (either case) sends a host direct: its name then does not resolve, one line naming it, nothing through the proxy', async (t) => {
  const { hub, egress } = t.context;
  const dir = await app(t, 'noproxy-app', [`${hub.host}/library/app:1`]);
  const variants: Record<string, string>[] = [{ NO_PROXY: '.hub.invalid' }, { no_proxy: NAMES.registry }];
  for (const env of variants) {
    egress.reset();
    const r = await runCli(['plan', '--manifests', dir, ...resolveFlags(t), '--json'], { env: proxied(t, env) });
    t.not(r.code, 0, JSON.stringify(env));
    const err = jsonError(r);
    t.is(err.code, 'E_NETWORK');
    t.regex(err.message, /cannot resolve registry\.hub\.invalid/);
    t.false(err.message.includes('\n'));
    t.deepEqual(egress.tunnels, [], 'nothing went through the proxy');
  }
});

test('a name the proxy cannot resolve: one line naming the host and the proxy\'s answer', async (t) => {
  const { egress } = t.context;
  const dir = await app(t, 'unknown-app', ['nosuch.corp.invalid:5000/team/app:1']);
  egress.reset();
  const r = await runCli(['plan', '--manifests', dir, ...resolveFlags(t), '--json'], { env: proxied(t) });
  const err = jsonError(r);
  t.is(err.code, 'E_NETWORK');
  t.regex(err.message, /the proxy answered HTTP 502 to CONNECT nosuch\.corp\.invalid:5000/);
  t.deepEqual(egress.refused, ['nosuch.corp.invalid:5000'], 'asked once, not retried');
});

test('a missing tag is an error naming the reference and its file:line; the vendor proxy is not asked', async (t) => {
  const { hub, vendorProxy } = t.context;
  const dir = await app(t, 'typo-app', [`${hub.host}/library/app:nosuch`]);
  vendorProxy.reset();
  hub.reset();
  const r = await runCli(['plan', '--manifests', dir, ...resolveFlags(t), '--json'], { env: proxied(t) });
  const err = jsonError(r);
  t.is(err.code, 'E_NOT_FOUND');
  t.true(err.message.includes(`${hub.host}/library/app:nosuch`), err.message);
  t.regex(err.message, /pod\.yaml:\d+/);
  t.is(vendorProxy.requests.length, 0);
  t.is(hub.counts.manifestGet, 0);
});

test('a repository that does not exist (hub answers 401) and is not on the vendor proxy either: "not found anonymously nor through the vendor proxy"', async (t) => {
  const { hub, vendorProxy } = t.context;
  const dir = await app(t, 'norepo-app', [`${hub.host}/library/nosuchrepo:1`]);
  vendorProxy.reset();
  const r = await runCli(['build', '--manifests', dir, '--license', t.context.license, '--out', join(t.context.dir, 'norepo.tar'),
    ...resolveFlags(t), '--json'], { env: proxied(t) });
  const err = jsonError(r);
  t.is(err.code, 'E_NOT_FOUND');
  t.true(err.message.includes(`not found on ${hub.host} anonymously nor through the vendor proxy ${vendorProxy.host}`), err.message);
  t.regex(err.message, /pod\.yaml:\d+/);
  t.true(vendorProxy.requests.length > 0, 'the proxy was asked');
});

test('--ca-file and NODE_EXTRA_CA_CERTS together: the storage behind another CA is trusted only with both', async (t) => {
  const { hub2, storageCa } = t.context;
  const dir = await app(t, 'extra-ca-app', [`${hub2.host}/library/app:1`]);
  const out = join(t.context.dir, 'extra.tar');
  const args = ['build', '--manifests', dir, '--license', t.context.license, '--out', out, ...resolveFlags(t), '--json'];
  const without = await runCli(args, { env: proxied(t) });
  const err = jsonError(without);
  t.is(err.code, 'E_TLS');
  t.true(err.message.includes(hub2.storageHost), err.message);
  t.true((err.hint ?? '').includes(t.context.ca.caFile), 'the hint names the CA file given, not "pass --ca-file"');

  const withExtra = await runCli(args, { env: proxied(t, { NODE_EXTRA_CA_CERTS: storageCa.caFile }) });
  t.is(withExtra.code, 0, withExtra.stderr + withExtra.stdout);
  t.true(hub2.counts.storageServed >= 1);
});

test('a registry that wants a client certificate (mutual TLS): a TLS error, never retried over plain HTTP', async (t) => {
  const mtls = await startRegistry({ mutualTls: true });
  try {
    const r = await runCli(['push', join(t.context.dir, 'hub.tar'), '--registry', `${mtls.host}/acme`, '--ca-file', mtls.caFile!, '--json'],
      { env: { AIRGAP_RETRY_BASE_MS: '5' } });
    t.not(r.code, 0);
    const err = jsonError(r);
    t.is(err.code, 'E_TLS', err.message);
    t.regex(err.message, /TLS handshake/);
    t.regex(err.hint ?? '', /client certificate/);
  } finally {
    await mtls.stop();
  }
});
