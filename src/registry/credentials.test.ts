import test from 'ava';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isAirgapError } from '../errors.js';
import { CredentialCache, credentialFiles, normaliseServer, resolveCredentials } from './credentials.js';
import { readFile } from 'node:fs/promises';

async function configDir(t: { teardown: (fn: () => Promise<void>) => void }, config: unknown): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'airgap-dockercfg-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  await writeFile(join(dir, 'config.json'), typeof config === 'string' ? config : JSON.stringify(config));
  return dir;
}

const b64 = (s: string): string => Buffer.from(s).toString('base64');

test('normaliseServer maps Docker Hub names and strips URL parts', (t) => {
  t.is(normaliseServer('https://index.docker.io/v1/'), 'docker.io');
  t.is(normaliseServer('registry-1.docker.io'), 'docker.io');
  t.is(normaliseServer('http://127.0.0.1:5000/v2/'), '127.0.0.1:5000');
  t.is(normaliseServer('Quay.IO'), 'quay.io');
});

test('a login for host:443 is the login for host, and the other way round', async (t) => {
  t.is(normaliseServer('registry.corp:443'), 'registry.corp');
  t.is(normaliseServer('https://registry.corp:443/v2/'), 'registry.corp');
  t.is(normaliseServer('registry.corp:5000'), 'registry.corp:5000');
  const dir = await configDir(t, { auths: { 'registry.corp:443': { auth: b64('port:portpw') }, 'other.corp': { auth: b64('bare:barepw') } } });
  t.deepEqual(up(await resolveCredentials('registry.corp', { configDir: dir, env: {} })), { username: 'port', password: 'portpw' });
  t.deepEqual(up(await resolveCredentials('other.corp:443', { configDir: dir, env: {} })), { username: 'bare', password: 'barepw' });
});

/** user+password of a basic credential, to compare without its source. */
const up = (c: Awaited<ReturnType<typeof resolveCredentials>>): unknown =>
  c?.kind === 'basic' ? { username: c.username, password: c.password } : c;

test('explicit credentials win over every file', async (t) => {
  const dir = await configDir(t, { auths: { 'quay.io': { auth: b64('cfg:cfgpw') } } });
  t.deepEqual(await resolveCredentials('quay.io', { configDir: dir, env: { REGISTRY_AUTH_FILE: join(dir, 'config.json') }, explicit: { username: 'flag', password: 'flagpw' } }),
    { kind: 'basic', username: 'flag', password: 'flagpw', source: 'the given credentials' });
});

test('auths: base64 auth, username/password, URL keys for Docker Hub, $DOCKER_CONFIG', async (t) => {
  const dir = await configDir(t, {
    auths: {
      'https://index.docker.io/v1/': { auth: b64('hubuser:hub:pw:with:colons') },
      '127.0.0.1:5000': { username: 'local', password: 'localpw' },
      'ghcr.io': {},
    },
  });
  t.deepEqual(await resolveCredentials('docker.io', { configDir: dir }),
    { kind: 'basic', username: 'hubuser', password: 'hub:pw:with:colons', source: `the credentials in ${join(dir, 'config.json')}` });
  t.deepEqual(up(await resolveCredentials('127.0.0.1:5000', { env: { DOCKER_CONFIG: dir } })), { username: 'local', password: 'localpw' });
  t.is(await resolveCredentials('ghcr.io', { configDir: dir }), undefined);
  t.is(await resolveCredentials('127.0.0.1:5001', { configDir: dir }), undefined);
  t.is(await resolveCredentials('quay.io', { configDir: join(dir, 'absent') }), undefined);
});

test('a malformed config is E_USAGE naming the file', async (t) => {
  const dir = await configDir(t, '{not json');
  const e = await t.throwsAsync(resolveCredentials('quay.io', { configDir: dir }));
  t.true(isAirgapError(e, 'E_USAGE'));
  t.true(e!.message.includes(join(dir, 'config.json')));
});

