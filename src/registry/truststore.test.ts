import test from 'ava';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { isAirgapError } from '../errors.js';
import { seedImage } from '../testing/fixtures.js';
import { type TestRegistry, startRegistry } from '../testing/registry.js';
import { RegistryClient } from './client.js';
import { describeHostPolicy, RegistryPolicy } from './policy.js';
import { Transport } from './transport.js';
import { OS_BUNDLE_FILES, osTrustStore, splitPem } from './truststore.js';

// Issue 24, item 3: the operating system's trust store counts, as it does for skopeo, podman and
// docker. Without root, SSL_CERT_FILE (which Go's tools read too) stands in for the system bundle;
// cmd/truststore.e2e.test.ts installs a CA the Debian way.

const FAST = { attempts: 1, baseDelayMs: 5, maxDelayMs: 10, maxElapsedMs: 5_000, retryAfterCapMs: 50 };
let tls: TestRegistry;
const transports: Transport[] = [];

test.before(async () => {
  tls = await startRegistry({ tls: true });
  await seedImage(tls, { repo: 'os/app', tag: '1', layers: [{ seed: 'os-store', size: 1000 }] });
});

test.after.always(async () => {
  await Promise.all(transports.map((x) => x.close()));
  await tls?.stop();
});

function client(env: NodeJS.ProcessEnv, lines: string[] = []): RegistryClient {
  const transport = new Transport({ retry: FAST, env, onVerified: (l) => lines.push(l) });
  const c = new RegistryClient({ host: tls.host, transport, anonymous: true });
  transports.push(transport);
  return c;
}

test('a registry signed by a CA in the OS store is trusted without --ca-file; --debug says which store verified it', async (t) => {
  // A system bundle as update-ca-certificates writes it: the distribution's roots, then the added CA.
  const bundle = join(tls.dir, 'os-bundle.crt');
  const system = OS_BUNDLE_FILES.map((f) => readFile(f, 'utf8').catch(() => ''));
  await writeFile(bundle, (await Promise.all(system)).join('\n') + '\n' + await readFile(tls.caFile!, 'utf8'));
  const lines: string[] = [];
  const trusted = client({ SSL_CERT_FILE: bundle }, lines);
  t.is(await trusted.probe('os/app', '1'), 'readable');
  t.is(lines.length, 1, lines.join('\n'));
  t.regex(lines[0]!, new RegExp(`^${tls.host.replace(/\./g, '\\.')}: TLS of ${tls.host.replace(/\./g, '\\.')}: verified by "airgap test CA" from the OS store \\(${bundle.replace(/[./]/g, '\\$&')}\\)$`));
  const policy = new RegistryPolicy({ env: { SSL_CERT_FILE: bundle } });
  t.regex(describeHostPolicy(policy.host('registry.corp')), new RegExp(`certificates checked against Node's bundled CAs \\+ the OS store \\(${bundle.replace(/[./]/g, '\\$&')}\\)`));
});

test('without the CA in any store the certificate is refused (E_TLS), never a fall-back', async (t) => {
  const err = await t.throwsAsync(client({ SSL_CERT_FILE: '/nonexistent-airgap-bundle' }).probe('os/app', '1'));
  t.true(isAirgapError(err, 'E_TLS'), String(err));
});

test('SSL_CERT_DIR adds every certificate file of its directories; the PEM splitter keeps each certificate', async (t) => {
  const pem = await readFile(tls.caFile!, 'utf8');
  t.is(splitPem(`junk\n${pem}\n${pem}`).length, 2);
  const store = osTrustStore({ SSL_CERT_FILE: '/nonexistent-airgap-bundle', SSL_CERT_DIR: `/nonexistent-airgap-dir:${tls.dir}` });
  t.deepEqual(store.from, [tls.dir]);
  t.true(store.pems.includes(splitPem(pem)[0]!));
});
