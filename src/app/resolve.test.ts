import test from 'ava';
import { resolveImages, type RegistryProbe } from './resolve.js';
import { parseReference } from '../reference.js';

/** Records what would be probed; the network side is covered end to end (cmd/cases.e2e.test.ts). */
function recordingProbe(): RegistryProbe & { probed: string[] } {
  const probed: string[] = [];
  return {
    probed,
    probe: async (registry, repository) => {
      probed.push(`${registry}/${repository}`);
      return 'unauthorized';
    },
    tagFor: async () => undefined,
  };
}

const OPTS = { proxyHost: 'proxy.example.com', replicatedRegistry: 'registry.example.com', appSlug: 'my-app',
  license: { licenseId: 'LIC', appSlug: 'my-app' } };

test('an already-proxied reference is pulled as written with the license, never probed or proxied again', async (t) => {
  const probe = recordingProbe();
  const found = ['proxy.example.com/proxy/my-app/quay.io/org/api:1', 'quay.io/org/worker:1'].map((r, i) => ({ ref: parseReference(r), file: 'a.yaml', line: i + 1 }));
  const [proxied, worker] = await resolveImages(found, probe, OPTS);
  t.is(proxied!.kind, 'private');
  t.deepEqual(proxied!.source, { registry: 'proxy.example.com', repository: 'proxy/my-app/quay.io/org/api', credentials: { username: 'LIC', password: 'LIC' } });
  t.deepEqual(worker!.source, { registry: 'proxy.example.com', repository: 'proxy/my-app/quay.io/org/worker', credentials: { username: 'LIC', password: 'LIC' } });
  t.deepEqual(probe.probed, ['quay.io/org/worker']);
});

test('a path on the proxy host outside /proxy/ is probed like any other image', async (t) => {
  const probe = recordingProbe();
  await resolveImages([{ ref: parseReference('proxy.example.com/other/thing:1'), file: 'a.yaml', line: 1 }], probe, OPTS);
  t.deepEqual(probe.probed, ['proxy.example.com/other/thing']);
});
