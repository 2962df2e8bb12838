import anyTest, { type ExecutionContext, type TestFn } from 'ava';
import { execFile, execFileSync } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { seedImage } from '../src/testing/fixtures.js';
import { freePort, startRegistry, type TestRegistry } from '../src/testing/registry.js';
import { startFront, type Front } from '../src/registry/testfront.js';
import { CLI, runCli, type CliResult } from '../src/testing/cli.js';

/**
 * Bad input everywhere else: each gets one `airgap:` line naming the thing and what to do, a
 * non-zero exit (2 for bad input, 1 for registry/network/output), and no stack trace.
 */

interface Ctx { dir: string; reg: TestRegistry; app: string; license: string; bundle: string; image: string; other: string }
const test = anyTest as TestFn<Ctx>;
const LICENSE = join(dirname(dirname(dirname(CLI))), 'testdata', 'license.yaml');
const NODNS = join(dirname(dirname(CLI)), 'src', 'testing', 'nodns.js');

function pod(image: string, name = 'web'): string {
  return `apiVersion: v1\nkind: Pod\nmetadata:\n  name: ${name}\nspec:\n  containers:\n    - name: c\n      image: ${image}\n`;
}

test.before(async (t) => {
  // Each resource goes into the context as soon as it exists, so that after.always stops it
  // even when a later step of this hook throws.
  const dir = await mkdtemp(join(tmpdir(), 'airgap-badinput-e2e-'));
  t.context.dir = dir;
  const reg = await startRegistry();
  t.context.reg = reg;
  const [a, b] = await Promise.all([
    seedImage(reg, { repo: 'shop/web', tag: '1.0', layers: [{ seed: 'web-1', size: 200_000 }] }),
    seedImage(reg, { repo: 'shop/web', tag: '2.0', layers: [{ seed: 'web-2', size: 2048 }] }),
  ]);
  const app = join(dir, 'app');
  await mkdir(app);
  await writeFile(join(app, 'pod.yaml'), pod(a.ref));
  const license = join(dir, 'license.yaml');
  await copyFile(LICENSE, license);
  const bundle = join(dir, 'app.tar');
  const r = await runCli(['build', '--manifests', app, '--license', license, '--out', bundle]);
  if (r.code !== 0) throw new Error(`build failed: ${r.stderr}`);
  Object.assign(t.context, { app, license, bundle, image: a.ref, other: b.digest } satisfies Partial<Ctx>);
});

test.after.always(async (t) => {
  await t.context.reg?.stop();
  if (t.context.dir) await rm(t.context.dir, { recursive: true, force: true });
});

/** One error line, the expected exit status, no stack trace, and the line matches each pattern. */
function fails(t: ExecutionContext<Ctx>, r: CliResult, code: number, ...patterns: RegExp[]): string {
  t.is(r.code, code, r.stderr);
  const lines = r.stderr.trim().split('\n').filter((l) => l.startsWith('airgap:'));
  t.is(lines.length, 1, `one error line: ${r.stderr}`);
  t.notRegex(r.stderr, /\n\s+at |internal error|TypeError|undefined/, 'no stack trace, no internal error');
  for (const p of patterns) t.regex(lines[0] ?? '', p);
  return lines[0] ?? '';
}

async function appWith(t: ExecutionContext<Ctx>, files: Record<string, string>): Promise<string> {
  const d = await mkdtemp(join(t.context.dir, 'app-'));
  for (const [name, text] of Object.entries(files)) await writeFile(join(d, name), text);
  return d;
}

async function build(t: ExecutionContext<Ctx>, app: string, extra: string[] = [], license = t.context.license): Promise<CliResult> {
  const out = join(await mkdtemp(join(t.context.dir, 'out-')), 'b.tar');
  const r = await runCli(['build', '--manifests', app, '--license', license, '--out', out, ...extra], { env: { AIRGAP_RETRY_BASE_MS: '5' } });
  if (r.code !== 0) t.deepEqual(await readdir(dirname(out)), [], 'a failed build leaves nothing');
  return r;
}

test('malformed YAML names the file and line', async (t) => {
  const app = await appWith(t, { 'good.yaml': pod(t.context.image), 'broken.yaml': 'apiVersion: v1\nkind: Pod\nspec:\n  containers: [\n    - name: x\n' });
  fails(t, await build(t, app), 2, /broken\.yaml:\d+/);
});

