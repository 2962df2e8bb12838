import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { leftoverTag, registerCleanup } from '../cleanup.js';
import { AirgapError } from '../errors.js';
import { isSha256Hex } from '../oci/descriptor.js';
import { linkNoClobber, outputError, refuseExisting, syncDir } from './publish.js';
import { openRegularFile } from './regular.js';

/**
 * Split bundles, for transfer media with a file-size limit. The bundle stays ONE logical tar;
 * `--out app.tar` becomes a small JSON file (the parts manifest) and the tar's bytes live in
 * `app.tar.part001`, `app.tar.part002`, … beside it, each with its size and sha256 in the
 * manifest so that every part can be checked on its own after the copy. `cat app.tar.part*`
 * gives the plain tar back. Readers present the parts as one file (BundleFile): ranges that
 * cross a part boundary are stitched while streaming, nothing is concatenated on disk.
 */

const SPLIT_FORMAT = 'airgap.split.v1';
/** Part file names count from 001; wider numbers only for more than 999 parts. */
const MIN_DIGITS = 3;
const MAX_PARTS = 100_000;
/**
 * Blob reads for push: 256 KiB chunks. Against 1 MiB, pushing 740 MB (6 images, one 400 MB
 * layer) on loopback took 13 % less CPU and 20 MB less peak RSS (5 runs each: 1.74 vs 1.99 s,
 * 123 vs 143 MB): each stream holds a chunk ahead per blob in flight, and a larger chunk is
 * fresh memory each time rather than memory the allocator just got back.
 */
const READ_CHUNK = 256 * 1024;
/** The parts manifest is a few hundred bytes per part. */
const MAX_PARTS_MANIFEST = 16 << 20;
const EXISTING_HINT = 'choose another --out path or remove the existing bundle and its parts first';

export interface PartInfo {
  /** File name, beside the manifest (no directory). */
  name: string;
  size: number;
  /** Lower-case hex sha256 of the part's bytes. */
  sha256: string;
}

export interface SplitManifest {
  format: typeof SPLIT_FORMAT;
  /** Size of the whole logical tar. */
  size: number;
  /** The bundle's identity (airgap.json "id"), to tell one set of parts from another. */
  bundleId?: string;
  parts: PartInfo[];
}

function partName(outPath: string, index: number, count: number): string {
  const digits = Math.max(MIN_DIGITS, String(count).length);
  return `${path.basename(outPath)}.part${String(index + 1).padStart(digits, '0')}`;
}

/**
 * How many parts a `total`-byte bundle is cut into; refuses too many. build calls it before the
 * download with the blobs' total (a lower bound of the tar's size), so a hopeless --split-size
 * fails at once rather than after the whole bundle has been fetched.
 */
export function partCount(total: number, partSize: number): number {
  const count = Math.max(1, Math.ceil(total / partSize));
  if (count > MAX_PARTS) {
    throw new AirgapError('E_USAGE', `--split-size ${partSize} would cut the ${total}-byte bundle into ${count} parts (at most ${MAX_PARTS})`,
      { hint: 'choose a larger --split-size' });
  }
  return count;
}

/** Refuses to start a split build whose manifest or first part would clobber a file. */
export function refuseExistingSplit(outPath: string): void {
  for (const p of [outPath, path.join(path.dirname(path.resolve(outPath)), partName(outPath, 0, 1))]) refuseExisting(p, EXISTING_HINT);
}

/**
 * Splits the complete tar at `wholePath` into parts beside `outPath`, then writes the manifest
 * at `outPath`. Parts are cut from the tail and the whole file truncated after each one, so the
 * disk never holds more than the bundle plus one part. Everything is written under hidden temp
 * names and published only once every part is on disk: on failure or interrupt no part and no
 * manifest is left (the whole file is consumed either way: the caller built it for this).
 */
export async function splitBundle(wholePath: string, outPath: string, partSize: number,
  bundleId?: string): Promise<SplitManifest> {
  const dir = path.dirname(path.resolve(outPath));
  const total = (await fs.promises.stat(wholePath)).size;
  const count = partCount(total, partSize);
  const tag = leftoverTag();
  const names = Array.from({ length: count }, (_, i) => partName(outPath, i, count));
  const temps = names.map((n) => path.join(dir, `.${n}.airgap-partial-${tag}`));
  const published: string[] = [];
  const removeAll = (): void => {
    for (const p of [wholePath, ...temps, ...published]) fs.rmSync(p, { force: true });
  };
  const unregister = registerCleanup(removeAll);
  const publishOne = (temp: string, final: string): void => {
    linkNoClobber(temp, final, outPath, EXISTING_HINT);
    published.push(final);
  };
  try {
    const parts: PartInfo[] = new Array<PartInfo>(count);
    for (let i = count - 1; i >= 1; i--) {
      const start = i * partSize;
      const end = Math.min(total, start + partSize);
      parts[i] = { name: names[i]!, size: end - start, sha256: await copyRange(wholePath, start, end, temps[i]!, outPath) };
      await truncate(wholePath, start, outPath);
    }
    parts[0] = { name: names[0]!, size: Math.min(total, partSize), sha256: await hashFile(wholePath) };
    fs.renameSync(wholePath, temps[0]!);

    const manifest: SplitManifest = { format: SPLIT_FORMAT, size: total, ...(bundleId ? { bundleId } : {}), parts };
    const manifestTemp = path.join(dir, `.${path.basename(outPath)}.airgap-partial-${tag}`);
    temps.push(manifestTemp);
    fs.writeFileSync(manifestTemp, JSON.stringify(manifest, null, 2) + '\n', { flag: 'wx' });
    // Parts first, the manifest last: a reader that finds the manifest finds every part.
    for (const [i, name] of names.entries()) publishOne(temps[i]!, path.join(dir, name));
    publishOne(manifestTemp, path.resolve(outPath));
    syncDir(dir); // once for every entry above: they share the directory
    unregister();
    return manifest;
  } catch (e) {
    removeAll();
    unregister();
    throw outputError(e, outPath);
  }
}

