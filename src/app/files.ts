import { readdir, readlink, realpath, stat } from 'node:fs/promises';
import type { Dirent, Stats } from 'node:fs';
import { isAbsolute, join, relative } from 'node:path';
import { AirgapError } from '../errors.js';

/**
 * The manifest directory walker: which files under `--manifests` are read as manifests, which
 * are listed as not read, and what is refused. Nothing that looks like a manifest is left out
 * without a line saying so.
 *
 * - `.yaml`, `.yml` and `.json` files are manifests; any other file is listed as not read.
 * - Hidden entries (`.git/`, `.env`) are listed as not read, a hidden directory as one entry.
 * - A symbolic link whose target stays inside the directory is read as what it points to (a
 *   linked directory too, under the link's path); a link that leaves the directory, a link loop
 *   and a dangling link are refused, naming the link.
 * - Anything that is neither a regular file nor a directory (FIFO, socket, device) is refused:
 *   reading a FIFO would hang, and what it would give is not a release's manifest.
 */

export interface NotRead {
  /** Relative to the manifests directory, posix separators; a directory ends with "/". */
  path: string;
  reason: string;
}

export interface ManifestListing {
  /** Manifest files, relative (posix), sorted by code point per directory; read as join(dir, path). */
  manifests: string[];
  notRead: NotRead[];
}

const MANIFEST_NAME = /\.(ya?ml|json)$/i;
const NOT_A_MANIFEST = 'not a manifest (only .yaml, .yml and .json files are read)';

function refuse(path: string, what: string, hint: string): AirgapError {
  return new AirgapError('E_MANIFESTS', `${path} (under --manifests): ${what}`, { hint });
}

function errno(e: unknown): string {
  return (e as NodeJS.ErrnoException).code ?? String(e);
}

function kindOf(s: Stats | Dirent): 'file' | 'directory' | string {
  if (s.isFile()) return 'file';
  if (s.isDirectory()) return 'directory';
  if (s.isFIFO()) return 'a FIFO (named pipe)';
  if (s.isSocket()) return 'a socket';
  if (s.isCharacterDevice()) return 'a character device';
  if (s.isBlockDevice()) return 'a block device';
  return 'not a regular file';
}

export async function listManifestFiles(dir: string): Promise<ManifestListing> {
  let root: string;
  try {
    root = await realpath(dir);
    if (!(await stat(root)).isDirectory()) throw Object.assign(new Error('not a directory'), { code: 'ENOTDIR' });
  } catch (e) {
    throw new AirgapError('E_MANIFESTS', `cannot read manifests directory ${dir}: ${errno(e)}`,
      { hint: 'pass --manifests DIR pointing at a readable directory of rendered YAML', cause: e });
  }
  const out: ManifestListing = { manifests: [], notRead: [] };
  await walk(root, root, '', [root], out);
  return out;
}

function inside(root: string, real: string): boolean {
  const r = relative(root, real);
  return r === '' || (!r.startsWith('..') && !isAbsolute(r));
}

/** Walks `realDir` (already resolved) as `rel`; `chain` holds the real directories above it (loop detection). */
async function walk(root: string, realDir: string, rel: string, chain: string[], out: ManifestListing): Promise<void> {
  let entries: Dirent[];
  try {
    entries = await readdir(realDir, { withFileTypes: true });
  } catch (e) {
    throw refuse(rel === '' ? '.' : `${rel}/`, `cannot read this directory: ${errno(e)}`, 'check its permissions');
  }
  entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const e of entries) {
    const path = rel === '' ? e.name : `${rel}/${e.name}`;
    if (e.name.startsWith('.')) {
      // Not read, so not followed either.
      out.notRead.push({ path: e.isDirectory() ? `${path}/` : path, reason: 'hidden' });
      continue;
    }
    const full = join(realDir, e.name);
    let real = full;
    let kind = kindOf(e);
    if (e.isSymbolicLink()) ({ real, kind } = await followLink(root, full, path));
    if (kind === 'directory') {
      if (chain.includes(real)) {
        throw refuse(path, `symbolic link loop: it points at ${relative(root, real) || '.'}, a directory that contains it`,
          'remove the link, or link to the files themselves');
      }
      await walk(root, real, path, [...chain, real], out);
    } else if (kind === 'file') {
      if (MANIFEST_NAME.test(e.name)) out.manifests.push(path);
      else out.notRead.push({ path, reason: NOT_A_MANIFEST });
    } else {
      throw refuse(path, `is ${kind}, not a regular file or directory`,
        'only files, directories and links to them may be under --manifests: move it out');
    }
  }
}

async function followLink(root: string, full: string, path: string): Promise<{ real: string; kind: string }> {
  const target = await readlink(full).catch(() => '?');
  let real: string;
  try {
    real = await realpath(full);
  } catch (e) {
    if (errno(e) === 'ELOOP') throw refuse(path, 'symbolic link loop', 'remove the link or point it at a file');
    if (errno(e) === 'ENOENT') {
      throw refuse(path, `symbolic link to ${target}, which does not exist`, 'remove the link or restore its target');
    }
    throw refuse(path, `cannot follow the symbolic link to ${target}: ${errno(e)}`, 'check the link and its target');
  }
  if (!inside(root, real)) {
    throw refuse(path, `symbolic link to ${target} leaves the manifests directory`,
      'copy the file into the directory instead of linking to it: the bundle carries only what is inside --manifests');
  }
  let s: Stats;
  try {
    s = await stat(real);
  } catch (e) {
    throw refuse(path, `cannot follow the symbolic link to ${target}: ${errno(e)}`, 'check the link and its target');
  }
  return { real, kind: kindOf(s) };
}
