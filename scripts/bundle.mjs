// Bundles the CLI after tsc (which still emits dist/ for type checking and test helpers):
//   dist/cmd/airgap.cjs        cmd/airgap.ts and everything it uses, one CommonJS module body
//                              wrapped as a function (src/codecache.ts runs it)
//   dist/cmd/airgap.cjs.cache  V8's compiled code for it, made by one training run
//   dist/cmd/airgap.js         the executable (cmd/launch.ts, CommonJS): runs airgap.cjs with that cache
//   dist/cmd/airgap.cjs.LEGAL.txt  the bundled dependencies' license comments
// Start-up is most of a short command (a re-push that moves nothing): one file instead of hundreds
// of modules, and compiled code instead of a megabyte of source to parse on every run.
import { build } from 'esbuild';
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';

const pkg = JSON.parse(readFileSync('package.json', 'utf8'));

const common = { bundle: true, platform: 'node', target: 'node20', logLevel: 'warning' };

// A stale cache must never outlive the code it was made from (src/codecache.ts checks too).
rmSync('dist/cmd/airgap.cjs.cache', { force: true });
rmSync('dist/cmd/airgap.js.map', { force: true }); // tsc's, for the file the launcher replaces

await build({
  ...common,
  entryPoints: ['cmd/airgap.ts'],
  outfile: 'dist/cmd/airgap.cjs',
  format: 'cjs',
  sourcemap: true,
  charset: 'ascii',
  legalComments: 'external',
  // The version is fixed in (src/version.ts); import.meta.url becomes the bundle's own URL.
  define: { 'import.meta.url': '__airgapFileUrl', __AIRGAP_VERSION__: JSON.stringify(pkg.version) },
  banner: { js: "(function (exports, require, module, __filename, __dirname) { var __airgapFileUrl = require('node:url').pathToFileURL(__filename).href;" },
  footer: { js: '})' },
});
// src/codecache.ts reads the bundle as Latin-1. charset 'ascii' escapes everything in code, so
// what is left is in comments esbuild keeps (doc comments on class fields): spell those out too.
const text = readFileSync('dist/cmd/airgap.cjs', 'utf8');
if (/[^\x00-\x7f]/.test(text)) {
  writeFileSync('dist/cmd/airgap.cjs', text.replace(/[^\x00-\x7f]/gu, (c) => `\\u{${c.codePointAt(0).toString(16)}}`));
}

// The executable is CommonJS: Node starts a CommonJS entry without setting up its ESM loader,
// a few milliseconds of every run. dist/cmd/ gets its own package.json saying so (the package
// is ESM); nothing else in dist/cmd/ is loaded by Node (tsc's copies of cmd/ are type-check
// output, the CLI itself is the bundle above).
writeFileSync('dist/cmd/package.json', JSON.stringify({ type: 'commonjs' }) + '\n');
await build({
  ...common, entryPoints: ['cmd/launch.ts'], outfile: 'dist/cmd/airgap.js', format: 'cjs',
  define: { 'import.meta.url': '__airgapFileUrl' },
  banner: { js: "var __airgapFileUrl = require('node:url').pathToFileURL(__filename).href;" },
});
chmodSync('dist/cmd/airgap.js', 0o755);

// Training run: V8 caches what it compiled by the end of the run. This one starts the CLI and
// loads the push command's modules (the top level of the bundle reader, copy engine and registry
// client), then fails on a bundle that does not exist, without touching the network; functions
// that only a real transfer runs are compiled lazily on first use, as without a cache.
const cli = 'dist/cmd/airgap.js';
const train = spawnSync(process.execPath, [cli, 'push', 'dist/.no-such-bundle.tar', '--registry', '127.0.0.1:9/training'],
  { env: { ...process.env, AIRGAP_WRITE_CODE_CACHE: '1' }, encoding: 'utf8' });
const check = spawnSync(process.execPath, [cli, '--version'], { env: { ...process.env, AIRGAP_CODE_CACHE_REPORT: '1' }, encoding: 'utf8' });
if (!existsSync('dist/cmd/airgap.cjs.cache') || !/code cache accepted/.test(check.stderr)) {
  // Not fatal: the CLI works without it, only starts slower.
  process.stderr.write(`bundle: no usable code cache (training exit ${train.status}: ${train.stderr.trim()}; check: ${check.stderr.trim()})\n`);
}
