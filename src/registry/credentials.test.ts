import test from 'ava';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isAirgapError } from '../errors.js';
import { normaliseServer, resolveCredentials } from './credentials.js';

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

test('explicit credentials win over the Docker config', async (t) => {
  const dir = await configDir(t, { auths: { 'quay.io': { auth: b64('cfg:cfgpw') } } });
  t.deepEqual(await resolveCredentials('quay.io', { configDir: dir, explicit: { username: 'flag', password: 'flagpw' } }),
    { username: 'flag', password: 'flagpw' });
});

test('auths: base64 auth, username/password, URL keys for Docker Hub, $DOCKER_CONFIG', async (t) => {
  const dir = await configDir(t, {
    auths: {
      'https://index.docker.io/v1/': { auth: b64('hubuser:hub:pw:with:colons') },
      '127.0.0.1:5000': { username: 'local', password: 'localpw' },
      'ghcr.io': {},
    },
  });
  t.deepEqual(await resolveCredentials('docker.io', { configDir: dir }), { username: 'hubuser', password: 'hub:pw:with:colons' });
  t.deepEqual(await resolveCredentials('127.0.0.1:5000', { env: { DOCKER_CONFIG: dir } }), { username: 'local', password: 'localpw' });
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

test('credHelpers and credsStore run docker-credential-<name> get with the server on stdin', async (t) => {
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
  t.deepEqual(await resolveCredentials('gcr.io', { configDir: dir }), { username: 'pass-user', password: 'gcr.io-secret' });
  t.deepEqual(await resolveCredentials('quay.io', { configDir: dir }), { username: 'q', password: 'qpw' });
  t.deepEqual(await resolveCredentials('docker.io', { configDir: dir }),
    { username: 'store-user', password: 'https://index.docker.io/v1/-secret' });
  t.is(await resolveCredentials('nothing.example', { configDir: dir }), undefined);

  const missing = await configDir(t, { credsStore: 'absent-helper-xyz' });
  const e = await t.throwsAsync(resolveCredentials('quay.io', { configDir: missing }));
  t.true(isAirgapError(e, 'E_AUTH'));
  t.regex(e!.message, /docker-credential-absent-helper-xyz/);
});
