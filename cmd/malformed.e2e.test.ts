import anyTest, { type ExecutionContext, type TestFn } from 'ava';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { imageOf } from '../src/bundle/testimages.js';
import { craftBundle, named } from '../src/testing/craft.js';
import { runCli } from '../src/testing/cli.js';

/**
 * A malformed bundle is exit 3 with its reason, from every command, rewrite and install
 * included: never an "internal error" (exit 1) from the file system while writing it out.
 */

interface Ctx { dir: string }
const test = anyTest as TestFn<Ctx>;

test.before(async (t) => {
  t.context.dir = await mkdtemp(join(tmpdir(), 'airgap-malformed-e2e-'));
});

test.after.always(async (t) => {
  if (t.context.dir) await rm(t.context.dir, { recursive: true, force: true });
});

const DEPLOYMENT = 'apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  template:\n    spec:\n      containers:\n        - name: web\n          image: example.com/acme/web:1\n';

async function allRefuse(t: ExecutionContext<Ctx>, name: string, app: Record<string, string>, pattern: RegExp): Promise<void> {
  const dir = join(t.context.dir, name);
  await mkdir(dir);
  const img = await imageOf({ files: { 'bin/web': name } });
  const bundle = join(dir, 'bundle.tar');
  await writeFile(bundle, craftBundle({ index: [named(img.root.descriptor, 'example.com/acme/web:1')], blobs: img.blobs, app }));
  const registry = ['--registry', '127.0.0.1:9/acme'];
  const runs = {
    inspect: await runCli(['inspect', bundle]),
    verify: await runCli(['verify', bundle]),
    push: await runCli(['push', bundle, ...registry]),
    rewrite: await runCli(['rewrite', bundle, ...registry, '--out', join(dir, 'rewrite'), '--skip-registry-check']),
    install: await runCli(['install', bundle, ...registry, '--out', join(dir, 'install')]),
  };
  for (const [cmd, r] of Object.entries(runs)) {
    t.is(r.code, 3, `${cmd}: exit 3: ${r.stderr}`);
    t.notRegex(r.stderr, /internal error|EEXIST|ENOTDIR|ENAMETOOLONG/, `${cmd}: ${r.stderr}`);
    t.regex(r.stderr, pattern, `${cmd}: ${r.stderr}`);
  }
  t.deepEqual((await readdir(dir)).sort(), ['bundle.tar'], 'no --out left behind');
}

test('app/web.yaml beside app/web.yaml/inner.yaml: every command, rewrite and install included, exits 3 saying why', async (t) => {
  await allRefuse(t, 'filedir', { 'web.yaml': DEPLOYMENT, 'web.yaml/inner.yaml': DEPLOYMENT.replace('name: web', 'name: inner') },
    /"app\/web\.yaml" is a file and also the directory of "app\/web\.yaml\/inner\.yaml"/);
});

test('an app file whose name no file system holds (a 300-byte component) exits 3 saying why', async (t) => {
  await allRefuse(t, 'longname', { [`${'w'.repeat(300)}.yaml`]: DEPLOYMENT }, /path component longer than 255 bytes/);
});