test('a manifest directory with no images, or no directory at all', async (t) => {
  const app = await appWith(t, { 'cm.yaml': 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n  image: "nginx:1"\n' });
  fails(t, await build(t, app), 2, /no container images found/);
  fails(t, await build(t, join(t.context.dir, 'nowhere')), 2, /nowhere/);
});

test('a license that is not a license, or lacks licenseID or appSlug', async (t) => {
  const cases: [string, RegExp][] = [
    ['apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n', /License/],
    ['apiVersion: kots.io/v1beta1\nkind: License\nspec:\n  appSlug: acme-shop\n', /licenseID/],
    ['apiVersion: kots.io/v1beta1\nkind: License\nspec:\n  licenseID: abc123\n', /appSlug/],
    ['{ not: yaml: at all', /license/i],
    ['', /license/i],
  ];
  for (const [i, [text, pattern]] of cases.entries()) {
    const file = join(t.context.dir, `license-${i}.yaml`);
    await writeFile(file, text);
    fails(t, await build(t, t.context.app, [], file), 2, pattern, new RegExp(`license-${i}\\.yaml`));
  }
  fails(t, await build(t, t.context.app, [], join(t.context.dir, 'no-license.yaml')), 2, /no-license\.yaml/);
});

test('an unreachable registry (build and push) names the host', async (t) => {
  const port = await freePort();
  const app = await appWith(t, { 'pod.yaml': pod(`127.0.0.1:${port}/shop/web:1.0`) });
  fails(t, await build(t, app), 1, new RegExp(`127\\.0\\.0\\.1:${port}`), /cannot connect|ECONNREFUSED/);
  const r = await runCli(['push', t.context.bundle, '--registry', `127.0.0.1:${port}/acme`], { env: { AIRGAP_RETRY_BASE_MS: '5' } });
  fails(t, r, 1, new RegExp(`127\\.0\\.0\\.1:${port}`), /cannot connect|ECONNREFUSED/);
});

test('a DNS failure names the host (resolution is failed locally; no query leaves the machine)', async (t) => {
  const r = await runCli(['push', t.context.bundle, '--registry', 'registry.airgap-test.invalid/acme'],
    { env: { NODE_OPTIONS: `--import=${NODNS}`, AIRGAP_RETRY_BASE_MS: '5' } });
  fails(t, r, 1, /registry\.airgap-test\.invalid/, /ENOTFOUND/);
});

test('wrong credentials: one line, exit 1, and the password is not in it', async (t) => {
  const user = { username: 'deployer', password: 'right-pw-81' };
  const reg = await startRegistry({ users: [user] });
  t.teardown(() => reg.stop());
  const wrong = 'Wr0ng-Pa55-' + Math.random().toString(36).slice(2);
  const r = await runCli(['push', t.context.bundle, '--registry', `${reg.host}/acme`, '--username', 'deployer', '--password-stdin'],
    { input: wrong + '\n' });
  fails(t, r, 1, new RegExp(reg.host), /401|credentials|unauthorized/i);
  t.false((r.stdout + r.stderr).includes(wrong));
});

test('a registry that answers HTML to everything', async (t) => {
  const html = await startFront(undefined, (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end('<!doctype html><html><body>Welcome to the corporate proxy</body></html>');
  });
  t.teardown(() => html.stop());
  const r = await runCli(['push', t.context.bundle, '--registry', `${html.host}/acme`, '--json'], { env: { AIRGAP_RETRY_BASE_MS: '5' } });
  t.not(r.code, 0, r.stdout);
  fails(t, r, r.code ?? -1, new RegExp(html.host), /HTML|not a registry|manifest/i);
  // And a login page for the source registry during build.
  const app = await appWith(t, { 'pod.yaml': pod(`${html.host}/shop/web:1.0`) });
  const rb = await build(t, app);
  t.not(rb.code, 0);
  fails(t, rb, rb.code ?? -1, new RegExp(html.host), /HTML|manifest/i);
});

test('a name collision: one tag pinned to another image\'s digest', async (t) => {
  const name = t.context.image.replace(/:1\.0$/, '');
  const app = await appWith(t, { 'a.yaml': pod(`${name}:1.0`, 'a'), 'b.yaml': pod(`${name}:1.0@${t.context.other}`, 'b') });
  fails(t, await build(t, app), 2, /names two different images/, /a\.yaml|b\.yaml/);
});

test('--registry values that are not HOST/NAMESPACE', async (t) => {
  for (const bad of ['registry.example.com', 'registry.example.com/', '/acme', 'reg istry/acme', 'registry.example.com/ACME', 'registry.example.com/a/../b', 'https://']) {
    const r = await runCli(['push', t.context.bundle, '--registry', bad]);
    fails(t, r, 2, /--registry/);
  }
});

test('an --out that exists (build and rewrite)', async (t) => {
  const r = await runCli(['build', '--manifests', t.context.app, '--license', t.context.license, '--out', t.context.bundle]);
  fails(t, r, 1, /already exists/, new RegExp(t.context.bundle.replace(/[.]/g, '\\.')));
  const out = join(t.context.dir, 'taken');
  await mkdir(out);
  await writeFile(join(out, 'keep.txt'), 'mine');
  const rw = await runCli(['rewrite', t.context.bundle, '--registry', 'registry.example.com/acme', '--out', out]);
  fails(t, rw, rw.code === 2 ? 2 : 1, /taken/);
  t.deepEqual(await readdir(out), ['keep.txt'], 'nothing of the user\'s was touched');
});

test('an --out on a full disk: one line, and no temporary file left', async (t) => {
  const mnt = await mkdtemp(join(t.context.dir, 'full-'));
  let cmd: string[];
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', mnt], { stdio: 'ignore' });
    t.teardown(() => { execFileSync('umount', [mnt], { stdio: 'ignore' }); });
    cmd = [process.execPath, CLI];
  } catch {
    // Not allowed to mount: a file-size limit gives the same kind of write failure (EFBIG).
    t.log('mount not permitted: simulating with ulimit -f');
    cmd = ['bash', '-c', 'trap "" XFSZ; ulimit -f 64; exec "$0" "$@"', process.execPath, CLI];
  }
  const out = join(mnt, 'app.tar');
  const r = await new Promise<CliResult>((resolve) => {
    execFile(cmd[0]!, [...cmd.slice(1), 'build', '--manifests', t.context.app, '--license', t.context.license, '--out', out],
      { env: { ...process.env, CI: '1' } }, (err, stdout, stderr) => {
        resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, signal: null, stdout, stderr });
      });
  });
  fails(t, r, 1, /no space left on device|file too large/, /cannot write bundle/);
  t.deepEqual(await readdir(mnt), [], 'no bundle and no temporary file');
});
