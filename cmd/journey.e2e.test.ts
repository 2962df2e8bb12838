import anyTest, { type ExecutionContext, type TestFn } from 'ava';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createServer } from 'node:net';
import { existsSync, readdirSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { type World } from '../src/testing/world.js';
import type { TestRegistry } from '../src/testing/registry.js';
import { startStage, stopStage } from '../src/testing/stage.js';
import { buildBundle, json, resolveFlags, runCli, type CliResult } from '../src/testing/cli.js';
import { lastComponent, parseReference } from '../src/reference.js';

/**
 * The user's journey (issue 12): every check before anything moves (the registry holds no tag
 * after each refused run), dry runs, an offline plan, --keep-path, the platform rule, help and
 * messages a person can act on, one way of counting bytes.
 */

const run = promisify(execFile);
interface Ctx { world: World; dir: string; bundle: string; buildBytes: number; customer: TestRegistry; user: { username: string; password: string } }
const test = anyTest as TestFn<Ctx>;

test.before(async (t) => {
  await startStage(t.context, 'journey');
  const bundle = join(t.context.dir, 'app.tar');
  const b = await buildBundle(t.context.world, bundle, ['--json']);
  t.context.bundle = bundle;
  t.context.buildBytes = (JSON.parse(b.stdout) as { bytes: number }).bytes;
});

test.after.always((t) => stopStage(t.context));

function auth(u: { username: string; password: string }): Record<string, string> {
  return { authorization: 'Basic ' + Buffer.from(`${u.username}:${u.password}`).toString('base64') };
}

/** Every tag under `namespace/` in the customer registry, read over the registry API. */
async function tagsUnder(t: ExecutionContext<Ctx>, namespace: string): Promise<string[]> {
  const { customer, user } = t.context;
  const cat = (await (await fetch(`http://${customer.host}/v2/_catalog?n=1000`, { headers: auth(user) })).json()) as { repositories: string[] };
  const out: string[] = [];
  for (const repo of cat.repositories.filter((r) => r.startsWith(`${namespace}/`))) {
    const res = await fetch(`http://${customer.host}/v2/${repo}/tags/list`, { headers: auth(user) });
    if (res.status !== 200) continue;
    for (const tag of ((await res.json()) as { tags: string[] | null }).tags ?? []) out.push(`${repo}:${tag}`);
  }
  return out;
}

function oneLine(t: ExecutionContext<Ctx>, r: CliResult, code: number, ...patterns: RegExp[]): string {
  t.is(r.code, code, r.stderr);
  const lines = r.stderr.trim().split('\n').filter((l) => l.startsWith('airgap:'));
  t.is(lines.length, 1, `one error line: ${r.stderr}`);
  t.notRegex(r.stderr, /\n\s+at |internal error/);
  for (const p of patterns) t.regex(lines[0] ?? '', p);
  return lines[0] ?? '';
}

function target(t: ExecutionContext<Ctx>, ns: string): string[] {
  const { customer, user } = t.context;
  return ['--registry', `${customer.host}/${ns}`, '--username', user.username, '--password-stdin'];
}
const pw = (t: ExecutionContext<Ctx>) => ({ input: t.context.user.password + '\n' });

async function rawDigest(ref: string, u: { username: string; password: string }): Promise<string> {
  const { stdout } = await run('skopeo', ['inspect', '--raw', '--tls-verify=false', '--creds', `${u.username}:${u.password}`, `docker://${ref}`],
    { encoding: 'buffer', maxBuffer: 1 << 24 });
  return 'sha256:' + createHash('sha256').update(stdout).digest('hex');
}

// 1. Checks before anything moves.

test('install with a non-empty --out is refused before anything is pushed', async (t) => {
  const out = join(t.context.dir, 'taken');
  await mkdir(out);
  await writeFile(join(out, 'mine.txt'), 'keep me');
  const r = await runCli(['install', t.context.bundle, ...target(t, 'taken'), '--out', out], pw(t));
  oneLine(t, r, 1, /taken/, /not empty/);
  t.deepEqual(await tagsUnder(t, 'taken'), [], 'no tag in the registry');
  t.deepEqual(await readdir(out), ['mine.txt']);
  const file = join(t.context.dir, 'a-file');
  await writeFile(file, 'x');
  oneLine(t, await runCli(['install', t.context.bundle, ...target(t, 'taken'), '--out', file], pw(t)), 1, /is a file, not a directory/);
  t.deepEqual(await tagsUnder(t, 'taken'), []);
});

test('install of a bundle whose manifests are unusable is refused before anything is pushed', async (t) => {
  // An invalid namespace only shows when the pull secret is written: the rewrite half is checked first.
  const out = join(t.context.dir, 'badns');
  const r = await runCli(['install', t.context.bundle, ...target(t, 'badns'), '--out', out, '--namespace', 'Not_A_Namespace'], pw(t));
  oneLine(t, r, 2, /Not_A_Namespace/);
  t.deepEqual(await tagsUnder(t, 'badns'), []);
  t.false(existsSync(out));
});

// 2. --password-stdin with nothing on standard input.

test('--password-stdin with nothing on standard input is refused at once by push, rewrite and install', async (t) => {
  for (const cmd of ['push', 'rewrite', 'install']) {
    const out = join(t.context.dir, `nopw-${cmd}`);
    const r = await runCli([cmd, t.context.bundle, ...target(t, 'nopw'), ...(cmd === 'push' ? [] : ['--out', out])], { input: '' });
    oneLine(t, r, 2, /--password-stdin/, /nothing on standard input/);
    t.false(existsSync(out), `${cmd}: nothing written`);
  }
  t.deepEqual(await tagsUnder(t, 'nopw'), []);
});

test('push without credentials to a registry that wants them is refused before any upload', async (t) => {
  const { customer } = t.context;
  const r = await runCli(['push', t.context.bundle, '--registry', `${customer.host}/nocreds`], { env: { DOCKER_CONFIG: t.context.dir, REGISTRY_AUTH_FILE: join(t.context.dir, 'none.json') } });
  oneLine(t, r, 1, /401|unauthori[sz]ed|credentials/i);
  t.false(/pushing \d+ image/.test(r.stderr), 'the copy never started');
  t.deepEqual(await tagsUnder(t, 'nocreds'), []);
});

// 3. A requested platform an image lacks.

test('--platform an image lacks is an error naming the image and the platform, single-platform images included', async (t) => {
  const { world } = t.context;
  const single = world.images.filter((i) => i.children.length === 0);
  t.true(single.length > 0);
  const out = join(await mkdtemp(join(t.context.dir, 'plat-')), 'b.tar');
  const r = await runCli(['build', '--manifests', world.appDir, '--license', world.licensePath, '--out', out, '--platform', 'linux/s390x', ...resolveFlags(world)]);
  const line = oneLine(t, r, 1, /linux\/s390x/);
  t.true(world.images.some((i) => line.includes(`${i.name}:${i.tag}`)), `names an image: ${line}`);
  t.false(existsSync(out), 'no bundle');

  // Only single-platform images: the rule cannot come from an index.
  const app = await mkdtemp(join(t.context.dir, 'single-'));
  await writeFile(join(app, 'pod.yaml'), `apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  containers:\n    - name: c\n      image: ${single.find((i) => i.kind === 'public')!.name}:${single.find((i) => i.kind === 'public')!.tag}\n`);
  const r2 = await runCli(['build', '--manifests', app, '--license', world.licensePath, '--out', out, '--platform', 'linux/arm64', ...resolveFlags(world)]);
  oneLine(t, r2, 1, /has no linux\/arm64\/v8 image|has no linux\/arm64 image/, /single-platform linux\/amd64/);
  t.false(existsSync(out));
  const ok = await runCli(['build', '--manifests', app, '--license', world.licensePath, '--out', out, '--platform', 'linux/amd64', '--json', ...resolveFlags(world)]);
  t.is(ok.code, 0, ok.stderr);
  t.deepEqual(json<{ images: { platforms: string[] }[] }>(ok).images.map((i) => i.platforms), [['linux/amd64']]);
});

// 4. Dry runs, and 10. one way of counting.

test('push --dry-run moves nothing; counts agree with build; a re-push says already there', async (t) => {
  const { bundle, buildBytes } = t.context;
  const dry = await runCli(['push', bundle, ...target(t, 'dry'), '--dry-run', '--json'], pw(t));
  t.is(dry.code, 0, dry.stderr);
  const d = json<{ dryRun: boolean; images: { status: string }[]; bytes: number; bytesUploaded: number; bytesMounted: number; bytesExisting: number }>(dry);
  t.true(d.dryRun);
  t.true(d.images.length > 0 && d.images.every((i) => i.status === 'would push'));
  t.is(d.bytes, buildBytes, 'the same bytes as build reported');
  t.is(d.bytesUploaded + d.bytesMounted + d.bytesExisting, d.bytes);
  t.deepEqual(await tagsUnder(t, 'dry'), [], 'a dry run writes no tag');

  const real = await runCli(['push', bundle, ...target(t, 'dry'), '--json'], pw(t));
  t.is(real.code, 0, real.stderr);
  const p = json<{ images: { status: string }[]; bytes: number; bytesUploaded: number; bytesMounted: number; bytesExisting: number }>(real);
  t.is(p.bytes, buildBytes);
  t.is(p.bytesUploaded + p.bytesMounted + p.bytesExisting, p.bytes, 'every byte counted once');
  t.is(p.bytesUploaded, d.bytesUploaded, 'the dry run predicted the upload');
  t.is(p.bytesMounted, d.bytesMounted, 'and the mounts');
  t.true(p.images.every((i) => i.status === 'pushed'));
  t.is((await tagsUnder(t, 'dry')).length, d.images.length);

  const again = await runCli(['push', bundle, ...target(t, 'dry')], pw(t));
  t.is(again.code, 0, again.stderr);
  t.notRegex(again.stdout, /^pushed/m, again.stdout);
  t.regex(again.stdout, /already there/);
  t.regex(again.stdout, /0 B uploaded/);
  const dry2 = json<{ images: { status: string }[]; bytesUploaded: number }>(await runCli(['push', bundle, ...target(t, 'dry'), '--dry-run', '--json'], pw(t)));
  t.true(dry2.images.every((i) => i.status === 'already there'));
  t.is(dry2.bytesUploaded, 0);
});

test('install --dry-run lists the rewrite\'s files and writes nothing', async (t) => {
  const out = join(t.context.dir, 'dry-install');
  const r = await runCli(['install', t.context.bundle, ...target(t, 'dryinstall'), '--out', out, '--dry-run'], pw(t));
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /would push/);
  t.regex(r.stdout, /rendered\/airgap-pull-secret\.yaml/);
  t.regex(r.stdout, /midstream\/kustomization\.yaml/);
  t.false(existsSync(out), 'no --out');
  t.deepEqual(await tagsUnder(t, 'dryinstall'), []);
});