test.serial('credHelpers and credsStore run docker-credential-<name> get with the server on stdin', async (t) => {
  const bin = await mkdtemp(join(tmpdir(), 'airgap-helpers-'));
  t.teardown(() => rm(bin, { recursive: true, force: true }));
  await mkdir(bin, { recursive: true });
  // A helper that answers from its name and the server it was asked about.
  const helper = (name: string): string => `#!/bin/sh
[ "$1" = get ] || exit 3
read server
case "$server" in
  *nothing*) echo "credentials not found in native keychain"; exit 1 ;;
esac
printf '{"ServerURL":"%s","Username":"${name}-user","Secret":"%s-secret"}' "$server" "$server"
`;
  for (const name of ['pass', 'store']) {
    const file = join(bin, `docker-credential-${name}`);
    await writeFile(file, helper(name));
    await chmod(file, 0o755);
  }
  const oldPath = process.env.PATH;
  process.env.PATH = `${bin}:${oldPath ?? ''}`;
  t.teardown(async () => { process.env.PATH = oldPath; });
  const dir = await configDir(t, {
    credHelpers: { 'gcr.io': 'pass' },
    credsStore: 'store',
    auths: { 'quay.io': { auth: b64('q:qpw') } },
  });
  t.deepEqual(await resolveCredentials('gcr.io', { configDir: dir }),
    { kind: 'basic', username: 'pass-user', password: 'gcr.io-secret', source: 'the credentials from docker-credential-pass' });
  t.deepEqual(up(await resolveCredentials('quay.io', { configDir: dir })), { username: 'q', password: 'qpw' });
  t.deepEqual(up(await resolveCredentials('docker.io', { configDir: dir })),
    { username: 'store-user', password: 'https://index.docker.io/v1/-secret' });
  t.is(await resolveCredentials('nothing.example', { configDir: dir }), undefined);

  const missing = await configDir(t, { credsStore: 'absent-helper-xyz' });
  const e = await t.throwsAsync(resolveCredentials('quay.io', { configDir: missing }));
  t.true(isAirgapError(e, 'E_AUTH'));
  t.regex(e!.message, /docker-credential-absent-helper-xyz/);
});

test.serial('identity tokens: an identitytoken entry (its "auth" of <uuid>: ignored), a helper answering <token>', async (t) => {
  const bin = await mkdtemp(join(tmpdir(), 'airgap-helpers-'));
  t.teardown(() => rm(bin, { recursive: true, force: true }));
  const file = join(bin, 'docker-credential-acr');
  await writeFile(file, '#!/bin/sh\nread server\nprintf \'{"Username":"<token>","Secret":"refresh-from-helper"}\'\n');
  await chmod(file, 0o755);
  const oldPath = process.env.PATH;
  process.env.PATH = `${bin}:${oldPath ?? ''}`;
  t.teardown(async () => { process.env.PATH = oldPath; });
  const dir = await configDir(t, {
    auths: { 'acr.example.io': { auth: b64('00000000-0000-0000-0000-000000000000:'), identitytoken: 'refresh-in-config' } },
    credHelpers: { 'helped.example.io': 'acr' },
  });
  const cfg = join(dir, 'config.json');
  t.deepEqual(await resolveCredentials('acr.example.io', { configDir: dir, env: {} }),
    { kind: 'identity-token', token: 'refresh-in-config', source: `the identity token in ${cfg}` });
  t.deepEqual(await resolveCredentials('helped.example.io', { configDir: dir, env: {} }),
    { kind: 'identity-token', token: 'refresh-from-helper', source: 'the identity token from docker-credential-acr' });
});

