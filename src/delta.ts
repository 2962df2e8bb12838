import { createHash } from 'node:crypto';
import type { LimitFunction } from 'p-limit';
import { baseLabel } from './bundle/format.js';
import { BundleReader } from './bundle/reader.js';
import type { BundleSource } from './bundle/source.js';
import { flatten, loadGraph, type GraphNode } from './copy.js';
import { AirgapError } from './errors.js';
import type { TargetStore } from './store.js';

/**
 * Delta bundles (upgrades across the gap). A delta lists every image of the new release and
 * carries every manifest (a few KB: push, verify and inspect walk graphs from the delta alone),
 * but only the configs and layers its base does not hold, compared by digest. airgap.json names
 * the base by identity and lists the blobs expected from it; push checks those are in the
 * target registry before it moves or tags anything.
 */

/**
 * A bundle's identity: sha256 over its images (reference → digest), its app files and its
 * base. Content-derived rather than random, so two builds of the same release are the same
 * base to a delta, and a delta never shares an id with the full bundle of its release.
 */
export function bundleId(images: { ref: string; digest: string }[], appFiles: { path: string; content: Uint8Array }[],
  baseId?: string, attached: { subject: string; digest: string; tag?: string }[] = []): string {
  const doc = {
    images: images.map((i) => [i.ref, i.digest]).sort((a, b) => (a[0]! < b[0]! ? -1 : 1)),
    app: appFiles.map((f) => [f.path, createHash('sha256').update(f.content).digest('hex')]).sort((a, b) => (a[0]! < b[0]! ? -1 : 1)),
    base: baseId ?? null,
    // Only when there are some: the id of a bundle without them stays what it always was.
    ...(attached.length > 0 ? { attached: attached.map((a) => [a.subject, a.tag ?? '', a.digest].join(' ')).sort() } : {}),
  };
  return 'sha256:' + createHash('sha256').update(JSON.stringify(doc)).digest('hex');
}

export interface BaseBundle {
  id: string;
  created: string;
  release?: string;
  appSlug?: string;
  /** Every blob a registry holding the base release has: carried by it, or by its own base. */
  blobs: Map<string, number>;
  /** Blob → some of the base's images (source references) holding it: where the base's push put it. */
  where: Map<string, string[]>;
}

/** How many of the base's images a delta records per blob: one repository holding it is enough to mount from. */
const WHERE_PER_BLOB = 4;

/** Reads what a previous bundle (full or delta, plain or split) makes available to a delta on top of it. */
export async function loadBase(path: string): Promise<BaseBundle> {
  const reader = await BundleReader.open(path).catch((e: unknown) => {
    if (e instanceof AirgapError) {
      throw new AirgapError(e.code, `--since: ${e.message}`, { ...(e.hint ? { hint: e.hint } : {}), cause: e });
    }
    throw e;
  });
  try {
    const meta = reader.metadata();
    if (!meta) {
      throw new AirgapError('E_BUNDLE', `--since ${path} has no airgap.json: a delta can only build on a bundle written by airgap build`,
        { hint: 'give the previous release\'s bundle, or build a full bundle' });
    }
    const blobs = new Map<string, number>();
    for (const b of reader.blobs()) blobs.set(b.digest, b.size);
    for (const b of reader.fromBase()) blobs.set(b.digest, b.size);
    const appFiles = await Promise.all(reader.appFiles().map(async (p) => ({ path: p, content: await reader.readAppFile(p) })));
    const id = meta.id ?? bundleId(reader.images().map((i) => ({ ref: i.ref, digest: i.descriptor.digest })), appFiles, meta.base?.id);
    return {
      id, created: meta.created, blobs, where: await baseImagesByBlob(reader),
      ...(meta.release ? { release: meta.release } : {}), ...(meta.appSlug ? { appSlug: meta.appSlug } : {}),
    };
  } finally {
    await reader.close();
  }
}

