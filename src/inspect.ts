import type { BundleReader } from './bundle/reader.js';
import { openBundle, type BundleSource } from './bundle/source.js';
import { flatten, loadGraph, totalSize, type GraphNode } from './copy.js';
import { platformString } from './oci/descriptor.js';
import { referrerDescriptor } from './attached.js';
import { SIGNATURE_FILE } from './bundle/format.js';
import { checkSignatures, signatureKeys } from './bundle/signing.js';

export interface InspectResult {
  path: string;
  fileSize: number;
  appSlug?: string;
  release?: string;
  created?: string;
  tool?: string;
  /** The bundle's identity (airgap.json "id"). */
  id?: string;
  /**
   * A delta: the base bundle (by identity) and what the delta expects from it. It pushes only
   * into a registry that holds the base, and cannot be imported by `ctr images import` alone.
   */
  delta?: { base: { id: string; created: string; release?: string }; blobsFromBase: number; bytesFromBase: number };
  /** A split bundle: its parts (fileSize is then the size of the whole logical tar). */
  parts?: { name: string; size: number; sha256: string }[];
  images: {
    ref: string; digest: string; mediaType: string; platforms: string[]; size: number; source?: string;
    /** Signatures, attestations and SBOMs carried for this image (not images themselves). */
    attached: InspectAttached[];
  }[];
  appFiles: string[];
  /** airgap.json.sig is present (check it with airgap verify --key). */
  signed: boolean;
}

export interface InspectAttached {
  kind: string;
  /** The cosign tag it goes under; absent for an OCI 1.1 referrer. */
  tag?: string;
  digest: string;
  /** The image's manifest it belongs to. */
  subject: string;
  artifactType?: string;
  size: number;
}

/**
 * What a bundle holds, read from its content (index.json and the manifests), not only from
 * airgap.json: a bundle written by another tool inspects the same way.
 */
export async function inspectBundle(path: string): Promise<InspectResult> {
  const reader = await openBundle(path);
  try {
    // AIRGAP_REQUIRE_SIGNATURE: not even listed unless the admin's key verifies it.
    await checkSignatures(reader, signatureKeys(undefined));
    const meta = reader.metadata();
    // Looked up by key, never searched per image: 20,000 index entries read in seconds.
    const attachedTo = new Map<string, { a: ReturnType<BundleReader['attached']>[number]; at: number }[]>();
    for (const [at, a] of reader.attached().entries()) attachedTo.set(a.subject, [...(attachedTo.get(a.subject) ?? []), { a, at }]);
    const recordedAs = new Map((meta?.images ?? []).map((i) => [i.ref, i]));
    const images = [];
    for (const { ref, descriptor } of reader.images()) {
      const root = await reader.resolve(ref);
      const graph = await loadGraph(reader, root, ref, undefined, (d) => reader.hasBlob(d.digest));
      const size = totalSize(flatten([graph]));
      const recorded = recordedAs.get(ref);
      const manifests = flatten([graph]).filter((n) => n.bytes !== undefined).map((n) => n.descriptor.digest);
      const mine: InspectAttached[] = [];
      // In index.json order, as they were always listed.
      for (const { a } of manifests.flatMap((d) => attachedTo.get(d) ?? []).sort((x, y) => x.at - y.at)) {
        const g = await loadGraph(reader, await reader.resolve(a.descriptor.digest), `${ref}: ${a.tag ?? a.descriptor.digest}`);
        const artifactType = g.manifest ? referrerDescriptor(g).artifactType : undefined;
        mine.push({ kind: a.kind, ...(a.tag ? { tag: a.tag } : {}), digest: a.descriptor.digest, subject: a.subject,
          ...(artifactType ? { artifactType } : {}), size: totalSize(flatten([g])) });
      }
      images.push({
        ref,
        digest: descriptor.digest,
        mediaType: descriptor.mediaType,
        platforms: await platformsOf(reader, graph) ?? recorded?.platforms ?? [],
        size,
        ...(recorded?.source ? { source: recorded.source } : {}),
        attached: mine,
      });
    }
    const base = meta?.base;
    const fromBase = reader.fromBase();
    return {
      path,
      fileSize: reader.file.size,
      ...(meta?.id ? { id: meta.id } : {}),
      ...(base ? { delta: {
        base: { id: base.id, created: base.created, ...(base.release ? { release: base.release } : {}) },
        blobsFromBase: fromBase.length, bytesFromBase: fromBase.reduce((n, b) => n + b.size, 0),
      } } : {}),
      ...(reader.file.split ? { parts: reader.file.split.parts } : {}),
      ...(meta?.appSlug ? { appSlug: meta.appSlug } : {}),
      ...(meta?.release ? { release: meta.release } : {}),
      ...(meta ? { created: meta.created, tool: `${meta.tool.name} ${meta.tool.version}` } : {}),
      images,
      appFiles: reader.appFiles(),
      signed: (await reader.readEntry(SIGNATURE_FILE)) !== undefined,
    };
  } finally {
    await reader.close();
  }
}

/** undefined when the bundle cannot tell (a delta leaves the config to its base). */
async function platformsOf(reader: BundleSource, graph: GraphNode): Promise<string[] | undefined> {
  if (graph.manifest?.kind === 'index') return graph.manifest.manifests.map((d) => platformString(d.platform));
  if (graph.manifest?.kind !== 'manifest' || graph.manifest.config.size > 1024 * 1024) return [];
  if (reader.isFromBase(graph.manifest.config.digest)) return undefined;
  // A single manifest: the platform is in its config.
  const chunks: Buffer[] = [];
  for await (const c of await reader.fetch(graph.manifest.config)) chunks.push(c as Buffer);
  try {
    const cfg = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { os?: string; architecture?: string; variant?: string };
    return cfg.os && cfg.architecture ? [platformString({ os: cfg.os, architecture: cfg.architecture, ...(cfg.variant ? { variant: cfg.variant } : {}) })] : [];
  } catch {
    return [];
  }
}
