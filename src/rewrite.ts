import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { BundleReader, damaged } from './bundle/reader.js';
import { checkSignature } from './bundle/signing.js';
import { scanManifests } from './app/scan.js';
import { rewriteApp, writeRewrite } from './app/rewrite.js';
import { refusePasswordInManifests, type FileContent } from './app/leaks.js';
import { AirgapError } from './errors.js';
import { taggedName, formatReference, type Reference } from './reference.js';
import { parseTargetRegistry, targetName } from './target.js';

export interface RewriteOptions {
  bundle: string;
  registry: string;
  out: string;
  namespace: string;
  credentials?: { username: string; password: string };
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
 * airgap rewrite: the bundle's manifests → DIR/rendered (by tag, with the pull secret) and the
 * kustomize overlay. Every image the manifests name must be in the bundle: the rewrite never
 * points a workload at an image that the push did not carry.
 */
export async function rewrite(opts: RewriteOptions): Promise<RewriteSummary> {
  const target = parseTargetRegistry(opts.registry);
  const reader = await BundleReader.open(opts.bundle);
  const work = await mkdtemp(join(tmpdir(), 'airgap-rewrite-'));
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
      await mkdir(dirname(dest), { recursive: true });
      await writeFile(dest, contents[i]!.content);
    }
    const scan = await scanManifests(work);
    // An index entry whose manifest the bundle lacks is no image at all: never point a workload at it.
    // A manifest is always carried, even by a delta, so one left to the base is missing too.
    const ghosts = reader.images().filter((i) => !reader.hasBlob(i.descriptor.digest));
    if (ghosts.length > 0) {
      throw damaged(reader.label, `${ghosts.map((g) => `manifest ${g.descriptor.digest} of ${g.ref}`).join(', ')}, which index.json names`);
    }
    const bundled = new Set(reader.images().map((i) => i.ref));
    const missing = scan.images.filter((i) => !bundled.has(taggedName(i.ref)));
    if (missing.length > 0) {
      throw new AirgapError('E_BUNDLE',
        `the bundle's manifests name image(s) the bundle does not hold: ${missing.map((m) => `${formatReference(m.ref)} (app/${m.file}:${m.line})`).join(', ')}`,
        { hint: 'rebuild the bundle from these manifests' });
    }
    const appSlug = reader.metadata()?.appSlug ?? scan.application?.name ?? 'app';
    const result = rewriteApp(scan, {
      host: target.host,
      appSlug,
      mapping: (ref: Reference) => targetName(target, ref).full,
      secret: opts.credentials,
      namespace: opts.namespace,
    });
    await writeRewrite(result, opts.out);
    return { out: opts.out, files: result.rendered.length, images: result.images, namespaces: scan.namespaces };
  } finally {
    await rm(work, { recursive: true, force: true });
    await reader.close();
  }
}
