import anyTest, { type TestFn } from 'ava';
import { chmod, copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspectRaw, seedImage } from '../src/testing/fixtures.js';
import { startWorld, type World } from '../src/testing/world.js';
import { startRegistry, type TestRegistry } from '../src/testing/registry.js';
import { createTestCa, type TestCa } from '../src/testing/tlsca.js';
import { startTokenFront, type TokenFront, type TokenFrontOptions } from '../src/testing/tokenfront.js';
import { buildBundle, json, runCli, type CliResult } from '../src/testing/cli.js';

/**
 * Registry auth as hosted registries do it, through the built CLI: an ACR-like registry with
 * identity tokens (docker config and credential helper), the podman/skopeo auth files and their
 * order, a token service that refuses any scope not allowed, and a registry that redirects to
 * another registry with its own token realm. Every front is real TLS (a CA made here) over a
 * real docker-registry; what was pushed is read back from that registry with skopeo.
 */

interface Ctx {
  world: World;
  dir: string;
  bundle: string;
  /** A one-image bundle, for the tests that push many times. */
  small: string;
  ca: TestCa;
  /** The CA and the certificate every front here serves (127.0.0.1). */
  certs: { caFile: string; certFile: string; keyFile: string };
  backend: TestRegistry;
  fronts: TokenFront[];
}
const test = anyTest as TestFn<Ctx>;
const b64 = (s: string): string => Buffer.from(s).toString('base64');
const ENV = { AIRGAP_RETRY_BASE_MS: '5' };

test.before(async (t) => {
  t.context.fronts = [];
  t.context.world = await startWorld();
  const dir = await mkdtemp(join(tmpdir(), 'airgap-auth-e2e-'));
  t.context.dir = dir;
  t.context.ca = await createTestCa();
  const server = await t.context.ca.server([]);
  t.context.certs = { caFile: t.context.ca.caFile, certFile: server.certFile, keyFile: server.keyFile };
  t.context.backend = await startRegistry();
  t.context.bundle = join(dir, 'app.tar');
  await buildBundle(t.context.world, t.context.bundle);
  t.context.small = join(dir, 'small.tar');
  await buildSmall(t.context);
});

/** A one-image app read from the (anonymous, plain HTTP) backend registry. */
async function buildSmall(c: Ctx): Promise<void> {
  await seedImage(c.backend, { repo: 'small/app', tag: '1', layers: [{ seed: 'small-app', size: 20_000 }] });
  const app = join(c.dir, 'small-app');
  await mkdir(app, { recursive: true });
  await writeFile(join(app, 'pod.yaml'), [
    'apiVersion: v1', 'kind: Pod', 'metadata: {name: small}', 'spec:',
    `  containers: [{name: app, image: "${c.backend.host}/small/app:1"}]`, '',
  ].join('\n'));
  const r = await runCli(['build', '--manifests', app, '--license', c.world.licensePath, '--out', c.small,
    '--proxy-host', '127.0.0.1:9', '--replicated-registry', '127.0.0.1:9']);
  if (r.code !== 0) throw new Error(`small build failed: ${r.stderr}`);
}

test.after.always(async (t) => {
  await Promise.allSettled((t.context.fronts ?? []).map((f) => f.stop()));
  await t.context.world?.stop();
  await t.context.backend?.stop();
  await t.context.ca?.remove();
  if (t.context.dir) await rm(t.context.dir, { recursive: true, force: true });
});

async function front(t: { context: Ctx }, o: Omit<TokenFrontOptions, 'backend' | 'tls'> & { backend?: string }): Promise<TokenFront> {
  const f = await startTokenFront({ backend: t.context.backend.host, tls: t.context.certs, ...o });
  t.context.fronts.push(f);
  return f;
}

/** A directory with files, for DOCKER_CONFIG / XDG_RUNTIME_DIR / REGISTRY_AUTH_FILE. */
async function files(t: { context: Ctx }, name: string, content: Record<string, unknown>): Promise<string> {
  const d = join(t.context.dir, name);
  for (const [rel, value] of Object.entries(content)) {
    await mkdir(join(d, rel, '..'), { recursive: true });
    await writeFile(join(d, rel), JSON.stringify(value));
  }
  return d;
}

/**
 * The environment of a user with exactly these credential files: none of the machine's own
 * (XDG_RUNTIME_DIR and DOCKER_CONFIG point at empty places unless given).
 */