/**
 * Which of the base's images hold each blob it makes available: its own images' graphs, and for
 * what it left to its own base, what that base recorded.
 */
async function baseImagesByBlob(reader: BundleReader): Promise<Map<string, string[]>> {
  const where = new Map<string, string[]>();
  const add = (digest: string, ref: string): void => {
    const list = where.get(digest) ?? [];
    if (list.length < WHERE_PER_BLOB && !list.includes(ref)) where.set(digest, [...list, ref]);
  };
  for (const b of reader.base()?.blobs ?? []) for (const ref of b.images ?? []) add(b.digest, ref);
  for (const { ref } of reader.images()) {
    const graph = await loadGraph(reader, await reader.resolve(ref), ref, undefined, (d) => reader.hasBlob(d.digest));
    for (const n of flatten([graph])) if (n.bytes === undefined) add(n.descriptor.digest, ref);
  }
  return where;
}

/** The graph without the blobs in `skip`: the copier then never asks a store for them. Manifests are kept. */
export function pruneGraph(root: GraphNode, skip: (digest: string) => boolean): GraphNode {
  const done = new Map<string, GraphNode>();
  const visit = (n: GraphNode): GraphNode => {
    const known = done.get(n.descriptor.digest);
    if (known) return known;
    const out: GraphNode = {
      ...n,
      // A node with bytes is a manifest or index (loadGraph reads those, never a blob's content).
      children: n.children.filter((c) => c.bytes !== undefined || !skip(c.descriptor.digest)).map(visit),
    };
    done.set(n.descriptor.digest, out);
    return out;
  };
  return visit(root);
}

/** Where this push would have put the base's images (their target repositories), and a store for one. */
export interface BaseRepositories {
  repositoryOf(ref: string): string | undefined;
  store(repository: string): TargetStore;
}

export interface BaseTarget {
  repository: string;
  store: TargetStore;
  graphs: GraphNode[];
}

export interface BasePlacement {
  /** Blobs already in the repository that needs them. */
  existing: number;
  /** Blobs mounted from a sibling repository of the same registry. */
  mounted: number;
  bytes: number;
  /** The distinct digests mounted into at least one repository. */
  mountedDigests: string[];
}

/**
 * Before a delta's push moves anything: every blob it expects from its base must be in the
 * registry, in each repository that needs it or in a sibling one to mount from. Any blob
 * found nowhere refuses the push (nothing uploaded, nothing tagged), naming the blobs and the
 * base bundle to push first; then the mounts are made.
 */
