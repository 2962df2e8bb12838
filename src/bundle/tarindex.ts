import { AirgapError } from '../errors.js';
import { BLOCK, malformedBundle, paddedSize } from './format.js';
import { checksumMatches, cString, describeType, headerName, parseNumber, parsePax, printable, safePath } from './tarheader.js';

/**
 * Walks a tar's headers once, without extracting or reading bodies (except the small PAX / GNU
 * long-name bodies that rename the next entry), and returns where each entry's body lies.
 * A bundle comes from elsewhere, so anything a careless extractor could be tricked with is
 * refused here: links, devices, absolute paths, `..`, duplicates, truncation, bad checksums.
 */

export interface TarEntry {
  type: 'file' | 'dir';
  /** Byte offset of the body within the tar. */
  offset: number;
  size: number;
}

/**
 * Positional reads, as FileHandle.read; a split bundle's parts answer it as one file (split.ts).
 * readSync, when offered, is used for the walk: each header is a 512-byte read that depends on
 * the one before, and a thread-pool round trip per header costs far more than the read itself
 * (tens of milliseconds for a bundle of a few dozen blobs, most of a re-push that moves nothing).
 */
export interface ReadAt {
  read(buffer: Buffer, offset: number, length: number, position: number): Promise<{ bytesRead: number }>;
  readSync?(buffer: Buffer, offset: number, length: number, position: number): number;
}

export const MAX_ENTRIES = 1_000_000;
/** PAX and GNU long-name bodies are a few hundred bytes; anything bigger is not a real one. */
const MAX_META_BODY = 1 << 20;
/** Headers walked between two turns of the event loop. */
const YIELD_EVERY = 4096;

export async function indexTar(fh: ReadAt, fileSize: number, label: string, maxEntries = MAX_ENTRIES): Promise<Map<string, TarEntry>> {
  const entries = new Map<string, TarEntry>();
  const refuse = (detail: string): AirgapError => malformedBundle(label, detail);
  const header = Buffer.alloc(BLOCK);
  let pos = 0;
  let pending: { path?: string; size?: number } = {};
  let count = 0;

  // Not a tar at all (a text file, an HTML error page saved as .tar, an empty file): say that,
  // rather than "truncated" or "bad checksum", which suggest a copy went wrong.
  if (!looksLikeTar(fh, fileSize)) {
    throw new AirgapError('E_BUNDLE', `${label}: not a bundle at all (${fileSize} byte(s), not a tar archive)`,
      { hint: 'give the .tar file that airgap build wrote (or the parts manifest of a split bundle)' });
  }
  for (;;) {
    // A bundle cut at an entry boundary would otherwise look complete.
    if (pos >= fileSize) throw malformedBundle(label, `truncated: the archive ends at byte ${pos} without its end-of-archive marker`);
    if (pos + BLOCK > fileSize) throw malformedBundle(label, `truncated: a partial tar header at byte ${pos}`);
    await readExactly(fh, header, pos);
    if (header.every((b) => b === 0)) break; // end-of-archive marker; anything after it is padding
    // The reads are synchronous: give the event loop a turn now and then, so that SIGINT and
    // SIGTERM are handled while a tar of a million entries is walked.
    if (count % YIELD_EVERY === YIELD_EVERY - 1) await new Promise<void>((resolve) => setImmediate(resolve));
    if (++count > maxEntries) throw malformedBundle(label, `more than ${maxEntries} entries; a bundle never holds that many`);

    const rawName = headerName(header);
    if (!checksumMatches(header)) {
      throw malformedBundle(label, `bad tar header checksum at byte ${pos} (entry "${printable(rawName)}")`);
    }
    const typeflag = String.fromCharCode(header[156]!);
    let size = parseNumber(header, 124, 12);
    if (size === undefined) throw malformedBundle(label, `entry "${printable(rawName)}" has an unreadable size field`);
    if (pending.size !== undefined) size = pending.size;
    const name = pending.path ?? rawName;
    const bodyOffset = pos + BLOCK;
    if (!Number.isSafeInteger(size) || size < 0 || bodyOffset + size > fileSize) {
      throw malformedBundle(label, `truncated: entry "${printable(name)}" needs ${size} bytes at byte ${bodyOffset} but the file has ${fileSize}`);
    }
    const next = bodyOffset + paddedSize(size);

    if (typeflag === 'x' || typeflag === 'L' || typeflag === 'K' || typeflag === 'g') {
      if (size > MAX_META_BODY) throw malformedBundle(label, `tar extension header at byte ${pos} is ${size} bytes`);
      const body = Buffer.alloc(size);
      await readExactly(fh, body, bodyOffset);
      if (typeflag === 'x') {
        const pax = parsePax(body, pos, refuse);
        pending = { ...pending, ...(pax.path !== undefined ? { path: pax.path } : {}), ...(pax.size !== undefined ? { size: pax.size } : {}) };
      }
      else if (typeflag === 'L') pending = { ...pending, path: cString(body) };
      // 'K' (GNU long link name) belongs to a link, refused below; 'g' (global PAX) holds nothing we use.
      pos = next;
      continue;
    }
    pending = {};

    const type = entryType(typeflag);
    if (type === undefined) throw malformedBundle(label, `entry "${printable(name)}" is ${describeType(typeflag)}, not a regular file`);
    const path = safePath(name, refuse);
    if (path === '') {
      if (type === 'dir') { pos = next; continue; } // "./" itself
      throw malformedBundle(label, `an entry has an empty name at byte ${pos}`);
    }
    if (entries.has(path)) throw malformedBundle(label, `duplicate entry "${printable(path)}"`);
    entries.set(path, { type, offset: bodyOffset, size: type === 'dir' ? 0 : size });
    pos = next;
  }
  refuseFileParents(entries, label);
  return entries;
}

