import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { access, rm, stat, readdir } from 'node:fs/promises';
import { constants } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { BundleReader, damaged } from './bundle/reader.js';
import { checkSignature } from './bundle/signing.js';
import { scanManifests } from './app/scan.js';
import { retargetApp, writeRetargeted, type RetargetResult } from './app/retarget.js';
import { refusePasswordInManifests, type FileContent } from './app/leaks.js';
import { registerCleanup } from './cleanup.js';
import { AirgapError } from './errors.js';
import type { RegistryAccess } from './plan.js';
import type { Credentials } from './registry/credentials.js';
import { taggedName, formatReference, parseReference, type Reference } from './reference.js';
import { parseTargetRegistry, targetName, type TargetRegistry } from './target.js';

export interface RewriteOptions {
  bundle: string;
  registry: string;
  out: string;
  namespace: string;
  credentials?: Credentials;
  /** Name images as push --keep-path does (target.ts); must match the push. */
  keepPath?: boolean;
  /** A PEM public key: the bundle's signature and the digests it pins (app files, index.json) are checked first. */
  key?: string;
}

export interface RewriteSummary {
  out: string;
  files: number;
  images: { from: string; to: string }[];
  namespaces: string[];
}

/**
 * airgap rewrite, prepared: the bundle's manifests rewritten in memory (by tag, with the pull
 * secret) and every check done — --out usable and empty, bundle readable, every image the
 * manifests name carried. Nothing is written until write().
 */
export class RewriteJob {
  readonly #opts: RewriteOptions;
  readonly #target: TargetRegistry;
  readonly #result: RetargetResult;
  readonly #namespaces: string[];
  /** Each rewritten image: the pushed name and the digest the bundle holds for it. */
  readonly #pushed: { source: Reference; digest: string }[];

  private constructor(opts: RewriteOptions, target: TargetRegistry, result: RetargetResult, namespaces: string[], pushed: { source: Reference; digest: string }[]) {
    this.#opts = opts;
    this.#target = target;
    this.#result = result;
    this.#namespaces = namespaces;
    this.#pushed = pushed;
  }

  static async open(opts: RewriteOptions): Promise<RewriteJob> {
    const target = parseTargetRegistry(opts.registry);
    await checkOutDir(opts.out);
    const reader = await BundleReader.open(opts.bundle);
    // The manifests go through a private temp directory (they may hold the license's secrets);
    // removed however the run ends, an interrupt included.
    // Created and registered in one synchronous step: a signal is handled between event-loop
    // turns, so it cannot arrive after the directory exists and before its cleanup is known.
    const work = mkdtempSync(join(tmpdir(), 'airgap-rewrite-'));
    const unregister = registerCleanup(() => rmSync(work, { recursive: true, force: true }));
    try {
      // The manifests and the image names are what rewrite uses: the signature and those pins cover them.
      if (opts.key !== undefined) await checkSignature(reader, opts.key);
      const files = reader.appFiles();
      if (files.length === 0) {
        throw new AirgapError('E_BUNDLE', `bundle ${opts.bundle} holds no application manifests under app/`,
          { hint: 'rebuild the bundle with airgap build --manifests DIR' });
      }
      const contents: FileContent[] = [];
      for (const f of files) contents.push({ path: `app/${f}`, content: await reader.readAppFile(f) });
      if (opts.credentials) refusePasswordInManifests(contents, opts.credentials.password);
      for (const [i, f] of files.entries()) {
        const dest = join(work, f);
        // Written synchronously: no write is ever in flight when an interrupt's cleanup removes
        // the directory, so none can recreate it afterwards.
        mkdirSync(dirname(dest), { recursive: true });
        writeFileSync(dest, contents[i]!.content);
      }
      const scan = await scanManifests(work);
      // An index entry whose manifest the bundle lacks is no image at all: never point a workload at it.
      // A manifest is always carried, even by a delta, so one left to the base is missing too.
      const ghosts = reader.images().filter((i) => !reader.hasBlob(i.descriptor.digest));
      if (ghosts.length > 0) {
        throw damaged(reader.label, `${ghosts.map((g) => `manifest ${g.descriptor.digest} of ${g.ref}`).join(', ')}, which index.json names`);
      }
      const bundled = new Map(reader.images().map((i) => [i.ref, i.descriptor.digest]));
      const missing = scan.images.filter((i) => !bundled.has(taggedName(i.ref)));
      if (missing.length > 0) {
        throw new AirgapError('E_BUNDLE',
          `the bundle's manifests name image(s) the bundle does not hold: ${missing.map((m) => `${formatReference(m.ref)} (app/${m.file}:${m.line})`).join(', ')}`,
          { hint: 'rebuild the bundle from these manifests' });
      }
      const appSlug = reader.metadata()?.appSlug ?? scan.application?.name ?? 'app';
      const result = retargetApp(scan, {
        host: target.host,
        appSlug,
        mapping: (ref: Reference) => targetName(target, ref, opts.keepPath).full,
        secret: opts.credentials,
        namespace: opts.namespace,
      });
      const pushed = [...new Set(scan.images.map((i) => taggedName(i.ref)))]
        .map((name) => ({ source: parseReference(name), digest: bundled.get(name)! }));
      return new RewriteJob(opts, target, result, scan.namespaces, pushed);
    } finally {
      await rm(work, { recursive: true, force: true });
      unregister();
      await reader.close();
    }
  }

