import * as fs from 'node:fs';
import * as path from 'node:path';
import { AirgapError, isAirgapError } from '../errors.js';

/**
 * Publishing what a build wrote under a hidden temp name, shared by the plain bundle (writer.ts)
 * and the parts of a split one (split.ts) so that both refuse to clobber, fall back and report
 * file-system errors the same way.
 */

const EXISTING_HINT = 'choose another --out path or remove the existing file first';

export function refuseExisting(outPath: string, hint = EXISTING_HINT): void {
  if (fs.existsSync(outPath)) throw new AirgapError('E_OUTPUT', `${outPath} already exists`, { hint });
}

/** Publishes `tempPath` at `outPath` without clobbering, and makes the new entry durable. */
export function publish(tempPath: string, outPath: string): void {
  linkNoClobber(tempPath, outPath);
  syncDir(path.dirname(path.resolve(outPath)));
}

/**
 * Moves `tempPath` to `finalPath` unless something is there already: link() fails with EEXIST
 * where rename() would silently replace a file that appeared meanwhile. File systems without
 * hard links fall back to check + rename. Errors name `outPath`, the path the user gave.
 * The directory is not synced: a caller publishing many files syncs it once (syncDir).
 */
export function linkNoClobber(tempPath: string, finalPath: string, outPath = finalPath, hint = EXISTING_HINT): void {
  try {
    fs.linkSync(tempPath, finalPath);
    fs.rmSync(tempPath, { force: true });
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') refuseExisting(finalPath, hint);
    if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP' && code !== 'EMLINK') throw outputError(e, outPath);
    refuseExisting(finalPath, hint);
    try {
      fs.renameSync(tempPath, finalPath);
    } catch (e2) {
      throw outputError(e2, outPath);
    }
  }
}

/** Makes new directory entries durable; best effort (not every file system allows it). */
export function syncDir(dir: string): void {
  let fd: number | undefined;
  try {
    fd = fs.openSync(dir, 'r');
    fs.fsyncSync(fd);
  } catch {
    // Durability of the rename is a bonus, not a requirement.
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}

const REASONS: Record<string, string> = {
  ENOSPC: 'no space left on device',
  EDQUOT: 'disk quota exceeded',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  EROFS: 'read-only file system',
  EFBIG: 'file too large for this file system',
  ENOENT: 'directory does not exist',
  ENOTDIR: 'a parent path is not a directory',
  EISDIR: 'is a directory',
  EIO: 'I/O error',
};

/** What to do about each: a missing directory is not a full disk. */
const HINTS: Record<string, string> = {
  ENOSPC: 'free space or pick an --out on another file system',
  EDQUOT: 'free space or pick an --out on another file system',
  EFBIG: 'pick an --out on a file system that takes large files, or use --split-size',
  ENOENT: `create the directory first, or pick an --out in a directory that exists`,
  ENOTDIR: 'pick an --out whose parents are directories',
  EACCES: 'pick an --out in a directory you can write to',
  EPERM: 'pick an --out in a directory you can write to',
  EROFS: 'pick an --out on a writable file system',
};

/** A file-system error while writing the bundle at `outPath`, in words (AirgapErrors pass through). */
export function outputError(e: unknown, outPath: string): AirgapError {
  if (isAirgapError(e)) return e;
  const code = (e as NodeJS.ErrnoException | undefined)?.code ?? '';
  const reason = REASONS[code] ?? (e instanceof Error ? e.message : String(e));
  return new AirgapError('E_OUTPUT', `cannot write bundle ${outPath}: ${reason}${code && REASONS[code] ? ` (${code})` : ''}`,
    { hint: `${HINTS[code] ?? 'pick a writable --out location'}, then run the build again`, cause: e });
}

/**
 * The hidden temporary names a build of `outPath` writes beside it (the bundle, and the parts and
 * manifest of a split one): `.<name>[.partNNN].airgap-partial-<pid>-<hex>`; group 1 is the pid.
 */
export function partialPattern(outPath: string): RegExp {
  const base = path.basename(outPath).replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return new RegExp(`^\\.${base}(?:\\.part\\d+)?\\.airgap-partial-(\\d+)-[0-9a-f]+$`);
}
