import test from 'ava';
import { seedImage } from '../testing/fixtures.js';
import { startLink } from '../testing/link.js';
import { startRegistry } from '../testing/registry.js';
import { createRegistryAccess } from './access.js';

// Every request after the first rides the same connection, HEADs included: undici closes a
// connection after a HEAD unless told not to, which would cost a TCP (and TLS) handshake per
// probe, tag check and blob check. Connections are counted by a forwarding front (the bench's
// link emulator, with no delay) in front of a real docker-registry.

test('sequential HEADs and GETs to a registry share one connection', async (t) => {
  const registry = await startRegistry();
  t.teardown(() => registry.stop());
  const image = await seedImage(registry, { repo: 'keep/alive', tag: '1.0', layers: [{ seed: 'keepalive', size: 2000 }] });
  const link = await startLink({ upstream: registry.host, delayMs: 0, bytesPerSecond: 1e9 });
  t.teardown(() => link.stop());
  const access = createRegistryAccess({ credentialOptions: { configDir: '/nonexistent-airgap' } });
  t.teardown(() => access.close());
  const store = access.open({ registry: link.host, repository: 'keep/alive' });
  // First contact: the scheme (a TLS attempt first, then plain HTTP on loopback) and the challenge.
  t.is((await store.peek('1.0'))?.digest, image.digest);
  const before = link.stats();
  for (let i = 0; i < 5; i++) {
    t.is((await store.peek('1.0'))?.digest, image.digest); // HEAD, 200
    t.is(await store.peek(`missing-${i}`), undefined); // HEAD, 404
  }
  t.is((await store.resolve('1.0')).descriptor.digest, image.digest); // GET
  const after = link.stats();
  t.is(after.requests - before.requests, 11);
  t.is(after.connections - before.connections, 0, 'no new connection after the first contact');
});