  /** Every file write() would create, relative to --out. */
  files(): string[] {
    const r = this.#result;
    return [
      ...r.rendered.map((f) => `rendered/${f.path}`),
      ...r.base.map((f) => `base/${f.path}`),
      ...[...r.midstreamFiles.map((f) => f.path), 'kustomization.yaml'].map((p) => `midstream/${p}`),
    ];
  }

  summary(): RewriteSummary {
    return { out: this.#opts.out, files: this.#result.rendered.length, images: this.#result.images, namespaces: this.#namespaces };
  }

  /**
   * Every name the rewritten manifests use is in the registry with the bundle's content, read
   * with the pull secret's credentials. Catches a push never run, to another namespace, or with
   * the other --keep-path choice (then says so), before workloads are pointed at nothing.
   */
  async checkRegistry(registries: RegistryAccess): Promise<void> {
    const head = (ref: Reference, keepPath: boolean) => {
      const name = targetName(this.#target, ref, keepPath);
      return registries.open({ registry: this.#target.host, repository: name.repository }).taggedAs!(name.tag);
    };
    const keepPath = this.#opts.keepPath ?? false;
    const problems = await Promise.all(this.#pushed.map(async (p) => {
      const at = await head(p.source, keepPath);
      if (at === p.digest) return undefined;
      const full = targetName(this.#target, p.source, keepPath).full;
      if (at !== undefined) return { line: `${full} is another image (${at}, the bundle has ${p.digest})`, other: false };
      const other = await head(p.source, !keepPath).catch(() => undefined);
      return { line: `${full} is not there`, other: other === p.digest };
    }));
    const bad = problems.filter((p) => p !== undefined);
    if (bad.length === 0) return;
    const flipped = bad.every((b) => b.other);
    throw new AirgapError('E_NOT_FOUND',
      `rewrite to ${this.#opts.registry}: ${bad.length} of ${this.#pushed.length} image(s) the manifests would use are not in the registry as this bundle holds them: ` +
      `${bad.slice(0, 3).map((b) => b.line).join('; ')}${bad.length > 3 ? `; and ${bad.length - 3} more` : ''}`,
      { hint: flipped
        ? `the images were pushed ${keepPath ? 'without' : 'with'} --keep-path: give rewrite the same choice as push`
        : `push this bundle first (airgap push ${this.#opts.bundle} --registry ${this.#opts.registry}${keepPath ? ' --keep-path' : ''}), or use airgap install` });
  }

  async write(): Promise<RewriteSummary> {
    await writeRetargeted(this.#result, this.#opts.out);
    return this.summary();
  }
}

/**
 * airgap rewrite: the bundle's manifests → DIR/rendered (by tag, with the pull secret) and the
 * kustomize overlay. Every image the manifests name must be in the bundle, and (unless the
 * caller skips it) in the registry: the rewrite never points a workload at an image not there.
 */
export async function rewrite(opts: RewriteOptions, registries?: RegistryAccess): Promise<RewriteSummary> {
  const job = await RewriteJob.open(opts);
  if (registries) await job.checkRegistry(registries);
  return job.write();
}

/**
 * --out must be an empty directory or not exist yet under a writable directory: checked before
 * anything is read, pushed or written, so a long push never ends on "directory not empty".
 */
export async function checkOutDir(out: string): Promise<void> {
  const st = await stat(out).catch((e: NodeJS.ErrnoException) => {
    if (e.code === 'ENOENT') return undefined;
    throw new AirgapError('E_OUTPUT', `--out ${out}: cannot read it (${e.code ?? e.message})`, { hint: 'choose another --out directory', cause: e });
  });
  if (st) {
    if (!st.isDirectory()) throw new AirgapError('E_OUTPUT', `--out ${out} is a file, not a directory`, { hint: 'choose a new --out directory' });
    if ((await readdir(out)).length > 0) {
      throw new AirgapError('E_OUTPUT', `output directory ${out} is not empty`, { hint: 'choose a new --out directory or empty this one' });
    }
  }
  // It (or the first of its parents that exists) must take new entries.
  let dir = st ? dirname(resolve(out)) : resolve(out);
  for (;;) {
    const parent = await stat(dir).catch(() => undefined);
    if (parent) {
      if (!parent.isDirectory()) {
        throw new AirgapError('E_OUTPUT', `--out ${out}: ${dir} is a file, not a directory`, { hint: 'choose another --out directory' });
      }
      break;
    }
    if (dirname(dir) === dir) break;
    dir = dirname(dir);
  }
  await access(dir, constants.W_OK | constants.X_OK).catch((e: NodeJS.ErrnoException) => {
    throw new AirgapError('E_OUTPUT', `--out ${out}: cannot create it, ${dir} is not writable (${e.code ?? e.message})`,
      { hint: 'choose a writable --out location', cause: e });
  });
}
