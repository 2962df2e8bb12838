import anyTest, { type ExecutionContext, type TestFn } from 'ava';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { startRegistry, type TestRegistry } from '../src/testing/registry.js';
import { buildBundle, json, runCli, type CliResult } from '../src/testing/cli.js';
import { startWorld, type World } from '../src/testing/world.js';

/**
 * Issue 14, part 2: the vendor signs the bundle (build --sign-key) and the customer checks it
 * with airgap (verify/push/install --key) or with openssl alone. Keys are made with openssl, as
 * docs/signing.md tells a vendor to.
 */
const run = promisify(execFile);
type Creds = { username: string; password: string };
interface Ctx {
  world: World;
  dir: string;
  keys: Record<'ec' | 'ed' | 'other', { key: string; pub: string }>;
  signed: string;
  customer: TestRegistry;
  user: Creds;
}
const test = anyTest as TestFn<Ctx>;

test.before(async (t) => {
  const world = await startWorld();
  t.context.world = world;
  const dir = await mkdtemp(join(tmpdir(), 'airgap-signing-e2e-'));
  t.context.dir = dir;
  const user = { username: 'deployer', password: 'pw-' + Math.random().toString(36).slice(2) };
  t.context.user = user;
  t.context.customer = await startRegistry({ users: [user] });
  const make = async (name: string, algorithm: string[]) => {
    const key = join(dir, `${name}.key`);
    const pub = join(dir, `${name}.pub`);
    await run('openssl', ['genpkey', ...algorithm, '-out', key]);
    await run('openssl', ['pkey', '-in', key, '-pubout', '-out', pub]);
    return { key, pub };
  };
  const p256 = ['-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256'];
  t.context.keys = { ec: await make('vendor', p256), ed: await make('vendor-ed', ['-algorithm', 'ed25519']), other: await make('other', p256) };
  t.context.signed = join(dir, 'signed.tar');
  await buildBundle(world, t.context.signed, ['--sign-key', t.context.keys.ec.key, '--release', '3.1']);
});

test.after.always(async (t) => {
  await t.context.world?.stop();
  await t.context.customer?.stop();
  if (t.context.dir) await rm(t.context.dir, { recursive: true, force: true });
});

const sha256 = (b: Buffer) => 'sha256:' + createHash('sha256').update(b).digest('hex');

/** Byte offset and size of a file's body in a plain tar (ustar headers, PAX skipped), read independently of airgap. */
function tarEntry(tar: Buffer, name: string): { offset: number; size: number } {
  let off = 0;
  while (off + 512 <= tar.length && tar[off] !== 0) {
    const field = (a: number, b: number) => tar.subarray(a + off, b + off).toString('latin1').replace(/\0.*$/s, '');
    const size = parseInt(field(124, 136).trim(), 8);
    if (field(0, 100) === name && field(156, 157) !== 'x') return { offset: off + 512, size };
    off += 512 + Math.ceil(size / 512) * 512;
  }
  throw new Error(`${name} not in the tar`);
}

/** A copy of the bundle with `change` applied to the bytes of one entry (same length, so the tar stays well formed). */
async function tampered(t: ExecutionContext<Ctx>, name: string, entry: string, change: (body: Buffer) => void): Promise<string> {
  const tar = await readFile(t.context.signed);
  const { offset, size } = tarEntry(tar, entry);
  const body = tar.subarray(offset, offset + size);
  const before = Buffer.from(body);
  change(body);
  t.false(before.equals(body), `${entry} was changed`);
  const out = join(t.context.dir, name);
  await writeFile(out, tar);
  return out;
}

async function catalog(reg: TestRegistry, user: Creds): Promise<string[]> {
  const res = await fetch(`http://${reg.host}/v2/_catalog`, { headers: { authorization: 'Basic ' + Buffer.from(`${user.username}:${user.password}`).toString('base64') } });
  return ((await res.json()) as { repositories: string[] }).repositories;
}

/**
 * verify, push and install (and rewrite, which reads the app files and index.json, unless told
 * otherwise) with --key all refuse it with exit 3; nothing reaches a registry or the disk.
 */
