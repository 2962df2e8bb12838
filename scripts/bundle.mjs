// Bundles the CLI after tsc (which still emits dist/ for type checking and test helpers):
//   dist/cmd/airgap.js            the executable: cmd/airgap.ts and everything it uses, one
//                                 CommonJS file (esbuild), so a start loads one file, not hundreds
//   dist/cmd/airgap.js.LEGAL.txt  the bundled dependencies' license comments
// Nothing else: no launcher, no code cache, no V8 flags; Node starts it as any script.
// The packed package is these files only (package.json "files") and has no dependencies (all
// are bundled here, so all are devDependencies): it installs with npm install -g --offline.
import { build } from 'esbuild';
import { chmodSync, readFileSync, rmSync, writeFileSync } from 'node:fs';

const pkg = JSON.parse(readFileSync('package.json', 'utf8'));

// What earlier builds wrote beside the executable (a launcher's bundle and its code cache).
for (const old of ['dist/cmd/airgap.cjs', 'dist/cmd/airgap.cjs.map', 'dist/cmd/airgap.cjs.cache', 'dist/cmd/airgap.cjs.LEGAL.txt', 'dist/cmd/launch.js', 'dist/cmd/launch.js.map']) {
  rmSync(old, { force: true });
}

// The package is ESM; dist/cmd/ gets its own package.json making the bundle CommonJS (esbuild's
// CommonJS output keeps the dependencies' require() calls as they are). tsc's other files in
// dist/cmd/ are type-check output that Node never loads.
writeFileSync('dist/cmd/package.json', JSON.stringify({ type: 'commonjs' }) + '\n');
await build({
  entryPoints: ['cmd/airgap.ts'],
  outfile: 'dist/cmd/airgap.js',
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'cjs',
  logLevel: 'warning',
  sourcemap: true,
  legalComments: 'external',
  // The version is fixed in (src/version.ts); import.meta.url becomes the bundle's own URL.
  define: { 'import.meta.url': '__airgapFileUrl', __AIRGAP_VERSION__: JSON.stringify(pkg.version) },
  banner: { js: "#!/usr/bin/env node\nvar __airgapFileUrl = require('node:url').pathToFileURL(__filename).href;" },
});
// V8 keeps the script's source in the heap for the whole run: one byte per character if it is
// all ASCII, two otherwise (4 MB instead of 2 MB of live heap, which also raises the heap size V8
// lets a long run reach). esbuild escapes non-ASCII in strings, regexps and identifiers; what is
// left is in the dependencies' comments. \uXXXX means the same character in every one of those
// places, so the rewrite changes no behaviour, and the file is then checked to be ASCII.
const out = readFileSync('dist/cmd/airgap.js', 'utf8');
const ascii = out.replace(/[^\x00-\x7f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
if (!/^[\x00-\x7f]*$/.test(ascii)) throw new Error('dist/cmd/airgap.js: non-ASCII text left after the rewrite');
if (ascii !== out) writeFileSync('dist/cmd/airgap.js', ascii);
chmodSync('dist/cmd/airgap.js', 0o755);