export async function placeBaseBlobs(reader: BundleSource, registry: string, targets: BaseTarget[],
  opts: { limit: LimitFunction; signal?: AbortSignal; baseRepositories?: BaseRepositories }): Promise<BasePlacement> {
  const base = reader.base();
  const result: BasePlacement = { existing: 0, mounted: 0, bytes: 0, mountedDigests: [] };
  if (!base) return result;
  const call = opts.signal ? { signal: opts.signal } : {};
  const limit = opts.limit;
  const desc = (digest: string) => ({ mediaType: 'application/octet-stream', digest, size: reader.baseBlobSize(digest)! });

  // repository → digests it needs from the base.
  const needs = new Map<string, Set<string>>();
  for (const t of targets) {
    const set = needs.get(t.repository) ?? new Set<string>();
    for (const n of flatten(t.graphs)) if (reader.isFromBase(n.descriptor.digest)) set.add(n.descriptor.digest);
    needs.set(t.repository, set);
  }
  const stores = new Map(targets.map((t) => [t.repository, t.store]));
  const held = new Map<string, Set<string>>(); // digest → repositories known to hold it
  const probed = new Set<string>(); // `${repo}\n${digest}`
  const head = async (repo: string, digest: string): Promise<boolean> => {
    probed.add(`${repo}\n${digest}`);
    const has = await stores.get(repo)!.exists(desc(digest), call);
    if (has) held.set(digest, (held.get(digest) ?? new Set()).add(repo));
    return has;
  };

  const absent: { repo: string; digest: string }[] = [];
  await Promise.all([...needs].flatMap(([repo, digests]) => [...digests].map((d) => limit(async () => {
    if (!(await head(repo, d))) absent.push({ repo, digest: d });
  }))));
  // Not where it is needed: look in the other repositories this push writes to, every digest at
  // once under the limit (each digest's probes touch only its own entries of `held` and `probed`).
  const unplaced = [...new Set(absent.map((a) => a.digest))].filter((d) => !held.has(d));
  const found = await Promise.all(unplaced.map(async (digest) => {
    const others = [...stores.keys()].filter((r) => !probed.has(`${r}\n${digest}`));
    return (await Promise.all(others.map((r) => limit(() => head(r, digest))))).some(Boolean);
  }));
  // Still nowhere: where the base's push put it, when an image moved to another repository since
  // (airgap.json records the base's images holding each blob; push maps them to repositories).
  const recorded = new Map(base.blobs.map((b) => [b.digest, b.images ?? []]));
  const baseRepos = opts.baseRepositories;
  const searched = new Set<string>();
  const stillMissing = unplaced.filter((_, i) => !found[i]);
  const foundInBase = await Promise.all(stillMissing.map(async (digest) => {
    if (!baseRepos) return false;
    const repos = [...new Set((recorded.get(digest) ?? []).map((ref) => baseRepos.repositoryOf(ref)).filter((r) => r !== undefined))]
      .filter((r) => !probed.has(`${r}\n${digest}`));
    for (const r of repos) {
      searched.add(r);
      if (!stores.has(r)) stores.set(r, baseRepos.store(r));
    }
    return (await Promise.all(repos.map((r) => limit(() => head(r, digest))))).some(Boolean);
  }));
  const list = stillMissing.filter((_, i) => !foundInBase[i]);
  if (list.length > 0) {
    const shown = list.slice(0, 20).join(', ') + (list.length > 20 ? `, and ${list.length - 20} more` : '');
    const lookedIn = [...new Set([...needs.keys(), ...searched])].sort();
    const noRecord = list.every((d) => (recorded.get(d) ?? []).length === 0);
    throw new AirgapError('E_BASE_MISSING',
      `${reader.label} is a delta on top of bundle ${baseLabel(base)}, and registry ${registry} lacks ${list.length} blob(s) it expects from that base: ${shown}; ` +
      `looked in ${lookedIn.map((r) => `${registry}/${r}`).join(', ')}${searched.size > 0 ? ' (the last where the base\'s images were pushed)' : ''}; nothing was pushed or tagged`,
      { hint: `push the base bundle ${base.id}${base.release ? ` (release ${base.release})` : ''} into ${registry} first (with the same --registry path and --keep-path choice as this push), or carry the full bundle of this release` +
        (noRecord && baseRepos ? '; this delta does not record where its base put them (built by an older airgap)' : '') });
  }

  const mountable = absent.filter((a) => !held.get(a.digest)?.has(a.repo));
  await Promise.all(mountable.map(({ repo, digest }) => limit(async () => {
    const from = [...held.get(digest)!][0]!;
    await stores.get(repo)!.push(desc(digest), async () => {
      throw new AirgapError('E_BASE_MISSING',
        `registry ${registry} would not mount ${digest} from ${from} into ${repo}, and ${reader.label} (a delta) does not carry it`,
        { hint: 'this registry refuses cross-repository mounts: carry and push the full bundle of this release instead' });
    }, call);
  })));
  for (const [, digests] of needs) {
    for (const d of digests) result.bytes += reader.baseBlobSize(d)!;
  }
  result.mounted = mountable.length;
  result.mountedDigests = [...new Set(mountable.map((m) => m.digest))];
  result.existing = [...needs.values()].reduce((n, s) => n + s.size, 0) - mountable.length;
  return result;
}
