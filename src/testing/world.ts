import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import pLimit from 'p-limit';
import { parse } from 'yaml';
import { FixtureLayout, pushImage, type BuiltChild, type ImageSpec } from './fixtures.js';
import { startProxy, type TestProxy } from './proxy.js';
import { startRegistry, type TestRegistry } from './registry.js';

/**
 * The test world: the registries and the proxy that `testdata/app` names, on loopback, seeded
 * with fixture images, and the app rendered with their real addresses and digests.
 *
 *   public.registry.test        → a public registry (anonymous pulls)
 *   private.registry.test:5000  → a private upstream (vendor credentials), reached via the proxy
 *   registry.replicated.com     → the vendor registry (username = password = license ID)
 *
 * `{{digest:<placeholder ref>}}` in testdata is replaced by the hex of that image's digest.
 */
export type ImageKind = 'public' | 'private' | 'vendor';

export interface WorldImage {
  /** The reference exactly as the rendered app writes it. */
  ref: string;
  kind: ImageKind;
  /** Digest of the top manifest (the index of a multi-arch image). */
  digest: string;
  mediaType: string;
  /** `host:port/repo`, no tag. */
  name: string;
  tag: string;
  /** The repository path on its registry (`library/nginx`, `acme/api`). */
  repo: string;
  /** Written as `name:tag@digest`. */
  pinned: boolean;
  /** Written through the vendor proxy (`<proxy>/proxy/<slug>/private.registry.test/<repo>:tag`). */
  proxied: boolean;
  /** Listed in the KOTS Application's spec.additionalImages. */
  additional: boolean;
  /** An index's children (platform, digest); empty for a single manifest. */
  children: BuiltChild[];
  /** Every layer digest, all platforms. */
  layers: string[];
  /**
   * Private images: the repository path on the proxy, `proxy/<slug>/<upstream host:port>/<repo>`.
   * The port makes `<proxy>/<proxyRepository>:tag` an invalid Docker reference (skopeo refuses
   * it): read it over HTTP (fetchThroughProxy), or name the upstream by PRIVATE_ALIAS instead.
   */
  proxyRepository?: string;
}

/**
 * The digest a bundle built for the default platform holds for an image: the linux/amd64 child of
 * a multi-arch index, or the image's own digest when it is a single manifest.
 */
export function bundledDigest(img: WorldImage): string {
  if (img.children.length === 0) return img.digest;
  const amd64 = img.children.find((c) => c.platform === 'linux/amd64');
  if (!amd64) throw new Error(`${img.ref}: no linux/amd64 child among ${img.children.map((c) => c.platform).join(', ')}`);
  return amd64.digest;
}

export interface World {
  /** "127.0.0.1:PORT" of each party. */
  public: string;
  private: string;
  vendor: string;
  proxy: string;
  /** The running servers, for their data dirs, users and the proxy's request log. */
  servers: { public: TestRegistry; private: TestRegistry; vendor: TestRegistry; proxy: TestProxy };
  /** Temp dir holding appDir and licensePath; removed by stop(). */
  dir: string;
  appDir: string;
  licensePath: string;
  licenseId: string;
  appSlug: string;
  /** The vendor's credentials for the private upstream (only the proxy should know them). */
  upstreamCredentials: { username: string; password: string };
  /** Namespaces the app uses besides the default one. */
  namespaces: string[];
  images: WorldImage[];
  /** Image-like text in ConfigMap data that a scanner must NOT report (as rendered). */
  traps: string[];
  stop(): Promise<void>;
}

export interface WorldOptions {
  /** Multiplies every layer size (default 1 ≈ 0.7 MB of blobs in all; 100 ≈ 70 MB). */
  sizeFactor?: number;
  /**
   * Which tree of testdata/ to render into appDir, with the catalog images it names: `app` (the
   * sample application, default) or `cases` (the corpus of real-world shapes, one directory each).
   */
  app?: 'app' | 'cases' | 'kots';
}

const PLACEHOLDER: Record<ImageKind, string> = {
  public: 'public.registry.test',
  private: 'private.registry.test:5000',
  vendor: 'registry.replicated.com',
};

