import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { access, mkdtemp, rm, stat, readdir } from 'node:fs/promises';
import { constants } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { damaged } from './bundle/reader.js';
import { openBundle } from './bundle/source.js';
import { checkSignatures, signatureKeys, type SignedRelease } from './bundle/signing.js';
import { scanFiles, scanManifests } from './app/scan.js';
import { isKustomizationName } from './app/kustomize-render.js';
import { PULL_SECRET_FILE } from './app/pullsecret.js';
import { retargetApp, writeRetargeted, type RetargetResult } from './app/retarget.js';
import { refusePasswordInManifests, type FileContent } from './app/leaks.js';
import { claimOutput, registerCleanup, removeLeftovers } from './cleanup.js';
import { AirgapError } from './errors.js';
import type { RegistryAccess } from './plan.js';
import type { Credentials } from './registry/credentials.js';
import { taggedName, formatReference, parseReference, type Reference } from './reference.js';
import { readLicense } from './app/license.js';
import { readConfigValues } from './kots/config.js';
import { releaseScanOptions } from './kots/facts.js';
import type { ConfigState } from './kots/config.js';
import { chartOutputs, valuesYaml } from './kots/charts.js';
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
  /** A KOTS release: the customer's answers to its Config (kots.io/v1beta1 ConfigValues). */
  configValues?: string;
  /** The customer's license: LicenseFieldValue / LicenseDockerCfg in the release's templates. */
  license?: string;
  /** What LicenseDockerCfg names (defaults: the vendor's). */
  proxyHost?: string;
  replicatedRegistry?: string;
}

/** The files a KOTS release adds beside rendered/, base/ and midstream/. */
export interface ExtraFile { path: string; content: Buffer; mode?: number }

export interface RewriteSummary {
  out: string;
  files: number;
  images: { from: string; to: string }[];
  namespaces: string[];
  /** A KOTS release's Helm charts: what `helm upgrade --install` needs, under --out. */
  charts: { name: string; version: string; releaseName: string; namespace: string; archive: string; values: string }[];
  /** What a person should know before applying (one line each). */
  warnings: string[];
  /** With --key (or AIRGAP_REQUIRE_SIGNATURE): what the signed airgap.json says the bundle is. */
  signedRelease?: SignedRelease;
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
  readonly #extras: ExtraFile[];
  /** Manifests that hold a secret once rendered (the license, registry credentials): written 0600. */
  readonly #private: Set<string>;
  readonly #charts: RewriteSummary['charts'];
  readonly #warnings: string[];
  #signed: SignedRelease | undefined;

  private constructor(opts: RewriteOptions, target: TargetRegistry, result: RetargetResult, namespaces: string[],
    pushed: { source: Reference; digest: string }[], extras: ExtraFile[], privatePaths: Set<string>,
    charts: RewriteSummary['charts'], warnings: string[]) {
    this.#opts = opts;
    this.#charts = charts;
    this.#warnings = warnings;
    this.#extras = extras;
    this.#private = privatePaths;
    this.#target = target;
    this.#result = result;
    this.#namespaces = namespaces;
    this.#pushed = pushed;
  }