async function copyRange(from: string, start: number, end: number, to: string, outPath: string): Promise<string> {
  const hash = createHash('sha256');
  const fh = await open(to, 'wx', 0o644);
  try {
    let pos = 0;
    for await (const chunk of fs.createReadStream(from, { start, end: end - 1 }) as AsyncIterable<Buffer>) {
      hash.update(chunk);
      let done = 0;
      while (done < chunk.length) done += (await fh.write(chunk, done, chunk.length - done, pos + done)).bytesWritten;
      pos += chunk.length;
    }
    if (pos !== end - start) throw new AirgapError('E_OUTPUT', `cannot write bundle ${outPath}: its temporary file shrank while being split`);
    await fh.sync();
  } finally {
    await fh.close();
  }
  return hash.digest('hex');
}

async function truncate(file: string, size: number, outPath: string): Promise<void> {
  try {
    await fs.promises.truncate(file, size);
  } catch (e) {
    throw outputError(e, outPath);
  }
}

async function hashFile(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of fs.createReadStream(file) as AsyncIterable<Buffer>) hash.update(chunk);
  return hash.digest('hex');
}

// ---------------------------------------------------------------------------------------------
// Reading: one logical file over a plain tar or a set of parts.

interface OpenPart extends PartInfo {
  path: string;
  /** Offset of the part's first byte in the logical file. */
  start: number;
  fh: FileHandle;
}

/**
 * Random access to a bundle's bytes whether it is one tar or split into parts. `read` is
 * positional (like FileHandle.read) and `stream` yields a byte range, crossing part boundaries
 * as needed, with constant memory.
 */
export class BundleFile {
  readonly path: string;
  readonly size: number;
  /** The parts manifest, for a split bundle. */
  readonly split: SplitManifest | undefined;
  readonly #parts: OpenPart[];

  private constructor(p: string, size: number, split: SplitManifest | undefined, parts: OpenPart[]) {
    this.path = p;
    this.size = size;
    this.split = split;
    this.#parts = parts;
  }

  /** Opens a plain tar, or the parts named by a parts manifest (every part present, right size). */
  static async open(p: string, fh: FileHandle, fileSize: number): Promise<BundleFile> {
    const head = Buffer.alloc(Math.min(fileSize, 64));
    if (head.length > 0) await fh.read(head, 0, head.length, 0);
    if (!head.toString('utf8').trimStart().startsWith('{')) {
      return new BundleFile(p, fileSize, undefined, [{ name: path.basename(p), size: fileSize, sha256: '', path: p, start: 0, fh }]);
    }
    const manifest = await readManifest(p, fh, fileSize);
    await fh.close();
    const dir = path.dirname(path.resolve(p));
    const parts: OpenPart[] = [];
    try {
      let start = 0;
      for (const part of manifest.parts) {
        const partPath = path.join(dir, part.name);
        const { fh: pfh, size: actual } = await openRegularFile(partPath, `bundle ${p}: part ${part.name}`, (e) => {
          const missing = e.code === 'ENOENT';
          return new AirgapError(missing ? 'E_NOT_FOUND' : 'E_BUNDLE',
            `bundle ${p}: part ${part.name} ${missing ? 'is missing' : `cannot be read (${e.message})`} (expected at ${partPath})`,
            { hint: `copy all ${manifest.parts.length} parts (${manifest.parts[0]!.name} …) into the directory of ${path.basename(p)}` });
        });
        parts.push({ ...part, path: partPath, start, fh: pfh });
        if (actual !== part.size) {
          throw new AirgapError('E_BUNDLE', `bundle ${p}: part ${part.name} is ${actual} bytes, expected ${part.size}: an incomplete or damaged copy`,
            { hint: `copy ${part.name} again from the original media` });
        }
        start += part.size;
      }
    } catch (e) {
      await Promise.all(parts.map((x) => x.fh.close().catch(() => undefined)));
      throw e;
    }
    return new BundleFile(p, manifest.size, manifest, parts);
  }

