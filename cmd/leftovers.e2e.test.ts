import anyTest, { type TestFn } from 'ava';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startWorld, type World } from '../src/testing/world.js';
import { startRegistry, type TestRegistry } from '../src/testing/registry.js';
import { buildBundle, runCli } from '../src/testing/cli.js';

/**
 * What a run killed outright (SIGKILL, a power cut) leaves behind is removed by a later run: the
 * build's hidden partial beside --out, rewrite's /tmp/airgap-rewrite-* (their names carry the pid
 * that made them). One of a run still going, or touched in the last minutes, is left alone. Two
 * installs racing for one --out: the second stops before it pushes anything.
 */

interface Ctx { world: World; dir: string; bundle: string; customer: TestRegistry }
const test = anyTest as TestFn<Ctx>;

test.before(async (t) => {
  t.context.world = await startWorld();
  t.context.dir = await mkdtemp(join(tmpdir(), 'airgap-leftovers-e2e-'));
  t.context.customer = await startRegistry();
  t.context.bundle = join(t.context.dir, 'world.tar');
  await buildBundle(t.context.world, t.context.bundle);
});

test.after.always(async (t) => {
  await t.context.world?.stop();
  await t.context.customer?.stop();
  if (t.context.dir) await rm(t.context.dir, { recursive: true, force: true });
});

/** The pid of a process that has exited (and so runs no more). */
function deadPid(): number {
  const r = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))']);
  return Number(r.stdout.toString());
}

test('a later build removes the partial a killed build left beside --out, and only that', async (t) => {
  const dir = join(t.context.dir, 'build');
  await mkdir(dir);
  const hourAgo = new Date(Date.now() - 3600_000);
  const dead = deadPid();
  const stale = [`.app.tar.airgap-partial-${dead}-0a1b2c3d4e5f`, `.app.tar.part002.airgap-partial-${dead}-0a1b2c3d4e5f`];
  const kept = [
    `.app.tar.airgap-partial-${process.pid}-0a1b2c3d4e5f`, // a run still going (this test)
    `.other.tar.airgap-partial-${dead}-0a1b2c3d4e5f`, // another --out's
    'notes.txt',
  ];
  const young = `.app.tar.airgap-partial-${dead}-ffffffffffff`; // its run may live in another PID namespace
  for (const name of [...stale, ...kept]) {
    await writeFile(join(dir, name), 'half a bundle');
    await utimes(join(dir, name), hourAgo, hourAgo);
  }
  await writeFile(join(dir, young), 'half a bundle');
  await buildBundle(t.context.world, join(dir, 'app.tar'));
  t.true(existsSync(join(dir, 'app.tar')));
  t.deepEqual((await readdir(dir)).sort(), ['app.tar', young, ...kept].sort());
});

test('rewrite removes the manifests a killed rewrite left in the temporary directory, and only those', async (t) => {
  const tmp = join(t.context.dir, 'tmp');
  await mkdir(tmp);
  const hourAgo = new Date(Date.now() - 3600_000);
  const dead = deadPid();
  const stale = `airgap-rewrite-${dead}-AbC123`;
  const live = `airgap-rewrite-${process.pid}-AbC123`;
  const old = 'airgap-rewrite-XyZ789'; // an older airgap's name: no pid to judge by
  for (const name of [stale, live, old]) {
    await mkdir(join(tmp, name));
    await writeFile(join(tmp, name, 'secret.yaml'), 'kind: Secret\n');
    await utimes(join(tmp, name), hourAgo, hourAgo);
  }
  const r = await runCli(['rewrite', t.context.bundle, '--registry', `${t.context.customer.host}/acme`, '--out', join(t.context.dir, 'rewritten'),
    '--skip-registry-check'], { env: { TMPDIR: tmp } });
  t.is(r.code, 0, r.stderr);
  t.deepEqual((await readdir(tmp)).sort(), [live, old].sort(), 'the dead run\'s manifests are gone; its own temp dir too');
});

test('two installs racing for one --out: the second stops before it pushes anything', async (t) => {
  const out = join(t.context.dir, 'raced');
  const install = (ns: string) => runCli(['install', t.context.bundle, '--registry', `${t.context.customer.host}/${ns}`, '--out', out]);
  const [a, b] = await Promise.all([install('racea'), install('raceb')]);
  const [winner, loser, loserNs] = a.code === 0 ? [a, b, 'raceb'] : [b, a, 'racea'];
  t.is(winner.code, 0, winner.stderr);
  t.is(loser.code, 1, loser.stderr);
  t.regex(loser.stderr, /--out .*raced is being written by another airgap run \(pid \d+\)/);
  const catalog = (await (await fetch(`http://${t.context.customer.host}/v2/_catalog?n=1000`)).json()) as { repositories: string[] | null };
  t.deepEqual((catalog.repositories ?? []).filter((r) => r.startsWith(`${loserNs}/`)), [], 'the loser pushed nothing');
  t.false(existsSync(join(t.context.dir, '.raced.airgap-claim')), 'the claim is given back');
  t.true(existsSync(join(out, 'rendered')));
});