async function refusedEverywhere(t: ExecutionContext<Ctx>, bundle: string, key: string, pattern: RegExp, rewriteToo = true): Promise<void> {
  const { user, dir } = t.context;
  const fresh = await startRegistry({ users: [user] });
  t.teardown(() => fresh.stop());
  const creds = ['--username', user.username, '--password', user.password];
  const out = join(dir, `install-${Math.random().toString(36).slice(2)}`);
  const runs: [string, CliResult][] = [
    ['verify', await runCli(['verify', bundle, '--key', key])],
    ['push', await runCli(['push', bundle, '--registry', `${fresh.host}/acme`, ...creds, '--key', key])],
    ['install', await runCli(['install', bundle, '--registry', `${fresh.host}/acme`, ...creds, '--out', out, '--key', key])],
    ...(rewriteToo ? [['rewrite', await runCli(['rewrite', bundle, '--registry', `${fresh.host}/acme`, '--out', out, '--key', key])] as [string, CliResult]] : []),
  ];
  for (const [cmd, r] of runs) {
    t.is(r.code, 3, `${cmd}: ${r.stdout}${r.stderr}`);
    // verify lists the problems it found on stdout; a refusal is one line on stderr.
    const said = r.stderr === '' ? r.stdout : r.stderr;
    t.regex(said, pattern, cmd);
    if (r.stderr !== '') t.is(r.stderr.trim().split('\n').length, 1, `${cmd}: one line`);
  }
  t.deepEqual(await catalog(fresh, user), [], 'nothing pushed');
  t.false(existsSync(out), 'nothing written');
}

test('openssl alone verifies airgap.json.sig; airgap.json pins index.json and every app file', async (t) => {
  const { signed, keys, dir } = t.context;
  const x = await mkdtemp(join(dir, 'extract-'));
  await run('tar', ['-xf', signed, '-C', x, 'airgap.json', 'airgap.json.sig', 'index.json', 'app']);
  const { stdout } = await run('openssl', ['dgst', '-sha256', '-verify', keys.ec.pub, '-signature', join(x, 'airgap.json.sig'), join(x, 'airgap.json')]);
  t.regex(stdout, /Verified OK/);
  const other = await run('openssl', ['dgst', '-sha256', '-verify', keys.other.pub, '-signature', join(x, 'airgap.json.sig'), join(x, 'airgap.json')]).catch((e: { stdout: string }) => e);
  t.regex((other as { stdout: string }).stdout, /Verification failure/);

  const meta = JSON.parse(await readFile(join(x, 'airgap.json'), 'utf8')) as { pins: { index: string; app: Record<string, string> }; appFiles: string[] };
  t.is(meta.pins.index, sha256(await readFile(join(x, 'index.json'))));
  const files = (await readdir(join(x, 'app'), { recursive: true, withFileTypes: true })).filter((e) => e.isFile())
    .map((e) => join(e.parentPath, e.name).slice(join(x, 'app').length + 1)).sort();
  t.deepEqual(Object.keys(meta.pins.app).sort(), files);
  for (const f of files) t.is(meta.pins.app[f], sha256(await readFile(join(x, 'app', f))), f);

  const v = await runCli(['verify', signed, '--key', keys.ec.pub]);
  t.is(v.code, 0, v.stdout + v.stderr);
  t.regex(v.stdout, /signature: airgap\.json\.sig verifies with .*vendor\.pub \(ecdsa-p256\); index\.json and \d+ app file\(s\) match/);
  t.regex((await runCli(['inspect', signed])).stdout, /signed: +airgap\.json\.sig/);
  t.regex((await runCli(['verify', signed])).stdout, /the bundle is signed \(airgap\.json\.sig\): add --key/);
});

