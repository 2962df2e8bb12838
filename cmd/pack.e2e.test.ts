import anyTest, { type TestFn } from 'ava';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { startWorld, type World } from '../src/testing/world.js';
import { buildBundle } from '../src/testing/cli.js';

/**
 * The tool carried to an offline host (issue 25, item 2): `npm pack` gives a tarball holding only
 * what runs, and `npm install -g ./airgap-*.tgz --offline` installs it into a fresh prefix with no
 * network at all (a network namespace of its own, an empty cache, an unreachable registry), after
 * which the installed `airgap` runs: --version and verify of a real bundle.
 */

interface Ctx { world: World; dir: string; bundle: string }
const test = anyTest as TestFn<Ctx>;
const run = promisify(execFile);
const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');

test.before(async (t) => {
  t.context.dir = await mkdtemp(join(tmpdir(), 'airgap-pack-e2e-'));
  t.context.world = await startWorld();
  t.context.bundle = join(t.context.dir, 'app.tar');
  await buildBundle(t.context.world, t.context.bundle);
});

test.after.always(async (t) => {
  await t.context.world?.stop();
  if (t.context.dir) await rm(t.context.dir, { recursive: true, force: true });
});

/** Runs a command with no network: a network namespace of its own (loopback only, and down). */
function offline(cmd: string, args: string[], env: Record<string, string>) {
  return run('unshare', ['-rn', cmd, ...args], { env, maxBuffer: 16 << 20 }).catch((e: { code?: number; stdout?: string; stderr?: string }) => {
    throw new Error(`${cmd} ${args.join(' ')} failed (exit ${e.code}):\n${e.stdout ?? ''}\n${e.stderr ?? ''}`);
  });
}

test('npm pack holds only what runs, and installs with --offline into a fresh prefix with no network', async (t) => {
  const { dir, bundle } = t.context;
  // The built CLI as it is (npm test builds it): prepack would rebuild dist under the other tests' feet.
  const { stdout } = await run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', dir], { cwd: ROOT, maxBuffer: 16 << 20 });
  const [packed] = JSON.parse(stdout) as { filename: string; files: { path: string }[] }[];
  const files = packed!.files.map((f) => f.path).sort();
  t.deepEqual(files, ['README.md', 'dist/cmd/airgap.js', 'dist/cmd/airgap.js.LEGAL.txt', 'dist/cmd/package.json', 'package.json']);
  const manifest = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as { version: string; dependencies?: Record<string, string> };
  t.deepEqual(manifest.dependencies ?? {}, {}, 'nothing left to fetch: the dependencies are bundled into dist/cmd/airgap.js');

  const prefix = join(dir, 'prefix');
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '', HOME: join(dir, 'home'),
    npm_config_cache: join(dir, 'empty-cache'), npm_config_registry: 'http://127.0.0.1:9/', npm_config_update_notifier: 'false',
  };
  await offline('npm', ['install', '-g', '--offline', '--no-audit', '--no-fund', '--prefix', prefix, join(dir, packed!.filename)], env);

  const airgap = join(prefix, 'bin', 'airgap');
  const version = await offline(airgap, ['--version'], env);
  t.is(version.stdout.trim(), manifest.version);
  const verify = await offline(airgap, ['verify', bundle], env);
  t.regex(verify.stdout, /^ok: \d+ blobs, .* verified, \d+ image\(s\) complete/);
});
