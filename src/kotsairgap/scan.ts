import { createHash } from 'node:crypto';
import type { FileHandle } from 'node:fs/promises';
import { AIRGAP_YAML, APP_ARCHIVE, FORMAT_REGISTRY, imageFormat, parseAirgapYaml, type AirgapSpec } from './metadata.js';
import { inflateFrom, memberAt, scanMembers, type Member } from './gzip.js';
import { RunFinder, type Piece } from './stored.js';
import { badAirgap, ByteSource, printable, walkTar, type StreamEntry } from './tar.js';

/**
 * One streaming pass over a .airgap: what it holds and where, without keeping the images. Small
 * files (airgap.yaml, app.tar.gz, link files, docker archives' JSON) are kept; every blob is
 * located (its offset in the decompressed stream) and, where the pass inflates it anyway,
 * hashed, so a blob that does not match its name is found before anything is pushed. A file
 * written as one gzip member per entry (gzip.ts) is walked by hopping from member to member:
 * big bodies are neither inflated nor hashed here, but verified while they stream, later.
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
/** What the compressed stretches of blobs read from stored blocks (stored.ts) may hold in memory, all together. */
const RUN_BUDGET = 64 << 20;

export async function scanAirgap(path: string, fh: FileHandle, fileSize: number, label: string): Promise<AirgapScan> {
  const members = await scanMembers(fh, fileSize) ?? [{ coff: 0, doff: 0 }];
  const seekable = members.length > 1;
  // One stream (the vendor portal's): where zlib was in the file as it inflated, to find blobs in it.
  const progress: [c: number, d: number][] = [];
  const track = seekable ? undefined : (c: number, d: number) => { progress.push([c, d]); if (progress.length > 4096) progress.splice(0, 2048); };
  let runBytes = 0;
  const near = (d: number): [number, number] | undefined => {
    for (let i = progress.length - 1; i >= 0; i--) if (progress[i]![1] <= d) return progress[i]!;
    return progress.length === 0 || progress.length < 2048 ? [0, 0] : undefined;
  };
  const src = new ByteSource(inflateFrom(path, members[0]!, undefined, track), label, Number.POSITIVE_INFINITY,
    seekable ? (target) => { const m = memberAt(members, target); return { at: m.doff, source: inflateFrom(path, m) }; } : undefined);
  let spec: AirgapSpec | undefined;
  let airgapYaml: Buffer | undefined;
  let app: Buffer | undefined;
  const blobs = new Map<string, ScannedBlob>();
  const links = new Map<string, string>();
  const archives: DockerArchiveFile[] = [];
  let kept = 0;
  let files = 0;

  // Reads a body through the pass: hashed, its first bytes and (small, within budget) all of it kept.
  // With `find` (a one-stream file), where the blob lies in the file is found too (stored.ts).
  const take = async (s: ByteSource, e: StreamEntry, keep: boolean, what: string, find = false): Promise<ScannedBlob> => {
    const hash = createHash('sha256');
    const parts: Buffer[] = [];
    let head: Buffer | undefined;
    const finder = find && runBytes < RUN_BUDGET ? new RunFinder(fh.fd, e.offset, e.size, near) : undefined;
    for await (const c of s.chunks(e.size, what)) {
      hash.update(c);
      head ??= Buffer.from(c.subarray(0, 16));
      if (keep) parts.push(Buffer.from(c));
      finder?.push(c);
    }
    if (keep) kept += e.size;
    const stored = finder?.finish();
    if (finder) runBytes += finder.kept;
    return { offset: e.offset, size: e.size, digest: `sha256:${hash.digest('hex')}`, ...(keep ? { data: Buffer.concat(parts) } : {}), ...(head ? { head } : {}),
      ...(stored ? { stored } : {}) };
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
  } finally {
    await src.close();
  }
  if (spec === undefined || airgapYaml === undefined) throw badAirgap(label, `no ${AIRGAP_YAML}: not a KOTS airgap bundle`);
  return { spec, airgapYaml, app, blobs, links, archives, members };
}

type Take = (s: ByteSource, e: StreamEntry, keep: boolean, what: string) => Promise<ScannedBlob>;

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
    const blob = await take(inner, e, json || keepable(e.size), `${outer.name}: ${e.name}`);
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
