import anyTest, { type TestFn } from 'ava';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startWorld, type World } from '../src/testing/world.js';
import { buildBundle } from '../src/testing/cli.js';

/**
 * What a run killed outright (SIGKILL, a power cut) leaves behind is removed by a later run: the
 * build's hidden partial beside --out (its name carries the pid that wrote it). A partial of a
 * run still going, or one touched in the last minutes, is left alone.
 */

interface Ctx { world: World; dir: string }
const test = anyTest as TestFn<Ctx>;

test.before(async (t) => {
  t.context.world = await startWorld();
  t.context.dir = await mkdtemp(join(tmpdir(), 'airgap-leftovers-e2e-'));
});

test.after.always(async (t) => {
  await t.context.world?.stop();
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
