// Bundles the CLI into dist/cmd/airgap.js (+ lazily loaded chunks). One file per command path
// starts in about two thirds of the time of hundreds of small modules: start-up is most of a
// re-push that moves nothing. tsc still emits dist/ for type checking and test helpers.
import { build } from 'esbuild';
import { chmodSync, rmSync } from 'node:fs';

rmSync('dist/cmd/chunks', { recursive: true, force: true });
await build({
  entryPoints: ['cmd/airgap.ts'],
  outdir: 'dist/cmd',
  bundle: true,
  splitting: true,
  chunkNames: 'chunks/[name]-[hash]',
  platform: 'node',
  format: 'esm',
  target: 'node20',
  sourcemap: true,
  logLevel: 'warning',
  // CommonJS dependencies (undici, commander, tar-stream) call require() for Node built-ins.
  banner: { js: "import { createRequire as __airgapRequire } from 'node:module'; const require = __airgapRequire(import.meta.url);" },
});
chmodSync('dist/cmd/airgap.js', 0o755);
