#!/usr/bin/env node
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { loadWrappedCommonJs, writeCacheFile, type Loaded } from '../src/codecache.js';

// The `airgap` executable (dist/cmd/airgap.js): starts the CLI bundle (dist/cmd/airgap.cjs, built
// from cmd/airgap.ts by scripts/bundle.mjs) with the V8 code cache the build wrote beside it
// (src/codecache.ts). No V8 flags are set at run time.

const bundle = fileURLToPath(new URL('./airgap.cjs', import.meta.url));
const nodeRequire = createRequire(bundle);

const cacheFile = `${bundle}.cache`;
const writeCache = process.env.AIRGAP_WRITE_CODE_CACHE === '1';
let loaded: Loaded;
try {
  loaded = loadWrappedCommonJs(bundle, {
    cacheFile,
    writeCache,
    require(id: string): unknown {
      // undici loads node:http2 for HTTP/2, which we never enable (allowH2 stays false, so ALPN
      // offers http/1.1 only). Loading it costs every run ~3 ms; undici already handles a Node
      // without it (it catches the failed require), which is what it gets here.
      if (id === 'node:http2' || id === 'http2') throw new Error('node:http2 is not loaded by airgap');
      // commander requires child_process at start-up for executable subcommands (we have none),
      // and credential helpers need it only when configured: load it on first use.
      if (id === 'node:child_process' || id === 'child_process') return onFirstUse(id);
      return nodeRequire(id);
    },
  });
} catch (e) {
  // A broken installation (the bundle missing or unreadable): one line, not a stack trace.
  const why = (e as NodeJS.ErrnoException).code === 'ENOENT' ? 'it is missing' : (e as Error).message;
  process.stderr.write(`airgap: cannot load the CLI bundle ${bundle}: ${why} (rebuild it with npm run build)\n`);
  process.exit(1);
}
if (writeCache) {
  // The build's training run: store what V8 compiled once the run is over.
  process.once('exit', () => {
    try {
      writeCacheFile(cacheFile, loaded.cacheData());
    } catch (e) {
      process.stderr.write(`airgap: could not write the code cache ${cacheFile}: ${(e as Error).message}\n`);
    }
  });
}
if (process.env.AIRGAP_CODE_CACHE_REPORT === '1') {
  process.stderr.write(`airgap: code cache ${loaded.cacheAccepted ? 'accepted' : 'not used'}\n`);
}
loaded.run();

/** A module object that loads the real module the first time anything of it is looked at. */
function onFirstUse(id: string): object {
  let real: object | undefined;
  const load = (): object => (real ??= nodeRequire(id) as object);
  return new Proxy({}, {
    get: (_t, key) => Reflect.get(load(), key),
    has: (_t, key) => Reflect.has(load(), key),
    ownKeys: () => Reflect.ownKeys(load()),
    getOwnPropertyDescriptor: (_t, key) => {
      const d = Reflect.getOwnPropertyDescriptor(load(), key);
      // Reported as configurable: the proxy's own target does not hold the property.
      return d ? { ...d, configurable: true } : undefined;
    },
  });
}
