import { createHash } from 'node:crypto';
import type { FileHandle } from 'node:fs/promises';
import { AIRGAP_YAML, APP_ARCHIVE, FORMAT_REGISTRY, imageFormat, parseAirgapYaml, type AirgapSpec } from './metadata.js';
import { inflateFrom, memberAt, scanMembers, type Member } from './gzip.js';
import { availableParallelism } from 'node:os';
import { BufferPool } from './buffers.js';
import { HashThread, HashThreadError } from './hashthread.js';
import { GzipWalk, WalkAbandoned, type Region } from './inflate.js';
import { PieceBuilder, type Piece } from './stored.js';
import { badAirgap, ByteSource, printable, walkTar, type StreamEntry } from './tar.js';

/**
 * One streaming pass over a .airgap: what it holds and where, without keeping the images. Small
 * files (airgap.yaml, app.tar.gz, link files, docker archives' JSON) are kept; every blob is
 * located (its offset in the decompressed stream) and, where the pass inflates it anyway,
 * hashed, so a blob that does not match its name is found before anything is pushed. A file
 * written as one gzip member per entry (gzip.ts) is walked by hopping from member to member:
 * big bodies are neither inflated nor hashed here, but verified while they stream, later. A
 * one-stream file (the vendor portal's) is read by walking its deflate blocks (inflate.ts), which
 * says where each blob's stored blocks lie; one that is mostly Huffman-coded (uncompressed
 * layers) is read again with zlib, and its blobs are then inflated when pushed.
 */

export interface Located {
  offset: number;
  size: number;
}

export interface ScannedBlob extends Located {
  /** sha256 of the content, when the pass read it. */
  digest?: string;
  /** The content, for small blobs (manifests, configs) within the pass's budget. */
  data?: Buffer;
  /** The first bytes, when the pass read them (gzip detection of docker-archive layers). */
  head?: Buffer;
  /** Where it lies in the file, when mostly in deflate's stored blocks (stored.ts): read from there, not inflated. */
  stored?: Piece[];
}

export interface DockerArchiveFile {
  /** Its path under images/, split: [host, ...path, name, tag] or [..., name, 'sha256', hex]. */
  parts: string[];
  entry: string;
  files: Map<string, ScannedBlob>;
}

export interface AirgapScan {
  spec: AirgapSpec;
  airgapYaml: Buffer;
  app: Buffer | undefined;
  /** format docker: the storage tree under images/docker/registry/v2, by relative path. */
  blobs: Map<string, ScannedBlob>;
  links: Map<string, string>;
  archives: DockerArchiveFile[];
  members: Member[];
}

export const STORAGE_ROOT = 'images/docker/registry/v2/';
const MAX_AIRGAP_YAML = 4 << 20;
const MAX_APP_ARCHIVE = 512 << 20;
const MAX_LINK = 1024;
/** Blobs up to this size are kept from the pass (manifests and configs), within KEEP_BUDGET. */
const KEEP_MAX = 256 << 10;
const KEEP_BUDGET = 64 << 20;
const MAX_JSON = 8 << 20;
/** airgap.yaml must come among the first entries (KOTS writes it first). */
const META_WITHIN = 16;
/** What the Huffman-coded stretches of blobs read from stored blocks (stored.ts) may hold in memory, all together. */
const RUN_BUDGET = 64 << 20;
/** Huffman output after which a one-stream file is handed to zlib: it is not mostly layers compressed already. */
const HUFFMAN_BUDGET = 32 << 20;
/** What the walk reads at a time. */
const READ_SIZE = 1 << 20;
/** Shared buffers made before the walk starts: those the thread may hold (IN_FLIGHT), and the walk's. */
const SHARED_READY = 24;

export interface ScanOptions {
  /** Hash the layers of a one-stream file on a second thread (default: where there are two processors or more). */
  hashThread?: boolean;
}