// 5. plan --offline, and an online plan that reports every image.

test('plan --offline: every image with file:line and its digest-rule verdict, and not one connection', async (t) => {
  const { world } = t.context;
  let connections = 0;
  const server = createServer((s) => { connections++; s.destroy(); });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const host = `127.0.0.1:${(server.address() as { port: number }).port}`;
  const d = 'sha256:' + 'a'.repeat(64);
  const app = await mkdtemp(join(t.context.dir, 'offline-'));
  await writeFile(join(app, 'pods.yaml'), [
    `apiVersion: v1\nkind: Pod\nmetadata:\n  name: a\nspec:\n  containers:\n    - name: c\n      image: ${host}/shop/web:1.0`,
    `apiVersion: v1\nkind: Pod\nmetadata:\n  name: b\nspec:\n  containers:\n    - name: c\n      image: ${host}/shop/db@${d}`,
    `apiVersion: v1\nkind: Pod\nmetadata:\n  name: c\nspec:\n  containers:\n    - name: c\n      image: ${host}/shop/cache:2@${d}`,
  ].join('\n---\n') + '\n');
  const proxyEnv = { HTTPS_PROXY: `http://${host}`, HTTP_PROXY: `http://${host}`, AIRGAP_RETRY_BASE_MS: '5' };
  const off = await runCli(['plan', '--manifests', app, '--offline', '--json'], { env: proxyEnv });
  t.is(off.code, 2, off.stderr);
  t.is(connections, 0, 'offline: no connection of any kind');
  const p = json<{ offline: boolean; images: { ref: string; digestRule: string; occurrences: { file: string; line: number }[]; error?: { code: string } }[] }>(off);
  t.true(p.offline);
  const by = new Map(p.images.map((i) => [i.ref.replace(`${host}/shop/`, ''), i]));
  t.is(by.get('web:1.0')?.digestRule, 'tag');
  t.is(by.get(`db@${d}`)?.digestRule, 'digest-only');
  t.is(by.get(`db@${d}`)?.error?.code, 'E_DIGEST_ONLY');
  t.is(by.get(`cache:2@${d}`)?.digestRule, 'tag+digest');
  t.deepEqual(p.images.map((i) => i.occurrences[0]!.line).sort((a, b) => a - b), [8, 17, 26]);
  t.true(p.images.every((i) => i.occurrences[0]!.file === 'pods.yaml'));
  const text = await runCli(['plan', '--manifests', app, '--offline'], { env: proxyEnv });
  t.regex(text.stdout, /pods\.yaml:17/);
  t.regex(text.stderr, /^airgap: plan: 1 of 3 image\(s\) failed/m);

  // Online, the same app: the server is asked (positive control), and every image gets an outcome.
  const on = await runCli(['plan', '--manifests', app, '--json'], { env: { AIRGAP_RETRY_BASE_MS: '5' } });
  t.not(on.code, 0);
  t.true(connections > 0, 'online plan did connect');
  const q = json<{ images: { error?: { code: string } }[] }>(on);
  t.is(q.images.length, 3, 'every image reported, not only the first failure');
  t.true(q.images.every((i) => i.error !== undefined), 'each failing image says why');
});