  /** The parts that hold bytes [start, end). */
  partsOf(start: number, end: number): string[] {
    return this.#parts.filter((x) => x.start < Math.max(end, start + 1) && x.start + x.size > start).map((x) => x.name);
  }

  /** Positional read (as FileHandle.read), through readSync. */
  async read(buffer: Buffer, offset: number, length: number, position: number): Promise<{ bytesRead: number }> {
    return { bytesRead: this.readSync(buffer, offset, length, position) };
  }

  /**
   * Reads without the thread pool: they are the small dependent reads of opening a bundle (tar
   * headers, index.json, manifests), where a round trip per read costs more than the read.
   * Blob bodies are streamed (stream()).
   */
  readSync(buffer: Buffer, offset: number, length: number, position: number): number {
    let done = 0;
    while (done < length) {
      const part = this.#partAt(position + done);
      if (!part) break;
      const within = position + done - part.start;
      const n = Math.min(length - done, part.size - within);
      const bytesRead = fs.readSync(part.fh.fd, buffer, offset + done, n, within);
      if (bytesRead === 0) break;
      done += bytesRead;
    }
    return done;
  }

  /**
   * Bytes [start, end) as one stream. A plain tar is a bundle of one part, so both kinds take
   * the same path; a range inside one part is that part's stream as is, without the generator.
   */
  stream(start: number, end: number, signal?: AbortSignal): Readable {
    const open = (p: OpenPart): fs.ReadStream => fs.createReadStream(p.path, {
      start: Math.max(start, p.start) - p.start, end: Math.min(end, p.start + p.size) - p.start - 1,
      highWaterMark: READ_CHUNK, ...(signal ? { signal } : {}),
    });
    const pieces = this.#parts.filter((x) => x.start < end && x.start + x.size > start);
    if (pieces.length === 1) return open(pieces[0]!);
    async function* chunks(): AsyncGenerator<Buffer> {
      // Leaving the loop early (consumer destroyed us) destroys the inner stream too.
      for (const p of pieces) for await (const c of open(p)) yield c as Buffer;
    }
    return Readable.from(chunks(), { objectMode: false });
  }

  /**
   * Re-hashes every part against the manifest; returns the damaged ones. A plain tar has no
   * recorded hash (its blobs are checked by name instead) and returns nothing.
   */
  async checkParts(): Promise<{ part: string; message: string }[]> {
    if (!this.split) return [];
    const problems: { part: string; message: string }[] = [];
    for (const part of this.#parts) {
      const got = await hashFile(part.path);
      if (got !== part.sha256) {
        problems.push({ part: part.name, message: `part ${part.name} is damaged: its sha256 is ${got}, the parts manifest says ${part.sha256}` });
      }
    }
    return problems;
  }

  async close(): Promise<void> {
    await Promise.all(this.#parts.map((x) => x.fh.close().catch(() => undefined)));
  }

  #partAt(pos: number): OpenPart | undefined {
    let lo = 0;
    let hi = this.#parts.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const x = this.#parts[mid]!;
      if (pos < x.start) hi = mid - 1;
      else if (pos >= x.start + x.size) lo = mid + 1;
      else return x;
    }
    return undefined;
  }
}

async function readManifest(p: string, fh: FileHandle, fileSize: number): Promise<SplitManifest> {
  const bad = (why: string) => new AirgapError('E_BUNDLE', `bundle ${p}: ${why}`,
    { hint: 'this is neither a bundle tar nor the parts manifest airgap build --split-size writes; copy it again' });
  if (fileSize > MAX_PARTS_MANIFEST) throw bad('starts like JSON but is too big to be a parts manifest');
  const buf = Buffer.alloc(fileSize);
  await fh.read(buf, 0, fileSize, 0);
  let v: unknown;
  try {
    v = JSON.parse(buf.toString('utf8'));
  } catch (e) {
    throw bad(`is not a tar and not a valid parts manifest (${(e as Error).message})`);
  }
  const m = v as Partial<SplitManifest> | null;
  if (!m || typeof m !== 'object' || m.format !== SPLIT_FORMAT) throw bad(`is JSON but not a parts manifest (no "format": "${SPLIT_FORMAT}")`);
  if (!Number.isSafeInteger(m.size) || !Array.isArray(m.parts) || m.parts.length === 0) throw bad('parts manifest has no size or no parts');
  let sum = 0;
  const seen = new Set<string>();
  for (const [i, part] of m.parts.entries()) {
    if (!part || typeof part.name !== 'string' || !/^[^/\\]+$/.test(part.name) || part.name === '.' || part.name === '..' ||
      seen.has(part.name) || !Number.isSafeInteger(part.size) || part.size < 0 ||
      typeof part.sha256 !== 'string' || !isSha256Hex(part.sha256)) {
      throw bad(`parts manifest entry ${i + 1} is malformed`);
    }
    seen.add(part.name);
    sum += part.size;
  }
  if (sum !== m.size) throw bad(`parts manifest says ${m.size} bytes but its parts add up to ${sum}`);
  if (m.bundleId !== undefined && typeof m.bundleId !== 'string') throw bad('parts manifest has a malformed bundleId');
  return m as SplitManifest;
}