export async function scanAirgap(path: string, fh: FileHandle, fileSize: number, label: string, opts: ScanOptions = {}): Promise<AirgapScan> {
  const members = await scanMembers(fh, fileSize);
  if (members) return scanOnce(path, fh, label, members, undefined);
  const one = [{ coff: 0, doff: 0 }];
  // A second processor hashes the layers while the walk reads on (hashthread.ts).
  const threaded = opts.hashThread ?? availableParallelism() >= 2;
  let thread: HashThread | undefined;
  try {
    // A thread that cannot start (a limit on threads) leaves the walk to hash on its own.
    thread = threaded ? new HashThread(new BufferPool(READ_SIZE, true, SHARED_READY)) : undefined;
  } catch {
    thread = undefined;
  }
  const walked = (pool: BufferPool, hashing?: HashThread) =>
    scanOnce(path, fh, label, one, new GzipWalk(fh, 0, { huffmanBudget: HUFFMAN_BUDGET, pool }), hashing);
  try {
    try {
      return await walked(thread?.buffers ?? new BufferPool(READ_SIZE), thread);
    } catch (e) {
      // The thread failed, not the file: once more without it.
      if (!(e instanceof HashThreadError)) throw e;
      return await walked(new BufferPool(READ_SIZE));
    }
  } catch (e) {
    // Mostly Huffman-coded (uncompressed layers): zlib reads it.
    if (!(e instanceof WalkAbandoned)) throw e;
    return scanOnce(path, fh, label, one, undefined);
  }
}

/** The pass, over members (a file with the "AG" field), a walk of the deflate blocks, or zlib's output. */
async function scanOnce(path: string, fh: FileHandle, label: string, members: Member[], walk: GzipWalk | undefined,
  thread?: HashThread): Promise<AirgapScan> {
  const digests: Promise<void>[] = [];
  const seekable = members.length > 1;
  let runBytes = 0;
  const src = new ByteSource(walk ?? inflateFrom(path, members[0]!), label, Number.POSITIVE_INFINITY,
    seekable ? (target) => { const m = memberAt(members, target); return { at: m.doff, source: inflateFrom(path, m) }; } : undefined, walk);
  let spec: AirgapSpec | undefined;
  let airgapYaml: Buffer | undefined;
  let app: Buffer | undefined;
  const blobs = new Map<string, ScannedBlob>();
  const links = new Map<string, string>();
  const archives: DockerArchiveFile[] = [];
  let kept = 0;
  let files = 0;

  // Reads a body through the pass: hashed, its first bytes and (small, within budget) all of it kept.
  // With `find` (a one-stream file walked here), where the blob lies in the file is noted too (stored.ts).
  const take = async (s: ByteSource, e: StreamEntry, keep: boolean, what: string, find = false): Promise<ScannedBlob> => {
    // Layers are passed over by the walk (GzipWalk.skip), not streamed through it, and hashed on
    // the second thread where there is one.
    const passing = s === src && walk !== undefined && !keep;
    const hashing = passing ? thread?.start() : undefined;
    const hash = hashing ? undefined : createHash('sha256');
    const parts: Buffer[] = [];
    let head: Buffer | undefined;
    // Positions in the walk's stream: a docker archive's entries are counted from the archive's start.
    const base = s.origin;
    const finder = find && walk && runBytes < RUN_BUDGET ? new PieceBuilder(e.offset + base, e.size) : undefined;
    const visit = (c: Buffer, at: number, region: Region | undefined): Promise<void> | undefined => {
      head ??= Buffer.from(c.subarray(0, 16));
      if (keep) parts.push(Buffer.from(c));
      if (finder) finder.push(c, region ? [region] : walk!.regions(at + base, at + base + c.length));
      if (hash) { hash.update(c); return undefined; }
      hashing!.update(c);
      return thread!.full ? thread!.room() : undefined;
    };
    if (passing) await s.pass(e.size, what, visit);
    else for await (const c of s.chunks(e.size, what)) visit(c, s.position - c.length, undefined);
    if (keep) kept += e.size;
    const stored = finder?.finish();
    if (finder) runBytes += finder.kept;
    const blob: ScannedBlob = { offset: e.offset, size: e.size, ...(hash ? { digest: `sha256:${hash.digest('hex')}` } : {}),
      ...(keep ? { data: Buffer.concat(parts) } : {}), ...(head ? { head } : {}), ...(stored ? { stored } : {}) };
    if (hashing) {
      const p = hashing.digest().then((d) => { blob.digest = d; });
      p.catch(() => undefined);
      digests.push(p);
    }
    return blob;
  };
  const keepable = (size: number) => size <= KEEP_MAX && kept + size <= KEEP_BUDGET;
  const whole = async (e: StreamEntry, max: number, what: string): Promise<Buffer> => {
    if (e.size > max) throw badAirgap(label, `${what} is ${e.size} bytes, more than the ${max} a real one holds`);
    return Buffer.from((await src.read(e.size, what)) ?? Buffer.alloc(0));
  };

  try {
    for await (const e of walkTar(src, label)) {
      if (e.type === 'dir') continue;
      files++;
      if (spec === undefined && e.name !== AIRGAP_YAML && (e.name.startsWith('images/') || files > META_WITHIN)) {
        throw badAirgap(label, `no ${AIRGAP_YAML} among its first entries: not a KOTS airgap bundle`);
      }
      if (e.name === AIRGAP_YAML) {
        airgapYaml = await whole(e, MAX_AIRGAP_YAML, AIRGAP_YAML);
        spec = parseAirgapYaml(airgapYaml, label);
      } else if (e.name === APP_ARCHIVE) {
        app = await whole(e, MAX_APP_ARCHIVE, APP_ARCHIVE);
      } else if (spec !== undefined && e.name.startsWith('images/')) {
        if (imageFormat(spec) === FORMAT_REGISTRY) {
          if (!e.name.startsWith(STORAGE_ROOT)) continue;
          const rel = e.name.slice(STORAGE_ROOT.length);
          if (/^blobs\/sha256\/[^/]+\/[^/]+\/data$/.test(rel)) {
            const keep = keepable(e.size);
            blobs.set(rel, seekable && !keep ? { offset: e.offset, size: e.size } : await take(src, e, keep, e.name, !keep));
          } else if (rel.startsWith('repositories/') && rel.endsWith('/link')) {
            links.set(rel, (await whole(e, MAX_LINK, e.name)).toString('utf8'));
          }
        } else {
          archives.push(await scanArchive(src, e, label, take, keepable));
        }
      }
    }
    await src.drain();
    await Promise.all(digests);
  } finally {
    await src.close();
    walk?.close();
    await thread?.close();
  }
  if (spec === undefined || airgapYaml === undefined) throw badAirgap(label, `no ${AIRGAP_YAML}: not a KOTS airgap bundle`);
  return { spec, airgapYaml, app, blobs, links, archives, members };
}

