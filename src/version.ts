import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Set by scripts/bundle.mjs in the built CLI; absent when the sources run under tsx. */
declare const __AIRGAP_VERSION__: string | undefined;

/**
 * The tool's own version: fixed into the bundle at build time, or (sources under tsx, tsc's
 * dist/src/) read from the package.json above this file.
 */
function readVersion(): string {
  if (typeof __AIRGAP_VERSION__ === 'string') return __AIRGAP_VERSION__;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 4; i++) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'airgap' && pkg.version) return pkg.version;
    } catch {
      // not here; look one level up
    }
    dir = dirname(dir);
  }
  return '0.0.0';
}

export const TOOL_NAME = 'airgap';
export const TOOL_VERSION = readVersion();
