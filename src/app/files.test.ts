import test, { type ExecutionContext } from 'ava';
import { execFileSync } from 'node:child_process';
import { mkdtemp, mkdir, writeFile, rm, symlink } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { listManifestFiles } from './files.js';
import { isAirgapError } from '../errors.js';

async function tree(t: ExecutionContext, files: Record<string, string>): Promise<{ base: string; app: string }> {
  const base = await mkdtemp(join(tmpdir(), 'airgap-files-'));
  t.teardown(() => rm(base, { recursive: true, force: true }));
  const app = join(base, 'app');
  await mkdir(app);
  for (const [path, text] of Object.entries(files)) {
    await mkdir(dirname(join(app, path)), { recursive: true });
    await writeFile(join(app, path), text);
  }
  return { base, app };
}

async function refused(t: ExecutionContext, dir: string, ...patterns: RegExp[]): Promise<void> {
  const e = await t.throwsAsync(listManifestFiles(dir));
  t.true(isAirgapError(e, 'E_MANIFESTS'), String(e));
  for (const p of patterns) t.regex(e?.message ?? '', p);
}

test('yaml, yml and json are manifests; anything else and hidden entries are listed as not read', async (t) => {
  const { app } = await tree(t, {
    'b.yaml': 'x', 'a.yml': 'x', 'c.JSON': 'x', 'README.md': 'x', 'chart-1.0.tgz': 'x',
    'sub/d.yaml': 'x', '.hidden.yaml': 'x', '.git/config': 'x',
  });
  const l = await listManifestFiles(app);
  t.deepEqual(l.manifests, ['a.yml', 'b.yaml', 'c.JSON', 'sub/d.yaml']);
  t.deepEqual(l.notRead.map((n) => n.path), ['.git/', '.hidden.yaml', 'README.md', 'chart-1.0.tgz']);
  t.regex(l.notRead.find((n) => n.path === 'README.md')!.reason, /not a manifest/);
  t.is(l.notRead.find((n) => n.path === '.git/')!.reason, 'hidden');
});

test('a link to a file or a directory inside is read under the link\'s own path', async (t) => {
  const { app } = await tree(t, { 'base/worker.yaml': 'x', 'base/api.yaml': 'x' });
  await symlink('base/worker.yaml', join(app, 'worker.yaml'));
  await symlink('base', join(app, 'linked'));
  const l = await listManifestFiles(app);
  t.deepEqual(l.manifests, ['base/api.yaml', 'base/worker.yaml', 'linked/api.yaml', 'linked/worker.yaml', 'worker.yaml']);
  t.deepEqual(l.notRead, []);
});

test('the directory itself may be reached through a link', async (t) => {
  const { base, app } = await tree(t, { 'a.yaml': 'x' });
  await symlink(app, join(base, 'via-link'));
  t.deepEqual((await listManifestFiles(join(base, 'via-link'))).manifests, ['a.yaml']);
});

test('a link that leaves the directory is refused, naming it', async (t) => {
  const { base, app } = await tree(t, { 'a.yaml': 'x' });
  await writeFile(join(base, 'outside.yaml'), 'x');
  await symlink('../outside.yaml', join(app, 'worker.yaml'));
  await refused(t, app, /^worker\.yaml \(under --manifests\): symbolic link to \.\.\/outside\.yaml leaves the manifests directory/);
});

test('a linked directory that leaves the directory is refused', async (t) => {
  const { base, app } = await tree(t, { 'a.yaml': 'x' });
  await mkdir(join(base, 'elsewhere'));
  await symlink(join(base, 'elsewhere'), join(app, 'more'));
  await refused(t, app, /^more .*leaves the manifests directory/);
});

test('a link loop between two links, and a directory link back up, are refused', async (t) => {
  const { app } = await tree(t, { 'a.yaml': 'x' });
  await symlink('b.yaml', join(app, 'c.yaml'));
  await symlink('c.yaml', join(app, 'b.yaml'));
  await refused(t, app, /^b\.yaml .*symbolic link loop/);

  const { app: app2 } = await tree(t, { 'sub/a.yaml': 'x' });
  await symlink('..', join(app2, 'sub', 'up'));
  await refused(t, app2, /^sub\/up .*symbolic link loop/);
});

test('a dangling link is refused', async (t) => {
  const { app } = await tree(t, { 'a.yaml': 'x' });
  await symlink('gone.yaml', join(app, 'worker.yaml'));
  await refused(t, app, /^worker\.yaml .*gone\.yaml, which does not exist/);
});

test('a FIFO and a socket are refused, never opened', async (t) => {
  const { app } = await tree(t, { 'a.yaml': 'x' });
  execFileSync('mkfifo', [join(app, 'pipe.yaml')]);
  await refused(t, app, /^pipe\.yaml .*is a FIFO \(named pipe\), not a regular file or directory/);

  const { app: app2 } = await tree(t, { 'a.yaml': 'x' });
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(join(app2, 'sock'), resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  await refused(t, app2, /^sock .*is a socket/);
});

test('a missing directory is an error naming it', async (t) => {
  await refused(t, '/nonexistent/airgap-manifests', /cannot read manifests directory \/nonexistent\/airgap-manifests: ENOENT/);
});
