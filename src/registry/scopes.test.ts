import test from 'ava';
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { isAirgapError } from '../errors.js';
import { sha256Digest } from '../oci/verify.js';
import { seedImage } from '../testing/fixtures.js';
import { type TestRegistry, startRegistry } from '../testing/registry.js';
import { type TokenFront, startTokenFront } from '../testing/tokenfront.js';
import { RegistryClient } from './client.js';

/**
 * Tokens are asked per request, for that request's scopes: against a token service that refuses
 * any request naming a scope the user may not have, a denied repository fails only the requests
 * that need it.
 */

const FAST = { attempts: 2, baseDelayMs: 10, maxDelayMs: 50, maxElapsedMs: 5_000, retryAfterCapMs: 100 };
const ALICE = { username: 'alice', password: 'alice-pw' };
let backend: TestRegistry;
let strict: TokenFront;

test.before(async () => {
  backend = await startRegistry();
  await seedImage(backend, { repo: 'team/app', tag: 'v1', layers: [{ seed: 'team-app', size: 2000 }] });
  await seedImage(backend, { repo: 'other/base', tag: 'v1', layers: [{ seed: 'other-base', size: 2000 }] });
  strict = await startTokenFront({
    backend: backend.host, service: 'strict', users: { alice: ALICE.password }, strictScopes: true,
    allow: (user, repo) => user === 'alice' && repo.startsWith('team/'),
  });
});

test.after.always(async () => {
  await strict?.stop();
  await backend?.stop();
});

function client(): RegistryClient {
  return new RegistryClient({ host: strict.host, retry: FAST, credentials: ALICE });
}

test.serial('a refused scope fails its own request only: later requests on the host ask for their own scopes', async (t) => {
  const c = client();
  t.teardown(() => c.close());
  strict.tokens.length = 0;
  // The first contact is the denied repository: its challenge names other/base.
  const e = await t.throwsAsync(c.getManifest('other/base', 'v1'));
  t.true(isAirgapError(e, 'E_AUTH'));
  t.regex(e!.message, /refused the given credentials for repository:other\/base:pull \(HTTP 403\)/);
  await c.getManifest('team/app', 'v1');
  await c.headManifest('team/app', 'v1', { access: 'push' });
  t.deepEqual(strict.tokens.map((x) => [x.scopes.join(' '), x.status]), [
    ['repository:other/base:pull', 403],
    ['repository:team/app:pull', 200],
    ['repository:team/app:pull,push', 200],
  ]);
});

test.serial('a mount from a repository the user may not read falls back to an upload; the push goes on', async (t) => {
  const c = client();
  t.teardown(() => c.close());
  strict.tokens.length = 0;
  const bytes = randomBytes(3000);
  const desc = { mediaType: 'application/octet-stream', digest: sha256Digest(bytes), size: bytes.length };
  t.is(await c.pushBlob('team/new', desc, async () => Readable.from([bytes]), { mountFrom: ['other/base'] }), 'uploaded');
  // The mount asked for exactly its two scopes, was refused, and nothing after it carried other/base.
  const mount = strict.tokens.find((x) => x.scopes.length === 2);
  t.deepEqual(mount?.scopes, ['repository:other/base:pull', 'repository:team/new:pull,push']);
  t.is(mount?.status, 403);
  t.true(strict.tokens.filter((x) => x !== mount).every((x) => x.status === 200 && x.scopes.join() === 'repository:team/new:pull,push'));
  const back = new RegistryClient({ host: backend.host, retry: FAST });
  t.teardown(() => back.close());
  t.is((await back.headBlob('team/new', desc.digest))?.size, bytes.length);
});