  static async open(opts: RewriteOptions): Promise<RewriteJob> {
    const target = parseTargetRegistry(opts.registry);
    await checkOutDir(opts.out);
    // Claimed before anything is read or pushed: a second install into --out stops here (cleanup.ts).
    claimOutput(opts.out);
    // Read before the bundle: a wrong path is the user's to fix, whatever the bundle holds.
    const license = opts.license !== undefined ? await readLicense(opts.license) : undefined;
    const values = opts.configValues !== undefined ? await readConfigValues(opts.configValues) : undefined;
    const reader = await openBundle(opts.bundle);
    // The manifests go through a private temp directory (they may hold the license's secrets);
    // removed however the run ends, an interrupt included.
    // Created and registered in one synchronous step: a signal is handled between event-loop
    // turns, so it cannot arrive after the directory exists and before its cleanup is known.
    removeLeftovers(tmpdir(), /^airgap-rewrite-(\d+)-/); // of runs killed outright (SIGKILL)
    const work = mkdtempSync(join(tmpdir(), `airgap-rewrite-${process.pid}-`));
    const unregister = registerCleanup(() => rmSync(work, { recursive: true, force: true }));
    try {
      // The manifests and the image names are what rewrite uses: the signature and those pins cover them.
      const signed = await checkSignatures(reader, signatureKeys(opts.key)); // --key, and AIRGAP_REQUIRE_SIGNATURE whatever --key says
      const files = reader.appFiles();
      if (files.length === 0) {
        throw new AirgapError('E_BUNDLE', `bundle ${opts.bundle} holds no application manifests under app/`,
          { hint: 'rebuild the bundle with airgap build --manifests DIR' });
      }
      // build renders kustomize trees before they enter a bundle; rendering one here could fetch
      // its remote resources from this offline host. Nothing read from a bundle starts a fetch.
      const kustomization = files.find((f) => isKustomizationName(f.slice(f.lastIndexOf('/') + 1)));
      if (kustomization !== undefined) {
        throw new AirgapError('E_BUNDLE', `bundle ${opts.bundle} holds a kustomization (app/${kustomization}), which airgap build never writes: rendering it could fetch remote resources`,
          { hint: 'rebuild the bundle with airgap build (it renders kustomize trees before bundling them)' });
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
      const bundled = new Map(reader.images().map((i) => [i.ref, i.descriptor.digest]));
      const appSlugOf = reader.metadata()?.appSlug;
      if (license !== undefined && appSlugOf !== undefined && license.appSlug !== appSlugOf) {
        throw new AirgapError('E_LICENSE', `--license ${opts.license} is for app "${license.appSlug}", the bundle holds "${appSlugOf}"`,
          { hint: 'pass the license of the application this bundle carries' });
      }
      // Pushed name → source, for the names a KOTS template wrote itself (LocalImageName, LocalRegistryHost).
      const pushedNames = new Map<string, string>();
      for (const ref of bundled.keys()) {
        const source = parseReference(ref);
        if (source.tag !== undefined) pushedNames.set(targetName(target, source, opts.keepPath).full, ref);
      }
      let config: ConfigState | undefined;
      const privatePaths = new Set<string>();
      const kots = releaseScanOptions({
        mode: 'install', proxyHost: opts.proxyHost ?? 'proxy.replicated.com', replicatedRegistry: opts.replicatedRegistry ?? 'registry.replicated.com',
        namespace: opts.namespace, isAirgap: true,
        ...(appSlugOf !== undefined ? { appSlug: appSlugOf } : {}),
        ...(license !== undefined ? { license } : {}),
        ...(values !== undefined ? { values } : {}),
        ...(reader.metadata()?.release !== undefined ? { versionLabel: reader.metadata()!.release! } : {}),
        onConfig: (c) => { config = c; },
        localRegistry: {
          host: target.host, namespace: target.namespace,
          imageName: (ref) => targetName(target, parseReference(ref), opts.keepPath).full,
          ...(opts.credentials ? { username: opts.credentials.username, password: opts.credentials.password } : {}),
        },
      });
      const scan = await scanManifests(work, { kots });
      // An index entry whose manifest the bundle lacks is no image at all: never point a workload at it.
      // A manifest is always carried, even by a delta, so one left to the base is missing too.
      const ghosts = reader.images().filter((i) => !reader.hasBlob(i.descriptor.digest));
      if (ghosts.length > 0) {
        throw damaged(reader.label, `${ghosts.map((g) => `manifest ${g.descriptor.digest} of ${g.ref}`).join(', ')}, which index.json names`);
      }
      const sourceOf = (ref: Reference): string => pushedNames.get(taggedName(ref)) ?? taggedName(ref);
      const missing = scan.images.filter((i) => !bundled.has(sourceOf(i.ref)));
      if (missing.length > 0) {
        throw new AirgapError('E_BUNDLE',
          `the bundle's manifests name image(s) the bundle does not hold: ${missing.map((m) => `${formatReference(m.ref)} (app/${m.file}:${m.line})`).join(', ')}`,
          { hint: 'rebuild the bundle from these manifests' });
      }
      const appSlug = reader.metadata()?.appSlug ?? scan.application?.name ?? 'app';
      const retarget = {
        host: target.host,
        appSlug,
        // A name the templates already pointed at the customer registry stays as written.
        mapping: (ref: Reference) => (pushedNames.has(taggedName(ref)) ? undefined : targetName(target, ref, opts.keepPath).full),
        secret: opts.credentials,
        namespace: opts.namespace,
        // A HelmChart's objects go to its namespace (--namespace when it names none).
        fileNamespaces: new Map((scan.charts ?? []).map((c) => [chartOutputs(c).rendered, c.namespace])),
      };
      const result = retargetApp(scan, retarget);
      // The KOTS kinds (Preflight, SupportBundle…) are kept beside the app, their images
      // rewritten as KOTS rewrites them for a local registry, so they run inside the gap too.
      const kinds = scan.kotsKinds !== undefined && scan.kotsKinds.length > 0
        ? retargetApp(scanFiles(scan.kotsKinds), retarget).rendered.filter((f) => f.path !== PULL_SECRET_FILE) : [];
      const pushed = [...new Set(scan.images.map((i) => sourceOf(i.ref)))]
        .map((name) => ({ source: parseReference(name), digest: bundled.get(name)! }));
      const extras = kotsOutputs(kinds, config, appSlug);
      const charts: RewriteSummary['charts'] = [];
      const warnings: string[] = [];
      for (const c of scan.charts ?? []) {
        const o = chartOutputs(c);
        const { name, version } = c.chart.archive;
        extras.push({ path: o.archive, content: c.chart.content }, { path: o.values, content: Buffer.from(valuesYaml(c.values)), mode: 0o600 });
        charts.push({ name, version, releaseName: c.chart.helmChart.releaseName, namespace: c.namespace, archive: o.archive, values: o.values });
        // The rewrite is a safety net for rendered/; `helm upgrade --install` with values.yaml would pull from the source.
        const unrewritten = [...new Set(scan.images.filter((i) => i.file === o.rendered && !pushedNames.has(taggedName(i.ref))).map((i) => i.raw))];
        for (const raw of unrewritten) {
          warnings.push(`chart ${name} ${version} (HelmChart ${c.chart.helmChart.name}, ${c.chart.helmChart.file}): image ${raw} is rewritten in rendered/ only; ` +
            `installed with helm and ${o.values} it would be pulled from its source registry: the vendor should set it in the HelmChart's values with LocalImageName or HasLocalRegistry`);
        }
      }
      // A file whose templates read the license or a registry secret holds it once rendered.
      const secretive = /LicenseFieldValue|LicenseDockerCfg|LocalRegistryImagePullSecret/;
      for (const c of contents) if (secretive.test(c.content.toString('utf8'))) privatePaths.add(c.path.slice('app/'.length));
      const job = new RewriteJob(opts, target, result, scan.namespaces, pushed, extras, privatePaths, charts, warnings);
      job.#signed = signed?.release;
      return job;
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
      ...this.#extras.map((f) => f.path),
    ];
  }

  summary(): RewriteSummary {
    return {
      out: this.#opts.out, files: this.#result.rendered.length, images: this.#result.images, namespaces: this.#namespaces,
      charts: this.#charts, warnings: this.#warnings, ...(this.#signed ? { signedRelease: this.#signed } : {}),
    };
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
    await writeRetargeted(this.#result, this.#opts.out, { extras: this.#extras, private: this.#private });
    return this.summary();
  }
}

/**
 * What a KOTS release adds to --out: the KOTS kinds rendered for reference (kots/, never applied),
 * and the config values used (config-values.yaml: a re-run given it renders the same, so a
 * generated password never rotates). Both may hold secrets: readable by the owner only.
 */
function kotsOutputs(kinds: { path: string; content: Buffer }[], config: ConfigState | undefined, appSlug: string): ExtraFile[] {
  const out: ExtraFile[] = kinds.map((k) => ({ path: k.path, content: k.content, mode: 0o600 }));
  if (config?.config !== undefined) out.push({ path: 'config-values.yaml', content: Buffer.from(config.valuesDocument(appSlug)), mode: 0o600 });
  return out;
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
  // Permission bits are not the whole answer (root in /proc or /sys, a read-only mount, a full
  // disk): create and remove an entry where the output's temporary directory will go.
  let probe: string | undefined;
  try {
    probe = await mkdtemp(join(dir, '.airgap-probe-'));
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? String(e);
    throw new AirgapError('E_OUTPUT', `--out ${out}: cannot create it, nothing can be created in ${dir} (${code})`,
      { hint: 'choose a writable --out location', cause: e });
  } finally {
    if (probe !== undefined) await rm(probe, { recursive: true, force: true });
  }
}