/** The shell lines of docs/signing.md's "Verify, with openssl alone", in order. */
async function docRecipe(): Promise<string[]> {
  const doc = await readFile(new URL('../../docs/signing.md', import.meta.url), 'utf8').catch(() => readFile(new URL('../docs/signing.md', import.meta.url), 'utf8'));
  const section = doc.slice(doc.indexOf('### Verify, with openssl alone'));
  return [...section.matchAll(/```sh\n([\s\S]*?)```/g)].flatMap((m) => m[1]!.split('\n'))
    .map((l) => l.replace(/\s+#.*$/, '').trim()).filter((l) => l !== '' && !l.startsWith('#'));
}

test('docs/signing.md\'s openssl-only check, run as written, passes on a signed bundle and fails on a changed one', async (t) => {
  const { signed, keys, dir } = t.context;
  const lines = (await docRecipe()).filter((l) => !l.includes('pkeyutl')); // the ECDSA line, not the Ed25519 one
  t.true(lines.some((l) => l.startsWith('openssl dgst')) && lines.some((l) => l.includes('sha256sum -c')), lines.join('\n'));
  const script = ['set -euo pipefail', ...lines].join('\n').replaceAll('app-1.5.0.tar', 'bundle.tar');
  const runIn = async (bundle: string) => {
    const w = await mkdtemp(join(dir, 'doc-'));
    await copyFile(bundle, join(w, 'bundle.tar'));
    await copyFile(keys.ec.pub, join(w, 'vendor.pub'));
    return run('bash', ['-c', script], { cwd: w }).then(() => 0, (e: { code: number }) => e.code);
  };
  t.is(await runIn(signed), 0);
  t.not(await runIn(await tampered(t, 'doc-app.tar', 'app/web.yaml', (b) => { b.write('replicas: 9', b.indexOf('replicas: 2'), 'latin1'); })), 0);
  t.not(await runIn(await tampered(t, 'doc-index.tar', 'index.json', (b) => { b.write('nginy', b.indexOf('nginx'), 'latin1'); })), 0);
});

test('push and install --key check the signature, then push', async (t) => {
  const { signed, keys, customer, user, dir } = t.context;
  const out = join(dir, 'installed');
  const r = await runCli(['install', signed, '--registry', `${customer.host}/acme`, '--username', user.username, '--password', user.password,
    '--out', out, '--key', keys.ec.pub, '--json']);
  t.is(r.code, 0, r.stderr);
  t.is(json<{ push: { verified: string } }>(r).push.verified, 'ecdsa-p256');
  t.true((await catalog(customer, user)).length > 0);
  t.true(existsSync(join(out, 'rendered')));
});

test('a changed app file is refused by verify, push and install --key, before anything moves', async (t) => {
  const bundle = await tampered(t, 'app-changed.tar', 'app/web.yaml', (b) => { b.write('replicas: 9', b.indexOf('replicas: 2'), 'latin1'); });
  await refusedEverywhere(t, bundle, t.context.keys.ec.pub, /app\/web\.yaml does not match the digest the signed airgap\.json pins/);
  // Without a key, verify still sees it does not match airgap.json.
  const v = await runCli(['verify', bundle]);
  t.is(v.code, 3);
  t.regex(v.stdout, /app\/web\.yaml hashes to sha256:[a-f0-9]{64}, but airgap\.json pins/);
});

test('a changed index.json is refused', async (t) => {
  const bundle = await tampered(t, 'index-changed.tar', 'index.json', (b) => {
    // Every mention, so the entry stays well formed (both of its name annotations agree) and only the pin can tell.
    for (let i = b.indexOf('nginx'); i >= 0; i = b.indexOf('nginx', i + 1)) b.write('nginy', i, 'latin1');
  });
  await refusedEverywhere(t, bundle, t.context.keys.ec.pub, /index\.json does not match the digest the signed airgap\.json pins/);
});

test('a changed layer is refused (index.json pins the manifests, the manifests the blobs)', async (t) => {
  const tar = await readFile(t.context.signed);
  const index = JSON.parse(tar.subarray(tarEntry(tar, 'index.json').offset, tarEntry(tar, 'index.json').offset + tarEntry(tar, 'index.json').size).toString()) as { manifests: { digest: string }[] };
  const m = tarEntry(tar, `blobs/sha256/${index.manifests[0]!.digest.slice(7)}`);
  const manifest = JSON.parse(tar.subarray(m.offset, m.offset + m.size).toString()) as { layers?: { digest: string }[]; manifests?: { digest: string }[] };
  const layer = manifest.layers?.[0]?.digest;
  t.truthy(layer, 'the first image is a single manifest');
  const bundle = await tampered(t, 'layer-changed.tar', `blobs/sha256/${layer!.slice(7)}`, (b) => { b[b.length >> 1] ^= 0xff; });
  // rewrite reads no layer: its --key check (signature and pins) rightly passes.
  await refusedEverywhere(t, bundle, t.context.keys.ec.pub, new RegExp(`${layer}`), false);
});

test('a changed airgap.json, a missing signature and another key are refused', async (t) => {
  const { keys, signed, dir } = t.context;
  const meta = await tampered(t, 'meta-changed.tar', 'airgap.json', (b) => { const i = b.indexOf('3.1'); b.write('3.2', i, 'latin1'); });
  await refusedEverywhere(t, meta, keys.ec.pub, /airgap\.json\.sig does not verify with the key .*: airgap\.json was changed after signing, or the bundle was signed with another key/);
  await refusedEverywhere(t, signed, keys.other.pub, /does not verify with the key .*other\.pub/);
  const unsigned = join(dir, 'unsigned.tar');
  await buildBundle(t.context.world, unsigned);
  await refusedEverywhere(t, unsigned, keys.ec.pub, /is not signed \(it holds no airgap\.json\.sig\)/);
  // The signature file swapped for that of another bundle (same key) does not verify either.
  const tar = await readFile(signed);
  const sigAt = tarEntry(tar, 'airgap.json.sig');
  t.true(sigAt.size >= 64 && sigAt.size <= 72, `a DER ECDSA P-256 signature: ${sigAt.size} bytes`);
});

test('Ed25519: openssl pkeyutl verifies it, and so does airgap verify --key', async (t) => {
  const { world, keys, dir } = t.context;
  const bundle = join(dir, 'ed.tar');
  await buildBundle(world, bundle, ['--sign-key', keys.ed.key]);
  const x = await mkdtemp(join(dir, 'ed-'));
  await run('tar', ['-xf', bundle, '-C', x, 'airgap.json', 'airgap.json.sig']);
  const { stdout } = await run('openssl', ['pkeyutl', '-verify', '-pubin', '-inkey', keys.ed.pub, '-rawin', '-in', join(x, 'airgap.json'), '-sigfile', join(x, 'airgap.json.sig')]);
  t.regex(stdout, /Signature Verified Successfully/);
  const v = await runCli(['verify', bundle, '--key', keys.ed.pub]);
  t.is(v.code, 0, v.stdout + v.stderr);
  t.regex(v.stdout, /\(ed25519\)/);
  const wrong = await runCli(['verify', bundle, '--key', keys.ec.pub]);
  t.is(wrong.code, 3);
});

test('a signed split bundle and a signed delta verify through the chain; a damaged part is refused', async (t) => {
  const { world, keys, dir, signed } = t.context;
  await mkdir(join(dir, 'media'));
  const out = join(dir, 'media', 'app.tar');
  const b = await runCli(['build', '--manifests', world.appDir, '--license', world.licensePath, '--out', out, '--split-size', '300KB',
    '--sign-key', keys.ec.key, '--proxy-host', world.proxy, '--replicated-registry', world.vendor, '--json']);
  t.is(b.code, 0, b.stderr);
  const parts = json<{ parts: { name: string }[] }>(b).parts;
  t.true(parts.length >= 2);
  t.is((await runCli(['verify', out, '--key', keys.ec.pub])).code, 0);
  const victim = join(dir, 'media', parts[0]!.name);
  await copyFile(victim, victim + '.orig');
  const bytes = await readFile(victim);
  bytes[bytes.length - 700] ^= 0xff;
  await writeFile(victim, bytes);
  const bad = await runCli(['verify', out, '--key', keys.ec.pub]);
  t.is(bad.code, 3, bad.stdout + bad.stderr);
  await copyFile(victim + '.orig', victim);

  const delta = join(dir, 'delta.tar');
  const d = await runCli(['build', '--manifests', world.appDir, '--license', world.licensePath, '--out', delta, '--since', signed,
    '--sign-key', keys.ec.key, '--proxy-host', world.proxy, '--replicated-registry', world.vendor, '--json']);
  t.is(d.code, 0, d.stderr);
  const x = await mkdtemp(join(dir, 'delta-'));
  await run('tar', ['-xf', delta, '-C', x, 'airgap.json']);
  const base = (JSON.parse(await readFile(join(x, 'airgap.json'), 'utf8')) as { base: { id: string } }).base.id;
  t.is(base, json<{ id: string }>(await runCli(['inspect', signed, '--json'])).id, 'the signed airgap.json names the base');
  t.is((await runCli(['verify', delta, '--key', keys.ec.pub])).code, 0);
});

// Serial: it counts the proxy's requests, which the other tests' builds would add to.
test.serial('a key that cannot sign is refused before anything is downloaded', async (t) => {
  const { world, dir } = t.context;
  const rsa = join(dir, 'rsa.key');
  await run('openssl', ['genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048', '-out', rsa]);
  const enc = join(dir, 'enc.key');
  await run('openssl', ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-aes256', '-pass', 'pass:secret', '-out', enc]);
  for (const [key, pattern] of [[rsa, /is an rsa key; airgap signs with ECDSA P-256 or Ed25519 keys/], [enc, /is encrypted with a passphrase/],
    [join(dir, 'absent.key'), /cannot read it/]] as const) {
    const before = world.servers.proxy.requests.length;
    const out = join(dir, `never-${Math.random().toString(36).slice(2)}.tar`);
    const r = await runCli(['build', '--manifests', world.appDir, '--license', world.licensePath, '--out', out, '--sign-key', key,
      '--proxy-host', world.proxy, '--replicated-registry', world.vendor]);
    t.is(r.code, 2, r.stderr);
    t.regex(r.stderr, pattern);
    t.false(existsSync(out));
    t.is(world.servers.proxy.requests.length, before, 'nothing asked of the proxy');
  }
});