test('files in order: $REGISTRY_AUTH_FILE, $XDG_RUNTIME_DIR/containers/auth.json, then the Docker config', async (t) => {
  const authFile = await configDir(t, { auths: { 'one.example': { auth: b64('from-authfile:1') } } });
  const xdg = await mkdtemp(join(tmpdir(), 'airgap-xdg-'));
  t.teardown(() => rm(xdg, { recursive: true, force: true }));
  await mkdir(join(xdg, 'containers'));
  await writeFile(join(xdg, 'containers', 'auth.json'), JSON.stringify({ auths: {
    'one.example': { auth: b64('from-xdg:1') }, 'two.example': { auth: b64('from-xdg:2') },
    // podman keys by namespace too (`podman login three.example/team`): the most specific key wins.
    'three.example/team': { auth: b64('from-xdg-team:3') },
    'three.example/team/app': { auth: b64('from-xdg-team-app:3') },
  } }));
  const docker = await configDir(t, { auths: {
    'one.example': { auth: b64('from-docker:1') }, 'two.example': { auth: b64('from-docker:2') },
    'three.example': { auth: b64('from-docker:3') }, 'four.example': { auth: b64('from-docker:4') },
  } });
  const env = { REGISTRY_AUTH_FILE: join(authFile, 'config.json'), XDG_RUNTIME_DIR: xdg, DOCKER_CONFIG: docker };
  t.deepEqual(credentialFiles({ env }), [join(authFile, 'config.json'), join(xdg, 'containers', 'auth.json'), join(docker, 'config.json')]);
  const user = async (host: string, repository?: string): Promise<string | undefined> => {
    const c = await resolveCredentials(host, { env, ...(repository ? { repository } : {}) });
    return c?.kind === 'basic' ? c.username : undefined;
  };
  t.is(await user('one.example'), 'from-authfile');
  t.is(await user('two.example'), 'from-xdg');
  t.is(await user('three.example', 'team/app'), 'from-xdg-team-app');
  t.is(await user('three.example', 'team/app/sub'), 'from-xdg-team-app');
  t.is(await user('three.example', 'team/api'), 'from-xdg-team');
  // Not under a namespace of that file: the next file's bare host key.
  t.is(await user('three.example', 'teamster/x'), 'from-docker');
  t.is(await user('three.example'), 'from-docker');
  t.is(await user('four.example'), 'from-docker');
  t.is(await user('five.example'), undefined);
  // Unset variables and missing files are skipped.
  t.deepEqual(credentialFiles({ env: { DOCKER_CONFIG: docker } }), [join(docker, 'config.json')]);
  t.is(await user('five.example'), undefined);
  const bad = await configDir(t, '[1, 2]');
  const e = await t.throwsAsync(resolveCredentials('one.example', { env: { REGISTRY_AUTH_FILE: join(bad, 'config.json') } }));
  t.true(isAirgapError(e, 'E_USAGE'));
  t.true(e!.message.includes(join(bad, 'config.json')));
});

test.serial('one run reads each file once and asks a helper once per server, whatever the number of repositories', async (t) => {
  const bin = await mkdtemp(join(tmpdir(), 'airgap-helpers-'));
  t.teardown(() => rm(bin, { recursive: true, force: true }));
  const calls = join(bin, 'calls');
  const file = join(bin, 'docker-credential-counting');
  // The helper writes a line per run: what it was asked about.
  await writeFile(file, `#!/bin/sh\nread server\necho "$server" >> ${calls}\nprintf '{"Username":"u","Secret":"s"}'\n`);
  await chmod(file, 0o755);
  const oldPath = process.env.PATH;
  process.env.PATH = `${bin}:${oldPath ?? ''}`;
  t.teardown(async () => { process.env.PATH = oldPath; });
  const dir = await configDir(t, { credsStore: 'counting' });
  const cache = new CredentialCache();
  const found = await Promise.all(Array.from({ length: 20 }, (_, i) =>
    resolveCredentials('reg.example.io', { configDir: dir, env: {}, repository: `team/app-${i}`, cache })));
  await resolveCredentials('other.example.io', { configDir: dir, env: {}, cache });
  t.true(found.every((c) => c?.kind === 'basic' && c.username === 'u'));
  t.deepEqual((await readFile(calls, 'utf8')).trim().split('\n'), ['reg.example.io', 'other.example.io']);
  t.is(cache.files.size, 1);
});
