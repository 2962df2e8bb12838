import test from 'ava';
import { copyFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { loadWrappedCommonJs } from './codecache.js';
import { CLI, runCli } from './testing/cli.js';

const wrapped = (body: string): string => `(function (exports, require, module, __filename, __dirname) {\n${body}\n})`;

// Enough functions that V8 has something to cache beyond the top level.
const body = (answer: string): string =>
  `${Array.from({ length: 50 }, (_, i) => `function f${i}(x) { return x + ${i}; }`).join('\n')}\n` +
  `module.exports = { answer: ${answer}, sum: f1(1) + f2(2), file: __filename, pathSep: require('node:path').sep };`;

test('a cache made from a file is taken for that file, and the module runs the same with and without it', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'airgap-codecache-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, 'mod.cjs');
  const cacheFile = `${file}.cache`;
  await writeFile(file, wrapped(body("'first'")));

  const cold = loadWrappedCommonJs(file, { cacheFile });
  t.false(cold.cacheAccepted, 'no cache yet');
  const coldExports = cold.run() as Record<string, unknown>;
  t.deepEqual(coldExports, { answer: 'first', sum: 6, file, pathSep: '/' });
  await writeFile(cacheFile, cold.cacheData());

  const warm = loadWrappedCommonJs(file, { cacheFile });
  t.true(warm.cacheAccepted, 'V8 takes the cache made from this very file');
  t.deepEqual(warm.run(), coldExports);
});

test('a cache for another version of the file is ignored, even at the same length', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'airgap-codecache-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, 'mod.cjs');
  const cacheFile = `${file}.cache`;
  await writeFile(file, wrapped(body("'first'")));
  const first = loadWrappedCommonJs(file, { cacheFile });
  first.run();
  await writeFile(cacheFile, first.cacheData());

  // Same length, other code: V8 alone would only compare lengths.
  await new Promise((r) => setTimeout(r, 20));
  await writeFile(file, wrapped(body("'other'")));
  const again = loadWrappedCommonJs(file, { cacheFile });
  t.false(again.cacheAccepted);
  t.is((again.run() as { answer: string }).answer, 'other');

  // A cache that is not ours at all (truncated, foreign) is ignored too.
  await writeFile(cacheFile, (await readFile(cacheFile)).subarray(0, 10));
  t.false(loadWrappedCommonJs(file, { cacheFile }).cacheAccepted);
});

test('the built CLI starts from the code cache its build wrote', async (t) => {
  const r = await runCli(['--version'], { env: { AIRGAP_CODE_CACHE_REPORT: '1' } });
  t.is(r.code, 0, r.stderr);
  t.regex(r.stderr, /code cache accepted/, `${CLI}: the build's training run left no cache V8 accepts`);
  t.regex(r.stdout, /^\d+\.\d+\.\d+/);
});

test('a file that is not a wrapped module is refused with its name', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'airgap-codecache-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, 'plain.cjs');
  await writeFile(file, '"not a function";');
  const loaded = loadWrappedCommonJs(file, { cacheFile: `${file}.cache` });
  t.throws(() => loaded.run(), { message: /plain\.cjs/ });
});

test('the executable without its bundle says so in one line and exits 1', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'airgap-codecache-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  // The launcher alone, beside the package.json that makes it CommonJS, and no airgap.cjs.
  await copyFile(CLI, join(dir, 'airgap.js'));
  await copyFile(join(dirname(CLI), 'package.json'), join(dir, 'package.json'));
  const r = spawnSync(process.execPath, [join(dir, 'airgap.js'), '--version'], { encoding: 'utf8' });
  t.is(r.status, 1);
  t.regex(r.stderr, /^airgap: cannot load the CLI bundle .*airgap\.cjs: it is missing \(rebuild it with npm run build\)\n$/);
});
