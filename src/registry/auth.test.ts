import test from 'ava';
import { isAirgapError } from '../errors.js';
import { seedImage } from '../testing/fixtures.js';
import { type TestRegistry, startRegistry } from '../testing/registry.js';
import { basic, parseChallenges, repositoryOfPath, scopeSet } from './auth.js';
import { RegistryClient } from './client.js';
import { type Front, startFront } from './testfront.js';

test('parseChallenges: Bearer with quoted params, Basic, several challenges in one header', (t) => {
  t.deepEqual(parseChallenges('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:samalba/my-app:pull,push"'), [
    { scheme: 'bearer', params: { realm: 'https://auth.docker.io/token', service: 'registry.docker.io', scope: 'repository:samalba/my-app:pull,push' } },
  ]);
  t.deepEqual(parseChallenges('Basic realm="Registry Realm"'), [{ scheme: 'basic', params: { realm: 'Registry Realm' } }]);
  t.deepEqual(parseChallenges('Basic realm="a", Bearer realm="https://t/x", service=reg'), [
    { scheme: 'basic', params: { realm: 'a' } },
    { scheme: 'bearer', params: { realm: 'https://t/x', service: 'reg' } },
  ]);
  t.deepEqual(parseChallenges(['Basic realm="a\\"b"', 'bearer realm=r']), [
    { scheme: 'basic', params: { realm: 'a"b' } },
    { scheme: 'bearer', params: { realm: 'r' } },
  ]);
  t.deepEqual(parseChallenges(''), []);
});

test('scopeSet: one canonical list per request, actions merged per resource, names with a port kept whole', (t) => {
  t.deepEqual(scopeSet(['repository:b:pull', 'repository:a:pull,push', 'repository:a:pull']),
    ['repository:a:pull,push', 'repository:b:pull']);
  t.deepEqual(scopeSet(['repository:proxy/app/127.0.0.1:5000/acme/api:pull', 'repository:proxy/app/127.0.0.1:5000/acme/api:push']),
    ['repository:proxy/app/127.0.0.1:5000/acme/api:pull,push']);
  t.deepEqual(scopeSet(['registry:catalog:*', '']), ['registry:catalog:*']);
  t.is(repositoryOfPath('/v2/mirror/app/manifests/1'), 'mirror/app');
  t.is(repositoryOfPath('/v2/a/b/c/blobs/sha256:00'), 'a/b/c');
  t.is(repositoryOfPath('/v2/'), undefined);
});

const USER = { username: 'carol', password: 'token-pw' };
const FAST = { attempts: 2, baseDelayMs: 10, maxDelayMs: 50, maxElapsedMs: 5_000, retryAfterCapMs: 100 };

let backend: TestRegistry;
let front: Front;
/** Tokens the front currently accepts, and the token requests it has seen. */
const valid = new Map<string, { anonymous: boolean }>();
const tokenRequests: URL[] = [];
const tokenAuth: (string | undefined)[] = [];
let tokenTtl = 300;
let tokenField: 'token' | 'access_token' = 'token';

test.before(async () => {
  backend = await startRegistry();
  await seedImage(backend, { repo: 'bearer/app', tag: 'v1', layers: [{ seed: 'bearer', size: 1000 }] });
  let n = 0;
  // A token service and a registry front in one: /token issues tokens, /v2/ demands them.
  front = await startFront(backend.host, async (req, res, ctx) => {
    const url = new URL(req.url ?? '/', `http://${req.headers.host}`);
    if (url.pathname === '/token') {
      tokenRequests.push(url);
      const auth = req.headers.authorization;
      tokenAuth.push(auth);
      if (auth !== undefined && auth !== basic(USER)) {
        res.writeHead(401, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ errors: [{ code: 'UNAUTHORIZED', message: 'bad credentials' }] }));
        return;
      }
      const token = `tok-${++n}`;
      valid.set(token, { anonymous: auth === undefined });
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ [tokenField]: token, expires_in: tokenTtl }));
      return;
    }
    const m = /^Bearer (.+)$/.exec(req.headers.authorization ?? '');
    const grant = m ? valid.get(m[1]!) : undefined;
    if (!grant || grant.anonymous) {
      res.writeHead(401, {
        'content-type': 'application/json',
        'www-authenticate': `Bearer realm="http://${req.headers.host}/token",service="test-registry",scope="repository:bearer/app:pull"`,
      });
      res.end(JSON.stringify({ errors: [{ code: 'UNAUTHORIZED', message: 'authentication required' }] }));
      return;
    }
    await ctx.forward({ headers: { authorization: undefined } });
  });
});

test.after.always(async () => {
  await front?.stop();
  await backend?.stop();
});

function client(extra: Partial<ConstructorParameters<typeof RegistryClient>[0]> = {}): RegistryClient {
  return new RegistryClient({ host: front.host, retry: FAST, credentialOptions: { configDir: '/nonexistent-airgap', env: {} }, ...extra });
}

test.serial('Bearer: token fetched with Basic credentials, scoped, cached across requests', async (t) => {
  tokenRequests.length = 0;
  const c = client({ credentials: USER });
  t.teardown(() => c.close());
  await c.getManifest('bearer/app', 'v1');
  await c.headManifest('bearer/app', 'v1');
  await c.listTags('bearer/app');
  t.is(tokenRequests.length, 1);
  const q = tokenRequests[0]!.searchParams;
  t.is(q.get('service'), 'test-registry');
  t.deepEqual(q.getAll('scope'), ['repository:bearer/app:pull']);
});

test.serial('Bearer: access_token is read too; a revoked token is re-challenged once', async (t) => {
  tokenField = 'access_token';
  t.teardown(() => { tokenField = 'token'; });
  tokenRequests.length = 0;
  const c = client({ credentials: USER });
  t.teardown(() => c.close());
  await c.getManifest('bearer/app', 'v1');
  valid.clear(); // the registry forgets every token
  await c.getManifest('bearer/app', 'v1');
  t.is(tokenRequests.length, 2);
});

test.serial('Bearer: expires_in is honoured (a new token before the old one lapses)', async (t) => {
  tokenTtl = 1;
  t.teardown(() => { tokenTtl = 300; });
  tokenRequests.length = 0;
  const c = client({ credentials: USER });
  t.teardown(() => c.close());
  await c.headManifest('bearer/app', 'v1');
  await new Promise((r) => setTimeout(r, 1100));
  const before = front.seen.length;
  await c.headManifest('bearer/app', 'v1');
  t.is(tokenRequests.length, 2);
  // The renewal happened up front: one token request and one registry request, no 401 in between.
  t.is(front.seen.length - before, 2);
});

test.serial('Bearer: wrong credentials are E_AUTH naming the token service, never the password', async (t) => {
  const c = client({ credentials: { username: USER.username, password: 'wrong-pass' } });
  t.teardown(() => c.close());
  const e = await t.throwsAsync(c.getManifest('bearer/app', 'v1'));
  t.true(isAirgapError(e, 'E_AUTH'));
  t.regex(e!.message, /token service/);
  t.false(e!.message.includes('wrong-pass'));
});

test.serial('probe: an anonymous token the registry then refuses means unauthorized', async (t) => {
  tokenAuth.length = 0;
  const c = client({ credentials: USER, anonymous: false });
  t.teardown(() => c.close());
  t.is(await c.probe('bearer/app', 'v1'), 'unauthorized');
  // The probe is anonymous even on a client that has credentials.
  t.true(tokenAuth.length > 0);
  t.true(tokenAuth.every((a) => a === undefined));
  // And the same client still reads with its credentials.
  await c.getManifest('bearer/app', 'v1');
});