test('online plan of the world: every image resolved, exit 0', async (t) => {
  const { world } = t.context;
  const r = await runCli(['plan', '--manifests', world.appDir, '--license', world.licensePath, ...resolveFlags(world), '--json']);
  t.is(r.code, 0, r.stderr);
  const p = json<{ images: { ref: string; kind: string }[] }>(r);
  for (const img of world.images) t.true(p.images.some((i) => i.ref.startsWith(img.name) && i.kind === img.kind), img.ref);
});

// 6. --keep-path.

test('--keep-path: push keeps the source path; rewrite with the other choice is refused; install --keep-path agrees', async (t) => {
  const { world, bundle, user, customer } = t.context;
  const push = await runCli(['push', bundle, ...target(t, 'kp'), '--keep-path', '--json'], pw(t));
  t.is(push.code, 0, push.stderr);
  for (const img of world.images) {
    const ref = parseReference(img.ref);
    const pushed = `${customer.host}/kp/${ref.repository}:${ref.tag}`;
    t.true(json<{ images: { target: string }[] }>(push).images.some((i) => i.target === pushed), pushed);
  }
  const one = world.images.find((i) => i.kind === 'public' && i.children.length === 0)!;
  const ref = parseReference(one.ref);
  t.is(await rawDigest(`${customer.host}/kp/${ref.repository}:${ref.tag}`, user), one.digest, 'skopeo reads it under the whole path');
  t.true((await tagsUnder(t, 'kp')).every((n) => n.split('/').length > 2), 'no flattened names');

  const mismatch = join(t.context.dir, 'kp-mismatch');
  const r = await runCli(['rewrite', bundle, ...target(t, 'kp'), '--out', mismatch], pw(t));
  oneLine(t, r, 1, /not in the registry/, /--keep-path/);
  t.false(existsSync(mismatch), 'nothing written');

  const ok = join(t.context.dir, 'kp-ok');
  const r2 = await runCli(['rewrite', bundle, ...target(t, 'kp'), '--keep-path', '--out', ok], pw(t));
  t.is(r2.code, 0, r2.stderr);
  const files = (await readdir(join(ok, 'rendered'), { recursive: true, withFileTypes: true })).filter((e) => e.isFile());
  const rendered = (await Promise.all(files.map((f) => readFile(join(f.parentPath, f.name), 'utf8')))).join('\n');
  t.true(rendered.includes(`${customer.host}/kp/${ref.repository}:${ref.tag}`));
  t.false(rendered.includes(`${customer.host}/kp/${lastComponent(ref.repository)}:`), 'no flattened name in the manifests');
  const mode = (await stat(join(ok, 'rendered', 'airgap-pull-secret.yaml'))).mode & 0o777;
  t.is(mode, 0o600, 'the pull secret is readable by its owner only');

  const inst = join(t.context.dir, 'kp-install');
  const r3 = await runCli(['install', bundle, ...target(t, 'kpi'), '--keep-path', '--out', inst], pw(t));
  t.is(r3.code, 0, r3.stderr);
  t.true((await readFile(join(inst, 'rendered', 'airgap-pull-secret.yaml'), 'utf8')).includes('dockerconfigjson'));
  t.true((await tagsUnder(t, 'kpi')).some((n) => n === `kpi/${ref.repository}:${ref.tag}`));
});

