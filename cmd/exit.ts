import type { ErrorCode } from '../src/errors.js';

/**
 * Exit statuses: 0 ok; 1 a registry, network or output failure; 2 bad input (flags, manifests,
 * license, references, digest rule, name collisions); 3 integrity (digest mismatch, a bad bundle,
 * verify found problems); 130 interrupted.
 */
const EXIT: Partial<Record<ErrorCode, number>> = {
  E_USAGE: 2, E_REFERENCE: 2, E_MANIFESTS: 2, E_LICENSE: 2, E_DIGEST_ONLY: 2, E_NO_IMAGES: 2, E_COLLISION: 2,
  E_DIGEST_MISMATCH: 3, E_BUNDLE: 3, E_SIGNATURE: 3, E_INTERRUPTED: 130,
};

export function exitStatus(code: ErrorCode | 'E_INTERNAL'): number {
  return code === 'E_INTERNAL' ? 1 : (EXIT[code] ?? 1);
}