function credEnv(t: { context: Ctx }, e: { authFile?: string; xdg?: string; docker?: string; path?: string }): Record<string, string> {
  return {
    ...ENV,
    REGISTRY_AUTH_FILE: e.authFile ?? '',
    XDG_RUNTIME_DIR: e.xdg ?? join(t.context.dir, 'no-xdg'),
    DOCKER_CONFIG: e.docker ?? join(t.context.dir, 'no-docker'),
    ...(e.path ? { PATH: `${e.path}:${process.env.PATH ?? ''}` } : {}),
  };
}

interface PushJson { images: { source: string; target: string; digest: string }[]; blobsMounted?: number; blobsUploaded?: number }

async function push(t: { context: Ctx }, host: string, ns: string, env: Record<string, string>, bundle = t.context.bundle): Promise<CliResult> {
  return runCli(['push', bundle, '--registry', `${host}/${ns}`, '--ca-file', t.context.certs.caFile, '--json'], { env });
}

/** Every pushed image, read back from the registry behind the front by skopeo, has the digest push reported. */
async function assertPushed(t: { context: Ctx; is: (a: unknown, b: unknown, m?: string) => void }, r: CliResult, frontHost: string,
  count = new Set(t.context.world.images.map((i) => `${i.name}:${i.tag}`)).size): Promise<void> {
  t.is(r.code, 0, r.stderr);
  const out = json<PushJson>(r);
  t.is(out.images.length, count, 'every image pushed');
  for (const img of out.images) {
    const onBackend = img.target.replace(frontHost, t.context.backend.host);
    t.is((await inspectRaw(onBackend)).digest, img.digest, img.target);
  }
}

test.serial('acr-like: a docker-config identitytoken is exchanged with the OAuth2 refresh-token grant, never sent as a password; mounts ignored', async (t) => {
  const identity = 'eyJhbGciOi.refresh.' + Math.random().toString(36).slice(2);
  const acr = await front(t, {
    service: 'acr.test', users: { admin: 'admin-pw' }, identityTokens: { [identity]: 'acr-user' },
    anonymous: false, ignoreMount: true, tokenPrefix: 'acr',
  });
  const docker = await files(t, 'acr-docker', {
    'config.json': { auths: { [acr.host]: { auth: b64('00000000-0000-0000-0000-000000000000:'), identitytoken: identity } } },
  });
  const r = await push(t, acr.host, 'acme', credEnv(t, { docker }));
  await assertPushed(t, r, acr.host);

  t.true(acr.tokens.length > 0);
  for (const tok of acr.tokens) {
    t.is(tok.method, 'POST', 'every token came from the refresh-token grant');
    t.is(tok.grantType, 'refresh_token');
    t.truthy(tok.clientId);
    t.is(tok.refreshToken, identity);
    t.is(tok.authorization, undefined, 'no Basic with the identity token at the realm');
    t.is(tok.status, 200);
  }
  const reqs = acr.registryRequests();
  t.true(reqs.every((q) => q.authorization === undefined || q.authorization.startsWith('Bearer acr.')),
    'the registry only ever saw our bearer tokens');
  t.false(JSON.stringify(reqs).includes(b64(`00000000-0000-0000-0000-000000000000:${identity}`)));
  // The world's private images share base layers: push asked to mount them, the registry ignored it.
  const mounts = reqs.filter((q) => q.method === 'POST' && q.url.includes('mount='));
  t.true(mounts.length > 0, 'push tried cross-repository mounts');
  t.is(json<PushJson>(r).blobsMounted ?? 0, 0, 'none counted as mounted: each was uploaded from scratch');
  t.log(`acr-like push: ${acr.tokens.length} token grants, ${reqs.length} registry requests, ${mounts.length} mounts ignored`);
  t.false(r.stdout.includes(identity) || r.stderr.includes(identity));

  // An identity token the service no longer accepts: E_AUTH naming where it came from, not the token.
  const stale = await files(t, 'acr-stale', {
    'config.json': { auths: { [acr.host]: { auth: b64('00000000-0000-0000-0000-000000000000:'), identitytoken: 'expired-' + identity } } },
  });
  const bad = await push(t, acr.host, 'acme', credEnv(t, { docker: stale }));
  t.not(bad.code, 0);
  t.regex(bad.stderr, /refused the identity token in .*acr-stale.*config\.json/);
  t.false(bad.stderr.includes(identity));

  // No anonymous access: without any credential the token service says no, and the hint says log in.
  const anon = await push(t, acr.host, 'acme', credEnv(t, {}));
  t.not(anon.code, 0);
  t.regex(anon.stderr, /anonymous access refused by the token service at 127\.0\.0\.1:\d+/);
  t.regex(anon.stderr, /log in to 127\.0\.0\.1:\d+/);
});