test('rewrite before any push is refused (pointing at images not there), unless asked not to check', async (t) => {
  const out = join(t.context.dir, 'early');
  const r = await runCli(['rewrite', t.context.bundle, ...target(t, 'early'), '--out', out], pw(t));
  oneLine(t, r, 1, /not there/, /push this bundle first/);
  t.false(existsSync(out));
  const r2 = await runCli(['rewrite', t.context.bundle, ...target(t, 'early'), '--out', out, '--skip-registry-check'], pw(t));
  t.is(r2.code, 0, r2.stderr);
  t.true(existsSync(join(out, 'rendered')));
});

// 17.3: an interrupted rewrite leaves no temporary directory (it holds the pull secret).

test('SIGINT during the rewrite of a large app leaves no temporary directory', async (t) => {
  const { world } = t.context;
  const one = world.images.find((i) => i.kind === 'public' && i.children.length === 0)!;
  const app = await mkdtemp(join(t.context.dir, 'large-'));
  const doc = (n: number) => `apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: d${n}\nspec:\n  template:\n    spec:\n      containers:\n        - name: c\n          image: ${one.name}:${one.tag}\n          env: [${Array.from({ length: 40 }, (_, i) => `{name: V${i}, value: "${'x'.repeat(40)}"}`).join(', ')}]\n`;
  await Promise.all(Array.from({ length: 2000 }, (_, n) => writeFile(join(app, `d${n}.yaml`), doc(n))));
  const bundle = join(t.context.dir, 'large.tar');
  const b = await runCli(['build', '--manifests', app, '--license', world.licensePath, '--out', bundle, ...resolveFlags(world)]);
  t.is(b.code, 0, b.stderr);

  const tmp = await mkdtemp(join(t.context.dir, 'tmp-'));
  const parent = await mkdtemp(join(t.context.dir, 'outparent-'));
  let sent = false;
  const r = await runCli(['rewrite', bundle, ...target(t, 'large'), '--out', join(parent, 'out'), '--skip-registry-check'], {
    ...pw(t),
    env: { TMPDIR: tmp },
    onSpawn: (child) => {
      // Interrupt as soon as the rewrite's temporary directory exists.
      const poll = setInterval(() => {
        if (readdirSync(tmp).some((n) => n.startsWith('airgap-rewrite-'))) {
          clearInterval(poll);
          sent = child.kill('SIGINT');
        }
      }, 2);
      child.on('exit', () => clearInterval(poll));
    },
  });
  t.true(sent, 'the signal reached the rewrite while its temporary directory existed');
  t.is(r.code, 130, r.stderr);
  t.deepEqual(readdirSync(tmp), [], 'no temporary directory left in TMPDIR');
  t.deepEqual(readdirSync(parent), [], 'no partial --out and no temporary beside it');
});

