import anyTest, { type ExecutionContext, type TestFn } from 'ava';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startRegistry, type TestRegistry } from '../src/testing/registry.js';
import { startWorld, type World } from '../src/testing/world.js';
import { buildBundle, json, runCli, type CliResult } from '../src/testing/cli.js';

/**
 * Issue 24 item 17. When --key verifies, push and install print what the signed airgap.json says
 * the bundle is (release, app, build time), so an older release replayed with its valid signature
 * is seen. AIRGAP_REQUIRE_SIGNATURE=KEYFILE (set by the admin) makes every command that reads a
 * bundle refuse one this key does not verify, whatever --key the operator passes or leaves out.
 */

interface Keys { key: string; pub: string }
interface Ctx { world: World; dir: string; customer: TestRegistry; vendor: Keys; other: Keys; signed: string; otherSigned: string; unsigned: string }
const test = anyTest as TestFn<Ctx>;

async function keyPair(dir: string, name: string): Promise<Keys> {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const key = join(dir, `${name}.key`);
  const pub = join(dir, `${name}.pub`);
  await writeFile(key, privateKey.export({ type: 'pkcs8', format: 'pem' }));
  await writeFile(pub, publicKey.export({ type: 'spki', format: 'pem' }));
  return { key, pub };
}

test.before(async (t) => {
  t.context.world = await startWorld();
  const dir = await mkdtemp(join(tmpdir(), 'airgap-requiresig-e2e-'));
  t.context.dir = dir;
  t.context.customer = await startRegistry();
  t.context.vendor = await keyPair(dir, 'vendor');
  t.context.other = await keyPair(dir, 'other');
  t.context.signed = join(dir, 'signed.tar');
  t.context.otherSigned = join(dir, 'other.tar');
  t.context.unsigned = join(dir, 'unsigned.tar');
  await buildBundle(t.context.world, t.context.signed, ['--sign-key', t.context.vendor.key, '--release', '1.4.2']);
  await buildBundle(t.context.world, t.context.otherSigned, ['--sign-key', t.context.other.key, '--release', '9.9']);
  await buildBundle(t.context.world, t.context.unsigned, ['--release', '1.4.2']);
});

test.after.always(async (t) => {
  await t.context.world?.stop();
  await t.context.customer?.stop();
  if (t.context.dir) await rm(t.context.dir, { recursive: true, force: true });
});

/**
 * Every command at once. push and install write into namespaces of their own: two processes
 * pushing the same blobs into the same repositories at the same moment race in docker-registry's
 * filesystem storage (a manifest PUT was once refused with MANIFEST_BLOB_UNKNOWN), which is not
 * what this test is about.
 */
function everyCommand(t: ExecutionContext<Ctx>, bundle: string, ns: string, extra: string[] = []): Promise<CliResult>[] {
  const env = { AIRGAP_REQUIRE_SIGNATURE: t.context.vendor.pub };
  const registry = (to: string) => ['--registry', `${t.context.customer.host}/${to}`];
  return [
    runCli(['inspect', bundle], { env }),
    runCli(['verify', bundle, ...extra], { env }),
    runCli(['push', bundle, ...registry(ns), ...extra], { env }),
    runCli(['rewrite', bundle, ...registry(ns), '--out', join(t.context.dir, `${ns}-rewrite`), '--skip-registry-check', ...extra], { env }),
    runCli(['install', bundle, ...registry(`${ns}-install`), '--out', join(t.context.dir, `${ns}-install`), ...extra], { env }),
  ];
}

async function noTags(t: ExecutionContext<Ctx>, ns: string): Promise<void> {
  const { repositories } = (await (await fetch(`http://${t.context.customer.host}/v2/_catalog?n=1000`)).json()) as { repositories: string[] | null };
  t.deepEqual((repositories ?? []).filter((r) => r.startsWith(`${ns}/`) || r.startsWith(`${ns}-install/`)), [], `nothing pushed into ${ns}`);
}

test('push, install, rewrite and verify with --key print the release the signature vouches for', async (t) => {
  const registry = ['--registry', `${t.context.customer.host}/printed`];
  const push = await runCli(['push', t.context.signed, ...registry, '--key', t.context.vendor.pub]);
  t.is(push.code, 0, push.stderr);
  t.regex(push.stdout, /^signed: {2}release 1\.4\.2 of app [\w-]+, built \d{4}-\d\d-\d\dT/m);
  const j = json<{ signedRelease: { release: string; created: string } }>(
    await runCli(['push', t.context.signed, ...registry, '--key', t.context.vendor.pub, '--json']));
  t.is(j.signedRelease.release, '1.4.2');
  const install = await runCli(['install', t.context.signed, ...registry, '--key', t.context.vendor.pub, '--out', join(t.context.dir, 'printed-install')]);
  t.is(install.code, 0, install.stderr);
  t.regex(install.stdout, /^signed: {2}release 1\.4\.2 of app/m);
  const rewrite = await runCli(['rewrite', t.context.signed, ...registry, '--key', t.context.vendor.pub, '--out', join(t.context.dir, 'printed-rewrite')]);
  t.is(rewrite.code, 0, rewrite.stderr);
  t.regex(rewrite.stdout, /^signed: {2}release 1\.4\.2 of app/m);
  t.is(install.stdout.match(/^signed:/gm)?.length, 1, 'install says it once');
  const verify = await runCli(['verify', t.context.signed, '--key', t.context.vendor.pub]);
  t.regex(verify.stdout, /signed: {4}release 1\.4\.2 of app/);
});

test('AIRGAP_REQUIRE_SIGNATURE: an unsigned bundle is refused by every command, without --key', async (t) => {
  const runs = await Promise.all(everyCommand(t, t.context.unsigned, 'unsigned'));
  for (const r of runs) {
    t.is(r.code, 3, r.stderr);
    t.regex(r.stderr, /is not signed \(it holds no airgap\.json\.sig\)/);
  }
  await noTags(t, 'unsigned');
});

test('AIRGAP_REQUIRE_SIGNATURE: a bundle signed with another key is refused even with that key as --key', async (t) => {
  const runs = await Promise.all(everyCommand(t, t.context.otherSigned, 'othersigned', ['--key', t.context.other.pub]).slice(1));
  for (const r of runs) {
    t.is(r.code, 3, r.stderr);
    t.regex(r.stderr, /does not verify with the key .*vendor\.pub/);
  }
  await noTags(t, 'othersigned');
});

test('AIRGAP_REQUIRE_SIGNATURE: the vendor\'s bundle goes through every command', async (t) => {
  const runs = await Promise.all(everyCommand(t, t.context.signed, 'vendorsigned'));
  for (const r of runs) t.is(r.code, 0, r.stderr);
});