test.serial('credentials from $REGISTRY_AUTH_FILE, then $XDG_RUNTIME_DIR/containers/auth.json, then the Docker config; a helper answering <token>', async (t) => {
  const identity = 'helper-refresh-' + Math.random().toString(36).slice(2);
  const users = { 'authfile-user': 'pw-a', 'xdg-user': 'pw-x', 'docker-user': 'pw-d' };
  const reg = await front(t, { service: 'podman.test', users, identityTokens: { [identity]: 'helper-user' }, anonymous: false, tokenPrefix: 'pod' });
  const entry = (u: keyof typeof users): object => ({ auths: { [reg.host]: { auth: b64(`${u}:${users[u]}`) } } });
  const authFile = join(await files(t, 'authfile', { 'auth.json': entry('authfile-user') }), 'auth.json');
  const xdg = await files(t, 'xdg', { 'containers/auth.json': entry('xdg-user') });
  const docker = await files(t, 'docker', { 'config.json': entry('docker-user') });
  const usersSince = async (env: Record<string, string>, ns: string): Promise<Set<string | undefined>> => {
    const before = reg.tokens.length;
    await assertPushed(t, await push(t, reg.host, ns, env, t.context.small), reg.host, 1);
    return new Set(reg.tokens.slice(before).filter((x) => x.status === 200).map((x) => x.user));
  };
  t.deepEqual(await usersSince(credEnv(t, { authFile, xdg, docker }), 'a'), new Set(['authfile-user']));
  t.deepEqual(await usersSince(credEnv(t, { xdg, docker }), 'b'), new Set(['xdg-user']));
  t.deepEqual(await usersSince(credEnv(t, { docker }), 'c'), new Set(['docker-user']));
  // `podman login host/e` keys a namespace: it wins over the bare host for repositories under it.
  const ns = await files(t, 'xdg-ns', { 'containers/auth.json': { auths: {
    [reg.host]: { auth: b64(`authfile-user:${users['authfile-user']}`) },
    [`${reg.host}/e`]: { auth: b64(`xdg-user:${users['xdg-user']}`) },
  } } });
  t.deepEqual(await usersSince(credEnv(t, { xdg: ns }), 'e'), new Set(['xdg-user']));
  t.deepEqual(await usersSince(credEnv(t, { xdg: ns }), 'f'), new Set(['authfile-user']));

  // credHelpers in an auth.json: docker-credential-test answers <token>, so the Secret is an identity token.
  const bin = join(t.context.dir, 'bin');
  await mkdir(bin, { recursive: true });
  await writeFile(join(bin, 'docker-credential-test'), [
    '#!/bin/sh', '[ "$1" = get ] || exit 3', 'read server',
    `[ "$server" = "${reg.host}" ] || { echo "credentials not found in native keychain"; exit 1; }`,
    `printf '{"ServerURL":"%s","Username":"<token>","Secret":"${identity}"}' "$server"`, '',
  ].join('\n'));
  await chmod(join(bin, 'docker-credential-test'), 0o755);
  const helperFile = join(await files(t, 'helper', { 'auth.json': { credHelpers: { [reg.host]: 'test' } } }), 'auth.json');
  const before = reg.tokens.length;
  await assertPushed(t, await push(t, reg.host, 'd', credEnv(t, { authFile: helperFile, docker, path: bin }), t.context.small), reg.host, 1);
  const fromHelper = reg.tokens.slice(before);
  t.true(fromHelper.length > 0);
  t.true(fromHelper.every((x) => x.method === 'POST' && x.refreshToken === identity && x.authorization === undefined && x.user === 'helper-user'));
});

test.serial('scopes per request: a token service that refuses any scope not allowed still serves a whole push, mounts included', async (t) => {
  const strict = await front(t, {
    service: 'strict.test', users: { alice: 'alice-pw' }, anonymous: false, strictScopes: true, tokenPrefix: 'strict',
    allow: (user, repo) => user === 'alice' && repo.startsWith('team/'),
  });
  const docker = await files(t, 'strict-docker', { 'config.json': { auths: { [strict.host]: { auth: b64('alice:alice-pw') } } } });
  const r = await push(t, strict.host, 'team', credEnv(t, { docker }));
  await assertPushed(t, r, strict.host);
  t.true(strict.tokens.every((x) => x.status === 200), 'no token request was refused');
  for (const tok of strict.tokens) {
    // One request's needs: push,pull on its repository, plus pull on a mount's source; never a union.
    const pushes = tok.scopes.filter((s) => s.endsWith(':pull,push'));
    const pulls = tok.scopes.filter((s) => s.endsWith(':pull'));
    t.true(tok.scopes.length === 1 || (tok.scopes.length === 2 && pushes.length === 1 && pulls.length === 1), tok.scopes.join(' '));
  }
  const mountTokens = strict.tokens.filter((x) => x.scopes.length === 2);
  t.true(mountTokens.length > 0, 'mounts asked for pull on the source and push on the target');
  t.true((json<PushJson>(r).blobsMounted ?? 0) > 0, 'and mounted');
  t.log(`strict push: ${strict.tokens.length} token requests (${mountTokens.length} for mounts), ${json<PushJson>(r).blobsMounted} blobs mounted`);
});