interface CatalogEntry extends ImageSpec {
  kind: ImageKind;
  repo: string;
  tag: string;
  /** How the app writes it: by tag, by tag+digest, through the proxy (private only). */
  forms: ('tag' | 'pinned' | 'proxied')[];
  additional?: boolean;
  /** The testdata tree that names it (default `app`). */
  app?: 'app' | 'cases' | 'kots';
}

const KiB = 1024;

/** Every image testdata/app names. The world test checks this against the rendered files. */
function catalog(slug: string): CatalogEntry[] {
  const acmeBase = [{ shared: 'acme-base', size: 96 * KiB }, { shared: 'acme-runtime', size: 48 * KiB }];
  return [
    { kind: 'public', repo: 'library/nginx', tag: '1.25.3', forms: ['tag'],
      layers: [{ seed: 'nginx-1', size: 64 * KiB }, { seed: 'nginx-2', size: 16 * KiB }],
      platforms: ['linux/amd64', 'linux/arm64/v8'] },
    { kind: 'public', repo: 'library/busybox', tag: '1.36', forms: ['tag', 'pinned'],
      layers: [{ seed: 'busybox', size: 24 * KiB }] },
    { kind: 'public', repo: 'library/redis', tag: '7.2.4', forms: ['tag'], format: 'v2s2',
      layers: [{ seed: 'redis-1', size: 48 * KiB }, { seed: 'redis-2', size: 8 * KiB }] },
    { kind: 'public', repo: 'bitnami/kubectl', tag: '1.29', forms: ['tag'],
      layers: [{ seed: 'kubectl', size: 40 * KiB }] },
    { kind: 'public', repo: 'library/alpine', tag: '3.19', forms: ['tag'], additional: true,
      layers: [{ seed: 'alpine', size: 12 * KiB }] },
    { kind: 'private', repo: 'acme/api', tag: '1.4.2', forms: ['pinned'],
      layers: [...acmeBase, { seed: 'api', size: 32 * KiB }] },
    { kind: 'private', repo: 'acme/worker', tag: '1.4.2', forms: ['tag'],
      layers: [...acmeBase, { seed: 'worker', size: 24 * KiB }] },
    { kind: 'private', repo: 'acme/migrate', tag: '1.4.2', forms: ['tag'],
      layers: [...acmeBase, { seed: 'migrate', size: 8 * KiB }] },
    { kind: 'private', repo: 'acme/node-agent', tag: '0.9.1', forms: ['tag'], format: 'v2s2',
      layers: [{ seed: 'node-agent', size: 32 * KiB }], platforms: ['linux/amd64', 'linux/arm64/v8'] },
    { kind: 'private', repo: 'acme/support-tools', tag: '2.1', forms: ['tag'], additional: true,
      layers: [{ seed: 'support-tools', size: 16 * KiB }] },
    { kind: 'vendor', repo: `${slug}/frontend`, tag: '2.0.1', forms: ['pinned'],
      layers: [{ seed: 'frontend', size: 56 * KiB }] },
    { kind: 'vendor', repo: `${slug}/debug`, tag: '1.0', forms: ['tag'], additional: true,
      layers: [{ seed: 'debug', size: 8 * KiB }] },
    // testdata/cases (see its README): the shapes real releases keep images in.
    ...([
      ['library/nginx', '1.25.3'], ['library/busybox', '1.36'], ['bitnami/kubectl', '1.29'], ['library/redis', '7.2.4'],
      ['library/alpine', '3.19'], ['prometheus-operator/prometheus-operator', 'v0.70.0'],
      ['prometheus-operator/prometheus-config-reloader', 'v0.70.0'], ['prometheus/prometheus', 'v2.48.0'],
    ] as const).map(([repo, tag]): CatalogEntry => ({
      kind: 'public', repo, tag, forms: ['tag'], app: 'cases', layers: [{ seed: `cases-${repo}`, size: 8 * KiB }],
    })),
    { kind: 'private', repo: 'acme/db-operand', tag: '3.1', forms: ['tag'], app: 'cases', additional: true,
      layers: [{ seed: 'cases-db-operand', size: 8 * KiB }] },
    { kind: 'private', repo: 'acme/collector', tag: '1.0', forms: ['proxied'], app: 'cases',
      layers: [{ seed: 'cases-collector', size: 8 * KiB }] },
    // testdata/kots: a KOTS release written in KOTS's template language (see its README).
    ...([
      ['public', 'library/nginx', '1.25.3'], ['public', 'library/redis', '7.2.4'], ['public', 'library/postgres', '16.1'],
      ['public', 'library/alpine', '3.19'], ['public', 'library/busybox', '1.36'],
      ['private', 'acme/api', '1.4.2'], ['private', 'acme/worker', '1.4.2'], ['vendor', `${slug}/frontend`, '2.0.1'],
    ] as const).map(([kind, repo, tag]): CatalogEntry => ({
      kind, repo, tag, forms: ['tag'], app: 'kots', layers: [{ seed: `kots-${repo}`, size: 8 * KiB }],
      ...(repo === 'library/nginx' ? { platforms: ['linux/amd64', 'linux/arm64/v8'] } : {}),
    })),
  ];
}

