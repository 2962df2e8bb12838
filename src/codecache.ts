import { readFileSync, renameSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import { Script } from 'node:vm';

/**
 * Runs the bundled CLI with a V8 code cache written when the CLI was built.
 *
 * A re-push that moves nothing is mostly start-up, and most of start-up was V8 parsing and
 * compiling a megabyte of JavaScript (undici, commander, yaml, ours) on every run. Node 20 has no
 * compile cache of its own for that (module.enableCompileCache is Node 22), so the build runs the
 * CLI once, asks V8 for the code it compiled (vm.Script#createCachedData) and stores it beside the
 * bundle; later runs hand it back to V8.
 *
 * V8 refuses a cache made by another V8 version or with other flags, and then simply compiles.
 * What it does not check is that the cache belongs to this very source (it compares lengths
 * only), so the cache starts with the size and modification time of the file it was made from
 * (as Python's .pyc files do), and a cache for any other file is ignored. Nothing is written at
 * run time except when the launcher is asked to (the build's training run).
 *
 * The bundle file is a CommonJS module body already wrapped in
 * `(function (exports, require, module, __filename, __dirname) { … })` (the build does it), in
 * ASCII only (the build checks), so it is read as Latin-1 without decoding or copying again.
 */

const MAGIC = Buffer.from('AGCC');
const HEADER_BYTES = MAGIC.length + 16;

export interface RunOptions {
  /** Where the cache lives (the bundle's path + ".cache"). */
  cacheFile: string;
  /** Write the cache when the process exits (the build's training run). */
  writeCache?: boolean;
  /**
   * The `require` the bundle gets, for built-ins only (everything else is bundled). Defaults to
   * Node's own.
   */
  require?: (id: string) => unknown;
}

export interface Loaded {
  /** Whether V8 took the cache (false when there was none, or it was stale or refused). */
  cacheAccepted: boolean;
  /** Runs the module body; returns its module.exports. */
  run(): unknown;
  /** The cache for what has been compiled so far, behind the header naming its source. */
  cacheData(): Buffer;
}

/** Size and modification time of the source, as the cache header records them. */
function sourceStamp(file: string): Buffer {
  const st = statSync(file, { bigint: true });
  const stamp = Buffer.alloc(HEADER_BYTES);
  MAGIC.copy(stamp, 0);
  stamp.writeBigUInt64LE(st.size, MAGIC.length);
  stamp.writeBigUInt64LE(st.mtimeNs, MAGIC.length + 8);
  return stamp;
}

/** Compiles a wrapped CommonJS bundle with its code cache when that cache is for this file. */
export function loadWrappedCommonJs(file: string, opts: RunOptions): Loaded {
  const stamp = sourceStamp(file);
  let cachedData: Buffer | undefined;
  if (!opts.writeCache) {
    try {
      const cache = readFileSync(opts.cacheFile);
      if (cache.length > HEADER_BYTES && cache.subarray(0, HEADER_BYTES).equals(stamp)) cachedData = cache.subarray(HEADER_BYTES);
    } catch {
      // no cache: compile as usual
    }
  }
  const source = readFileSync(file, 'latin1');
  const script = new Script(source, { filename: file, ...(cachedData ? { cachedData } : {}) });
  return {
    cacheAccepted: cachedData !== undefined && script.cachedDataRejected === false,
    run() {
      const module = { exports: {} as unknown };
      const body = script.runInThisContext() as (e: unknown, r: unknown, m: unknown, f: string, d: string) => void;
      if (typeof body !== 'function') throw new Error(`${file} is not a wrapped CommonJS bundle`);
      body.call(module.exports, module.exports, opts.require ?? createRequire(file), module, file, dirname(file));
      return module.exports;
    },
    cacheData: () => Buffer.concat([stamp, script.createCachedData()]),
  };
}

/** Writes a cache atomically: a reader sees the old cache, the new one, or none. */
export function writeCacheFile(cacheFile: string, data: Buffer): void {
  const tmp = `${cacheFile}.${process.pid}.tmp`;
  try {
    writeFileSync(tmp, data);
    renameSync(tmp, cacheFile);
  } catch (e) {
    try { unlinkSync(tmp); } catch { /* not there */ }
    throw e;
  }
}