test.serial('a registry that redirects to another registry: that one\'s challenge is answered with its own credentials, never the first\'s', async (t) => {
  const { dir, certs } = t.context;
  const seeded = await seedImage(t.context.backend, { repo: 'mirror/app', tag: '1', layers: [{ seed: 'mirror-app', size: 40_000 }] });
  const gateway = await front(t, { service: 'gateway.test', users: { bob: 'bob-pw' }, anonymous: true, allow: () => true, tokenPrefix: 'gateway' });
  const origin = await front(t, {
    service: 'origin.test', users: { alice: 'alice-pw' }, anonymous: true, allow: () => true, tokenPrefix: 'origin',
    redirect: (path) => (path.startsWith('/v2/mirror/') ? `https://${gateway.host}${path}` : undefined),
  });
  const app = join(dir, 'mirror-app');
  await mkdir(app, { recursive: true });
  await writeFile(join(app, 'deploy.yaml'), [
    'apiVersion: apps/v1', 'kind: Deployment', 'metadata: {name: mirror}', 'spec:', '  template:', '    spec:',
    '      containers:', `      - {name: app, image: "${origin.host}/mirror/app:1"}`, '',
  ].join('\n'));
  await copyFile(t.context.world.licensePath, join(dir, 'mirror-license.yaml'));
  const alice = `Basic ${b64('alice:alice-pw')}`;
  const bob = `Basic ${b64('bob:bob-pw')}`;
  const docker = await files(t, 'mirror-docker', { 'config.json': { auths: { [origin.host]: { auth: b64('alice:alice-pw') } } } });
  const build = (out: string, env: Record<string, string>): Promise<CliResult> => runCli(['build', '--manifests', app,
    '--license', join(dir, 'mirror-license.yaml'), '--out', join(dir, out), '--proxy-host', '127.0.0.1:9', '--replicated-registry', '127.0.0.1:9',
    '--json'], { env: { ...env, NODE_EXTRA_CA_CERTS: certs.caFile } });
  const gatewaySaw = (): string[] => [
    ...gateway.tokens.map((x) => x.authorization ?? ''), ...gateway.registryRequests().map((x) => x.authorization ?? ''),
  ];

  // No credentials for the gateway: it is asked anonymously.
  const r1 = await build('mirror1.tar', credEnv(t, { docker }));
  t.is(r1.code, 0, r1.stderr);
  t.is((await inspectRaw(`${t.context.backend.host}/mirror/app:1`)).digest, seeded.digest);
  t.true(origin.tokens.some((x) => x.authorization === alice), 'the origin got alice');
  t.true(gateway.tokens.length > 0, 'the gateway challenged and was answered');
  t.true(gateway.tokens.every((x) => x.authorization === undefined && x.status === 200));
  t.true(gateway.tokens.every((x) => x.scopes.every((s) => s === 'repository:mirror/app:pull')), gateway.tokens.map((x) => x.scopes).join());
  t.false(gatewaySaw().some((a) => a === alice || a.startsWith('Bearer origin.')), 'nothing of the origin\'s reached the gateway');
  t.true(gateway.registryRequests().some((x) => x.authorization?.startsWith('Bearer gateway.')), 'the gateway got its own tokens');
  t.log(`redirect build: origin ${origin.registryRequests().length} requests, ${origin.tokens.length} tokens; gateway ${gateway.registryRequests().length} requests, ${gateway.tokens.length} tokens`);

  // Credentials for the gateway itself (podman login): those, and only those, go there.
  const xdg = await files(t, 'mirror-xdg', { 'containers/auth.json': { auths: { [gateway.host]: { auth: b64('bob:bob-pw') } } } });
  const before = gateway.tokens.length;
  const r2 = await build('mirror2.tar', credEnv(t, { docker, xdg }));
  t.is(r2.code, 0, r2.stderr);
  const second = gateway.tokens.slice(before);
  t.true(second.some((x) => x.authorization === bob), 'bob went to the gateway');
  t.false(gatewaySaw().some((a) => a === alice), 'alice never did');
  const inspected = json<{ images: { ref: string; digest: string }[] }>(await runCli(['inspect', join(dir, 'mirror2.tar'), '--json']));
  t.is(inspected.images[0]?.digest, seeded.digest);
});
