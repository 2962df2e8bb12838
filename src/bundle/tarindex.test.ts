import test from 'ava';
import { execFile } from 'node:child_process';
import { mkdtemp, open, rm, writeFile, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { indexTar } from './tarindex.js';
import { isAirgapError } from '../errors.js';

const run = promisify(execFile);

/** A tar written by GNU tar with `n` small files. */
async function tarOf(n: number): Promise<{ path: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'airgap-tarindex-'));
  const names = [];
  for (let i = 0; i < n; i++) {
    names.push(`f${i}`);
    await writeFile(join(dir, `f${i}`), `file ${i}\n`);
  }
  const path = join(dir, 'x.tar');
  await run('tar', ['--format=ustar', '-cf', path, '-C', dir, ...names]);
  return { path, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

test('an entry count over the limit is refused without reading further', async (t) => {
  const { path, cleanup } = await tarOf(11);
  t.teardown(cleanup);
  const fh = await open(path, 'r');
  t.teardown(() => fh.close());
  const size = (await stat(path)).size;
  t.is((await indexTar(fh, size, 'x.tar', 11)).size, 11, 'at the limit: accepted');
  const e = await t.throwsAsync(indexTar(fh, size, 'x.tar', 10));
  t.true(isAirgapError(e, 'E_BUNDLE'));
  t.regex(e!.message, /more than 10 entries/);
});