/** Also routes to the private registry on the proxy: `proxy/<slug>/private.registry.test/<repo>`. */
export const PRIVATE_ALIAS = 'private.registry.test';

/** As written in testdata/config.yaml, before rendering. */
const TRAPS = ['not/an-image:1', 'public.registry.test/library/not-an-image:1'];

export async function startWorld(opts: WorldOptions = {}): Promise<World> {
  const factor = opts.sizeFactor ?? 1;
  const app = opts.app ?? 'app';
  const testdata = findTestdata();
  const licenseText = await readFile(join(testdata, 'license.yaml'), 'utf8');
  const spec = (parse(licenseText) as { spec?: { licenseID?: string; appSlug?: string } }).spec ?? {};
  const licenseId = spec.licenseID;
  const appSlug = spec.appSlug;
  if (!licenseId || !appSlug) throw new Error(`${join(testdata, 'license.yaml')}: spec.licenseID and spec.appSlug are required`);
  const upstreamCredentials = { username: 'acme-vendor', password: randomBytes(12).toString('hex') };

  const started: { stop(): Promise<void> }[] = [];
  const stopAll = async (): Promise<void> => {
    await Promise.allSettled(started.map((s) => s.stop()));
  };
  const dir = await mkdtemp(join(tmpdir(), 'airgap-world-'));
  started.push({ stop: () => rm(dir, { recursive: true, force: true }) });
  try {
    const track = <T extends { stop(): Promise<void> }>(p: Promise<T>): Promise<T> => p.then((s) => {
      started.push(s);
      return s;
    });
    const [pub, priv, vendor, layout] = await settleAll([
      track(startRegistry()),
      track(startRegistry({ users: [upstreamCredentials] })),
      track(startRegistry({ users: [{ username: licenseId, password: licenseId }] })),
      track(FixtureLayout.create().then((l) => Object.assign(l, { stop: () => l.remove() }))),
    ]);
    const proxy = await track(startProxy({
      licenseId, appSlug,
      upstreams: {
        [priv.host]: upstreamCredentials,
        // A port-free alias so that skopeo can read through the proxy (see proxyRepository).
        [PRIVATE_ALIAS]: { ...upstreamCredentials, address: priv.host },
      },
    }));
    const registries: Record<ImageKind, TestRegistry> = { public: pub, private: priv, vendor };

    const entries = catalog(appSlug).filter((e) => (e.app ?? 'app') === app);
    const limit = pLimit(6);
    const built = await settleAll(entries.map((e, i) => limit(async () => {
      const name = `img${i}`;
      const image = await layout.build(name, {
        ...e, layers: e.layers.map((l) => ({ ...l, size: Math.max(1, Math.round((l.size ?? 32 * KiB) * factor)) })),
      });
      await pushImage(layout, name, registries[e.kind], e.repo, e.tag);
      return image;
    })));
    await layout.remove();

    const digests = new Map<string, string>();
    entries.forEach((e, i) => digests.set(`${PLACEHOLDER[e.kind]}/${e.repo}:${e.tag}`, built[i]!.digest));
    const hosts: Record<ImageKind, string> = { public: pub.host, private: priv.host, vendor: vendor.host };
    const appDir = join(dir, 'app');
    await renderApp(join(testdata, app), appDir, digests, { ...hosts, proxy: proxy.host });
    const licensePath = join(dir, 'license.yaml');
    await copyFile(join(testdata, 'license.yaml'), licensePath);

    const images: WorldImage[] = entries.flatMap((e, i) => e.forms.map((form) => {
      const b = built[i]!;
      const name = form === 'proxied' ? `${proxy.host}/proxy/${appSlug}/${PRIVATE_ALIAS}/${e.repo}` : `${hosts[e.kind]}/${e.repo}`;
      return {
        ref: form === 'pinned' ? `${name}:${e.tag}@${b.digest}` : `${name}:${e.tag}`,
        kind: e.kind, digest: b.digest, mediaType: b.mediaType, name, tag: e.tag, repo: e.repo,
        pinned: form === 'pinned', proxied: form === 'proxied', additional: e.additional ?? false,
        children: b.children, layers: b.layers,
        ...(e.kind === 'private' ? { proxyRepository: `proxy/${appSlug}/${priv.host}/${e.repo}` } : {}),
      };
    }));

    return {
      public: pub.host, private: priv.host, vendor: vendor.host, proxy: proxy.host,
      servers: { public: pub, private: priv, vendor, proxy },
      dir, appDir, licensePath, licenseId, appSlug, upstreamCredentials,
      namespaces: ['acme-edge'],
      images,
      traps: TRAPS.map((t) => replaceHosts(t, { ...hosts, proxy: proxy.host })),
      stop: stopAll,
    };
  } catch (e) {
    await stopAll();
    throw e;
  }
}