// 8. Help, and 9. messages.

test('help marks required flags, shows defaults and an example; a missing flag points at the command\'s help', async (t) => {
  const h = await runCli(['build', '--help']);
  t.is(h.code, 0);
  t.regex(h.stdout, /--manifests <dir>\s+\(required\)/);
  t.regex(h.stdout, /\(default:\s+linux\/amd64\)/);
  t.regex(h.stdout, /Example:\n\s+\$ airgap build /);
  for (const cmd of ['plan', 'build', 'inspect', 'verify', 'push', 'rewrite', 'install']) {
    t.regex((await runCli([cmd, '--help'])).stdout, /Example:/, cmd);
  }
  t.notRegex((await runCli(['push', '--help'])).stdout, /--out|--namespace/, 'push does not offer the rewrite\'s flags');
  t.notRegex((await runCli(['inspect', '--help'])).stdout, /--registry/);
  oneLine(t, await runCli(['build', '--manifests', 'x']), 2, /missing --license/, /see airgap build --help/);
  oneLine(t, await runCli(['push', t.context.bundle, '--registry', 'a.example/b', '--no-such-flag']), 2, /unknown option/, /see airgap push --help/);
  const j = await runCli(['--json', 'inspect', t.context.bundle]);
  t.is(j.code, 0, j.stderr);
  t.true(Array.isArray(json<{ images: unknown[] }>(j).images), '--json before the command');
});

test('a small text file is "not a bundle"; a --out in a missing directory is not "free space"', async (t) => {
  const text = join(t.context.dir, 'notes.tar');
  await writeFile(text, 'hello\n');
  for (const cmd of [['inspect', text], ['push', text, '--registry', `${t.context.customer.host}/x`]]) {
    const line = oneLine(t, await runCli(cmd), 3, /not a bundle at all/);
    t.notRegex(line, /truncated/);
  }
  const { world } = t.context;
  const r = await runCli(['build', '--manifests', world.appDir, '--license', world.licensePath, '--out', join(t.context.dir, 'no', 'such', 'b.tar'), ...resolveFlags(world)]);
  const line = oneLine(t, r, 1, /does not exist/);
  t.notRegex(line, /free space/);
});