/**
 * A path cannot be a file and a directory at once: `app/web.yaml` beside `app/web.yaml/inner.yaml`
 * cannot be written out by rewrite, and no tar written from a file system holds both.
 */
function refuseFileParents(entries: Map<string, TarEntry>, label: string): void {
  for (const path of entries.keys()) {
    for (let slash = path.indexOf('/'); slash > 0; slash = path.indexOf('/', slash + 1)) {
      const parent = path.slice(0, slash);
      if (entries.get(parent)?.type === 'file') {
        throw malformedBundle(label, `"${printable(parent)}" is a file and also the directory of "${printable(path)}"`);
      }
    }
  }
}

/** The first block is a tar header with a valid checksum (or the archive is split and cannot be read here). */
function looksLikeTar(fh: ReadAt, fileSize: number): boolean {
  if (fileSize < BLOCK) return false;
  if (!fh.readSync) return true;
  const first = Buffer.alloc(BLOCK);
  if (fh.readSync(first, 0, BLOCK, 0) !== BLOCK) return true;
  if (first.every((b) => b === 0)) return true; // an empty archive: the walk says what is missing
  // A damaged tar still says "ustar" (then the walk names the bad checksum); other files do not.
  if (first.subarray(257, 262).toString('latin1') === 'ustar') return true;
  return checksumMatches(first);
}

/** Fills buf from position, synchronously when fh offers it. */
export async function readExactly(fh: ReadAt, buf: Buffer, position: number): Promise<void> {
  let done = 0;
  while (done < buf.length) {
    const bytesRead = fh.readSync
      ? fh.readSync(buf, done, buf.length - done, position + done)
      : (await fh.read(buf, done, buf.length - done, position + done)).bytesRead;
    if (bytesRead === 0) throw new Error(`unexpected end of file at byte ${position + done}`);
    done += bytesRead;
  }
}

function entryType(flag: string): TarEntry['type'] | undefined {
  if (flag === '0' || flag === '\u0000' || flag === '7') return 'file';
  if (flag === '5') return 'dir';
  return undefined;
}