/**
 * Promise.all that waits for every promise before rejecting, so that cleanup after a failure
 * does not race with servers still starting or skopeo still writing.
 */
async function settleAll<T extends readonly unknown[]>(ps: { [K in keyof T]: Promise<T[K]> }): Promise<T> {
  const results = await Promise.allSettled(ps);
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
  return results.map((r) => (r as PromiseFulfilledResult<unknown>).value) as unknown as T;
}

/** testdata/ next to src/ (tsx) or two levels above dist/src/testing (compiled). */
function findTestdata(): string {
  let d = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    if (existsSync(join(d, 'testdata', 'app'))) return join(d, 'testdata');
    d = dirname(d);
  }
  throw new Error('testdata/app not found above ' + dirname(fileURLToPath(import.meta.url)));
}

async function renderApp(src: string, out: string, digests: Map<string, string>, hosts: Hosts): Promise<void> {
  for (const entry of await readdir(src, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue;
    const from = join(entry.parentPath, entry.name);
    const rel = relative(src, from);
    if (/\.(tgz|tar\.gz)$/.test(entry.name)) {
      await mkdir(dirname(join(out, rel)), { recursive: true });
      await copyFile(from, join(out, rel)); // bytes, not text
      continue;
    }
    const text = await readFile(from, 'utf8');
    const filled = text.replace(/\{\{digest:([^}]+)\}\}/g, (_m, key: string, offset: number) => {
      const d = digests.get(key);
      if (!d) {
        const line = text.slice(0, offset).split('\n').length;
        throw new Error(`testdata/app/${rel}:${line}: no fixture image ${key} (add it to the catalog in world.ts)`);
      }
      return d.slice('sha256:'.length);
    });
    await mkdir(dirname(join(out, rel)), { recursive: true });
    await writeFile(join(out, rel), replaceHosts(filled, hosts));
  }
}

type Hosts = Record<ImageKind | 'proxy', string>;

/** The vendor proxy as testdata writes it (already-proxied references). */
const PROXY_PLACEHOLDER = 'proxy.replicated.com';

function replaceHosts(text: string, hosts: Hosts): string {
  // The private placeholder first: it is the only one with a port.
  return text
    .split(PROXY_PLACEHOLDER).join(hosts.proxy)
    .split(PLACEHOLDER.private).join(hosts.private)
    .split(PLACEHOLDER.public).join(hosts.public)
    .split(PLACEHOLDER.vendor).join(hosts.vendor);
}
