import { execFile } from 'node:child_process';
import { createCipheriv, createHash, randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { copyFile, link, mkdir, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import { createGzip } from 'node:zlib';
import { pack } from 'tar-stream';
import { MediaType } from '../oci/mediatypes.js';

/**
 * Test fixtures: real container images generated in Node (no Docker) into an OCI image layout,
 * then seeded into a registry with skopeo. Layer bytes come from a seeded keystream, so the same
 * spec always yields the same digests within one Node/zlib build, and random bytes do not
 * compress, so a layer's blob is about as big as asked.
 */

/** A layer: its own bytes (seed + size), or a named layer shared between images. */
export type LayerSpec = { seed: string; size: number } | { shared: string; size?: number };

export interface ImageSpec {
  layers: LayerSpec[];
  /** e.g. ['linux/amd64', 'linux/arm64/v8']: build an index with one child per platform. */
  platforms?: string[];
  /** 'oci' (default) or Docker v2 schema 2 ('v2s2': Docker media types, manifest list). */
  format?: 'oci' | 'v2s2';
}

export interface BuiltChild {
  platform: string;
  digest: string;
  mediaType: string;
  size: number;
}

export interface BuiltImage {
  /** Digest of the top manifest (the index for a multi-platform image). */
  digest: string;
  mediaType: string;
  size: number;
  /** An index's children in order; empty for a single-platform image. */
  children: BuiltChild[];
  /** Every layer digest of every platform, in manifest order. */
  layers: string[];
}

/** The minimum a registry needs to offer for seeding: where, and who may push. */
export interface SeedTarget {
  host: string;
  users: { username: string; password: string }[];
}

export interface SeedSpec extends ImageSpec {
  repo: string;
  tag: string;
}

export interface SeededImage extends BuiltImage {
  /** `host/repo:tag` */
  ref: string;
}

const SHARED_LAYER_SIZE = 32 * 1024;
const DEFAULT_PLATFORM = 'linux/amd64';
// Fixed so that rebuilding an image gives the same config bytes (and digest).
const CREATED = '2024-01-01T00:00:00Z';
const CHUNK = 1024 * 1024;
const run = promisify(execFile);

interface LayerBlob {
  digest: string;
  diffId: string;
  size: number;
}

/**
 * An OCI image layout under construction. Blobs are written once (layers shared by several
 * images cost nothing twice); every built image is named in index.json so that
 * `oci:DIR:name` addresses it.
 */
export class FixtureLayout {
  readonly dir: string;
  readonly #layers = new Map<string, Promise<LayerBlob>>();
  readonly #sources = new Map<string, string>();
  #indexWrite: Promise<void> = Promise.resolve();
  readonly #index: { mediaType: string; digest: string; size: number; annotations: Record<string, string> }[] = [];

  readonly #gzipLevel: number;

  private constructor(dir: string, gzipLevel: number) {
    this.dir = dir;
    this.#gzipLevel = gzipLevel;
  }

  /** `gzipLevel` 0 stores layers uncompressed inside gzip: ten times faster for benchmark-sized sets. */
  static async create(opts: { gzipLevel?: number } = {}): Promise<FixtureLayout> {
    const dir = await mkdtemp(join(tmpdir(), 'airgap-fixture-'));
    await mkdir(join(dir, 'blobs', 'sha256'), { recursive: true });
    await writeFile(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
    return new FixtureLayout(dir, opts.gzipLevel ?? 1);
  }

  async remove(): Promise<void> {
    await rm(this.dir, { recursive: true, force: true });
  }

  /** Builds an image and names it `name` in the layout's index.json. */
  async build(name: string, spec: ImageSpec): Promise<BuiltImage> {
    const docker = spec.format === 'v2s2';
    const platforms = spec.platforms ?? [];
    let built: BuiltImage;
    if (platforms.length === 0) {
      const one = await this.#buildManifest(spec.layers, DEFAULT_PLATFORM, '', docker);
      built = { digest: one.digest, mediaType: one.mediaType, size: one.size, children: [], layers: one.layers };
    } else {
      // Real multi-arch images have different bytes per platform: salt every seed with it.
      const children = await Promise.all(platforms.map((p) => this.#buildManifest(spec.layers, p, `|${p}`, docker)));
      const mediaType = docker ? MediaType.DockerManifestList : MediaType.OciIndex;
      const body = json({
        schemaVersion: 2,
        mediaType,
        manifests: children.map((c) => ({
          mediaType: c.mediaType, digest: c.digest, size: c.size, platform: platformObject(c.platform),
        })),
      });
      const blob = await this.#writeBlob(body);
      built = {
        ...blob, mediaType,
        children: children.map(({ platform, digest, mediaType: mt, size }) => ({ platform, digest, mediaType: mt, size })),
        layers: children.flatMap((c) => c.layers),
      };
    }
    if (docker) {
      await this.#exportDir(name, built);
    } else {
      this.#index.push({
        mediaType: built.mediaType, digest: built.digest, size: built.size,
        annotations: { 'org.opencontainers.image.ref.name': name },
      });
      // Builds run concurrently while skopeo reads: chain the writes so that the last one holds
      // every entry, and rename so that a reader never sees a half-written file.
      // A failed write fails its own build only; the next one starts afresh.
      this.#indexWrite = this.#indexWrite.catch(() => undefined).then(async () => {
        const tmp = join(this.dir, `index.json.${randomBytes(6).toString('hex')}`);
        await writeFile(tmp, json({ schemaVersion: 2, manifests: this.#index }));
        await rename(tmp, join(this.dir, 'index.json'));
      });
      await this.#indexWrite;
      this.#sources.set(name, `oci:${this.dir}:${name}`);
    }
    return built;
  }

  /** The skopeo source name of a built image (`oci:DIR:name` or `dir:PATH`). */
  source(name: string): string {
    const s = this.#sources.get(name);
    if (!s) throw new Error(`fixture image "${name}" was not built in ${this.dir}`);
    return s;
  }

  /**
   * c/image's oci: transport only lists OCI media types in index.json, so a Docker-format image
   * is exported as skopeo's dir: layout (manifest.json, <hex>.manifest.json children, blobs by
   * hex), hard-linked to the layout's blobs.
   */
  async #exportDir(name: string, built: BuiltImage): Promise<void> {
    const out = join(this.dir, 'dir', name.replace(/[^a-zA-Z0-9._-]/g, '_'));
    await mkdir(out, { recursive: true });
    await writeFile(join(out, 'version'), 'Directory Transport Version: 1.1\n');
    const blob = (d: string): string => join(this.dir, 'blobs', 'sha256', d.slice('sha256:'.length));
    await copyFile(blob(built.digest), join(out, 'manifest.json'));
    const manifests = built.children.length > 0 ? built.children.map((c) => c.digest) : [built.digest];
    for (const m of manifests) {
      if (built.children.length > 0) await copyFile(blob(m), join(out, `${m.slice('sha256:'.length)}.manifest.json`));
      const parsed = JSON.parse(await readFile(blob(m), 'utf8')) as { config: { digest: string }; layers: { digest: string }[] };
      for (const d of [parsed.config.digest, ...parsed.layers.map((l) => l.digest)]) {
        await link(blob(d), join(out, d.slice('sha256:'.length))).catch((e: NodeJS.ErrnoException) => {
          if (e.code !== 'EEXIST') throw e;
        });
      }
    }
    this.#sources.set(name, `dir:${out}`);
  }

  async #buildManifest(layers: LayerSpec[], platform: string, salt: string, docker: boolean):
    Promise<BuiltChild & { layers: string[] }> {
    const blobs = await Promise.all(layers.map((l) => this.#layer(l, salt)));
    const p = platformObject(platform);
    const config = json({
      created: CREATED,
      architecture: p.architecture,
      ...(p.variant ? { variant: p.variant } : {}),
      os: p.os,
      config: { Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'], Cmd: ['/bin/sh'] },
      rootfs: { type: 'layers', diff_ids: blobs.map((b) => b.diffId) },
      history: blobs.map((_, i) => ({ created: CREATED, created_by: `fixture layer ${i}` })),
    });
    const configBlob = await this.#writeBlob(config);
    const layerType = docker ? 'application/vnd.docker.image.rootfs.diff.tar.gzip' : 'application/vnd.oci.image.layer.v1.tar+gzip';
    const mediaType = docker ? MediaType.DockerManifest : MediaType.OciManifest;
    const body = json({
      schemaVersion: 2,
      mediaType,
      config: { mediaType: docker ? MediaType.DockerConfig : MediaType.OciConfig, ...configBlob },
      layers: blobs.map((b) => ({ mediaType: layerType, digest: b.digest, size: b.size })),
    });
    const blob = await this.#writeBlob(body);
    return { platform, mediaType, ...blob, layers: blobs.map((b) => b.digest) };
  }

  #layer(spec: LayerSpec, salt: string): Promise<LayerBlob> {
    const seed = ('shared' in spec ? `shared:${spec.shared}` : `seed:${spec.seed}`) + salt;
    const size = 'shared' in spec ? (spec.size ?? SHARED_LAYER_SIZE) : spec.size;
    const key = `${seed}#${size}`;
    let p = this.#layers.get(key);
    if (!p) {
      p = writeLayer(this.dir, seed, size, this.#gzipLevel);
      this.#layers.set(key, p);
    }
    return p;
  }

  async #writeBlob(body: Buffer): Promise<{ digest: string; size: number }> {
    const hex = createHash('sha256').update(body).digest('hex');
    await writeFile(join(this.dir, 'blobs', 'sha256', hex), body);
    return { digest: `sha256:${hex}`, size: body.length };
  }
}

/**
 * Copies `name` from the layout to `target` (all platforms). --preserve-digests makes skopeo
 * fail rather than convert, so the registry serves exactly the digests build() returned.
 */
export async function pushImage(layout: FixtureLayout, name: string, target: SeedTarget, repo: string, tag: string): Promise<string> {
  const ref = `${target.host}/${repo}:${tag}`;
  const user = target.users[0];
  const args = ['--insecure-policy', 'copy', '--quiet', '--all', '--preserve-digests', '--dest-tls-verify=false',
    ...(user ? ['--dest-creds', `${user.username}:${user.password}`] : []),
    layout.source(name), `docker://${ref}`];
  try {
    await run('skopeo', args, { maxBuffer: 4 * 1024 * 1024 });
  } catch (e) {
    const stderr = (e as { stderr?: string }).stderr ?? String(e);
    throw new Error(`seeding ${ref} with skopeo failed: ${redact(stderr.trim().split('\n').pop() ?? '', user?.password)}`);
  }
  return ref;
}

/** Builds one image in a throw-away layout and pushes it to `target` as repo:tag. */
export async function seedImage(target: SeedTarget, spec: SeedSpec): Promise<SeededImage> {
  const layout = await FixtureLayout.create();
  try {
    const built = await layout.build('image', spec);
    const ref = await pushImage(layout, 'image', target, spec.repo, spec.tag);
    return { ...built, ref };
  } finally {
    await layout.remove();
  }
}

/** Reads a manifest's exact bytes with skopeo (an implementation independent of ours). */
export async function inspectRaw(ref: string, opts: { creds?: { username: string; password: string } } = {}):
  Promise<{ raw: Buffer; digest: string; mediaType: string }> {
  const args = ['--insecure-policy', 'inspect', '--raw', '--tls-verify=false',
    ...(opts.creds ? ['--creds', `${opts.creds.username}:${opts.creds.password}`] : ['--no-creds']),
    `docker://${ref}`];
  try {
    const { stdout } = await run('skopeo', args, { encoding: 'buffer', maxBuffer: 16 * 1024 * 1024 });
    const mediaType = (JSON.parse(stdout.toString('utf8')) as { mediaType?: string }).mediaType ?? '';
    return { raw: stdout, digest: 'sha256:' + createHash('sha256').update(stdout).digest('hex'), mediaType };
  } catch (e) {
    const stderr = (e as { stderr?: Buffer }).stderr?.toString('utf8') ?? String(e);
    throw new Error(`skopeo inspect ${ref} failed: ${redact(stderr.trim().split('\n').pop() ?? '', opts.creds?.password)}`);
  }
}

/** "linux/arm64/v8" → { os, architecture, variant } */
export function platformObject(platform: string): { os: string; architecture: string; variant?: string } {
  const [os, architecture, variant] = platform.split('/');
  if (!os || !architecture) throw new Error(`fixture platform "${platform}" is not os/arch[/variant]`);
  return { os, architecture, ...(variant ? { variant } : {}) };
}

function json(v: unknown): Buffer {
  // Indented on purpose: a client that re-serialises manifests would change their digests.
  return Buffer.from(JSON.stringify(v, null, 2) + '\n');
}

function redact(s: string, secret: string | undefined): string {
  // Very short test passwords would turn every message into asterisks; they are not secrets.
  return secret && secret.length >= 4 ? s.split(secret).join('***') : s;
}

/** A tar holding one file of `size` seeded bytes, gzip'd into the layout; hashes both forms. */
async function writeLayer(dir: string, seed: string, size: number, gzipLevel: number): Promise<LayerBlob> {
  const tmp = join(dir, 'blobs', `tmp-${randomBytes(6).toString('hex')}`);
  const diff = new HashTap();
  const blob = new HashTap();
  const tar = pack();
  const fileName = `opt/fixture/${createHash('sha256').update(seed).digest('hex').slice(0, 16)}.bin`;
  const fill = (async () => {
    const entry = tar.entry({ name: fileName, size, mode: 0o644, mtime: new Date(CREATED), uid: 0, gid: 0, type: 'file' });
    const ended = new Promise<void>((resolve, reject) => {
      entry.once('finish', resolve);
      entry.once('error', reject);
    });
    for (const chunk of keystream(seed, size)) {
      if (!entry.write(chunk)) await new Promise<void>((r) => entry.once('drain', () => r()));
    }
    // streamx's typings insist on an argument; undefined means "no final chunk".
    entry.end(undefined);
    await ended;
    tar.finalize();
  })();
  // Level 1: random bytes do not compress anyway, and big fixtures should be quick to make.
  await Promise.all([fill, pipeline(tar, diff, createGzip({ level: gzipLevel }), blob, createWriteStream(tmp))]);
  const digest = `sha256:${blob.hex()}`;
  await rename(tmp, join(dir, 'blobs', 'sha256', blob.hex()));
  return { digest, diffId: `sha256:${diff.hex()}`, size: blob.bytes };
}

/** AES-256-CTR over zeros, keyed by the seed: a fast, reproducible pseudo-random byte source. */
function* keystream(seed: string, size: number): Generator<Buffer> {
  const key = createHash('sha256').update(seed).digest();
  const cipher = createCipheriv('aes-256-ctr', key, Buffer.alloc(16));
  const zeros = Buffer.alloc(CHUNK);
  for (let left = size; left > 0; left -= CHUNK) {
    yield cipher.update(left >= CHUNK ? zeros : zeros.subarray(0, left));
  }
}

class HashTap extends Transform {
  readonly #hash = createHash('sha256');
  bytes = 0;
  #hex = '';

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.#hash.update(chunk);
    this.bytes += chunk.length;
    cb(null, chunk);
  }

  override _flush(cb: TransformCallback): void {
    this.#hex = this.#hash.digest('hex');
    cb();
  }

  hex(): string {
    return this.#hex;
  }
}
