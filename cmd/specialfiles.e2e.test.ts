import anyTest, { type ExecutionContext, type TestFn } from 'ava';
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { imageOf } from '../src/bundle/testimages.js';
import { craftBundle, named, sha256Hex } from '../src/testing/craft.js';
import { runCli, type CliResult } from '../src/testing/cli.js';

/**
 * A bundle path, or a split bundle's part, that is not a regular file: a FIFO nobody writes to
 * (opening it used to block in a thread the process could not exit without: SIGTERM did
 * nothing) or a part linked to /dev/zero (read forever at full CPU). Every command refuses it at
 * once, exit 3, naming what it is.
 */

interface Ctx { dir: string }
const test = anyTest as TestFn<Ctx>;

test.before(async (t) => {
  t.context.dir = await mkdtemp(join(tmpdir(), 'airgap-specialfiles-e2e-'));
});

test.after.always(async (t) => {
  if (t.context.dir) await rm(t.context.dir, { recursive: true, force: true });
});

/** Runs the CLI; a run still going after 15 s gets SIGTERM, then SIGKILL, and is reported as hung. */
async function bounded(args: string[]): Promise<CliResult & { hung: boolean }> {
  let hung = false;
  const timers: NodeJS.Timeout[] = [];
  const r = await runCli(args, {
    onSpawn: (child) => {
      timers.push(setTimeout(() => { hung = true; child.kill('SIGTERM'); }, 15_000));
      timers.push(setTimeout(() => child.kill('SIGKILL'), 20_000));
    },
  });
  timers.forEach(clearTimeout);
  return { ...r, hung };
}

async function refusedByAll(t: ExecutionContext<Ctx>, bundle: string, pattern: RegExp): Promise<void> {
  const runs = await Promise.all([
    bounded(['inspect', bundle]),
    bounded(['verify', bundle]),
    bounded(['push', bundle, '--registry', '127.0.0.1:9/acme']),
  ]);
  for (const [i, r] of runs.entries()) {
    const cmd = ['inspect', 'verify', 'push'][i]!;
    t.false(r.hung, `${cmd} ended by itself (signal ${r.signal})`);
    t.is(r.code, 3, `${cmd}: exit 3: ${r.stderr}`);
    t.regex(r.stderr, pattern, `${cmd}: ${r.stderr}`);
  }
}

test('a FIFO given as the bundle is refused at once by every command', async (t) => {
  const fifo = join(t.context.dir, 'fifo.tar');
  execFileSync('mkfifo', [fifo]);
  await refusedByAll(t, fifo, /bundle .*fifo\.tar is a FIFO \(named pipe\), not a regular file/);
});

/** A split bundle's parts manifest whose one part is `part` (its content does not matter: it is never read). */
async function splitWith(t: ExecutionContext<Ctx>, name: string, makePart: (path: string) => Promise<void>): Promise<string> {
  const dir = join(t.context.dir, name);
  await mkdir(dir);
  const img = await imageOf({ files: { 'bin/app': name } });
  const tar = craftBundle({ index: [named(img.root.descriptor, 'example.com/acme/app:1')], blobs: img.blobs });
  await writeFile(join(dir, 'app.tar'), JSON.stringify({ format: 'airgap.split.v1', size: tar.length,
    parts: [{ name: 'app.tar.part001', size: tar.length, sha256: sha256Hex(tar) }] }));
  await makePart(join(dir, 'app.tar.part001'));
  return join(dir, 'app.tar');
}

test('a split bundle whose part is a FIFO is refused at once by every command', async (t) => {
  const bundle = await splitWith(t, 'fifopart', async (p) => { execFileSync('mkfifo', [p]); });
  await refusedByAll(t, bundle, /part app\.tar\.part001 is a FIFO \(named pipe\), not a regular file/);
});

test('a split bundle whose part is linked to /dev/zero is refused at once by every command', async (t) => {
  const bundle = await splitWith(t, 'zeropart', (p) => symlink('/dev/zero', p));
  await refusedByAll(t, bundle, /part app\.tar\.part001 is a character device, not a regular file/);
});
