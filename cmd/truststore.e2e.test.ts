import anyTest, { type TestFn } from 'ava';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { seedImage } from '../src/testing/fixtures.js';
import { type TestRegistry, startRegistry } from '../src/testing/registry.js';
import { runCli } from '../src/testing/cli.js';

/**
 * Issue 24, item 3: a registry signed by a CA the admin installed in the operating system's
 * store the Debian way (update-ca-certificates) is trusted as skopeo, podman and docker trust it,
 * without --ca-file; --debug says which store verified it. Needs root (it changes the system
 * store for a moment, and puts it back); skipped otherwise.
 */

interface Ctx {
  dir: string;
  registry: TestRegistry;
  app: string;
}
const test = anyTest.serial as TestFn<Ctx>;
const run = promisify(execFile);
const UPDATE = '/usr/sbin/update-ca-certificates';
const LOCAL_CAS = '/usr/local/share/ca-certificates';
const SYSTEM_BUNDLE = '/etc/ssl/certs/ca-certificates.crt';
const canInstall = process.getuid?.() === 0 && existsSync(UPDATE);
const installed = join(LOCAL_CAS, `airgap-e2e-${randomBytes(4).toString('hex')}.crt`);
const ENV = { AIRGAP_RETRY_BASE_MS: '5', SSL_CERT_FILE: '', SSL_CERT_DIR: '', NODE_EXTRA_CA_CERTS: '' };

test.before(async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'airgap-truststore-e2e-'));
  t.context.dir = dir;
  t.context.registry = await startRegistry({ tls: true });
  const img = await seedImage(t.context.registry, { repo: 'corp/app', tag: '1', layers: [{ seed: 'corp-ca', size: 2048 }] });
  t.context.app = join(dir, 'app');
  await mkdir(t.context.app);
  await writeFile(join(t.context.app, 'deploy.yaml'),
    `apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: app\nspec:\n  template:\n    spec:\n      containers:\n        - name: app\n          image: ${img.ref}\n`);
});

test.after.always(async (t) => {
  // The system store as it was: the test CA removed, the bundle rebuilt without it.
  if (canInstall && existsSync(installed)) {
    await rm(installed, { force: true });
    await run(UPDATE, [], { timeout: 120_000 }).catch(() => undefined);
  }
  await t.context.registry?.stop();
  if (t.context.dir) await rm(t.context.dir, { recursive: true, force: true });
});

(canInstall ? test : test.skip)('a CA installed with update-ca-certificates is trusted without --ca-file; --debug names the OS store', async (t) => {
  const plan = () => runCli(['plan', '--manifests', t.context.app, '--debug'], { env: ENV });
  const before = await plan();
  t.is(before.code, 1, before.stderr);
  t.regex(before.stderr, /certificate/i);

  await mkdir(LOCAL_CAS, { recursive: true });
  await copyFile(t.context.registry.caFile!, installed);
  try {
    await run(UPDATE, [], { timeout: 120_000 });
    const after = await plan();
    t.is(after.code, 0, after.stderr);
    t.regex(after.stderr, new RegExp(`certificates checked against Node's bundled CAs \\+ the OS store \\(${SYSTEM_BUNDLE.replace(/[./]/g, '\\$&')}\\)`));
    t.regex(after.stderr, new RegExp(`debug: ${t.context.registry.host.replace(/\./g, '\\.')}: TLS of [^ ]+: verified by "airgap test CA" from the OS store \\(${SYSTEM_BUNDLE.replace(/[./]/g, '\\$&')}\\)`));
  } finally {
    await rm(installed, { force: true });
    await run(UPDATE, [], { timeout: 120_000 });
  }
  // Removed again: refused again, as skopeo would refuse it.
  const removed = await plan();
  t.is(removed.code, 1, removed.stderr);
});