type Take = (s: ByteSource, e: StreamEntry, keep: boolean, what: string, find?: boolean) => Promise<ScannedBlob>;

/** A docker archive (docker save, skopeo copy docker-archive:) inside the .airgap: its files located and hashed. */
async function scanArchive(src: ByteSource, outer: StreamEntry, label: string, take: Take, keepable: (n: number) => boolean): Promise<DockerArchiveFile> {
  const parts = outer.name.split('/').slice(2);
  if (parts.length < 3) throw badAirgap(label, `${printable(outer.name)}: a docker archive must be under images/<format>/<host>/<path>/<name>/<tag>`);
  const what = `${label}: ${outer.name}`;
  const inner = src.limit(outer.size, what);
  const files = new Map<string, ScannedBlob>();
  const links = new Map<string, string>();
  for await (const e of walkTar(inner, what, { symlinks: true })) {
    if (e.type === 'dir') continue;
    // skopeo and docker save link a layer listed twice to its first copy: resolved below, inside the archive only.
    if (e.type === 'symlink') { links.set(e.name, e.link ?? ''); continue; }
    const json = e.name.endsWith('.json') || e.name === 'repositories';
    if (json && e.size > MAX_JSON) throw badAirgap(what, `${printable(e.name)} is ${e.size} bytes, too big for a docker archive's metadata`);
    const keep = json || keepable(e.size);
    const blob = await take(inner, e, keep, `${outer.name}: ${e.name}`, !keep);
    files.set(e.name, { ...blob, offset: outer.offset + e.offset });
  }
  await inner.drain();
  for (const [name, target] of links) {
    const dir = name.split('/').slice(0, -1);
    const resolved: string[] = target.startsWith('/') ? [] : [...dir];
    for (const part of target.split('/')) {
      if (part === '' || part === '.') continue;
      if (part === '..') { if (resolved.pop() === undefined) throw badAirgap(what, `symbolic link "${printable(name)}" points outside the archive`); }
      else resolved.push(part);
    }
    const file = files.get(resolved.join('/'));
    if (target.startsWith('/') || !file) throw badAirgap(what, `symbolic link "${printable(name)}" → "${printable(target)}" names no file of the archive`);
    files.set(name, file);
  }
  return { parts, entry: outer.name, files };
}
